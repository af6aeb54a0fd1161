import fc from 'fast-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { EntityKey } from '../../src/crdt/entity-key.ts';
import { SlotTable } from '../../src/crdt/slot-table.ts';

const key = fc.oneof(
  fc.integer({ min: 0, max: 1000 }),
  fc.integer({ min: 0, max: 2 ** 31 }).map((n) => n * 4096),
  fc.constantFrom(0, 2 ** 32, 2 ** 53 - 1),
  fc.bigInt({ min: 2n ** 53n, max: 2n ** 64n - 1n }),
);

// The table against a Map: 300 runs × up to 2000 operations, through several growths.
test('slot-table - behaves like a Map for entity keys (property)', () => {
  fc.assert(
    fc.property(fc.array(fc.tuple(key, fc.nat()), { maxLength: 2000 }), fc.array(key, { maxLength: 200 }), (writes, reads) => {
      const table = new SlotTable();
      const reference = new Map<EntityKey, number>();
      for (const [k, slot] of writes) {
        table.set(k, slot);
        reference.set(k, slot);
      }
      assert.is(table.size, reference.size);
      for (const k of [...reads, ...reference.keys()]) assert.is(table.get(k), reference.get(k) ?? -1);
      const seen = new Map<EntityKey, number>();
      table.forEach((k, slot) => seen.set(k, slot));
      assert.equal(seen, reference);
      const copy = new SlotTable(table);
      copy.set(123_456_789, 1);
      assert.is(table.get(123_456_789), reference.get(123_456_789) ?? -1, 'a copy is independent');
    }),
    { seed: 131, numRuns: 300 },
  );
});

test.run();
