// A 64-bit content hash over a stream of u32 words (two murmur3-style lanes with different
// constants), for reconciliation digests. Not cryptographic: replicas are trusted, the hash only
// has to make accidental collisions negligible (~2^-64 per compared pair).
// Invariant: the result depends only on the sequence of words fed since reset().

import { finalMix } from '../murmur.ts';

export class WordHash {
  private laneA = 0;
  private laneB = 0;
  private words = 0;
  private readonly float = new Float64Array(1);
  private readonly floatWords = new Uint32Array(this.float.buffer);
  hi = 0;
  lo = 0;

  reset(): this {
    this.laneA = 0x9747b28c;
    this.laneB = 0x2f6b1d3a;
    this.words = 0;
    return this;
  }

  word(value: number): void {
    this.laneA = mixLane(this.laneA, value, 0xcc9e2d51, 0x1b873593);
    this.laneB = mixLane(this.laneB, value, 0x85ebca77, 0xc2b2ae3d);
    this.words++;
  }

  /** Any float64 (including integers beyond 2^32) as its two IEEE-754 words. */
  float64(value: number): void {
    this.float[0] = value;
    this.word(this.floatWords[0]);
    this.word(this.floatWords[1]);
  }

  /** Sets hi and lo. */
  finish(): void {
    this.hi = finalMix(this.laneA ^ this.words);
    this.lo = finalMix(this.laneB ^ Math.imul(this.words, 0x9e3779b1));
  }
}

function mixLane(hash: number, word: number, c1: number, c2: number): number {
  let k = Math.imul(word, c1);
  k = (k << 15) | (k >>> 17);
  k = Math.imul(k, c2);
  hash ^= k;
  hash = (hash << 13) | (hash >>> 19);
  return (Math.imul(hash, 5) + 0xe6546b64) | 0;
}
