// Every contribution of a state, all score signals together, as fixed-size records in pages
// (pages.ts): a fold touches one record (80 bytes with the default schema) and no object, and
// growth adds a page (1024 records with the default schema), never copies the records.
// A contribution is one origin's share of one (entity, score signal); score-column.ts owns the
// meaning, this file the storage.
// Invariant: every value is exact. Fields that are almost always small live in the record at
// their common width; the rest of their range lives in side pages that exist only where some
// contribution needs them (a state that never saw a negative weight or a count beyond 2^32
// never allocates them; a missing side page reads as zero): eventCount = lo + hi·2^32,
// ΣP = lo + hi·2^48, ΣN = lo + hi·2^48. Records are never freed, so a fresh record is all zero.
//
//   record (slot s) at wordPages[s >>> shift], words (s & mask)·strideWords …, little-endian,
//   the default W = 3 windows (floatPages: the same pages as float64)
//   u32 index  f64 index  field           meaning
//   ---------  ---------  --------------  --------------------------------------------------
//           0             origin          u32
//           1             next            slot + 1 of the cell's next origin (ascending), 0 at the end
//         2–3          1  lastSeq         highest origin seq folded in (< 2^53)
//         4–5          2  positiveLo      ΣP of the weight PN-counter mod 2^48, micro-units
//         6–7          3  score           decayed score at the anchor time (float)
//           8             eventCountLo    events folded, low 32 bits
//        9–10             anchor          anchor (= newest event) time, ns as u32 hi, lo
//       11–14             lastHlc         greatest event HLC folded: wall hi, wall lo, logical, nodeId
//       15–16             lastEvent       that event's timestampNs, u32 hi, lo
//   17…17+W−1             windows         one word per window (window-rings.ts)
//                                         padding to a multiple of 8 bytes (zero)
//
//   side pages (per slot, a page allocated where first needed; "used" once any page exists)
//   negativeLo    Float64Array  ΣN mod 2^48           a negative weight
//   positiveHi    Float64Array  ⌊ΣP / 2^48⌋           ΣP reached 2^48 micro-units (2.8e8 units)
//   negativeHi    Float64Array  ⌊ΣN / 2^48⌋
//   eventCountHi  Uint32Array   ⌊eventCount / 2^32⌋   a count reached 2^32

import { Section, type WriteBarrier } from './copy-on-write.ts';
import { type GrowthMeter, Pages } from './pages.ts';
import { LIMB } from './weight-micros.ts';

export const ORIGIN = 0;
export const NEXT = 1;
/** f64 offsets within a record (the record's first f64 is at words index 2·(slot·strideWords/2)). */
export const LAST_SEQ_F64 = 1;
export const POSITIVE_LO_F64 = 2;
export const SCORE_F64 = 3;
export const EVENT_COUNT_LO = 8;
export const ANCHOR_HI = 9;
export const ANCHOR_LO = 10;
export const WALL_HI = 11;
export const WALL_LO = 12;
export const LOGICAL = 13;
export const NODE = 14;
export const EVENT_HI = 15;
export const EVENT_LO = 16;
export const WINDOWS = 17;

export const U32_LIMIT = 4294967296;

/** Words per record for records with room for `windowSlots` windows (a whole number of f64s). */
export function strideWordsFor(windowSlots: number): number {
  return (WINDOWS + windowSlots + 1) & ~1;
}

export class ContributionPool {
  readonly strideWords: number;
  /** Window words per record (the schema's largest window count). */
  readonly windowSlots: number;
  /** The records (Section.CONTRIBUTIONS). */
  readonly words: Pages<Uint32Array>;
  /** The record pages (words.list) and their float64 views, for the hot path. */
  readonly wordPages: Uint32Array[];
  readonly floatPages: Float64Array[] = [];
  /** Records per page: slot s is in page s >>> shift, at word (s & mask)·strideWords. */
  readonly shift: number;
  readonly mask: number;
  count = 0;
  readonly negativeLo: Pages<Float64Array>;
  readonly positiveHi: Pages<Float64Array>;
  readonly negativeHi: Pages<Float64Array>;
  readonly eventCountHi: Pages<Uint32Array>;
  private readonly barrier: WriteBarrier;

  constructor(windowSlots: number, barrier: WriteBarrier, meter: GrowthMeter, source?: ContributionPool) {
    this.windowSlots = windowSlots;
    this.strideWords = strideWordsFor(windowSlots);
    this.barrier = barrier;
    this.words = new Pages(Uint32Array, this.strideWords, meter, source?.words);
    this.wordPages = this.words.list as Uint32Array[];
    this.shift = this.words.shift;
    this.mask = this.words.mask;
    this.negativeLo = new Pages(Float64Array, 1, meter, source?.negativeLo);
    this.positiveHi = new Pages(Float64Array, 1, meter, source?.positiveHi);
    this.negativeHi = new Pages(Float64Array, 1, meter, source?.negativeHi);
    this.eventCountHi = new Pages(Uint32Array, 1, meter, source?.eventCountHi);
    this.count = source?.count ?? 0;
    this.refreshFloats();
  }

  /** Takes `count` records loaded into the pages (image-loader.ts); the caller validated them. */
  adopt(count: number): void {
    this.count = count;
    this.refreshFloats();
  }

  /** Word offset of the slot's record in its page (its float64 offset is half of it). */
  offsetOf(slot: number): number {
    return (slot & this.mask) * this.strideWords;
  }

  /** The page holding the slot's record. */
  wordsOf(slot: number): Uint32Array {
    return this.wordPages[slot >>> this.shift];
  }

  floatsOf(slot: number): Float64Array {
    return this.floatPages[slot >>> this.shift];
  }

  /** Word `field` of the slot's record. */
  word(slot: number, field: number): number {
    return this.wordPages[slot >>> this.shift][(slot & this.mask) * this.strideWords + field];
  }

  /** Float64 `field` (an f64 index) of the slot's record. */
  float(slot: number, field: number): number {
    return this.floatPages[slot >>> this.shift][((slot & this.mask) * this.strideWords) / 2 + field];
  }

  /** A fresh zero record for `origin`, linked nowhere yet. */
  allocate(origin: number): number {
    const slot = this.count;
    const page = this.words.ensure(slot);
    const pageIndex = slot >>> this.shift;
    if (this.floatPages[pageIndex]?.buffer !== page.buffer) this.floatPages[pageIndex] = new Float64Array(page.buffer);
    this.barrier.copies?.touch(Section.CONTRIBUTIONS, slot);
    page[(slot & this.mask) * this.strideWords + ORIGIN] = origin;
    this.count = slot + 1;
    return slot;
  }

  eventCountOf(slot: number): number {
    return this.eventCountHi.get(slot) * U32_LIMIT + this.word(slot, EVENT_COUNT_LO);
  }

  /** Adds one event to a count whose low word is at u32 max. */
  carryEventCount(slot: number): void {
    const high = this.eventCountHi.ensure(slot);
    this.barrier.copies?.touch(Section.EVENT_COUNT_HI, slot);
    high[this.eventCountHi.offsetOf(slot)]++;
    this.wordsOf(slot)[this.offsetOf(slot) + EVENT_COUNT_LO] = 0;
  }

  setEventCount(slot: number, count: number): void {
    const high = Math.floor(count / U32_LIMIT);
    this.wordsOf(slot)[this.offsetOf(slot) + EVENT_COUNT_LO] = count - high * U32_LIMIT;
    this.setSide(this.eventCountHi, Section.EVENT_COUNT_HI, slot, high);
  }

  positiveHiOf(slot: number): number {
    return this.positiveHi.get(slot);
  }

  negativeLoOf(slot: number): number {
    return this.negativeLo.get(slot);
  }

  negativeHiOf(slot: number): number {
    return this.negativeHi.get(slot);
  }

  /** Stores ΣP = hi·2^48 + `lo` where `lo` reached 2^48 (the carry goes to the side pages). */
  carryPositive(slot: number, lo: number): void {
    const carry = Math.floor(lo / LIMB);
    this.floatsOf(slot)[this.offsetOf(slot) / 2 + POSITIVE_LO_F64] = lo - carry * LIMB;
    const high = this.positiveHi.ensure(slot);
    this.barrier.copies?.touch(Section.POSITIVE_HI, slot);
    high[this.positiveHi.offsetOf(slot)] += carry;
  }

  /** Adds `micros` to ΣN. */
  addNegative(slot: number, micros: number): void {
    const low = this.negativeLo.ensure(slot);
    const at = this.negativeLo.offsetOf(slot);
    this.barrier.copies?.touch(Section.NEGATIVE_LO, slot);
    const lo = low[at] + micros;
    if (lo < LIMB) {
      low[at] = lo;
      return;
    }
    const carry = Math.floor(lo / LIMB);
    low[at] = lo - carry * LIMB;
    const high = this.negativeHi.ensure(slot);
    this.barrier.copies?.touch(Section.NEGATIVE_HI, slot);
    high[this.negativeHi.offsetOf(slot)] += carry;
  }

  /** Sets both weight limbs pairs (joins); side pages are allocated only for non-zero parts. */
  setWeights(slot: number, positiveHi: number, positiveLo: number, negativeHi: number, negativeLo: number): void {
    this.floatsOf(slot)[this.offsetOf(slot) / 2 + POSITIVE_LO_F64] = positiveLo;
    this.setSide(this.positiveHi, Section.POSITIVE_HI, slot, positiveHi);
    this.setSide(this.negativeLo, Section.NEGATIVE_LO, slot, negativeLo);
    this.setSide(this.negativeHi, Section.NEGATIVE_HI, slot, negativeHi);
  }

  private setSide<T extends Float64Array | Uint32Array>(pages: Pages<T>, section: number, slot: number, value: number): void {
    // A zero where no page holds the slot reads as zero already.
    if (value === 0 && pages.pageOf(slot) === undefined) return;
    const page = pages.ensure(slot);
    this.barrier.copies?.touch(section, slot);
    page[pages.offsetOf(slot)] = value;
  }

  /** Float64 views of the record pages (after a clone or a load). */
  private refreshFloats(): void {
    this.floatPages.length = 0;
    for (const page of this.wordPages) this.floatPages.push(new Float64Array(page.buffer, page.byteOffset, page.length >>> 1));
  }
}
