// Injected I/O faults through the file-I/O layer (test/support/faulty-file-io.ts): a failed
// write or fsync is fail-stop, nothing failed is ever reported durable, short writes are
// looped over, and what fsync 'full' acknowledged survives a power loss.

import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { withTempDir } from '../support/wal-fixtures.ts';
import { deferred } from '../../src/deferred.ts';
import { TidelogError, type ErrorCode } from '../../src/errors.ts';
import { Wal, encodeEvents, type SignalEvent } from '../../src/wal/index.ts';
import type { WalRecovery } from '../../src/wal/wal.ts';
import { FaultyFileIo, type FaultRule } from '../support/faulty-file-io.ts';

const SEGMENT = /\.seg$/;
const SEGMENT_OR_TMP = /\.seg(\.tmp)?$/;

/** A distinct, exactly representable event per index (no two are duplicates). */
function eventAt(index: number): SignalEvent {
  return {
    entityId: 1_000_000n + BigInt(index),
    signalType: index % 11,
    weight: (index % 17) + 0.25,
    timestampNs: 1_700_000_000_000_000_000n + BigInt(index) * 1_000n,
  };
}

function eventsFrom(start: number, count: number): SignalEvent[] {
  return Array.from({ length: count }, (_, offset) => eventAt(start + offset));
}


/** The TidelogError a promise rejects with (fails the test if it resolves). */
async function rejection(promise: Promise<unknown>): Promise<TidelogError> {
  try {
    await promise;
  } catch (error) {
    assert.instance(error, TidelogError);
    return error as TidelogError;
  }
  assert.unreachable('expected a rejection');
  throw new Error('unreachable');
}

async function expectCode(promise: Promise<unknown>, code: ErrorCode): Promise<TidelogError> {
  const error = await rejection(promise);
  assert.is(error.code, code);
  return error;
}

/**
 * Reopens with the real file system, checks the log is exactly `expected`, then continues it
 * with `next` (by default one fresh event): seqs go on at lastSeq + 1 and events that failed
 * before are not swallowed as duplicates.
 */
async function expectLog(dir: string, expected: SignalEvent[], next: SignalEvent[] = [eventAt(9_999_999)]): Promise<WalRecovery> {
  const { wal, replayed, recovery } = await Wal.open({ dir });
  try {
    assert.is(replayed.length, expected.length, 'replayed event count');
    assert.equal(replayed, expected);
    assert.is(wal.lastSeq, expected.length);
    const seqs = await wal.appendMany(next);
    assert.equal(seqs, next.map((_, index) => expected.length + 1 + index), 'appending continues at lastSeq + 1');
    return recovery;
  } finally {
    await wal.close();
  }
}

function openSegmentPath(dir: string, wal: Wal): string {
  const segments = wal.stats().segments;
  return join(dir, segments[segments.length - 1].fileName);
}

/** Appends `calls` one after another (each one batch) and returns what was acknowledged. */
async function appendAcked(wal: Wal, calls: SignalEvent[][]): Promise<SignalEvent[]> {
  const acked: SignalEvent[] = [];
  for (const events of calls) {
    const seqs = await wal.appendMany(events);
    assert.equal(seqs, events.map((_, index) => wal.lastSeq - events.length + 1 + index));
    acked.push(...events);
  }
  return acked;
}

function chunks(start: number, sizes: number[]): SignalEvent[][] {
  const out: SignalEvent[][] = [];
  for (const size of sizes) {
    out.push(eventsFrom(start, size));
    start += size;
  }
  return out;
}

for (const torn of [false, true]) {
  test(`faults - EIO on write fails the lane with WRITE_FAILED${torn ? ' (torn write)' : ''}`, async () => {
    await withTempDir(async (dir) => {
      const io = new FaultyFileIo();
      const { wal } = await Wal.open({ dir, io, batchLingerMs: 0 });
      const acked = await appendAcked(wal, chunks(0, [1, 5, 40, 1, 7]));
      // Only the next segment write fails: a retry would succeed, so a retried batch would show.
      const rule: FaultRule = { op: 'write', path: SEGMENT, times: 1 };
      if (torn) rule.tornBytes = 100;
      io.inject(rule);
      const pending = [wal.append(eventAt(100)), wal.appendMany(eventsFrom(101, 3)), wal.appendMany(encodeEvents(eventsFrom(104, 2)))];
      for (const promise of pending) await expectCode(promise, 'WRITE_FAILED');
      assert.is((wal.failed as TidelogError | null)?.code, 'WRITE_FAILED');
      await expectCode(wal.append(eventAt(200)), 'WRITE_FAILED');
      await expectCode(wal.appendMany(eventsFrom(201, 4)), 'WRITE_FAILED');
      await wal.close();
      const recovery = await expectLog(dir, acked, eventsFrom(100, 6));
      if (torn) assert.ok(recovery.truncatedTail !== null, 'the torn batch was cut off');
    });
  });
}

test('faults - EIO on fdatasync fails the lane with FSYNC_FAILED and is never retried', async () => {
  await withTempDir(async (dir) => {
    const io = new FaultyFileIo();
    const { wal } = await Wal.open({ dir, io, batchLingerMs: 0 });
    const acked = await appendAcked(wal, chunks(0, [3, 1, 30]));
    let fired = 0;
    io.inject({ op: 'datasync', path: SEGMENT, times: 1, onFire: () => fired++ });
    const syncsBefore = io.count('datasync') + io.count('sync');
    const pending = [wal.appendMany(eventsFrom(100, 4)), wal.append(eventAt(104)), wal.append(eventAt(105))];
    for (const promise of pending) await expectCode(promise, 'FSYNC_FAILED');
    assert.is(fired, 1, 'the fault fired once');
    assert.is((wal.failed as TidelogError | null)?.code, 'FSYNC_FAILED');
    await expectCode(wal.append(eventAt(200)), 'FSYNC_FAILED');
    await wal.close();
    // The failed fdatasync was the last one: no retry, not even at close.
    assert.is(io.count('datasync') + io.count('sync'), syncsBefore + 1, 'fsync calls after the failure');
    await expectLog(dir, acked, eventsFrom(100, 6));
  });
});

test('faults - ENOSPC on write fails with WRITE_FAILED and errno ENOSPC in details', async () => {
  await withTempDir(async (dir) => {
    const io = new FaultyFileIo();
    const { wal } = await Wal.open({ dir, io, batchLingerMs: 0 });
    const acked = await appendAcked(wal, chunks(0, [2, 2]));
    io.inject({ op: 'write', path: SEGMENT, code: 'ENOSPC', tornBytes: 30 });
    const error = await expectCode(wal.appendMany(eventsFrom(10, 3)), 'WRITE_FAILED');
    assert.is(error.context.errno, 'ENOSPC');
    assert.is((error.cause as NodeJS.ErrnoException).code, 'ENOSPC');
    await expectCode(wal.append(eventAt(20)), 'WRITE_FAILED');
    await wal.close();
    await expectLog(dir, acked);
  });
});

test('faults - short writes (at most 7 bytes a call) still round-trip', async () => {
  await withTempDir(async (dir) => {
    const io = new FaultyFileIo();
    io.maxWriteBytes = 7;
    const { wal } = await Wal.open({ dir, io, segmentBytes: 2048, batchMaxEvents: 40, batchLingerMs: 1 });
    // Concurrent callers, so groups hold several calls; some calls exceed batchMaxEvents.
    const sizes = [1, 3, 17, 40, 55, 2, 1, 9, 23, 4, 81, 1, 6, 12, 30, 1];
    const calls = chunks(0, sizes);
    const results = await Promise.all(calls.map((events, index) => (index % 2 === 0 ? wal.appendMany(events) : wal.appendMany(encodeEvents(events)))));
    const bySeq: SignalEvent[] = [];
    results.forEach((seqs, call) => seqs.forEach((seq, index) => (bySeq[seq - 1] = calls[call][index])));
    const total = sizes.reduce((sum, size) => sum + size, 0);
    assert.is(bySeq.length, total);
    assert.ok(bySeq.every((event) => event !== undefined), 'seqs are gapless');
    await wal.checkpoint(10);
    assert.ok(wal.stats().flush.rotations >= 2, 'rotated segments under short writes');
    assert.ok(io.count('write', SEGMENT_OR_TMP) > (total * 21) / 7, 'writes were short');
    const read: SignalEvent[] = [];
    for await (const { seq, event } of wal.read({ fromSeq: 1 })) {
      assert.is(seq, read.length + 1);
      read.push(event);
    }
    assert.equal(read, bySeq);
    await wal.close();
    const { wal: reopened, replayed, recovery } = await Wal.open({ dir });
    assert.is(recovery.checkpointSeq, 10);
    assert.equal(replayed, bySeq.slice(10));
    await reopened.close();
  });
});

test("faults - fsync 'full': a power loss keeps every acknowledged event", async () => {
  await withTempDir(async (dir) => {
    const io = new FaultyFileIo();
    const { wal } = await Wal.open({ dir, io, segmentBytes: 4096, batchMaxEvents: 32, batchLingerMs: 1 });
    const acked = new Map<number, SignalEvent>();
    const crashAfterAcks = 400;
    let crashed: Promise<void> | null = null;
    const caller = async (id: number): Promise<void> => {
      for (let call = 0, next = id * 1_000_000; ; call++) {
        const events = eventsFrom(next, 1 + ((id * 7 + call * 5) % 23));
        next += events.length;
        let seqs: number[];
        try {
          seqs = await wal.appendMany(events);
        } catch (error) {
          assert.instance(error, TidelogError);
          return;
        }
        seqs.forEach((seq, index) => acked.set(seq, events[index]));
        if (acked.size >= crashAfterAcks) crashed ??= io.crash();
      }
    };
    await Promise.all(Array.from({ length: 6 }, (_, id) => caller(id)));
    await crashed;
    assert.ok(wal.failed !== null, 'the lane failed once the disk was gone');
    assert.ok(wal.stats().flush.rotations >= 2, 'segments rotated before the crash');
    await wal.close();
    const { wal: reopened, replayed } = await Wal.open({ dir });
    assert.is(reopened.lastSeq, replayed.length);
    for (const [seq, event] of acked) assert.equal(replayed[seq - 1], event, `acknowledged seq ${seq}`);
    await reopened.close();
  });
});

test("faults - fsync 'off': a power loss loses acknowledged but unsynced events", async () => {
  await withTempDir(async (dir) => {
    const durable = eventsFrom(0, 30);
    const first = await Wal.open({ dir });
    await first.wal.appendMany(durable);
    await first.wal.close();

    const io = new FaultyFileIo();
    const { wal } = await Wal.open({ dir, io, fsync: 'off', segmentBytes: 2048, batchLingerMs: 0 });
    const lost = await appendAcked(wal, chunks(100, [10, 50, 50, 50]));
    assert.is(wal.lastSeq, durable.length + lost.length, 'acknowledged');
    assert.ok(wal.stats().flush.rotations >= 1, 'rotated without syncing');
    await io.crash();
    await wal.close();
    // What was written but never synced is gone, segments created since included.
    await expectLog(dir, durable);
  });
});

test('faults - no-sync writes do not advance the synced offset', async () => {
  for (const fsync of ['off', 'normal'] as const) {
    await withTempDir(async (dir) => {
      const io = new FaultyFileIo();
      const { wal } = await Wal.open({ dir, io, fsync, syncIntervalMs: 3_600_000, batchLingerMs: 0 });
      const path = openSegmentPath(dir, wal);
      await appendAcked(wal, chunks(0, [1, 4, 9]));
      const flush = wal.stats().flush;
      assert.ok(flush.syncedOffset < flush.writtenOffset, `${fsync}: synced ${flush.syncedOffset} < written ${flush.writtenOffset}`);
      assert.ok(flush.syncedOffset <= (io.syncedBytes(path) ?? 0), `${fsync}: the engine claims no more than the disk holds`);
      await wal.close();
      const syncedAtClose = io.syncedBytes(path) ?? 0;
      if (fsync === 'normal') assert.is(syncedAtClose, flush.writtenOffset, "'normal' syncs at close");
      else assert.ok(syncedAtClose < flush.writtenOffset, "'off' does not sync at close");
    });
  }
  await withTempDir(async (dir) => {
    const io = new FaultyFileIo();
    const { wal } = await Wal.open({ dir, io, fsync: 'full', batchLingerMs: 0 });
    const path = openSegmentPath(dir, wal);
    for (const events of chunks(0, [1, 4, 9, 1])) {
      await wal.appendMany(events);
      const flush = wal.stats().flush;
      assert.is(flush.syncedOffset, flush.writtenOffset, "'full': synced == written after each ack");
      assert.is(io.syncedBytes(path), flush.writtenOffset, "'full': the disk holds what was acknowledged");
    }
    await wal.close();
  });
});

const rotationFaults: Array<{ name: string; rule: FaultRule; code: ErrorCode }> = [
  { name: 'rename', rule: { op: 'rename', path: SEGMENT }, code: 'IO_ERROR' },
  { name: 'create', rule: { op: 'open', path: /\.seg\.tmp$/, code: 'ENOSPC' }, code: 'IO_ERROR' },
  { name: 'sync of the new segment', rule: { op: 'sync', path: /\.seg\.tmp$/ }, code: 'FSYNC_FAILED' },
  { name: 'directory sync', rule: { op: 'syncDir' }, code: 'FSYNC_FAILED' },
];

for (const { name, rule, code } of rotationFaults) {
  test(`faults - a failed ${name} during segment rotation is fail-stop (${code})`, async () => {
    await withTempDir(async (dir) => {
      const io = new FaultyFileIo();
      // 4 batches of 8 events fit in 1024 bytes (64 + 4 × 232); the 5th rotates.
      const { wal } = await Wal.open({ dir, io, segmentBytes: 1024, batchMaxEvents: 8, batchLingerMs: 0 });
      const acked = await appendAcked(wal, chunks(0, [8, 8, 8, 8]));
      io.inject(rule);
      await expectCode(wal.appendMany(eventsFrom(100, 8)), code);
      assert.is((wal.failed as TidelogError | null)?.code, code);
      await expectCode(wal.append(eventAt(200)), code);
      await wal.close();
      await expectLog(dir, acked);
      assert.not.ok((await readdir(dir)).some((file) => file.endsWith('.tmp')), 'no half-made segment is left');
    });
  });
}

test('faults - close() after a failure resolves and releases the lock', async () => {
  await withTempDir(async (dir) => {
    const io = new FaultyFileIo();
    const { wal } = await Wal.open({ dir, io, batchLingerMs: 0 });
    const acked = await appendAcked(wal, chunks(0, [3]));
    io.inject({ op: 'write', path: SEGMENT });
    await expectCode(wal.append(eventAt(50)), 'WRITE_FAILED');
    await wal.close();
    await wal.close(); // idempotent
    await expectLog(dir, acked);
  });
});

test('faults - close() while a failing flush is pending rejects the append, and close() reports it too', async () => {
  await withTempDir(async (dir) => {
    const io = new FaultyFileIo();
    const { wal } = await Wal.open({ dir, io, batchLingerMs: 0 });
    const acked = await appendAcked(wal, chunks(0, [2]));
    io.inject({ op: 'write', path: SEGMENT });
    const pending = wal.appendMany(eventsFrom(10, 3));
    const closing = wal.close();
    await expectCode(pending, 'WRITE_FAILED');
    // close() was asked to flush what was queued and could not: it says so, and still releases.
    await expectCode(closing, 'WRITE_FAILED');
    await expectLog(dir, acked);
  });
});

test('faults - a failed open releases the lock', async () => {
  await withTempDir(async (dir) => {
    const io = new FaultyFileIo();
    io.inject({ op: 'open', path: /\.seg\.tmp$/ });
    await expectCode(Wal.open({ dir, io }), 'IO_ERROR');
    await expectLog(dir, []);
  });
});

test('faults - I/O errors while opening are TidelogErrors (IO_ERROR)', async () => {
  await withTempDir(async (dir) => {
    const rules: FaultRule[] = [
      { op: 'readdir', times: 1 },
      { op: 'open', path: /\.lock$/, code: 'EACCES', times: 1 },
    ];
    for (const rule of rules) {
      const io = new FaultyFileIo();
      io.inject(rule);
      await expectCode(Wal.open({ dir, io }), 'IO_ERROR');
    }
    await expectLog(dir, []);
  });
});

test('faults - an acknowledged checkpoint survives a power loss; a failed one keeps the previous', async () => {
  await withTempDir(async (dir) => {
    const io = new FaultyFileIo();
    const { wal } = await Wal.open({ dir, io, batchLingerMs: 0 });
    const acked = await appendAcked(wal, chunks(0, [4, 4, 4]));
    await wal.checkpoint(4);
    io.inject({ op: 'rename', path: /checkpoint/, times: 1 });
    const failed = await wal.checkpoint(8).then(
      () => null,
      (error: unknown) => error,
    );
    assert.ok(failed !== null, 'the checkpoint with a failed rename rejected');
    assert.is(wal.failed, null, 'a failed checkpoint does not stop the lane');
    const more = await appendAcked(wal, chunks(100, [2]));
    await io.crash();
    await wal.close();
    const { wal: reopened, recovery, replayed } = await Wal.open({ dir });
    assert.is(recovery.checkpointSeq, 4, 'the previous checkpoint stands');
    assert.equal(replayed, [...acked, ...more].slice(4));
    await reopened.close();
    assert.instance(failed, TidelogError, 'checkpoint() rejects with a TidelogError');
    assert.is((failed as TidelogError).code, 'IO_ERROR');
  });
});

test('faults - truncateBefore after a failed unlink can be retried', async () => {
  await withTempDir(async (dir) => {
    const io = new FaultyFileIo();
    // 3 batches of 4 events fit in 540 bytes (96 + 3 × 148): one segment per 12 events.
    const { wal } = await Wal.open({ dir, io, segmentBytes: 540, batchMaxEvents: 4, batchLingerMs: 0 });
    const acked = await appendAcked(wal, chunks(0, Array.from({ length: 15 }, () => 4)));
    assert.is(wal.stats().segments.length, 5);
    // Removing the first three segments: the second unlink fails.
    io.inject({ op: 'unlink', path: /\.seg\.deleting$/, skip: 1, times: 1 }); // deleted in steps: renamed aside, then unlinked
    await wal.checkpoint(36);
    await expectCode(wal.truncateBefore(37), 'IO_ERROR');
    assert.is(wal.failed, null, 'a failed removal does not stop the lane');
    const removed = await wal.truncateBefore(37);
    const onDisk = new Set(await readdir(dir));
    const listed = wal.stats().segments.map((segment) => segment.fileName);
    assert.ok(
      listed.every((name) => onDisk.has(name)),
      `stats() lists only segments that exist (listed ${listed.join(', ')}; removed ${removed.join(', ')})`,
    );
    assert.is(wal.stats().segments[0].firstSeq, 37);
    const read: SignalEvent[] = [];
    for await (const { event } of wal.read({ fromSeq: 37 })) read.push(event);
    assert.equal(read, acked.slice(36));
    await wal.close();
  });
});

test("faults - 'normal': a failed fdatasync at close leaves the lane failed", async () => {
  await withTempDir(async (dir) => {
    const io = new FaultyFileIo();
    const { wal } = await Wal.open({ dir, io, fsync: 'normal', syncIntervalMs: 3_600_000, batchLingerMs: 0 });
    await appendAcked(wal, chunks(0, [4, 4]));
    io.inject({ op: 'datasync', path: SEGMENT });
    await wal.close().catch(() => undefined);
    assert.is((wal.failed as TidelogError | null)?.code, 'FSYNC_FAILED');
    const reopened = await Wal.open({ dir });
    await reopened.wal.close();
  });
});

test('faults - events replayed on open survive a power loss right after it', async () => {
  await withTempDir(async (dir) => {
    const io = new FaultyFileIo();
    const first = await Wal.open({ dir, io, batchLingerMs: 0 });
    const acked = await appendAcked(first.wal, chunks(0, [5, 5]));
    // The next batch is written, then the process dies while its fdatasync is in flight.
    const stalled = deferred<void>();
    io.inject({ op: 'datasync', path: SEGMENT, stall: true, onFire: () => stalled.resolve() });
    const unacknowledged = first.wal.appendMany(eventsFrom(10, 5));
    await Promise.race([stalled.promise, unacknowledged.then(() => assert.unreachable('acknowledged without fdatasync'))]);
    await io.kill();
    io.clearFaults();

    // The next process finds the batch in the page cache and reports it as part of the log.
    const second = await Wal.open({ dir, io });
    assert.equal(second.replayed.slice(0, acked.length), acked);
    const exposed = second.replayed;
    assert.is(second.wal.lastSeq, exposed.length);
    // Power fails before it writes anything: what it replayed must still be the log.
    await io.crash();
    await second.wal.close();
    await expectLog(dir, exposed);
  });
});

test.run();
