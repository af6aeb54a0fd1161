// CRDT signal state: every replica folds the log into it, and any two replicas merge to the
// same state whatever order they saw events in, even after a partition with writes on both
// sides. Invariant: the state is a join-semilattice.
//
//   state   = origin logs × entities
//   origin  = a writer with its own gapless seq space (in tidelog: one shard leader term); the
//             pair (origin, seq) names one event forever. Origins number events 1, 2, 3, …
//             unless `registerOrigin(origin, firstSeq)` says where the space starts.
//   entity  = per score signal, per origin a contribution (score-column.ts: decayed score, windowed counts,
//             event count and weight sum as PN-counter entries, last HLC), plus LWW flags.
// Entities live in typed arrays (state-arrays.ts: ~200 bytes an entity with two signals), so
// entityCount is O(1), a clone is a handful of array copies, and `beginImage` (state-image.ts)
// snapshots millions of entities in bounded pieces while folding goes on.
//
// Exactly-once folding without coordination:
// - an origin's events are folded in seq order: seq ≤ appliedSeq is a duplicate and ignored;
//   seq = appliedSeq + 1 is folded; a seq beyond a gap waits in a bounded reorder buffer
//   (OVERLOADED when full) and is folded when the gap fills. So any delivery order, with any
//   duplicates, produces the same per-origin fold, bit for bit;
// - `apply` without a seq relies on the origin's HLCs instead: they strictly increase, so an
//   event at or below the greatest HLC folded for the origin is a duplicate, and the next one
//   takes seq appliedSeq + 1. That needs delivery in HLC order per origin (duplicates anywhere
//   are fine); any other order must use a seq (`apply(…, seq)` or `applyPacked`);
// - every event that enters the reorder buffer (applyPacked, merge, a plan, a snapshot) was
//   checked against the schema first, and the buffer stays within maxPendingEvents on every
//   path: merges and plans keep the lowest seqs that fit, a larger snapshot is refused;
// - a contribution is owned by its origin and only grows, so merge takes, per (entity, signal,
//   origin), the one with the greater lastSeq (it contains the other); never a float sum. Two
//   contributions with the same lastSeq but different contents mean one (origin, seq) named two
//   events (a re-used origin id, a forged event): the greater content wins on every replica
//   (contribution-values.ts compareContributions), so merges still commute, and `conflicts`
//   counts it;
// - flags are LWW registers over (HLC, value): hide beats unhide only with a greater HLC, and
//   an identical HLC is a tie that hide wins, so a hide seen anywhere survives every merge
//   until an unhide stamped later ("union" semantics for hard negatives);
// - merge raises appliedSeq to the maximum and unions reorder buffers, then drains them.
//
// Event HLCs: `applyPacked(bytes, origin, firstSeq, firstHlc)` stamps event i with
// (firstHlc.wallNs, firstHlc.logical + i, firstHlc.nodeId), i.e. the timestamps that
// `Hlc.reserve(n)` hands out for a batch; `apply` takes one event's own timestamp.

import { TidelogError } from '../errors.ts';
import type { EntityDigests } from './digest-tree.ts';
import { countersOf, viewEntity, type EntityView } from './entity-view.ts';
import { joinValues } from './column-join.ts';
import { entityIdOf, entityKeyOf, type EntityKey } from './entity-key.ts';
import { foldPacked, validatePacked, type FoldTarget } from './event-fold.ts';
import { HlcTimestamp, U32_MAX, U64_MAX } from './hlc-timestamp.ts';
import type { LWWRegister } from './lww-register.ts';
import { splitNs } from './packed-time.ts';
import { OriginLog } from './origin-log.ts';
import { EVENT_BYTES, checkPackedLength, writeEvent, type SignalEvent } from '../event.ts';
import type { PNCounter } from './pn-counter.ts';
import type { ScoreColumn } from './score-column.ts';
import type { SignalSchema, SignalType } from './signal-schema.ts';
import { StateArrays } from './state-arrays.ts';
import { StateImageStream, type ImageStream } from './state-image.ts';
import { assertStateArrays } from './state-invariants.ts';
import {
  decodeSnapshotBytes,
  encodeSnapshotBytes,
  entityToRecord,
  originToRow,
  type DecodedEntity,
  type EntityRecord,
} from './snapshot-codec.ts';
import { checkWeight } from './weight-micros.ts';

export type { EntityView, SignalScore } from './entity-view.ts';
export type { ImageStream } from './state-image.ts';

export interface SignalStateOptions {
  /** Bound of the reorder buffer (events waiting behind a seq gap), all origins together. */
  maxPendingEvents?: number;
}

export const DEFAULT_MAX_PENDING_EVENTS = 65_536;

export interface SignalStateJson {
  format: 'tidelog/crdt-state';
  schema: string;
  /** The snapshot bytes, base64. */
  snapshot: string;
}

export class CrdtSignalState {
  readonly schema: SignalSchema;
  readonly maxPendingEvents: number;
  /** Entities, contributions and flags, in typed arrays (state-arrays.ts). */
  private arrays: StateArrays;
  private readonly logs = new Map<number, OriginLog>();
  private pendingCount = 0;
  private droppedCount = 0;
  private mutationCount = 0;
  private keyCache: { version: number; keys: EntityKey[] } | undefined = undefined;
  private foldTarget: FoldTarget;
  /** The image in progress (at most one; beginImage supersedes it). */
  private image: StateImageStream | null = null;
  private readonly scratch = new Uint8Array(EVENT_BYTES);
  private readonly scratchView = new DataView(this.scratch.buffer);

  constructor(schema: SignalSchema, options: SignalStateOptions = {}) {
    const maxPendingEvents = options.maxPendingEvents ?? DEFAULT_MAX_PENDING_EVENTS;
    if (!Number.isSafeInteger(maxPendingEvents) || maxPendingEvents < 0) {
      throw new TidelogError('BAD_REQUEST', `maxPendingEvents must be a non-negative integer, got ${maxPendingEvents}`);
    }
    this.schema = schema;
    this.maxPendingEvents = maxPendingEvents;
    this.arrays = new StateArrays(schema);
    this.foldTarget = foldTargetOf(this.arrays);
  }

  /** Changes whenever the state does (digest caches key on it). */
  get version(): number {
    return this.mutationCount;
  }

  /** Entities with a contribution or a set flag (O(1)). */
  get entityCount(): number {
    return this.arrays.entityCount;
  }

  /** Events waiting behind a seq gap, for one origin or all. */
  pendingEvents(origin?: number): number {
    return origin === undefined ? this.pendingCount : (this.logs.get(origin)?.pending.size ?? 0);
  }

  /** Every seq ≤ this has been folded for `origin`. */
  appliedSeq(origin: number): number {
    return this.logs.get(origin)?.appliedSeq ?? 0;
  }

  /** The greatest HLC folded for `origin` (undefined before its first event). */
  lastHlc(origin: number): HlcTimestamp | undefined {
    return this.logs.get(origin)?.lastHlc;
  }

  /**
   * Times this replica met one (origin, seq) carrying two different contents (a contribution or
   * a buffered event) and resolved it by the deterministic tie-break. An operational counter:
   * not part of equals, snapshots or merges.
   */
  get conflicts(): number {
    let total = 0;
    for (const column of this.arrays.columnList) total += column.conflicts;
    for (const log of this.logs.values()) total += log.conflicts;
    return total;
  }

  /** Buffered events a merge or plan left out because the reorder buffer was full. */
  get droppedPendingEvents(): number {
    return this.droppedCount;
  }

  /**
   * Folds one event. With `seq` (its place in the origin's seq space) any delivery order and any
   * duplicates are fine (see applyPacked). Without it, the event's HLC decides: one origin's HLCs
   * strictly increase, so an HLC at or below the greatest folded for the origin is a duplicate
   * (returns 0), and a greater one takes seq appliedSeq + 1. So the seq-less form needs each
   * origin's events in HLC order: an event that arrives after a later one is taken for a
   * duplicate and dropped. Returns how many events were folded (0 for a duplicate or a
   * buffered event, more when it filled a gap).
   */
  apply(event: SignalEvent, origin: number, hlc: HlcTimestamp, seq?: number): number {
    writeEvent(this.scratchView, 0, event);
    checkWeight(event.weight);
    if (seq !== undefined) return this.applyPacked(this.scratch, origin, seq, hlc);
    checkOrigin(origin);
    if (!(hlc instanceof HlcTimestamp)) throw new TidelogError('BAD_REQUEST', 'apply needs an HlcTimestamp');
    validatePacked(this.schema, this.scratch, 1);
    const log = this.logs.get(origin);
    if (log !== undefined && log.pending.size > 0) {
      throw new TidelogError('BAD_REQUEST', `origin ${origin} has events behind a gap; apply needs an explicit seq`, {
        details: { origin, appliedSeq: log.appliedSeq },
      });
    }
    if (log?.lastHlc !== undefined && hlc.compare(log.lastHlc) <= 0) return 0;
    return this.applyPacked(this.scratch, origin, (log?.appliedSeq ?? 0) + 1, hlc);
  }

  /**
   * Folds packed events (n × 21 bytes) whose seqs are firstSeq … firstSeq + n − 1, event i
   * stamped (firstHlc.wallNs, firstHlc.logical + i, firstHlc.nodeId). The batch is validated as
   * a whole first (UNKNOWN_SIGNAL_TYPE, BAD_REQUEST), so it is folded entirely or not at all.
   * Returns how many events were folded.
   */
  applyPacked(bytes: Uint8Array, origin: number, firstSeq: number, firstHlc: HlcTimestamp): number {
    const count = checkPackedLength(bytes);
    checkOrigin(origin);
    if (!Number.isSafeInteger(firstSeq) || firstSeq < 1 || firstSeq + count - 1 > Number.MAX_SAFE_INTEGER) {
      throw new TidelogError('BAD_REQUEST', `firstSeq must be a positive safe integer, got ${String(firstSeq)}`);
    }
    if (!(firstHlc instanceof HlcTimestamp)) throw new TidelogError('BAD_REQUEST', 'applyPacked needs an HlcTimestamp');
    if (firstHlc.logical + count - 1 > U32_MAX) {
      throw new TidelogError('BAD_REQUEST', 'the batch would overflow the HLC logical counter; use Hlc.reserve(n)');
    }
    if (count === 0) return 0;
    validatePacked(this.schema, bytes, count);
    const log = this.logFor(origin);
    const lastSeq = firstSeq + count - 1;
    if (lastSeq <= log.appliedSeq) return 0;
    if (firstSeq > log.appliedSeq + 1) {
      this.buffer(log, bytes, count, firstSeq, firstHlc);
      return 0;
    }
    const from = log.appliedSeq + 1 - firstSeq;
    foldPacked(this.foldTarget, bytes, from, count, origin, firstSeq, firstHlc.wallNs, firstHlc.logical, firstHlc.nodeId);
    log.appliedSeq = lastSeq;
    // The batch's last event has its greatest HLC (same wall and node, logical + i).
    log.noteFolded(firstHlc.wallNs, firstHlc.logical + count - 1, firstHlc.nodeId);
    this.mutationCount++;
    return count - from + this.drain(log);
  }

  /** Declares that `origin`'s seq space starts at `firstSeq` (nothing below it will come). */
  registerOrigin(origin: number, firstSeq: number): void {
    checkOrigin(origin);
    if (!Number.isSafeInteger(firstSeq) || firstSeq < 1) {
      throw new TidelogError('BAD_REQUEST', `firstSeq must be a positive safe integer, got ${firstSeq}`);
    }
    const log = this.logFor(origin);
    if (firstSeq - 1 > log.appliedSeq) {
      log.appliedSeq = firstSeq - 1;
      this.drain(log);
      this.mutationCount++;
    }
  }

  /** Joins `other` into this state (per origin, see the header); mutates and returns this. */
  merge(other: CrdtSignalState): this {
    this.checkSameSchema(other.schema);
    if (other === this) return this;
    this.arrays.join(other.arrays);
    for (const log of other.logs.values()) this.joinOrigin(log);
    this.mutationCount++;
    return this;
  }

  /** The entity's signals and flags as of `atNs` (decay and windows evaluated at that time). */
  query(entityId: bigint, atNs: bigint): EntityView {
    checkU64(entityId, 'entityId');
    checkU64(atNs, 'atNs');
    const arrays = this.arrays;
    return viewEntity(this.schema, arrays.columnList, arrays.flags, arrays.index.findKey(entityKeyOf(entityId)), entityId, atNs);
  }

  /**
   * The entity's event count and weight sum as PN-counters keyed by origin (micro-units:
   * `events.value` is the count, `weightMicros.micros` the exact weight sum in micro-units).
   */
  counters(entityId: bigint, signalType: number): { events: PNCounter; weightMicros: PNCounter } {
    checkU64(entityId, 'entityId');
    this.signalFor(signalType);
    return countersOf(this.arrays.columns[signalType], this.arrays.index.findKey(entityKeyOf(entityId)));
  }

  /** A copy of the entity's LWW register for `flag` (never set: an empty register). */
  flag(entityId: bigint, flag: string): LWWRegister<boolean> {
    checkU64(entityId, 'entityId');
    const index = this.schema.flags.indexOf(flag);
    if (index < 0) throw new TidelogError('UNKNOWN_SIGNAL_TYPE', `the schema has no flag "${flag}"`);
    return this.arrays.flags.register(this.arrays.index.findKey(entityKeyOf(entityId)), index);
  }

  /** Entity ids, ascending. */
  entityIds(): bigint[] {
    return this.entityKeys().map(entityIdOf);
  }

  clone(): CrdtSignalState {
    const copy = new CrdtSignalState(this.schema, { maxPendingEvents: this.maxPendingEvents });
    copy.adoptArrays(new StateArrays(this.schema, this.arrays));
    for (const [origin, log] of this.logs) copy.logs.set(origin, log.clone());
    copy.pendingCount = this.pendingCount;
    copy.droppedCount = this.droppedCount;
    return copy;
  }

  equals(other: CrdtSignalState): boolean {
    if (other.schema.fingerprint !== this.schema.fingerprint) return false;
    if (!this.arrays.equals(other.arrays)) return false;
    const origins = new Set([...this.logs.keys(), ...other.logs.keys()]);
    for (const origin of origins) {
      const mine = this.logs.get(origin) ?? new OriginLog(origin);
      const theirs = other.logs.get(origin) ?? new OriginLog(origin);
      if (!mine.equals(theirs)) return false;
    }
    return true;
  }

  /**
   * Starts a binary image of the state as it is now (state-image.ts): raw typed arrays, read in
   * pieces by `next(maxBytes)` while the owner keeps folding, merging and registering origins;
   * copy-on-write keeps the image at this point in time. O(origins + buffered events) now, then
   * O(maxBytes) per piece. One image at a time: a second beginImage cancels the first (whose
   * next() then fails with CLOSED). Read it back with ImageLoader (image-loader.ts).
   */
  beginImage(): ImageStream {
    this.image?.cancel();
    const stream = new StateImageStream(this.schema, this.arrays, this.logs, this.droppedCount, () => {
      if (this.image === stream) this.image = null;
    });
    this.image = stream;
    return stream;
  }

  /** The canonical snapshot (snapshot-codec.ts): equal states give identical bytes. */
  encode(): Uint8Array {
    const keys = this.entityKeys();
    const records = (function* (state: CrdtSignalState): Generator<EntityRecord> {
      for (const key of keys) yield state.entityRecord(key) as EntityRecord;
    })(this);
    return encodeSnapshotBytes(this.schema.fingerprint, this.originLogs().map(originToRow), records, keys.length);
  }

  /**
   * Reads a snapshot (DECODE_FAILED when malformed, SCHEMA_INVALID for another schema, OVERLOADED
   * when its reorder buffers hold more than this state's maxPendingEvents).
   */
  static decode(bytes: Uint8Array, schema: SignalSchema, options: SignalStateOptions = {}): CrdtSignalState {
    const state = new CrdtSignalState(schema, options);
    const logs = decodeSnapshotBytes(bytes, schema, (entity) => state.joinEntity(entity), state.maxPendingEvents);
    for (const log of logs) {
      state.logs.set(log.origin, log);
      state.pendingCount += log.pending.size;
    }
    return state;
  }

  toJSON(): SignalStateJson {
    return {
      format: 'tidelog/crdt-state',
      schema: this.schema.fingerprint,
      snapshot: Buffer.from(this.encode()).toString('base64'),
    };
  }

  static fromJSON(json: unknown, schema: SignalSchema, options: SignalStateOptions = {}): CrdtSignalState {
    const record = json as Partial<SignalStateJson> | null;
    if (
      record === null ||
      typeof record !== 'object' ||
      record.format !== 'tidelog/crdt-state' ||
      typeof record.snapshot !== 'string'
    ) {
      throw new TidelogError('DECODE_FAILED', 'not a tidelog CRDT state JSON');
    }
    return CrdtSignalState.decode(Buffer.from(record.snapshot, 'base64'), schema, options);
  }

  // ---- for reconciliation and the codec; not part of the index.ts surface ----

  /** @internal Entity keys, ascending (cached per version; O(n log n) once per version). */
  entityKeys(): EntityKey[] {
    if (this.keyCache?.version === this.mutationCount) return this.keyCache.keys;
    const keys = this.arrays.sortedKeys();
    this.keyCache = { version: this.mutationCount, keys };
    return keys;
  }

  /** @internal The entity's canonical record (snapshot-codec.ts), undefined if absent. */
  entityRecord(key: EntityKey): EntityRecord | undefined {
    const arrays = this.arrays;
    return entityToRecord(key, arrays.columnList, arrays.flags, arrays.index.findKey(key));
  }

  /** @internal Every entity's content digest, aligned with entityKeys() (digest-tree.ts). */
  entityDigests(): EntityDigests {
    const keys = this.entityKeys();
    const hashHi = new Uint32Array(keys.length);
    const hashLo = new Uint32Array(keys.length);
    const arrays = this.arrays;
    keys.forEach((key, at) => {
      [hashHi[at], hashLo[at]] = arrays.digestOf(arrays.index.findKey(key));
    });
    return { keys, hashHi, hashLo };
  }

  /**
   * @internal A state from a loaded image's parts (image-loader.ts validated them): the arrays,
   * the origin logs in their original order, and the dropped-events counter.
   */
  static fromImage(schema: SignalSchema, options: SignalStateOptions, arrays: StateArrays, logs: OriginLog[], droppedCount: number): CrdtSignalState {
    const state = new CrdtSignalState(schema, options);
    state.adoptArrays(arrays);
    for (const log of logs) {
      state.logs.set(log.origin, log);
      state.pendingCount += log.pending.size;
    }
    state.droppedCount = droppedCount;
    return state;
  }

  /**
   * @internal Checks every structural invariant (state-invariants.ts) and the reorder-buffer
   * bookkeeping; throws an invariant Error (or DECODE_FAILED naming the broken part). O(state):
   * for tests.
   */
  checkInvariants(): void {
    assertStateArrays(this.arrays);
    let pending = 0;
    for (const log of this.logs.values()) {
      pending += log.pending.size;
      for (const seq of log.pending.keys()) {
        if (seq <= log.appliedSeq + 1) throw new Error(`invariant violated: origin ${log.origin} buffers seq ${seq} at appliedSeq ${log.appliedSeq}`);
      }
    }
    if (pending !== this.pendingCount) throw new Error(`invariant violated: ${this.pendingCount} pending events counted, ${pending} held`);
  }

  /** @internal The origin's log (undefined when the state never heard of it). */
  originLog(origin: number): OriginLog | undefined {
    return this.logs.get(origin);
  }

  /** @internal Origin logs with content, ascending by origin. */
  originLogs(): OriginLog[] {
    return [...this.logs.values()].filter((log) => !log.isEmpty).sort((a, b) => a.origin - b.origin);
  }

  /** @internal Joins one decoded entity (per-origin max, LWW flags); returns whether anything changed. */
  joinEntity(entity: DecodedEntity): boolean {
    let isChanged = false;
    const arrays = this.arrays;
    const target = arrays.index.findOrAddKey(entity.key);
    for (const cell of entity.cells) {
      const column = arrays.columns[cell.signalId] as ScoreColumn;
      for (const values of cell.contributions) if (joinValues(column, target, values)) isChanged = true;
    }
    for (const flag of entity.flags) {
      const stamp = flag.stamp;
      const [wallHi, wallLo] = splitNs(stamp.wallNs);
      if (arrays.flags.set(target, flag.index, flag.value, wallHi, wallLo, stamp.logical, stamp.nodeId)) isChanged = true;
    }
    if (isChanged) this.mutationCount++;
    return isChanged;
  }

  /**
   * @internal Raises the origin's appliedSeq and lastHlc, unites its reorder buffer (keeping the
   * lowest seqs that fit within maxPendingEvents) and drains it. Every event that could enter
   * the buffer is checked against the schema first (UNKNOWN_SIGNAL_TYPE, BAD_REQUEST), so a bad
   * one changes nothing instead of breaking the fold that would drain it.
   */
  joinOrigin(source: OriginLog): void {
    checkOrigin(source.origin);
    const floor = Math.max(source.appliedSeq, this.appliedSeq(source.origin));
    for (const [seq, event] of source.pending) if (seq > floor) validatePacked(this.schema, event.bytes, 1);
    const log = this.logFor(source.origin);
    if (source.appliedSeq > log.appliedSeq) {
      log.appliedSeq = source.appliedSeq;
      this.pruneStale(log);
      this.mutationCount++;
    }
    const lastHlcBefore = log.lastHlc;
    log.raiseLastHlc(source.lastHlc);
    const conflictsBefore = log.conflicts;
    const { added, dropped } = log.unitePending(source, this.maxPendingEvents - this.pendingCount);
    this.pendingCount += added;
    this.droppedCount += dropped;
    if (added > 0 || log.conflicts !== conflictsBefore || log.lastHlc !== lastHlcBefore) this.mutationCount++;
    this.drain(log);
  }

  /** @internal */
  checkSameSchema(schema: SignalSchema): void {
    if (schema.fingerprint !== this.schema.fingerprint) {
      throw new TidelogError('SCHEMA_INVALID', 'states built on different signal schemas cannot merge', {
        details: { mine: this.schema.fingerprint, theirs: schema.fingerprint },
      });
    }
  }

  // ---- folding ----

  private signalFor(signalType: number): SignalType {
    const signal = Number.isInteger(signalType) ? this.schema.byId[signalType] : undefined;
    if (signal === undefined) {
      throw new TidelogError('UNKNOWN_SIGNAL_TYPE', `signal type ${signalType} is not in the schema`, {
        details: { signalType },
      });
    }
    return signal;
  }

  /** Takes `arrays` as this state's entities (a clone's copy, a loaded image's). */
  private adoptArrays(arrays: StateArrays): void {
    this.arrays = arrays;
    this.foldTarget = foldTargetOf(arrays);
  }

  private logFor(origin: number): OriginLog {
    let log = this.logs.get(origin);
    if (log === undefined) {
      log = new OriginLog(origin);
      this.logs.set(origin, log);
    }
    return log;
  }

  private buffer(log: OriginLog, bytes: Uint8Array, count: number, firstSeq: number, firstHlc: HlcTimestamp): void {
    this.pendingCount += log.addPending(bytes, count, firstSeq, firstHlc, this.maxPendingEvents - this.pendingCount);
    this.mutationCount++;
  }

  /**
   * Folds buffered events that now continue the origin's applied prefix; drops stale ones. Each
   * event is folded before it leaves the buffer and before appliedSeq moves, so even a fold that
   * threw would leave it waiting rather than lose it (every path validates it on the way in).
   */
  private drain(log: OriginLog): number {
    if (log.pending.size === 0) return 0;
    let folded = 0;
    for (;;) {
      const seq = log.appliedSeq + 1;
      const next = log.pending.get(seq);
      if (next === undefined) break;
      foldPacked(this.foldTarget, next.bytes, 0, 1, log.origin, seq, next.wallNs, next.logical, next.nodeId);
      log.pending.delete(seq);
      this.pendingCount--;
      log.appliedSeq = seq;
      log.noteFolded(next.wallNs, next.logical, next.nodeId);
      folded++;
    }
    this.pruneStale(log);
    if (folded > 0) this.mutationCount++;
    return folded;
  }

  /** Drops buffered events at or below appliedSeq (folded elsewhere: a merge raised the watermark). */
  private pruneStale(log: OriginLog): void {
    for (const seq of [...log.pending.keys()]) {
      if (seq <= log.appliedSeq) {
        log.pending.delete(seq);
        this.pendingCount--;
      }
    }
  }

}

function foldTargetOf(arrays: StateArrays): FoldTarget {
  return { index: arrays.index, pool: arrays.pool, columns: arrays.columns, flags: arrays.flags, barrier: arrays.barrier, schema: arrays.schema };
}

function checkOrigin(origin: number): void {
  if (!Number.isInteger(origin) || origin < 0 || origin > U32_MAX) {
    throw new TidelogError('BAD_REQUEST', `an origin must be a u32, got ${String(origin)}`);
  }
}

function checkU64(value: bigint, what: string): void {
  if (typeof value !== 'bigint' || value < 0n || value > U64_MAX) {
    throw new TidelogError('BAD_REQUEST', `${what} must be a u64 bigint, got ${String(value)}`);
  }
}
