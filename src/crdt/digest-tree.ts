// The digest tree two replicas compare to find where their states differ, exchanging
// O(differences × depth) digests instead of the state.
// Invariant: a node's digest is the XOR of the digests of the entities under it, plus their
// count, and an entity digest is a function of the entity's state (state-arrays.ts digestOf:
// the XOR of its cells' and flags' digests, each hashing the entity key first, so parts of
// different entities never cancel); so equal states give equal trees, and a node differs iff
// some entity under it differs (up to 64-bit collisions, ~2^-64 per compared node).
//
// Entities sit at a u32 position (a hash of the entity id, entity-key.ts positionOf). Level ℓ
// (0 … 8) splits the u32 space into 16^ℓ equal ranges; node (ℓ, i) covers positions
// [i·2^(32−4ℓ), (i+1)·2^(32−4ℓ)). Nodes are computed on demand from a position-sorted array and
// prefix XORs, so a node costs two binary searches, whatever its size.
//
//   node digest as exchanged (reconcile.ts)
//   field     type   meaning
//   --------  -----  ----------------------------------------------
//   level     uint   0 … 8
//   index     uint   node index within its level (< 16^level)
//   hashHi    u32    XOR of entity digests, high half
//   hashLo    u32    XOR of entity digests, low half
//   count     uint   entities under the node

import { positionOf, type EntityKey } from './entity-key.ts';

export const FANOUT_BITS = 4;
export const FANOUT = 1 << FANOUT_BITS;
export const MAX_LEVEL = 32 / FANOUT_BITS;

export interface EntityDigests {
  keys: EntityKey[];
  hashHi: Uint32Array;
  hashLo: Uint32Array;
}

/** What the tree needs from a state: keys and their digests, aligned. */
export interface DigestSource {
  entityDigests(): EntityDigests;
}

export interface NodeDigest {
  hashHi: number;
  hashLo: number;
  count: number;
}

export class DigestTree {
  /** Entity keys in position order. */
  readonly keys: EntityKey[];
  private readonly positions: Float64Array;
  private readonly prefixHi: Uint32Array;
  private readonly prefixLo: Uint32Array;

  constructor(source: DigestSource) {
    const { keys, hashHi: digestHi, hashLo: digestLo } = source.entityDigests();
    const count = keys.length;
    const positions = new Float64Array(count);
    for (let index = 0; index < count; index++) positions[index] = positionOf(keys[index]);
    // Ties in position keep the key order (keys arrive sorted), so the order is canonical.
    const order = Array.from({ length: count }, (_, index) => index).sort(
      (a, b) => positions[a] - positions[b] || a - b,
    );
    this.keys = order.map((index) => keys[index]);
    this.positions = new Float64Array(count);
    this.prefixHi = new Uint32Array(count + 1);
    this.prefixLo = new Uint32Array(count + 1);
    order.forEach((from, to) => {
      this.positions[to] = positions[from];
      this.prefixHi[to + 1] = this.prefixHi[to] ^ digestHi[from];
      this.prefixLo[to + 1] = this.prefixLo[to] ^ digestLo[from];
    });
  }

  node(level: number, index: number): NodeDigest {
    const [start, end] = this.range(level, index);
    return {
      hashHi: (this.prefixHi[end] ^ this.prefixHi[start]) >>> 0,
      hashLo: (this.prefixLo[end] ^ this.prefixLo[start]) >>> 0,
      count: end - start,
    };
  }

  /** Keys of the entities under node (level, index). */
  keysIn(level: number, index: number): EntityKey[] {
    const [start, end] = this.range(level, index);
    return this.keys.slice(start, end);
  }

  /** [start, end): the node's entities are keys[start] … keys[end − 1] (no copy, for large nodes). */
  range(level: number, index: number): [number, number] {
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
