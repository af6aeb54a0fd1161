import fc from 'fast-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { expectCode } from '../support/expect-code.ts';
import { compareEncoded, HlcTimestamp, LWWRegister, trueWinsTies } from '../../src/crdt/index.ts';

interface Write {
  value: unknown;
  ts: HlcTimestamp;
}

// Values that encode alike except for a zero's sign sit beside ordinary ones: the tie-break
// must still be a total order.
const VALUES: readonly unknown[] = ['a', 'b', 'c', 'hidden', 'shown', 0, -0, 1, [0], [-0], { x: 0 }, { x: -0 }];

// Small ranges so equal walls, equal logicals and fully equal timestamps all happen often; the
// node id is one of 5 writers.
const write = fc
  .record({
    value: fc.constantFrom(...VALUES),
    wallNs: fc.bigInt({ min: 0n, max: 3n }),
    logical: fc.integer({ min: 0, max: 2 }),
    nodeId: fc.integer({ min: 0, max: 4 }),
  })
  .map(({ value, wallNs, logical, nodeId }): Write => ({ value, ts: new HlcTimestamp(wallNs, logical, nodeId) }));

function registerOf(writes: Write[]): LWWRegister<unknown> {
  const register = new LWWRegister<unknown>();
  for (const { value, ts } of writes) register.set(value, ts);
  return register;
}


test('lww-register - a write wins only with a strictly greater timestamp', () => {
  const register = new LWWRegister<string>();
  assert.is(register.get(), undefined);
  assert.ok(register.set('first', new HlcTimestamp(10n, 0, 1)));
  assert.not.ok(register.set('older', new HlcTimestamp(9n, 5, 9)));
  assert.not.ok(register.set('first', new HlcTimestamp(10n, 0, 1)), 'the same write again changes nothing');
  assert.ok(register.set('newer', new HlcTimestamp(10n, 1, 0)));
  assert.is(register.get(), 'newer');
  assert.ok(register.timestamp?.equals(new HlcTimestamp(10n, 1, 0)));
});

test('lww-register - the node id breaks wall and logical ties', () => {
  const a = new LWWRegister<string>();
  a.set('from node 2', new HlcTimestamp(10n, 3, 2));
  a.set('from node 1', new HlcTimestamp(10n, 3, 1));
  assert.is(a.get(), 'from node 2');
});

// 5 writers, 3 replicas of 70–90 writes each, 500 runs: ≥ 105,000 writes, counted below.
test('lww-register - merge is commutative, associative and idempotent over 100k writes from 5 nodes (property)', () => {
  let writes = 0;
  const replicaWrites = fc.array(write, { minLength: 70, maxLength: 90 });
  fc.assert(
    fc.property(replicaWrites, replicaWrites, replicaWrites, (wa, wb, wc) => {
      writes += wa.length + wb.length + wc.length;
      const a = registerOf(wa);
      const b = registerOf(wb);
      const c = registerOf(wc);
      assert.ok(a.clone().merge(b).equals(b.clone().merge(a)), 'commutative');
      assert.ok(a.clone().merge(b).merge(c).equals(a.clone().merge(b.clone().merge(c))), 'associative');
      assert.ok(a.clone().merge(a).equals(a), 'idempotent');
      assert.ok(a.clone().merge(b).equals(registerOf([...wb, ...wa])), 'merge = seeing both sets of writes');
      assert.ok(Object.is(a.clone().merge(b).get(), b.clone().merge(a).get()), 'the very same value, −0 included');
    }),
    { seed: 21, numRuns: 500 },
  );
  assert.ok(writes >= 100_000, `${writes} writes`);
});

// Regression: msgpack writes −0 as the integer 0, so the default tie-break called 0 and −0
// equal and kept whichever arrived first.
test('lww-register - 0 and −0 written at one timestamp converge in either order', () => {
  const stamp = new HlcTimestamp(10n, 0, 1);
  for (const [first, second] of [
    [0, -0],
    [[0], [-0]],
    [{ score: -0 }, { score: 0 }],
    [new Map([[1, -0]]), new Map([[1, 0]])],
  ] as const) {
    const a = new LWWRegister<unknown>();
    a.set(first, stamp);
    a.set(second, stamp);
    const b = new LWWRegister<unknown>();
    b.set(second, stamp);
    b.set(first, stamp);
    assert.ok(a.equals(b), `${JSON.stringify(first)} vs ${JSON.stringify(second)}`);
  }
  const zero = new LWWRegister<number>();
  zero.set(-0, stamp);
  zero.set(0, stamp);
  assert.ok(Object.is(zero.get(), 0), '+0 orders above −0');
  assert.ok(compareEncoded(-0, 0) < 0 && compareEncoded(0, -0) > 0 && compareEncoded(0, 0) === 0);
});

test('lww-register - equal-timestamp writes converge in any delivery order (property)', () => {
  fc.assert(
    fc.property(fc.array(write, { minLength: 1, maxLength: 30 }), fc.array(fc.nat(), { minLength: 30, maxLength: 30 }), (writes, shuffle) => {
      // Force many writes onto one (wall, logical) so only node ids and the tie-break decide.
      const tied = writes.map((w) => ({ value: w.value, ts: new HlcTimestamp(5n, 1, w.ts.nodeId) }));
      const shuffled = [...tied];
      for (let index = shuffled.length - 1; index > 0; index--) {
        const other = shuffle[index] % (index + 1);
        [shuffled[index], shuffled[other]] = [shuffled[other], shuffled[index]];
      }
      assert.ok(registerOf(tied).equals(registerOf(shuffled)));
      assert.ok(Object.is(registerOf(tied).get(), registerOf(shuffled).get()));
    }),
    { seed: 22, numRuns: 1000 },
  );
});

test('lww-register - an identical timestamp is broken by the value (hide beats unhide)', () => {
  const stamp = new HlcTimestamp(10n, 0, 1);
  const hideFirst = new LWWRegister<boolean>({ tieBreak: trueWinsTies });
  hideFirst.set(true, stamp);
  hideFirst.set(false, stamp);
  const unhideFirst = new LWWRegister<boolean>({ tieBreak: trueWinsTies });
  unhideFirst.set(false, stamp);
  unhideFirst.set(true, stamp);
  assert.is(hideFirst.get(), true);
  assert.is(unhideFirst.get(), true);
  assert.ok(hideFirst.equals(unhideFirst));
});

test('lww-register - JSON round-trips and clone is independent', () => {
  const a = new LWWRegister<{ score: number }>();
  a.set({ score: 3 }, new HlcTimestamp(99n, 1, 2));
  const restored = LWWRegister.fromJSON<{ score: number }>(JSON.parse(JSON.stringify(a)));
  assert.ok(restored.equals(a));
  assert.equal(restored.get(), { score: 3 });
  assert.is(new LWWRegister().toJSON(), null);
  assert.not.ok(LWWRegister.fromJSON(null).isSet);
  const copy = a.clone();
  copy.set({ score: 4 }, new HlcTimestamp(100n, 0, 0));
  assert.equal(a.get(), { score: 3 });
  expectCode(() => LWWRegister.fromJSON({ value: 1 }), 'DECODE_FAILED');
  expectCode(() => new LWWRegister<number>().set(1, { wallNs: 1n } as HlcTimestamp), 'BAD_REQUEST');
});

test.run();
