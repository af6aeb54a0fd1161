// Windowed counts, sparse: one u32 word per (contribution, window) holds the counts inline while
// the window has at most two non-empty buckets (most entities get a few events close together);
// a window that needs more gets a dense ring of B counters from a pool, and gives it back when
// an event moves the window a whole ring ahead.
// Invariant: a window's newest bucket is derived, never stored: ⌊anchor_s / g⌋, since the anchor
// is the newest event time folded and bucket(t) = ⌊t_s / g⌋ grows with t. The newest bucket's
// count is ≥ 1; every count is ≤ the event count < 2^53. A ring holds the buckets
// (newest − B, newest] at index bucket mod B. Counts are exact: an inline count that would
// outgrow its bits moves the window to a narrow ring, a narrow count that would pass u32 max
// to a wide (float64) ring.
//
//   window word (o = ⌈log2 B⌉ offset bits, 5 for B = 24; the 30 − o count bits are split
//   c1 = ⌊(30 − o) / 2⌋, c0 = the rest: 13 and 12 bits for B = 24)
//   bits 31 30  29 … 0
//         0  0  count                 one bucket: the newest holds `count` (1 … 2^30 − 1)
//         0  1  c0 · c1 · offset      two buckets: the newest holds c0, newest − offset holds
//                                     c1 (c0, c1 ≥ 1; 1 ≤ offset < B)
//         1  0  ring                  narrow ring: narrow[ring·B …] holds B u32 counts
//         1  1  ring                  wide ring: wide[ring·B …] holds B float64 counts
//
//   pools (imaged: Section.NARROW_RINGS, Section.WIDE_RINGS; one record = one ring), in pages
//   (pages.ts: growth adds a page of rings, never copies the pool)
//   narrow  Pages<Uint32Array>   ring r: B counters in page r >>> shift at (r & mask)·B
//   wide    Pages<Float64Array>  likewise
//   A freed ring is zero except its first counter, which links the free list (next ring + 1,
//   0 at the end); narrowFree / wideFree hold the head + 1.

import { Section, type WriteBarrier } from './copy-on-write.ts';
import { GrowthMeter, Pages } from './pages.ts';
import type { WordHash } from './word-hash.ts';

export const RING_FLAG = 0x8000_0000;
/** Below RING_FLAG: the two-bucket form. At or above: a wide ring. */
export const TWO_FLAG = 0x4000_0000;
const WIDE_FLAG = 0x4000_0000;
const INDEX_MASK = 0x3fff_ffff;
const U32_MAX = 0xffff_ffff;

/** bucket mod B for a non-negative integer bucket, exact (the quotient is exact below 2^53). */
export function ringIndex(bucket: number, bucketCount: number): number {
  return bucket - Math.floor(bucket / bucketCount) * bucketCount;
}

/** An inline window's buckets: c0 at the newest, c1 (0 for none) at newest − offset. */
export interface InlineCounts {
  c0: number;
  c1: number;
  offset: number;
}

export function isWideWord(word: number): boolean {
  return word >= RING_FLAG && (word & WIDE_FLAG) !== 0;
}

export function ringOf(word: number): number {
  return word & INDEX_MASK;
}

export class RingPool {
  readonly bucketCount: number;
  /** The two-bucket form's field widths and shifts (see the header). */
  private readonly offsetBits: number;
  private readonly offsetScale: number;
  private readonly c1Max: number;
  private readonly c0Max: number;
  private readonly c0Shift: number;
  private readonly c0Scale: number;
  readonly narrow: Pages<Uint32Array>;
  narrowCount = 0;
  narrowFree = 0;
  readonly wide: Pages<Float64Array>;
  wideCount = 0;
  wideFree = 0;
  private readonly barrier: WriteBarrier;

  constructor(bucketCount: number, barrier: WriteBarrier, meter = new GrowthMeter(), source?: RingPool) {
    this.bucketCount = bucketCount;
    this.barrier = barrier;
    this.offsetBits = bucketCount <= 2 ? 1 : Math.ceil(Math.log2(bucketCount));
    const c1Bits = Math.floor((30 - this.offsetBits) / 2);
    this.c1Max = 2 ** c1Bits - 1;
    this.c0Max = 2 ** (30 - this.offsetBits - c1Bits) - 1;
    this.c0Shift = this.offsetBits + c1Bits;
    this.offsetScale = 2 ** this.offsetBits;
    this.c0Scale = 2 ** this.c0Shift;
    this.narrow = new Pages(Uint32Array, bucketCount, meter, source?.narrow);
    this.wide = new Pages(Float64Array, bucketCount, meter, source?.wide);
    if (source !== undefined) {
      this.narrowCount = source.narrowCount;
      this.narrowFree = source.narrowFree;
      this.wideCount = source.wideCount;
      this.wideFree = source.wideFree;
    }
  }

  /** Takes the counts of rings loaded into the pages (image-loader.ts); the caller validated them. */
  adopt(narrowCount: number, narrowFree: number, wideCount: number, wideFree: number): void {
    this.narrowCount = narrowCount;
    this.narrowFree = narrowFree;
    this.wideCount = wideCount;
    this.wideFree = wideFree;
  }

  /** The page holding a ring's counters (a ring in use always has one). */
  countsOf(isWide: boolean, ring: number): Uint32Array | Float64Array {
    return isWide ? (this.wide.list[ring >>> this.wide.shift] as Float64Array) : (this.narrow.list[ring >>> this.narrow.shift] as Uint32Array);
  }

  /** Where a ring's counters start in its page. */
  baseOf(isWide: boolean, ring: number): number {
    return isWide ? this.wide.offsetOf(ring) : this.narrow.offsetOf(ring);
  }

  // ---- one window ----

  /**
   * Folds an event at `bucket` into the window `word` whose newest bucket is `newest` (from the
   * anchor before this event); returns the new word. The caller handled the common case (one
   * bucket, the same bucket) itself.
   */
  fold(word: number, newest: number, bucket: number): number {
    const bucketCount = this.bucketCount;
    if (word < RING_FLAG) {
      const inline = this.foldInline(word, newest, bucket);
      if (inline >= 0) return inline;
      word = this.toRing(word, newest);
    }
    const ring = word & INDEX_MASK;
    const isWide = (word & WIDE_FLAG) !== 0;
    if (bucket > newest) {
      if (bucket - newest >= bucketCount) {
        this.release(word);
        return 1;
      }
      this.touch(isWide, ring);
      const counts = this.countsOf(isWide, ring);
      const base = this.baseOf(isWide, ring);
      // (newest + step) mod B without a float modulo (a libc call in V8).
      let index = ringIndex(newest, bucketCount);
      for (let step = newest; step < bucket; step++) {
        index = index + 1 === bucketCount ? 0 : index + 1;
        counts[base + index] = 0;
      }
      counts[base + index] = 1;
      return word;
    }
    if (bucket <= newest - bucketCount) return word;
    this.touch(isWide, ring);
    const counts = this.countsOf(isWide, ring);
    const at = this.baseOf(isWide, ring) + ringIndex(bucket, bucketCount);
    if (isWide || counts[at] !== U32_MAX) {
      counts[at]++;
      return word;
    }
    const wideWord = this.widen(ring);
    const wideRing = wideWord & INDEX_MASK;
    this.countsOf(true, wideRing)[this.baseOf(true, wideRing) + ringIndex(bucket, bucketCount)]++;
    return wideWord;
  }

  /**
   * The inline word after an event at `bucket`, or −1 when the window needs a ring (a third
   * bucket, or a count that outgrows its bits).
   */
  private foldInline(word: number, newest: number, bucket: number): number {
    const bucketCount = this.bucketCount;
    if (bucket <= newest - bucketCount) return word;
    let c0 = word;
    let c1 = 0;
    let offset = 0;
    if (word >= TWO_FLAG) {
      c0 = (word - TWO_FLAG) >>> this.c0Shift;
      c1 = (word >>> this.offsetBits) & this.c1Max;
      offset = word & (this.offsetScale - 1);
    }
    if (bucket === newest) c0++;
    else if (bucket > newest) {
      const shift = bucket - newest;
      if (shift >= bucketCount) return 1;
      // The old newest moves to offset `shift`; a second bucket still inside the ring makes three.
      if (c1 > 0 && offset + shift < bucketCount) return -1;
      c1 = c0;
      offset = shift;
      c0 = 1;
    } else if (c1 === 0) {
      c1 = 1;
      offset = newest - bucket;
    } else if (newest - bucket === offset) c1++;
    else return -1;
    return this.inlineWord(c0, c1, offset);
  }

  /** An inline word's buckets (word < RING_FLAG). */
  inline(word: number): InlineCounts {
    return { c0: this.newestCount(word), c1: this.secondCount(word), offset: this.secondOffset(word) };
  }

  /** An inline word's count at the newest bucket (no object: for loops over every window). */
  newestCount(word: number): number {
    return word < TWO_FLAG ? word : (word - TWO_FLAG) >>> this.c0Shift;
  }

  /** An inline word's second count (0 for the one-bucket form). */
  secondCount(word: number): number {
    return word < TWO_FLAG ? 0 : (word >>> this.offsetBits) & this.c1Max;
  }

  /** How far before the newest bucket an inline word's second bucket lies (0: none). */
  secondOffset(word: number): number {
    return word < TWO_FLAG ? 0 : word & (this.offsetScale - 1);
  }

  /** The inline word for (c0, c1 at offset), or −1 when the counts do not fit. */
  inlineWord(c0: number, c1: number, offset: number): number {
    if (c1 === 0) return c0 < TWO_FLAG ? c0 : -1;
    if (c0 > this.c0Max || c1 > this.c1Max) return -1;
    return TWO_FLAG + c0 * this.c0Scale + c1 * this.offsetScale + offset;
  }

  /** The count of `bucket` in the window. */
  countOf(word: number, newest: number, bucket: number): number {
    if (bucket > newest || bucket <= newest - this.bucketCount || bucket < 0) return 0;
    if (word < TWO_FLAG) return bucket === newest ? word : 0;
    if (word < RING_FLAG) {
      return bucket === newest ? this.newestCount(word) : bucket === newest - this.secondOffset(word) ? this.secondCount(word) : 0;
    }
    const isWide = (word & WIDE_FLAG) !== 0;
    const ring = word & INDEX_MASK;
    return this.countsOf(isWide, ring)[this.baseOf(isWide, ring) + ringIndex(bucket, this.bucketCount)];
  }

  /** Events in buckets (queryBucket − B, queryBucket] (score-column.ts countAt). */
  countWindow(word: number, newest: number, queryBucket: number): number {
    const bucketCount = this.bucketCount;
    const first = Math.max(0, Math.max(queryBucket, newest) - bucketCount + 1, newest - bucketCount + 1);
    const last = Math.min(queryBucket, newest);
    if (word < TWO_FLAG) return newest >= first && newest <= last ? word : 0;
    let total = 0;
    for (let bucket = first; bucket <= last; bucket++) total += this.countOf(word, newest, bucket);
    return total;
  }

  /** Flat [bucket, count, …] ascending, non-zero counts only (contribution-values.ts). */
  pairsOf(word: number, newest: number): number[] {
    if (word < TWO_FLAG) return [newest, word];
    if (word < RING_FLAG) {
      const { c0, c1, offset } = this.inline(word);
      return [newest - offset, c1, newest, c0];
    }
    const pairs: number[] = [];
    for (let bucket = Math.max(0, newest - this.bucketCount + 1); bucket <= newest; bucket++) {
      const count = this.countOf(word, newest, bucket);
      if (count > 0) pairs.push(bucket, count);
    }
    return pairs;
  }

  /**
   * The word for decoded pairs (validated: ascending, within the ring, the last at the newest
   * bucket), reusing or releasing `previous`'s ring.
   */
  fromPairs(pairs: readonly number[], previous: number): number {
    const inline =
      pairs.length === 2
        ? this.inlineWord(pairs[1], 0, 0)
        : pairs.length === 4
          ? this.inlineWord(pairs[3], pairs[1], pairs[2] - pairs[0])
          : -1;
    if (inline >= 0) {
      this.release(previous);
      return inline;
    }
    let isWide = false;
    for (let at = 1; at < pairs.length; at += 2) if (pairs[at] > U32_MAX) isWide = true;
    const word = this.ringFor(previous, isWide);
    const counts = this.countsOf(isWide, word & INDEX_MASK);
    const base = this.baseOf(isWide, word & INDEX_MASK);
    for (let at = 0; at < pairs.length; at += 2) counts[base + ringIndex(pairs[at], this.bucketCount)] = pairs[at + 1];
    return word;
  }

  /** The word for a copy of `source`'s window `word`, reusing or releasing `previous`'s ring. */
  copyFrom(source: RingPool, word: number, previous: number): number {
    if (word < RING_FLAG) {
      this.release(previous);
      return word;
    }
    const isWide = (word & WIDE_FLAG) !== 0;
    const mine = this.ringFor(previous, isWide);
    const sourceCounts = source.countsOf(isWide, word & INDEX_MASK);
    const from = source.baseOf(isWide, word & INDEX_MASK);
    const counts = this.countsOf(isWide, mine & INDEX_MASK);
    const to = this.baseOf(isWide, mine & INDEX_MASK);
    for (let index = 0; index < this.bucketCount; index++) counts[to + index] = sourceCounts[from + index];
    return mine;
  }

  /** Whether two windows (this pool's and `other`'s, same B and newest) hold the same counts. */
  equalWindows(word: number, other: RingPool, otherWord: number, newest: number): boolean {
    if (word < RING_FLAG && otherWord < RING_FLAG) return word === otherWord;
    for (let bucket = Math.max(0, newest - this.bucketCount + 1); bucket <= newest; bucket++) {
      if (this.countOf(word, newest, bucket) !== other.countOf(otherWord, newest, bucket)) return false;
    }
    return true;
  }

  /** Feeds the window's non-zero counts to a digest as (window·B + bucket mod B, count), by index. */
  hashWindow(word: number, newest: number, window: number, hash: WordHash): void {
    const bucketCount = this.bucketCount;
    if (word < RING_FLAG) {
      // What a ring scan would feed: non-zero counts in ring index order.
      const { c0, c1, offset } = this.inline(word);
      const newestIndex = ringIndex(newest, bucketCount);
      const otherIndex = ringIndex(newest - offset, bucketCount);
      if (c1 > 0 && otherIndex < newestIndex) {
        hash.word(window * bucketCount + otherIndex);
        hash.word(c1);
      }
      hash.word(window * bucketCount + newestIndex);
      hash.word(c0);
      if (c1 > 0 && otherIndex > newestIndex) {
        hash.word(window * bucketCount + otherIndex);
        hash.word(c1);
      }
      return;
    }
    const isWide = (word & WIDE_FLAG) !== 0;
    const counts = this.countsOf(isWide, word & INDEX_MASK);
    const base = this.baseOf(isWide, word & INDEX_MASK);
    for (let index = 0; index < bucketCount; index++) {
      const count = counts[base + index];
      if (count !== 0) {
        hash.word(window * bucketCount + index);
        hash.word(count);
      }
    }
  }

  /** Gives the window's ring (if any) back to its free list. */
  release(word: number): void {
    if (word < RING_FLAG) return;
    const ring = word & INDEX_MASK;
    const isWide = (word & WIDE_FLAG) !== 0;
    const counts = this.countsOf(isWide, ring);
    const base = this.baseOf(isWide, ring);
    this.touch(isWide, ring);
    counts.fill(0, base, base + this.bucketCount);
    if (isWide) {
      counts[base] = this.wideFree;
      this.wideFree = ring + 1;
    } else {
      counts[base] = this.narrowFree;
      this.narrowFree = ring + 1;
    }
  }

  // ---- rings ----

  /** A narrow ring holding the inline window's counts: it outgrew the inline forms. */
  private toRing(inlineWord: number, newest: number): number {
    const { c0, c1, offset } = this.inline(inlineWord);
    const word = this.allocate(false);
    const counts = this.countsOf(false, word & INDEX_MASK);
    const base = this.baseOf(false, word & INDEX_MASK);
    counts[base + ringIndex(newest, this.bucketCount)] = c0;
    if (c1 > 0) counts[base + ringIndex(newest - offset, this.bucketCount)] = c1;
    return word;
  }

  /** Moves a narrow ring whose count is about to pass u32 max into a wide ring. */
  private widen(ring: number): number {
    const word = this.allocate(true);
    const narrow = this.countsOf(false, ring);
    const from = this.baseOf(false, ring);
    const wide = this.countsOf(true, word & INDEX_MASK);
    const to = this.baseOf(true, word & INDEX_MASK);
    for (let index = 0; index < this.bucketCount; index++) wide[to + index] = narrow[from + index];
    this.release((RING_FLAG | ring) >>> 0);
    return word;
  }

  /** `previous`'s ring cleared when it has the wanted width, else a fresh one (previous released). */
  private ringFor(previous: number, isWide: boolean): number {
    if (previous >= RING_FLAG && ((previous & WIDE_FLAG) !== 0) === isWide) {
      const ring = previous & INDEX_MASK;
      const base = this.baseOf(isWide, ring);
      this.touch(isWide, ring);
      this.countsOf(isWide, ring).fill(0, base, base + this.bucketCount);
      return previous;
    }
    this.release(previous);
    return this.allocate(isWide);
  }

  /** A zeroed ring from the free list or the end of the pool, as a ring word. */
  private allocate(isWide: boolean): number {
    let ring: number;
    const free = isWide ? this.wideFree : this.narrowFree;
    if (free !== 0) {
      ring = free - 1;
      const counts = this.countsOf(isWide, ring);
      const base = this.baseOf(isWide, ring);
      this.touch(isWide, ring);
      if (isWide) this.wideFree = counts[base];
      else this.narrowFree = counts[base];
      counts[base] = 0;
    } else {
      ring = isWide ? this.wideCount++ : this.narrowCount++;
      if (ring > INDEX_MASK) throw new Error(`invariant violated: more than ${INDEX_MASK + 1} window rings`);
      if (isWide) this.wide.ensure(ring);
      else this.narrow.ensure(ring);
      this.touch(isWide, ring);
    }
    return ((isWide ? RING_FLAG | WIDE_FLAG : RING_FLAG) | ring) >>> 0;
  }

  private touch(isWide: boolean, ring: number): void {
    this.barrier.copies?.touch(isWide ? Section.WIDE_RINGS : Section.NARROW_RINGS, ring);
  }
}
