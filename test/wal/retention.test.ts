// Retention deletes whole segments, oldest first, only behind the oldest snapshot kept (or,
// without a state machine, the checkpoint), by size and by age; a failing snapshot never
// fails the lane; reads enter a segment through its sparse index.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readdirSync } from 'node:fs';
import { ManualClock } from '../../src/clock.ts';
import { EVENT_BYTES } from '../../src/event.ts';
import { Wal, nodeFileIo, type FileIo, type StoredBatch, type WalStateMachine } from '../../src/wal/index.ts';
import { segmentsToRelease } from '../../src/wal/retention.ts';
import type { RetainedSegment } from '../../src/wal/wal-open.ts';
import { FaultyFileIo } from '../support/faulty-file-io.ts';
import { collect, makeEvent, rejection, withTempDir } from '../support/wal-fixtures.ts';

/** Counts events and sums ids; snapshot "lastSeq,count,sum". */
class CountMachine implements WalStateMachine {
  lastSeq = 0;
  count = 0;
  sum = 0n;
  restore(snapshot: Uint8Array, lastSeq: number): void {
    const text = new TextDecoder().decode(snapshot);
    const [seq, count, sum] = text === '' ? [String(lastSeq), '0', '0'] : text.split(',');
    this.lastSeq = Number(seq);
    this.count = Number(count);
    this.sum = BigInt(sum);
  }
  apply(batch: StoredBatch): void {
    const view = new DataView(batch.events.buffer, batch.events.byteOffset, batch.events.byteLength);
    for (let index = 0; index < batch.count; index++) this.sum += view.getBigUint64(index * EVENT_BYTES, true);
    this.count += batch.count;
    if (batch.count > 0) this.lastSeq = batch.firstSeq + batch.count - 1;
  }
  snapshot(): Uint8Array {
    return new TextEncoder().encode(`${this.lastSeq},${this.count},${this.sum}`);
  }
}

const segment = (firstSeq: number, lastSeq: number, bytes: number, newestBatchNs: bigint): RetainedSegment => ({
  fileName: `s${firstSeq}`,
  firstSeq,
  lastSeq,
  bytes,
  headBytes: 96,
  openedAtNs: 0n,
  headKind: 'marker',
  newestBatchNs,
  newestDedupNs: -1n,
  isNewestKnown: true,
  index: null,
});

test('retention - segmentsToRelease: oldest first, never past the floor, never the open segment', () => {
  const segments = [segment(1, 10, 100, 10n), segment(11, 20, 100, 20n), segment(21, 30, 100, 30n), segment(31, 35, 50, 40n)];
  assert.is(segmentsToRelease(segments, 30, { maxAgeMs: 0, maxBytes: 0 }, 100n), 0, 'no policy, nothing goes');
  assert.is(segmentsToRelease(segments, 30, { maxAgeMs: 0, maxBytes: 200 }, 100n), 2, 'down to ≤ 200 bytes: 350 → 150');
  assert.is(segmentsToRelease(segments, 15, { maxAgeMs: 0, maxBytes: 1 }, 100n), 1, 'the floor at 15 keeps 11..20');
  assert.is(segmentsToRelease(segments, 100, { maxAgeMs: 0, maxBytes: 1 }, 100n), 3, 'the open segment always stays');
  // Age: ns clock at 30 ms; maxAgeMs 10 → newest before 20 ms goes.
  const ms = 1_000_000n;
  const aged = [segment(1, 10, 100, 5n * ms), segment(11, 20, 100, 15n * ms), segment(21, 30, 100, 25n * ms), segment(31, 35, 50, 29n * ms)];
  assert.is(segmentsToRelease(aged, 100, { maxAgeMs: 10, maxBytes: 0 }, 30n * ms), 2);
});

test('retention - by size, behind the oldest snapshot kept: the state survives and reads refuse what went', async () => {
  await withTempDir(async (dir) => {
    const options = { dir, segmentBytes: 1024, batchMaxEvents: 4, batchLingerMs: 0, fsync: 'off' as const, retention: { maxBytes: 4096 } };
    const machine = new CountMachine();
    const { wal } = await Wal.open({ ...options, stateMachine: machine });
    for (let id = 1; id <= 200; id++) await wal.append(makeEvent(id));
    assert.ok(wal.stats().logBytes > 4096 * 3, 'no snapshot yet: retention cannot delete anything');
    assert.is(wal.firstSeq, 1);
    await wal.takeSnapshot();
    await wal.takeSnapshot(); // two kept: the floor is the older one, at seq 200 too
    // The next rotation applies retention.
    for (let id = 201; id <= 230; id++) await wal.append(makeEvent(id));
    const stats = wal.stats();
    assert.ok(stats.logBytes <= 4096 + 1024, `log bytes ${stats.logBytes}`);
    assert.ok(stats.retention.segmentsDeleted > 0);
    assert.ok(wal.firstSeq > 1 && wal.firstSeq <= 201, `first seq ${wal.firstSeq}`);
    assert.is((await rejection(() => collect(wal.read({ fromSeq: 1 })))).code, 'OUT_OF_RANGE');
    await wal.close();
    const rebuilt = new CountMachine();
    const reopened = await Wal.open({ ...options, stateMachine: rebuilt });
    assert.is(rebuilt.count, 230, 'the snapshot holds what retention deleted');
    assert.is(rebuilt.sum, 26565n);
    await reopened.wal.close();
  });
});

test('retention - by age, only behind a snapshot', async () => {
  await withTempDir(async (dir) => {
    const clock = new ManualClock();
    const options = { dir, clock, segmentBytes: 1024, batchMaxEvents: 4, batchLingerMs: 0, fsync: 'off' as const, retention: { maxAgeMs: 60_000 } };
    const { wal } = await Wal.open({ ...options, stateMachine: new CountMachine(), snapshotsKept: 1 });
    for (let id = 1; id <= 100; id++) await wal.append(makeEvent(id));
    clock.advanceMs(120_000);
    for (let id = 101; id <= 140; id++) await wal.append(makeEvent(id));
    const before = wal.stats().segments.length;
    assert.is(wal.stats().retention.segmentsDeleted, 0, 'old, but no snapshot covers them');
    await wal.takeSnapshot();
    const after = wal.stats();
    assert.ok(after.retention.segmentsDeleted > 0 && after.segments.length < before);
    // Every segment holding only events 1..100 (sealed 2 minutes ago) went; the rest stayed.
    assert.ok(after.segments[0].firstSeq <= 101 && after.segments[0].lastSeq > 100, `first kept ${after.segments[0].firstSeq}..${after.segments[0].lastSeq}`);
    assert.equal((await collect(wal.read({ fromSeq: 101 }))).length, 40);
    await wal.close();
  });
});

test('retention - without a state machine it stops at the checkpoint', async () => {
  await withTempDir(async (dir) => {
    const { wal } = await Wal.open({ dir, segmentBytes: 1024, batchMaxEvents: 4, batchLingerMs: 0, fsync: 'off', retention: { maxBytes: 1 } });
    for (let id = 1; id <= 100; id++) await wal.append(makeEvent(id));
    assert.is(wal.firstSeq, 1, 'no checkpoint: nothing goes');
    await wal.checkpoint(50);
    for (let id = 101; id <= 140; id++) await wal.append(makeEvent(id));
    assert.ok(wal.firstSeq > 1 && wal.firstSeq <= 51, `first seq ${wal.firstSeq}`);
    assert.equal(
      (await collect(wal.read({ fromSeq: 51 }))).map((entry) => entry.seq)[0],
      51,
      'everything after the checkpoint is still there',
    );
    await wal.close();
  });
});

test('retention - a snapshot that cannot be written never fails the lane; its half-written file goes; a later one succeeds', async () => {
  await withTempDir(async (dir) => {
    const io = new FaultyFileIo();
    const { wal } = await Wal.open({ dir, io, segmentBytes: 1024, batchMaxEvents: 4, batchLingerMs: 0, stateMachine: new CountMachine() });
    for (let id = 1; id <= 20; id++) await wal.append(makeEvent(id));
    const clear = io.inject({ op: 'write', code: 'ENOSPC', path: /\.snap\.tmp$/ });
    const error = await rejection(() => wal.takeSnapshot());
    assert.is(error.code, 'IO_ERROR');
    assert.match(error.message, /ENOSPC/);
    assert.is(wal.failed, null, 'the lane goes on');
    assert.is(await wal.append(makeEvent(21)), 21);
    assert.equal(readdirSync(dir).filter((name) => name.includes('.snap')), [], 'no half-written snapshot left');
    assert.is(wal.stats().snapshots.failed, 1);
    clear();
    assert.is((await wal.takeSnapshot())?.seq, 21);
    await wal.close();
  });
});

test('retention - a read from the middle of a large segment reads about a page, not the segment', async () => {
  await withTempDir(async (dir) => {
    let bytesRead = 0;
    const io: FileIo = {
      ...nodeFileIo,
      open: async (path, mode) => {
        const file = await nodeFileIo.open(path, mode);
        if (!path.endsWith('.seg')) return file;
        return {
          ...file,
          path: file.path,
          fd: file.fd,
          read: async (into, position) => {
            const read = await file.read(into, position);
            bytesRead += read;
            return read;
          },
          write: (bytes, position) => file.write(bytes, position),
          datasync: () => file.datasync(),
          sync: () => file.sync(),
          truncate: (length) => file.truncate(length),
          size: () => file.size(),
          close: () => file.close(),
        };
      },
    };
    const { wal } = await Wal.open({ dir, io, segmentBytes: 64 << 20, batchMaxEvents: 1000, fsync: 'off', dedupWindowMs: 0 });
    const batch = (start: number): ReturnType<typeof makeEvent>[] => Array.from({ length: 1000 }, (_, index) => makeEvent(start + index));
    for (let call = 0; call < 400; call++) await wal.appendMany(batch(call * 1000 + 1));
    assert.is(wal.stats().segments.length, 1, 'one 8 MiB segment');
    await wal.close();
    // Reopened without scanning everything? The last segment is always scanned; count reads after that.
    const reopened = await Wal.open({ dir, io, segmentBytes: 64 << 20, fsync: 'off', dedupWindowMs: 0 });
    bytesRead = 0;
    const page: number[] = [];
    for await (const entry of reopened.wal.read({ fromSeq: 200_001, toSeq: 201_000 })) page.push(entry.seq);
    assert.is(page.length, 1000);
    assert.is(page[0], 200_001);
    assert.ok(bytesRead < 256 << 10, `read ${bytesRead} bytes for a 21 KB page of an 8 MiB segment`);
    await reopened.wal.close();
  });
});

test.run();
