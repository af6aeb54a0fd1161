// The producer: send(events) splits events by shard, hands each shard's part to that
// shard's pipeline (shard-pipeline.ts: batching, session numbers, retries) and resolves
// with one Ack per event, in input order, once every part is durable. Invariants:
// - every event send() accepted is settled exactly once (acked or rejected with a code);
// - memory is bounded: events accepted and not yet settled never exceed maxQueuedEvents.
//
// Backpressure, two thresholds over "events accepted by send and not yet settled":
//   queued < highWaterEvents                    send hands its events to the shards at once
//   highWaterEvents ≤ queued, + n ≤ max         send waits (FIFO) until the events already
//                                               admitted fall below highWaterEvents
//   queued + n > maxQueuedEvents                send rejects with OVERLOADED, queues nothing
// Waiting sends count against maxQueuedEvents too, so the bound holds however many callers
// wait. Inside a shard, batches wait while maxInFlightRequests are on the wire.
//
// Retries: TIMEOUT, DISCONNECTED, NO_RESPONDERS, OVERLOADED, NOT_LEADER, SEQUENCE_GAP and a
// node's CLOSED (shard not serving) are retried with the same requestSeq until
// sendTimeoutMs after the batch closed, then the batch's sends reject TIMEOUT; any other
// code rejects the batch's sends with that code. Our own transport closing rejects
// everything queued with CLOSED at once.
//
// Sessions: every request carries (producerId, sessionEpoch, requestSeq); requestSeq counts
// 1, 2, 3 … per shard. sessionEpoch is a u32 (the node notes it in 4 bytes); it defaults to
// the Unix time in seconds at creation, and createProducer returns only once the clock has
// passed that second, so an instance restarted with the same producerId — however quickly —
// gets a strictly higher epoch and fences the old one (unless the wall clock steps back).
// Seq 0 in an Ack: the node's content dedup found the event a duplicate, or the request was
// a retry older than the node's idempotency store remembers ('applied': written once
// earlier, its seqs forgotten).

import { randomBytes } from 'node:crypto';
import { MAX_ABS_WEIGHT } from '../crdt/weight-micros.ts';
import { TidelogError } from '../errors.ts';
import { EVENT_BYTES, encodeEvents, validatePacked, type SignalEventInput } from '../event.ts';
import { systemClock, type Clock } from '../clock.ts';
import { ShardRouter } from '../shard-map.ts';
import { decodeReply, encodeMessage } from '../transport/codec.ts';
import { MAX_PRODUCER_ID_BYTES, subjects as subjectsOf, type AppendReply, type InfoReply, type SessionTag, type Subjects } from '../transport/messages.ts';
import type { Transport } from '../transport/transport.ts';
import { nonNegativeOption, openClientTransport, positiveIntegerOption, type ClientTransportOptions } from './client-transport.ts';
import { fetchInfo } from './info.ts';
import { localClosedError, requestBytes, type ClientLogger } from './retry.ts';
import { PendingSend, type Ack } from './pending-send.ts';
import { ShardPipeline, zeroCounters, type BatchItem, type PipelineCounters, type ShardPipelineStats } from './shard-pipeline.ts';

export { SendError, type Ack, type SendPartFailure } from './pending-send.ts';

const U32_MAX = 0xffff_ffff;

/** A batch never exceeds this many events unless maxBatchEvents says otherwise. */
export const DEFAULT_MAX_BATCH_EVENTS = 4096;
/** Bytes kept for the envelope (map keys, session, producer id) next to the event bytes. */
const REQUEST_OVERHEAD_BYTES = 1024;

export interface ProducerOptions extends ClientTransportOptions {
  /** 1..64 bytes of UTF-8; default a random id (a new identity each run). */
  producerId?: string;
  /** u32; default the Unix time in seconds at creation; must grow across restarts of one producerId. */
  sessionEpoch?: number;
  /** How long an open batch waits for company (default 0: to the end of this event-loop turn, so sends made in one turn share a request; more requests queue behind the in-flight ones anyway). */
  lingerMs?: number;
  /** Events per request (default min(4096, the node's maxRequestEvents)). */
  maxBatchEvents?: number;
  /** Requests on the wire per shard (default 8). */
  maxInFlightRequests?: number;
  /** Accepted, unsettled events past which send rejects OVERLOADED (default 1 000 000). */
  maxQueuedEvents?: number;
  /** Admitted events past which send waits (default maxQueuedEvents / 2). */
  highWaterEvents?: number;
  /** One try of one request (default 2 000). */
  requestTimeoutMs?: number;
  /** A batch is retried until this long after it closed, then rejected TIMEOUT (default 30 000). */
  sendTimeoutMs?: number;
  /** createProducer asks `{ns}.info` until this deadline (default 10 000). */
  connectTimeoutMs?: number;
  /** First back-off after a failure (default 20); doubles up to maxRetryBackoffMs (default 1 000). */
  retryBackoffMs?: number;
  maxRetryBackoffMs?: number;
  clock?: Clock;
  logger?: ClientLogger;
}

/** The shards' counters summed; queuedEvents also counts events waiting for room. */
export interface ProducerStats extends PipelineCounters {
  /** send() calls waiting for room (over highWaterEvents). */
  waitingSends: number;
  shards: Record<number, ShardPipelineStats>;
}

export class Producer {
  readonly producerId: string;
  readonly sessionEpoch: number;
  /** What the node said at start: shard map and limits. */
  readonly info: InfoReply;
  readonly maxBatchEvents: number;
  private readonly transport: Transport;
  private readonly isTransportOwned: boolean;
  private readonly subjects: Subjects;
  private readonly router: ShardRouter;
  private readonly settings: Required<Pick<ProducerOptions, 'lingerMs' | 'maxInFlightRequests' | 'maxQueuedEvents' | 'highWaterEvents' | 'requestTimeoutMs' | 'sendTimeoutMs' | 'retryBackoffMs' | 'maxRetryBackoffMs'>>;
  private readonly clock: Clock;
  private readonly logger: ClientLogger | undefined;
  private readonly pipelines = new Map<number, ShardPipeline>();
  /** Sends accepted and not settled (bounded: each holds ≥ 1 of maxQueuedEvents events). */
  private readonly unsettled = new Set<PendingSend>();
  /** Sends waiting for room, FIFO. */
  private readonly waiting: PendingSend[] = [];
  private acceptedEvents = 0;
  private admittedEvents = 0;
  private waitingEvents = 0;
  private flushDepth = 0;
  private fatalError: TidelogError | null = null;
  private closing: Promise<void> | null = null;

  /** Use createProducer(). */
  constructor(parts: {
    transport: Transport;
    isTransportOwned: boolean;
    namespace: string;
    info: InfoReply;
    producerId: string;
    sessionEpoch: number;
    options: ProducerOptions;
  }) {
    const { options, info } = parts;
    this.transport = parts.transport;
    this.isTransportOwned = parts.isTransportOwned;
    this.subjects = subjectsOf(parts.namespace);
    this.info = info;
    this.router = ShardRouter.fromSpec(info.router);
    this.producerId = parts.producerId;
    this.sessionEpoch = parts.sessionEpoch;
    this.clock = options.clock ?? systemClock;
    this.logger = options.logger;
    const nodeLimit = Math.max(1, Math.min(info.maxRequestEvents, Math.floor((info.maxRequestBytes - REQUEST_OVERHEAD_BYTES) / EVENT_BYTES)));
    // Above the node's limit every request would fail: clamp rather than fail each send.
    this.maxBatchEvents = Math.min(positiveIntegerOption('maxBatchEvents', options.maxBatchEvents, Math.min(DEFAULT_MAX_BATCH_EVENTS, nodeLimit)), nodeLimit);
    const maxQueuedEvents = positiveIntegerOption('maxQueuedEvents', options.maxQueuedEvents, 1_000_000);
    const highWaterEvents = positiveIntegerOption('highWaterEvents', options.highWaterEvents, Math.max(1, Math.floor(maxQueuedEvents / 2)));
    if (highWaterEvents > maxQueuedEvents) {
      throw new TidelogError('BAD_REQUEST', `highWaterEvents ${highWaterEvents} exceeds maxQueuedEvents ${maxQueuedEvents}`, { details: { highWaterEvents, maxQueuedEvents } });
    }
    this.settings = {
      lingerMs: nonNegativeOption('lingerMs', options.lingerMs, 0),
      maxInFlightRequests: positiveIntegerOption('maxInFlightRequests', options.maxInFlightRequests, 8),
      maxQueuedEvents,
      highWaterEvents,
      requestTimeoutMs: positiveIntegerOption('requestTimeoutMs', options.requestTimeoutMs, 2000),
      sendTimeoutMs: positiveIntegerOption('sendTimeoutMs', options.sendTimeoutMs, 30_000),
      retryBackoffMs: positiveIntegerOption('retryBackoffMs', options.retryBackoffMs, 20),
      maxRetryBackoffMs: positiveIntegerOption('maxRetryBackoffMs', options.maxRetryBackoffMs, 1000),
    };
  }

  /**
   * Appends events (objects, or packed n × 21 bytes that must not change until the promise
   * settles); an object's entityId is a u64 bigint or a non-negative safe integer number.
   * Resolves with one Ack per event in input order once all are durable; rejects with
   * BAD_REQUEST (nothing queued: a malformed event, or a weight beyond ±1e9),
   * OVERLOADED, CLOSED, PRODUCER_FENCED, TIMEOUT or the node's code for the batch that
   * carried them.
   */
  send(events: readonly SignalEventInput[] | Uint8Array): Promise<Ack[]> {
    let packed: Uint8Array;
    let count: number;
    try {
      // The node refuses a weight beyond ±MAX_ABS_WEIGHT: refuse it here, before anything is queued.
      if (events instanceof Uint8Array) {
        count = validatePacked(events, MAX_ABS_WEIGHT);
        packed = events;
      } else if (Array.isArray(events)) {
        packed = encodeEvents(events);
        count = validatePacked(packed, MAX_ABS_WEIGHT);
      } else {
        throw new TidelogError('BAD_REQUEST', 'events must be an array of SignalEvent or packed bytes');
      }
    } catch (error) {
      return Promise.reject(error as Error);
    }
    if (this.fatalError !== null) return Promise.reject(this.fatalError);
    if (this.closing !== null) return Promise.reject(localClosedError('the producer is closed'));
    if (count === 0) return Promise.resolve([]);
    const { maxQueuedEvents, highWaterEvents } = this.settings;
    if (this.acceptedEvents + count > maxQueuedEvents) {
      return Promise.reject(new TidelogError('OVERLOADED', `${this.acceptedEvents} events queued; ${count} more would pass maxQueuedEvents ${maxQueuedEvents}`, {
        details: { queuedEvents: this.acceptedEvents, events: count, maxQueuedEvents },
      }));
    }
    const pending = new PendingSend(packed, count);
    this.acceptedEvents += count;
    this.unsettled.add(pending);
    if (this.waiting.length > 0 || this.admittedEvents >= highWaterEvents) {
      this.waiting.push(pending);
      this.waitingEvents += count;
    } else {
      this.admit(pending);
    }
    return pending.done.promise;
  }

  /** Sends everything accepted so far without lingering; resolves when all of it settled. */
  async flush(): Promise<void> {
    const pendings = [...this.unsettled].map((pending) => pending.done.promise);
    this.flushDepth++;
    try {
      for (const pipeline of this.pipelines.values()) pipeline.closeOpenBatch();
      await Promise.allSettled(pendings);
    } finally {
      this.flushDepth--;
    }
  }

  /** Stops accepting sends, flushes, then closes the transport if this producer opened it. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await this.flush();
      const closed = localClosedError('the producer is closed');
      for (const pipeline of this.pipelines.values()) pipeline.close(closed);
      if (this.isTransportOwned) await this.transport.close();
    })();
    return this.closing;
  }

  stats(): ProducerStats {
    const totals: ProducerStats = { ...zeroCounters(), queuedEvents: this.waitingEvents, waitingSends: this.waiting.length, shards: {} };
    const names = Object.keys(zeroCounters()) as Array<keyof PipelineCounters>;
    for (const [shard, pipeline] of this.pipelines) {
      const stats = pipeline.stats();
      totals.shards[shard] = stats;
      for (const name of names) totals[name] += stats[name];
    }
    return totals;
  }

  // ── internals ─────────────────────────────────────────────────────────────────────

  /** Splits an accepted send by shard and gives each shard its part, in chunks that fit a batch. */
  private admit(pending: PendingSend): void {
    this.admittedEvents += pending.count;
    const { shards, parts, route } = this.router.split(pending.packed);
    pending.setParts(shards, parts, route);
    shards.forEach((shard, part) => {
      const pipeline = this.pipelineOf(shard);
      const events = parts[part];
      const partEvents = events.byteLength / EVENT_BYTES;
      for (let at = 0; at < partEvents; at += this.maxBatchEvents) {
        const count = Math.min(this.maxBatchEvents, partEvents - at);
        pipeline.add(this.itemOf(pending, part, at, events.subarray(at * EVENT_BYTES, (at + count) * EVENT_BYTES), count));
      }
      if (this.flushDepth > 0) pipeline.closeOpenBatch();
    });
  }

  private itemOf(pending: PendingSend, part: number, at: number, events: Uint8Array, count: number): BatchItem {
    return {
      events,
      count,
      acked: (seqs, offset, epoch) => {
        pending.acked(part, at, count, seqs, offset, epoch);
        this.settled(pending, count);
      },
      failed: (error, maybeApplied) => {
        pending.partFailed(part, at, count, error, maybeApplied);
        this.settled(pending, count);
      },
    };
  }

  private settled(pending: PendingSend, count: number): void {
    this.acceptedEvents -= count;
    this.admittedEvents -= count;
    if (pending.settle(count)) this.unsettled.delete(pending);
    this.admitWaiting();
  }

  private admitWaiting(): void {
    while (this.waiting.length > 0 && this.admittedEvents < this.settings.highWaterEvents) {
      const next = this.waiting.shift() as PendingSend;
      this.waitingEvents -= next.count;
      if (this.fatalError !== null) {
        this.rejectWaiting(next, this.fatalError);
        continue;
      }
      this.admit(next);
    }
  }

  private rejectWaiting(pending: PendingSend, error: TidelogError): void {
    this.acceptedEvents -= pending.count;
    this.unsettled.delete(pending);
    pending.failed(error);
  }

  private pipelineOf(shard: number): ShardPipeline {
    let pipeline = this.pipelines.get(shard);
    if (pipeline === undefined) {
      pipeline = new ShardPipeline({
        shard,
        producerId: this.producerId,
        sessionEpoch: this.sessionEpoch,
        maxBatchEvents: this.maxBatchEvents,
        lingerMs: this.settings.lingerMs,
        maxInFlightRequests: this.settings.maxInFlightRequests,
        sendTimeoutMs: this.settings.sendTimeoutMs,
        retryBackoffMs: this.settings.retryBackoffMs,
        maxRetryBackoffMs: this.settings.maxRetryBackoffMs,
        sendAppend: this.sendAppend,
        nowMs: () => this.clock.nowMs(),
        onFenced: (error) => this.fenced(error),
        logger: this.logger,
      });
      this.pipelines.set(shard, pipeline);
    }
    return pipeline;
  }

  private readonly sendAppend = async (shard: number, session: SessionTag, events: Uint8Array): Promise<AppendReply> => {
    const request = encodeMessage({ v: 1, t: 'append', shard, session, events });
    const bytes = await requestBytes(this.transport, this.subjects.shardAppend(shard), request, this.settings.requestTimeoutMs);
    return decodeReply(bytes, 'appended');
  };

  /** A newer instance of this producer id took over: stop everything, for good. */
  private fenced(error: TidelogError): void {
    if (this.fatalError !== null) return;
    this.fatalError = error;
    this.logger?.warn({ producerId: this.producerId, sessionEpoch: this.sessionEpoch }, 'producer fenced by a newer session');
    for (const pending of this.waiting.splice(0)) {
      this.waitingEvents -= pending.count;
      this.rejectWaiting(pending, error);
    }
    for (const pipeline of this.pipelines.values()) pipeline.close(error);
  }
}

export async function createProducer(options: ProducerOptions): Promise<Producer> {
  const producerId = options.producerId ?? `producer-${randomBytes(8).toString('hex')}`;
  const producerIdBytes = Buffer.byteLength(producerId, 'utf8');
  if (typeof producerId !== 'string' || producerIdBytes < 1 || producerIdBytes > MAX_PRODUCER_ID_BYTES) {
    throw new TidelogError('BAD_REQUEST', `producerId must be 1..${MAX_PRODUCER_ID_BYTES} bytes of UTF-8`, { details: { producerIdBytes } });
  }
  const clock = options.clock ?? systemClock;
  const sessionEpoch = options.sessionEpoch ?? Math.floor(clock.nowMs() / 1000);
  if (!Number.isInteger(sessionEpoch) || sessionEpoch < 1 || sessionEpoch > U32_MAX) {
    throw new TidelogError('BAD_REQUEST', `sessionEpoch must be an integer 1..${U32_MAX}, got ${sessionEpoch}`, { details: { sessionEpoch } });
  }
  // A default epoch is used only once its second is over: the next instance's is higher.
  const epochReady = options.sessionEpoch === undefined ? delay(Math.min(1000, (sessionEpoch + 1) * 1000 - clock.nowMs())) : Promise.resolve();
  const connection = await openClientTransport({ ...options, name: options.name ?? producerId });
  try {
    await epochReady;
    const info = await fetchInfo(connection.transport, subjectsOf(connection.namespace), {
      requestTimeoutMs: options.requestTimeoutMs ?? 2000,
      deadlineMs: clock.nowMs() + (options.connectTimeoutMs ?? 10_000),
      nowMs: () => clock.nowMs(),
      retryBackoffMs: options.retryBackoffMs ?? 20,
      maxRetryBackoffMs: options.maxRetryBackoffMs ?? 1000,
    });
    return new Producer({ transport: connection.transport, isTransportOwned: connection.isOwned, namespace: connection.namespace, info, producerId, sessionEpoch, options });
  } catch (error) {
    if (connection.isOwned) await connection.transport.close();
    throw error;
  }
}

function delay(ms: number): Promise<void> {
  return ms <= 0 ? Promise.resolve() : new Promise((resolve) => setTimeout(resolve, ms));
}
