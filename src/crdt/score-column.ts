// One score signal's contributions: per entity a chain of records (contribution-pool.ts), one per
// origin in ascending origin order, starting at the entity's head; the hot fold updates one
// record in place.
// Invariant: a contribution is a pure function of the origin's events for (entity, signal) with
// seq ≤ lastSeq, folded in seq order. Since (origin, seq) names one event forever, two
// contributions of one (entity, signal, origin) are prefixes of one history and the one with
// the greater lastSeq contains the other: merge keeps it whole and never adds floats from
// different paths. Same events in the same order ⇒ same bits on every replica.
// When the precondition fails (one (origin, seq) named two events, so two contributions share a
// lastSeq but not their contents), the join is still a join: contributions are ordered by
// (lastSeq, content) with `compareContributions` (contribution-values.ts), the greater wins on
// every replica, and the column counts the clash in `conflicts`. The joins, equality and
// digests across states live in column-join.ts.
//
// Decayed score, anchored: a contribution holds score s at anchor time a (the newest event time
// folded). Folding (t, w): if t ≥ a: s ← s·e^(−λ(t−a)) + w, a ← t; else (an older event reaching
// its origin late) s ← s + w·e^(−λ(a−t)). Query at T: s·e^(−λ(T−a)), the closed form
// Σ wᵢ·e^(−λ(T−tᵢ)) up to float rounding (≈ n·2⁻⁵³ relative).
//
// Windowed counts: per window a ring of B = bucketsPerWindow counters of g = window / B seconds
// (default B = 24: 150 s for 1h, 1 h for 24h, 7 h for 7d); bucket(t) = ⌊t_s / g⌋. The ring holds
// the B buckets ending at the newest bucket the origin has seen, ⌊a_s / g⌋ (window-rings.ts
// stores it sparsely). A query at T counts buckets (b_T − B, b_T]: between window − g and
// window of history, so it may miss the events of the oldest partial bucket (at most 1/B of the
// window's span); an event older than the ring is counted in totals and score but not in windows.
//
//   heads   Pages<Uint32Array>  per entity: its head slot + 1, 0 without a contribution to this
//                               signal; a page allocated where the column first needs it, "used"
//                               once any page exists (Section.HEADS + ordinal)

import type { ContributionValues } from './contribution-values.ts';
import {
  ANCHOR_HI,
  ANCHOR_LO,
  EVENT_COUNT_LO,
  EVENT_HI,
  EVENT_LO,
  LAST_SEQ_F64,
  LOGICAL,
  NEXT,
  NODE,
  ORIGIN,
  POSITIVE_LO_F64,
  SCORE_F64,
  WALL_HI,
  WALL_LO,
  WINDOWS,
  type ContributionPool,
} from './contribution-pool.ts';
import { Section, type WriteBarrier } from './copy-on-write.ts';
import type { EntityIndex } from './entity-index.ts';
import type { ScoreSignal } from './signal-schema.ts';
import { secondsOf, TWO_POW_32 } from './packed-time.ts';
import { Pages, type GrowthMeter } from './pages.ts';
import { LIMB, MICROS_PER_UNIT } from './weight-micros.ts';
import { TWO_FLAG, type RingPool } from './window-rings.ts';

const U32_MAX = 0xffff_ffff;

/** The HLC wall and node shared by a batch's events (event i adds i to the logical counter). */
export interface BatchStamp {
  wallHi: number;
  wallLo: number;
  nodeId: number;
}

/** What a column shares with the other columns of its state. */
export interface ColumnStores {
  index: EntityIndex;
  pool: ContributionPool;
  rings: RingPool;
  barrier: WriteBarrier;
  meter: GrowthMeter;
}

export class ScoreColumn {
  readonly signal: ScoreSignal;
  /** Position among the state's score signals (ascending id): the heads' image section. */
  readonly ordinal: number;
  readonly windowCount: number;
  readonly bucketCount: number;
  readonly heads: Pages<Uint32Array>;
  /** Entities with a contribution to this signal. */
  cellCount = 0;
  /** Joins that met one (key, origin, lastSeq) with two different contents (see the header). */
  conflicts = 0;
  private readonly bucketSeconds: Float64Array;
  private readonly headSection: number;
  /** heads.list, shift and mask, for the hot path. */
  private readonly headPages: (Uint32Array | undefined)[];
  private readonly headShift: number;
  private readonly headMask: number;
  /** The state's shared stores (column-join.ts works on them directly). */
  readonly index: EntityIndex;
  readonly pool: ContributionPool;
  readonly rings: RingPool;
  readonly barrier: WriteBarrier;

  constructor(signal: ScoreSignal, ordinal: number, bucketCount: number, stores: ColumnStores, source?: ScoreColumn) {
    this.signal = signal;
    this.ordinal = ordinal;
    this.windowCount = signal.windows.length;
    this.bucketCount = bucketCount;
    this.bucketSeconds = Float64Array.from(signal.windows.map((window) => window.bucketSeconds));
    this.headSection = Section.HEADS + ordinal;
    this.index = stores.index;
    this.pool = stores.pool;
    this.rings = stores.rings;
    this.barrier = stores.barrier;
    this.heads = new Pages(Uint32Array, 1, stores.meter, source?.heads);
    this.headPages = this.heads.list;
    this.headShift = this.heads.shift;
    this.headMask = this.heads.mask;
    if (source !== undefined) {
      this.cellCount = source.cellCount;
      this.conflicts = source.conflicts;
    }
  }

  /** Takes the counts that go with heads loaded into the pages (image-loader.ts); the caller validated them. */
  adopt(cellCount: number, conflicts: number): void {
    this.cellCount = cellCount;
    this.conflicts = conflicts;
  }

  /** The entity's head slot (lowest origin), or −1 (also for entity −1: not in the index). */
  headOf(entity: number): number {
    if (entity < 0) return -1;
    const page = this.headPages[entity >>> this.headShift];
    const at = entity & this.headMask;
    return page !== undefined && at < page.length ? page[at] - 1 : -1;
  }

  /** The slot of (entity, origin), created and linked in origin order when missing. */
  slotFor(entity: number, origin: number): number {
    const pool = this.pool;
    const head = this.headOf(entity);
    if (head < 0) {
      const slot = pool.allocate(origin);
      this.setHead(entity, slot);
      this.cellCount++;
      return slot;
    }
    // Pages are fetched after each allocate: growing page 0 replaces it.
    if (pool.word(head, ORIGIN) > origin) {
      const slot = pool.allocate(origin);
      pool.wordsOf(slot)[pool.offsetOf(slot) + NEXT] = head + 1;
      this.setHead(entity, slot);
      return slot;
    }
    let previous = head;
    for (;;) {
      if (pool.word(previous, ORIGIN) === origin) return previous;
      const next = pool.word(previous, NEXT) - 1;
      if (next < 0 || pool.word(next, ORIGIN) > origin) {
        const slot = pool.allocate(origin);
        pool.wordsOf(slot)[pool.offsetOf(slot) + NEXT] = next + 1;
        this.barrier.copies?.touch(Section.CONTRIBUTIONS, previous);
        pool.wordsOf(previous)[pool.offsetOf(previous) + NEXT] = slot + 1;
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
    this.barrier.copies?.touch(Section.CONTRIBUTIONS, slot);
    const timeLo = view.getUint32(offset + 13, true);
    const timeHi = view.getUint32(offset + 17, true);
    // + 0 turns −0 into +0, so no state ever holds −0 (it would not survive msgpack).
    const weight = view.getFloat32(offset + 9, true) + 0;
    const micros = Math.round(Math.abs(weight) * MICROS_PER_UNIT);
    const pool = this.pool;
    const words = pool.wordPages[slot >>> pool.shift];
    const floats = pool.floatPages[slot >>> pool.shift];
    const at = (slot & pool.mask) * pool.strideWords;
    const floatAt = at >>> 1;
    floats[floatAt + LAST_SEQ_F64] = seq;
    const countLo = words[at + EVENT_COUNT_LO];
    const isFirst = countLo === 0 && pool.eventCountHi.get(slot) === 0;
    if (countLo !== U32_MAX) words[at + EVENT_COUNT_LO] = countLo + 1;
    else pool.carryEventCount(slot);
    if (weight >= 0) {
      const lo = floats[floatAt + POSITIVE_LO_F64] + micros;
      if (lo < LIMB) floats[floatAt + POSITIVE_LO_F64] = lo;
      else pool.carryPositive(slot, lo);
    } else pool.addNegative(slot, micros);

    const anchorHi = words[at + ANCHOR_HI];
    const anchorLo = words[at + ANCHOR_LO];
    if (isFirst) {
      floats[floatAt + SCORE_F64] = weight;
      words[at + ANCHOR_HI] = timeHi;
      words[at + ANCHOR_LO] = timeLo;
    } else {
      const decayPerNs = this.signal.decayPerNs;
      const sinceAnchorNs = (timeHi - anchorHi) * TWO_POW_32 + (timeLo - anchorLo);
      if (sinceAnchorNs >= 0) {
        floats[floatAt + SCORE_F64] = floats[floatAt + SCORE_F64] * Math.exp(-decayPerNs * sinceAnchorNs) + weight;
        words[at + ANCHOR_HI] = timeHi;
        words[at + ANCHOR_LO] = timeLo;
      } else {
        floats[floatAt + SCORE_F64] += weight * Math.exp(decayPerNs * sinceAnchorNs);
      }
    }

    const { wallHi, wallLo, nodeId } = stamp;
    const order =
      wallHi - words[at + WALL_HI] || wallLo - words[at + WALL_LO] || logical - words[at + LOGICAL] || nodeId - words[at + NODE];
    if (order > 0 || isFirst) {
      words[at + WALL_HI] = wallHi;
      words[at + WALL_LO] = wallLo;
      words[at + LOGICAL] = logical;
      words[at + NODE] = nodeId;
      words[at + EVENT_HI] = timeHi;
      words[at + EVENT_LO] = timeLo;
    }

    const windowCount = this.windowCount;
    if (isFirst) {
      for (let window = 0; window < windowCount; window++) words[at + WINDOWS + window] = 1;
      return;
    }
    const seconds = secondsOf(timeHi, timeLo);
    // The newest bucket before this event: derived from the anchor it had (window-rings.ts).
    const anchorSeconds = secondsOf(anchorHi, anchorLo);
    for (let window = 0; window < windowCount; window++) {
      const bucketSeconds = this.bucketSeconds[window];
      const bucket = Math.floor(seconds / bucketSeconds);
      const newest = Math.floor(anchorSeconds / bucketSeconds);
      const word = words[at + WINDOWS + window];
      if (bucket === newest && word < TWO_FLAG - 1) words[at + WINDOWS + window] = word + 1;
      else words[at + WINDOWS + window] = this.rings.fold(word, newest, bucket);
    }
  }

  /**
   * The slot's score decayed (or, before the anchor, grown) to the query time. Never NaN: a zero
   * score stays 0 however far before its anchor (0·∞), and growth saturates at ±MAX_VALUE, so
   * a sum over origins is at worst ±∞, never ∞ − ∞.
   */
  scoreAt(slot: number, atHi: number, atLo: number): number {
    const pool = this.pool;
    const score = pool.float(slot, SCORE_F64);
    if (score === 0) return 0;
    const elapsedNs = (atHi - pool.word(slot, ANCHOR_HI)) * TWO_POW_32 + (atLo - pool.word(slot, ANCHOR_LO));
    const value = score * Math.exp(-this.signal.decayPerNs * elapsedNs);
    return Number.isFinite(value) ? value : Math.sign(score) * Number.MAX_VALUE;
  }

  /** Events of the slot in window `window`'s buckets (queryBucket − B, queryBucket]. */
  countAt(slot: number, window: number, querySeconds: number): number {
    const queryBucket = Math.floor(querySeconds / this.bucketSeconds[window]);
    const word = this.pool.word(slot, WINDOWS + window);
    return this.rings.countWindow(word, this.newestOf(slot, window), queryBucket);
  }

  /** The newest bucket of the slot's window: ⌊anchor_s / g⌋. */
  newestOf(slot: number, window: number): number {
    return Math.floor(secondsOf(this.pool.word(slot, ANCHOR_HI), this.pool.word(slot, ANCHOR_LO)) / this.bucketSeconds[window]);
  }

  /** Slots of the entity's chain, ascending by origin (entity −1: none). */
  chain(entity: number): number[] {
    const slots: number[] = [];
    if (entity < 0) return slots;
    for (let slot = this.headOf(entity); slot >= 0; slot = this.pool.word(slot, NEXT) - 1) slots.push(slot);
    return slots;
  }

  values(slot: number): ContributionValues {
    const pool = this.pool;
    const words = pool.wordsOf(slot);
    const floats = pool.floatsOf(slot);
    const at = pool.offsetOf(slot);
    const windows: number[][] = [];
    for (let window = 0; window < this.windowCount; window++) {
      windows.push(this.rings.pairsOf(words[at + WINDOWS + window], this.newestOf(slot, window)));
    }
    return {
      origin: words[at + ORIGIN],
      lastSeq: floats[at / 2 + LAST_SEQ_F64],
      eventCount: pool.eventCountOf(slot),
      weightPositiveHi: pool.positiveHiOf(slot),
      weightPositiveLo: floats[at / 2 + POSITIVE_LO_F64],
      weightNegativeHi: pool.negativeHiOf(slot),
      weightNegativeLo: pool.negativeLoOf(slot),
      score: floats[at / 2 + SCORE_F64],
      anchorHi: words[at + ANCHOR_HI],
      anchorLo: words[at + ANCHOR_LO],
      wallHi: words[at + WALL_HI],
      wallLo: words[at + WALL_LO],
      logical: words[at + LOGICAL],
      nodeId: words[at + NODE],
      eventHi: words[at + EVENT_HI],
      eventLo: words[at + EVENT_LO],
      windows,
    };
  }

  private setHead(entity: number, slot: number): void {
    const page = this.heads.ensure(entity);
    this.barrier.copies?.touch(this.headSection, entity);
    page[entity & this.headMask] = slot + 1;
  }
}
