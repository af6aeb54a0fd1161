import fc from 'fast-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { compareEntityKeys, entityIdOf, entityKey, entityKeyOf, keyHalves, positionOf } from '../../src/crdt/entity-key.ts';
import { splitNs } from '../../src/crdt/packed-time.ts';

const id = fc.oneof(fc.bigInt({ min: 0n, max: 2n ** 53n + 10n }), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }));

test('entity-key - one id has one key, numbers below 2^53 and bigints above (property)', () => {
  fc.assert(
    fc.property(id, id, (a, b) => {
      const keyA = entityKeyOf(a);
      assert.is(typeof keyA, a < 2n ** 53n ? 'number' : 'bigint');
      assert.is(entityIdOf(keyA), a);
      const [hi, lo] = splitNs(a);
      assert.is(entityKey(hi, lo), keyA);
      assert.equal(keyHalves(keyA), [hi, lo]);
      assert.is(Math.sign(compareEntityKeys(keyA, entityKeyOf(b))), a < b ? -1 : a > b ? 1 : 0);
      assert.is(positionOf(keyA), positionOf(entityKeyOf(a)));
    }),
    { seed: 141, numRuns: 3000 },
  );
});

test('entity-key - positions spread consecutive ids over the tree', () => {
  const firstNibbles = new Set<number>();
  for (let entity = 0; entity < 256; entity++) firstNibbles.add(positionOf(entity) >>> 28);
  assert.is(firstNibbles.size, 16);
});

test.run();
