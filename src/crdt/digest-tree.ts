// Content digests for reconciliation: a 64-bit hash of each entity's canonical state, and a
// digest tree over all entities so two replicas can find where they differ by exchanging
// O(differences × depth) digests instead of the state.
// Invariant: an entity digest is a function of the entity's state (the fields the snapshot
// encodes, in canonical order), and a tree node's digest is the XOR of its entities' digests,
// plus a count; so equal states give equal trees, and a node differs iff some entity under it
// differs (up to 64-bit collisions, ~2^-64 per compared pair).
//
// Tree: entities sit at a u32 position (a hash of the entity id, entity-state.ts positionOf).
// Level ℓ (0 … 8) splits the u32 space into 16^ℓ equal ranges; node (ℓ, i) covers positions
// [i·2^(32−4ℓ), (i+1)·2^(32−4ℓ)). Nodes are computed on demand from a position-sorted array and
// prefix XORs, so any node costs two binary searches.
//
//   node digest (as exchanged)
//   field     type   meaning
//   --------  -----  ----------------------------------------------
//   level     u8     0 … 8
//   index     u32    node index within its level (< 16^level)
//   hashHi    u32    XOR of entity digests, high half
//   hashLo    u32    XOR of entity digests, low half
//   count     u32    entities under the node

import type { Contribution } from './contribution.ts';
import { keyHalves, type EntityState } from './entity-state.ts';
import { splitNs } from './packed-time.ts';

export const FANOUT_BITS = 4;
export const MAX_LEVEL = 32 / FANOUT_BITS;

/** Two independent murmur3-style 32-bit lanes over a stream of u32 words. */
class WordHasher {
  private a = 0;
  private b = 0;
  private words = 0;
  private readonly float = new Float64Array(1);
  private readonly floatWords = new Uint32Array(this.float.buffer);

  reset(): void {
    this.a = 0x9747b28c;
    this.b = 0x2f6b1d3a;
    this.words = 0;
  }

  word(value: number): void {
    this.a = mixLane(this.a, value, 0xcc9e2d51, 0x1b873593);
    this.b = mixLane(this.b, value, 0x85ebca77, 0xc2b2ae3d);
    this.words++;
  }

  /** Any float64 (including integers beyond 2^32) as its two IEEE words. */
  float64(value: number): void {
    this.float[0] = value;
    this.word(this.floatWords[0]);
    this.word(this.floatWords[1]);
  }

  finish(out: { hi: number; lo: number }): void {
    out.hi = finalMix(this.a ^ this.words);
    out.lo = finalMix(this.b ^ Math.imul(this.words, 0x9e3779b1));
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

function finalMix(hash: number): number {
  hash ^= hash >>> 16;
  hash = Math.imul(hash, 0x85ebca6b);
  hash ^= hash >>> 13;
  hash = Math.imul(hash, 0xc2b2ae35);
  hash ^= hash >>> 16;
  return hash >>> 0;
}

const hasher = new WordHasher();
const digestOut = { hi: 0, lo: 0 };

/** Recomputes the entity's digest if its state changed since the last time. */
export function refreshEntityDigest(entity: EntityState): void {
  if (!entity.isDigestStale) return;
  hasher.reset();
  const [keyHi, keyLo] = keyHalves(entity.key);
  hasher.word(keyHi);
  hasher.word(keyLo);
  hasher.word(entity.cells.length);
  for (const cell of entity.cells) {
    hasher.word(cell.signal.id);
    hasher.word(cell.contributions.length);
    for (const contribution of cell.contributions) hashContribution(contribution);
  }
  const flags = entity.flags ?? [];
  for (let index = 0; index < flags.length; index++) {
    const stamp = flags[index]?.timestamp;
    if (stamp === undefined) continue;
    hasher.word(index);
    hasher.word(flags[index]?.get() === true ? 1 : 0);
    hashWall(stamp.wallNs);
    hasher.word(stamp.logical);
    hasher.word(stamp.nodeId);
  }
  hasher.finish(digestOut);
  entity.digestHi = digestOut.hi;
  entity.digestLo = digestOut.lo;
  entity.isDigestStale = false;
}

function hashContribution(contribution: Contribution): void {
  hasher.word(contribution.origin);
  hasher.float64(contribution.lastSeq);
  hasher.float64(contribution.eventCount);
  hasher.float64(contribution.weightPositiveHi);
  hasher.float64(contribution.weightPositiveLo);
  hasher.float64(contribution.weightNegativeHi);
  hasher.float64(contribution.weightNegativeLo);
  hasher.float64(contribution.score);
  hasher.word(contribution.anchorHi);
  hasher.word(contribution.anchorLo);
  hashWall(contribution.lastWallNs);
  hasher.word(contribution.lastLogical);
  hasher.word(contribution.lastNodeId);
  hasher.word(contribution.lastEventHi);
  hasher.word(contribution.lastEventLo);
  for (const ring of contribution.windows) {
    hasher.word(ring.length);
    for (const value of ring) hasher.float64(value);
  }
}

function hashWall(wallNs: bigint): void {
  const [hi, lo] = splitNs(wallNs);
  hasher.word(hi);
  hasher.word(lo);
}

export interface NodeDigest {
  hashHi: number;
  hashLo: number;
  count: number;
}

/** A position-sorted view of one state version with prefix XORs for O(log n) node digests. */
export class DigestTree {
  readonly entities: EntityState[];
  private readonly positions: Float64Array;
  private readonly prefixHi: Uint32Array;
  private readonly prefixLo: Uint32Array;

  constructor(entities: Iterable<EntityState>) {
    const sorted = [...entities];
    for (const entity of sorted) refreshEntityDigest(entity);
    sorted.sort((a, b) => a.position - b.position || a.digestHi - b.digestHi || a.digestLo - b.digestLo);
    this.entities = sorted;
    this.positions = new Float64Array(sorted.length);
    this.prefixHi = new Uint32Array(sorted.length + 1);
    this.prefixLo = new Uint32Array(sorted.length + 1);
    for (let index = 0; index < sorted.length; index++) {
      this.positions[index] = sorted[index].position;
      this.prefixHi[index + 1] = this.prefixHi[index] ^ sorted[index].digestHi;
      this.prefixLo[index + 1] = this.prefixLo[index] ^ sorted[index].digestLo;
    }
  }

  node(level: number, index: number): NodeDigest {
    const [start, end] = this.range(level, index);
    return {
      hashHi: (this.prefixHi[end] ^ this.prefixHi[start]) >>> 0,
      hashLo: (this.prefixLo[end] ^ this.prefixLo[start]) >>> 0,
      count: end - start,
    };
  }

  /** The entities under node (level, index). */
  entitiesIn(level: number, index: number): EntityState[] {
    const [start, end] = this.range(level, index);
    return this.entities.slice(start, end);
  }

  private range(level: number, index: number): [number, number] {
    const width = 2 ** (32 - FANOUT_BITS * level);
    return [this.lowerBound(index * width), this.lowerBound((index + 1) * width)];
  }

  /** The first index whose position is ≥ `position`. */
  private lowerBound(position: number): number {
    let low = 0;
    let high = this.positions.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (this.positions[middle] < position) low = middle + 1;
      else high = middle;
    }
    return low;
  }
}
