// A Jepsen-style history of a chaos run, and the checker that holds it against what the
// replicas hold afterwards. The runner records every producer call (invoke, then ok / fail /
// unknown) and every consumer read; after healing and stopping the nodes it opens each
// replica's shard offline and calls checkHistory. The checker is pure and deterministic (no
// I/O, no timers, no randomness): the same history and logs give the same report, and the
// report stays small (every check keeps its full count but at most 10 examples).
//
// What "correct" means here, check by check:
//   lost            an ok event is at its acked (shard, seq) with the same 21 bytes;
//                   below a retained log's firstSeq it is counted as not checkable instead
//   duplicated      no event content sits at two seqs (in one shard or across shards)
//   phantom         every event in a log was sent by some call
//   orderViolations each replica's entries run firstSeq, firstSeq + 1, … committedSeq
//   divergentShards a shard's replicas agree on committedSeq and on the bytes at every seq
//                   both hold (compared against the reference image as they stream by: the
//                   first differing seq is exact and no digest is needed)
//   failedLanded    no event of a definitely failed call is in a log
//   staleReads      every read matches the final log at its (shard, seq), within the commit point
//   stateMismatches see "state" below
// Every event the runner sends has unique content (its timestampNs is a global counter), so
// an event is named by its 21 bytes. A shard's reference log is the replica with the greatest
// committedSeq (the first on a tie: the first replica when they agree); the content checks
// (lost, duplicated, phantom, failed landed, unknown outcomes, reads) read that one.
//
// State: a replica's state is folded from batches stamped with the leader's seal time and
// epoch (shard-state.ts), which the checker does not know. Of a SignalStateView
//   count  (all-time event count)          depends only on which events were folded,
//   total  (PN-counter weight sum, exact)  the same,
//   score  (decayed score at atNs)         on the events, their own timestampNs and the seq
//                                          order they fold in (score-column.ts), and is
//                                          computed by the same arithmetic in the same order,
//                                          so it is bit-identical, not just close;
//   lastUpdateNs (the event of the greatest HLC) and isHidden (LWW flags by HLC) depend on the
//   batch stamps: a new leader sealing with a clock behind the old one reorders HLCs.
// So for every entity the reference logs touch (all of them up to maxStateEntities, 100k by
// default, else a deterministic sample by hash): each replica's whole query(entity, every
// signal type, atNs) must equal the first replica's (deep equality, bigints included), and
// count, total and score of every signal type must equal a model: a fresh ShardState folded
// from the shard's reference log with stamps of its own. The model is skipped for a shard
// whose log does not start at seq 1 (retention dropped events the state still counts) or has
// a gap; the replicas are still compared with one another. One mismatch is counted per
// (entity, replica).

import { defaultSignalSchema, type SignalSchema } from '../crdt/index.ts';
import { TidelogError } from '../errors.ts';
import { EVENT_BYTES, checkPackedLength, decodeEvent } from '../event.ts';
import { finalMix, mixWord } from '../murmur.ts';
import { ShardState } from '../node/shard-state.ts';

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

export interface Ack {
  shard: number;
  seq: number;
}

export interface ReplicaLog {
  nodeId: string;
  /** The replica's commit point; entries hold its committed log from firstSeq to committedSeq, in seq order. */
  committedSeq: number;
  firstSeq: number;
  /** Iterated once. */
  entries: Iterable<{ seq: number; event: Uint8Array }>;
  /** The replica's own CRDT state (ShardState.query); must answer synchronously. */
  query(entityId: bigint, signalTypes: readonly number[], atNs: bigint): unknown;
}

export interface ShardReplicas {
  shard: number;
  replicas: ReplicaLog[];
}

export interface CheckOptions {
  /** When decay and windows are evaluated; default: the greatest timestampNs sent. */
  atNs?: bigint;
  /** The nodes' signal schema; default: config/signals.json (the one file read, and only then). */
  schema?: SignalSchema;
  /** Entities whose state is compared; default 100 000. */
  maxStateEntities?: number;
}

const ERROR_COUNTS = [
  'lost',
  'duplicated',
  'phantom',
  'orderViolations',
  'divergentShards',
  'failedLanded',
  'staleReads',
  'stateMismatches',
] as const;
export type CheckName = (typeof ERROR_COUNTS)[number];

export interface HistoryReport extends Record<CheckName, number> {
  ops: { invoked: number; ok: number; fail: number; unknown: number; pending: number };
  events: { acked: number; inLog: number; unknownLanded: number; unknownNotLanded: number; notCheckable: number };
  readsChecked: number;
  entitiesChecked: number;
  /** Per check (keys as the counts), at most 10 lines each. */
  examples: Record<CheckName, string[]>;
  /** What could not be checked and why (at most 20 lines). */
  notes: string[];
  /** The query time of the state check, as a decimal string. */
  atNs: string;
  /** True iff every error count is 0. */
  ok: boolean;
}

const MAX_EXAMPLES = 10;
const MAX_NOTES = 20;
const DEFAULT_MAX_STATE_ENTITIES = 100_000;
/** A reference image past this many events would not fit in memory anyway. */
const MAX_LOG_EVENTS = 2 ** 28;
const MODEL_BATCH_EVENTS = 65_536;
/** Phantoms remembered to spot phantom duplicates; a log of garbage must not exhaust memory. */
const MAX_PHANTOMS_TRACKED = 100_000;
const OUTCOME_OK = 1;
const OUTCOME_FAIL = 2;
const OUTCOME_MAYBE = 4; // unknown, or never completed

interface OpRecord {
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
}

/** Reads, packed: one slot per read in three growable columns. */
class ReadLog {
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

function grown<T extends { set(source: ArrayLike<number>): void }>(from: ArrayLike<number>, to: T): T {
  to.set(from);
  return to;
}

const recorded = new WeakMap<History, { records: OpRecord[]; reads: ReadLog }>();

function misuse(message: string): TidelogError {
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
    });
    return id;
  }

  /** The call succeeded: acks[i] is where event i was written. */
  ok(id: number, acks: ReadonlyArray<Ack>, nowMs: number): void {
    const count = this.pending(id).events.byteLength / EVENT_BYTES;
    if (acks.length !== count) throw misuse(`op ${id} has ${count} events but ${acks.length} acks`);
    const ackShards = new Int32Array(count);
    const ackSeqs = new Float64Array(count);
    for (let index = 0; index < count; index++) {
      const { shard, seq } = acks[index];
      // seq 0: acknowledged by a session replay whose seqs the node no longer keeps (written
      // once, where is not said): the check then looks for it anywhere in the shard.
      if (!Number.isInteger(shard) || shard < 0 || !Number.isSafeInteger(seq) || seq < 0) {
        throw misuse(`op ${id} ack ${index}: shard ${String(shard)} seq ${String(seq)}`);
      }
      ackShards[index] = shard;
      ackSeqs[index] = seq;
    }
    const record = this.complete(id, 'ok', null, nowMs);
    record.ackShards = ackShards;
    record.ackSeqs = ackSeqs;
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

// ---- the checker ----

/** Counts and examples, per check. */
class Findings {
  readonly counts = Object.fromEntries(ERROR_COUNTS.map((name) => [name, 0])) as Record<CheckName, number>;
  readonly examples = Object.fromEntries(ERROR_COUNTS.map((name) => [name, [] as string[]])) as Record<CheckName, string[]>;
  readonly notes: string[] = [];

  /** Counts one finding; the line is built only while examples are still kept. */
  flag(check: CheckName, line: () => string): void {
    this.counts[check]++;
    if (this.examples[check].length < MAX_EXAMPLES) this.examples[check].push(line());
  }

  note(line: string): void {
    if (this.notes.length < MAX_NOTES) this.notes.push(line);
  }
}

function hashEvent(bytes: Uint8Array, offset: number): number {
  let hash = EVENT_BYTES;
  for (let at = offset; at < offset + 20; at += 4) {
    hash = mixWord(hash, bytes[at] | (bytes[at + 1] << 8) | (bytes[at + 2] << 16) | (bytes[at + 3] << 24));
  }
  return finalMix(mixWord(hash, bytes[offset + 20]));
}

function isSameEvent(a: Uint8Array, aOffset: number, b: Uint8Array, bOffset: number): boolean {
  for (let index = 0; index < EVENT_BYTES; index++) if (a[aOffset + index] !== b[bOffset + index]) return false;
  return true;
}

function u32At(bytes: Uint8Array, offset: number): number {
  return (bytes[offset] | (bytes[offset + 1] << 8) | (bytes[offset + 2] << 16) | (bytes[offset + 3] << 24)) >>> 0;
}

function describeEvent(bytes: Uint8Array, offset: number): string {
  const event = decodeEvent(bytes, offset);
  return `event {entity ${event.entityId}, type ${event.signalType}, weight ${event.weight}, ts ${event.timestampNs}}`;
}

/**
 * Every event sent, packed in one buffer and indexed by content (open addressing, no object per
 * event). Events sent twice share a canonical index: the first sending's.
 */
class SentEvents {
  readonly bytes: Uint8Array;
  /** Record index of each event. */
  readonly recordOf: Int32Array;
  readonly canonicalOf: Int32Array;
  /** Per canonical event: OUTCOME_* bits of every call that sent it. */
  readonly outcomes: Uint8Array;
  /** Per canonical event: where it sits in the reference logs (seq 0: nowhere). */
  readonly landedShard: Int32Array;
  readonly landedSeq: Float64Array;
  readonly maxTimestampNs: bigint;
  private readonly slots: Int32Array;

  constructor(records: readonly OpRecord[]) {
    let total = 0;
    for (const record of records) total += record.events.byteLength / EVENT_BYTES;
    this.bytes = new Uint8Array(total * EVENT_BYTES);
    this.recordOf = new Int32Array(total);
    this.canonicalOf = new Int32Array(total);
    this.outcomes = new Uint8Array(total);
    this.landedShard = new Int32Array(total);
    this.landedSeq = new Float64Array(total);
    let slotCount = 1024;
    while (slotCount < total * 2) slotCount *= 2;
    this.slots = new Int32Array(slotCount);
    let maxHi = 0;
    let maxLo = 0;
    let next = 0;
    records.forEach((record, recordIndex) => {
      const bit = record.outcome === 'ok' ? OUTCOME_OK : record.outcome === 'fail' ? OUTCOME_FAIL : OUTCOME_MAYBE;
      this.bytes.set(record.events, next * EVENT_BYTES);
      for (let end = next + record.events.byteLength / EVENT_BYTES; next < end; next++) {
        const offset = next * EVENT_BYTES;
        const hi = u32At(this.bytes, offset + 17);
        const lo = u32At(this.bytes, offset + 13);
        if (hi > maxHi || (hi === maxHi && lo > maxLo)) [maxHi, maxLo] = [hi, lo];
        this.recordOf[next] = recordIndex;
        const canonical = this.insert(next);
        this.canonicalOf[next] = canonical;
        this.outcomes[canonical] |= bit;
      }
    });
    this.maxTimestampNs = (BigInt(maxHi) << 32n) | BigInt(maxLo);
  }

  /** The canonical index of the event at `offset` of `bytes`, or −1 if it was never sent. */
  find(bytes: Uint8Array, offset: number): number {
    const mask = this.slots.length - 1;
    for (let slot = hashEvent(bytes, offset) & mask; ; slot = (slot + 1) & mask) {
      const entry = this.slots[slot];
      if (entry === 0) return -1;
      if (isSameEvent(this.bytes, (entry - 1) * EVENT_BYTES, bytes, offset)) return entry - 1;
    }
  }

  private insert(index: number): number {
    const mask = this.slots.length - 1;
    const offset = index * EVENT_BYTES;
    for (let slot = hashEvent(this.bytes, offset) & mask; ; slot = (slot + 1) & mask) {
      const entry = this.slots[slot];
      if (entry === 0) {
        this.slots[slot] = index + 1;
        return index;
      }
      if (isSameEvent(this.bytes, (entry - 1) * EVENT_BYTES, this.bytes, offset)) return entry - 1;
    }
  }
}

/** One shard's reference log: the bytes at firstSeq … committedSeq and which seqs it held. */
class LogImage {
  bytes = new Uint8Array(0);
  isHeld = new Uint8Array(0);
  heldCount = 0;
  readonly span: number;

  constructor(
    readonly shard: number,
    readonly nodeId: string,
    readonly firstSeq: number,
    readonly committedSeq: number,
  ) {
    this.span = Math.max(0, committedSeq - firstSeq + 1);
    if (this.span > MAX_LOG_EVENTS) throw misuse(`shard ${shard} ${nodeId}: ${this.span} committed events is past the checker's ${MAX_LOG_EVENTS}`);
  }

  get isGapless(): boolean {
    return this.heldCount === this.span;
  }

  holds(seq: number): boolean {
    const index = seq - this.firstSeq;
    return index >= 0 && index < this.isHeld.length && this.isHeld[index] === 1;
  }

  offsetOf(seq: number): number {
    return (seq - this.firstSeq) * EVENT_BYTES;
  }

  store(seq: number, event: Uint8Array): void {
    const index = seq - this.firstSeq;
    if (index >= this.isHeld.length) {
      let capacity = Math.max(1024, this.isHeld.length * 2);
      while (capacity <= index) capacity *= 2;
      capacity = Math.min(capacity, this.span);
      this.isHeld = grown(this.isHeld, new Uint8Array(capacity));
      this.bytes = grown(this.bytes, new Uint8Array(capacity * EVENT_BYTES));
    }
    if (this.isHeld[index] === 1) return;
    this.isHeld[index] = 1;
    this.bytes.set(event, index * EVENT_BYTES);
    this.heldCount++;
  }
}

/**
 * Streams one replica's entries once: checks their order and either stores them (the
 * reference) or compares them with the reference image. Returns the first seq where the
 * replica holds other bytes than the image, or null.
 */
function scanReplica(replica: ReplicaLog, image: LogImage, isReference: boolean, findings: Findings): number | null {
  const { nodeId, firstSeq, committedSeq } = replica;
  const where = `shard ${image.shard} ${nodeId}`;
  if (committedSeq < firstSeq - 1) {
    findings.flag('orderViolations', () => `${where}: committedSeq ${committedSeq} is below firstSeq ${firstSeq} − 1`);
  }
  let expected = firstSeq;
  let isPastCommit = false;
  let firstDifferentSeq: number | null = null;
  for (const { seq, event } of replica.entries) {
    if (!Number.isSafeInteger(seq) || !(event instanceof Uint8Array) || event.byteLength !== EVENT_BYTES) {
      findings.flag('orderViolations', () => `${where}: malformed entry at seq ${String(seq)}`);
      continue;
    }
    if (seq > committedSeq) {
      if (!isPastCommit) findings.flag('orderViolations', () => `${where}: entry at seq ${seq} past committedSeq ${committedSeq}`);
      isPastCommit = true;
      continue;
    }
    if (seq !== expected) {
      const due = expected;
      findings.flag('orderViolations', () => `${where}: seq ${seq} where ${due} was due`);
      if (seq < expected) continue;
    }
    expected = seq + 1;
    if (isReference) image.store(seq, event);
    else if (firstDifferentSeq === null && image.holds(seq) && !isSameEvent(image.bytes, image.offsetOf(seq), event, 0)) {
      firstDifferentSeq = seq;
    }
  }
  if (expected <= committedSeq) {
    const last = expected - 1;
    findings.flag('orderViolations', () => `${where}: entries end at seq ${last}, committedSeq is ${committedSeq}`);
  }
  return firstDifferentSeq;
}

/** Reads every replica of a shard once; returns the reference image. Counts order and divergence. */
function scanShard(shard: ShardReplicas, findings: Findings): LogImage {
  const { replicas } = shard;
  if (replicas.length === 0) throw misuse(`shard ${shard.shard} has no replicas`);
  for (const replica of replicas) {
    if (!Number.isSafeInteger(replica.firstSeq) || replica.firstSeq < 1 || !Number.isSafeInteger(replica.committedSeq)) {
      throw misuse(`shard ${shard.shard} ${replica.nodeId}: firstSeq ${replica.firstSeq}, committedSeq ${replica.committedSeq}`);
    }
  }
  let reference = replicas[0];
  for (const replica of replicas) if (replica.committedSeq > reference.committedSeq) reference = replica;
  const image = new LogImage(shard.shard, reference.nodeId, reference.firstSeq, reference.committedSeq);
  scanReplica(reference, image, true, findings);
  const differences: string[] = [];
  for (const replica of replicas) {
    if (replica === reference) continue;
    const differentSeq = scanReplica(replica, image, false, findings);
    if (replica.committedSeq !== image.committedSeq) {
      differences.push(`${replica.nodeId} committedSeq ${replica.committedSeq} vs ${image.committedSeq}`);
    }
    if (differentSeq !== null) differences.push(`${replica.nodeId} holds other bytes from seq ${differentSeq}`);
  }
  if (differences.length > 0) {
    findings.flag('divergentShards', () => `shard ${shard.shard} (reference ${image.nodeId}): ${differences.join('; ')}`);
  }
  return image;
}

/** Entity ids as (lo, hi) u32 pairs in an open-addressing set, in insertion order. */
class EntitySet {
  size = 0;
  los = new Uint32Array(1024);
  his = new Uint32Array(1024);
  private slots = new Int32Array(2048);

  add(lo: number, hi: number): void {
    const mask = this.slots.length - 1;
    let slot = finalMix(mixWord(mixWord(0, lo), hi)) & mask;
    for (let entry = this.slots[slot]; entry !== 0; entry = this.slots[slot]) {
      if (this.los[entry - 1] === lo && this.his[entry - 1] === hi) return;
      slot = (slot + 1) & mask;
    }
    if (this.size === this.los.length) {
      this.los = grown(this.los, new Uint32Array(this.size * 2));
      this.his = grown(this.his, new Uint32Array(this.size * 2));
    }
    this.los[this.size] = lo;
    this.his[this.size] = hi;
    this.slots[slot] = ++this.size;
    if (this.size * 2 > this.slots.length) this.rehash();
  }

  idAt(index: number): bigint {
    return (BigInt(this.his[index]) << 32n) | BigInt(this.los[index]);
  }

  private rehash(): void {
    this.slots = new Int32Array(this.slots.length * 2);
    const mask = this.slots.length - 1;
    for (let index = 0; index < this.size; index++) {
      let slot = finalMix(mixWord(mixWord(0, this.los[index]), this.his[index])) & mask;
      while (this.slots[slot] !== 0) slot = (slot + 1) & mask;
      this.slots[slot] = index + 1;
    }
  }
}

/** Matches a reference log with what was sent: landings, duplicates, phantoms, entities touched. */
function indexImage(image: LogImage, sent: SentEvents, phantoms: Map<string, number>, findings: Findings): EntitySet {
  const entities = new EntitySet();
  const { bytes, isHeld, shard } = image;
  for (let index = 0; index < isHeld.length; index++) {
    if (isHeld[index] === 0) continue;
    const seq = image.firstSeq + index;
    const offset = index * EVENT_BYTES;
    entities.add(u32At(bytes, offset), u32At(bytes, offset + 4));
    const canonical = sent.find(bytes, offset);
    if (canonical < 0) {
      findings.flag('phantom', () => `shard ${shard} seq ${seq}: ${describeEvent(bytes, offset)} was never sent`);
      const key = Buffer.from(bytes.buffer, bytes.byteOffset + offset, EVENT_BYTES).toString('hex');
      const earlier = phantoms.get(key);
      if (earlier !== undefined) {
        findings.flag('duplicated', () => `shard ${shard} seq ${seq}: phantom ${describeEvent(bytes, offset)} again (first at ${earlier})`);
      } else if (phantoms.size < MAX_PHANTOMS_TRACKED) phantoms.set(key, seq);
      continue;
    }
    if (sent.landedSeq[canonical] !== 0) {
      const [firstShard, firstSeq] = [sent.landedShard[canonical], sent.landedSeq[canonical]];
      findings.flag('duplicated', () => `${describeEvent(bytes, offset)} at shard ${firstShard} seq ${firstSeq} and shard ${shard} seq ${seq}`);
      continue;
    }
    sent.landedShard[canonical] = shard;
    sent.landedSeq[canonical] = seq;
  }
  return entities;
}

/** Every ok event at its acked place; returns how many were below a retained log's start. */
function checkAcks(records: readonly OpRecord[], sent: SentEvents, images: Map<number, LogImage>, findings: Findings): number {
  let notCheckable = 0;
  let eventIndex = 0;
  for (const record of records) {
    const count = record.events.byteLength / EVENT_BYTES;
    if (record.outcome !== 'ok' || record.ackShards === null || record.ackSeqs === null) {
      eventIndex += count;
      continue;
    }
    for (let index = 0; index < count; index++, eventIndex++) {
      const shard = record.ackShards[index];
      const seq = record.ackSeqs[index];
      const image = images.get(shard);
      if (seq === 0) {
        const canonical = sent.canonicalOf[eventIndex];
        if (sent.landedSeq[canonical] !== 0 && sent.landedShard[canonical] === shard) continue;
        if (image !== undefined && image.firstSeq > 1) {
          notCheckable++;
          continue;
        }
        const offset = index * EVENT_BYTES;
        findings.flag('lost', () => `op ${record.id} (${record.process}) ${describeEvent(record.events, offset)} acked on shard ${shard} (seq not known to the caller): not in that shard's log`);
        continue;
      }
      if (image !== undefined && seq < image.firstSeq) {
        notCheckable++;
        continue;
      }
      let problem: string | null = null;
      if (image === undefined) problem = 'no replica of the shard was given';
      else if (seq > image.committedSeq) problem = `the log is committed only to ${image.committedSeq}`;
      else if (!image.holds(seq)) problem = 'the log holds nothing there';
      else if (!isSameEvent(image.bytes, image.offsetOf(seq), record.events, index * EVENT_BYTES)) {
        problem = `the log holds ${describeEvent(image.bytes, image.offsetOf(seq))} there`;
      }
      if (problem === null) continue;
      const [canonical, offset, reason] = [sent.canonicalOf[eventIndex], index * EVENT_BYTES, problem];
      findings.flag('lost', () => {
        const landed = sent.landedSeq[canonical] !== 0 ? ` (it is at shard ${sent.landedShard[canonical]} seq ${sent.landedSeq[canonical]})` : '';
        return `op ${record.id} (${record.process}) ${describeEvent(record.events, offset)} acked at shard ${shard} seq ${seq}: ${reason}${landed}`;
      });
    }
  }
  return notCheckable;
}

/** Events of definitely failed calls that landed (errors) and of unknown calls (information). */
function checkOutcomes(records: readonly OpRecord[], sent: SentEvents, findings: Findings): { landed: number; notLanded: number } {
  let landed = 0;
  let notLanded = 0;
  for (let index = 0; index < sent.recordOf.length; index++) {
    const record = records[sent.recordOf[index]];
    const canonical = sent.canonicalOf[index];
    const isLanded = sent.landedSeq[canonical] !== 0;
    if (record.outcome === 'unknown' || record.outcome === 'pending') {
      if (isLanded) landed++;
      else notLanded++;
    }
    // Counted once per content, and only when no ok or unknown sending explains the landing.
    if (canonical === index && isLanded && sent.outcomes[canonical] === OUTCOME_FAIL) {
      findings.flag(
        'failedLanded',
        () =>
          `op ${record.id} (${record.process}) failed with ${record.detail ?? '?'} but ${describeEvent(sent.bytes, index * EVENT_BYTES)} is at shard ${sent.landedShard[canonical]} seq ${sent.landedSeq[canonical]}`,
      );
    }
  }
  return { landed, notLanded };
}

/** Every read matches the final log; returns [reads checked, reads below a retained start]. */
function checkReads(reads: ReadLog, images: Map<number, LogImage>, findings: Findings): [number, number] {
  let checked = 0;
  let notCheckable = 0;
  for (let index = 0; index < reads.count; index++) {
    const shard = reads.shards[index];
    const seq = reads.seqs[index];
    const image = images.get(shard);
    if (image !== undefined && seq < image.firstSeq) {
      notCheckable++;
      continue;
    }
    checked++;
    let problem: string | null = null;
    if (image === undefined) problem = 'no replica of the shard was given';
    else if (seq > image.committedSeq) problem = `past the final commit point ${image.committedSeq}`;
    else if (!image.holds(seq)) problem = 'the final log holds nothing there';
    else if (!isSameEvent(image.bytes, image.offsetOf(seq), reads.events, index * EVENT_BYTES)) {
      problem = `the final log holds ${describeEvent(image.bytes, image.offsetOf(seq))}`;
    }
    if (problem === null) continue;
    const reason = problem;
    findings.flag('staleReads', () => `read of shard ${shard} seq ${seq} saw ${describeEvent(reads.events, index * EVENT_BYTES)}: ${reason}`);
  }
  return [checked, notCheckable];
}

// ---- state ----

interface Counted {
  count: unknown;
  total: unknown;
  score: unknown;
}

/** count, total and score per signal type of a SignalStateView[]; null for another shape. */
function countedFields(views: unknown): Map<number, Counted> | null {
  if (!Array.isArray(views)) return null;
  const fields = new Map<number, Counted>();
  for (const view of views as unknown[]) {
    if (view === null || typeof view !== 'object') return null;
    const { signalType, count, total, score } = view as Record<string, unknown>;
    if (typeof signalType !== 'number') return null;
    fields.set(signalType, { count, total, score });
  }
  return fields;
}

function modelDifference(model: Map<number, Counted>, replica: unknown, signalTypes: readonly number[]): string | null {
  const fields = countedFields(replica);
  if (fields === null) return `unreadable view ${preview(replica)}`;
  for (const signalType of signalTypes) {
    const want = model.get(signalType) as Counted;
    const got = fields.get(signalType);
    if (got === undefined) return `no view of signal type ${signalType}`;
    // Equal is equal: the model folds the same events in the same order with the same arithmetic.
    if (got.count !== want.count || got.total !== want.total || got.score !== want.score) {
      return `signal type ${signalType} count/total/score ${String(got.count)}/${String(got.total)}/${String(got.score)}, model ${String(want.count)}/${String(want.total)}/${String(want.score)}`;
    }
  }
  return null;
}

/** Deep equality of query answers: arrays, plain objects, primitives and bigints; −0 equals 0. */
function isSameValue(a: unknown, b: unknown, depth = 0): boolean {
  if (a === b) return true;
  if (typeof a === 'number' && typeof b === 'number') return Number.isNaN(a) && Number.isNaN(b);
  if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object' || depth > 16) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const aKeys = Object.keys(a);
  const bKeys = Object.keys(b);
  if (aKeys.length !== bKeys.length) return false;
  for (const key of aKeys) {
    if (!Object.hasOwn(b, key)) return false;
    if (!isSameValue((a as Record<string, unknown>)[key], (b as Record<string, unknown>)[key], depth + 1)) return false;
  }
  return true;
}

function preview(value: unknown): string {
  let text: string;
  try {
    text = JSON.stringify(value, (_key, field: unknown) => (typeof field === 'bigint' ? field.toString() : field)) ?? String(value);
  } catch {
    text = String(value);
  }
  return text.length > 240 ? `${text.slice(0, 240)}…` : text;
}

/** The first part where two answers differ, both ways. */
function answerDifference(got: unknown, want: unknown): string {
  if (Array.isArray(got) && Array.isArray(want) && got.length === want.length) {
    const index = got.findIndex((item, at) => !isSameValue(item, want[at]));
    if (index >= 0) return `${preview(got[index])} vs ${preview(want[index])}`;
  }
  return `${preview(got)} vs ${preview(want)}`;
}

function queryReplica(replica: ReplicaLog, entityId: bigint, signalTypes: readonly number[], atNs: bigint): unknown {
  let answer: unknown;
  try {
    answer = replica.query(entityId, signalTypes, atNs);
  } catch (error) {
    return { queryFailed: error instanceof Error ? error.message : String(error) };
  }
  if (answer !== null && typeof (answer as { then?: unknown }).then === 'function') {
    throw misuse(`${replica.nodeId}: query must answer synchronously`);
  }
  return answer;
}

/** A fresh ShardState folded from the image, stamped with stamps of its own (see the header). */
function foldModel(image: LogImage, schema: SignalSchema): ShardState {
  const model = new ShardState({ shard: image.shard, schema });
  for (let start = 0; start < image.span; start += MODEL_BATCH_EVENTS) {
    const count = Math.min(MODEL_BATCH_EVENTS, image.span - start);
    const events = image.bytes.subarray(start * EVENT_BYTES, (start + count) * EVENT_BYTES);
    model.apply({ firstSeq: image.firstSeq + start, count, events, timestampNs: 0n, leaderEpoch: 1, notes: [] });
  }
  return model;
}

/** Which entities of each shard to compare: all, or the `limit` with the smallest hashes. */
function selectEntities(shards: readonly number[], entitySets: Map<number, EntitySet>, limit: number): Map<number, number[]> {
  const hashOf = (shard: number, set: EntitySet, index: number): number =>
    finalMix(mixWord(mixWord(mixWord(0x5eed, shard), set.los[index]), set.his[index]));
  let total = 0;
  for (const set of entitySets.values()) total += set.size;
  let threshold = 0xffff_ffff;
  if (total > limit) {
    const hashes = new Uint32Array(total);
    let at = 0;
    for (const shard of shards) {
      const set = entitySets.get(shard) as EntitySet;
      for (let index = 0; index < set.size; index++) hashes[at++] = hashOf(shard, set, index);
    }
    hashes.sort();
    threshold = limit > 0 ? hashes[limit - 1] : -1;
  }
  let budget = limit;
  const selected = new Map<number, number[]>();
  for (const shard of shards) {
    const set = entitySets.get(shard) as EntitySet;
    const indexes: number[] = [];
    for (let index = 0; index < set.size && budget > 0; index++) {
      if (total <= limit || hashOf(shard, set, index) <= threshold) {
        indexes.push(index);
        budget--;
      }
    }
    selected.set(shard, indexes);
  }
  return selected;
}

function checkState(
  shards: readonly ShardReplicas[],
  images: Map<number, LogImage>,
  entitySets: Map<number, EntitySet>,
  options: { schema: SignalSchema; atNs: bigint; limit: number },
  findings: Findings,
): number {
  const { schema, atNs } = options;
  const signalTypes = schema.signals.map((signal) => signal.id);
  const selected = selectEntities(
    shards.map((shard) => shard.shard),
    entitySets,
    options.limit,
  );
  let checked = 0;
  for (const { shard, replicas } of shards) {
    const image = images.get(shard) as LogImage;
    const set = entitySets.get(shard) as EntitySet;
    const isModelled = image.firstSeq === 1 && image.isGapless;
    if (!isModelled) {
      findings.note(`shard ${shard}: the log ${image.firstSeq > 1 ? `starts at seq ${image.firstSeq}` : 'has gaps'}, so its state is compared across replicas only`);
    }
    const model = isModelled ? foldModel(image, schema) : null;
    for (const index of selected.get(shard) ?? []) {
      const entityId = set.idAt(index);
      const modelFields = model === null ? null : (countedFields(model.query(entityId, signalTypes, atNs)) as Map<number, Counted>);
      const first = queryReplica(replicas[0], entityId, signalTypes, atNs);
      replicas.forEach((replica, replicaIndex) => {
        const answer = replicaIndex === 0 ? first : queryReplica(replica, entityId, signalTypes, atNs);
        const problems: string[] = [];
        if (replicaIndex > 0 && !isSameValue(answer, first)) {
          problems.push(`${answerDifference(answer, first)} on ${replicas[0].nodeId}`);
        }
        const fromModel = modelFields === null ? null : modelDifference(modelFields, answer, signalTypes);
        if (fromModel !== null) problems.push(fromModel);
        if (problems.length > 0) {
          findings.flag('stateMismatches', () => `shard ${shard} entity ${entityId} ${replica.nodeId}: ${problems.join('; ')}`);
        }
      });
      checked++;
    }
  }
  return checked;
}

/** Holds the history against every replica's committed log and state (see the file header). */
export function checkHistory(history: History, shards: ShardReplicas[], options: CheckOptions = {}): HistoryReport {
  const { records, reads } = recorded.get(history) as { records: OpRecord[]; reads: ReadLog };
  const findings = new Findings();
  const sorted = [...shards].sort((a, b) => a.shard - b.shard);
  for (let index = 1; index < sorted.length; index++) {
    if (sorted[index].shard === sorted[index - 1].shard) throw misuse(`shard ${sorted[index].shard} given twice`);
  }
  const sent = new SentEvents(records);
  const images = new Map<number, LogImage>();
  const entitySets = new Map<number, EntitySet>();
  const phantoms = new Map<string, number>();
  let inLog = 0;
  for (const shard of sorted) {
    const image = scanShard(shard, findings);
    images.set(shard.shard, image);
    entitySets.set(shard.shard, indexImage(image, sent, phantoms, findings));
    inLog += image.heldCount;
  }
  const notCheckable = checkAcks(records, sent, images, findings);
  const unknown = checkOutcomes(records, sent, findings);
  const [readsChecked, readsNotCheckable] = checkReads(reads, images, findings);
  const atNs = options.atNs ?? sent.maxTimestampNs;
  const limit = options.maxStateEntities ?? DEFAULT_MAX_STATE_ENTITIES;
  const schema = options.schema ?? defaultSignalSchema();
  const entitiesChecked = checkState(sorted, images, entitySets, { schema, atNs, limit }, findings);

  const counts = history.counts();
  if (counts.pending > 0) findings.note(`${counts.pending} ops never completed; their events count as unknown`);
  if (notCheckable > 0) findings.note(`${notCheckable} acked events lie below a retained log's first seq`);
  if (readsNotCheckable > 0) findings.note(`${readsNotCheckable} reads lie below a retained log's first seq`);
  let entityTotal = 0;
  for (const set of entitySets.values()) entityTotal += set.size;
  if (entitiesChecked < entityTotal) findings.note(`state compared for ${entitiesChecked} of ${entityTotal} entities (sampled by hash)`);

  const found = findings.counts;
  return {
    ops: { invoked: counts.invoked, ok: counts.ok, fail: counts.fail, unknown: counts.unknown, pending: counts.pending },
    events: {
      acked: counts.ackedEvents,
      inLog,
      unknownLanded: unknown.landed,
      unknownNotLanded: unknown.notLanded,
      notCheckable,
    },
    ...found,
    readsChecked,
    entitiesChecked,
    examples: findings.examples,
    notes: findings.notes,
    atNs: atNs.toString(),
    ok: ERROR_COUNTS.every((name) => found[name] === 0),
  };
}

/** A few lines for people: the verdict, the counts, up to 3 examples per failed check, the notes. */
export function formatReport(report: HistoryReport): string {
  const { ops, events } = report;
  const lines = [
    `history ${report.ok ? 'OK' : 'FAILED'}: ${ops.invoked} ops (${ops.ok} ok, ${ops.fail} fail, ${ops.unknown} unknown, ${ops.pending} pending), ` +
      `${events.acked} events acked, ${events.inLog} in the logs`,
    `  lost ${report.lost}, duplicated ${report.duplicated}, phantom ${report.phantom}, order violations ${report.orderViolations}, ` +
      `divergent shards ${report.divergentShards}, failed landed ${report.failedLanded}, stale reads ${report.staleReads} of ${report.readsChecked}, ` +
      `state mismatches ${report.stateMismatches} over ${report.entitiesChecked} entities`,
    `  unknown outcomes: ${events.unknownLanded} events landed, ${events.unknownNotLanded} did not; not checkable (retention): ${events.notCheckable}`,
  ];
  for (const name of ERROR_COUNTS) {
    for (const line of report.examples[name].slice(0, 3)) lines.push(`  ${name}: ${line}`);
  }
  for (const note of report.notes) lines.push(`  note: ${note}`);
  return lines.join('\n');
}
