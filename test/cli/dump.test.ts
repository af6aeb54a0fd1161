import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Wal } from '../../src/wal/index.ts';
import { batchPositions, makeTempDir, runCli, writeWal, type WrittenEvent } from './harness.ts';

interface DumpedEvent {
  seq: number;
  entityId: string;
  signalType: number;
  weight: number;
  timestampNs: string;
}

function asDumped({ seq, event }: WrittenEvent): DumpedEvent {
  return {
    seq,
    entityId: String(event.entityId),
    signalType: event.signalType,
    weight: Math.fround(event.weight),
    timestampNs: String(event.timestampNs),
  };
}

function parseLines<T>(stdout: string): T[] {
  return stdout.split('\n').filter((line) => line !== '').map((line) => JSON.parse(line) as T);
}

test('dump - prints exactly the events written', async () => {
  const { dir, remove } = makeTempDir('dump');
  try {
    const written = await writeWal(dir, { calls: 30, perCall: 7, segmentBytes: 2048 });
    const json = runCli(['wal', 'dump', dir, '--json']);
    assert.is(json.status, 0, json.stderr);
    const dumped = parseLines<DumpedEvent>(json.stdout).map((event) => ({ ...event, weight: Math.fround(event.weight) }));
    assert.equal(dumped, written.map(asDumped));

    const text = runCli(['wal', 'dump', dir]);
    assert.is(text.status, 0);
    const lines = text.stdout.trimEnd().split('\n');
    assert.is(lines.length, written.length);
    const { seq, event } = written[3];
    assert.is(lines[3], `${seq} ${event.entityId} ${event.signalType} 0.1 ${event.timestampNs}`);
  } finally {
    remove();
  }
});

test("dump and verify - take a node's data dir (its wal/) as well as the WAL dir, and refuse a shard with no files (exit 2)", async () => {
  const { dir, remove } = makeTempDir('datadir');
  try {
    const written = await writeWal(join(dir, 'wal'), { calls: 5, perCall: 4 });
    const dumped = runCli(['wal', 'dump', dir, '--json']);
    assert.is(dumped.status, 0, dumped.stderr);
    assert.equal(parseLines<DumpedEvent>(dumped.stdout).map((event) => event.seq), written.map((event) => event.seq), 'the events of <dataDir>/wal');
    const verified = runCli(['wal', 'verify', dir]);
    assert.is(verified.status, 0, verified.stderr);
    assert.match(verified.stdout, /shard 0/);
    for (const command of ['dump', 'verify']) {
      const unknown = runCli(['wal', command, dir, '--shard', '3']);
      assert.is(unknown.status, 2, `wal ${command} --shard 3: ${unknown.stderr}`);
      assert.match(unknown.stderr, /holds no files of shard 3 \(shards present: 0\)/);
    }
  } finally {
    remove();
  }
});

test('dump - respects --from-seq and --limit', async () => {
  const { dir, remove } = makeTempDir('dump');
  try {
    const written = await writeWal(dir, { calls: 20, perCall: 10, segmentBytes: 2048 });
    const window = runCli(['wal', 'dump', dir, '--json', '--from-seq', '57', '--limit', '25']);
    assert.is(window.status, 0, window.stderr);
    assert.equal(
      parseLines<DumpedEvent>(window.stdout).map((event) => event.seq),
      written.slice(56, 81).map((event) => event.seq),
    );
    const tail = runCli(['wal', 'dump', dir, '--from-seq', '195']);
    assert.equal(tail.stdout.trimEnd().split('\n').map((line) => Number(line.split(' ')[0])), [195, 196, 197, 198, 199, 200]);
    const beyond = runCli(['wal', 'dump', dir, '--from-seq', '1000']);
    assert.is(beyond.status, 0);
    assert.is(beyond.stdout, '');
    assert.is(runCli(['wal', 'dump', dir, '--limit', '0']).stdout, '');
    assert.is(runCli(['wal', 'dump', dir, '--from-seq', '0']).status, 2);
  } finally {
    remove();
  }
});

test('dump - --batches prints the batch headers where recovery finds them', async () => {
  const { dir, remove } = makeTempDir('dump');
  try {
    await writeWal(dir, { calls: 12, perCall: 5, segmentBytes: 1024 });
    const result = runCli(['wal', 'dump', dir, '--batches', '--json', '--from-seq', '13']);
    assert.is(result.status, 0, result.stderr);
    const batches = parseLines<{ firstSeq: number; count: number; epoch: number; bytes: number; segment: string; offset: number }>(result.stdout);
    const expected = (await batchPositions(dir)).filter((batch) => batch.firstSeq + batch.count > 13);
    assert.equal(
      batches.map(({ firstSeq, count, segment, offset }) => ({ fileName: segment, offset, firstSeq, count })),
      expected,
    );
    assert.ok(batches.every((batch) => batch.bytes === 64 + 5 * 21 && batch.epoch === 0));
  } finally {
    remove();
  }
});

test('dump - prints the intact prefix and exits 1 on damage', async () => {
  const { dir, remove } = makeTempDir('dump');
  try {
    await writeWal(dir, { calls: 10, perCall: 4 });
    const victim = (await batchPositions(dir))[4];
    const path = join(dir, victim.fileName);
    const bytes = readFileSync(path);
    bytes[victim.offset + 64] ^= 0xff;
    writeFileSync(path, bytes);
    const result = runCli(['wal', 'dump', dir]);
    assert.is(result.status, 1);
    assert.is(result.stdout.trimEnd().split('\n').length, 16);
    assert.ok(result.stderr.includes(`${path} at offset ${victim.offset}`), result.stderr);
  } finally {
    remove();
  }
});

test('dump - --batches shows notes in hex; a notes-only batch prints no event line', async () => {
  const { dir, remove } = makeTempDir('dump');
  try {
    const { wal } = await Wal.open({ dir, fsync: 'off', batchLingerMs: 0, dedupWindowMs: 60_000 });
    const event = (n: number) => ({ entityId: BigInt(n), signalType: 1, weight: 1, timestampNs: BigInt(n) });
    await wal.appendMany([event(1), event(2)], { note: () => Uint8Array.of(0xab, 0xcd) });
    assert.equal(await wal.appendMany([event(1)], { note: () => Uint8Array.of(0x01) }), [0]);
    await wal.appendMany([event(3)]);
    await wal.close();

    const json = runCli(['wal', 'dump', dir, '--batches', '--json']);
    assert.is(json.status, 0, json.stderr);
    const batches = parseLines<{ firstSeq: number; count: number; bytes: number; notes: string[] }>(json.stdout);
    assert.equal(
      batches.map(({ firstSeq, count, bytes, notes }) => ({ firstSeq, count, bytes, notes })),
      [
        { firstSeq: 1, count: 2, bytes: 64 + 2 * 21 + 4 + 2, notes: ['abcd'] },
        { firstSeq: 3, count: 0, bytes: 64 + 4 + 1, notes: ['01'] },
        { firstSeq: 3, count: 1, bytes: 64 + 21, notes: [] },
      ],
    );
    const text = runCli(['wal', 'dump', dir, '--batches', '--from-seq', '3']).stdout.trimEnd().split('\n');
    assert.is(text.length, 2, 'the notes-only batch sits before seq 3, so it shows from there');
    assert.ok(text[0].endsWith(' notes=01'), text[0]);
    assert.is(text[1].split(' ').length, 8, 'no notes column without notes');

    const events = runCli(['wal', 'dump', dir, '--json']);
    assert.is(events.status, 0, events.stderr);
    assert.equal(parseLines<DumpedEvent>(events.stdout).map((dumped) => dumped.seq), [1, 2, 3]);
  } finally {
    remove();
  }
});

test.run();
