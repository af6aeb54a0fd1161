// CRDT signal state: every replica folds the log into it, and any two replicas merge to the
// same state whatever order they saw events in, even after a partition with writes on both
// sides. Invariant: the state is a join-semilattice.
//
//   state   = origin logs × entities
//   origin  = a writer with its own gapless seq space (in tidelog: one shard leader term); the
//             pair (origin, seq) names one event forever. Origins number events 1, 2, 3, …
//             unless `registerOrigin(origin, firstSeq)` says where the space starts.
//   entity  = per score signal, per origin a Contribution (decayed score, windowed counts,
//             event count and weight sum as PN-counter entries, last HLC), plus LWW flags.
//
// Exactly-once folding without coordination:
// - an origin's events are folded in seq order: seq ≤ appliedSeq is a duplicate and ignored;
//   seq = appliedSeq + 1 is folded; a seq beyond a gap waits in a bounded reorder buffer
//   (OVERLOADED when full) and is folded when the gap fills. So any delivery order, with any
//   duplicates, produces the same per-origin fold, bit for bit;
// - a contribution is owned by its origin and only grows, so merge takes, per (entity, signal,
//   origin), the one with the greater lastSeq (it contains the other); never a float sum;
// - flags are LWW registers over (HLC, value): hide beats unhide only with a greater HLC, and
//   an identical HLC is a tie that hide wins, so a hide seen anywhere survives every merge
//   until an unhide stamped later ("union" semantics for hard negatives);
// - merge raises appliedSeq to the maximum and unions reorder buffers, then drains them.
//
// Event HLCs: `applyPacked(bytes, origin, firstSeq, firstHlc)` stamps event i with
// (firstHlc.wallNs, firstHlc.logical + i, firstHlc.nodeId), i.e. the timestamps that
// `Hlc.reserve(n)` hands out for a batch; `apply` takes one event's own timestamp.

import { TidelogError } from '../errors.ts';
import { countInWindow, foldScoreEvent, scoreAt } from './contribution.ts';
import {
  compareEntityKeys,
  EntityState,
  entityIdOf,
  entityKeyOf,
  positionOf,
  type EntityKey,
} from './entity-state.ts';
import { compareHlcParts, HlcTimestamp, U32_MAX, U64_MAX } from './hlc-timestamp.ts';
import { LWWRegister, trueWinsTies } from './lww-register.ts';
import { OriginLog } from './origin-log.ts';
import { EVENT_BYTES, packedCount, writeEvent, type SignalEvent } from './packed-events.ts';
import { joinNs, secondsOf, splitNs, TWO_POW_32 } from './packed-time.ts';
import { PNCounter } from './pn-counter.ts';
import type { SignalSchema, SignalType } from './signal-schema.ts';
import { decodeSnapshotBytes, encodeSnapshotBytes } from './snapshot-codec.ts';
import { checkWeight, MAX_ABS_WEIGHT, MICROS_PER_UNIT, microsToUnits, wideToBigInt } from './weight-micros.ts';

export interface SignalStateOptions {
  /** Bound of the reorder buffer (events waiting behind a seq gap), all origins together. */
  maxPendingEvents?: number;
}

export const DEFAULT_MAX_PENDING_EVENTS = 65_536;

export interface SignalScore {
  signalType: number;
  name: string;
  /** Σ over origins of the decayed score at the query time. */
  score: number;
  /** Events per window name (bucket-granular, see contribution.ts). */
  counts: Record<string, number>;
  eventCount: number;
  /** Σ weights (exact in micro-units, then converted). */
  weightSum: number;
  weightSumMicros: bigint;
  /** The greatest event HLC over origins, and that event's timestamp ("last signal seen"). */
  lastHlc: HlcTimestamp | null;
  lastEventNs: bigint | null;
  /** How many origins contributed. */
  originCount: number;
}

export interface EntityView {
  entityId: bigint;
  atNs: bigint;
  /** Every score signal of the schema, by name (zeros when the entity has none). */
  signals: Record<string, SignalScore>;
  /** Every flag of the schema, by name (false when never set). */
  flags: Record<string, boolean>;
}

export interface SignalStateJson {
  format: 'tidelog/crdt-state';
  schema: string;
  /** The snapshot bytes, base64. */
  snapshot: string;
}

export class CrdtSignalState {
  readonly schema: SignalSchema;
  readonly maxPendingEvents: number;
  private readonly entities = new Map<EntityKey, EntityState>();
  private readonly logs = new Map<number, OriginLog>();
  private pendingCount = 0;
  private mutationCount = 0;
  private readonly scratch = new Uint8Array(EVENT_BYTES);
  private readonly scratchView = new DataView(this.scratch.buffer);

  constructor(schema: SignalSchema, options: SignalStateOptions = {}) {
    const maxPendingEvents = options.maxPendingEvents ?? DEFAULT_MAX_PENDING_EVENTS;
    if (!Number.isSafeInteger(maxPendingEvents) || maxPendingEvents < 0) {
      throw new TidelogError('BAD_REQUEST', `maxPendingEvents must be a non-negative integer, got ${maxPendingEvents}`);
    }
    this.schema = schema;
    this.maxPendingEvents = maxPendingEvents;
  }

  /** Changes whenever the state does (digest caches key on it). */
  get version(): number {
    return this.mutationCount;
  }

  get entityCount(): number {
    return this.entities.size;
  }

  /** Events waiting behind a seq gap, for one origin or all. */
  pendingEvents(origin?: number): number {
    return origin === undefined ? this.pendingCount : (this.logs.get(origin)?.pending.size ?? 0);
  }

  /** Every seq ≤ this has been folded for `origin`. */
  appliedSeq(origin: number): number {
    return this.logs.get(origin)?.appliedSeq ?? 0;
  }

  /**
   * Folds one event. `seq` is its place in the origin's seq space; omit it only for an event the
   * caller originates itself (it then takes appliedSeq + 1). Returns how many events were folded
   * (0 for a duplicate or a buffered event, more when it filled a gap).
   */
  apply(event: SignalEvent, origin: number, hlc: HlcTimestamp, seq?: number): number {
    writeEvent(this.scratchView, 0, event);
    checkWeight(event.weight);
    let eventSeq = seq;
    if (eventSeq === undefined) {
      const log = this.logs.get(origin);
      if (log !== undefined && log.pending.size > 0) {
        throw new TidelogError('BAD_REQUEST', `origin ${origin} has events behind a gap; apply needs an explicit seq`);
      }
      eventSeq = (log?.appliedSeq ?? 0) + 1;
    }
    return this.applyPacked(this.scratch, origin, eventSeq, hlc);
  }

  /**
   * Folds packed events (n × 21 bytes) whose seqs are firstSeq … firstSeq + n − 1, event i
   * stamped (firstHlc.wallNs, firstHlc.logical + i, firstHlc.nodeId). The batch is validated as
   * a whole first (UNKNOWN_SIGNAL_TYPE, BAD_REQUEST), so it is folded entirely or not at all.
   * Returns how many events were folded.
   */
  applyPacked(bytes: Uint8Array, origin: number, firstSeq: number, firstHlc: HlcTimestamp): number {
    const count = packedCount(bytes);
    checkOrigin(origin);
    if (!Number.isSafeInteger(firstSeq) || firstSeq < 1 || firstSeq + count - 1 > Number.MAX_SAFE_INTEGER) {
      throw new TidelogError('BAD_REQUEST', `firstSeq must be a positive safe integer, got ${String(firstSeq)}`);
    }
    if (!(firstHlc instanceof HlcTimestamp)) throw new TidelogError('BAD_REQUEST', 'applyPacked needs an HlcTimestamp');
    if (firstHlc.logical + count - 1 > U32_MAX) {
      throw new TidelogError('BAD_REQUEST', 'the batch would overflow the HLC logical counter; use Hlc.reserve(n)');
    }
    if (count === 0) return 0;
    this.validatePacked(bytes, count);
    const log = this.logFor(origin);
    const lastSeq = firstSeq + count - 1;
    if (lastSeq <= log.appliedSeq) return 0;
    if (firstSeq > log.appliedSeq + 1) {
      this.buffer(log, bytes, count, firstSeq, firstHlc);
      return 0;
    }
    const from = log.appliedSeq + 1 - firstSeq;
    this.foldRange(bytes, from, count, origin, firstSeq, firstHlc.wallNs, firstHlc.logical, firstHlc.nodeId);
    log.appliedSeq = lastSeq;
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

  /** Joins `other` into this state (per-origin, see the header); mutates and returns this. */
  merge(other: CrdtSignalState): this {
    this.checkSameSchema(other.schema);
    if (other === this) return this;
    for (const [key, source] of other.entities) this.joinEntity(source, key);
    for (const log of other.logs.values()) this.joinOrigin(log);
    this.mutationCount++;
    return this;
  }

  /** The entity's signals and flags as of `atNs` (decay and windows evaluated at that time). */
  query(entityId: bigint, atNs: bigint): EntityView {
    checkU64(entityId, 'entityId');
    checkU64(atNs, 'atNs');
    const entity = this.entities.get(entityKeyOf(entityId));
    const [atHi, atLo] = splitNs(atNs);
    const atSeconds = secondsOf(atHi, atLo);
    const signals: Record<string, SignalScore> = {};
    for (const signal of this.schema.signals) {
      if (signal.kind !== 'score') continue;
      const view: SignalScore = {
        signalType: signal.id,
        name: signal.name,
        score: 0,
        counts: Object.fromEntries(signal.windows.map((window) => [window.name, 0])),
        eventCount: 0,
        weightSum: 0,
        weightSumMicros: 0n,
        lastHlc: null,
        lastEventNs: null,
        originCount: 0,
      };
      const cell = entity?.cell(signal.id);
      if (cell !== undefined) {
        let best = cell.contributions[0];
        for (const contribution of cell.contributions) {
          view.score += scoreAt(contribution, signal, atHi, atLo);
          view.eventCount += contribution.eventCount;
          view.weightSumMicros +=
            wideToBigInt(contribution.weightPositiveHi, contribution.weightPositiveLo) -
            wideToBigInt(contribution.weightNegativeHi, contribution.weightNegativeLo);
          signal.windows.forEach((window, index) => {
            view.counts[window.name] += countInWindow(
              contribution.windows[index],
              Math.floor(atSeconds / window.bucketSeconds),
              window.bucketCount,
            );
          });
          const order = compareHlcParts(
            contribution.lastWallNs,
            contribution.lastLogical,
            contribution.lastNodeId,
            best.lastWallNs,
            best.lastLogical,
            best.lastNodeId,
          );
          if (order > 0) best = contribution;
        }
        view.weightSum = microsToUnits(view.weightSumMicros);
        view.lastHlc = new HlcTimestamp(best.lastWallNs, best.lastLogical, best.lastNodeId);
        view.lastEventNs = joinNs(best.lastEventHi, best.lastEventLo);
        view.originCount = cell.contributions.length;
      }
      signals[signal.name] = view;
    }
    const flags: Record<string, boolean> = {};
    this.schema.flags.forEach((name, index) => {
      flags[name] = entity?.flags?.[index]?.get() ?? false;
    });
    return { entityId, atNs, signals, flags };
  }

  /** The entity's event count and weight sum (micro-units) as PN-counters keyed by origin. */
  counters(entityId: bigint, signalType: number): { events: PNCounter; weightMicros: PNCounter } {
    checkU64(entityId, 'entityId');
    const signal = this.signalFor(signalType);
    const events = new PNCounter();
    const weightMicros = new PNCounter();
    const cell = signal.kind === 'score' ? this.entities.get(entityKeyOf(entityId))?.cell(signalType) : undefined;
    for (const contribution of cell?.contributions ?? []) {
      events.increment(contribution.origin, contribution.eventCount);
      weightMicros.raise(
        contribution.origin,
        wideToBigInt(contribution.weightPositiveHi, contribution.weightPositiveLo),
        wideToBigInt(contribution.weightNegativeHi, contribution.weightNegativeLo),
      );
    }
    return { events, weightMicros };
  }

  /** A copy of the entity's LWW register for `flag` (never set: an empty register). */
  flag(entityId: bigint, flag: string): LWWRegister<boolean> {
    checkU64(entityId, 'entityId');
    const index = this.schema.flags.indexOf(flag);
    if (index < 0) throw new TidelogError('UNKNOWN_SIGNAL_TYPE', `the schema has no flag "${flag}"`);
    const register = this.entities.get(entityKeyOf(entityId))?.flags?.[index];
    return register?.clone() ?? new LWWRegister<boolean>({ tieBreak: trueWinsTies });
  }

  /** Entity ids, ascending. */
  entityIds(): bigint[] {
    return [...this.entities.keys()].sort(compareEntityKeys).map(entityIdOf);
  }

  clone(): CrdtSignalState {
    const copy = new CrdtSignalState(this.schema, { maxPendingEvents: this.maxPendingEvents });
    for (const [key, entity] of this.entities) copy.entities.set(key, entity.clone());
    for (const [origin, log] of this.logs) copy.logs.set(origin, log.clone());
    copy.pendingCount = this.pendingCount;
    return copy;
  }

  equals(other: CrdtSignalState): boolean {
    if (other.schema.fingerprint !== this.schema.fingerprint || other.entities.size !== this.entities.size) return false;
    for (const [key, entity] of this.entities) {
      const theirs = other.entities.get(key);
      if (theirs === undefined || !entity.equals(theirs)) return false;
    }
    const origins = new Set([...this.logs.keys(), ...other.logs.keys()]);
    for (const origin of origins) {
      const mine = this.logs.get(origin) ?? new OriginLog(origin);
      const theirs = other.logs.get(origin) ?? new OriginLog(origin);
      if (!mine.equals(theirs)) return false;
    }
    return true;
  }

  /** The canonical snapshot (snapshot-codec.ts): equal states give identical bytes. */
  encode(): Uint8Array {
    return encodeSnapshotBytes(this.schema.fingerprint, this.logs.values(), this.entities.values());
  }

  static decode(bytes: Uint8Array, schema: SignalSchema, options: SignalStateOptions = {}): CrdtSignalState {
    const { logs, entities } = decodeSnapshotBytes(bytes, schema);
    const state = new CrdtSignalState(schema, options);
    for (const entity of entities) state.entities.set(entity.key, entity);
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
    if (record === null || typeof record !== 'object' || record.format !== 'tidelog/crdt-state' || typeof record.snapshot !== 'string') {
      throw new TidelogError('DECODE_FAILED', 'not a tidelog CRDT state JSON');
    }
    return CrdtSignalState.decode(Buffer.from(record.snapshot, 'base64'), schema, options);
  }

  // ---- for reconciliation (reconcile.ts); not part of the public surface ----

  /** @internal */
  entityStates(): IterableIterator<EntityState> {
    return this.entities.values();
  }

  /** @internal */
  entityState(key: EntityKey): EntityState | undefined {
    return this.entities.get(key);
  }

  /** @internal Origin logs with content, ascending by origin. */
  originLogs(): OriginLog[] {
    return [...this.logs.values()].filter((log) => !log.isEmpty).sort((a, b) => a.origin - b.origin);
  }

  /** @internal Joins one entity (per-origin max, LWW flags); returns whether anything changed. */
  joinEntity(source: EntityState, key: EntityKey = source.key): boolean {
    const target = this.entities.get(key);
    if (target === undefined) {
      this.entities.set(key, source.clone());
      this.mutationCount++;
      return true;
    }
    const isChanged = target.join(source, this.schema);
    if (isChanged) this.mutationCount++;
    return isChanged;
  }

  /** @internal Raises the origin's appliedSeq, unions its reorder buffer and drains it. */
  joinOrigin(source: OriginLog): void {
    const log = this.logFor(source.origin);
    if (source.appliedSeq > log.appliedSeq) {
      log.appliedSeq = source.appliedSeq;
      this.mutationCount++;
    }
    for (const [seq, event] of source.pending) {
      if (seq > log.appliedSeq && !log.pending.has(seq)) {
        log.pending.set(seq, event);
        this.pendingCount++;
        this.mutationCount++;
      }
    }
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

  private logFor(origin: number): OriginLog {
    let log = this.logs.get(origin);
    if (log === undefined) {
      log = new OriginLog(origin);
      this.logs.set(origin, log);
    }
    return log;
  }

  private validatePacked(bytes: Uint8Array, count: number): void {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const byId = this.schema.byId;
    for (let index = 0; index < count; index++) {
      const offset = index * EVENT_BYTES;
      const signalType = bytes[offset + 8];
      if (byId[signalType] === undefined) {
        throw new TidelogError('UNKNOWN_SIGNAL_TYPE', `event ${index}: signal type ${signalType} is not in the schema`, {
          details: { index, signalType },
        });
      }
      const weight = view.getFloat32(offset + 9, true);
      // The negated form also rejects NaN.
      if (!(Math.abs(weight) <= MAX_ABS_WEIGHT)) {
        throw new TidelogError('BAD_REQUEST', `event ${index}: weight must be finite and |w| ≤ ${MAX_ABS_WEIGHT}`, {
          details: { index, weight },
        });
      }
    }
  }

  private buffer(log: OriginLog, bytes: Uint8Array, count: number, firstSeq: number, firstHlc: HlcTimestamp): void {
    let added = 0;
    for (let index = 0; index < count; index++) if (!log.pending.has(firstSeq + index)) added++;
    if (this.pendingCount + added > this.maxPendingEvents) {
      throw new TidelogError('OVERLOADED', `the reorder buffer is full: origin ${log.origin} waits for seq ${log.appliedSeq + 1}`, {
        details: { origin: log.origin, appliedSeq: log.appliedSeq, pendingEvents: this.pendingCount },
      });
    }
    const copy = bytes.slice(0, count * EVENT_BYTES);
    for (let index = 0; index < count; index++) {
      const seq = firstSeq + index;
      if (log.pending.has(seq)) continue;
      log.pending.set(seq, {
        bytes: copy.subarray(index * EVENT_BYTES, (index + 1) * EVENT_BYTES),
        wallNs: firstHlc.wallNs,
        logical: firstHlc.logical + index,
        nodeId: firstHlc.nodeId,
      });
    }
    this.pendingCount += added;
    this.mutationCount++;
  }

  /** Folds buffered events that now continue the origin's applied prefix; drops stale ones. */
  private drain(log: OriginLog): number {
    if (log.pending.size === 0) return 0;
    let folded = 0;
    for (;;) {
      const seq = log.appliedSeq + 1;
      const next = log.pending.get(seq);
      if (next === undefined) break;
      log.pending.delete(seq);
      this.pendingCount--;
      this.foldRange(next.bytes, 0, 1, log.origin, seq, next.wallNs, next.logical, next.nodeId);
      log.appliedSeq = seq;
      folded++;
    }
    for (const seq of [...log.pending.keys()]) {
      if (seq <= log.appliedSeq) {
        log.pending.delete(seq);
        this.pendingCount--;
      }
    }
    if (folded > 0) this.mutationCount++;
    return folded;
  }

  /** The hot loop: no object per score event, no bigint unless an id is ≥ 2^53. */
  private foldRange(
    bytes: Uint8Array,
    from: number,
    to: number,
    origin: number,
    firstSeq: number,
    wallNs: bigint,
    firstLogical: number,
    nodeId: number,
  ): void {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const byId = this.schema.byId;
    const entities = this.entities;
    const flagCount = this.schema.flags.length;
    for (let index = from; index < to; index++) {
      const offset = index * EVENT_BYTES;
      const lo = view.getUint32(offset, true);
      const hi = view.getUint32(offset + 4, true);
      const signal = byId[bytes[offset + 8]] as SignalType;
      const timeLo = view.getUint32(offset + 13, true);
      const timeHi = view.getUint32(offset + 17, true);
      const key: EntityKey = hi < 0x200000 ? hi * TWO_POW_32 + lo : joinNs(hi, lo);
      let entity = entities.get(key);
      if (entity === undefined) {
        entity = new EntityState(key, positionOf(hi, lo));
        entities.set(key, entity);
      }
      entity.isDigestStale = true;
      if (signal.kind === 'flag') {
        entity
          .flagFor(signal.flagIndex, flagCount)
          .set(signal.value, new HlcTimestamp(wallNs, firstLogical + index, nodeId));
        continue;
      }
      const seq = firstSeq + index;
      const contribution = entity.cellFor(signal).contributionFor(origin);
      if (seq <= contribution.lastSeq) continue;
      // + 0 turns −0 into +0, so no state ever holds −0 (it would not survive msgpack).
      const weight = view.getFloat32(offset + 9, true) + 0;
      foldScoreEvent(
        contribution,
        signal,
        seq,
        timeHi,
        timeLo,
        secondsOf(timeHi, timeLo),
        weight,
        Math.round(Math.abs(weight) * MICROS_PER_UNIT),
        wallNs,
        firstLogical + index,
        nodeId,
      );
    }
  }
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
