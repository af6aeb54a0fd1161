// The state's one entity index: u64 entity id → entity number (0, 1, 2, … in order of first
// write), shared by every score column and the flags, so an entity costs one key and one table
// entry however many signals it has. Per-entity arrays (column heads, flag refs, digests) are
// indexed by the entity number.
// Invariant: keys[2e], keys[2e + 1] are entity e's id as u32 hi, lo; ids are distinct; entities
// are never removed. The table is open addressing with linear probing over entity + 1 (0 =
// empty), at most half full, and always holds exactly what inserting entities 0 … count − 1 in
// order into a table of its capacity gives (growth re-inserts in entity order), so a table
// rebuilt from the keys alone (state-image.ts) is the same table.
//
//   keys    Uint32Array  [hi₀, lo₀, hi₁, lo₁, …]   imaged (Section.ENTITY_KEYS)
//   table   Uint32Array  entity + 1 per slot        rebuilt on load, never imaged

import { TidelogError } from '../errors.ts';
import { finalMix } from '../murmur.ts';
import { Section, type WriteBarrier } from './copy-on-write.ts';
import type { EntityKey } from './entity-key.ts';
import { joinNs, TWO_POW_32 } from './packed-time.ts';

const INITIAL_ENTITIES = 64;
const SAFE_HI = 0x200000;

export class EntityIndex {
  /** [hi, lo] per entity; its length / 2 is the entity capacity. */
  keys: Uint32Array;
  count = 0;
  private table: Uint32Array;
  private mask: number;
  private readonly barrier: WriteBarrier;

  constructor(barrier: WriteBarrier, source?: EntityIndex) {
    this.barrier = barrier;
    if (source === undefined) {
      this.keys = new Uint32Array(INITIAL_ENTITIES * 2);
      this.table = new Uint32Array(INITIAL_ENTITIES * 2);
    } else {
      this.keys = source.keys.slice();
      this.table = source.table.slice();
      this.count = source.count;
    }
    this.mask = this.table.length - 1;
  }

  /**
   * Takes `count` loaded keys (image-loader.ts); DECODE_FAILED when two are equal. The table
   * comes out as the original's: same keys, same order, same capacity rule.
   */
  adopt(keys: Uint32Array, count: number): void {
    this.keys = keys;
    this.count = count;
    this.rebuild(tableCapacityFor(count));
  }

  /** How many entities fit before the keys array grows (per-entity arrays grow to this). */
  get capacity(): number {
    return this.keys.length >>> 1;
  }

  /** The entity numbered for hi·2^32 + lo, or −1. */
  find(hi: number, lo: number): number {
    const table = this.table;
    const keys = this.keys;
    const mask = this.mask;
    let at = hashOf(hi, lo) & mask;
    for (;;) {
      const held = table[at];
      if (held === 0) return -1;
      const keyAt = (held - 1) * 2;
      if (keys[keyAt + 1] === lo && keys[keyAt] === hi) return held - 1;
      at = (at + 1) & mask;
    }
  }

  /** The entity numbered for hi·2^32 + lo, numbered now when new. */
  findOrAdd(hi: number, lo: number): number {
    const table = this.table;
    const keys = this.keys;
    const mask = this.mask;
    let at = hashOf(hi, lo) & mask;
    for (;;) {
      const held = table[at];
      if (held === 0) break;
      const keyAt = (held - 1) * 2;
      if (keys[keyAt + 1] === lo && keys[keyAt] === hi) return held - 1;
      at = (at + 1) & mask;
    }
    const entity = this.count;
    if (entity === this.capacity) this.growKeys();
    this.barrier.copies?.touch(Section.ENTITY_KEYS, entity);
    this.keys[entity * 2] = hi;
    this.keys[entity * 2 + 1] = lo;
    this.table[at] = entity + 1;
    this.count = entity + 1;
    if (this.count * 2 > this.mask + 1) this.rebuild((this.mask + 1) * 2);
    return entity;
  }

  findKey(key: EntityKey): number {
    if (typeof key === 'number') return this.find(Math.floor(key / TWO_POW_32), key % TWO_POW_32);
    return this.find(Number(key >> 32n), Number(key & 0xffff_ffffn));
  }

  findOrAddKey(key: EntityKey): number {
    if (typeof key === 'number') return this.findOrAdd(Math.floor(key / TWO_POW_32), key % TWO_POW_32);
    return this.findOrAdd(Number(key >> 32n), Number(key & 0xffff_ffffn));
  }

  /** The entity's key (a number below 2^53, a bigint above; entity-key.ts). */
  keyOf(entity: number): EntityKey {
    const hi = this.keys[entity * 2];
    const lo = this.keys[entity * 2 + 1];
    return hi < SAFE_HI ? hi * TWO_POW_32 + lo : joinNs(hi, lo);
  }

  private growKeys(): void {
    const keys = new Uint32Array(Math.max(INITIAL_ENTITIES * 2, this.keys.length * 2));
    keys.set(this.keys);
    this.barrier.copies?.freeze(Section.ENTITY_KEYS);
    this.keys = keys;
  }

  /** Re-inserts every entity in entity order into a fresh table of `capacity` slots. */
  private rebuild(capacity: number): void {
    const table = new Uint32Array(capacity);
    const mask = capacity - 1;
    const keys = this.keys;
    for (let entity = 0; entity < this.count; entity++) {
      const hi = keys[entity * 2];
      const lo = keys[entity * 2 + 1];
      let at = hashOf(hi, lo) & mask;
      for (;;) {
        const held = table[at];
        if (held === 0) break;
        const keyAt = (held - 1) * 2;
        if (keys[keyAt + 1] === lo && keys[keyAt] === hi) {
          throw new TidelogError('DECODE_FAILED', `entity ${entity} repeats the id of entity ${held - 1}`, {
            details: { entity, other: held - 1 },
          });
        }
        at = (at + 1) & mask;
      }
      table[at] = entity + 1;
    }
    this.table = table;
    this.mask = mask;
  }
}

/** The table size a state of `count` entities has: doubled from 128 while more than half full. */
function tableCapacityFor(count: number): number {
  let capacity = INITIAL_ENTITIES * 2;
  while (count * 2 > capacity) capacity *= 2;
  return capacity;
}

/** murmur3's finaliser over the id's two halves (the slot of hi·2^32 + lo). */
function hashOf(hi: number, lo: number): number {
  return finalMix(lo ^ Math.imul(hi, 0x9e3779b1));
}
