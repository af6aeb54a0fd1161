// murmur3's 32-bit building blocks, shared by every non-cryptographic hash in tidelog (dedup
// slots, entity positions, reconciliation digests, CRDT slot tables). Not for integrity:
// checksums are BLAKE3 (src/wal/checksum.ts).

/** One murmur3 round: folds a 32-bit word into the running hash. */
export function mixWord(hash: number, word: number): number {
  let k = Math.imul(word, 0xcc9e2d51);
  k = (k << 15) | (k >>> 17);
  k = Math.imul(k, 0x1b873593);
  hash ^= k;
  hash = (hash << 13) | (hash >>> 19);
  return (Math.imul(hash, 5) + 0xe6546b64) | 0;
}

/** murmur3's finaliser (avalanche); returns an unsigned 32-bit value. */
export function finalMix(hash: number): number {
  hash ^= hash >>> 16;
  hash = Math.imul(hash, 0x85ebca6b);
  hash ^= hash >>> 13;
  hash = Math.imul(hash, 0xc2b2ae35);
  hash ^= hash >>> 16;
  return hash >>> 0;
}
