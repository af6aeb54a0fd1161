import fc from 'fast-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { expectCode } from '../support/expect-code.ts';
import { PNCounter } from '../../src/crdt/index.ts';

const NODES = 5;
const MICROS = 1_000_000n;

/** An amount as its caller means it: a number in units (maybe fractional), a bigint in micro-units. */
type Amount = number | bigint;

interface Operation {
  node: number;
  isIncrement: boolean;
  amount: Amount;
}

const amount: fc.Arbitrary<Amount> = fc.oneof(
  fc.integer({ min: 0, max: 1_000_000 }),
  fc.double({ min: 0, max: 10_000, noNaN: true }),
  fc.float({ min: 0, max: Math.fround(1000), noNaN: true }),
  fc.bigInt({ min: 0n, max: 10n ** 15n }),
);

const operation: fc.Arbitrary<Operation> = fc.record({
  node: fc.integer({ min: 0, max: NODES - 1 }),
  isIncrement: fc.boolean(),
  amount,
});

/** The documented conversion, written out independently: units × 10⁶ rounded, bigints as they are. */
function microsOf(value: Amount): bigint {
  if (typeof value === 'bigint') return value;
  return Number.isSafeInteger(value) ? BigInt(value) * MICROS : BigInt(Math.round(value * 1e6));
}


/**
 * A replica of one 5-node counter: node n only ever changes its own entries, in the order of the
 * shared history, and a replica holds some prefix of each node's operations. That is how
 * PN-counters are used (and why merge is a per-node max).
 */
function replica(history: readonly Operation[], prefixes: readonly number[]): PNCounter {
  const counter = new PNCounter();
  const seen = new Array<number>(NODES).fill(0);
  for (const operation of history) {
    if (seen[operation.node]++ >= prefixes[operation.node]) continue;
    if (operation.isIncrement) counter.increment(operation.node, operation.amount);
    else counter.decrement(operation.node, operation.amount);
  }
  return counter;
}

const prefixes = fc.array(fc.integer({ min: 0, max: 130 }), { minLength: NODES, maxLength: NODES });

test('pn-counter - value is the increments minus the decrements, in micro-units', () => {
  const counter = new PNCounter().increment(1, 10).increment(2, 5).decrement(1, 3).increment(1);
  assert.is(counter.micros, 13n * MICROS);
  assert.is(counter.value, 13);
  assert.is(counter.positiveMicros, 16n * MICROS);
  assert.is(counter.negativeMicros, 3n * MICROS);
  assert.equal(counter.entries(), [
    { node: 1, p: 11n * MICROS, n: 3n * MICROS },
    { node: 2, p: 5n * MICROS, n: 0n },
  ]);
});

// Regression: fractional amounts used to be BAD_REQUEST; the issue wants f32 weights counted.
test('pn-counter - fractional amounts count as fixed-point micro-units with the weight rule', () => {
  const counter = new PNCounter().increment(1, 0.5).increment(1, Math.fround(0.1)).decrement(2, 1e-6).increment(3, 250n);
  assert.is(counter.micros, 500_000n + 100_000n - 1n + 250n);
  assert.is(counter.value, 0.600249);
  // round(x × 10⁶) half away from zero, on the exact value given (an f32 weight is exact in f64).
  assert.is(new PNCounter().increment(1, 2.5e-6).micros, 3n);
  assert.is(new PNCounter().increment(1, 0.4e-6).micros, 0n);
  // The same amounts in any order and split across merges give the same bits.
  const a = new PNCounter().increment(1, 0.1).increment(1, 0.2);
  const b = new PNCounter().increment(1, 0.2).increment(1, 0.1);
  assert.ok(a.equals(b));
  assert.is(a.micros, 300_000n);
});

test('pn-counter - merge takes the per-node maximum and returns this', () => {
  const a = new PNCounter().increment(1, 10).decrement(2, 4);
  const b = new PNCounter().increment(1, 7).increment(3, 2).decrement(2, 9);
  assert.is(a.merge(b), a);
  assert.is(a.micros, (10n + 2n - 9n) * MICROS);
  assert.equal(a.toJSON(), { p: [[1, '10000000'], [3, '2000000']], n: [[2, '9000000']] });
});

// One history of ≥ 400 random operations over 5 nodes per run (integer, fractional, f32 and
// bigint amounts), 250 runs: ≥ 100,000 operations, counted below. Each run checks the laws
// on three replicas that hold different per-node prefixes of the history.
test('pn-counter - merge is commutative, associative and idempotent over 100k operations on 5 nodes (property)', () => {
  let operations = 0;
  fc.assert(
    fc.property(fc.array(operation, { minLength: 400, maxLength: 600 }), prefixes, prefixes, prefixes, (history, p1, p2, p3) => {
      operations += history.length;
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
      assert.is(a.clone().merge(b).micros, joined.micros);
    }),
    { seed: 11, numRuns: 250 },
  );
  assert.ok(operations >= 100_000, `${operations} operations`);
});

test('pn-counter - replicas that merged everything agree on the exact total', () => {
  fc.assert(
    fc.property(
      fc.array(operation, { maxLength: 200 }),
      fc.array(fc.integer({ min: 0, max: NODES - 1 }), { maxLength: 30 }),
      (history, order) => {
        const replicas = [0, 1, 2].map(() => new PNCounter());
        // Each node's replica first learns its own node's history, then merges in a random order.
        for (let node = 0; node < NODES; node++) {
          replicas[node % 3].merge(replica(history, [0, 1, 2, 3, 4].map((at) => (at === node ? Infinity : 0))));
        }
        for (const index of order) replicas[index % 3].merge(replicas[(index + 1) % 3]);
        for (const r of replicas) for (const other of replicas) r.merge(other);
        let expected = 0n;
        for (const op of history) expected += op.isIncrement ? microsOf(op.amount) : -microsOf(op.amount);
        for (const r of replicas) assert.is(r.micros, expected);
      },
    ),
    { seed: 12, numRuns: 200 },
  );
});

test('pn-counter - clone is independent and JSON round-trips', () => {
  const a = new PNCounter().increment(4, 2n ** 70n).decrement(9, 3);
  const copy = a.clone();
  copy.increment(4, 1);
  assert.is(a.micros, 2n ** 70n - 3n * MICROS);
  const restored = PNCounter.fromJSON(JSON.parse(JSON.stringify(a)));
  assert.ok(restored.equals(a));
  assert.ok(new PNCounter().increment(1, 0).equals(new PNCounter()), 'zero entries are not stored');
  assert.ok(new PNCounter().increment(1, 1e-7).equals(new PNCounter()), 'below half a micro-unit rounds to nothing');
});

test('pn-counter - rejects negative, non-finite, oversized and non-u32 input', () => {
  expectCode(() => new PNCounter().increment(1, -1), 'BAD_REQUEST');
  expectCode(() => new PNCounter().decrement(1, -0.5), 'BAD_REQUEST');
  expectCode(() => new PNCounter().increment(1, Number.NaN), 'BAD_REQUEST');
  expectCode(() => new PNCounter().increment(1, Number.POSITIVE_INFINITY), 'BAD_REQUEST');
  expectCode(() => new PNCounter().increment(1, 1e9 + 0.5), 'BAD_REQUEST');
  expectCode(() => new PNCounter().increment(1, '3' as unknown as number), 'BAD_REQUEST');
  expectCode(() => new PNCounter().increment(-1, 1), 'BAD_REQUEST');
  expectCode(() => new PNCounter().increment(1, -1n), 'BAD_REQUEST');
  expectCode(() => PNCounter.fromJSON({ p: [[1, '-3']], n: [] }), 'DECODE_FAILED');
  expectCode(() => PNCounter.fromJSON({ p: [[1, '3'], [1, '4']], n: [] }), 'DECODE_FAILED');
  expectCode(() => PNCounter.fromJSON('nope'), 'DECODE_FAILED');
});

// Regression: raise took any value, so a number slipped into the maps and a later `value` threw
// a TypeError; a negative bigint was silently ignored.
test('pn-counter - raise type-checks its amounts', () => {
  expectCode(() => new PNCounter().raise(1, 5 as unknown as bigint, 0n), 'BAD_REQUEST');
  expectCode(() => new PNCounter().raise(1, 0n, -1n), 'BAD_REQUEST');
  expectCode(() => new PNCounter().raise(1.5, 0n, 0n), 'BAD_REQUEST');
  assert.is(new PNCounter().raise(1, 7n, 2n).raise(1, 3n, 4n).micros, 7n - 4n);
});

test.run();
