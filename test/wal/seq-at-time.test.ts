// wal.seqAtTime(t): the first seq of the first retained batch holding events whose seal time
// is ≥ t, in log order; the next seq when there is none. Time comes from a ManualClock, so
// every batch's timestampNs is known exactly.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ManualClock } from '../../src/clock.ts';
import { Wal, nodeFileIo, type FileIo } from '../../src/wal/index.ts';
import { makeEvent, rejection, removeDir, tempDir } from '../support/wal-fixtures.ts';

// 96 (head) + 3 × 106 (2-event batches) = 414 ≤ 420: three batches a segment.
// Content dedup on (the WAL API's default is off): a duplicate makes a notes-only batch.
const options = { batchMaxEvents: 4, batchLingerMs: 0, fsync: 'off', segmentBytes: 420, dedupWindowMs: 60_000 } as const;

/** Ten 2-event batches sealed one second apart; returns their timestamps (batch i holds seqs 2i+1, 2i+2). */
async function writeTenBatches(wal: Wal, clock: ManualClock): Promise<bigint[]> {
  const stamps: bigint[] = [];
  for (let batch = 0; batch < 10; batch++) {
    stamps.push(clock.nowNs());
    await wal.appendMany([makeEvent(2 * batch + 1), makeEvent(2 * batch + 2)]);
    clock.advanceMs(1000);
  }
  return stamps;
}

/** A FileIo that remembers which files were opened for reading. */
function countingIo(): { io: FileIo; reads: string[] } {
  const reads: string[] = [];
  const io: FileIo = {
    ...nodeFileIo,
    open: (path, mode) => {
      if (mode === 'read') reads.push(path.split('/').pop() ?? path);
      return nodeFileIo.open(path, mode);
    },
  };
  return { io, reads };
}

test('seq-at-time - before all, at, between and after the batches, before and after reopen', async () => {
  const dir = tempDir();
  try {
    const clock = new ManualClock();
    const { wal } = await Wal.open({ dir, ...options, clock });
    const stamps = await writeTenBatches(wal, clock);
    assert.ok(wal.segments().length >= 4, 'the batches span several segments');
    const cases: Array<[bigint, number]> = [
      [0n, 1],
      [stamps[0] - 1n, 1],
      [stamps[0], 1],
      [stamps[0] + 1n, 3],
      [stamps[4] + 999_999_999n, 11],
      [stamps[5], 11],
      [stamps[9], 19],
      [stamps[9] + 1n, 21],
      [(1n << 64n) - 1n, 21],
    ];
    const answers = async (target: Wal): Promise<number[]> => Promise.all(cases.map(([at]) => target.seqAtTime(at)));
    assert.equal(await answers(wal), cases.map(([, seq]) => seq));
    await wal.close();
    const reopened = await Wal.open({ dir, ...options, clock });
    assert.equal(await answers(reopened.wal), cases.map(([, seq]) => seq), 'the same after recovery');
    await reopened.wal.close();
  } finally {
    removeDir(dir);
  }
});

test('seq-at-time - a notes-only batch is not an answer: only batches holding events are', async () => {
  const dir = tempDir();
  try {
    const clock = new ManualClock();
    const { wal } = await Wal.open({ dir, ...options, clock });
    await wal.appendMany([makeEvent(1), makeEvent(2)]);
    clock.advanceMs(1000);
    const noteAt = clock.nowNs();
    assert.equal(await wal.appendMany([makeEvent(1)], { note: () => Uint8Array.of(1) }), [0]);
    assert.is(await wal.seqAtTime(noteAt), 3, 'nothing holding events is that new: the next seq');
    clock.advanceMs(1000);
    await wal.appendMany([makeEvent(3)]);
    assert.is(await wal.seqAtTime(noteAt), 3);
    await wal.close();
  } finally {
    removeDir(dir);
  }
});

test('seq-at-time - clocks that step back: the first batch in log order that is new enough', async () => {
  const dir = tempDir();
  try {
    const clock = new ManualClock();
    const { wal } = await Wal.open({ dir, ...options, clock });
    const stamps = await writeTenBatches(wal, clock);
    clock.advanceMs(-20_000); // older than every batch so far
    const steppedBack = clock.nowNs();
    assert.equal(await wal.appendMany([makeEvent(21)]), [21]);
    assert.ok(steppedBack < stamps[0]);
    assert.is(await wal.seqAtTime(steppedBack), 1);
    assert.is(await wal.seqAtTime(stamps[9] + 1n), 22, 'the stepped-back batch is older than that');
    assert.is(await wal.seqAtTime(stamps[9]), 19);
    await wal.close();
  } finally {
    removeDir(dir);
  }
});

test('seq-at-time - after truncateBefore the answer is never below the first retained seq', async () => {
  const dir = tempDir();
  try {
    const clock = new ManualClock();
    const { wal } = await Wal.open({ dir, ...options, clock });
    const stamps = await writeTenBatches(wal, clock);
    await wal.checkpoint(12);
    const removed = await wal.truncateBefore(13);
    assert.is(removed.length, 2, 'segments 1..6 and 7..12');
    const firstSeq = wal.firstSeq;
    assert.is(firstSeq, 13);
    assert.is(await wal.seqAtTime(0n), firstSeq);
    assert.is(await wal.seqAtTime(stamps[0]), firstSeq);
    assert.is(await wal.seqAtTime(stamps[8]), 17);
    assert.is(await wal.seqAtTime(stamps[9] + 1n), 21);
    await wal.close();
  } finally {
    removeDir(dir);
  }
});

test('seq-at-time - reads no segment whose newest batch is older than the time asked', async () => {
  const dir = tempDir();
  try {
    const clock = new ManualClock();
    const { io, reads } = countingIo();
    const { wal } = await Wal.open({ dir, ...options, clock, io });
    const stamps = await writeTenBatches(wal, clock);
    const segments = wal.segments();
    reads.length = 0;
    assert.is(await wal.seqAtTime(stamps[9]), 19);
    assert.equal(reads, [segments[segments.length - 1].fileName]);
    reads.length = 0;
    assert.is(await wal.seqAtTime(stamps[9] + 1n), 21);
    assert.equal(reads, []);
    await wal.close();
  } finally {
    removeDir(dir);
  }
});

test('seq-at-time - a time that is not a u64 bigint is BAD_REQUEST', async () => {
  const dir = tempDir();
  try {
    const { wal } = await Wal.open({ dir, ...options });
    for (const bad of [-1n, 1n << 64n, 5 as unknown as bigint]) {
      assert.is((await rejection(() => wal.seqAtTime(bad))).code, 'BAD_REQUEST');
    }
    assert.is(await wal.seqAtTime(0n), 1, 'an empty log: the next seq');
    await wal.close();
  } finally {
    removeDir(dir);
  }
});

test.run();
