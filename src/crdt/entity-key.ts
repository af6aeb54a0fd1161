// Entity keys and positions. Invariant: one u64 entity id has exactly one key, so Maps keyed by
// EntityKey never hold an entity twice: an id below 2^53 is a number (no allocation on the hot
// path), an id at or above 2^53 a bigint.

import { finalMix, mixWord } from '../murmur.ts';
import { joinNs, TWO_POW_32 } from './packed-time.ts';

export type EntityKey = number | bigint;

const SAFE_LIMIT = 0x20_0000_0000_0000n;

/** The key of hi·2^32 + lo. */
export function entityKey(hi: number, lo: number): EntityKey {
  return hi < 0x200000 ? hi * TWO_POW_32 + lo : joinNs(hi, lo);
}

export function entityKeyOf(entityId: bigint): EntityKey {
  return entityId < SAFE_LIMIT ? Number(entityId) : entityId;
}

export function entityIdOf(key: EntityKey): bigint {
  return typeof key === 'bigint' ? key : BigInt(key);
}

export function compareEntityKeys(a: EntityKey, b: EntityKey): number {
  // Every number key is below every bigint key (2^53 splits the two forms).
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  if (typeof a === 'bigint' && typeof b === 'bigint') return a < b ? -1 : a > b ? 1 : 0;
  return typeof a === 'number' ? -1 : 1;
}

export function keyHalves(key: EntityKey): [hi: number, lo: number] {
  if (typeof key === 'number') return [Math.floor(key / TWO_POW_32), key % TWO_POW_32];
  return [Number(key >> 32n), Number(key & 0xffff_ffffn)];
}

/** A u32 position in the reconciliation tree: murmur3's mix over the id's two halves. */
export function positionOf(key: EntityKey): number {
  const [hi, lo] = keyHalves(key);
  let hash = 0x5bd1e995;
  hash = mixWord(hash, lo);
  hash = mixWord(hash, hi);
  hash ^= 8;
  return finalMix(hash);
}
