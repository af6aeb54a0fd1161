// A scripted tidelog node on the InProcessTransport, for client tests: an in-memory log per
// shard, producer sessions with the real node's rules, a feed, and switches that inject
// the failures a client must survive (lost replies, lost requests, error replies, held
// requests, skipped feed messages). It speaks the real codec, so what passes here is what
// the wire carries. Invariant: every seq it acknowledges is in its log exactly once.
//
// Lost requests and lost replies end in TIMEOUT sent by the node lostReplyTimeoutMs later,
// not in the client's own request timeout: clients under test use request timeouts far
// above any delivery delay, so a healthy reply slowed by a busy machine is never taken for
// a lost one. The bus delivers in publish order, so every reply the node sent before it
// "timed out" a request still reaches the client first, as it would on a real wire.
//
// Session rules (as the real node's session store): per (producerId, shard) an epoch and a
// high-water requestSeq. A lower epoch is PRODUCER_FENCED; a higher one starts afresh at 0.
// requestSeq = hwm + 1 is appended ('new'); ≤ hwm is answered from memory ('replayed') or,
// once forgotten, 'applied'; > hwm + 1 is SEQUENCE_GAP. Validation errors come first and
// consume nothing.

import { TidelogError, isTidelogError } from '../../src/errors.ts';
import { EVENT_BYTES, decodeEvents, encodeEvents, type SignalEvent } from '../../src/event.ts';
import { ShardRouter } from '../../src/shard-map.ts';
import { decodeRequest, encodeMessage, errorReply, seqsToRuns } from '../../src/transport/codec.ts';
import { InProcessTransport } from '../../src/transport/in-process.ts';
import {
  DEFAULT_MAX_REQUEST_BYTES,
  DEFAULT_MAX_REQUEST_EVENTS,
  subjects as subjectsOf,
  type ReadBatch,
  type Reply,
  type RouterSpec,
  type SessionTag,
  type Subjects,
} from '../../src/transport/messages.ts';
import type { Subscription, TransportMessage } from '../../src/transport/transport.ts';

export type Endpoint = 'append' | 'read' | 'seek' | 'info' | 'state' | 'status';

export interface FakeNodeOptions {
  /** Share a bus with the clients by passing their transport's bus; default a new transport. */
  transport?: InProcessTransport;
  namespace?: string;
  router?: RouterSpec;
  maxRequestEvents?: number;
  maxRequestBytes?: number;
  /** Leader epoch stamped on acks and batches (default 1). */
  epoch?: number;
  /** Signal types answered with UNKNOWN_SIGNAL_TYPE (default [255]). */
  unknownSignalTypes?: number[];
  /** Results remembered per session for replays (default 1 000); older retries get 'applied'. */
  rememberedRequests?: number;
  /** Timestamp of the first batch, and the step between batches (defaults 1e18, 1e9 ns). */
  firstTimestampNs?: bigint;
  timestampStepNs?: bigint;
  /** A lost request or reply is answered TIMEOUT this long after it arrived (default 20). */
  lostReplyTimeoutMs?: number;
}

export interface RecordedRequest {
  endpoint: Endpoint;
  shard: number | null;
  session: SessionTag | null;
  eventCount: number;
  fromSeq: number | null;
}

interface Session {
  epoch: number;
  hwm: number;
  /** requestSeq → runs, oldest first (insertion order). */
  results: Map<number, number[]>;
}

type Fault =
  | { kind: 'drop-reply' }
  | { kind: 'ignore' }
  | { kind: 'fail'; code: string }
  | { kind: 'delay'; delayMs: number }
  | { kind: 'lag'; lagEvents: number };

/** Requests kept in `requests`: far above what a unit test sends. */
const MAX_RECORDED_REQUESTS = 100_000;

export class FakeNode {
  readonly transport: InProcessTransport;
  readonly namespace: string;
  readonly subjects: Subjects;
  readonly router: ShardRouter;
  readonly requests: RecordedRequest[] = [];
  /** Called before a read is answered (a test appends here to race the tail). */
  beforeRead: ((shard: number, fromSeq: number) => void) | null = null;
  private readonly options: Required<Omit<FakeNodeOptions, 'transport' | 'namespace' | 'router'>>;
  private readonly logs = new Map<number, ReadBatch[]>();
  private readonly sessions = new Map<string, Session>();
  private readonly faults = new Map<Endpoint, Fault[]>();
  /** Shards whose appends are answered with a code, not applied, until clearFaults(). */
  private readonly failingShards = new Map<number, string>();
  private readonly held: Array<() => void> = [];
  private isHolding = false;
  private feedToSkip = 0;
  private nextTimestampNs: bigint;
  private readonly subscriptions: Subscription[] = [];
  /** TIMEOUT answers not sent yet; stop() cancels them. */
  private readonly lostReplyTimers = new Set<NodeJS.Timeout>();

  constructor(options: FakeNodeOptions = {}) {
    this.transport = options.transport ?? new InProcessTransport();
    this.namespace = options.namespace ?? 'test';
    this.subjects = subjectsOf(this.namespace);
    this.router = ShardRouter.fromSpec(options.router ?? { strategy: 'hash', shards: 2 });
    this.options = {
      maxRequestEvents: options.maxRequestEvents ?? DEFAULT_MAX_REQUEST_EVENTS,
      maxRequestBytes: options.maxRequestBytes ?? DEFAULT_MAX_REQUEST_BYTES,
      epoch: options.epoch ?? 1,
      unknownSignalTypes: options.unknownSignalTypes ?? [255],
      rememberedRequests: options.rememberedRequests ?? 1000,
      firstTimestampNs: options.firstTimestampNs ?? 1_000_000_000_000_000_000n,
      timestampStepNs: options.timestampStepNs ?? 1_000_000_000n,
      lostReplyTimeoutMs: options.lostReplyTimeoutMs ?? 20,
    };
    this.nextTimestampNs = this.options.firstTimestampNs;
    for (const shard of this.router.shards) this.logs.set(shard, []);
    const on = (subject: string, endpoint: Endpoint, shard: number | null) =>
      this.subscriptions.push(this.transport.subscribe(subject, (message) => this.receive(endpoint, shard, message)));
    on(this.subjects.info, 'info', null);
    on(this.subjects.state, 'state', null);
    on(this.subjects.status, 'status', null);
    for (const shard of this.router.shards) {
      on(this.subjects.shardAppend(shard), 'append', shard);
      on(this.subjects.shardRead(shard), 'read', shard);
      on(this.subjects.shardSeek(shard), 'seek', shard);
    }
  }

  // ── switches ──────────────────────────────────────────────────────────────────────

  /** The next `count` requests are applied but their replies are lost (the client gets TIMEOUT). */
  dropReplies(count: number, endpoint: Endpoint = 'append'): void {
    this.addFaults(endpoint, count, { kind: 'drop-reply' });
  }

  /** The next `count` requests are lost before the node sees them (the client gets TIMEOUT). */
  ignoreRequests(count: number, endpoint: Endpoint = 'append'): void {
    this.addFaults(endpoint, count, { kind: 'ignore' });
  }

  /** The next `count` requests are answered with `code`, not applied. */
  failRequests(count: number, code: string, endpoint: Endpoint = 'append'): void {
    this.addFaults(endpoint, count, { kind: 'fail', code });
  }

  /** Every append to `shard` is answered with `code`, not applied, until clearFaults(). */
  failShard(shard: number, code: string): void {
    this.failingShards.set(shard, code);
  }

  /** The next `count` requests are handled after delayMs. */
  delayRequests(count: number, delayMs: number, endpoint: Endpoint = 'append'): void {
    this.addFaults(endpoint, count, { kind: 'delay', delayMs });
  }

  /**
   * The next `count` reads are answered as a follower `lagEvents` behind the log would answer
   * them: its hwm that much lower, so a read past it is OUT_OF_RANGE.
   */
  lagReads(count: number, lagEvents: number): void {
    this.addFaults('read', count, { kind: 'lag', lagEvents });
  }

  /** Forgets every pending fault. */
  clearFaults(): void {
    this.faults.clear();
    this.failingShards.clear();
  }

  /** Appends wait (unhandled, in order) until release(). */
  hold(): void {
    this.isHolding = true;
  }

  release(): void {
    this.isHolding = false;
    for (const handle of this.held.splice(0)) handle();
  }

  get heldRequests(): number {
    return this.held.length;
  }

  /** The next `count` durable batches are not published on the feed. */
  skipFeed(count: number): void {
    this.feedToSkip += count;
  }

  // ── the log ───────────────────────────────────────────────────────────────────────

  /** Appends as another writer would (no session); publishes the feed. Returns the first seq. */
  appendDirect(shard: number, events: readonly SignalEvent[] | Uint8Array): number {
    const packed = events instanceof Uint8Array ? events : encodeEvents(events);
    return this.commit(shard, packed);
  }

  lastSeq(shard: number): number {
    const log = this.logOf(shard);
    const last = log[log.length - 1];
    return last === undefined ? 0 : last.firstSeq + last.events.byteLength / EVENT_BYTES - 1;
  }

  /** Every event of a shard in seq order. */
  events(shard: number): SignalEvent[] {
    return this.logOf(shard).flatMap((batch) => decodeEvents(batch.events));
  }

  batches(shard: number): readonly ReadBatch[] {
    return this.logOf(shard);
  }

  appendRequests(shard?: number): RecordedRequest[] {
    return this.requests.filter((request) => request.endpoint === 'append' && (shard === undefined || request.shard === shard));
  }

  stop(): void {
    for (const subscription of this.subscriptions) subscription.unsubscribe();
    for (const timer of this.lostReplyTimers) clearTimeout(timer);
    this.lostReplyTimers.clear();
  }

  // ── handling ──────────────────────────────────────────────────────────────────────

  private receive(endpoint: Endpoint, shard: number | null, message: TransportMessage): void {
    const fault = this.faults.get(endpoint)?.shift();
    if (fault?.kind === 'ignore') {
      this.timeOut(message.reply);
      return;
    }
    const handle = (): void => {
      const answer = this.answer(endpoint, shard, message.data, fault);
      if (answer === null) this.timeOut(message.reply);
      else if (message.reply !== null) this.transport.publish(message.reply, encodeMessage(answer));
    };
    if (fault?.kind === 'delay') setTimeout(handle, fault.delayMs);
    else if (endpoint === 'append' && this.isHolding) this.held.push(handle);
    else handle();
  }

  /** The reply to send, or null when it is to be lost. */
  private answer(endpoint: Endpoint, shard: number | null, data: Uint8Array, fault: Fault | undefined): Reply | null {
    try {
      const limits = { maxRequestEvents: this.options.maxRequestEvents, maxRequestBytes: this.options.maxRequestBytes };
      let reply: Reply;
      switch (endpoint) {
        case 'append': {
          const request = decodeRequest(data, 'append', limits);
          this.record({ endpoint, shard, session: request.session ?? null, eventCount: request.events.byteLength / EVENT_BYTES, fromSeq: null });
          if (fault?.kind === 'fail') throw new TidelogError(fault.code as TidelogError['code'], 'injected by the fake node');
          const shardCode = this.failingShards.get(shard as number);
          if (shardCode !== undefined) throw new TidelogError(shardCode as TidelogError['code'], `shard ${shard} fails (the fake node)`);
          reply = this.append(shard as number, request.shard, request.events, request.session);
          break;
        }
        case 'read': {
          const request = decodeRequest(data, 'read', limits);
          this.record({ endpoint, shard, session: null, eventCount: request.maxEvents, fromSeq: request.fromSeq });
          if (fault?.kind === 'fail') throw new TidelogError(fault.code as TidelogError['code'], 'injected by the fake node');
          this.beforeRead?.(request.shard, request.fromSeq);
          const hwm = Math.max(0, this.lastSeq(request.shard) - (fault?.kind === 'lag' ? fault.lagEvents : 0));
          reply = { v: 1, t: 'batches', shard: request.shard, ...this.read(request.shard, request.fromSeq, request.maxEvents, hwm) };
          break;
        }
        case 'seek': {
          const request = decodeRequest(data, 'seek', limits);
          this.record({ endpoint, shard, session: null, eventCount: 0, fromSeq: null });
          if (fault?.kind === 'fail') throw new TidelogError(fault.code as TidelogError['code'], 'injected by the fake node');
          const found = this.logOf(request.shard).find((batch) => batch.timestampNs >= request.timestampNs);
          reply = { v: 1, t: 'sought', shard: request.shard, seq: found?.firstSeq ?? this.lastSeq(request.shard) + 1 };
          break;
        }
        case 'info':
          decodeRequest(data, 'info', limits);
          this.record({ endpoint, shard: null, session: null, eventCount: 0, fromSeq: null });
          if (fault?.kind === 'fail') throw new TidelogError(fault.code as TidelogError['code'], 'injected by the fake node');
          reply = {
            v: 1,
            t: 'info',
            namespace: this.namespace,
            router: this.router.toSpec(),
            shards: this.router.shards,
            maxRequestEvents: this.options.maxRequestEvents,
            maxRequestBytes: this.options.maxRequestBytes,
          };
          break;
        case 'state': {
          const request = decodeRequest(data, 'state', limits);
          this.record({ endpoint, shard: null, session: null, eventCount: 0, fromSeq: null });
          reply = this.state(BigInt(request.entityId), request.signalTypes);
          break;
        }
        case 'status':
          decodeRequest(data, 'status', limits);
          this.record({ endpoint, shard: null, session: null, eventCount: 0, fromSeq: null });
          reply = {
            v: 1,
            t: 'status',
            nodeId: 'fake',
            uptimeMs: 1,
            state: 'serving',
            sessions: this.sessions.size,
            shards: this.router.shards.map((shard) => ({
              shard,
              role: 'leader' as const,
              epoch: this.options.epoch,
              lastSeq: this.lastSeq(shard),
              hwm: this.lastSeq(shard),
              checkpointSeq: 0,
              pendingEvents: 0,
              segments: 1,
              appliedSeq: this.lastSeq(shard),
              entities: 0,
            })),
          };
          break;
      }
      return fault?.kind === 'drop-reply' ? null : reply;
    } catch (error) {
      return fault?.kind === 'drop-reply' ? null : errorReply(error);
    }
  }

  private append(shard: number, requestShard: number | undefined, packed: Uint8Array, session: SessionTag | undefined): Reply {
    if (requestShard !== shard) throw new TidelogError('WRONG_SHARD', `request names shard ${String(requestShard)} on shard ${shard}`);
    const count = packed.byteLength / EVENT_BYTES;
    for (let index = 0; index < count; index++) {
      if (this.router.shardOfPacked(packed, index) !== shard) throw new TidelogError('WRONG_SHARD', `event ${index} belongs elsewhere`);
      if (this.options.unknownSignalTypes.includes(packed[index * EVENT_BYTES + 8])) {
        throw new TidelogError('UNKNOWN_SIGNAL_TYPE', `event ${index}: unknown signal type`);
      }
    }
    const epoch = this.options.epoch;
    if (session === undefined) {
      const firstSeq = this.commit(shard, packed);
      return { v: 1, t: 'appended', parts: [{ shard, epoch, runs: [firstSeq, count] }], outcome: 'new' };
    }
    if (session.sessionEpoch > 0xffff_ffff) throw new TidelogError('BAD_REQUEST', 'sessionEpoch must be a u32 (the node notes it in 4 bytes)');
    const key = `${session.producerId}/${shard}`;
    let state = this.sessions.get(key);
    if (state !== undefined && session.sessionEpoch < state.epoch) {
      throw new TidelogError('PRODUCER_FENCED', `epoch ${session.sessionEpoch} < ${state.epoch}`);
    }
    if (state === undefined || session.sessionEpoch > state.epoch) {
      state = { epoch: session.sessionEpoch, hwm: 0, results: new Map() };
      this.sessions.set(key, state);
    }
    if (session.requestSeq <= state.hwm) {
      const runs = state.results.get(session.requestSeq);
      if (runs !== undefined) return { v: 1, t: 'appended', parts: [{ shard, epoch, runs }], outcome: 'replayed' };
      return { v: 1, t: 'appended', parts: [{ shard, epoch, runs: [0, count] }], outcome: 'applied' };
    }
    if (session.requestSeq > state.hwm + 1) {
      throw new TidelogError('SEQUENCE_GAP', `expected requestSeq ${state.hwm + 1}, got ${session.requestSeq}`);
    }
    const firstSeq = this.commit(shard, packed);
    const runs = seqsToRuns(Array.from({ length: count }, (_, index) => firstSeq + index));
    state.hwm = session.requestSeq;
    state.results.set(session.requestSeq, runs);
    if (state.results.size > this.options.rememberedRequests) state.results.delete(state.results.keys().next().value as number);
    return { v: 1, t: 'appended', parts: [{ shard, epoch, runs }], outcome: 'new' };
  }

  private commit(shard: number, packed: Uint8Array): number {
    const firstSeq = this.lastSeq(shard) + 1;
    const batch: ReadBatch = { firstSeq, epoch: this.options.epoch, timestampNs: this.nextTimestampNs, events: packed.slice() };
    this.nextTimestampNs += this.options.timestampStepNs;
    this.logOf(shard).push(batch);
    if (this.feedToSkip > 0) {
      this.feedToSkip--;
    } else {
      this.transport.publish(this.subjects.shardFeed(shard), encodeMessage({ v: 1, t: 'feed', shard, ...batch, hwm: this.lastSeq(shard) }));
    }
    return firstSeq;
  }

  private read(shard: number, fromSeq: number, maxEvents: number, hwm: number): { batches: ReadBatch[]; hwm: number; firstSeq: number } {
    if (fromSeq > hwm + 1) {
      throw new TidelogError('OUT_OF_RANGE', `fromSeq ${fromSeq} is beyond ${hwm}`, { details: { shard, fromSeq, hwm } });
    }
    const batches: ReadBatch[] = [];
    let remaining = Math.min(maxEvents, hwm - fromSeq + 1); // as the node: nothing past its hwm
    for (const batch of this.logOf(shard)) {
      if (remaining <= 0) break;
      const count = batch.events.byteLength / EVENT_BYTES;
      const endSeq = batch.firstSeq + count;
      if (endSeq <= fromSeq) continue;
      const skip = Math.max(0, fromSeq - batch.firstSeq);
      const take = Math.min(count - skip, remaining);
      batches.push({ ...batch, firstSeq: batch.firstSeq + skip, events: batch.events.subarray(skip * EVENT_BYTES, (skip + take) * EVENT_BYTES) });
      remaining -= take;
    }
    return { batches, hwm, firstSeq: 1 };
  }

  private state(entityId: bigint, signalTypes: number[] | undefined): Reply {
    const shard = this.router.shardOf(entityId);
    const counts = new Map<number, number>();
    for (const event of this.events(shard)) {
      if (event.entityId !== entityId) continue;
      if (signalTypes !== undefined && !signalTypes.includes(event.signalType)) continue;
      counts.set(event.signalType, (counts.get(event.signalType) ?? 0) + 1);
    }
    return {
      v: 1,
      t: 'entity',
      entityId: entityId.toString(),
      shard,
      appliedSeq: this.lastSeq(shard),
      signals: [...counts].map(([signalType, count]) => ({
        signalType,
        name: `type-${signalType}`,
        score: count,
        count,
        total: count,
        isHidden: false,
        lastUpdateNs: 0n,
      })),
    };
  }

  /** What the client would see of a lost request or reply: TIMEOUT, after lostReplyTimeoutMs. */
  private timeOut(reply: string | null): void {
    if (reply === null) return;
    const timer = setTimeout(() => {
      this.lostReplyTimers.delete(timer);
      const error = new TidelogError('TIMEOUT', `the fake node lost this request or its reply ${this.options.lostReplyTimeoutMs} ms ago`);
      try {
        this.transport.publish(reply, encodeMessage(errorReply(error)));
      } catch (thrown) {
        if (!isTidelogError(thrown, 'CLOSED')) throw thrown; // closed meanwhile: nobody waits any more
      }
    }, this.options.lostReplyTimeoutMs);
    this.lostReplyTimers.add(timer);
  }

  private record(request: RecordedRequest): void {
    if (this.requests.length < MAX_RECORDED_REQUESTS) this.requests.push(request);
  }

  private addFaults(endpoint: Endpoint, count: number, fault: Fault): void {
    const list = this.faults.get(endpoint) ?? [];
    for (let index = 0; index < count; index++) list.push(fault);
    this.faults.set(endpoint, list);
  }

  private logOf(shard: number): ReadBatch[] {
    const log = this.logs.get(shard);
    if (log === undefined) throw new TidelogError('UNKNOWN_SHARD', `shard ${shard} is not served here`);
    return log;
  }
}

// ── helpers the client tests share ───────────────────────────────────────────────────

/** `count` events whose entities all route to `shard`; `tag` makes them distinct per call. */
export function eventsForShard(router: ShardRouter, shard: number, count: number, tag = 0): SignalEvent[] {
  const events: SignalEvent[] = [];
  for (let entityId = 1n; events.length < count; entityId++) {
    if (router.shardOf(entityId) !== shard) continue;
    events.push({ entityId, signalType: 1, weight: 1, timestampNs: BigInt(tag) * 1_000_000n + BigInt(events.length) });
  }
  return events;
}

/** Lets queued deliveries and timers of 0 ms run: `turns` rounds of setImmediate. */
export async function settle(turns = 5): Promise<void> {
  for (let turn = 0; turn < turns; turn++) await new Promise((resolve) => setImmediate(resolve));
}

export { expectRejection } from './expect-code.ts';
