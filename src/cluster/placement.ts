// Where a shard's replicas live: rendezvous (highest-random-weight) hashing over the cluster's
// node ids. Every node computes the same answer from the static membership alone, with no
// coordination; when a node joins or leaves, only the shards whose replica set it enters or
// leaves move (each shard's set is its R highest-scoring nodes).
//
//   score(shard, node) = murmur3-32 (seed 0x746c6f67) over the node id's UTF-8 bytes in
//                        little-endian 32-bit words (zero-padded), then the id's byte length,
//                        then the shard; ties (rare) go to the smaller node id.
//   replicaSet(shard)  = nodes by score, highest first; the first R. The first is the shard's
//                        preferred leader (who claims epochs first when every replica is up).
//
// Test vectors are in docs/REPLICATION.md and test/cluster/placement.test.ts.

import { TidelogError } from '../errors.ts';
import { finalMix, mixWord } from '../murmur.ts';

const SEED = 0x746c6f67;
const NODE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
export const MAX_REPLICATION_FACTOR = 5;

export interface Membership {
  /** The node ids of the cluster (each node's id is stable across restarts). */
  nodeIds: readonly string[];
  /** Replicas per shard, 1..5 (1: today's single-node behaviour). */
  replicationFactor: number;
}

/** CONFIG_INVALID unless the ids are valid and distinct and 1 ≤ R ≤ min(5, nodes). */
export function checkMembership(membership: Membership): void {
  const bad = (message: string): never => {
    throw new TidelogError('CONFIG_INVALID', `cluster: ${message}`);
  };
  const { nodeIds, replicationFactor } = membership;
  if (!Array.isArray(nodeIds) || nodeIds.length === 0) bad('nodeIds must list at least one node');
  const seen = new Set<string>();
  for (const id of nodeIds) {
    if (typeof id !== 'string' || !NODE_ID.test(id)) bad(`node id ${JSON.stringify(id)} must be 1..64 of [A-Za-z0-9._-], starting with a letter or digit`);
    if (seen.has(id)) bad(`node id ${id} is listed twice`);
    seen.add(id);
  }
  if (!Number.isInteger(replicationFactor) || replicationFactor < 1 || replicationFactor > MAX_REPLICATION_FACTOR) {
    bad(`replicationFactor must be 1..${MAX_REPLICATION_FACTOR}, got ${String(replicationFactor)}`);
  }
  if (replicationFactor > nodeIds.length) bad(`replicationFactor ${replicationFactor} needs at least as many nodes, got ${nodeIds.length}`);
}

/** The rendezvous score of `nodeId` for `shard` (unsigned 32-bit). */
export function placementScore(shard: number, nodeId: string): number {
  const bytes = new TextEncoder().encode(nodeId);
  let hash = SEED;
  for (let at = 0; at < bytes.byteLength; at += 4) {
    const word = (bytes[at] | ((bytes[at + 1] ?? 0) << 8) | ((bytes[at + 2] ?? 0) << 16) | ((bytes[at + 3] ?? 0) << 24)) >>> 0;
    hash = mixWord(hash, word);
  }
  hash = mixWord(hash, bytes.byteLength);
  hash = mixWord(hash, shard >>> 0);
  return finalMix(hash);
}

/** The shard's replicas, preferred leader first (checkMembership holds for `membership`). */
export function replicaSet(shard: number, membership: Membership): string[] {
  return membership.nodeIds
    .map((nodeId) => ({ nodeId, score: placementScore(shard, nodeId) }))
    .sort((a, b) => b.score - a.score || (a.nodeId < b.nodeId ? -1 : a.nodeId > b.nodeId ? 1 : 0))
    .slice(0, membership.replicationFactor)
    .map((entry) => entry.nodeId);
}

/** A majority of R: how many replicas (the leader included) must hold a batch for it to commit. */
export function quorumSize(replicationFactor: number): number {
  return Math.floor(replicationFactor / 2) + 1;
}
