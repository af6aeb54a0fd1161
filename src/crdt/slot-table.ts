// EntityKey → slot index, for the fold loop's one lookup per event. An open-addressing table in
// one Float64Array of [key, slot] pairs, so a lookup is one hash and usually one cache line; a
// V8 Map costs a bucket, an entry and (for ids above 2^30) a boxed key, each a likely miss.
// Invariant: every number key is a non-negative integer below 2^53 (entity-key.ts), stored at
// most once; bigint keys (ids ≥ 2^53, rare) live in a plain Map beside the table. Entries are
// never removed, and the table is at most half full, so every probe sequence ends at an empty
// pair.

import { finalMix } from '../murmur.ts';
import type { EntityKey } from './entity-key.ts';

const EMPTY = -1;
const INITIAL_CAPACITY = 64;

export class SlotTable {
  private pairs: Float64Array;
  private mask: number;
  private numberCount = 0;
  private readonly bigKeys = new Map<bigint, number>();

  constructor(source?: SlotTable) {
    if (source === undefined) {
      this.pairs = new Float64Array(INITIAL_CAPACITY * 2).fill(EMPTY);
      this.mask = INITIAL_CAPACITY - 1;
    } else {
      this.pairs = source.pairs.slice();
      this.mask = source.mask;
      this.numberCount = source.numberCount;
      for (const [key, slot] of source.bigKeys) this.bigKeys.set(key, slot);
    }
  }

  get size(): number {
    return this.numberCount + this.bigKeys.size;
  }

  /** The key's slot, or −1. */
  get(key: EntityKey): number {
    if (typeof key === 'bigint') return this.bigKeys.get(key) ?? EMPTY;
    const pairs = this.pairs;
    const mask = this.mask;
    let index = hashOf(key) & mask;
    for (;;) {
      const held = pairs[index * 2];
      if (held === key) return pairs[index * 2 + 1];
      if (held === EMPTY) return EMPTY;
      index = (index + 1) & mask;
    }
  }

  /** Inserts or replaces the key's slot. */
  set(key: EntityKey, slot: number): void {
    if (typeof key === 'bigint') {
      this.bigKeys.set(key, slot);
      return;
    }
    let index = hashOf(key) & this.mask;
    for (;;) {
      const held = this.pairs[index * 2];
      if (held === key) {
        this.pairs[index * 2 + 1] = slot;
        return;
      }
      if (held === EMPTY) break;
      index = (index + 1) & this.mask;
    }
    this.pairs[index * 2] = key;
    this.pairs[index * 2 + 1] = slot;
    this.numberCount++;
    if (this.numberCount * 2 > this.mask + 1) this.grow();
  }

  /** Calls `visit` for every (key, slot), in no particular order. */
  forEach(visit: (key: EntityKey, slot: number) => void): void {
    const pairs = this.pairs;
    for (let index = 0; index < pairs.length; index += 2) {
      if (pairs[index] !== EMPTY) visit(pairs[index], pairs[index + 1]);
    }
    this.bigKeys.forEach((slot, key) => visit(key, slot));
  }

  private grow(): void {
    const old = this.pairs;
    const capacity = (this.mask + 1) * 2;
    this.pairs = new Float64Array(capacity * 2).fill(EMPTY);
    this.mask = capacity - 1;
    this.numberCount = 0;
    for (let index = 0; index < old.length; index += 2) {
      if (old[index] !== EMPTY) this.set(old[index], old[index + 1]);
    }
  }
}

/** murmur3's finaliser over the key's two 32-bit halves. */
function hashOf(key: number): number {
  return finalMix((key >>> 0) ^ Math.imul(Math.floor(key / 4294967296), 0x9e3779b1));
}
