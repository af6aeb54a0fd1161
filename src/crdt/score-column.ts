// All contributions to one score signal, stored in one typed array: the hot path folds an event
// with one hash-table probe and a few neighbouring cache lines, and no object per event or
// per contribution.
//
// A contribution is one origin's share of one (entity, signal): what that origin's events for
// the key added, folded in the origin's own seq order.
// Invariant: a contribution is a pure function of the origin's events for the key with
// seq ≤ lastSeq, folded in seq order. Since (origin, seq) names one event forever, two
// contributions of one (entity, signal, origin) are prefixes of one history and the one with
// the greater lastSeq contains the other: merge keeps it whole and never adds floats from
// different paths. Same events in the same order ⇒ same bits on every replica.
// When the precondition fails (one (origin, seq) named two events, so two contributions share a
// lastSeq but not their contents), the join is still a join: contributions are ordered by
// (lastSeq, content) with `compareContributions` (contribution-values.ts), the greater wins on
// every replica, and the column counts the clash in `conflicts`.
//
// Decayed score, anchored: a contribution holds score s at anchor time a (the newest event time
// folded). Folding (t, w): if t ≥ a: s ← s·e^(−λ(t−a)) + w, a ← t; else (an older event reaching
// its origin late) s ← s + w·e^(−λ(a−t)). Query at T: s·e^(−λ(T−a)), the closed form
// Σ wᵢ·e^(−λ(T−tᵢ)) up to float rounding (≈ n·2⁻⁵³ relative).
//
// Windowed counts: per window a ring of B = bucketsPerWindow counters of g = window / B seconds
// (default B = 24: 150 s for 1h, 1 h for 24h, 7 h for 7d); bucket(t) = ⌊t_s / g⌋. The ring holds
// the B buckets ending at the newest bucket the origin has seen. A query at T counts buckets
// (b_T − B, b_T]: between window − g and window of history, so it may miss the events of the
// oldest partial bucket (at most 1/B of the window's span); an event older than the ring is
// counted in totals and score but not in windows.
//
// Layout of one contribution (slot s): one record of `stride` float64s, fields then rings
// (W windows, B buckets per window), so one event's writes land on neighbouring cache lines.
//   fields[s·stride + …]   float64 (every value an exact integer unless noted)
//   index     field          meaning
//   --------  -------------  --------------------------------------------------------------
//          0  origin         u32
//          1  next           slot of the same cell's next origin (ascending), −1 at the end
//          2  lastSeq        highest origin seq folded in: the version merge compares
//          3  eventCount     events folded
//        4–5  weightPositive ΣP of the weight PN-counter, micro-units, hi·2^48 + lo
//        6–7  weightNegative ΣN, likewise
//          8  score          decayed score at the anchor time (float)
//       9–10  anchor         anchor time, ns as u32 hi, lo
//      11–14  lastHlc        greatest event HLC folded: wall hi, wall lo, logical, nodeId
//      15–16  lastEvent      that event's timestampNs, u32 hi, lo
//      17–19  digest         cached cell digest hi, lo, isStale (head slot only)
//   20…20+W−1 newest         newest bucket per window (−1 before any event)
//   20+W…     rings          W·B u32 counts (a Uint32Array view of the same buffer):
//                            rings[ringAt(s) + w·B + (bucket mod B)]
// With the default schema (W = 3, B = 24) a record is 59 float64s = 472 bytes.

import { compareContributions, type ContributionValues } from './contribution-values.ts';
import { keyHalves, type EntityKey } from './entity-key.ts';
import { SlotTable } from './slot-table.ts';
import type { ScoreSignal } from './signal-schema.ts';
import { secondsOf } from './packed-time.ts';
import { LIMB, MICROS_PER_UNIT } from './weight-micros.ts';
import type { WordHash } from './word-hash.ts';

export const ORIGIN = 0;
export const NEXT = 1;
export const LAST_SEQ = 2;
export const EVENT_COUNT = 3;
export const WEIGHT_POSITIVE_HI = 4;
export const WEIGHT_POSITIVE_LO = 5;
export const WEIGHT_NEGATIVE_HI = 6;
export const WEIGHT_NEGATIVE_LO = 7;
export const SCORE = 8;
export const ANCHOR_HI = 9;
export const ANCHOR_LO = 10;
export const WALL_HI = 11;
export const WALL_LO = 12;
export const LOGICAL = 13;
export const NODE = 14;
export const EVENT_HI = 15;
export const EVENT_LO = 16;
export const DIGEST_HI = 17;
export const DIGEST_LO = 18;
export const DIGEST_STALE = 19;
export const NEWEST = 20;

const TWO_POW_32 = 4294967296;
const INITIAL_CAPACITY = 64;

/** bucket mod B for a non-negative integer bucket, exact (the quotient is exact below 2^53). */
function ringIndex(bucket: number, bucketCount: number): number {
  return bucket - Math.floor(bucket / bucketCount) * bucketCount;
}

/** The HLC wall and node shared by a batch's events (event i adds i to the logical counter). */
export interface BatchStamp {
  wallHi: number;
  wallLo: number;
  nodeId: number;
}

export class ScoreColumn {
  readonly signal: ScoreSignal;
  readonly windowCount: number;
  readonly bucketCount: number;
  readonly stride: number;
  /** u32s of ring counts per slot (W·B). */
  readonly ringStride: number;
  /** Where a slot's rings start within its record, in u32 units. */
  private readonly ringOffset: number;
  /** The head slot (lowest origin) of each entity's chain. */
  readonly heads: SlotTable;
  fields: Float64Array;
  rings: Uint32Array;
  size = 0;
  /** Joins that met one (key, origin, lastSeq) with two different contents (see the header). */
  conflicts = 0;
  private readonly bucketSeconds: Float64Array;

  constructor(signal: ScoreSignal, bucketCount: number, source?: ScoreColumn) {
    this.signal = signal;
    this.windowCount = signal.windows.length;
    this.bucketCount = bucketCount;
    this.ringStride = this.windowCount * bucketCount;
    this.ringOffset = (NEWEST + this.windowCount) * 2;
    // The rings live inside the record, right after the fields, so one event's writes land
    // on neighbouring cache lines.
    this.stride = NEWEST + this.windowCount + Math.ceil(this.ringStride / 2);
    this.bucketSeconds = Float64Array.from(signal.windows.map((window) => window.bucketSeconds));
    if (source === undefined) {
      this.heads = new SlotTable();
      this.fields = new Float64Array(INITIAL_CAPACITY * this.stride);
    } else {
      this.heads = new SlotTable(source.heads);
      this.size = source.size;
      this.conflicts = source.conflicts;
      this.fields = source.fields.slice(0, Math.max(INITIAL_CAPACITY, source.size) * this.stride);
    }
    this.rings = new Uint32Array(this.fields.buffer);
  }

  clone(): ScoreColumn {
    return new ScoreColumn(this.signal, this.bucketCount, this);
  }

  /** Index of the slot's first ring count in `rings`. */
  ringAt(slot: number): number {
    return slot * this.stride * 2 + this.ringOffset;
  }

  /** A fresh slot for `origin` (not linked into any chain yet). */
  allocate(origin: number): number {
    const slot = this.size++;
    if (this.size * this.stride > this.fields.length) {
      const capacity = Math.max(INITIAL_CAPACITY, this.size * 2);
      const fields = new Float64Array(capacity * this.stride);
      fields.set(new Float64Array(this.fields.buffer, 0, this.fields.length));
      this.fields = fields;
      this.rings = new Uint32Array(fields.buffer);
    }
    const at = slot * this.stride;
    const fields = this.fields;
    fields[at + ORIGIN] = origin;
    fields[at + NEXT] = -1;
    fields[at + DIGEST_STALE] = 1;
    for (let window = 0; window < this.windowCount; window++) fields[at + NEWEST + window] = -1;
    return slot;
  }

  /** The slot of (key, origin), created and linked in origin order when missing. */
  slotFor(key: EntityKey, origin: number): number {
    const head = this.heads.get(key);
    if (head < 0) {
      const slot = this.allocate(origin);
      this.heads.set(key, slot);
      return slot;
    }
    const stride = this.stride;
    if (this.fields[head * stride + ORIGIN] > origin) {
      const slot = this.allocate(origin);
      this.fields[slot * stride + NEXT] = head;
      this.fields[slot * stride + DIGEST_STALE] = 1;
      this.heads.set(key, slot);
      return slot;
    }
    let previous = head;
    for (;;) {
      const fields = this.fields;
      if (fields[previous * stride + ORIGIN] === origin) return previous;
      const next = fields[previous * stride + NEXT];
      if (next < 0 || fields[next * stride + ORIGIN] > origin) {
        const slot = this.allocate(origin);
        this.fields[slot * stride + NEXT] = next;
        this.fields[previous * stride + NEXT] = slot;
        this.fields[head * stride + DIGEST_STALE] = 1;
        return slot;
      }
      previous = next;
    }
  }

  /**
   * Folds the packed event at `offset` of `view` (21-byte layout, src/event.ts) into `slot`,
   * stamped (batch wall, `logical`, batch node); the caller checked seq > lastSeq. Few,
   * non-float arguments on purpose: this runs once per event and V8 does not inline it.
   */
  fold(slot: number, seq: number, view: DataView, offset: number, logical: number, stamp: BatchStamp): void {
    const timeLo = view.getUint32(offset + 13, true);
    const timeHi = view.getUint32(offset + 17, true);
    const seconds = secondsOf(timeHi, timeLo);
    // + 0 turns −0 into +0, so no state ever holds −0 (it would not survive msgpack).
    const weight = view.getFloat32(offset + 9, true) + 0;
    const micros = Math.round(Math.abs(weight) * MICROS_PER_UNIT);
    const { wallHi, wallLo, nodeId } = stamp;
    const fields = this.fields;
    const at = slot * this.stride;
    fields[at + LAST_SEQ] = seq;
    const eventCount = fields[at + EVENT_COUNT] + 1;
    fields[at + EVENT_COUNT] = eventCount;
    if (weight >= 0) {
      const lo = fields[at + WEIGHT_POSITIVE_LO] + micros;
      if (lo >= LIMB) {
        fields[at + WEIGHT_POSITIVE_HI] += Math.floor(lo / LIMB);
        fields[at + WEIGHT_POSITIVE_LO] = lo % LIMB;
      } else fields[at + WEIGHT_POSITIVE_LO] = lo;
    } else {
      const lo = fields[at + WEIGHT_NEGATIVE_LO] + micros;
      if (lo >= LIMB) {
        fields[at + WEIGHT_NEGATIVE_HI] += Math.floor(lo / LIMB);
        fields[at + WEIGHT_NEGATIVE_LO] = lo % LIMB;
      } else fields[at + WEIGHT_NEGATIVE_LO] = lo;
    }

    if (eventCount === 1) {
      fields[at + SCORE] = weight;
      fields[at + ANCHOR_HI] = timeHi;
      fields[at + ANCHOR_LO] = timeLo;
    } else {
      const decayPerNs = this.signal.decayPerNs;
      const sinceAnchorNs = (timeHi - fields[at + ANCHOR_HI]) * TWO_POW_32 + (timeLo - fields[at + ANCHOR_LO]);
      if (sinceAnchorNs >= 0) {
        fields[at + SCORE] = fields[at + SCORE] * Math.exp(-decayPerNs * sinceAnchorNs) + weight;
        fields[at + ANCHOR_HI] = timeHi;
        fields[at + ANCHOR_LO] = timeLo;
      } else {
        fields[at + SCORE] += weight * Math.exp(decayPerNs * sinceAnchorNs);
      }
    }

    const order =
      wallHi - fields[at + WALL_HI] ||
      wallLo - fields[at + WALL_LO] ||
      logical - fields[at + LOGICAL] ||
      nodeId - fields[at + NODE];
    if (order > 0 || eventCount === 1) {
      fields[at + WALL_HI] = wallHi;
      fields[at + WALL_LO] = wallLo;
      fields[at + LOGICAL] = logical;
      fields[at + NODE] = nodeId;
      fields[at + EVENT_HI] = timeHi;
      fields[at + EVENT_LO] = timeLo;
    }

    const rings = this.rings;
    const bucketCount = this.bucketCount;
    for (let window = 0; window < this.windowCount; window++) {
      const bucket = Math.floor(seconds / this.bucketSeconds[window]);
      const newestAt = at + NEWEST + window;
      const newest = fields[newestAt];
      const ringAt = this.ringAt(slot) + window * bucketCount;
      if (bucket > newest) {
        const cleared = Math.min(bucketCount, bucket - newest);
        // (newest + step) mod B without a float modulo (a libc call in V8): newest ≥ −1.
        let index = newest < 0 ? bucketCount - 1 : ringIndex(newest, bucketCount);
        for (let step = 0; step < cleared; step++) {
          index = index + 1 === bucketCount ? 0 : index + 1;
          rings[ringAt + index] = 0;
        }
        fields[newestAt] = bucket;
        rings[ringAt + ringIndex(bucket, bucketCount)] = 1;
      } else if (bucket > newest - bucketCount) {
        rings[ringAt + ringIndex(bucket, bucketCount)]++;
      }
    }
  }

  /**
   * The slot's score decayed (or, before the anchor, grown) to the query time. Never NaN: a zero
   * score stays 0 however far before its anchor (0·∞), and growth saturates at ±MAX_VALUE, so
   * a sum over origins is at worst ±∞, never ∞ − ∞.
   */
  scoreAt(slot: number, atHi: number, atLo: number): number {
    const at = slot * this.stride;
    const score = this.fields[at + SCORE];
    if (score === 0) return 0;
    const elapsedNs = (atHi - this.fields[at + ANCHOR_HI]) * TWO_POW_32 + (atLo - this.fields[at + ANCHOR_LO]);
    const value = score * Math.exp(-this.signal.decayPerNs * elapsedNs);
    return Number.isFinite(value) ? value : Math.sign(score) * Number.MAX_VALUE;
  }

  /** Events of the slot in window `window`'s buckets (queryBucket − B, queryBucket]. */
  countAt(slot: number, window: number, querySeconds: number): number {
    const bucketCount = this.bucketCount;
    const queryBucket = Math.floor(querySeconds / this.bucketSeconds[window]);
    const newest = this.fields[slot * this.stride + NEWEST + window];
    const first = Math.max(queryBucket, newest) - bucketCount + 1;
    const last = Math.min(queryBucket, newest);
    const ringAt = this.ringAt(slot) + window * bucketCount;
    let total = 0;
    for (let bucket = Math.max(0, first, newest - bucketCount + 1); bucket <= last; bucket++) {
      total += this.rings[ringAt + ringIndex(bucket, bucketCount)];
    }
    return total;
  }

  /** Slots of the key's chain, ascending by origin. */
  chain(key: EntityKey): number[] {
    const slots: number[] = [];
    let slot = this.heads.get(key);
    while (slot >= 0) {
      slots.push(slot);
      slot = this.fields[slot * this.stride + NEXT];
    }
    return slots;
  }

  values(slot: number): ContributionValues {
    const fields = this.fields;
    const at = slot * this.stride;
    const windows: number[][] = [];
    for (let window = 0; window < this.windowCount; window++) {
      const newest = fields[at + NEWEST + window];
      const ringAt = this.ringAt(slot) + window * this.bucketCount;
      const pairs: number[] = [];
      for (let bucket = Math.max(0, newest - this.bucketCount + 1); bucket <= newest; bucket++) {
        const count = this.rings[ringAt + ringIndex(bucket, this.bucketCount)];
        if (count > 0) pairs.push(bucket, count);
      }
      windows.push(pairs);
    }
    return {
      origin: fields[at + ORIGIN],
      lastSeq: fields[at + LAST_SEQ],
      eventCount: fields[at + EVENT_COUNT],
      weightPositiveHi: fields[at + WEIGHT_POSITIVE_HI],
      weightPositiveLo: fields[at + WEIGHT_POSITIVE_LO],
      weightNegativeHi: fields[at + WEIGHT_NEGATIVE_HI],
      weightNegativeLo: fields[at + WEIGHT_NEGATIVE_LO],
      score: fields[at + SCORE],
      anchorHi: fields[at + ANCHOR_HI],
      anchorLo: fields[at + ANCHOR_LO],
      wallHi: fields[at + WALL_HI],
      wallLo: fields[at + WALL_LO],
      logical: fields[at + LOGICAL],
      nodeId: fields[at + NODE],
      eventHi: fields[at + EVENT_HI],
      eventLo: fields[at + EVENT_LO],
      windows,
    };
  }

  /**
   * Joins a decoded contribution into (key, origin): taken if it has the greater lastSeq, or the
   * same lastSeq and the greater content (a conflict, counted).
   */
  joinValues(key: EntityKey, values: ContributionValues): boolean {
    const slot = this.slotFor(key, values.origin);
    const fields = this.fields;
    const at = slot * this.stride;
    if (values.lastSeq < fields[at + LAST_SEQ]) return false;
    if (values.lastSeq === fields[at + LAST_SEQ]) {
      const order = compareContributions(values, this.values(slot));
      if (order === 0) return false;
      this.conflicts++;
      if (order < 0) return false;
    }
    fields[at + LAST_SEQ] = values.lastSeq;
    fields[at + EVENT_COUNT] = values.eventCount;
    fields[at + WEIGHT_POSITIVE_HI] = values.weightPositiveHi;
    fields[at + WEIGHT_POSITIVE_LO] = values.weightPositiveLo;
    fields[at + WEIGHT_NEGATIVE_HI] = values.weightNegativeHi;
    fields[at + WEIGHT_NEGATIVE_LO] = values.weightNegativeLo;
    fields[at + SCORE] = values.score;
    fields[at + ANCHOR_HI] = values.anchorHi;
    fields[at + ANCHOR_LO] = values.anchorLo;
    fields[at + WALL_HI] = values.wallHi;
    fields[at + WALL_LO] = values.wallLo;
    fields[at + LOGICAL] = values.logical;
    fields[at + NODE] = values.nodeId;
    fields[at + EVENT_HI] = values.eventHi;
    fields[at + EVENT_LO] = values.eventLo;
    const ringAt = this.ringAt(slot);
    this.rings.fill(0, ringAt, ringAt + this.ringStride);
    values.windows.forEach((pairs, window) => {
      const windowAt = ringAt + window * this.bucketCount;
      fields[at + NEWEST + window] = pairs.length > 0 ? pairs[pairs.length - 2] : -1;
      for (let index = 0; index < pairs.length; index += 2) {
        this.rings[windowAt + ringIndex(pairs[index], this.bucketCount)] = pairs[index + 1];
      }
    });
    this.markStale(key);
    return true;
  }

  /**
   * Joins every contribution of `other` (same signal): per (key, origin) the greater lastSeq, and
   * on an equal lastSeq with different contents the greater content (a conflict, counted).
   */
  joinColumn(other: ScoreColumn): void {
    const stride = this.stride;
    const ringStride = this.ringStride;
    other.heads.forEach((key, otherHead) => {
      let isChanged = false;
      for (let source = otherHead; source >= 0; source = other.fields[source * stride + NEXT]) {
        const sourceAt = source * stride;
        const slot = this.slotFor(key, other.fields[sourceAt + ORIGIN]);
        const at = slot * stride;
        const theirSeq = other.fields[sourceAt + LAST_SEQ];
        const mySeq = this.fields[at + LAST_SEQ];
        if (theirSeq < mySeq) continue;
        if (theirSeq === mySeq && !this.isTheirsGreater(slot, other, source)) continue;
        // Element loops rather than subarray().set(): no typed-array objects per contribution.
        const fields = this.fields;
        const sourceFields = other.fields;
        for (let field = LAST_SEQ; field < DIGEST_HI; field++) fields[at + field] = sourceFields[sourceAt + field];
        for (let field = NEWEST; field < NEWEST + this.windowCount; field++) fields[at + field] = sourceFields[sourceAt + field];
        const ringAt = this.ringAt(slot);
        const sourceRingAt = other.ringAt(source);
        for (let index = 0; index < ringStride; index++) this.rings[ringAt + index] = other.rings[sourceRingAt + index];
        isChanged = true;
      }
      if (isChanged) this.markStale(key);
    });
  }

  /**
   * For two slots with the same lastSeq: whether `other`'s content wins. Equal versions almost
   * always hold equal contents, checked cheaply first; a difference is a conflict (counted).
   */
  private isTheirsGreater(slot: number, other: ScoreColumn, otherSlot: number): boolean {
    if (this.slotEquals(slot, other, otherSlot)) return false;
    const order = compareContributions(other.values(otherSlot), this.values(slot));
    if (order !== 0) this.conflicts++;
    return order > 0;
  }

  markStale(key: EntityKey): void {
    const head = this.heads.get(key);
    if (head >= 0) this.fields[head * this.stride + DIGEST_STALE] = 1;
  }

  /** Whether the key's chains in the two columns hold the same contributions. */
  cellEquals(key: EntityKey, other: ScoreColumn): boolean {
    let mine = this.heads.get(key);
    let theirs = other.heads.get(key);
    while (mine >= 0 && theirs >= 0) {
      if (!this.slotEquals(mine, other, theirs)) return false;
      mine = this.fields[mine * this.stride + NEXT];
      theirs = other.fields[theirs * this.stride + NEXT];
    }
    return mine < 0 && theirs < 0;
  }

  /** Whether two slots (of this and `other`, same signal) hold the same contribution. */
  slotEquals(slot: number, other: ScoreColumn, otherSlot: number): boolean {
    // Runs for every contribution two merged states share at the same lastSeq: it reads both
    // records whole (≈ 2 × 472 bytes), which is what an exact conflict check costs.
    const fields = this.fields;
    const otherFields = other.fields;
    const at = slot * this.stride;
    const otherAt = otherSlot * this.stride;
    if (fields[at + ORIGIN] !== otherFields[otherAt + ORIGIN]) return false;
    for (let field = LAST_SEQ; field < DIGEST_HI; field++) {
      const mine = fields[at + field];
      const theirs = otherFields[otherAt + field];
      // The record order tells −0 from +0, so equality must too (1/−0 = −∞).
      if (mine !== theirs || (mine === 0 && 1 / mine !== 1 / theirs)) return false;
    }
    const newestEnd = NEWEST + this.windowCount;
    for (let field = NEWEST; field < newestEnd; field++) {
      if (fields[at + field] !== otherFields[otherAt + field]) return false;
    }
    const rings = this.rings;
    const otherRings = other.rings;
    const ringEnd = this.ringAt(slot) + this.ringStride;
    for (let index = this.ringAt(slot), otherIndex = other.ringAt(otherSlot); index < ringEnd; index++, otherIndex++) {
      if (rings[index] !== otherRings[otherIndex]) return false;
    }
    return true;
  }

  /** The content digest of the cell whose head slot is `head` (cached there until it changes). */
  cellDigest(key: EntityKey, head: number, hash: WordHash): void {
    const fields = this.fields;
    const headAt = head * this.stride;
    if (fields[headAt + DIGEST_STALE] === 0) {
      hash.hi = fields[headAt + DIGEST_HI];
      hash.lo = fields[headAt + DIGEST_LO];
      return;
    }
    const [keyHi, keyLo] = keyHalves(key);
    hash.reset();
    hash.word(keyHi);
    hash.word(keyLo);
    hash.word(this.signal.id);
    for (let slot = head; slot >= 0; slot = fields[slot * this.stride + NEXT]) {
      const at = slot * this.stride;
      hash.word(fields[at + ORIGIN]);
      for (let field = LAST_SEQ; field < DIGEST_HI; field++) hash.float64(fields[at + field]);
      for (let field = NEWEST; field < NEWEST + this.windowCount; field++) hash.float64(fields[at + field]);
      const ringAt = this.ringAt(slot);
      // Non-zero counts only, with their index: canonical, and most ring slots are empty.
      for (let index = 0; index < this.ringStride; index++) {
        const count = this.rings[ringAt + index];
        if (count !== 0) {
          hash.word(index);
          hash.word(count);
        }
      }
    }
    hash.finish();
    fields[headAt + DIGEST_HI] = hash.hi;
    fields[headAt + DIGEST_LO] = hash.lo;
    fields[headAt + DIGEST_STALE] = 0;
  }
}

