import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fc from 'fast-check';
import { DedupWindow, hashEvent } from '../../src/wal/dedup.ts';
import { EVENT_BYTES } from '../../src/event.ts';

function packedFrom(seeds: number[]): Uint8Array {
  const bytes = new Uint8Array(seeds.length * EVENT_BYTES);
  const view = new DataView(bytes.buffer);
  seeds.forEach((seed, index) => {
    view.setUint32(index * EVENT_BYTES, seed, true);
    view.setUint32(index * EVENT_BYTES + 13, seed ^ 0x5bd1e995, true);
  });
  return bytes;
}

test('dedup - zero false positives: distinct events are never reported as seen (property)', () => {
  fc.assert(
    fc.property(fc.uniqueArray(fc.integer({ min: 0, max: 2 ** 32 - 1 }), { minLength: 1, maxLength: 3000 }), (seeds) => {
      const window = new DedupWindow({ windowMs: 60_000, maxEventsPerGeneration: 1 << 20 }, 0);
      const packed = packedFrom(seeds);
      for (let index = 0; index < seeds.length; index++) {
        assert.not.ok(window.checkAndInsert(packed, index * EVENT_BYTES, 0), `event ${index} misreported`);
      }
      for (let index = 0; index < seeds.length; index++) {
        assert.ok(window.checkAndInsert(packed, index * EVENT_BYTES, 0), `event ${index} forgotten`);
      }
    }),
    { seed: 7, numRuns: 60 },
  );
});

test('dedup - events whose hashes collide are still told apart by their bytes', () => {
  // Find real 32-bit hash collisions among the low bits used to pick a slot: same slot, distinct bytes.
  const window = new DedupWindow({ windowMs: 60_000, maxEventsPerGeneration: 1 << 20 }, 0);
  const seeds = Array.from({ length: 20_000 }, (_, index) => index);
  const packed = packedFrom(seeds);
  const bySlot = new Map<number, number[]>();
  for (let index = 0; index < seeds.length; index++) {
    const slot = hashEvent(new DataView(packed.buffer), index * EVENT_BYTES) & 0xff;
    bySlot.set(slot, [...(bySlot.get(slot) ?? []), index]);
  }
  const crowded = [...bySlot.values()].sort((a, b) => b.length - a.length)[0];
  assert.ok(crowded.length > 50, 'the test needs many events sharing low hash bits');
  for (const index of crowded) assert.not.ok(window.checkAndInsert(packed, index * EVENT_BYTES, 0));
  for (const index of crowded) assert.ok(window.checkAndInsert(packed, index * EVENT_BYTES, 0));
});

test('dedup - remembered for one to two windows, then forgotten', () => {
  const window = new DedupWindow({ windowMs: 1000, maxEventsPerGeneration: 1 << 20 }, 0);
  const packed = packedFrom([1]);
  assert.not.ok(window.checkAndInsert(packed, 0, 0));
  window.tick(999);
  assert.ok(window.checkAndInsert(packed, 0, 999), 'inside the first window');
  window.tick(1000);
  assert.ok(window.checkAndInsert(packed, 0, 1500), 'previous generation is still checked');
  window.tick(2000);
  assert.not.ok(window.checkAndInsert(packed, 0, 2000), 'dropped after two windows');
});

test('dedup - a generation is capped: memory stays bounded under load', () => {
  const window = new DedupWindow({ windowMs: 60_000, maxEventsPerGeneration: 100 }, 0);
  const packed = packedFrom(Array.from({ length: 1000 }, (_, index) => index));
  for (let index = 0; index < 1000; index++) window.checkAndInsert(packed, index * EVENT_BYTES, 0);
  assert.ok(window.size <= 200, `size ${window.size}`);
  assert.ok(window.swaps >= 9);
  assert.ok(window.checkAndInsert(packed, 999 * EVENT_BYTES, 0), 'the newest events are still remembered');
});

test('dedup - a zero window disables dedup', () => {
  const window = new DedupWindow({ windowMs: 0, maxEventsPerGeneration: 100 }, 0);
  const packed = packedFrom([1]);
  assert.not.ok(window.checkAndInsert(packed, 0, 0));
  assert.not.ok(window.checkAndInsert(packed, 0, 0));
});

test.run();
