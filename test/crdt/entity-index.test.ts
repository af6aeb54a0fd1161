import fc from 'fast-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { expectCode } from '../support/expect-code.ts';
import { WriteBarrier } from '../../src/crdt/copy-on-write.ts';
import { EntityIndex, RESIZE_STEPS_PER_INSERT } from '../../src/crdt/entity-index.ts';
import { entityKeyOf, type EntityKey } from '../../src/crdt/entity-key.ts';
import { GrowthMeter } from '../../src/crdt/pages.ts';

const id = fc.oneof(
  fc.bigInt({ min: 0n, max: 1000n }),
  fc.integer({ min: 0, max: 2 ** 31 }).map((n) => BigInt(n) * 4096n),
  fc.constantFrom(0n, 2n ** 32n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 64n - 1n),
  fc.bigInt({ min: 2n ** 53n, max: 2n ** 64n - 1n }),
);

/** An index holding `keys` ([hi, lo] per entity) as an image load leaves it. */
function loaded(keys: number[]): EntityIndex {
  const index = new EntityIndex(new WriteBarrier());
  for (let entity = 0; entity < keys.length / 2; entity++) {
    const page = index.keys.ensure(entity);
    page[index.keys.offsetOf(entity)] = keys[entity * 2];
    page[index.keys.offsetOf(entity) + 1] = keys[entity * 2 + 1];
  }
  index.adopt(keys.length / 2);
  return index;
}

// 300 runs × up to 3000 ids, through several incremental resizes: numbers entities in
// first-write order, finds each again (also while a resize is under way), and a table rebuilt
// from the keys alone (an image load) finds the same entities.
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
        assert.is(index.findKey(key), entity);
      }
      assert.is(index.count, reference.size);
      const keys: number[] = [];
      for (let entity = 0; entity < index.count; entity++) keys.push(index.hiOf(entity), index.loOf(entity));
      const restored = loaded(keys);
      for (const entityId of [...reads, ...writes]) {
        const key = entityKeyOf(entityId);
        assert.is(index.findKey(key), reference.get(key) ?? -1);
        assert.is(restored.findKey(key), reference.get(key) ?? -1);
      }
      for (const [key, entity] of reference) assert.is(index.keyOf(entity), key);
      const clone = new EntityIndex(new WriteBarrier(), new GrowthMeter(), index);
      for (const [key, entity] of reference) assert.is(clone.findKey(key), entity);
    }),
    { seed: 131, numRuns: 300 },
  );
});

// 300,000 inserts (through resizes up to a 1 M-slot table): each insert does at most
// RESIZE_STEPS_PER_INSERT units of rehashing, never the whole table, the table stays at most
// 0.62 full, every entity stays findable mid-resize, and a clone taken mid-resize resizes on.
test('entity-index - resizes incrementally: bounded rehash work per insert, every entity findable throughout', () => {
  const meter = new GrowthMeter();
  const index = new EntityIndex(new WriteBarrier(), meter);
  const entities = 300_000;
  let resizingInserts = 0;
  let clone: EntityIndex | undefined;
  for (let entity = 0; entity < entities; entity++) {
    const before = meter.rehashSteps;
    assert.is(index.findOrAdd(entity >>> 20, Math.imul(entity, 0x9e3779b1) >>> 0), entity);
    const steps = meter.rehashSteps - before;
    assert.ok(steps <= RESIZE_STEPS_PER_INSERT, `insert ${entity} rehashed ${steps}`);
    if (index.isResizing) resizingInserts++;
    assert.ok(index.count / index.capacity < 0.62, `load ${index.count / index.capacity} at ${entity}`);
    if (entity % 97 === 0) {
      const earlier = Math.floor(entity / 3);
      assert.is(index.find(earlier >>> 20, Math.imul(earlier, 0x9e3779b1) >>> 0), earlier);
    }
    if (clone === undefined && index.isResizing && entity > 100_000) clone = new EntityIndex(new WriteBarrier(), new GrowthMeter(), index);
  }
  assert.ok(resizingInserts > entities / 8, `${resizingInserts} inserts ran during a resize`);
  assert.ok(index.capacity >= 524_288, `${index.capacity} slots`);
  for (let entity = 0; entity < entities; entity++) {
    assert.is(index.find(entity >>> 20, Math.imul(entity, 0x9e3779b1) >>> 0), entity);
  }
  const cloned = clone as EntityIndex;
  const clonedCount = cloned.count;
  for (let entity = clonedCount; entity < clonedCount + 50_000; entity++) cloned.findOrAdd(7, entity);
  assert.ok(!cloned.isResizing, "the clone finished the resize it was copied in");
  for (let entity = 0; entity < clonedCount; entity++) assert.is(cloned.find(entity >>> 20, Math.imul(entity, 0x9e3779b1) >>> 0), entity);
  for (let entity = clonedCount; entity < clonedCount + 50_000; entity++) assert.is(cloned.find(7, entity), entity);
});

test('entity-index - loaded keys that repeat an id are DECODE_FAILED', () => {
  expectCode(() => loaded([0, 5, 1, 5, 0, 5]), 'DECODE_FAILED');
});

test.run();
