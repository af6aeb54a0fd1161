import { readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Wal } from '../../src/wal/index.ts';
import type { ShardVerification } from '../../src/cli/verify.ts';
import { batchPositions, makeTempDir, runCli, writeWal } from './harness.ts';

interface VerifyJson {
  dir: string;
  status: string;
  isIntact: boolean;
  shards: ShardVerification[];
}

function verifyJson(args: readonly string[]): { status: number | null; report: VerifyJson; stderr: string } {
  const result = runCli(['wal', 'verify', ...args, '--json']);
  return { status: result.status, report: JSON.parse(result.stdout) as VerifyJson, stderr: result.stderr };
}

test('verify - exits 0 and reports counts and the checkpoint on a clean WAL', async () => {
  const { dir, remove } = makeTempDir('verify');
  try {
    await writeWal(dir, { calls: 40, perCall: 10, segmentBytes: 4096, checkpointSeq: 150 });
    const { status, report } = verifyJson([dir]);
    assert.is(status, 0);
    assert.is(report.status, 'intact');
    const [shard] = report.shards;
    assert.is(shard.shard, 0);
    assert.ok(shard.segments > 1, `several segments, got ${shard.segments}`);
    assert.is(shard.batches, 40);
    assert.is(shard.events, 400);
    assert.is(shard.firstSeq, 1);
    assert.is(shard.lastSeq, 400);
    assert.is(shard.checkpointSeq, 150);
    assert.is(shard.tornTail, null);
    assert.is(shard.damage, null);

    const text = runCli(['wal', 'verify', dir]);
    assert.is(text.status, 0);
    assert.match(text.stdout, /shard 0: intact/);
    assert.match(text.stdout, /seqs\s+1 … 400/);
  } finally {
    remove();
  }
});

test('verify - exits 0 with a torn-tail warning and leaves the file as it was', async () => {
  const { dir, remove } = makeTempDir('verify');
  try {
    await writeWal(dir, { calls: 30, perCall: 10, segmentBytes: 4096 });
    const last = (await batchPositions(dir)).at(-1)!;
    const path = join(dir, last.fileName);
    const cutSize = statSync(path).size - 5;
    truncateSync(path, cutSize);

    const { status, report } = verifyJson([dir]);
    assert.is(status, 0);
    assert.is(report.status, 'torn-tail');
    const [shard] = report.shards;
    assert.equal(shard.tornTail && { file: shard.tornTail.file, offset: shard.tornTail.offset, bytes: shard.tornTail.bytes }, {
      file: path,
      offset: last.offset,
      bytes: cutSize - last.offset,
    });
    assert.is(shard.lastSeq, last.firstSeq - 1);
    assert.is(statSync(path).size, cutSize, 'verify never repairs');

    const text = runCli(['wal', 'verify', dir]);
    assert.is(text.status, 0);
    assert.match(text.stdout, /WARNING torn tail/);
  } finally {
    remove();
  }
});

test('verify - exits 1 and names file and offset on a bit flip', async () => {
  const { dir, remove } = makeTempDir('verify');
  try {
    await writeWal(dir, { calls: 40, perCall: 10, segmentBytes: 4096 });
    const positions = await batchPositions(dir);
    const victim = positions[Math.floor(positions.length / 2)];
    const path = join(dir, victim.fileName);
    const bytes = readFileSync(path);
    bytes[victim.offset + 64 + 100] ^= 0x10; // inside the payload
    writeFileSync(path, bytes);

    const { status, report } = verifyJson([dir]);
    assert.is(status, 1);
    assert.is(report.status, 'damaged');
    const damage = report.shards[0].damage;
    assert.ok(damage !== null);
    assert.is(damage.code, 'CHECKSUM_MISMATCH');
    assert.is(damage.file, path);
    assert.is(damage.offset, victim.offset);
    assert.is(report.shards[0].lastSeq, victim.firstSeq - 1, 'the intact prefix ends before the damage');

    const text = runCli(['wal', 'verify', dir]);
    assert.is(text.status, 1);
    assert.ok(text.stdout.includes(`${path} at offset ${victim.offset}`), text.stdout);
  } finally {
    remove();
  }
});

test('verify - checks every shard found, and --shard picks one', async () => {
  const { dir, remove } = makeTempDir('verify');
  try {
    await writeWal(dir, { shard: 0, calls: 5, perCall: 10 });
    await writeWal(dir, { shard: 3, calls: 5, perCall: 10 });
    const victim = (await batchPositions(dir, 3))[1]; // intact batches follow it: damage, not a tail
    const path = join(dir, victim.fileName);
    const bytes = readFileSync(path);
    bytes[victim.offset + 70] ^= 1;
    writeFileSync(path, bytes);

    const all = verifyJson([dir]);
    assert.is(all.status, 1);
    assert.equal(all.report.shards.map((shard) => [shard.shard, shard.status]), [[0, 'intact'], [3, 'damaged']]);
    const one = verifyJson([dir, '--shard', '0']);
    assert.is(one.status, 0);
    assert.equal(one.report.shards.map((shard) => shard.shard), [0]);
  } finally {
    remove();
  }
});

test('verify - works while a Wal holds the lock', async () => {
  const { dir, remove } = makeTempDir('verify');
  const { wal } = await Wal.open({ dir, fsync: 'off' });
  try {
    await wal.appendMany([{ entityId: 1n, signalType: 1, weight: 1, timestampNs: 1n }]);
    const { status, report } = verifyJson([dir]);
    assert.is(status, 0);
    assert.is(report.shards[0].lastSeq, 1);
    assert.is(report.shards[0].writerPid, process.pid);
    assert.is(await wal.append({ entityId: 2n, signalType: 1, weight: 1, timestampNs: 2n }), 2, 'the writer is undisturbed');
  } finally {
    await wal.close();
    remove();
  }
});

test('verify - exits 2 on bad usage', async () => {
  const { dir, remove } = makeTempDir('verify');
  try {
    for (const args of [
      ['wal', 'verify'],
      ['wal', 'verify', dir, '--shard', 'x'],
      ['wal', 'verify', join(dir, 'missing'), '--json'],
      ['wal', 'verify', dir], // empty: not a WAL directory
      ['wal', 'verify', dir, '--bogus'],
      ['wal', 'nope'],
      ['frobnicate'],
      [],
    ]) {
      const result = runCli(args);
      assert.is(result.status, 2, `${args.join(' ')}: ${result.stderr}`);
      assert.is(result.stdout, '', `${args.join(' ')}: nothing on stdout`);
    }
    assert.is(runCli(['wal', 'verify', '--help']).status, 0);
  } finally {
    remove();
  }
});

test.run();
