import fc from 'fast-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { deltaNs, joinNs, secondsOf, splitNs } from '../../src/crdt/packed-time.ts';

const u64 = fc.bigInt({ min: 0n, max: 0xffff_ffff_ffff_ffffn });

test('packed-time - secondsOf is exact for every u64 (property)', () => {
  fc.assert(
    fc.property(u64, (ns) => {
      const [hi, lo] = splitNs(ns);
      assert.is(BigInt(secondsOf(hi, lo)), ns / 1_000_000_000n);
      assert.is(joinNs(hi, lo), ns);
    }),
    { seed: 31, numRuns: 5000 },
  );
});

test('packed-time - secondsOf is exact at second boundaries', () => {
  for (const ns of [0n, 999_999_999n, 1_000_000_000n, 1_700_000_000_999_999_999n, 1_700_000_001_000_000_000n, 0xffff_ffff_ffff_ffffn]) {
    const [hi, lo] = splitNs(ns);
    assert.is(BigInt(secondsOf(hi, lo)), ns / 1_000_000_000n);
  }
});

test('packed-time - deltaNs is exact below 2^53 ns (property)', () => {
  fc.assert(
    fc.property(u64, fc.bigInt({ min: -(2n ** 53n) + 1n, max: 2n ** 53n - 1n }), (a, offset) => {
      const b = a + offset;
      fc.pre(b >= 0n && b <= 0xffff_ffff_ffff_ffffn);
      const [aHi, aLo] = splitNs(a);
      const [bHi, bLo] = splitNs(b);
      assert.is(deltaNs(bHi, bLo, aHi, aLo), Number(offset));
    }),
    { seed: 32, numRuns: 3000 },
  );
});

test.run();
