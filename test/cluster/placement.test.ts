// Placement: rendezvous hashing over static membership. Frozen test vectors (any change to the
// hash moves every cluster's data: these must never change silently), balance, minimal
// movement when a node leaves, and membership checks.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { checkMembership, placementScore, quorumSize, replicaSet } from '../../src/cluster/placement.ts';

const three = { nodeIds: ['node-a', 'node-b', 'node-c'], replicationFactor: 3 };
const five = { nodeIds: ['n1', 'n2', 'n3', 'n4', 'n5'], replicationFactor: 3 };

test('placement - frozen test vectors (docs/REPLICATION.md)', () => {
  assert.is(placementScore(0, 'node-a'), 667064188);
  assert.is(placementScore(1, 'n1'), 3750214246);
  const vectors: Array<[number, typeof three, string]> = [
    [0, three, 'node-b,node-c,node-a'],
    [1, three, 'node-b,node-a,node-c'],
    [2, three, 'node-c,node-b,node-a'],
    [6, three, 'node-a,node-b,node-c'],
    [0, five, 'n4,n5,n3'],
    [1, five, 'n1,n5,n3'],
    [3, five, 'n4,n1,n2'],
    [100, five, 'n3,n4,n2'],
    [65535, five, 'n3,n1,n5'],
  ];
  for (const [shard, membership, expected] of vectors) assert.is(replicaSet(shard, membership).join(','), expected, `shard ${shard}`);
});

test('placement - the answer does not depend on the order nodes are listed in', () => {
  const reversed = { ...five, nodeIds: [...five.nodeIds].reverse() };
  for (let shard = 0; shard < 256; shard++) assert.equal(replicaSet(shard, reversed), replicaSet(shard, five));
});

test('placement - replicas and preferred leaders spread evenly over 4096 shards', () => {
  const replicas = new Map<string, number>();
  const leaders = new Map<string, number>();
  const shards = 4096;
  for (let shard = 0; shard < shards; shard++) {
    const set = replicaSet(shard, five);
    assert.is(new Set(set).size, 3, 'three distinct nodes');
    leaders.set(set[0], (leaders.get(set[0]) ?? 0) + 1);
    for (const node of set) replicas.set(node, (replicas.get(node) ?? 0) + 1);
  }
  for (const node of five.nodeIds) {
    const replicaShare = (replicas.get(node) ?? 0) / ((shards * 3) / 5);
    const leaderShare = (leaders.get(node) ?? 0) / (shards / 5);
    assert.ok(replicaShare > 0.9 && replicaShare < 1.1, `${node}: replicas ${replicaShare.toFixed(3)} × the even share`);
    assert.ok(leaderShare > 0.85 && leaderShare < 1.15, `${node}: leaders ${leaderShare.toFixed(3)} × the even share`);
  }
});

test('placement - when a node leaves, only the shards it held change, and they keep their other replicas', () => {
  const without = { nodeIds: five.nodeIds.filter((id) => id !== 'n3'), replicationFactor: 3 };
  let moved = 0;
  for (let shard = 0; shard < 1024; shard++) {
    const before = replicaSet(shard, five);
    const after = replicaSet(shard, without);
    if (!before.includes('n3')) {
      assert.equal(after, before, `shard ${shard} did not involve n3`);
      continue;
    }
    moved++;
    for (const node of before) if (node !== 'n3') assert.ok(after.includes(node), `shard ${shard} keeps ${node}`);
  }
  assert.ok(moved > 1024 * 0.5 && moved < 1024 * 0.7, `n3 held ${moved} of 1024 shards (3/5 expected)`);
});

test('placement - membership is checked: ids, duplicates, R against the node count', () => {
  checkMembership(three);
  checkMembership({ nodeIds: ['solo'], replicationFactor: 1 });
  const refused = [
    { nodeIds: [], replicationFactor: 1 },
    { nodeIds: ['a', 'a'], replicationFactor: 1 },
    { nodeIds: ['a b'], replicationFactor: 1 },
    { nodeIds: ['-a'], replicationFactor: 1 },
    { nodeIds: ['a', 'b'], replicationFactor: 3 },
    { nodeIds: ['a', 'b', 'c', 'd', 'e', 'f'], replicationFactor: 6 },
    { nodeIds: ['a'], replicationFactor: 0 },
  ];
  for (const membership of refused) {
    try {
      checkMembership(membership);
      assert.unreachable(`accepted ${JSON.stringify(membership)}`);
    } catch (error) {
      assert.is((error as { code?: string }).code, 'CONFIG_INVALID', JSON.stringify(membership));
    }
  }
});

test('placement - a quorum is a majority of R', () => {
  assert.equal([1, 2, 3, 4, 5].map(quorumSize), [1, 2, 2, 3, 3]);
});

test.run();
