import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Wal, recoverShard, nodeFileIo } from '../../src/wal/index.ts';
import { checkpointFileName, segmentFileName } from '../../src/wal/segment-name.ts';
import { makeEvent, rejection, removeDir, tempDir } from '../support/wal-fixtures.ts';

const options = { segmentBytes: 400, batchMaxEvents: 4, batchLingerMs: 0 };

async function writeLog(dir: string, events: number): Promise<string[]> {
  const { wal } = await Wal.open({ dir, ...options });
  for (let id = 1; id <= events; id++) await wal.append(makeEvent(id));
  const names = wal.segments().map((segment) => segment.fileName);
  await wal.close();
  return names;
}

test('recovery - a missing segment in the middle is SEGMENT_GAP naming the file', async () => {
  const dir = tempDir();
  try {
    const names = await writeLog(dir, 40);
    assert.ok(names.length >= 3);
    renameSync(join(dir, names[1]), join(dir, `${names[1]}.moved`));
    const error = await rejection(() => Wal.open({ dir, ...options }));
    assert.is(error.code, 'SEGMENT_GAP');
    assert.ok(String((error as Error & { context?: { file?: string } }).context?.file).endsWith(names[2]));
  } finally {
    removeDir(dir);
  }
});

test('recovery - damage before the tail fails the open and changes nothing on disk', async () => {
  const dir = tempDir();
  try {
    const names = await writeLog(dir, 40);
    const victim = join(dir, names[0]);
    const original = readFileSync(victim);
    const damaged = Buffer.from(original);
    damaged[damaged.length - 30] ^= 0x10; // inside the last batch of a segment that is not the last
    writeFileSync(victim, damaged);
    const error = await rejection(() => Wal.open({ dir, ...options }));
    assert.is(error.code, 'CHECKSUM_MISMATCH');
    assert.ok(error.message.includes(names[0]), 'the error names the file');
    assert.equal(readFileSync(victim), damaged, 'a failed open does not modify the segment');
    assert.is(readdirSync(dir).filter((name) => name.endsWith('.seg')).length, names.length);
  } finally {
    removeDir(dir);
  }
});

test('recovery - salvage keeps the durable prefix, sets damaged bytes aside, and the log continues', async () => {
  const dir = tempDir();
  try {
    const names = await writeLog(dir, 40);
    const victim = join(dir, names[1]);
    const bytes = readFileSync(victim);
    bytes[bytes.length - 30] ^= 0x10;
    writeFileSync(victim, bytes);
    const { wal, replayed, recovery } = await Wal.open({ dir, ...options, salvage: true });
    assert.is(recovery.damage?.code, 'CHECKSUM_MISMATCH');
    const lastGood = replayed.length;
    assert.ok(lastGood > 0 && lastGood < 40);
    assert.equal(
      replayed.map((event) => event.entityId),
      Array.from({ length: lastGood }, (_, index) => BigInt(index + 1)),
      'an exact prefix',
    );
    assert.ok(existsSync(`${victim}.damaged`), 'the original bytes are kept for forensics');
    for (const later of names.slice(2)) assert.ok(existsSync(join(dir, `${later}.damaged`)));
    assert.is(await wal.append(makeEvent(1000)), lastGood + 1, 'the log continues after the prefix');
    await wal.close();
    const reopened = await Wal.open({ dir, ...options });
    assert.is(reopened.replayed.length, lastGood + 1, 'after salvage the log is clean again');
    await reopened.wal.close();
  } finally {
    removeDir(dir);
  }
});

test('recovery - read-only recovery (repair: false) reports a torn tail without cutting it', async () => {
  const dir = tempDir();
  try {
    const names = await writeLog(dir, 10);
    const last = join(dir, names[names.length - 1]);
    writeFileSync(last, Buffer.concat([readFileSync(last), Buffer.alloc(100)]));
    const size = statSync(last).size;
    const { report } = await recoverShard({ io: nodeFileIo, dir, shard: 0, salvage: false, repair: false });
    assert.is(report.truncatedTail?.bytesRemoved, 100);
    assert.is(report.lastSeq, 10);
    assert.is(statSync(last).size, size);
    const { wal, recovery } = await Wal.open({ dir, ...options });
    assert.is(recovery.truncatedTail?.bytesRemoved, 100);
    assert.is(statSync(last).size, size - 100, 'a writing open cuts the tail');
    await wal.close();
  } finally {
    removeDir(dir);
  }
});

test('recovery - a damaged checkpoint file is CHECKPOINT_DAMAGED; salvage ignores it', async () => {
  const dir = tempDir();
  try {
    const { wal } = await Wal.open({ dir, ...options });
    for (let id = 1; id <= 8; id++) await wal.append(makeEvent(id));
    await wal.checkpoint(5);
    await wal.close();
    const path = join(dir, checkpointFileName(0));
    const bytes = readFileSync(path);
    bytes[20] ^= 1;
    writeFileSync(path, bytes);
    assert.is((await rejection(() => Wal.open({ dir, ...options }))).code, 'CHECKPOINT_DAMAGED');
    const salvaged = await Wal.open({ dir, ...options, salvage: true });
    assert.is(salvaged.replayed.length, 8, 'without a usable checkpoint everything replays');
    await salvaged.wal.close();
  } finally {
    removeDir(dir);
  }
});

test('recovery - a checkpoint beyond the end of the log is refused', async () => {
  const dir = tempDir();
  const other = tempDir();
  try {
    const { wal } = await Wal.open({ dir: other, ...options });
    for (let id = 1; id <= 8; id++) await wal.append(makeEvent(id));
    await wal.checkpoint(8);
    await wal.close();
    await writeLog(dir, 3);
    writeFileSync(join(dir, checkpointFileName(0)), readFileSync(join(other, checkpointFileName(0))));
    assert.is((await rejection(() => Wal.open({ dir, ...options }))).code, 'CHECKPOINT_DAMAGED');
  } finally {
    removeDir(dir);
    removeDir(other);
  }
});

test('recovery - half-made .tmp files from a crash mid-rotation are removed on open', async () => {
  const dir = tempDir();
  try {
    await writeLog(dir, 5);
    const leftover = join(dir, `${segmentFileName(0, 6)}.tmp`);
    writeFileSync(leftover, Buffer.alloc(10));
    const { wal, replayed } = await Wal.open({ dir, ...options });
    assert.is(replayed.length, 5);
    assert.not.ok(existsSync(leftover));
    await wal.close();
  } finally {
    removeDir(dir);
  }
});

test.run();
