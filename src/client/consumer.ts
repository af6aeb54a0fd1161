// The consumer: reads a shard's durable log (read: up to the hwm seen at the start), tails
// it (tail: forever, disk then live feed, see shard-tail.ts), and asks the cluster for
// entity state, info and status. Invariants: every iterator yields seqs in order with no
// gap and no duplicate; close() ends every open tail at once (a read rejects CLOSED at its
// next page) and closes the transport only if this consumer opened it; open tails are
// bounded (maxTails, OVERLOADED past it). Reads and tails learn the shard map and limits
// from `{ns}.info` before their first page (info.ts ClusterView): a shard outside the map
// rejects UNKNOWN_SHARD, and pages never ask for more than the node's maxRequestEvents.

import { setMaxListeners } from 'node:events';
import { TidelogError } from '../errors.ts';
import { systemClock, type Clock } from '../clock.ts';
import { toEntityId, type EntityIdInput } from '../event.ts';
import { decodeReply, encodeMessage } from '../transport/codec.ts';
import { subjects as subjectsOf, type InfoReply, type StatusReply, type Subjects } from '../transport/messages.ts';
import type { Transport } from '../transport/transport.ts';
import { nonNegativeOption, openClientTransport, positiveIntegerOption, type ClientTransportOptions } from './client-transport.ts';
import { checkConsumerName, commitPosition, fetchPosition } from './positions.ts';
import { entityStateOf, type EntityState } from './entity-state.ts';
import { ClusterView } from './info.ts';
import { eventsFrom, readPage, type ConsumedEvent, type PageReaderContext } from './page-reader.ts';
import { localClosedError, requestBytes, retrying, type ClientLogger } from './retry.ts';
import { ShardTail, type TailOptions, type TailSettings } from './shard-tail.ts';

const U64_MAX = 0xffff_ffff_ffff_ffffn;

export interface ConsumerOptions extends ClientTransportOptions {
  /** One try of one request (default 2 000). */
  requestTimeoutMs?: number;
  /**
   * read/state/info/seek retry until this long after they started (default 30 000); tails
   * retry forever, except a start past the log's end: asked again this long (a follower
   * answering may lag its leader), then the tail ends OUT_OF_RANGE.
   */
  retryTimeoutMs?: number;
  /** Events per page read (default 4 096; lowered to the node's maxRequestEvents). */
  pageEvents?: number;
  /** Per tail: feed messages (default 1 024) and events (default 262 144) buffered at most. */
  maxBufferedFeedMessages?: number;
  maxBufferedFeedEvents?: number;
  /** A quiet tail checks the disk this often (default 1 000). */
  idlePollMs?: number;
  /** Tails open at once (default 1 024). */
  maxTails?: number;
  /** How long status() collects answers (default 500). */
  statusTimeoutMs?: number;
  retryBackoffMs?: number;
  maxRetryBackoffMs?: number;
  clock?: Clock;
  logger?: ClientLogger;
}

export interface ReadOptions {
  shard: number;
  /** First seq to yield (default 1). */
  fromSeq?: number;
  /** Stop after this many events (default: all up to the hwm at the start). */
  maxEvents?: number;
  /** Events per page request (default: the consumer's pageEvents). */
  pageEvents?: number;
}

export class Consumer {
  private readonly subjects: Subjects;
  private readonly context: PageReaderContext;
  private readonly closeController = new AbortController();
  private readonly tails = new Set<ShardTail>();
  private readonly retryTimeoutMs: number;
  private readonly maxTails: number;
  private readonly statusTimeoutMs: number;
  private readonly tailSettings: TailSettings;
  private closing: Promise<void> | null = null;

  /** Use createConsumer(). */
  constructor(
    private readonly transport: Transport,
    private readonly isTransportOwned: boolean,
    namespace: string,
    options: ConsumerOptions,
  ) {
    // Every call in flight listens on the close signal and stops listening when it settles
    // (retry.ts abortable): many concurrent state() or read() calls are not a leak.
    setMaxListeners(0, this.closeController.signal);
    const clock = options.clock ?? systemClock;
    this.subjects = subjectsOf(namespace);
    const requestOptions = {
      requestTimeoutMs: positiveIntegerOption('requestTimeoutMs', options.requestTimeoutMs, 2000),
      nowMs: () => clock.nowMs(),
      retryBackoffMs: positiveIntegerOption('retryBackoffMs', options.retryBackoffMs, 20),
      maxRetryBackoffMs: positiveIntegerOption('maxRetryBackoffMs', options.maxRetryBackoffMs, 1000),
      logger: options.logger,
    };
    this.context = { ...requestOptions, transport, subjects: this.subjects, cluster: new ClusterView(transport, this.subjects, requestOptions) };
    this.retryTimeoutMs = positiveIntegerOption('retryTimeoutMs', options.retryTimeoutMs, 30_000);
    this.maxTails = positiveIntegerOption('maxTails', options.maxTails, 1024);
    this.statusTimeoutMs = positiveIntegerOption('statusTimeoutMs', options.statusTimeoutMs, 500);
    this.tailSettings = {
      pageEvents: positiveIntegerOption('pageEvents', options.pageEvents, 4096),
      maxBufferedFeedMessages: positiveIntegerOption('maxBufferedFeedMessages', options.maxBufferedFeedMessages, 1024),
      maxBufferedFeedEvents: positiveIntegerOption('maxBufferedFeedEvents', options.maxBufferedFeedEvents, 262_144),
      idlePollMs: positiveIntegerOption('idlePollMs', options.idlePollMs, 1000),
      retryTimeoutMs: this.retryTimeoutMs,
    };
  }

  /**
   * Durable events of `shard` from fromSeq up to the hwm the first page reports, then ends.
   * Rejects OUT_OF_RANGE when fromSeq was truncated away or lies beyond hwm + 1, and
   * UNKNOWN_SHARD for a shard outside the cluster's map.
   */
  async *read(options: ReadOptions): AsyncGenerator<ConsumedEvent, void, undefined> {
    const { shard } = checkShard(options.shard);
    let nextSeq = checkSeq('fromSeq', options.fromSeq ?? 1);
    const maxEvents = options.maxEvents === undefined ? Number.POSITIVE_INFINITY : positiveIntegerOption('maxEvents', options.maxEvents, 1);
    const pageEvents = positiveIntegerOption('pageEvents', options.pageEvents, this.tailSettings.pageEvents);
    this.checkOpen();
    let targetSeq = Number.POSITIVE_INFINITY; // last seq to yield: the hwm of the first page
    let remaining = maxEvents;
    while (remaining > 0 && nextSeq <= targetSeq) {
      const wanted = Math.min(pageEvents, remaining, targetSeq - nextSeq + 1);
      const page = await readPage(this.context, { shard, fromSeq: nextSeq, maxEvents: wanted }, this.context.nowMs() + this.retryTimeoutMs, this.closeController.signal);
      if (targetSeq === Number.POSITIVE_INFINITY) targetSeq = page.hwm;
      let isProgress = false;
      for (const batch of page.batches) {
        for (const consumed of eventsFrom(shard, batch, nextSeq, Math.min(remaining, targetSeq - nextSeq + 1))) {
          nextSeq = consumed.seq + 1;
          remaining--;
          isProgress = true;
          yield consumed;
        }
      }
      // A page that moves nothing although the hwm says there is more would loop forever.
      if (!isProgress) break;
    }
  }

  /**
   * Every event of `shard` from fromSeq (or fromTimestampNs), then every new one, until
   * return()/break/close(). A fromSeq of hwm + 1 waits for the next event; the iterator
   * throws UNKNOWN_SHARD for a shard outside the map, OUT_OF_RANGE for a fromSeq past
   * hwm + 1 (after retryTimeoutMs) or truncated away, and any other code retrying cannot fix.
   */
  tail(options: TailOptions): ShardTail {
    checkShard(options.shard);
    if (options.fromSeq !== undefined) checkSeq('fromSeq', options.fromSeq);
    if (options.consumer !== undefined) checkConsumerName(options.consumer);
    if (options.autoCommit === true && options.consumer === undefined) throw new TidelogError('BAD_REQUEST', 'autoCommit needs a consumer name');
    if (options.autoCommitIntervalMs !== undefined) nonNegativeOption('autoCommitIntervalMs', options.autoCommitIntervalMs, 0);
    if (options.fromTimestampNs !== undefined && (typeof options.fromTimestampNs !== 'bigint' || options.fromTimestampNs < 0n || options.fromTimestampNs > U64_MAX)) {
      throw new TidelogError('BAD_REQUEST', 'fromTimestampNs must be a u64 bigint', { details: { fromTimestampNs: String(options.fromTimestampNs) } });
    }
    this.checkOpen();
    if (this.tails.size >= this.maxTails) {
      throw new TidelogError('OVERLOADED', `${this.tails.size} tails open, limit maxTails ${this.maxTails}`, { details: { maxTails: this.maxTails } });
    }
    const settings: TailSettings = {
      pageEvents: positiveIntegerOption('pageEvents', options.pageEvents, this.tailSettings.pageEvents),
      maxBufferedFeedMessages: positiveIntegerOption('maxBufferedFeedMessages', options.maxBufferedFeedMessages, this.tailSettings.maxBufferedFeedMessages),
      maxBufferedFeedEvents: positiveIntegerOption('maxBufferedFeedEvents', options.maxBufferedFeedEvents, this.tailSettings.maxBufferedFeedEvents),
      idlePollMs: positiveIntegerOption('idlePollMs', options.idlePollMs, this.tailSettings.idlePollMs),
      retryTimeoutMs: this.tailSettings.retryTimeoutMs,
    };
    const tail: ShardTail = new ShardTail(this.context, options, settings, this.closeController.signal, () => this.tails.delete(tail));
    this.tails.add(tail);
    return tail;
  }

  /**
   * Stores `seq` as the durable consumer's position in `shard` (every seq through it was
   * processed); a tail opened later with this consumer name starts at seq + 1. Resolves once the
   * cluster holds it (it survives node restarts and failovers).
   */
  async commit(options: { consumer: string; shard: number; seq: number }): Promise<void> {
    checkConsumerName(options.consumer);
    checkShard(options.shard);
    this.checkOpen();
    await commitPosition(this.context, options.consumer, options.shard, options.seq, this.context.nowMs() + this.retryTimeoutMs, this.closeController.signal);
  }

  /** The durable consumer's committed position in `shard` (0: none yet; a tail would start at 1). */
  async position(options: { consumer: string; shard: number }): Promise<number> {
    checkConsumerName(options.consumer);
    checkShard(options.shard);
    this.checkOpen();
    return fetchPosition(this.context, options.consumer, options.shard, this.context.nowMs() + this.retryTimeoutMs, this.closeController.signal);
  }

  /** The first seq of `shard` whose batch was sealed at or after timestampNs (hwm + 1 if none). */
  async seek(shard: number, timestampNs: bigint): Promise<number> {
    checkShard(shard);
    this.checkOpen();
    await this.context.cluster.forShard(shard, this.context.nowMs() + this.retryTimeoutMs, this.closeController.signal);
    const request = encodeMessage({ v: 1, t: 'seek', shard, timestampNs });
    const reply = await this.withRetries(async () =>
      decodeReply(await requestBytes(this.transport, this.subjects.shardSeek(shard), request, this.context.requestTimeoutMs), 'sought'),
    );
    return reply.seq;
  }

  /**
   * CRDT signal state of one entity (all signals, or only `signalTypes`), from the node that
   * serves its shard, as a typed view: `(await consumer.state(42n)).signal('view')?.score`.
   * entityId is a u64 bigint or a non-negative safe integer number, else BAD_REQUEST.
   */
  async state(entityId: EntityIdInput, signalTypes?: readonly number[]): Promise<EntityState> {
    const id = toEntityId(entityId);
    const request = encodeMessage({ v: 1, t: 'state', entityId: id.toString(), ...(signalTypes === undefined ? {} : { signalTypes: [...signalTypes] }) });
    const reply = await this.withRetries(async () =>
      decodeReply(await requestBytes(this.transport, this.subjects.state, request, this.context.requestTimeoutMs), 'entity'),
    );
    return entityStateOf(reply);
  }

  /** The shard map and limits, asked now (reads and tails then go by this answer). */
  async info(): Promise<InfoReply> {
    this.checkOpen();
    return this.context.cluster.refresh(this.context.nowMs() + this.retryTimeoutMs, this.closeController.signal);
  }

  /**
   * Every node's status that arrives within timeoutMs (default statusTimeoutMs); [] when no
   * node answers. With maxReplies (e.g. the number of nodes expected) it returns as soon as
   * that many arrived, and timeoutMs only bounds the wait for a node that never answers.
   */
  async status(options: { timeoutMs?: number; maxReplies?: number } = {}): Promise<StatusReply[]> {
    this.checkOpen();
    const timeoutMs = positiveIntegerOption('timeoutMs', options.timeoutMs, this.statusTimeoutMs);
    const replies = await this.transport.requestMany(this.subjects.status, encodeMessage({ v: 1, t: 'status' }), {
      timeoutMs,
      ...(options.maxReplies === undefined ? {} : { maxReplies: options.maxReplies }),
    });
    return replies.map((bytes) => decodeReply(bytes, 'status'));
  }

  /** Ends every tail and read, then closes the transport if this consumer opened it. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      // Durable consumers with autoCommit keep what they processed before the transport goes.
      await Promise.allSettled([...this.tails].map((tail) => tail.commitProcessed()));
      this.closeController.abort();
      await Promise.allSettled([...this.tails].map((tail) => tail.return()));
      if (this.isTransportOwned) await this.transport.close();
    })();
    return this.closing;
  }

  private withRetries<T>(attempt: () => Promise<T>): Promise<T> {
    this.checkOpen();
    return retrying(attempt, { ...this.context, deadlineMs: this.context.nowMs() + this.retryTimeoutMs, signal: this.closeController.signal });
  }

  private checkOpen(): void {
    if (this.closeController.signal.aborted) throw localClosedError('the consumer is closed');
  }
}

export async function createConsumer(options: ConsumerOptions): Promise<Consumer> {
  const connection = await openClientTransport({ ...options, name: options.name ?? 'tidelog-consumer' });
  try {
    return new Consumer(connection.transport, connection.isOwned, connection.namespace, options);
  } catch (error) {
    if (connection.isOwned) await connection.transport.close();
    throw error;
  }
}

function checkShard(shard: number): { shard: number } {
  if (!Number.isInteger(shard) || shard < 0 || shard > 0xffff) {
    throw new TidelogError('BAD_REQUEST', `shard must be an integer 0..65535, got ${String(shard)}`, { details: { shard } });
  }
  return { shard };
}

function checkSeq(name: string, seq: number): number {
  if (!Number.isSafeInteger(seq) || seq < 1) {
    throw new TidelogError('BAD_REQUEST', `${name} must be an integer ≥ 1, got ${String(seq)}`, { details: { [name]: seq } });
  }
  return seq;
}
