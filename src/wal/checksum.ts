// BLAKE3 (hash-wasm) truncated to 128 bits: the checksum of every batch and checkpoint.
// hash-wasm instances are created asynchronously once and then used synchronously; one
// hasher serves the whole process because JavaScript runs one hash at a time.

import { createBLAKE3, type IHasher } from 'hash-wasm';

export const CHECKSUM_BYTES = 16;

let hasher: IHasher | null = null;

/** Must be awaited once before checksum() is used (Wal.open does this). */
export async function initChecksum(): Promise<void> {
  hasher ??= await createBLAKE3(CHECKSUM_BYTES * 8);
}

/** BLAKE3-128 over the concatenation of `parts`, written into `out` at `outOffset`. */
export function checksumInto(parts: readonly Uint8Array[], out: Uint8Array, outOffset: number): void {
  const digest = checksum(parts);
  out.set(digest, outOffset);
}

export function checksum(parts: readonly Uint8Array[]): Uint8Array {
  if (hasher === null) throw new Error('invariant violated: initChecksum() was not awaited');
  hasher.init();
  for (const part of parts) hasher.update(part);
  return hasher.digest('binary');
}

export function checksumEquals(parts: readonly Uint8Array[], expected: Uint8Array, expectedOffset: number): boolean {
  const digest = checksum(parts);
  for (let index = 0; index < CHECKSUM_BYTES; index++) {
    if (digest[index] !== expected[expectedOffset + index]) return false;
  }
  return true;
}
