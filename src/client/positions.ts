// Durable consumers, the client's side: a consumer name's committed position per shard, read
// with `{ns}.consumer.position` and written with `{ns}.consumer.commit` (any node answers;
// src/cluster/consumer-store.ts says where positions live). A commit is idempotent, so every
// failure a retry can fix is retried until the deadline.

import { TidelogError } from '../errors.ts';
import { decodeReply, encodeMessage } from '../transport/codec.ts';
import { isValidConsumerName } from '../transport/messages.ts';
import type { PageReaderContext } from './page-reader.ts';
import { requestBytes, retrying } from './retry.ts';

/** A durable consumer's name: 1..64 of A-Z a-z 0-9 _ - (a token of a subject and a KV key). */
export function checkConsumerName(name: unknown): asserts name is string {
  if (!isValidConsumerName(name)) {
    throw new TidelogError('BAD_REQUEST', `consumer must be 1..64 of A-Z a-z 0-9 _ -, got ${JSON.stringify(name)}`, { details: { field: 'consumer' } });
  }
}

/** The committed position of `consumer` in `shard` (0: it never committed there). */
export async function fetchPosition(context: PageReaderContext, consumer: string, shard: number, deadlineMs: number, signal?: AbortSignal): Promise<number> {
  await context.cluster.forShard(shard, deadlineMs, signal);
  const request = encodeMessage({ v: 1, t: 'position', consumer, shard });
  const reply = await retrying(
    async () => decodeReply(await requestBytes(context.transport, context.subjects.consumerPosition, request, context.requestTimeoutMs), 'positioned'),
    { ...context, deadlineMs, signal },
  );
  if (reply.consumer !== consumer || reply.shard !== shard) throw new TidelogError('DECODE_FAILED', `asked the position of ${consumer} in shard ${shard}, got ${reply.consumer} in shard ${reply.shard}`);
  return reply.seq;
}

/** Stores `seq` as the position of `consumer` in `shard`; resolves once the cluster holds it. */
export async function commitPosition(context: PageReaderContext, consumer: string, shard: number, seq: number, deadlineMs: number, signal?: AbortSignal): Promise<void> {
  if (!Number.isSafeInteger(seq) || seq < 0) throw new TidelogError('BAD_REQUEST', `seq must be a u53, got ${seq}`, { details: { field: 'seq' } });
  await context.cluster.forShard(shard, deadlineMs, signal);
  const request = encodeMessage({ v: 1, t: 'commit', consumer, shard, seq });
  const reply = await retrying(
    async () => decodeReply(await requestBytes(context.transport, context.subjects.consumerCommit, request, context.requestTimeoutMs), 'committed'),
    { ...context, deadlineMs, signal },
  );
  if (reply.consumer !== consumer || reply.shard !== shard || reply.seq !== seq) {
    throw new TidelogError('DECODE_FAILED', `committed ${consumer} shard ${shard} seq ${seq}, the node answered ${reply.consumer} shard ${reply.shard} seq ${reply.seq}`);
  }
}
