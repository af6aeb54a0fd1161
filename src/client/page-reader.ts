// Reading a shard's durable log in pages (`{ns}.shard.{n}.read`) and turning pages and feed
// batches into consumed events. Invariant: events come out in seq order starting exactly
// at the seq asked for — anything before it is skipped (it was delivered already) and a
// missing seq is an OUT_OF_RANGE error, never a silent jump.

import { TidelogError } from '../errors.ts';
import { EVENT_BYTES, decodeEventAt, type SignalEvent } from '../event.ts';
import { decodeReply, encodeMessage } from '../transport/codec.ts';
import type { ReadBatch, ReadReply, Subjects } from '../transport/messages.ts';
import type { Transport } from '../transport/transport.ts';
import type { ClusterView } from './info.ts';
import { requestBytes, retrying, type BackoffOptions, type ClientLogger } from './retry.ts';

export interface ConsumedEvent {
  shard: number;
  seq: number;
  event: SignalEvent;
}

export interface PageReaderContext extends BackoffOptions {
  transport: Transport;
  subjects: Subjects;
  requestTimeoutMs: number;
  nowMs: () => number;
  logger?: ClientLogger;
  /** The shard map and limits, shared by a consumer's reads and tails. */
  cluster: ClusterView;
}

/**
 * One page from fromSeq, retried (TIMEOUT, NO_RESPONDERS, …) until deadlineMs or the signal.
 * At most the node's maxRequestEvents events are asked for, whatever maxEvents says; a shard
 * outside the cluster's map rejects UNKNOWN_SHARD before any read.
 */
export async function readPage(
  context: PageReaderContext,
  request: { shard: number; fromSeq: number; maxEvents: number },
  deadlineMs: number,
  signal: AbortSignal,
): Promise<ReadReply> {
  const { maxRequestEvents } = await context.cluster.forShard(request.shard, deadlineMs, signal);
  const bytes = encodeMessage({ v: 1, t: 'read', ...request, maxEvents: Math.min(request.maxEvents, maxRequestEvents) });
  return retrying(
    async () => {
      const reply = decodeReply(
        await requestBytes(context.transport, context.subjects.shardRead(request.shard), bytes, context.requestTimeoutMs),
        'batches',
      );
      if (reply.shard !== request.shard) {
        throw new TidelogError('DECODE_FAILED', `asked shard ${request.shard} for a page, got shard ${reply.shard}`, {
          details: { shard: request.shard, replyShard: reply.shard },
        });
      }
      return reply;
    },
    {
      ...context,
      deadlineMs,
      signal,
      onRetry: (error, attempt) => context.logger?.debug({ shard: request.shard, code: error.code, attempt }, 'read retried'),
    },
  );
}

/** Seq after the last event of a batch. */
export function endSeqOf(batch: { firstSeq: number; events: Uint8Array }): number {
  return batch.firstSeq + batch.events.byteLength / EVENT_BYTES;
}

/**
 * Events of `batch` from `nextSeq` on, at most `limit`. A batch that starts after nextSeq
 * means seqs are missing: OUT_OF_RANGE.
 */
export function eventsFrom(shard: number, batch: ReadBatch, nextSeq: number, limit = Number.POSITIVE_INFINITY): ConsumedEvent[] {
  const endSeq = endSeqOf(batch);
  if (endSeq <= nextSeq) return [];
  if (batch.firstSeq > nextSeq) {
    throw new TidelogError('OUT_OF_RANGE', `shard ${shard}: seqs ${nextSeq}..${batch.firstSeq - 1} are missing from the log`, {
      details: { shard, fromSeq: nextSeq, firstSeq: batch.firstSeq },
    });
  }
  const view = new DataView(batch.events.buffer, batch.events.byteOffset, batch.events.byteLength);
  const stopSeq = Math.min(endSeq, nextSeq + limit);
  const events: ConsumedEvent[] = [];
  for (let seq = nextSeq; seq < stopSeq; seq++) {
    events.push({ shard, seq, event: decodeEventAt(view, (seq - batch.firstSeq) * EVENT_BYTES) });
  }
  return events;
}
