// The seed suite (tidalDB's WAL integration tests) ported to tidelog's API, plus the
// behaviours tidelog adds (packed input, limits, lanes, state machine, hooks).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readdirSync, statSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { Wal, encodeEvents, nodeFileIo, recoverShard, segmentFileName, type SignalEvent } from '../../src/wal/index.ts';
import { collect, makeEvent, makeVariedEvent, rejection, removeDir, tempDir, withTempDir } from '../support/wal-fixtures.ts';

const fast = { batchMaxEvents: 100, batchLingerMs: 1, dedupWindowMs: 30_000 } as const;

function sameEvent(actual: SignalEvent, expected: SignalEvent, label: string): void {
  assert.is(actual.entityId, expected.entityId, `${label}: entityId`);
  assert.is(actual.signalType, expected.signalType, `${label}: signalType`);
  assert.ok(Object.is(actual.weight, Math.fround(expected.weight)), `${label}: weight`);
  assert.is(actual.timestampNs, expected.timestampNs, `${label}: timestampNs`);
}

test('wal - round trip: ten appends replay after reopen, bit for bit', async () => {
  const dir = tempDir();
  try {
    const first = await Wal.open({ dir, ...fast });
    assert.is(first.replayed.length, 0);
    for (let id = 1; id <= 10; id++) assert.is(await first.wal.append(makeEvent(id)), id);
    await first.wal.close();
    const second = await Wal.open({ dir, ...fast });
    assert.is(second.replayed.length, 10);
    second.replayed.forEach((event, index) => sameEvent(event, makeEvent(index + 1), `event ${index}`));
    await second.wal.close();
  } finally {
    removeDir(dir);
  }
});

test('wal - a duplicate inside the window gets seq 0 and one copy is on disk', async () => {
  const dir = tempDir();
  try {
    const { wal } = await Wal.open({ dir, ...fast });
    const event = makeEvent(42);
    assert.ok((await wal.append(event)) > 0);
    assert.is(await wal.append(event), 0);
    assert.is(await wal.append(event), 0);
    const inOneCall = await wal.appendMany([makeEvent(43), makeEvent(43), event]);
    assert.equal(inOneCall, [2, 0, 0]);
    await wal.close();
    const reopened = await Wal.open({ dir, ...fast });
    assert.is(reopened.replayed.length, 2);
    // The window was rebuilt from the tail: still a duplicate after the restart.
    assert.is(await reopened.wal.append(event), 0);
    assert.is(reopened.recovery.dedupRebuilt, 2);
    await reopened.wal.close();
  } finally {
    removeDir(dir);
  }
});

test('wal - content dedup is off unless dedupWindowMs is configured: equal events each get a seq, also after a restart', async () => {
  await withTempDir(async (dir) => {
    const { wal } = await Wal.open({ dir, batchLingerMs: 0 });
    const view = makeEvent(5);
    assert.equal(await wal.appendMany([view, view, view]), [1, 2, 3]);
    assert.is(await wal.append(view), 4);
    await wal.close();
    const reopened = await Wal.open({ dir, batchLingerMs: 0 });
    assert.is(reopened.replayed.length, 4);
    assert.is(reopened.recovery.dedupRebuilt, 0, 'no window to rebuild');
    assert.is(await reopened.wal.append(view), 5);
    await reopened.wal.close();
  });
});

test('wal - dedup: false writes every event, is neither checked nor remembered, and stays so after a restart', async () => {
  const dir = tempDir();
  try {
    const { wal } = await Wal.open({ dir, ...fast });
    const view = makeEvent(7);
    // Five views of one entity stamped in the same millisecond: five real signals.
    assert.equal(await wal.appendMany([view, view, view, view, view], { dedup: false }), [1, 2, 3, 4, 5]);
    assert.equal(await wal.appendMany([view], { dedup: false }), [6], 'not checked against the window');
    assert.equal(await wal.appendMany([view]), [7], 'not remembered by it either: a deduplicated append sees it first here');
    assert.equal(await wal.appendMany([view]), [0], 'and now the window has it');
    const skipped = makeEvent(8);
    assert.equal(await wal.appendMany([skipped], { dedup: false }), [8]);
    await wal.close();
    const batches = await collectBatches(dir);
    assert.equal(
      batches.map((batch) => [batch.firstSeq, batch.skipsDedup]),
      [
        [1, true],
        [6, true],
        [7, false],
        [8, true],
      ],
      'a group never mixes the two kinds; SKIPS_DEDUP marks the batch on disk',
    );
    const reopened = await Wal.open({ dir, ...fast });
    assert.is(reopened.recovery.dedupRebuilt, 1, 'the rebuild takes only the deduplicated batch');
    assert.is(await reopened.wal.append(view), 0);
    assert.is(await reopened.wal.append(skipped), 9, 'an event appended with dedup: false is not in the rebuilt window');
    assert.is((await rejection(() => reopened.wal.appendMany([view], { dedup: 'no' as unknown as boolean }))).code, 'BAD_REQUEST');
    await reopened.wal.close();
  } finally {
    removeDir(dir);
  }
});

test('wal - a restart reads older segments for the dedup window only when they hold deduplicated events', async () => {
  const dir = tempDir();
  try {
    const options = { dir, segmentBytes: 1024, batchMaxEvents: 4, batchLingerMs: 0, dedupWindowMs: 60_000 };
    const { wal } = await Wal.open(options);
    for (let id = 1; id <= 100; id++) await wal.appendMany([makeEvent(id)], { dedup: false });
    await wal.checkpoint(100);
    await wal.close();
    const sessionsOnly = await Wal.open(options);
    assert.ok(sessionsOnly.recovery.segments > 5);
    assert.is(sessionsOnly.recovery.scannedSegments, 1, 'only the last segment: no older one fed the window');
    for (let id = 101; id <= 110; id++) await sessionsOnly.wal.append(makeEvent(id));
    for (let id = 111; id <= 200; id++) await sessionsOnly.wal.appendMany([makeEvent(id)], { dedup: false });
    await sessionsOnly.wal.checkpoint(200);
    await sessionsOnly.wal.close();
    const mixed = await Wal.open(options);
    assert.ok(mixed.recovery.scannedSegments > 1 && mixed.recovery.scannedSegments < mixed.recovery.segments, `scanned ${mixed.recovery.scannedSegments} of ${mixed.recovery.segments}`);
    assert.is(mixed.recovery.dedupRebuilt, 10);
    assert.is(await mixed.wal.append(makeEvent(105)), 0, 'the window was rebuilt from the segments that feed it');
    await mixed.wal.close();
  } finally {
    removeDir(dir);
  }
});

/** [firstSeq, skipsDedup] of every batch on disk, read by recovery without changing anything. */
async function collectBatches(dir: string): Promise<Array<{ firstSeq: number; skipsDedup: boolean }>> {
  const found: Array<{ firstSeq: number; skipsDedup: boolean }> = [];
  await recoverShard({
    io: nodeFileIo,
    dir,
    shard: 0,
    salvage: false,
    repair: false,
    onBatch: (_bytes, batch) => found.push({ firstSeq: batch.header.firstSeq, skipsDedup: batch.header.skipsDedup }),
  });
  return found;
}

test('wal - dedup has no false positives: 1,000 unique events from 10 concurrent callers all accepted', async () => {
  const dir = tempDir();
  try {
    const { wal } = await Wal.open({ dir, batchMaxEvents: 256, batchLingerMs: 1, dedupWindowMs: 60_000 });
    const callers = Array.from({ length: 10 }, async (_, caller) => {
      let accepted = 0;
      for (let index = 0; index < 100; index++) {
        const entityId = caller * 100 + index;
        const seq = await wal.append({
          entityId: BigInt(entityId),
          signalType: entityId % 256,
          weight: entityId,
          timestampNs: BigInt(entityId) * 1_000_000n,
        });
        if (seq > 0) accepted++;
      }
      return accepted;
    });
    const accepted = (await Promise.all(callers)).reduce((sum, count) => sum + count, 0);
    assert.is(accepted, 1000);
    await wal.close();
  } finally {
    removeDir(dir);
  }
});

test('wal - rotates at segmentBytes with shard-aware names and replays everything', async () => {
  const dir = tempDir();
  try {
    const options = { dir, shard: 7, segmentBytes: 256, batchMaxEvents: 10, batchLingerMs: 10, dedupWindowMs: 30_000 };
    const { wal } = await Wal.open(options);
    for (let id = 1; id <= 100; id++) await wal.append(makeEvent(id));
    const stats = wal.stats();
    await wal.close();
    const segments = readdirSync(dir).filter((name) => name.endsWith('.seg')).sort();
    assert.ok(segments.length > 1, `expected several segments, got ${segments.length}`);
    assert.equal(
      segments,
      stats.segments.map((segment) => segmentFileName(7, segment.firstSeq)),
    );
    for (const name of segments) assert.match(name, /^wal-00007-\d{20}\.seg$/);
    const reopened = await Wal.open(options);
    assert.is(reopened.replayed.length, 100);
    await reopened.wal.close();
  } finally {
    removeDir(dir);
  }
});

test('wal - clean shutdown: exactly what was appended replays, no phantom records', async () => {
  const dir = tempDir();
  try {
    const { wal } = await Wal.open({ dir, ...fast });
    for (let id = 1; id <= 5; id++) await wal.append(makeEvent(id));
    await wal.close();
    const reopened = await Wal.open({ dir, ...fast });
    assert.equal(
      reopened.replayed.map((event) => event.entityId),
      [1n, 2n, 3n, 4n, 5n],
    );
    await reopened.wal.close();
  } finally {
    removeDir(dir);
  }
});

test('wal - checkpoint + truncateBefore: replay is exactly the events after the checkpoint', async () => {
  const dir = tempDir();
  try {
    const options = { dir, segmentBytes: 256, batchMaxEvents: 5, batchLingerMs: 10, dedupWindowMs: 30_000 };
    const { wal } = await Wal.open(options);
    const seqs: number[] = [];
    for (let id = 1; id <= 50; id++) seqs.push(await wal.append(makeEvent(id)));
    const checkpointSeq = seqs[24];
    await wal.checkpoint(checkpointSeq);
    const before = wal.stats().segments.length;
    const removed = await wal.truncateBefore(checkpointSeq);
    assert.ok(removed.length > 0 && removed.length < before, 'whole segments below the checkpoint go');
    for (const name of removed) assert.not.ok(readdirSync(dir).includes(name));
    await wal.close();
    const reopened = await Wal.open(options);
    assert.equal(
      reopened.replayed.map((event) => event.entityId),
      Array.from({ length: 25 }, (_, index) => BigInt(26 + index)),
    );
    assert.is(reopened.recovery.checkpointSeq, checkpointSeq);
    await reopened.wal.close();
  } finally {
    removeDir(dir);
  }
});

test('wal - checkpoint refuses a seq that is not durable yet', async () => {
  const dir = tempDir();
  try {
    const { wal } = await Wal.open({ dir, ...fast });
    await wal.append(makeEvent(1));
    const error = await rejection(() => wal.checkpoint(2));
    assert.is(error.code, 'OUT_OF_RANGE');
    await wal.close();
  } finally {
    removeDir(dir);
  }
});

test('wal - 8 concurrent callers × 100 get unique, monotonic, gapless seqs', async () => {
  const dir = tempDir();
  try {
    const { wal } = await Wal.open({ dir, ...fast });
    const perCaller = await Promise.all(
      Array.from({ length: 8 }, async (_, caller) => {
        const seqs: number[] = [];
        for (let index = 0; index < 100; index++) {
          const entityId = caller * 100 + index;
          seqs.push(await wal.append({ entityId: BigInt(entityId), signalType: caller, weight: 1, timestampNs: BigInt(entityId) * 1000n }));
        }
        return seqs;
      }),
    );
    for (const seqs of perCaller) {
      for (let index = 1; index < seqs.length; index++) assert.ok(seqs[index] > seqs[index - 1], 'monotonic per caller');
    }
    const all = perCaller.flat().sort((a, b) => a - b);
    assert.equal(all, Array.from({ length: 800 }, (_, index) => index + 1));
    await wal.close();
    const reopened = await Wal.open({ dir, ...fast });
    assert.is(reopened.replayed.length, 800);
    await reopened.wal.close();
  } finally {
    removeDir(dir);
  }
});

test('wal - seqs continue over three sessions', async () => {
  const dir = tempDir();
  try {
    let lastSeq = 0;
    for (let session = 0; session < 3; session++) {
      const { wal, replayed } = await Wal.open({ dir, ...fast });
      assert.is(replayed.length, session * 10);
      for (let index = 1; index <= 10; index++) {
        const seq = await wal.append(makeEvent(session * 10 + index));
        assert.is(seq, lastSeq + 1);
        lastSeq = seq;
      }
      await wal.close();
    }
  } finally {
    removeDir(dir);
  }
});

test('wal - appendMany takes packed bytes, splits only past batchMaxEvents, returns one seq per event', async () => {
  const dir = tempDir();
  try {
    const { wal } = await Wal.open({ dir, batchMaxEvents: 100, batchLingerMs: 0 });
    const packed = encodeEvents(Array.from({ length: 250 }, (_, index) => makeEvent(index + 1)));
    const seqs = await wal.appendMany(packed);
    assert.equal(seqs, Array.from({ length: 250 }, (_, index) => index + 1));
    const stats = wal.stats();
    assert.is(stats.flush.batches, 3, '250 events at batchMaxEvents 100 form three groups');
    const small = await Promise.all([wal.appendMany([makeEvent(1001)]), wal.appendMany([makeEvent(1002), makeEvent(1003)])]);
    assert.equal(small, [[251], [252, 253]]);
    const read = await collect(wal.read({ fromSeq: 249 }));
    assert.equal(
      read.map((entry) => [entry.seq, entry.event.entityId]),
      [[249, 249n], [250, 250n], [251, 1001n], [252, 1002n], [253, 1003n]],
    );
    await wal.close();
  } finally {
    removeDir(dir);
  }
});

test('wal - bad input is rejected with BAD_REQUEST and nothing accepted is lost', async () => {
  const dir = tempDir();
  try {
    const { wal } = await Wal.open({ dir, ...fast });
    assert.is(await wal.append(makeEvent(1)), 1);
    for (const bad of [new Uint8Array(20), [{ ...makeEvent(2), weight: Number.NaN }], 'events' as unknown as SignalEvent[]]) {
      const error = await rejection(() => wal.appendMany(bad));
      assert.is(error.code, 'BAD_REQUEST');
    }
    assert.is(await wal.append(makeEvent(3)), 2);
    await wal.close();
    const reopened = await Wal.open({ dir, ...fast });
    assert.equal(
      reopened.replayed.map((event) => event.entityId),
      [1n, 3n],
    );
    await reopened.wal.close();
  } finally {
    removeDir(dir);
  }
});

test('wal - a full queue rejects with OVERLOADED and the WAL keeps serving', async () => {
  const dir = tempDir();
  try {
    const { wal } = await Wal.open({ dir, maxPendingEvents: 150, batchMaxEvents: 100, batchLingerMs: 5 });
    const accepted = wal.appendMany(Array.from({ length: 100 }, (_, index) => makeEvent(index + 1)));
    const error = await rejection(() => wal.appendMany(Array.from({ length: 100 }, (_, index) => makeEvent(1000 + index))));
    assert.is(error.code, 'OVERLOADED');
    assert.is((await accepted).length, 100);
    assert.is((await wal.appendMany([makeEvent(5000)]))[0], 101);
    await wal.close();
  } finally {
    removeDir(dir);
  }
});

test('wal - invalid options are BAD_REQUEST', async () => {
  for (const options of [{ shard: -1 }, { shard: 70_000 }, { segmentBytes: 0 }, { batchMaxEvents: 1.5 }, { fsync: 'sometimes' }]) {
    const error = await rejection(() => Wal.open({ dir: tempDir(), ...(options as object) }));
    assert.is(error.code, 'BAD_REQUEST', JSON.stringify(options));
  }
});

test('wal - appends after close are rejected with CLOSED', async () => {
  const dir = tempDir();
  try {
    const { wal } = await Wal.open({ dir, ...fast });
    await wal.close();
    assert.is((await rejection(() => wal.append(makeEvent(1)))).code, 'CLOSED');
  } finally {
    removeDir(dir);
  }
});

test('wal - several shards (lanes) in one directory write concurrently and recover independently', async () => {
  const dir = tempDir();
  try {
    const lanes = await Promise.all([0, 1, 2, 3].map((shard) => Wal.open({ dir, shard, ...fast, segmentBytes: 1024 })));
    // Lanes write at the same time; within a lane each append waits, so each is its own batch.
    await Promise.all(
      lanes.map(async ({ wal }, shard) => {
        for (let index = 0; index < 20; index++) await wal.append(makeEvent(shard * 1000 + index + 1));
      }),
    );
    await Promise.all(lanes.map(({ wal }) => wal.close()));
    // Damage shard 2 only: the others still open cleanly.
    const shard2 = readdirSync(dir).filter((name) => name.startsWith('wal-00002-')).sort();
    const lastOfShard2 = join(dir, shard2[shard2.length - 1]);
    truncateSync(lastOfShard2, statSync(lastOfShard2).size - 3);
    for (const shard of [0, 1, 2, 3]) {
      const { wal, replayed, recovery } = await Wal.open({ dir, shard, ...fast, segmentBytes: 1024 });
      assert.ok(replayed.every((event) => event.entityId / 1000n === BigInt(shard)), `shard ${shard} replays only its own`);
      assert.is(replayed.length, shard === 2 ? 19 : 20, `shard ${shard}`);
      assert.is(recovery.truncatedTail !== null, shard === 2);
      await wal.close();
    }
  } finally {
    removeDir(dir);
  }
});

test('wal - replay: false recovers and continues without decoding events', async () => {
  const dir = tempDir();
  try {
    const { wal } = await Wal.open({ dir, ...fast });
    for (let id = 1; id <= 5; id++) await wal.append(makeEvent(id));
    await wal.close();
    const reopened = await Wal.open({ dir, ...fast, replay: false });
    assert.is(reopened.replayed.length, 0);
    assert.is(reopened.recovery.lastSeq, 5);
    assert.is(await reopened.wal.append(makeEvent(6)), 6);
    await reopened.wal.close();
  } finally {
    removeDir(dir);
  }
});

test('wal - the 10-step acceptance scenario', async () => {
  const dir = tempDir();
  const crashDir = tempDir();
  try {
    const config = { dir, segmentBytes: 2 * 1024, batchMaxEvents: 100, batchLingerMs: 1, dedupWindowMs: 60_000 };
    // 1. Append 100 varied events; seqs increase.
    let { wal, replayed } = await Wal.open(config);
    assert.is(replayed.length, 0);
    const seqs: number[] = [];
    for (let index = 0; index < 100; index++) seqs.push(await wal.append(makeVariedEvent(index)));
    for (let index = 1; index < seqs.length; index++) assert.ok(seqs[index] > seqs[index - 1]);
    await wal.close();
    // 2. Reopen: all 100 come back exactly.
    ({ wal, replayed } = await Wal.open(config));
    assert.is(replayed.length, 100);
    replayed.forEach((event, index) => sameEvent(event, makeVariedEvent(index), `step 2 event ${index}`));
    // 3. Ten duplicates get seq 0.
    for (let dup = 0; dup < 10; dup++) assert.is(await wal.append(makeVariedEvent(dup * 10)), 0);
    await wal.close();
    // 4. Exactly 100 records, not 110.
    ({ wal, replayed } = await Wal.open(config));
    assert.is(replayed.length, 100);
    // 5. Checkpoint at the last of the 100.
    await wal.checkpoint(seqs[99]);
    // 6. Fifty more after the checkpoint.
    for (let index = 500; index < 550; index++) assert.ok((await wal.append(makeVariedEvent(index))) > 0);
    // 7. Close cleanly.
    await wal.close();
    // 8. Reopen: exactly the 50 post-checkpoint events replay.
    ({ wal, replayed } = await Wal.open(config));
    assert.is(replayed.length, 50);
    replayed.forEach((event, index) => sameEvent(event, makeVariedEvent(500 + index), `step 8 event ${index}`));
    // 9. The log keeps going after recovery: 50 + 1 replay next time.
    assert.ok((await wal.append(makeVariedEvent(99_999))) > 0);
    await wal.close();
    ({ wal, replayed } = await Wal.open(config));
    assert.is(replayed.length, 51);
    await wal.close();
    // 10. Crash: 50 committed events, last segment cut at 70%, recovery keeps an intact prefix.
    const crashConfig = { dir: crashDir, segmentBytes: 4096, batchMaxEvents: 50, batchLingerMs: 1, dedupWindowMs: 60_000 };
    ({ wal } = await Wal.open(crashConfig));
    for (let index = 0; index < 50; index++) assert.ok((await wal.append(makeVariedEvent(10_000 + index))) > 0);
    await wal.close();
    ({ wal, replayed } = await Wal.open(crashConfig));
    assert.is(replayed.length, 50);
    await wal.close();
    const segments = readdirSync(crashDir).filter((name) => name.endsWith('.seg')).sort();
    const last = join(crashDir, segments[segments.length - 1]);
    truncateSync(last, Math.floor((statSync(last).size * 7) / 10));
    ({ wal, replayed } = await Wal.open(crashConfig));
    const recovered = replayed;
    assert.ok(recovered.length < 50 && recovered.length > 0, `recovered ${recovered.length}`);
    recovered.forEach((event, index) => sameEvent(event, makeVariedEvent(10_000 + index), `step 10 event ${index}`));
    assert.is(await wal.append(makeVariedEvent(99_998)), recovered.length + 1);
    await wal.close();
    ({ wal, replayed } = await Wal.open(crashConfig));
    assert.is(replayed.length, recovered.length + 1);
    await wal.close();
  } finally {
    removeDir(dir);
    removeDir(crashDir);
  }
});

test('wal - a throwing hook answers the durable callers, keeps the books right and stops the lane', async () => {
  await withTempDir(async (dir) => {
    let calls = 0;
    const { wal } = await Wal.open({
      dir,
      batchLingerMs: 0,
      onPersisted: () => {
        calls++;
        if (calls === 2) throw new Error('hook boom');
      },
    });
    assert.is(await wal.append(makeEvent(1)), 1);
    assert.is(await wal.append(makeEvent(2)), 2, 'the batch is durable: its caller gets its seq');
    assert.is(wal.lastSeq, 2);
    assert.is((wal.failed as (Error & { code?: string }) | null)?.code, 'HOOK_FAILED');
    assert.is((await rejection(() => wal.append(makeEvent(3)))).code, 'HOOK_FAILED');
    await wal.close();
    const reopened = await Wal.open({ dir });
    assert.is(reopened.replayed.length, 2, 'nothing rejected was written');
    await reopened.wal.close();
  });
});

test('wal - a dedup generation of one event still dedups', async () => {
  await withTempDir(async (dir) => {
    const { wal } = await Wal.open({ dir, dedupWindowMs: 60_000, dedupMaxEvents: 1, batchLingerMs: 0 });
    assert.is(await wal.append(makeEvent(1)), 1);
    assert.is(await wal.append(makeEvent(1)), 0);
    await wal.close();
  });
});

test.run();
