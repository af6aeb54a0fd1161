import fc from 'fast-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CrdtSignalState, defaultSignalSchema, HlcTimestamp, ReconciliationEngine } from '../../src/crdt/index.ts';
import { DigestTree, FANOUT, MAX_LEVEL } from '../../src/crdt/digest-tree.ts';
import { positionOf } from '../../src/crdt/entity-key.ts';
import { deliver, makeHistory, mulberry32, referenceState, shuffle } from './replica-simulation.ts';

const schema = defaultSignalSchema();

function stateOf(seed: number, entities = 200): CrdtSignalState {
  const random = mulberry32(seed);
  return referenceState(schema, makeHistory(schema, random, { origins: [1, 2], eventsPerOrigin: 300, entities }));
}

test('digest-tree - equal states built in different orders have equal trees', () => {
  const random = mulberry32(1);
  const history = makeHistory(schema, random, { origins: [1, 2, 3], eventsPerOrigin: 100, entities: 50 });
  const a = referenceState(schema, history);
  const b = new CrdtSignalState(schema);
  for (const batch of shuffle([...history], random)) deliver(b, batch);
  const treeA = new DigestTree(a);
  const treeB = new DigestTree(b);
  assert.equal(treeA.node(0, 0), treeB.node(0, 0));
  assert.equal(treeA.keys, treeB.keys);
});

test('digest-tree - a node is the XOR of its children and counts its entities (property)', () => {
  const tree = new DigestTree(stateOf(2, 500));
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 3 }), fc.nat(), (level, pick) => {
      const index = pick % FANOUT ** level;
      const parent = tree.node(level, index);
      let hashHi = 0;
      let hashLo = 0;
      let count = 0;
      for (let child = 0; child < FANOUT; child++) {
        const node = tree.node(level + 1, index * FANOUT + child);
        hashHi ^= node.hashHi;
        hashLo ^= node.hashLo;
        count += node.count;
      }
      assert.equal({ hashHi: hashHi >>> 0, hashLo: hashLo >>> 0, count }, parent);
      assert.is(tree.keysIn(level, index).length, parent.count);
    }),
    { seed: 101, numRuns: 300 },
  );
  assert.is(tree.node(0, 0).count, tree.keys.length);
  assert.is(tree.node(MAX_LEVEL, positionOf(tree.keys[0])).count >= 1, true);
});

test('digest-tree - one changed entity changes exactly the nodes on its path', () => {
  const before = stateOf(3);
  const after = before.clone();
  const [entity] = after.entityIds();
  after.apply({ entityId: entity, signalType: 1, weight: 1, timestampNs: 1n }, 9, new HlcTimestamp(5n, 0, 9));
  const treeBefore = new DigestTree(before);
  const treeAfter = new DigestTree(after);
  const position = positionOf(Number(entity));
  for (let level = 0; level <= MAX_LEVEL; level++) {
    const onPath = Math.floor(position / 2 ** (32 - 4 * level));
    assert.not.equal(treeBefore.node(level, onPath), treeAfter.node(level, onPath), `level ${level} on the path`);
    const offPath = (onPath + 1) % FANOUT ** level;
    if (level > 0) assert.equal(treeBefore.node(level, offPath), treeAfter.node(level, offPath), `level ${level} off the path`);
  }
});

// The per-entity digest cache is filled by the first tree and must follow every later write:
// folds (scores and flags), merges and plan joins. A clone starts with no cache, so its tree is
// computed from scratch.
test('digest-tree - cached entity digests follow folds, flags, merges and plans', () => {
  const random = mulberry32(7);
  const history = makeHistory(schema, random, { origins: [1, 2, 3], eventsPerOrigin: 200, entities: 80, flagShare: 0.2 });
  const state = referenceState(schema, history);
  // Other origins on the same entities: a merge changes cells through joins alone.
  const peer = referenceState(schema, makeHistory(schema, random, { origins: [4, 5], eventsPerOrigin: 200, entities: 80, flagShare: 0.2 }));
  for (let round = 0; round < 6; round++) {
    const warm = new DigestTree(state);
    assert.equal(warm.node(0, 0), new DigestTree(state.clone()).node(0, 0), `round ${round}`);
    if (round % 3 === 0) state.merge(peer);
    else if (round % 3 === 1) new ReconciliationEngine().apply(state, new ReconciliationEngine().plan(state, stateOf(round, 60)));
    else state.apply({ entityId: BigInt(round), signalType: 200, weight: 1, timestampNs: 1n }, 9, new HlcTimestamp(BigInt(round) + 1n, 0, 9));
    state.apply({ entityId: 3n, signalType: 1, weight: round, timestampNs: BigInt(round) * 1_000_000_000_000n }, 8, new HlcTimestamp(BigInt(round) + 1n, 0, 8));
  }
  assert.equal(new DigestTree(state).node(0, 0), new DigestTree(state.clone()).node(0, 0));
});

test.run();
