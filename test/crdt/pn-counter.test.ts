import fc from 'fast-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { isTidelogError } from '../../src/errors.ts';
import { PNCounter } from '../../src/crdt/index.ts';

const NODES = 5;

interface Operation {
  node: number;
  isIncrement: boolean;
  amount: number;
}

const operation = fc.record({
  node: fc.integer({ min: 0, max: NODES - 1 }),
  isIncrement: fc.boolean(),
  amount: fc.integer({ min: 0, max: 1_000_000 }),
});

function expectCode(run: () => unknown, code: string): void {
  try {
    run();
  } catch (error) {
    assert.ok(isTidelogError(error), String(error));
    assert.is((error as { code: string }).code, code);
    return;
  }
  assert.unreachable(`expected ${code}`);
}

/**
 * Replicas of one 5-node counter: node n only ever changes its own entries, and a replica holds
 * some prefix of each node's operations. That is how PN-counters are used (and why merge is a
 * per-node max); a replica is built from the prefix lengths.
 */
function replica(histories: Operation[][], prefixes: number[]): PNCounter {
  const counter = new PNCounter();
  histories.forEach((history, node) => {
    for (const operation of history.slice(0, prefixes[node])) {
      if (operation.isIncrement) counter.increment(node, operation.amount);
      else counter.decrement(node, operation.amount);
    }
  });
  return counter;
}

const histories = fc.array(fc.array(operation, { maxLength: 60 }), { minLength: NODES, maxLength: NODES });
const prefixes = fc.array(fc.integer({ min: 0, max: 60 }), { minLength: NODES, maxLength: NODES });

test('pn-counter - value is the increments minus the decrements', () => {
  const counter = new PNCounter().increment(1, 10).increment(2, 5).decrement(1, 3).increment(1);
  assert.is(counter.value, 13n);
  assert.is(counter.positive, 16n);
  assert.is(counter.negative, 3n);
  assert.equal(counter.entries(), [
    { node: 1, p: 11n, n: 3n },
    { node: 2, p: 5n, n: 0n },
  ]);
});

test('pn-counter - merge takes the per-node maximum and returns this', () => {
  const a = new PNCounter().increment(1, 10).decrement(2, 4);
  const b = new PNCounter().increment(1, 7).increment(3, 2).decrement(2, 9);
  assert.is(a.merge(b), a);
  assert.is(a.value, 10n + 2n - 9n);
  assert.equal(a.toJSON(), { p: [[1, '10'], [3, '2']], n: [[2, '9']] });
});

// 3 replicas × 5 nodes × up to 60 operations, 700 runs ≈ 100k+ operations applied.
test('pn-counter - merge is commutative, associative and idempotent (property)', () => {
  fc.assert(
    fc.property(histories, prefixes, prefixes, prefixes, (history, p1, p2, p3) => {
      const a = replica(history, p1);
      const b = replica(history, p2);
      const c = replica(history, p3);
      assert.ok(a.clone().merge(b).equals(b.clone().merge(a)), 'commutative');
      assert.ok(a.clone().merge(b).merge(c).equals(a.clone().merge(b.clone().merge(c))), 'associative');
      assert.ok(a.clone().merge(a).equals(a), 'idempotent');
      // The join of prefixes is the longer prefix per node.
      const joined = replica(
        history,
        p1.map((length, node) => Math.max(length, p2[node])),
      );
      assert.ok(a.clone().merge(b).equals(joined), 'join = per-node longest prefix');
      assert.is(a.clone().merge(b).value, joined.value);
    }),
    { seed: 11, numRuns: 700 },
  );
});

test('pn-counter - replicas that merged everything agree on the exact total', () => {
  fc.assert(
    fc.property(histories, fc.array(fc.integer({ min: 0, max: NODES - 1 }), { maxLength: 30 }), (history, order) => {
      const full = history.map((ops) => ops.length);
      const replicas = [0, 1, 2].map(() => new PNCounter());
      // Each node's replica first learns its own node's history, then merges in a random order.
      history.forEach((_, node) => replicas[node % 3].merge(replica(history, full.map((length, at) => (at === node ? length : 0)))));
      for (const index of order) replicas[index % 3].merge(replicas[(index + 1) % 3]);
      for (const r of replicas) for (const other of replicas) r.merge(other);
      let expected = 0n;
      for (const ops of history) for (const op of ops) expected += op.isIncrement ? BigInt(op.amount) : -BigInt(op.amount);
      for (const r of replicas) assert.is(r.value, expected);
    }),
    { seed: 12, numRuns: 200 },
  );
});

test('pn-counter - clone is independent and JSON round-trips', () => {
  const a = new PNCounter().increment(4, 2n ** 70n).decrement(9, 3);
  const copy = a.clone();
  copy.increment(4, 1);
  assert.is(a.value, 2n ** 70n - 3n);
  const restored = PNCounter.fromJSON(JSON.parse(JSON.stringify(a)));
  assert.ok(restored.equals(a));
  assert.ok(new PNCounter().increment(1, 0).equals(new PNCounter()), 'zero entries are not stored');
});

test('pn-counter - rejects negative, fractional and non-u32 input', () => {
  expectCode(() => new PNCounter().increment(1, -1), 'BAD_REQUEST');
  expectCode(() => new PNCounter().decrement(1, 0.5), 'BAD_REQUEST');
  expectCode(() => new PNCounter().increment(1, Number.NaN), 'BAD_REQUEST');
  expectCode(() => new PNCounter().increment(-1, 1), 'BAD_REQUEST');
  expectCode(() => new PNCounter().increment(1, -1n), 'BAD_REQUEST');
  expectCode(() => PNCounter.fromJSON({ p: [[1, '-3']], n: [] }), 'DECODE_FAILED');
  expectCode(() => PNCounter.fromJSON({ p: [[1, '3'], [1, '4']], n: [] }), 'DECODE_FAILED');
  expectCode(() => PNCounter.fromJSON('nope'), 'DECODE_FAILED');
});

test.run();
