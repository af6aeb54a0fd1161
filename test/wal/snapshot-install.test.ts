// Snapshot install (src/wal/snapshot-install.ts): a replica behind its leader's retention
// receives the leader's snapshot file part by part and its log is replaced by it. Checked: the
// reopened WAL holds the leader's state at S and continues at S + 1 with epochAt(S) known, and
// with the leader's epoch table through S when it sent one;
// parts out of order or from another transfer are answered with the offset expected; a file
// that does not verify changes nothing; and a power cut before, at or after any file operation
// of the install leaves either the old log or the installed one — never a mix, never a shard
// that cannot open.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { join } from 'node:path';
import { isTidelogError } from '../../src/errors.ts';
import { Wal, nodeFileIo, type FileIo, type SignalEvent } from '../../src/wal/index.ts';
import { SnapshotReceiver, completeInstall, installFileName, type SnapshotPart } from '../../src/wal/snapshot-install.ts';
import { MemoryDisk } from '../support/memory-disk.ts';
import { SumMachine } from '../support/sum-machine.ts';
import { withTempDir } from '../support/wal-fixtures.ts';

const SHARD = 0;

/** The epoch table a leader sends with its snapshot at 200 (epoch 4 wrote seq 200). */
const TABLE = [
  { epoch: 0, firstSeq: 1 },
  { epoch: 2, firstSeq: 120 },
  { epoch: 4, firstSeq: 181 },
];

function eventAt(seq: number): SignalEvent {
  return { entityId: BigInt(seq * 7919), signalType: 1, weight: 1, timestampNs: 1_700_000_000_000_000_000n + BigInt(seq) };
}

function events(from: number, count: number): SignalEvent[] {
  return Array.from({ length: count }, (_, index) => eventAt(from + index));
}

interface Leader {
  /** The leader's snapshot file, whole. */
  file: Uint8Array;
  seq: number;
  /** The SumMachine's state at seq. */
  state: string;
}

/** A leader WAL: 300 events, a snapshot at 200 (what an install sends), 100 more. */
async function leaderSnapshot(io: FileIo, dir: string): Promise<Leader> {
  const machine = new SumMachine();
  const { wal } = await Wal.open({ dir, shard: SHARD, io, fsync: 'full', segmentBytes: 4096, batchLingerMs: 0, stateMachine: machine });
  try {
    for (let seq = 1; seq <= 200; seq += 20) await wal.appendMany(events(seq, 20));
    const record = await wal.takeSnapshot();
    assert.ok(record !== null && record.seq === 200, 'the leader snapshotted at 200');
    const state = new TextDecoder().decode(machine.snapshot());
    for (let seq = 201; seq <= 300; seq += 20) await wal.appendMany(events(seq, 20));
    const file = await wal.readSnapshotPart(record.fileName, 0, 1 << 20);
    assert.is(file.byteLength, record.bytes, 'readSnapshotPart reads the whole file');
    return { file, seq: 200, state };
  } finally {
    await wal.close();
  }
}

/** A follower WAL holding the first `count` events of the same log. */
async function followerLog(io: FileIo, dir: string, count: number): Promise<string> {
  const machine = new SumMachine();
  const { wal } = await Wal.open({ dir, shard: SHARD, io, fsync: 'full', segmentBytes: 4096, batchLingerMs: 0, stateMachine: machine });
  for (let seq = 1; seq <= count; seq += 10) await wal.appendMany(events(seq, Math.min(10, count - seq + 1)));
  await wal.close();
  return new TextDecoder().decode(machine.snapshot());
}

async function openState(io: FileIo, dir: string): Promise<{ lastSeq: number; state: string; epochAtLast: number; firstSeq: number; wal: Wal }> {
  const machine = new SumMachine();
  const { wal } = await Wal.open({ dir, shard: SHARD, io, fsync: 'full', segmentBytes: 4096, batchLingerMs: 0, stateMachine: machine });
  return { lastSeq: wal.lastSeq, state: new TextDecoder().decode(machine.snapshot()), epochAtLast: wal.epochAt(wal.lastSeq), firstSeq: wal.firstSeq, wal };
}

/** Sends `file` in parts of `partBytes`; returns when the receiver says it is complete. */
async function sendAll(receiver: SnapshotReceiver, file: Uint8Array, seq: number, epochAtSeq: number, partBytes: number, epochStarts?: SnapshotPart['epochStarts']): Promise<void> {
  let offset = 0;
  while (offset < file.byteLength) {
    const table = offset === 0 && epochStarts !== undefined ? { epochStarts } : {};
    offset = await receiver.receive({ seq, epochAtSeq, ...table, fileBytes: file.byteLength, offset, bytes: file.subarray(offset, offset + partBytes) });
  }
}

test('snapshot install - the follower reopens holding the leader state at S, epochAt(S) known, and appends continue at S + 1', async () => {
  await withTempDir(async (root) => {
    const leader = await leaderSnapshot(nodeFileIo, join(root, 'leader'));
    const dir = join(root, 'follower');
    await followerLog(nodeFileIo, dir, 50);
    const receiver = new SnapshotReceiver(nodeFileIo, dir, SHARD);
    // Out of order: the receiver names the offset it expects.
    assert.is(await receiver.receive({ seq: 200, epochAtSeq: 4, fileBytes: leader.file.byteLength, offset: 16, bytes: leader.file.subarray(16, 32) }), 0);
    assert.is(await receiver.receive({ seq: 200, epochAtSeq: 4, fileBytes: leader.file.byteLength, offset: 0, bytes: leader.file.subarray(0, 16) }), 16);
    assert.is(await receiver.receive({ seq: 200, epochAtSeq: 4, fileBytes: leader.file.byteLength, offset: 48, bytes: leader.file.subarray(48, 64) }), 16, 'a skipped part is asked for again');
    // A part of another transfer (another seq) while this one runs: start over.
    assert.is(await receiver.receive({ seq: 150, epochAtSeq: 4, fileBytes: leader.file.byteLength, offset: 16, bytes: leader.file.subarray(16, 32) }), 0);
    // A table that does not end with the epoch at S, or out of order, is refused.
    for (const bad of [TABLE.slice(0, 2), [TABLE[1], TABLE[0], TABLE[2]], [{ epoch: 4, firstSeq: 201 }]]) {
      const error = await receiver.receive({ seq: 200, epochAtSeq: 4, epochStarts: bad, fileBytes: leader.file.byteLength, offset: 0, bytes: leader.file.subarray(0, 16) }).catch((caught: unknown) => caught);
      assert.ok(isTidelogError(error, 'BAD_REQUEST'), `table ${JSON.stringify(bad)} refused (${String(error)})`);
    }
    await sendAll(receiver, leader.file, 200, 4, 37, TABLE);
    const pending = await receiver.commit();
    assert.is(pending.fileName, installFileName(SHARD, 200, 4));
    const opened = await openState(nodeFileIo, dir);
    try {
      assert.is(opened.lastSeq, 200);
      assert.is(opened.state, leader.state, "the leader's state at 200");
      assert.is(opened.epochAtLast, 4, 'epochAt(S) is the epoch the leader named');
      assert.equal(opened.wal.epochStarts(), TABLE, "the leader's epoch table through S");
      assert.is(opened.wal.epochAt(150), 2, 'a seq the snapshot holds has the epoch that wrote it');
      assert.equal(opened.wal.epochEnd(3), { epoch: 2, endSeq: 180 }, "an older epoch's end, below S");
      assert.equal((await nodeFileIo.readdir(dir)).filter((name) => name.startsWith('install-')), [], 'no install file is left');
      assert.is(opened.firstSeq, 201);
      assert.equal(await opened.wal.appendMany(events(201, 3)), [201, 202, 203]);
    } finally {
      await opened.wal.close();
    }
  });
});

test('snapshot install - from a leader that sends no epoch table, the log knows the epoch at S only', async () => {
  await withTempDir(async (root) => {
    const leader = await leaderSnapshot(nodeFileIo, join(root, 'leader'));
    const dir = join(root, 'follower');
    await followerLog(nodeFileIo, dir, 50);
    const receiver = new SnapshotReceiver(nodeFileIo, dir, SHARD);
    await sendAll(receiver, leader.file, 200, 4, 4096);
    await receiver.commit();
    const opened = await openState(nodeFileIo, dir);
    try {
      assert.equal(opened.wal.epochStarts(), [{ epoch: 4, firstSeq: 200 }]);
      assert.is(opened.wal.epochAt(150), -1);
    } finally {
      await opened.wal.close();
    }
  });
});

test('snapshot install - a file that does not verify is refused and the old log is untouched', async () => {
  await withTempDir(async (root) => {
    const leader = await leaderSnapshot(nodeFileIo, join(root, 'leader'));
    const dir = join(root, 'follower');
    const oldState = await followerLog(nodeFileIo, dir, 50);
    for (const flipAt of [3, 70, leader.file.byteLength - 5]) {
      const damaged = leader.file.slice();
      damaged[flipAt] ^= 0x10;
      const receiver = new SnapshotReceiver(nodeFileIo, dir, SHARD);
      await sendAll(receiver, damaged, 200, 4, 64);
      const error = await receiver.commit().then(
        () => null,
        (caught: unknown) => caught,
      );
      assert.ok(isTidelogError(error, 'SNAPSHOT_DAMAGED'), `a flip at ${flipAt} is SNAPSHOT_DAMAGED (${String(error)})`);
      // Another shard's snapshot, or one at another seq than announced, is refused as well.
    }
    const wrongSeq = new SnapshotReceiver(nodeFileIo, dir, SHARD);
    await sendAll(wrongSeq, leader.file, 199, 4, 4096);
    assert.ok(isTidelogError(await wrongSeq.commit().catch((caught: unknown) => caught), 'SNAPSHOT_DAMAGED'), 'a snapshot announced at another seq');
    const opened = await openState(nodeFileIo, dir);
    try {
      assert.is(opened.lastSeq, 50);
      assert.is(opened.state, oldState);
    } finally {
      await opened.wal.close();
    }
  });
});

test('snapshot install - a power cut before or after any file operation leaves the old log or the installed one', async () => {
  const root = '/install';
  let sawOld = 0;
  let sawInstalled = 0;
  for (let cutAt = 0; ; cutAt++) {
    const disk = new MemoryDisk();
    const setup = disk.mount();
    await setup.mkdirp(root);
    const leader = await leaderSnapshot(setup, join(root, 'leader'));
    const dir = join(root, 'follower');
    const oldState = await followerLog(setup, dir, 50);
    // A FileIo that cuts the power just before its operation number `cutAt`.
    const live = disk.mount();
    let operations = 0;
    let isCut = false;
    const counted = new Proxy(live, {
      get(target, name: keyof FileIo) {
        const operation = target[name] as (...args: unknown[]) => Promise<unknown>;
        return (...args: unknown[]) => {
          if (operations++ === cutAt) {
            isCut = true;
            disk.powerCut();
          }
          return operation(...args);
        };
      },
    });
    const install = (async () => {
      const receiver = new SnapshotReceiver(counted, dir, SHARD);
      await sendAll(receiver, leader.file, 200, 4, 128, TABLE);
      await receiver.commit();
      await completeInstall(counted, dir, SHARD, 1n);
    })();
    // Operations on a dead mount never settle: give the install every microtask it can use.
    await Promise.race([install, new Promise((resolve) => setTimeout(resolve, 50))]);
    if (!isCut) {
      await install;
      disk.powerCut(); // every operation ran: the install must be durable as it stands
    }
    const opened = await openState(disk.mount(), dir);
    try {
      if (opened.lastSeq === 50) {
        assert.is(opened.state, oldState, `cut at ${cutAt}: the old log's state`);
        sawOld++;
      } else {
        assert.is(opened.lastSeq, 200, `cut at ${cutAt}: the installed log ends at S`);
        assert.is(opened.state, leader.state, `cut at ${cutAt}: the leader's state at S`);
        assert.is(opened.epochAtLast, 4, `cut at ${cutAt}: epochAt(S)`);
        assert.equal(opened.wal.epochStarts(), TABLE, `cut at ${cutAt}: the leader's epoch table`);
        sawInstalled++;
      }
      const leftovers = (await disk.mount().readdir(dir)).filter((name) => name.startsWith('install-'));
      assert.equal(leftovers, [], `cut at ${cutAt}: no install file left after the open`);
    } finally {
      await opened.wal.close();
    }
    if (!isCut) break;
  }
  assert.ok(sawOld > 5 && sawInstalled > 5, `both outcomes were reached (old ${sawOld}, installed ${sawInstalled})`);
});

test.run();
