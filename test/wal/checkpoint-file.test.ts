// Checkpoints: atomic, synced after the log, never backwards, guarding what truncation may drop;
// and what salvage does with a checkpoint that is damaged or beyond the log.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Wal } from '../../src/wal/index.ts';
import { checkpointFileName } from '../../src/wal/segment-name.ts';
import { readCheckpointFile } from '../../src/wal/checkpoint-file.ts';
import { nodeFileIo } from '../../src/wal/file-io.ts';
import { FaultyFileIo } from '../support/faulty-file-io.ts';
import { makeEvent, rejection, withTempDir } from '../support/wal-fixtures.ts';

test('checkpoint - in fsync normal, a checkpoint syncs the log first: a power loss cannot leave it beyond the log', async () => {
  await withTempDir(async (dir) => {
    const io = new FaultyFileIo();
    const { wal } = await Wal.open({ dir, io, fsync: 'normal', syncIntervalMs: 3_600_000, batchLingerMs: 0 });
    for (let id = 1; id <= 3; id++) await wal.append(makeEvent(id));
    await wal.checkpoint(3);
    await io.crash();
    await wal.close().catch(() => undefined); // after the power loss every call fails; this only releases the lock
    const reopened = await Wal.open({ dir });
    assert.is(reopened.recovery.lastSeq, 3);
    assert.is(reopened.recovery.checkpointSeq, 3);
    await reopened.wal.close();
  });
});

test('checkpoint - concurrent checkpoints leave the newest on disk', async () => {
  await withTempDir(async (dir) => {
    const { wal } = await Wal.open({ dir, batchLingerMs: 0 });
    for (let id = 1; id <= 10; id++) await wal.append(makeEvent(id));
    await Promise.all([wal.checkpoint(10), wal.checkpoint(5), wal.checkpoint(7)]);
    await wal.close();
    assert.is((await readCheckpointFile(nodeFileIo, dir, 0))?.seq, 10);
  });
});

test('checkpoint - truncateBefore past the checkpoint is refused, and a log starting after it does not open', async () => {
  await withTempDir(async (dir) => {
    const options = { dir, segmentBytes: 300, batchLingerMs: 0 };
    const { wal } = await Wal.open(options);
    for (let id = 1; id <= 20; id++) await wal.append(makeEvent(id));
    await wal.checkpoint(4);
    assert.is((await rejection(() => wal.truncateBefore(15))).code, 'OUT_OF_RANGE');
    const removed = await wal.drainClosedSegmentsWhile((segment) => segment.lastSeq < 15); // the low-level door stays open
    assert.ok(removed.length > 0);
    await wal.close();
    assert.is((await rejection(() => Wal.open(options))).code, 'SEGMENT_GAP');
  });
});

test('checkpoint - salvage moves a damaged checkpoint aside and never overwrites earlier evidence', async () => {
  await withTempDir(async (dir) => {
    const { wal } = await Wal.open({ dir, batchLingerMs: 0 });
    for (let id = 1; id <= 3; id++) await wal.append(makeEvent(id));
    await wal.checkpoint(2);
    await wal.close();
    const path = join(dir, checkpointFileName(0));
    const bytes = readFileSync(path);
    bytes[10] ^= 1;
    writeFileSync(path, bytes);
    writeFileSync(`${path}.damaged`, 'earlier evidence');
    const salvaged = await Wal.open({ dir, salvage: true });
    await salvaged.wal.close();
    assert.is(readFileSync(`${path}.damaged`, 'utf8'), 'earlier evidence');
    assert.ok(existsSync(`${path}.damaged.1`));
    const clean = await Wal.open({ dir });
    assert.is(clean.replayed.length, 3, 'the next ordinary open is clean');
    await clean.wal.close();
  });
});

test('checkpoint - salvage with a checkpoint beyond the log continues after the checkpoint', async () => {
  await withTempDir(async (dir) => {
    const other = join(dir, 'other');
    const longer = await Wal.open({ dir: other, batchLingerMs: 0 });
    for (let id = 1; id <= 8; id++) await longer.wal.append(makeEvent(id));
    await longer.wal.checkpoint(8);
    await longer.wal.close();
    const short = await Wal.open({ dir, batchLingerMs: 0 });
    for (let id = 1; id <= 3; id++) await short.wal.append(makeEvent(100 + id));
    await short.wal.close();
    writeFileSync(join(dir, checkpointFileName(0)), readFileSync(join(other, checkpointFileName(0))));
    const salvaged = await Wal.open({ dir, salvage: true });
    assert.is(await salvaged.wal.append(makeEvent(200)), 9, 'no seq at or below the checkpoint is handed out again');
    await salvaged.wal.close();
    assert.ok(readdirSync(dir).some((name) => name.endsWith('.seg.damaged')));
  });
});

test.run();
