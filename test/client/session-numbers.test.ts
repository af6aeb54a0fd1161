// How a shard's requestSeq sequence continues after batches leave without an ack.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { AppendBatch } from '../../src/client/append-batch.ts';
import { SessionNumbers } from '../../src/client/session-numbers.ts';

function numbered(numbers: SessionNumbers, count: number): AppendBatch[] {
  return Array.from({ length: count }, () => {
    const batch = new AppendBatch();
    numbers.assign(batch);
    return batch;
  });
}

test('session-numbers - a definitive hole is filled by the batches after it', () => {
  const numbers = new SessionNumbers(7);
  const [first, rejected, third, fourth] = numbered(numbers, 4);
  numbers.acked(first);
  numbers.left(rejected);
  assert.ok(numbers.needsRenumbering);
  const unsent = new AppendBatch();
  assert.equal(numbers.renumber([third, fourth, unsent], 0), []);
  for (const batch of [third, fourth, unsent]) numbers.assign(batch);
  assert.equal([third.requestSeq, fourth.requestSeq, unsent.requestSeq], [2, 3, 4]);
  assert.is(numbers.sessionEpoch, 7, 'same epoch');
  assert.not.ok(numbers.needsRenumbering);
});

test('session-numbers - numbers at or below an ack are never handed out again', () => {
  const numbers = new SessionNumbers(7);
  const [, rejected, timedOut, acked, fifth] = numbered(numbers, 5);
  numbers.left(rejected); // 2: a hole…
  numbers.acked(acked); // …that 4's ack says the node got past after all
  numbers.renumber([timedOut, fifth], 0);
  numbers.assign(timedOut);
  numbers.assign(fifth);
  assert.equal([timedOut.requestSeq, fifth.requestSeq], [3, 5]);
});

test('session-numbers - an ambiguous departure restarts the epoch and dooms the ambiguous', () => {
  const numbers = new SessionNumbers(7);
  const [lost, maybeApplied, refusedOnce] = numbered(numbers, 3);
  lost.isAmbiguous = true;
  maybeApplied.isAmbiguous = true;
  numbers.left(lost);
  const unsent = new AppendBatch();
  assert.equal(numbers.renumber([maybeApplied, refusedOnce, unsent], 5_000_500), [maybeApplied]);
  assert.is(numbers.sessionEpoch, 5000, 'seconds of the clock');
  numbers.assign(refusedOnce);
  numbers.assign(unsent);
  assert.equal([refusedOnce.requestSeq, unsent.requestSeq], [1, 2]);
  numbers.left(Object.assign(new AppendBatch(), { requestSeq: 3, isAmbiguous: true }));
  numbers.renumber([], 0);
  assert.is(numbers.sessionEpoch, 5001, 'always above the previous epoch');
});

test('session-numbers - a gap at the oldest batch is a lost session only without a hole below it', () => {
  const numbers = new SessionNumbers(7);
  const [, second, third] = numbered(numbers, 3);
  numbers.left(second);
  assert.not.ok(numbers.gapAtOldest(third), 'our own hole explains it');
  const fresh = new SessionNumbers(7);
  const [oldest] = numbered(fresh, 1);
  assert.ok(fresh.gapAtOldest(oldest));
  fresh.renumber([oldest], 0);
  assert.is(fresh.sessionEpoch, 8);
  assert.is(oldest.requestSeq, 0, 'moves to the new epoch');
});

test.run();
