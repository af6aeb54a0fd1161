import fc from 'fast-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { encodeEvents, parseSignalSchema, type ScoreSignal } from '../../src/crdt/index.ts';
import { cellEquals, joinValues } from '../../src/crdt/column-join.ts';
import type { ScoreColumn } from '../../src/crdt/score-column.ts';
import { StateArrays } from '../../src/crdt/state-arrays.ts';

const BUCKETS = 6;
const schema = parseSignalSchema({
  version: 1,
  bucketsPerWindow: BUCKETS,
  signals: [{ id: 1, name: 'view', kind: 'score', halfLifeSeconds: 60, windows: ['1m', '1h'] }],
});
const signal = schema.byId[1] as ScoreSignal;
const START_SECONDS = 1_700_000_000;

/** A fresh state's column for the signal, and entity numbers for small ids. */
function freshColumn(): { column: ScoreColumn; entity: (id: number) => number } {
  const arrays = new StateArrays(schema);
  return { column: arrays.columns[1] as ScoreColumn, entity: (id) => arrays.index.findOrAdd(0, id) };
}

function foldSeconds(column: ScoreColumn, slot: number, seq: number, seconds: number): void {
  const bytes = encodeEvents([{ entityId: 1n, signalType: 1, weight: 1, timestampNs: BigInt(seconds) * 1_000_000_000n }]);
  column.fold(slot, seq, new DataView(bytes.buffer), 0, seq, { wallHi: 0, wallLo: 0, nodeId: 1 });
}

/**
 * The documented window semantics, computed directly: bucket(t) = ⌊t / g⌋; the ring keeps the
 * buckets (newest − B, newest] of the newest bucket seen; a query at T counts the kept events
 * whose bucket lies in (bucket(T) − B, bucket(T)].
 */
function referenceCount(eventSeconds: number[], bucketSeconds: number, querySeconds: number): number {
  const buckets = eventSeconds.map((seconds) => Math.floor(seconds / bucketSeconds));
  const newest = Math.max(...buckets);
  const queryBucket = Math.floor(querySeconds / bucketSeconds);
  return buckets.filter((bucket) => bucket > newest - BUCKETS && bucket > queryBucket - BUCKETS && bucket <= queryBucket).length;
}

test('score-column - a window counts the buckets (T − window, T] at bucket granularity', () => {
  const { column, entity } = freshColumn();
  const slot = column.slotFor(entity(1), 1);
  // 1m window, 10 s buckets.
  [0, 5, 10, 30, 55, 59].forEach((offset, index) => foldSeconds(column, slot, index + 1, START_SECONDS + offset));
  assert.is(column.countAt(slot, 0, START_SECONDS + 59), 6);
  assert.is(column.countAt(slot, 0, START_SECONDS + 60), 4, 'the bucket [0, 10) left the window');
  assert.is(column.countAt(slot, 0, START_SECONDS + 69), 4, 'bucket granularity: still 4 at +69 s');
  assert.is(column.countAt(slot, 0, START_SECONDS + 109), 2, 'bucket [50, 60) is the oldest in the window');
  assert.is(column.countAt(slot, 0, START_SECONDS + 110), 0, 'at +110 s it left, though its event at +59 s is only 51 s old');
  assert.is(column.countAt(slot, 1, START_SECONDS + 120), 6);
});

// Window counts against the reference for in-order and late events: 500 runs × up to 80
// events × 2 windows.
test('score-column - window counts match the documented bucket semantics (property)', () => {
  fc.assert(
    fc.property(
      fc.array(fc.integer({ min: 0, max: 4 * 3600 }), { minLength: 1, maxLength: 80 }),
      fc.integer({ min: 0, max: 5 * 3600 }),
      (offsets, queryOffset) => {
        const { column, entity } = freshColumn();
        const slot = column.slotFor(entity(1), 1);
        offsets.forEach((offset, index) => foldSeconds(column, slot, index + 1, START_SECONDS + offset));
        const seconds = offsets.map((offset) => START_SECONDS + offset);
        signal.windows.forEach((window, index) => {
          assert.is(column.countAt(slot, index, START_SECONDS + queryOffset), referenceCount(seconds, window.bucketSeconds, START_SECONDS + queryOffset));
        });
      },
    ),
    { seed: 81, numRuns: 500 },
  );
});

test('score-column - origins chain in ascending order whatever order they arrive in', () => {
  const { column, entity } = freshColumn();
  for (const origin of [5, 2, 9, 1, 7]) column.slotFor(entity(42), origin);
  assert.equal(column.chain(entity(42)).map((slot) => column.values(slot).origin), [1, 2, 5, 7, 9]);
  assert.is(column.slotFor(entity(42), 7), column.chain(entity(42))[3]);
});

test('score-column - values round-trip through joinValues into another column', () => {
  const { column, entity } = freshColumn();
  const slot = column.slotFor(entity(3), 1);
  [0, 20, 700, 3000].forEach((offset, index) => foldSeconds(column, slot, index + 1, START_SECONDS + offset));
  const { column: copy, entity: copyEntity } = freshColumn();
  assert.ok(joinValues(copy, copyEntity(3), column.values(slot)));
  assert.not.ok(joinValues(copy, copyEntity(3), column.values(slot)), 'joining the same contribution again changes nothing');
  assert.ok(cellEquals(copy, copyEntity(3), column, entity(3)));
  assert.equal(copy.values(copy.chain(copyEntity(3))[0]), column.values(slot));
});

test.run();
