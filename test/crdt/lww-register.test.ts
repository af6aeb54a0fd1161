import fc from 'fast-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { isTidelogError } from '../../src/errors.ts';
import { HlcTimestamp, LWWRegister, trueWinsTies } from '../../src/crdt/index.ts';

interface Write {
  value: string;
  ts: HlcTimestamp;
}

// Small ranges so equal walls, equal logicals and fully equal timestamps all happen often.
const write = fc
  .record({
    value: fc.constantFrom('a', 'b', 'c', 'hidden', 'shown'),
    wallNs: fc.bigInt({ min: 0n, max: 3n }),
    logical: fc.integer({ min: 0, max: 2 }),
    nodeId: fc.integer({ min: 0, max: 4 }),
  })
  .map(({ value, wallNs, logical, nodeId }): Write => ({ value, ts: new HlcTimestamp(wallNs, logical, nodeId) }));

function registerOf(writes: Write[]): LWWRegister<string> {
  const register = new LWWRegister<string>();
  for (const { value, ts } of writes) register.set(value, ts);
  return register;
}

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

// 5 writers, up to 40 writes per replica, 3 replicas, 1000 runs ≈ 60k writes.
test('lww-register - merge is commutative, associative and idempotent (property)', () => {
  fc.assert(
    fc.property(fc.array(write, { maxLength: 40 }), fc.array(write, { maxLength: 40 }), fc.array(write, { maxLength: 40 }), (wa, wb, wc) => {
      const a = registerOf(wa);
      const b = registerOf(wb);
      const c = registerOf(wc);
      assert.ok(a.clone().merge(b).equals(b.clone().merge(a)), 'commutative');
      assert.ok(a.clone().merge(b).merge(c).equals(a.clone().merge(b.clone().merge(c))), 'associative');
      assert.ok(a.clone().merge(a).equals(a), 'idempotent');
      assert.ok(a.clone().merge(b).equals(registerOf([...wb, ...wa])), 'merge = seeing both sets of writes');
    }),
    { seed: 21, numRuns: 1000 },
  );
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
      assert.is(registerOf(tied).get(), registerOf(shuffled).get());
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
