// Every contribution of a state, all score signals together, as fixed-size records in one
// buffer: a fold touches one record (80 bytes with the default schema) and no object.
// A contribution is one origin's share of one (entity, score signal); score-column.ts owns the
// meaning, this file the storage.
// Invariant: every value is exact. Fields that are almost always small live in the record at
// their common width; the rest of their range lives in side arrays that exist only once some
// contribution needs them (a state that never saw a negative weight or a count beyond 2^32
// never allocates them): eventCount = lo + hi·2^32, ΣP = lo + hi·2^48, ΣN = lo + hi·2^48.
// Records are never freed, so a fresh record is all zero.
//
//   record (slot s) at words[s·strideWords …], little-endian, the default W = 3 windows
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
//   side arrays (per slot, allocated on first need)
//   negativeLo    Float64Array  ΣN mod 2^48           a negative weight
//   positiveHi    Float64Array  ⌊ΣP / 2^48⌋           ΣP reached 2^48 micro-units (2.8e8 units)
//   negativeHi    Float64Array  ⌊ΣN / 2^48⌋
//   eventCountHi  Uint32Array   ⌊eventCount / 2^32⌋   a count reached 2^32

import { Section, type WriteBarrier } from './copy-on-write.ts';
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
const INITIAL_CAPACITY = 64;

/** Words per record for records with room for `windowSlots` windows (a whole number of f64s). */
export function strideWordsFor(windowSlots: number): number {
  return (WINDOWS + windowSlots + 1) & ~1;
}

export class ContributionPool {
  readonly strideWords: number;
  /** Window words per record (the schema's largest window count). */
  readonly windowSlots: number;
  words: Uint32Array;
  floats: Float64Array;
  count = 0;
  negativeLo: Float64Array | null = null;
  positiveHi: Float64Array | null = null;
  negativeHi: Float64Array | null = null;
  eventCountHi: Uint32Array | null = null;
  private readonly barrier: WriteBarrier;

  constructor(windowSlots: number, barrier: WriteBarrier, source?: ContributionPool) {
    this.windowSlots = windowSlots;
    this.strideWords = strideWordsFor(windowSlots);
    this.barrier = barrier;
    if (source === undefined) {
      this.words = new Uint32Array(INITIAL_CAPACITY * this.strideWords);
    } else {
      this.words = source.words.slice();
      this.count = source.count;
      this.negativeLo = source.negativeLo?.slice() ?? null;
      this.positiveHi = source.positiveHi?.slice() ?? null;
      this.negativeHi = source.negativeHi?.slice() ?? null;
      this.eventCountHi = source.eventCountHi?.slice() ?? null;
    }
    this.floats = new Float64Array(this.words.buffer);
  }

  /** Takes loaded arrays (state-image.ts); the caller validated them. */
  adopt(words: Uint32Array, count: number, side: Pick<ContributionPool, 'negativeLo' | 'positiveHi' | 'negativeHi' | 'eventCountHi'>): void {
    this.words = words;
    this.floats = new Float64Array(words.buffer, words.byteOffset, words.length >>> 1);
    this.count = count;
    this.negativeLo = side.negativeLo;
    this.positiveHi = side.positiveHi;
    this.negativeHi = side.negativeHi;
    this.eventCountHi = side.eventCountHi;
  }

  get capacity(): number {
    return this.words.length / this.strideWords;
  }

  /** A fresh zero record for `origin`, linked nowhere yet. */
  allocate(origin: number): number {
    const slot = this.count;
    if (slot === this.capacity) this.grow();
    this.barrier.copies?.touch(Section.CONTRIBUTIONS, slot);
    this.words[slot * this.strideWords + ORIGIN] = origin;
    this.count = slot + 1;
    return slot;
  }

  eventCountOf(slot: number): number {
    const high = this.eventCountHi === null ? 0 : this.eventCountHi[slot];
    return high * U32_LIMIT + this.words[slot * this.strideWords + EVENT_COUNT_LO];
  }

  /** Adds one event to a count whose low word is at u32 max. */
  carryEventCount(slot: number): void {
    const high = this.ensureEventCountHi();
    this.barrier.copies?.touch(Section.EVENT_COUNT_HI, slot);
    high[slot]++;
    this.words[slot * this.strideWords + EVENT_COUNT_LO] = 0;
  }

  setEventCount(slot: number, count: number): void {
    const high = Math.floor(count / U32_LIMIT);
    this.words[slot * this.strideWords + EVENT_COUNT_LO] = count - high * U32_LIMIT;
    if (high !== 0 || this.eventCountHi !== null) {
      const array = this.ensureEventCountHi();
      this.barrier.copies?.touch(Section.EVENT_COUNT_HI, slot);
      array[slot] = high;
    }
  }

  positiveHiOf(slot: number): number {
    return this.positiveHi === null ? 0 : this.positiveHi[slot];
  }

  negativeLoOf(slot: number): number {
    return this.negativeLo === null ? 0 : this.negativeLo[slot];
  }

  negativeHiOf(slot: number): number {
    return this.negativeHi === null ? 0 : this.negativeHi[slot];
  }

  /** Stores ΣP = hi·2^48 + `lo` where `lo` reached 2^48 (the carry goes to the side array). */
  carryPositive(slot: number, lo: number): void {
    const carry = Math.floor(lo / LIMB);
    this.floats[(slot * this.strideWords) / 2 + POSITIVE_LO_F64] = lo - carry * LIMB;
    const high = this.ensure('positiveHi');
    this.barrier.copies?.touch(Section.POSITIVE_HI, slot);
    high[slot] += carry;
  }

  /** Adds `micros` to ΣN. */
  addNegative(slot: number, micros: number): void {
    const low = this.ensure('negativeLo');
    this.barrier.copies?.touch(Section.NEGATIVE_LO, slot);
    const lo = low[slot] + micros;
    if (lo < LIMB) {
      low[slot] = lo;
      return;
    }
    const carry = Math.floor(lo / LIMB);
    low[slot] = lo - carry * LIMB;
    const high = this.ensure('negativeHi');
    this.barrier.copies?.touch(Section.NEGATIVE_HI, slot);
    high[slot] += carry;
  }

  /** Sets both weight limbs pairs (joins); side arrays are allocated only for non-zero parts. */
  setWeights(slot: number, positiveHi: number, positiveLo: number, negativeHi: number, negativeLo: number): void {
    this.floats[(slot * this.strideWords) / 2 + POSITIVE_LO_F64] = positiveLo;
    this.setSide('positiveHi', Section.POSITIVE_HI, slot, positiveHi);
    this.setSide('negativeLo', Section.NEGATIVE_LO, slot, negativeLo);
    this.setSide('negativeHi', Section.NEGATIVE_HI, slot, negativeHi);
  }

  private setSide(name: 'positiveHi' | 'negativeLo' | 'negativeHi', section: number, slot: number, value: number): void {
    if (value === 0 && this[name] === null) return;
    const array = this.ensure(name);
    this.barrier.copies?.touch(section, slot);
    array[slot] = value;
  }

  private ensure(name: 'positiveHi' | 'negativeLo' | 'negativeHi'): Float64Array {
    let array = this[name];
    if (array === null) {
      array = new Float64Array(this.capacity);
      this[name] = array;
    }
    return array;
  }

  private ensureEventCountHi(): Uint32Array {
    if (this.eventCountHi === null) this.eventCountHi = new Uint32Array(this.capacity);
    return this.eventCountHi;
  }

  /** Doubles the records and every side array; the old arrays are frozen for an image in progress. */
  private grow(): void {
    const capacity = Math.max(INITIAL_CAPACITY, this.capacity * 2);
    const copies = this.barrier.copies;
    const words = new Uint32Array(capacity * this.strideWords);
    words.set(this.words);
    copies?.freeze(Section.CONTRIBUTIONS);
    this.words = words;
    this.floats = new Float64Array(words.buffer);
    if (this.negativeLo !== null) {
      this.negativeLo = grown(this.negativeLo, new Float64Array(capacity));
      copies?.freeze(Section.NEGATIVE_LO);
    }
    if (this.positiveHi !== null) {
      this.positiveHi = grown(this.positiveHi, new Float64Array(capacity));
      copies?.freeze(Section.POSITIVE_HI);
    }
    if (this.negativeHi !== null) {
      this.negativeHi = grown(this.negativeHi, new Float64Array(capacity));
      copies?.freeze(Section.NEGATIVE_HI);
    }
    if (this.eventCountHi !== null) {
      this.eventCountHi = grown(this.eventCountHi, new Uint32Array(capacity));
      copies?.freeze(Section.EVENT_COUNT_HI);
    }
  }
}

function grown<T extends Float64Array | Uint32Array>(old: T, fresh: T): T {
  fresh.set(old as never);
  return fresh;
}
