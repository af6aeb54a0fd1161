import fc from 'fast-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { isTidelogError } from '../../src/errors.ts';
import { bigIntToWide, LIMB, MAX_ABS_WEIGHT, weightToMicros, wideToBigInt } from '../../src/crdt/weight-micros.ts';

test('weight-micros - f32 weights become whole micro-units, rounding half away from zero', () => {
  assert.is(weightToMicros(1), 1_000_000);
  assert.is(weightToMicros(Math.fround(0.1)), 100_000);
  assert.is(weightToMicros(-2.5), 2_500_000);
  assert.is(weightToMicros(0.0000005), 1);
  assert.is(weightToMicros(Math.fround(123.456)), 123_456_001);
  assert.is(weightToMicros(MAX_ABS_WEIGHT), 1e15);
});

test('weight-micros - NaN, infinities and oversized weights are BAD_REQUEST', () => {
  for (const weight of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, MAX_ABS_WEIGHT * 2]) {
    assert.throws(() => weightToMicros(weight), (error: unknown) => isTidelogError(error, 'BAD_REQUEST'));
  }
});

test('weight-micros - two-limb sums convert to exact bigints (property)', () => {
  fc.assert(
    fc.property(fc.bigInt({ min: 0n, max: 2n ** 100n }), (value) => {
      const [hi, lo] = bigIntToWide(value);
      assert.ok(lo >= 0 && lo < LIMB);
      assert.is(wideToBigInt(hi, lo), value);
    }),
    { seed: 41, numRuns: 1000 },
  );
});

test.run();
