// The WAL keeps a state machine in step with its log: snapshots in files of their own, taken by
// a policy; restart = the newest valid snapshot + the log after it; old segments drained
// behind a snapshot lose nothing; legacy logs (state in segment heads) still open.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fc from 'fast-check';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { BatchKind, Wal, encodeBatch, segmentFileName, type WalStateMachine } from '../../src/wal/index.ts';
import { encodeCheckpointRecord } from '../../src/wal/checkpoint-file.ts';
import { encodeEvents } from '../../src/event.ts';
import { collect, makeEvent, rejection, removeDir, tempDir } from '../support/wal-fixtures.ts';
import { until } from '../support/waits.ts';
import { SumMachine } from '../support/sum-machine.ts';

const options = { segmentBytes: 512, batchMaxEvents: 4, batchLingerMs: 0 };

test('state-machine - segments open with a small marker, and snapshots go to files taken by the log-size policy', async () => {
  const dir = tempDir();
  try {
    const machine = new SumMachine();
    // Each 1-event batch is 85 bytes: a snapshot roughly every 13 batches (1 KiB of log).
    const { wal } = await Wal.open({ dir, ...options, stateMachine: machine, snapshotMinLogBytes: 1024 });
    for (let id = 1; id <= 60; id++) await wal.append(makeEvent(id));
    const stats = wal.stats();
    assert.ok(stats.segments.length > 3);
    assert.ok(stats.segments.every((segment) => segment.headBytes === 96), 'every head is a 96-byte marker, never the state');
    assert.ok(stats.snapshots.taken + (stats.snapshots.isRunning ? 1 : 0) >= 3, `snapshots taken: ${stats.snapshots.taken}`);
    const kept = wal.snapshots();
    assert.ok(kept.length >= 1 && kept.length <= 2, 'at most the newest two are kept');
    assert.equal(
      readdirSync(dir).filter((name) => name.endsWith('.snap')).sort(),
      kept.map((record) => record.fileName),
    );
    const newest = await wal.takeSnapshot();
    assert.is(newest?.seq, 60);
    await wal.close();
    const rebuilt = new SumMachine();
    const reopened = await Wal.open({ dir, ...options, stateMachine: rebuilt, dedupWindowMs: 0 });
    assert.equal(rebuilt.restores, [60], 'restored from the newest snapshot file');
    assert.is(rebuilt.applied, 0, 'nothing after it to replay');
    assert.is(rebuilt.sum, 1830n);
    assert.is(reopened.recovery.restoredFrom.source, 'snapshot');
    assert.ok(reopened.recovery.scannedSegments <= 1, 'only the last segment is scanned');
    await reopened.wal.close();
  } finally {
    removeDir(dir);
  }
});

test('state-machine - draining old segments behind a snapshot loses no state: reopen replays only what follows it', async () => {
  const dir = tempDir();
  try {
    const machine = new SumMachine();
    const first = await Wal.open({ dir, ...options, stateMachine: machine });
    assert.is(first.replayed.length, 0, 'with a state machine nothing is replayed as objects');
    for (let id = 1; id <= 50; id++) await first.wal.append(makeEvent(id));
    assert.is((await first.wal.takeSnapshot())?.seq, 50);
    for (let id = 51; id <= 80; id++) await first.wal.append(makeEvent(id));
    assert.is((await rejection(() => first.wal.truncateBefore(52))).code, 'OUT_OF_RANGE', 'not past the newest snapshot');
    const drained = await first.wal.drainClosedSegmentsWhile((segment) => segment.lastSeq <= 40);
    assert.ok(drained.length > 0);
    await first.wal.close();
    const rebuilt = new SumMachine();
    const second = await Wal.open({ dir, ...options, stateMachine: rebuilt });
    assert.is(rebuilt.sum, 3240n, 'sum of 1..80');
    assert.is(rebuilt.count, 80);
    assert.equal(rebuilt.restores, [50]);
    assert.is(rebuilt.applied, 30, 'only the 30 batches after the snapshot were replayed');
    await second.wal.close();
  } finally {
    removeDir(dir);
  }
});

test('state-machine - a damaged newest snapshot is set aside and the one before it is used', async () => {
  const dir = tempDir();
  try {
    const first = await Wal.open({ dir, ...options, stateMachine: new SumMachine() });
    for (let id = 1; id <= 40; id++) await first.wal.append(makeEvent(id));
    const older = await first.wal.takeSnapshot();
    for (let id = 41; id <= 80; id++) await first.wal.append(makeEvent(id));
    const newer = await first.wal.takeSnapshot();
    for (let id = 81; id <= 90; id++) await first.wal.append(makeEvent(id));
    await first.wal.close();
    assert.equal([older?.seq, newer?.seq], [40, 80]);
    const path = join(dir, newer?.fileName ?? '');
    const bytes = readFileSync(path);
    bytes[bytes.byteLength - 70] ^= 0x01; // inside the last chunk's payload
    writeFileSync(path, bytes);
    const rebuilt = new SumMachine();
    const second = await Wal.open({ dir, ...options, stateMachine: rebuilt });
    assert.equal(rebuilt.restores, [40], 'fell back to the older snapshot');
    assert.is(rebuilt.sum, 4095n, 'sum of 1..90');
    assert.is(second.recovery.damagedSnapshots.length, 1);
    assert.match(second.recovery.damagedSnapshots[0].reason, /SNAPSHOT_DAMAGED/);
    assert.ok(existsSync(`${path}.damaged`), 'the damaged file is kept aside as evidence');
    assert.not.ok(existsSync(path));
    await second.wal.close();
  } finally {
    removeDir(dir);
  }
});

test('state-machine - with every snapshot damaged and the log truncated the open fails; salvage starts at the log', async () => {
  const dir = tempDir();
  try {
    const first = await Wal.open({ dir, ...options, stateMachine: new SumMachine() });
    for (let id = 1; id <= 60; id++) await first.wal.append(makeEvent(id));
    const snapshot = await first.wal.takeSnapshot();
    await first.wal.truncateBefore(41);
    for (let id = 61; id <= 70; id++) await first.wal.append(makeEvent(id));
    await first.wal.close();
    const path = join(dir, snapshot?.fileName ?? '');
    const bytes = readFileSync(path);
    bytes[100] ^= 0xff;
    writeFileSync(path, bytes);
    const error = await rejection(() => Wal.open({ dir, ...options, stateMachine: new SumMachine() }));
    assert.is(error.code, 'SNAPSHOT_DAMAGED');
    assert.match(error.message, /snap-00000-00000000000000000060\.snap/);
    const salvaged = new SumMachine();
    const opened = await Wal.open({ dir, ...options, stateMachine: salvaged, salvage: true });
    assert.is(opened.recovery.restoredFrom.source, 'salvaged');
    assert.is(salvaged.restores[salvaged.restores.length - 1], opened.wal.firstSeq - 1, 'the empty state at the log\'s start');
    assert.is(opened.wal.lastSeq, 70);
    await opened.wal.close();
  } finally {
    removeDir(dir);
  }
});

test('state-machine - a WAL written before snapshot files (state in the segment heads) still opens', async () => {
  const dir = tempDir();
  try {
    // Two segments as tidelog wrote them before: each opens with a checkpoint record whose
    // payload is the state as of its first seq - 1.
    const batch = (firstSeq: number): Uint8Array =>
      encodeBatch(
        { kind: BatchKind.Events, shardId: 0, count: 4, leaderEpoch: 0, firstSeq, timestampNs: BigInt(firstSeq) },
        encodeEvents([0, 1, 2, 3].map((offset) => makeEvent(firstSeq + offset))),
      );
    const legacy = (firstSeq: number, state: string, batches: Uint8Array[]): Uint8Array =>
      Buffer.concat([encodeCheckpointRecord(0, firstSeq, 1n, new TextEncoder().encode(state)), ...batches]);
    writeFileSync(join(dir, segmentFileName(0, 1)), legacy(1, '', [batch(1), batch(5)]));
    writeFileSync(join(dir, segmentFileName(0, 9)), legacy(9, '8,8,36', [batch(9)]));
    const machine = new SumMachine();
    const { wal, recovery } = await Wal.open({ dir, ...options, stateMachine: machine });
    assert.equal(machine.restores, [8], 'restored from the newest legacy head');
    assert.is(recovery.restoredFrom.source, 'legacy-head');
    assert.is(machine.sum, 78n, 'sum of 1..12');
    for (let id = 13; id <= 40; id++) await wal.append(makeEvent(id));
    assert.is((await wal.takeSnapshot())?.seq, 40);
    await wal.close();
    const again = new SumMachine();
    const reopened = await Wal.open({ dir, ...options, stateMachine: again });
    assert.equal(again.restores, [40]);
    assert.is(again.sum, 820n);
    assert.equal(
      (await collect(reopened.wal.read({ fromSeq: 1 }))).map((entry) => Number(entry.event.entityId)),
      Array.from({ length: 40 }, (_, index) => index + 1),
      'old and new segments read back alike',
    );
    await reopened.wal.close();
  } finally {
    removeDir(dir);
  }
});

test('state-machine - memory does not grow with segments: 200 rotations with a 1 MiB state', async () => {
  const dir = tempDir();
  try {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const state = new Uint8Array(1 << 20).fill(7);
    const machine: WalStateMachine = { restore: () => undefined, apply: () => undefined, snapshot: () => state };
    const { wal } = await Wal.open({ dir, segmentBytes: 512, batchMaxEvents: 4, batchLingerMs: 0, fsync: 'off', stateMachine: machine });
    const used = (): number => {
      gc();
      const memory = process.memoryUsage();
      return memory.heapUsed + memory.arrayBuffers;
    };
    for (let id = 1; id <= 40; id++) await wal.appendMany([makeEvent(4 * id), makeEvent(4 * id + 1), makeEvent(4 * id + 2)]);
    const before = used();
    const segmentsBefore = wal.stats().segments.length;
    for (let id = 41; id <= 740; id++) await wal.appendMany([makeEvent(4 * id), makeEvent(4 * id + 1), makeEvent(4 * id + 2)]);
    const rotations = wal.stats().segments.length - segmentsBefore;
    const grownBytes = used() - before;
    assert.ok(rotations >= 200, `${rotations} rotations`);
    // Keeping each segment's state would hold ≥ 200 MiB; a marker per segment is a few hundred bytes.
    assert.ok(grownBytes < 16 << 20, `memory grew by ${grownBytes} bytes over ${rotations} rotations`);
    await wal.close();
  } finally {
    removeDir(dir);
  }
});

test('state-machine - a snapshot is written no faster than snapshotMaxBytesPerSecond; a bad cap is BAD_REQUEST', async () => {
  const dir = tempDir();
  try {
    const state = new Uint8Array(3 << 20).fill(9);
    const machine: WalStateMachine = { restore: () => undefined, apply: () => undefined, snapshot: () => state };
    const rate = 8 << 20;
    const { wal } = await Wal.open({ dir, ...options, fsync: 'off', stateMachine: machine, snapshotMinLogBytes: Number.MAX_SAFE_INTEGER, snapshotMaxBytesPerSecond: rate });
    await wal.appendMany([makeEvent(1)]);
    const startMs = performance.now();
    const record = await wal.takeSnapshot();
    const elapsedMs = performance.now() - startMs;
    assert.ok(record !== null && record.bytes > 3 << 20, 'the snapshot holds the state');
    // Three 1 MiB pieces at 8 MiB/s: the pacing waits until 3/8 s have passed (a lower bound only).
    assert.ok(elapsedMs >= 350, `a 3 MiB snapshot at 8 MiB/s took ${elapsedMs.toFixed(0)} ms`);
    await wal.close();
    const error = await rejection(() => Wal.open({ dir, ...options, stateMachine: machine, snapshotMaxBytesPerSecond: -1 }));
    assert.is(error.code, 'BAD_REQUEST');
  } finally {
    removeDir(dir);
  }
});

// Replay after a restart starts where the newest published snapshot began, so log written
// while a snapshot is written counts toward the next one's wait.
test('state-machine - the next snapshot starts earlier by the log written during the last one', async () => {
  const dir = tempDir();
  try {
    const state = new Uint8Array(2 << 20).fill(5);
    const machine: WalStateMachine = { restore: () => undefined, apply: () => undefined, snapshot: () => state };
    // 2 MiB at 2 MiB/s: the snapshot takes at least a second (the pacing's lower bound).
    const { wal } = await Wal.open({ dir, segmentBytes: 4 << 20, batchLingerMs: 0, fsync: 'off', stateMachine: machine, snapshotMinLogBytes: 0, snapshotLogRatio: 1, snapshotMaxBytesPerSecond: 2 << 20 });
    const packed = (call: number): Uint8Array => encodeEvents(Array.from({ length: 1000 }, (_, index) => makeEvent(call * 1000 + index)));
    const first = wal.takeSnapshot();
    await until(() => wal.stats().snapshots.isRunning, 'the first snapshot to start');
    let call = 0;
    while (wal.stats().snapshots.logBytesSince < 1 << 20) {
      assert.ok(wal.stats().snapshots.isRunning, 'the log is written while the snapshot runs');
      await wal.appendMany(packed(call++), { dedup: false });
    }
    const record = await first;
    const since = wal.stats().snapshots.logBytesSince;
    assert.ok(record !== null && record.bytes > 2 << 20 && since >= 1 << 20 && since < record.bytes, `${since} log bytes since, snapshot ${record?.bytes} B`);
    // Waiting for ratio × size (2 MiB) would start nothing here; the policy waits for 2 MiB less
    // the ~1 MiB written during the last snapshot, so the next flush starts one.
    await wal.appendMany(packed(call++), { dedup: false });
    await until(() => wal.stats().snapshots.taken === 2, () => `a second snapshot (${JSON.stringify(wal.stats().snapshots)})`);
    await wal.close();
  } finally {
    removeDir(dir);
  }
});

test('state-machine - the persisted hook reports each durable batch in order', async () => {
  const dir = tempDir();
  try {
    const seen: Array<[number, number]> = [];
    const { wal } = await Wal.open({ dir, ...options, onPersisted: (info) => seen.push([info.firstSeq, info.lastSeq]) });
    await wal.appendMany([makeEvent(1), makeEvent(2)]);
    await wal.appendMany([makeEvent(3)]);
    assert.equal(seen, [
      [1, 2],
      [3, 3],
    ]);
    await wal.close();
  } finally {
    removeDir(dir);
  }
});

test('state-machine - read resumes from any seq and refuses seqs that were truncated', async () => {
  const dir = tempDir();
  try {
    const { wal } = await Wal.open({ dir, ...options });
    for (let id = 1; id <= 40; id++) await wal.append(makeEvent(id));
    for (const fromSeq of [1, 2, 17, 39, 40, 41]) {
      const read = await collect(wal.read({ fromSeq }));
      assert.equal(
        read.map((entry) => entry.seq),
        Array.from({ length: Math.max(0, 41 - fromSeq) }, (_, index) => fromSeq + index),
      );
      assert.ok(read.every((entry) => entry.event.entityId === BigInt(entry.seq)));
    }
    await wal.checkpoint(19);
    await wal.truncateBefore(20);
    const error = await rejection(() => collect(wal.read({ fromSeq: 1 })));
    assert.is(error.code, 'OUT_OF_RANGE');
    await wal.close();
  } finally {
    removeDir(dir);
  }
});

test('state-machine - replay after any checkpoint is exactly the later events (property)', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.tuple(fc.bigInt({ min: 1n, max: 10_000n }), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 12 }),
      fc.double({ min: 0, max: 1, noNaN: true }),
      async (raw, fraction) => {
        const dir = tempDir();
        try {
          const events = raw.map(([entityId, signalType], index) => ({
            entityId: BigInt(index) * 1_000_000n + entityId,
            signalType,
            weight: index,
            timestampNs: BigInt(index),
          }));
          const { wal } = await Wal.open({ dir, segmentBytes: 300, batchLingerMs: 0 });
          const seqs: number[] = [];
          for (const event of events) seqs.push(await wal.append(event));
          const checkpointSeq = seqs[Math.min(seqs.length - 1, Math.floor(seqs.length * fraction))];
          await wal.checkpoint(checkpointSeq);
          await wal.close();
          const reopened = await Wal.open({ dir, segmentBytes: 300 });
          assert.equal(
            reopened.replayed.map((event) => event.entityId),
            events.filter((_, index) => seqs[index] > checkpointSeq).map((event) => event.entityId),
          );
          await reopened.wal.close();
        } finally {
          removeDir(dir);
        }
      },
    ),
    { seed: 1234, numRuns: 25 },
  );
});

test.run();
