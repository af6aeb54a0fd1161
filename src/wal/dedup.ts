// The dedup window: "have I seen these exact 21 bytes recently?" with zero false positives.
//
// Double-buffered like tidalDB's: two generations, `current` and `previous`. A lookup checks
// both; inserts go to `current`; every `windowMs` (or as soon as `current` holds
// `maxEventsPerGeneration`) `previous` is dropped and `current` becomes `previous`. An event
// is therefore remembered for at least min(windowMs, time to see maxEventsPerGeneration
// events) and at most twice that. The cap bounds memory: per generation about
// cap × (21 B slab + 16 B table + 1 B filter).
//
// Each generation is an open-addressing table of [hash, index] pairs over a slab of packed
// events. The hash only picks the probe start and skips obvious mismatches; membership is
// decided by comparing all 21 bytes, so a hash collision can never drop a distinct event.
//
//   slab:   | ev 0 (21 B) | ev 1 (21 B) | ev 2 | ...      append-only per generation
//   table:  [h|0][h|3][h|0][h|1][h|0][h|2] ...            [hash, index + 1], 0 = empty slot
//   filter: 0 1 0 0 1 1 0 ...                             8 bits per entry, one set per event
//
// The table is far larger than the CPU caches once a generation holds ~10^6 events, so a
// probe is a cache miss. The filter (1/16 of the table's size) answers "certainly absent"
// for most new events without touching the table, and batches are hashed in one pass and
// probed in a second, so the misses of independent events overlap.

import { EVENT_BYTES } from '../event.ts';
import { finalMix, mixWord } from '../murmur.ts';

const INITIAL_CAPACITY = 16_384;
const FILTER_BITS_PER_ENTRY = 8;

class ContentSet {
  private slab: Uint8Array;
  private table: Int32Array;
  private filter: Uint32Array;
  private slotMask: number;
  private filterMask: number;
  private capacity: number;
  count = 0;

  constructor(private readonly maxEntries: number) {
    // At least 4 entries: the filter needs one whole 32-bit word (4 × 8 bits).
    this.capacity = Math.max(4, Math.min(INITIAL_CAPACITY, nextPowerOfTwo(maxEntries)));
    this.slab = new Uint8Array(this.capacity * EVENT_BYTES);
    this.table = new Int32Array(this.capacity * 4); // 2 slots per entry, 2 ints per slot
    this.slotMask = this.capacity * 2 - 1;
    this.filter = new Uint32Array((this.capacity * FILTER_BITS_PER_ENTRY) / 32);
    this.filterMask = this.capacity * FILTER_BITS_PER_ENTRY - 1;
  }

  get isFull(): boolean {
    return this.count >= this.maxEntries;
  }

  clear(): void {
    if (this.count === 0) return;
    this.table.fill(0);
    this.filter.fill(0);
    this.count = 0;
  }

  /** Filter bit of a hash: uses the high bits, which the table's low-bit slots do not. */
  private mightHave(hash: number): boolean {
    const bit = Math.imul(hash, 0x9e3779b1) >>> 0;
    const at = (bit >>> 5) & (this.filterMask >>> 5);
    return (this.filter[at] & (1 << (bit & 31))) !== 0;
  }

  private markFilter(hash: number): void {
    const bit = Math.imul(hash, 0x9e3779b1) >>> 0;
    const at = (bit >>> 5) & (this.filterMask >>> 5);
    this.filter[at] |= 1 << (bit & 31);
  }

  /** Adds the event at `bytes[offset..offset+21)`; returns false if it was already present. */
  add(bytes: Uint8Array, offset: number, hash: number): boolean {
    if (this.count === this.capacity) this.grow();
    const table = this.table;
    const mask = this.slotMask;
    let slot = hash & mask;
    if (this.mightHave(hash)) {
      for (let entry = table[slot * 2 + 1]; entry !== 0; entry = table[slot * 2 + 1]) {
        if (table[slot * 2] === hash && this.equalsAt(entry - 1, bytes, offset)) return false;
        slot = (slot + 1) & mask;
      }
    } else {
      while (table[slot * 2 + 1] !== 0) slot = (slot + 1) & mask;
    }
    const index = this.count++;
    const slab = this.slab;
    const base = index * EVENT_BYTES;
    // A byte loop beats subarray()+set() for 21 bytes: no view object per event.
    for (let byte = 0; byte < EVENT_BYTES; byte++) slab[base + byte] = bytes[offset + byte];
    table[slot * 2] = hash;
    table[slot * 2 + 1] = index + 1;
    this.markFilter(hash);
    return true;
  }

  has(bytes: Uint8Array, offset: number, hash: number): boolean {
    if (this.count === 0 || !this.mightHave(hash)) return false;
    const table = this.table;
    const mask = this.slotMask;
    let slot = hash & mask;
    for (let entry = table[slot * 2 + 1]; entry !== 0; entry = table[slot * 2 + 1]) {
      if (table[slot * 2] === hash && this.equalsAt(entry - 1, bytes, offset)) return true;
      slot = (slot + 1) & mask;
    }
    return false;
  }

  private equalsAt(index: number, bytes: Uint8Array, offset: number): boolean {
    const slab = this.slab;
    const base = index * EVENT_BYTES;
    for (let byte = 0; byte < EVENT_BYTES; byte++) {
      if (slab[base + byte] !== bytes[offset + byte]) return false;
    }
    return true;
  }

  private grow(): void {
    // Straight to the full size: one rehash of at most INITIAL_CAPACITY entries instead of
    // one per doubling (a doubling rehash cost ~20 % of a busy window's first seconds). A
    // window that never sees more than INITIAL_CAPACITY events never pays for the full size.
    this.capacity = Math.max(this.capacity * 2, nextPowerOfTwo(this.maxEntries));
    const slab = new Uint8Array(this.capacity * EVENT_BYTES);
    slab.set(this.slab);
    this.slab = slab;
    const old = this.table;
    const table = new Int32Array(this.capacity * 4);
    const mask = this.capacity * 2 - 1;
    this.filter = new Uint32Array((this.capacity * FILTER_BITS_PER_ENTRY) / 32);
    this.filterMask = this.capacity * FILTER_BITS_PER_ENTRY - 1;
    for (let at = 0; at < old.length; at += 2) {
      if (old[at + 1] === 0) continue;
      let slot = old[at] & mask;
      while (table[slot * 2 + 1] !== 0) slot = (slot + 1) & mask;
      table[slot * 2] = old[at];
      table[slot * 2 + 1] = old[at + 1];
      this.markFilter(old[at]);
    }
    this.table = table;
    this.slotMask = mask;
  }
}

function nextPowerOfTwo(value: number): number {
  let power = 1;
  while (power < value) power *= 2;
  return power;
}

/** 32-bit (signed) hash of the 21 bytes at `offset`: murmur3 over five words and a byte. */
export function hashEvent(view: DataView, offset: number): number {
  let hash = 0x9747b28c;
  for (let word = 0; word < 5; word++) hash = mixWord(hash, view.getUint32(offset + word * 4, true));
  hash ^= Math.imul(view.getUint8(offset + 20), 0xcc9e2d51);
  return finalMix(hash) | 0;
}

export interface DedupOptions {
  windowMs: number;
  maxEventsPerGeneration: number;
}

export class DedupWindow {
  private current: ContentSet;
  private previous: ContentSet;
  private generationStartMs: number;
  private hashes = new Int32Array(1024);
  /** Generations dropped so far; exposed for metrics and tests. */
  swaps = 0;

  constructor(
    private readonly options: DedupOptions,
    nowMs: number,
  ) {
    this.current = new ContentSet(options.maxEventsPerGeneration);
    this.previous = new ContentSet(options.maxEventsPerGeneration);
    this.generationStartMs = nowMs;
  }

  get isEnabled(): boolean {
    return this.options.windowMs > 0;
  }

  get size(): number {
    return this.current.count + this.previous.count;
  }

  /** Forgets everything (the log was cut: remembered events may no longer be in it). */
  forgetAll(nowMs: number): void {
    this.current = new ContentSet(this.options.maxEventsPerGeneration);
    this.previous = new ContentSet(this.options.maxEventsPerGeneration);
    this.generationStartMs = nowMs;
  }

  /** Swaps generations if the window elapsed; call once per batch, not per event. */
  tick(nowMs: number): void {
    if (this.isEnabled && nowMs - this.generationStartMs >= this.options.windowMs) this.swap(nowMs);
  }

  /**
   * For the `count` packed events of `bytes` starting at event `firstIndex`: sets
   * `isDuplicate[i] = 1` for each event seen inside the window (earlier in this same call
   * included) and remembers the others. Returns the number of duplicates.
   */
  markDuplicates(bytes: Uint8Array, firstIndex: number, count: number, nowMs: number, isDuplicate: Uint8Array): number {
    isDuplicate.fill(0, 0, count);
    if (!this.isEnabled) return 0;
    if (this.hashes.length < count) this.hashes = new Int32Array(nextPowerOfTwo(count));
    const hashes = this.hashes;
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const base = firstIndex * EVENT_BYTES;
    for (let index = 0; index < count; index++) hashes[index] = hashEvent(view, base + index * EVENT_BYTES);
    let duplicates = 0;
    for (let index = 0; index < count; index++) {
      const offset = base + index * EVENT_BYTES;
      const hash = hashes[index];
      if (this.previous.has(bytes, offset, hash) || !this.current.add(bytes, offset, hash)) {
        isDuplicate[index] = 1;
        duplicates++;
      } else if (this.current.isFull) {
        this.swap(nowMs);
      }
    }
    return duplicates;
  }

  /** One event; the batch form above is the hot path. */
  checkAndInsert(bytes: Uint8Array, offset: number, nowMs: number): boolean {
    const flag = new Uint8Array(1);
    if (offset % EVENT_BYTES === 0) return this.markDuplicates(bytes, offset / EVENT_BYTES, 1, nowMs, flag) === 1;
    return this.markDuplicates(bytes.subarray(offset, offset + EVENT_BYTES), 0, 1, nowMs, flag) === 1;
  }

  private swap(nowMs: number): void {
    // The dropped generation's memory becomes the new current one: no allocation once warm.
    const recycled = this.previous;
    recycled.clear();
    this.previous = this.current;
    this.current = recycled;
    this.generationStartMs = nowMs;
    this.swaps++;
  }
}
