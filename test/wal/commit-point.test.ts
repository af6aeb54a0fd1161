// The WAL ready for replication: with `commit: 'external'` durable (fsynced here) and committed
// (the owner's commitTo, the HWM) are apart — callers, the state machine, onPersisted and
// snapshots see only what is committed — and truncateAfter cuts an uncommitted suffix.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Wal, type PersistedInfo } from '../../src/wal/index.ts';
import { collect, makeEvent, openLeading, rejection, removeDir, tempDir } from '../support/wal-fixtures.ts';
import { SumMachine } from '../support/sum-machine.ts';
import { FaultyFileIo } from '../support/faulty-file-io.ts';
import { until, within } from '../support/waits.ts';
import { encodeEvents } from '../../src/event.ts';

const options = { segmentBytes: 512, batchMaxEvents: 4, batchLingerMs: 0, commit: 'external' as const };

/** Settles `promise` into a flag so a test can ask whether it resolved yet. */
function track<T>(promise: Promise<T>): { settled: () => boolean; value: () => T | undefined } {
  let isSettled = false;
  let value: T | undefined;
  promise.then(
    (result) => {
      isSettled = true;
      value = result;
    },
    () => {
      isSettled = true;
    },
  );
  return { settled: () => isSettled, value: () => value };
}

/** Appends and waits until the batch is durable; the call itself (which waits for the commit point) comes back wrapped. */
async function appendDurable(wal: Wal, ids: number[]): Promise<{ call: Promise<number[]> }> {
  const before = wal.durableSeq;
  const call = wal.appendMany(ids.map(makeEvent));
  call.catch(() => undefined); // observed by the test later, or rejected on purpose
  await until(() => wal.durableSeq >= before + ids.length, 'the batch is durable');
  return { call };
}

test('commit-point - durable is not committed: callers, state and onPersisted wait for commitTo; onDurable does not', async () => {
  const dir = tempDir();
  try {
    const machine = new SumMachine();
    const durable: number[] = [];
    const persisted: number[] = [];
    const { wal } = await Wal.open({
      dir,
      ...options,
      stateMachine: machine,
      onDurable: (info: PersistedInfo) => durable.push(info.lastSeq),
      onPersisted: (info: PersistedInfo) => persisted.push(info.lastSeq),
    });
    await wal.lead(wal.epoch);
    const first = track((await appendDurable(wal, [1, 2, 3])).call);
    const second = track((await appendDurable(wal, [4, 5])).call);
    assert.is(wal.durableSeq, 5);
    assert.is(wal.committedSeq, 0);
    assert.equal(durable, [3, 5], 'onDurable runs as batches become durable');
    assert.equal(persisted, [], 'nothing is committed yet');
    assert.is(machine.count, 0, 'the state machine folds nothing uncommitted');
    assert.not.ok(first.settled() || second.settled(), 'no caller is answered before the commit point passes');

    await wal.commitTo(3);
    assert.is(wal.committedSeq, 3);
    assert.is(machine.lastSeq, 3);
    assert.equal(persisted, [3]);
    await until(first.settled, 'the first call resolves');
    assert.equal(first.value(), [1, 2, 3]);
    assert.not.ok(second.settled(), 'the second batch is past the commit point');

    // A commit point ahead of what is durable here: later batches commit as they land.
    await wal.commitTo(7);
    assert.is(wal.committedSeq, 5);
    const third = track(wal.appendMany([makeEvent(6), makeEvent(7), makeEvent(8)]));
    await until(() => wal.durableSeq === 8, 'the third batch is durable');
    await wal.commitTo(7); // a batch ending past the commit point waits whole
    assert.is(wal.committedSeq, 5);
    assert.not.ok(third.settled());
    await wal.commitTo(2); // never moves back
    await wal.commitTo(8);
    await until(third.settled, 'the third call resolves');
    assert.equal(third.value(), [6, 7, 8]);
    assert.is(machine.count, 8);
    await wal.close();
  } finally {
    removeDir(dir);
  }
});

test('commit-point - snapshots describe committed state only; a restart folds up to the committed seq it is told, then commitTo folds the rest from disk', async () => {
  const dir = tempDir();
  try {
    const machine = new SumMachine();
    const { wal } = await openLeading({ dir, ...options, stateMachine: machine });
    const calls: Array<Promise<number[]>> = [];
    for (let id = 1; id <= 10; id++) calls.push((await appendDurable(wal, [id])).call);
    await wal.commitTo(6);
    const snapshot = await wal.takeSnapshot();
    assert.is(snapshot?.seq, 6, 'the snapshot is taken at the commit point, not at the durable end (10)');
    await wal.close();
    const outcomes = await Promise.allSettled(calls);
    assert.is(outcomes.filter((outcome) => outcome.status === 'fulfilled').length, 6);
    assert.ok(outcomes.slice(6).every((outcome) => outcome.status === 'rejected'), 'calls never committed are not reported durable at close');

    const again = new SumMachine();
    const persisted: number[] = [];
    const reopened = await Wal.open({ dir, ...options, stateMachine: again, committedSeq: 8, onPersisted: (info) => persisted.push(info.lastSeq) });
    await reopened.wal.lead(reopened.wal.epoch);
    assert.is(reopened.wal.durableSeq, 10);
    assert.is(reopened.wal.committedSeq, 8, 'the log after the snapshot is folded up to the committed seq given');
    assert.is(again.lastSeq, 8);
    const next = track(reopened.wal.appendMany([makeEvent(11)]));
    await until(() => reopened.wal.durableSeq === 11, 'a new batch is durable');
    await reopened.wal.commitTo(11);
    assert.is(again.lastSeq, 11, 'seqs 9 and 10 came from disk, in order, before 11');
    assert.equal(persisted, [9, 10, 11]);
    await until(next.settled, 'the new call resolves');
    assert.equal(next.value(), [11]);
    let sum = 0n;
    for (let id = 1; id <= 11; id++) sum += BigInt(id);
    assert.is(again.sum, sum);
    await reopened.wal.close();
  } finally {
    removeDir(dir);
  }
});

test('commit-point - truncateAfter cuts the uncommitted suffix across segments; its callers and appends made meanwhile get TRUNCATED', async () => {
  const dir = tempDir();
  try {
    const machine = new SumMachine();
    const { wal } = await openLeading({ dir, ...options, stateMachine: machine });
    const calls: Array<Promise<number[]>> = [];
    // 1-event batches of 85 bytes: 512-byte segments hold 4 after their head, so 20 batches span 5 segments.
    for (let id = 1; id <= 20; id++) calls.push((await appendDurable(wal, [id])).call);
    assert.ok(wal.segments().length >= 5, `segments: ${wal.segments().length}`);
    await wal.commitTo(5);

    assert.is((await rejection(() => wal.truncateAfter(4))).code, 'BAD_REQUEST', 'a committed seq is never cut');
    assert.is(await wal.truncateAfter(20), 0, 'nothing past 20: nothing to cut');
    const cut = wal.truncateAfter(7);
    const during = rejection(() => wal.appendMany([makeEvent(99)]));
    assert.is(await cut, 13, 'seqs 8..20 removed');
    assert.is((await during).code, 'TRUNCATED');
    const outcomes = await Promise.allSettled(calls.slice(7));
    for (const outcome of outcomes) {
      assert.is(outcome.status, 'rejected');
      if (outcome.status === 'rejected') assert.is((outcome.reason as { code?: string }).code, 'TRUNCATED');
    }
    assert.is(wal.durableSeq, 7);
    assert.is(wal.segments()[wal.segments().length - 1].lastSeq, 7);
    assert.not.ok(
      readdirSync(dir).some((name) => name.endsWith('.seg') && Number(/(\d+)\.seg$/.exec(name)?.[1]) > 8),
      'segments wholly past the cut are gone',
    );
    // The log goes on at seq 8 and the uncommitted survivors still commit.
    const next = track(wal.appendMany([makeEvent(8)]));
    await until(() => wal.durableSeq === 8, 'the next batch is durable');
    await wal.commitTo(8);
    await until(next.settled, 'the next call resolves');
    assert.equal(next.value(), [8]);
    await Promise.all(calls.slice(5, 7));
    assert.is(machine.lastSeq, 8);
    await wal.close();

    const reopened = await Wal.open({ dir, ...options, stateMachine: new SumMachine(), committedSeq: 8 });
    await reopened.wal.lead(reopened.wal.epoch);
    assert.is(reopened.wal.durableSeq, 8, 'the cut is on disk');
    const read = await collect(reopened.wal.read({ fromSeq: 1 }));
    assert.equal(
      read.map((entry) => Number(entry.event.entityId)),
      [1, 2, 3, 4, 5, 6, 7, 8],
    );
    await reopened.wal.close();
  } finally {
    removeDir(dir);
  }
});

test('commit-point - a cut inside a batch is refused; the durable-only mode refuses commitTo and truncateAfter', async () => {
  const dir = tempDir();
  try {
    const { wal } = await openLeading({ dir, ...options, stateMachine: new SumMachine() });
    const { call } = await appendDurable(wal, [1, 2, 3]);
    const error = await rejection(() => wal.truncateAfter(1));
    assert.is(error.code, 'BAD_REQUEST');
    assert.match(error.message, /inside the batch of seqs 1\.\.3/);
    assert.is(wal.durableSeq, 3, 'a refused cut changes nothing');
    await wal.commitTo(3);
    assert.equal(await call, [1, 2, 3]);
    await wal.close();
    const standalone = await Wal.open({ dir, segmentBytes: 512, batchMaxEvents: 4 });
    assert.is((await rejection(() => standalone.wal.commitTo(3))).code, 'BAD_REQUEST');
    assert.is((await rejection(() => standalone.wal.truncateAfter(3))).code, 'BAD_REQUEST');
    assert.is(standalone.wal.committedSeq, 3);
    await standalone.wal.close();
    assert.is((await rejection(() => Wal.open({ dir, committedSeq: 3 }))).code, 'BAD_REQUEST');
  } finally {
    removeDir(dir);
  }
});

test('commit-point - the cut is durable before truncateAfter resolves: later segments unlinked and the directory synced, then the cut segment truncated and synced', async () => {
  const dir = tempDir();
  try {
    const io = new FaultyFileIo();
    const { wal } = await openLeading({ dir, ...options, io, stateMachine: new SumMachine() });
    const calls: Array<Promise<number[]>> = [];
    for (let id = 1; id <= 12; id++) calls.push((await appendDurable(wal, [id])).call);
    await wal.commitTo(2);
    const cutSegment = wal.segments()[0].fileName;
    const removed = wal.segments().slice(1).map((segment) => segment.fileName);
    assert.ok(removed.length >= 2);
    const from = io.calls.length;
    assert.is(await wal.truncateAfter(2), 10);
    const ops = io.calls.slice(from).map((call) => `${call.op} ${call.path.split('/').pop() ?? ''}`);
    const last = (op: string): number => ops.lastIndexOf(op);
    for (const fileName of removed) assert.ok(last(`unlink ${fileName}.deleting`) >= 0, `${fileName} unlinked: ${ops.join(', ')}`);
    const lastUnlink = Math.max(...removed.map((fileName) => last(`unlink ${fileName}.deleting`)));
    const dirSync = ops.findIndex((op, index) => index > lastUnlink && op.startsWith('syncDir'));
    const truncate = last(`truncate ${cutSegment}`);
    assert.ok(dirSync > lastUnlink, 'the directory is synced after the unlinks');
    assert.ok(truncate > dirSync, 'the cut segment is cut only once the later ones are gone for good (never a gap)');
    assert.ok(last(`datasync ${cutSegment}`) > truncate, 'and the cut is synced before truncateAfter resolves');
    await Promise.allSettled(calls);
    await wal.close();
  } finally {
    removeDir(dir);
  }
});

test('commit-point - setEpoch records the epoch before batches carry it; an older one is FENCED, now and after a restart', async () => {
  const dir = tempDir();
  try {
    const { wal } = await openLeading({ dir, ...options, stateMachine: new SumMachine() });
    assert.is(wal.epoch, 0);
    const first = (await appendDurable(wal, [1])).call;
    await wal.lead(3);
    assert.is(wal.epoch, 3);
    await wal.setEpoch(3); // the same epoch: nothing to do
    assert.is((await rejection(() => wal.setEpoch(2))).code, 'FENCED');
    assert.is((await rejection(() => wal.setEpoch(-1))).code, 'BAD_REQUEST');
    const second = (await appendDurable(wal, [2])).call;
    await wal.commitTo(2);
    await Promise.all([first, second]);
    const epochs = (await collect(wal.readBatches({ fromSeq: 1 }))).map((batch) => batch.leaderEpoch);
    assert.equal(epochs, [0, 3], 'the batch sealed after setEpoch carries it');
    await wal.close();
    assert.ok(readdirSync(dir).includes('replica-00000.bin'));

    const reopened = await Wal.open({ dir, ...options, stateMachine: new SumMachine() });
    await reopened.wal.lead(reopened.wal.epoch);
    assert.is(reopened.wal.epoch, 3, 'a restart continues with the recorded epoch');
    assert.is(reopened.wal.committedSeq, 2, 'and with the commit point kept at close');
    await reopened.wal.close();
    const fenced = await rejection(() => Wal.open({ dir, ...options, leaderEpoch: 2 }));
    assert.is(fenced.code, 'FENCED');
    assert.match(fenced.message, /epoch 2 is older than 3/);
    const newer = await Wal.open({ dir, ...options, leaderEpoch: 5 });
    await newer.wal.lead(newer.wal.epoch);
    assert.is(newer.wal.epoch, 5);
    await newer.wal.close();
    assert.is((await rejection(() => Wal.open({ dir, ...options, leaderEpoch: 4 }))).code, 'FENCED', 'an epoch opened with is recorded too');
  } finally {
    removeDir(dir);
  }
});

test('commit-point - a damaged replica file is CHECKPOINT_DAMAGED naming it', async () => {
  const dir = tempDir();
  try {
    const { wal } = await openLeading({ dir, ...options, leaderEpoch: 2 });
    await wal.close();
    const path = join(dir, 'replica-00000.bin');
    const bytes = readFileSync(path);
    bytes[20] ^= 0x01;
    writeFileSync(path, bytes);
    const error = await rejection(() => Wal.open({ dir, ...options }));
    assert.is(error.code, 'CHECKPOINT_DAMAGED');
    assert.match(error.message, /replica-00000\.bin/);
  } finally {
    removeDir(dir);
  }
});

test('commit-point - a follower appends its leader\'s sealed batches verbatim; gaps, damage, other shards and stale epochs are refused', async () => {
  const leaderDir = tempDir();
  const followerDir = tempDir();
  const otherDir = tempDir();
  try {
    const shipped: Uint8Array[] = [];
    const { wal: leader } = await openLeading({ dir: leaderDir, ...options, leaderEpoch: 2, onDurable: (info) => shipped.push(info.sealed?.slice() ?? new Uint8Array(0)) });
    const followerMachine = new SumMachine();
    const { wal: follower } = await Wal.open({ dir: followerDir, ...options, leaderEpoch: 2, stateMachine: followerMachine });
    const calls: Array<Promise<number[]>> = [];
    for (let id = 1; id <= 9; id += 3) calls.push((await appendDurable(leader, [id, id + 1, id + 2])).call);
    assert.is(shipped.length, 3);

    // Refusals first: each leaves the follower's log as it was.
    assert.is((await rejection(() => follower.appendSealed(shipped[1]))).code, 'SEQUENCE_GAP', 'a gap: seq 4 where 1 is next');
    const damaged = shipped[0].slice();
    damaged[damaged.byteLength - 1] ^= 0x40;
    assert.is((await rejection(() => follower.appendSealed(damaged))).code, 'CHECKSUM_MISMATCH');
    assert.is((await rejection(() => follower.appendSealed(shipped[0].subarray(0, 70)))).code, 'BAD_REQUEST', 'a torn batch');
    const otherShard = await Wal.open({ dir: otherDir, ...options, shard: 1 });
    assert.is((await rejection(() => otherShard.wal.appendSealed(shipped[0]))).code, 'BAD_REQUEST', 'a batch of another shard');
    await otherShard.wal.close();
    const behind = await Wal.open({ dir: otherDir, ...options, leaderEpoch: 1 });
    assert.match((await rejection(() => behind.wal.appendSealed(shipped[0]))).message, /setEpoch first/, 'an epoch not recorded here yet');
    await behind.wal.close();
    assert.is(follower.durableSeq, 0);

    // Handed over as Node Buffers (what NATS delivers; Buffer#slice is a view, not a copy) and
    // scribbled on once appendSealed returns, as a transport reusing its receive memory does:
    // the WAL folds its own copy at commit. (Found by `tidelog dev --nodes 3 --chaos`: followers
    // folded and served other batches' events from memory.)
    const handedOver = shipped.map((batch) => Buffer.from(batch));
    for (const batch of handedOver) {
      const durable = follower.appendSealed(batch);
      batch.fill(0x5a);
      await durable;
    }
    assert.is(follower.durableSeq, 9, 'appendSealed resolves once durable');
    assert.is(follower.committedSeq, 0, 'and nothing is folded before the commit point');
    assert.is(followerMachine.count, 0);
    await follower.commitTo(9);
    assert.is(followerMachine.count, 9);
    assert.is(followerMachine.sum, 45n, 'the fold saw the leader\'s events (ids 1..9), not the scribbled buffers');
    await leader.commitTo(9);
    await Promise.all(calls);

    // Byte for byte the leader's batches, seqs and epoch included.
    const leaderBatches = await collect(leader.readBatches({ fromSeq: 1 }));
    const followerBatches = await collect(follower.readBatches({ fromSeq: 1 }));
    assert.equal(
      followerBatches.map((batch) => [batch.firstSeq, batch.count, batch.leaderEpoch, batch.timestampNs, Array.from(batch.events)]),
      leaderBatches.map((batch) => [batch.firstSeq, batch.count, batch.leaderEpoch, batch.timestampNs, Array.from(batch.events)]),
    );

    // After the leader moves to epoch 3, a batch of epoch 2 can no longer follow one of epoch 3.
    await leader.lead(3);
    const newer = (await appendDurable(leader, [10])).call;
    await follower.setEpoch(3);
    await follower.appendSealed(shipped[3]);
    const stale = shipped[0].slice();
    assert.is((await rejection(() => follower.appendSealed(stale))).code, 'FENCED');
    await leader.commitTo(10);
    await follower.commitTo(10);
    await newer;
    await leader.close();
    await follower.close();
    const reopened = await Wal.open({ dir: followerDir, ...options, stateMachine: new SumMachine() });
    await reopened.wal.lead(reopened.wal.epoch);
    assert.is(reopened.wal.durableSeq, 10);
    assert.is(reopened.wal.committedSeq, 10);
    await reopened.wal.close();
  } finally {
    removeDir(leaderDir);
    removeDir(followerDir);
    removeDir(otherDir);
  }
});

test('commit-point - readers see committed batches only; a catch-up reads the durable rest, sealed bytes included, for appendSealed', async () => {
  const leaderDir = tempDir();
  const followerDir = tempDir();
  try {
    const { wal: leader } = await openLeading({ dir: leaderDir, ...options });
    const calls: Array<Promise<number[]>> = [];
    for (let id = 1; id <= 12; id += 2) calls.push((await appendDurable(leader, [id, id + 1])).call);
    await leader.commitTo(6);
    assert.equal(
      (await collect(leader.read({ fromSeq: 1 }))).map((entry) => entry.seq),
      [1, 2, 3, 4, 5, 6],
      'read() stops at the commit point',
    );
    const durable = await collect(leader.readBatches({ fromSeq: 1, uncommitted: true }));
    assert.equal(
      durable.map((batch) => batch.firstSeq),
      [1, 3, 5, 7, 9, 11],
    );
    // A follower that starts empty catches up from the leader's segments (several of them).
    assert.ok(leader.segments().length >= 2);
    const { wal: follower } = await Wal.open({ dir: followerDir, ...options });
    for (const batch of durable) await follower.appendSealed(batch.sealed ?? new Uint8Array(0));
    assert.is(follower.durableSeq, 12);
    await follower.commitTo(12);
    await leader.commitTo(12);
    await Promise.all(calls);
    assert.equal(
      (await collect(follower.read({ fromSeq: 1 }))).map((entry) => Number(entry.event.entityId)),
      Array.from({ length: 12 }, (_, index) => index + 1),
    );
    await leader.close();
    await follower.close();
  } finally {
    removeDir(leaderDir);
    removeDir(followerDir);
  }
});

test('commit-point - epoch starts: where each epoch begins is recorded before its first batch; epochEnd answers the divergence search, after a restart, on a follower and after a cut', async () => {
  const leaderDir = tempDir();
  const followerDir = tempDir();
  try {
    const shipped: Uint8Array[] = [];
    const { wal: leader } = await openLeading({ dir: leaderDir, ...options, onDurable: (info) => shipped.push(info.sealed?.slice() ?? new Uint8Array(0)) });
    const calls: Array<Promise<number[]>> = [];
    for (let id = 1; id <= 4; id++) calls.push((await appendDurable(leader, [id])).call); // epoch 0: 1..4
    await leader.lead(2);
    assert.equal(leader.epochStarts(), [{ epoch: 0, firstSeq: 1 }], 'setEpoch alone starts nothing in the log');
    for (let id = 5; id <= 7; id++) calls.push((await appendDurable(leader, [id])).call); // epoch 2: 5..7
    await leader.lead(5);
    for (let id = 8; id <= 9; id++) calls.push((await appendDurable(leader, [id])).call); // epoch 5: 8..9
    const starts = [
      { epoch: 0, firstSeq: 1 },
      { epoch: 2, firstSeq: 5 },
      { epoch: 5, firstSeq: 8 },
    ];
    assert.equal(leader.epochStarts(), starts);
    assert.equal(leader.epochEnd(0), { epoch: 0, endSeq: 4 });
    assert.equal(leader.epochEnd(1), { epoch: 0, endSeq: 4 }, 'an epoch this log never wrote: the one before it');
    assert.equal(leader.epochEnd(3), { epoch: 2, endSeq: 7 });
    assert.equal(leader.epochEnd(5), { epoch: 5, endSeq: 9 }, 'the newest epoch ends at the durable end');
    assert.equal(leader.epochEnd(9), { epoch: 5, endSeq: 9 });
    await leader.commitTo(9);
    await Promise.all(calls);
    await leader.close();
    const reopened = await Wal.open({ dir: leaderDir, ...options });
    await reopened.wal.lead(reopened.wal.epoch);
    assert.equal(reopened.wal.epochStarts(), starts, 'kept across a restart');
    await reopened.wal.close();

    // A follower gets the same starts from the batches it appends verbatim.
    const { wal: follower } = await Wal.open({ dir: followerDir, ...options, leaderEpoch: 5 });
    for (const batch of shipped) await follower.appendSealed(batch);
    assert.equal(follower.epochStarts(), starts);
    assert.equal(follower.epochEnd(2), { epoch: 2, endSeq: 7 });
    // A cut into epoch 2 drops epoch 5's start; the log then continues.
    await follower.commitTo(5);
    assert.is(await follower.truncateAfter(6), 3);
    assert.equal(follower.epochStarts(), starts.slice(0, 2));
    assert.equal(follower.epochEnd(9), { epoch: 2, endSeq: 6 });
    await follower.close();
    const followerAgain = await Wal.open({ dir: followerDir, ...options });
    assert.equal(followerAgain.wal.epochStarts(), starts.slice(0, 2), 'the cut starts stay cut after a restart');
    await followerAgain.wal.close();
  } finally {
    removeDir(leaderDir);
    removeDir(followerDir);
  }
});

test('commit-point - an epoch start that cannot be recorded stops the lane before the batch is written', async () => {
  const dir = tempDir();
  try {
    const io = new FaultyFileIo();
    const { wal } = await openLeading({ dir, ...options, io });
    const first = (await appendDurable(wal, [1])).call;
    await wal.lead(3);
    io.inject({ op: 'rename', path: /replica-00000\.bin\.tmp -> /, times: 1 });
    const error = await rejection(() => wal.appendMany([makeEvent(2)]));
    assert.is(error.code, 'IO_ERROR');
    assert.ok(wal.failed !== null, 'fail-stop');
    assert.is(wal.durableSeq, 1, 'the batch of the new epoch was never written');
    await Promise.allSettled([first, wal.close()]);
    const reopened = await Wal.open({ dir, ...options });
    await reopened.wal.lead(reopened.wal.epoch);
    assert.is(reopened.wal.durableSeq, 1);
    assert.equal(reopened.wal.epochStarts(), [{ epoch: 0, firstSeq: 1 }]);
    assert.is(reopened.wal.epoch, 3);
    await reopened.wal.close();
  } finally {
    removeDir(dir);
  }
});

test('commit-point - close ends while a snapshot and a flush are in flight (the replica file is its last task)', async () => {
  // Before the fix the writer closed its flush worker once the queue began closing and a
  // flush ended, before close() queued its last task (the replica file), which then waited
  // behind the CLOSE forever: 5 of 20 closes hung.
  for (let round = 0; round < 20; round++) {
    const dir = tempDir();
    try {
      const { wal } = await openLeading({ dir, shard: 0, commit: 'external', fsync: 'full', batchLingerMs: 0, leaderEpoch: 1, stateMachine: new SumMachine() });
      const first = wal.appendMany(encodeEvents(Array.from({ length: 100 }, (_, index) => makeEvent(index + 1))));
      await until(() => wal.durableSeq === 100, 'the first batch durable');
      await wal.commitTo(100);
      await first;
      void wal.takeSnapshot().catch(() => undefined);
      void wal.appendMany(encodeEvents(Array.from({ length: 100 }, (_, index) => makeEvent(index + 1_000)))).catch(() => undefined);
      await within(wal.close(), `close of round ${round}`);
    } finally {
      removeDir(dir);
    }
  }
});

test.run();
