// A Jepsen-style history of a chaos run: the runner records every producer call (invoke, then
// ok / fail / unknown) and every consumer read, as it saw them. A call's events are copied
// (callers reuse buffers) and kept packed, and reads sit in packed columns, so a long run costs
// about its event bytes; counts() is kept as the history grows. Misuse (no such op, an op
// completed twice, acks that do not match the events, a read that is not one event) throws
// BAD_REQUEST. The records stay inside the History; the checker (history-check.ts) reaches them
// through `recorded`. ReplicaLog and ShardReplicas describe what the runner hands the checker
// after the run: each replica's committed log and its CRDT state.

import { TidelogError } from '../errors.ts';
import { EVENT_BYTES, checkPackedLength } from '../event.ts';

export type OpOutcome = 'pending' | 'ok' | 'fail' | 'unknown';

export interface HistoryOp {
  id: number;
  process: string;
  invokedMs: number;
  completedMs: number | null;
  outcome: OpOutcome;
  eventCount: number;
  /** The error code of a fail, the reason of an unknown. */
  detail: string | null;
}

export interface HistoryCounts {
  /** Ops invoked, and how they completed (pending: not yet). */
  invoked: number;
  ok: number;
  fail: number;
  unknown: number;
  pending: number;
  invokedEvents: number;
  ackedEvents: number;
  reads: number;
}

/** A leader epoch as given (a positive safe integer), else 0: not known. */
export function knownEpoch(epoch: number | undefined): number {
  return epoch !== undefined && Number.isSafeInteger(epoch) && epoch > 0 ? epoch : 0;
}

export interface Ack {
  shard: number;
  seq: number;
  /** The leader epoch that answered (for the report: which leader acknowledged a lost event). */
  epoch?: number;
}

export interface ReplicaLog {
  nodeId: string;
  /** The replica's commit point; entries hold its committed log from firstSeq to committedSeq, in seq order. */
  committedSeq: number;
  firstSeq: number;
  /** Iterated once. */
  /** `epoch`: the leader epoch of the batch that holds the seq (0 or absent: not known). */
  entries: Iterable<{ seq: number; event: Uint8Array; epoch?: number }>;
  /** The replica's own CRDT state (ShardState.query); must answer synchronously. */
  query(entityId: bigint, signalTypes: readonly number[], atNs: bigint): unknown;
}

export interface ShardReplicas {
  shard: number;
  replicas: ReplicaLog[];
}

export interface OpRecord {
  id: number;
  process: string;
  invokedMs: number;
  completedMs: number | null;
  outcome: OpOutcome;
  detail: string | null;
  /** The call's packed events (a copy: callers reuse buffers). */
  events: Uint8Array;
  ackShards: Int32Array | null;
  ackSeqs: Float64Array | null;
  /** The answering leader's epoch per event (0: not given). */
  ackEpochs: Float64Array | null;
}

/** Reads, packed: one slot per read in three growable columns. */
export class ReadLog {
  count = 0;
  shards = new Int32Array(1024);
  seqs = new Float64Array(1024);
  events = new Uint8Array(1024 * EVENT_BYTES);

  push(shard: number, seq: number, event: Uint8Array): void {
    if (this.count === this.shards.length) {
      const capacity = this.count * 2;
      this.shards = grown(this.shards, new Int32Array(capacity));
      this.seqs = grown(this.seqs, new Float64Array(capacity));
      this.events = grown(this.events, new Uint8Array(capacity * EVENT_BYTES));
    }
    this.shards[this.count] = shard;
    this.seqs[this.count] = seq;
    this.events.set(event, this.count * EVENT_BYTES);
    this.count++;
  }
}

export function grown<T extends { set(source: ArrayLike<number>): void }>(from: ArrayLike<number>, to: T): T {
  to.set(from);
  return to;
}

export const recorded = new WeakMap<History, { records: OpRecord[]; reads: ReadLog }>();

export function misuse(message: string): TidelogError {
  return new TidelogError('BAD_REQUEST', `history: ${message}`);
}

/** The calls and reads of one run, as the runner saw them. */
export class History {
  private readonly records: OpRecord[] = [];
  private readonly reads = new ReadLog();
  private okCount = 0;
  private failCount = 0;
  private unknownCount = 0;
  private ackedCount = 0;
  private invokedEventCount = 0;

  constructor() {
    recorded.set(this, { records: this.records, reads: this.reads });
  }

  /** Records a call about to be made; returns its op id (1, 2, …). */
  invoke(process: string, events: Uint8Array, nowMs: number): number {
    this.invokedEventCount += checkPackedLength(events);
    const id = this.records.length + 1;
    this.records.push({
      id,
      process,
      invokedMs: nowMs,
      completedMs: null,
      outcome: 'pending',
      detail: null,
      events: events.slice(),
      ackShards: null,
      ackSeqs: null,
      ackEpochs: null,
    });
    return id;
  }

  /** The call succeeded: acks[i] is where event i was written. */
  ok(id: number, acks: ReadonlyArray<Ack>, nowMs: number): void {
    const count = this.pending(id).events.byteLength / EVENT_BYTES;
    if (acks.length !== count) throw misuse(`op ${id} has ${count} events but ${acks.length} acks`);
    const ackShards = new Int32Array(count);
    const ackSeqs = new Float64Array(count);
    const ackEpochs = new Float64Array(count);
    for (let index = 0; index < count; index++) {
      const { shard, seq, epoch } = acks[index];
      // seq 0: acknowledged by a session replay whose seqs the node no longer keeps (written
      // once, where is not said): the check then looks for it anywhere in the shard.
      if (!Number.isInteger(shard) || shard < 0 || !Number.isSafeInteger(seq) || seq < 0) {
        throw misuse(`op ${id} ack ${index}: shard ${String(shard)} seq ${String(seq)}`);
      }
      ackShards[index] = shard;
      ackSeqs[index] = seq;
      ackEpochs[index] = knownEpoch(epoch);
    }
    const record = this.complete(id, 'ok', null, nowMs);
    record.ackShards = ackShards;
    record.ackSeqs = ackSeqs;
    record.ackEpochs = ackEpochs;
    this.okCount++;
    this.ackedCount += count;
  }

  /** The call failed definitely: the service says none of it was written. */
  fail(id: number, code: string, nowMs: number): void {
    this.complete(id, 'fail', code, nowMs);
    this.failCount++;
  }

  /** The call's outcome is unknown (timeout, connection lost): it may or may not have been written. */
  unknown(id: number, reason: string, nowMs: number): void {
    this.complete(id, 'unknown', reason, nowMs);
    this.unknownCount++;
  }

  /** A consumer saw `event` at (shard, seq) during the run. */
  read(shard: number, seq: number, event: Uint8Array): void {
    if (event.byteLength !== EVENT_BYTES) throw misuse(`a read holds ${event.byteLength} bytes, not ${EVENT_BYTES}`);
    this.reads.push(shard, seq, event);
  }

  /** The counts so far (cheap: kept as the history grows). */
  counts(): HistoryCounts {
    const invoked = this.records.length;
    return {
      invoked,
      ok: this.okCount,
      fail: this.failCount,
      unknown: this.unknownCount,
      pending: invoked - this.okCount - this.failCount - this.unknownCount,
      invokedEvents: this.invokedEventCount,
      ackedEvents: this.ackedCount,
      reads: this.reads.count,
    };
  }

  /** Every op, in invocation order (without its events). */
  ops(): HistoryOp[] {
    return this.records.map(({ id, process, invokedMs, completedMs, outcome, detail, events }) => ({
      id,
      process,
      invokedMs,
      completedMs,
      outcome,
      eventCount: events.byteLength / EVENT_BYTES,
      detail,
    }));
  }

  private pending(id: number): OpRecord {
    const record = Number.isInteger(id) ? this.records[id - 1] : undefined;
    if (record === undefined) throw misuse(`no op ${String(id)}`);
    if (record.outcome !== 'pending') throw misuse(`op ${id} already completed (${record.outcome})`);
    return record;
  }

  private complete(id: number, outcome: OpOutcome, detail: string | null, nowMs: number): OpRecord {
    const record = this.pending(id);
    record.outcome = outcome;
    record.detail = detail;
    record.completedMs = nowMs;
    return record;
  }
}
