// The dedup window: "have I seen these exact 21 bytes recently?" with zero false positives.
//
// Double-buffered like tidalDB's: two generations, `current` and `previous`. A lookup checks
// both; inserts go to `current`; every `windowMs` (or as soon as `current` holds
// `maxEventsPerGeneration`) `previous` is dropped and `current` becomes `previous`. An event
// is therefore remembered for at least min(windowMs, time to see maxEventsPerGeneration
// events) and at most twice that. The cap bounds memory: 2 × cap × (21 + 4·2) bytes.
//
// Each generation is an open-addressing table of indexes into a slab of packed events. The
// hash only picks the probe start; membership is decided by comparing all 21 bytes, so a
// hash collision can never drop a distinct event.
//
//   slab:  | ev 0 (21 B) | ev 1 (21 B) | ev 2 | ...            append-only per generation
//   table: [ 0 | 3 | 0 | 1 | 0 | 2 | ... ]   slot = index + 1, 0 = empty, linear probing

import { EVENT_BYTES } from './event.ts';

const INITIAL_CAPACITY = 16_384;

class ContentSet {
  private slab: Uint8Array;
  /**
   * Open-addressing slots, two Int32 each: [hash, index + 1]; index 0 marks an empty slot.
   * Keeping the hash beside the index means a probe touches one cache line, and the slab
   * (the bytes) is read only when a full 32-bit hash matches.
   */
  private table: Int32Array;
  private slotMask: number;
  private capacity: number;
  count = 0;

  constructor(private readonly maxEntries: number) {
    this.capacity = Math.min(INITIAL_CAPACITY, nextPowerOfTwo(maxEntries));
    this.slab = new Uint8Array(this.capacity * EVENT_BYTES);
    this.table = new Int32Array(this.capacity * 4); // 2 slots per entry, 2 ints per slot
    this.slotMask = this.capacity * 2 - 1;
  }

  get isFull(): boolean {
    return this.count >= this.maxEntries;
  }

  /** Adds the event at `bytes[offset..offset+21)`; returns false if it was already present. */
  add(bytes: Uint8Array, offset: number, hash: number): boolean {
    if (this.count === this.capacity) this.grow();
    const table = this.table;
    const mask = this.slotMask;
    let slot = hash & mask;
    // One probe both looks for the event and finds the empty slot it would take.
    for (let entry = table[slot * 2 + 1]; entry !== 0; entry = table[slot * 2 + 1]) {
      if (table[slot * 2] === hash && this.equalsAt(entry - 1, bytes, offset)) return false;
      slot = (slot + 1) & mask;
    }
    const index = this.count++;
    const slab = this.slab;
    const base = index * EVENT_BYTES;
    // A byte loop beats subarray()+set() for 21 bytes: no view object per event.
    for (let byte = 0; byte < EVENT_BYTES; byte++) slab[base + byte] = bytes[offset + byte];
    table[slot * 2] = hash;
    table[slot * 2 + 1] = index + 1;
    return true;
  }

  has(bytes: Uint8Array, offset: number, hash: number): boolean {
    if (this.count === 0) return false;
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
    this.capacity *= 2;
    const slab = new Uint8Array(this.capacity * EVENT_BYTES);
    slab.set(this.slab);
    this.slab = slab;
    const old = this.table;
    const table = new Int32Array(this.capacity * 4);
    const mask = this.capacity * 2 - 1;
    for (let at = 0; at < old.length; at += 2) {
      if (old[at + 1] === 0) continue;
      let slot = old[at] & mask;
      while (table[slot * 2 + 1] !== 0) slot = (slot + 1) & mask;
      table[slot * 2] = old[at];
      table[slot * 2 + 1] = old[at + 1];
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

/** 32-bit (signed) hash of 21 bytes (murmur3-style mixing of five words and the last byte). */
export function hashEvent(bytes: Uint8Array, offset: number): number {
  let hash = 0x9747b28c;
  for (let word = 0; word < 5; word++) {
    const at = offset + word * 4;
    let k = bytes[at] | (bytes[at + 1] << 8) | (bytes[at + 2] << 16) | (bytes[at + 3] << 24);
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    hash ^= k;
    hash = (hash << 13) | (hash >>> 19);
    hash = (Math.imul(hash, 5) + 0xe6546b64) | 0;
  }
  hash ^= Math.imul(bytes[offset + 20], 0xcc9e2d51);
  hash ^= hash >>> 16;
  hash = Math.imul(hash, 0x85ebca6b);
  hash ^= hash >>> 13;
  hash = Math.imul(hash, 0xc2b2ae35);
  hash ^= hash >>> 16;
  return hash | 0;
}

export interface DedupOptions {
  windowMs: number;
  maxEventsPerGeneration: number;
}

export class DedupWindow {
  private current: ContentSet;
  private previous: ContentSet;
  private generationStartMs: number;
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

  /** Swaps generations if the window elapsed; call once per batch, not per event. */
  tick(nowMs: number): void {
    if (this.isEnabled && nowMs - this.generationStartMs >= this.options.windowMs) this.swap(nowMs);
  }

  /** True if the event was seen inside the window; otherwise remembers it and returns false. */
  checkAndInsert(bytes: Uint8Array, offset: number, nowMs: number): boolean {
    if (!this.isEnabled) return false;
    const hash = hashEvent(bytes, offset);
    if (this.previous.has(bytes, offset, hash)) return true;
    if (!this.current.add(bytes, offset, hash)) return true;
    if (this.current.isFull) this.swap(nowMs);
    return false;
  }

  /** Re-inserts an event read back from the log during recovery (no duplicate check result). */
  remember(bytes: Uint8Array, offset: number, nowMs: number): void {
    this.checkAndInsert(bytes, offset, nowMs);
  }

  get size(): number {
    return this.current.count + this.previous.count;
  }

  private swap(nowMs: number): void {
    this.previous = this.current;
    this.current = new ContentSet(this.options.maxEventsPerGeneration);
    this.generationStartMs = nowMs;
    this.swaps++;
  }
}
