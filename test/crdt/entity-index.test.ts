import fc from 'fast-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { expectCode } from '../support/expect-code.ts';
import { WriteBarrier } from '../../src/crdt/copy-on-write.ts';
import { EntityIndex } from '../../src/crdt/entity-index.ts';
import { entityKeyOf, type EntityKey } from '../../src/crdt/entity-key.ts';

const id = fc.oneof(
  fc.bigInt({ min: 0n, max: 1000n }),
  fc.integer({ min: 0, max: 2 ** 31 }).map((n) => BigInt(n) * 4096n),
  fc.constantFrom(0n, 2n ** 32n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 64n - 1n),
  fc.bigInt({ min: 2n ** 53n, max: 2n ** 64n - 1n }),
);

// 300 runs × up to 3000 ids, through several growths: numbers entities in first-write order,
// finds each again, and a table rebuilt from the keys alone (an image load) is the same index.
test('entity-index - numbers ids in first-write order and finds them, like a Map (property)', () => {
  fc.assert(
    fc.property(fc.array(id, { maxLength: 3000 }), fc.array(id, { maxLength: 200 }), (writes, reads) => {
      const index = new EntityIndex(new WriteBarrier());
      const reference = new Map<EntityKey, number>();
      for (const entityId of writes) {
        const key = entityKeyOf(entityId);
        const entity = index.findOrAddKey(key);
        if (!reference.has(key)) reference.set(key, reference.size);
        assert.is(entity, reference.get(key));
      }
      assert.is(index.count, reference.size);
      const restored = new EntityIndex(new WriteBarrier());
      restored.adopt(index.keys.slice(0, Math.max(2, index.count * 2)), index.count);
      for (const entityId of [...reads, ...writes]) {
        const key = entityKeyOf(entityId);
        assert.is(index.findKey(key), reference.get(key) ?? -1);
        assert.is(restored.findKey(key), reference.get(key) ?? -1);
      }
      for (const [key, entity] of reference) assert.is(index.keyOf(entity), key);
      assert.equal((restored as unknown as { table: Uint32Array }).table, (index as unknown as { table: Uint32Array }).table);
    }),
    { seed: 131, numRuns: 300 },
  );
});

test('entity-index - loaded keys that repeat an id are DECODE_FAILED', () => {
  const index = new EntityIndex(new WriteBarrier());
  expectCode(() => index.adopt(Uint32Array.from([0, 5, 1, 5, 0, 5]), 3), 'DECODE_FAILED');
});

test.run();
