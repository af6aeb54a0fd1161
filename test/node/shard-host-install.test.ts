// ShardHost.receiveSnapshot at its edges (found by review): a directory sync that fails after
// the install's rename may have committed it, so the host stops taking batches on its old log
// (the next open installs; before the fix the old log went on and a later open replaced
// acknowledged batches past S with the snapshot); and a close while an install reopens the
// WAL leaves nothing open behind (before the fix a second WAL kept the directory lock).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { join } from 'node:path';
import { isTidelogError } from '../../src/errors.ts';
import { encodeEvents, type SignalEvent } from '../../src/event.ts';
import type { ShardHost } from '../../src/node/shard-host.ts';
import { nodeFileIo, type FileIo } from '../../src/wal/index.ts';
import { openReplicaHost } from '../support/replica-host.ts';
import { withTempDir } from '../support/wal-fixtures.ts';

function events(from: number, count: number): Uint8Array {
  const list: SignalEvent[] = [];
  for (let index = 0; index < count; index++) list.push({ entityId: BigInt(from + index), signalType: 1, weight: 1, timestampNs: 1_700_000_000_000_000_000n + BigInt(from + index) });
  return encodeEvents(list);
}

const SNAPSHOTS = { snapshotLogRatio: 1, snapshotMinLogBytes: 1024, snapshotMaxBytesPerSecond: 0 };

/** A leader that snapshotted: its snapshot file, whole, and where it stands. */
async function leaderSnapshot(dir: string): Promise<{ file: Uint8Array; seq: number; epochAtSeq: number }> {
  const leader = await openReplicaHost(dir, { fsync: 'full', epoch: 1, wal: SNAPSHOTS });
  try {
    await leader.lead(1);
    for (let round = 0; round < 20 && leader.newestSnapshot() === null; round++) {
      const appended = leader.append(events(round * 500, 500));
      while (leader.durableSeq < (round + 1) * 500) await new Promise((resolve) => setTimeout(resolve, 1));
      await leader.commitTo(leader.durableSeq);
      await appended;
    }
    const snapshot = leader.newestSnapshot();
    assert.ok(snapshot !== null, 'the leader snapshotted');
    return { file: await leader.readSnapshotPart(snapshot.fileName, 0, 1 << 30), seq: snapshot.seq, epochAtSeq: leader.epochAt(snapshot.seq) };
  } finally {
    await leader.close();
  }
}

/** A FileIo that runs `onInstallRename` at the first directory sync after the install's rename. */
function installHook(onSyncAfterRename: () => Promise<void>): FileIo {
  let isArmed = false;
  return {
    ...nodeFileIo,
    rename: async (from, to) => {
      await nodeFileIo.rename(from, to);
      if (to.includes('install-') && to.endsWith('.snap')) isArmed = true;
    },
    syncDir: async (dir) => {
      if (isArmed) {
        isArmed = false;
        await onSyncAfterRename();
        return;
      }
      await nodeFileIo.syncDir(dir);
    },
  };
}

test('shard host install - a failed directory sync after the commit rename stops the host; the next open installs', async () => {
  await withTempDir(async (root) => {
    const leader = await leaderSnapshot(join(root, 'leader'));
    const io = installHook(async () => {
      throw Object.assign(new Error('EIO: sync'), { code: 'EIO' });
    });
    const dir = join(root, 'follower');
    const host = await openReplicaHost(dir, { fsync: 'full', epoch: 1, io });
    const outcome = await host.receiveSnapshot({ seq: leader.seq, epochAtSeq: leader.epochAtSeq, fileBytes: leader.file.byteLength, offset: 0, bytes: leader.file }).catch((error: unknown) => error);
    assert.ok(isTidelogError(outcome, 'IO_ERROR'), `the install reports the failure (${String(outcome)})`);
    assert.ok(host.failure !== null, 'the host is stopped: its old log takes nothing more');
    const more = await host.receiveSnapshot({ seq: leader.seq, epochAtSeq: leader.epochAtSeq, fileBytes: leader.file.byteLength, offset: 0, bytes: leader.file }).catch((error: unknown) => error);
    assert.ok(more instanceof Error, 'and refuses further work');
    await host.close();
    const reopened = await openReplicaHost(dir, { fsync: 'full', epoch: null });
    try {
      assert.is(reopened.durableSeq, leader.seq, 'the next open completed the install');
      assert.is(reopened.committedSeq, leader.seq);
    } finally {
      await reopened.close();
    }
  });
});

test('shard host install - a close while the install reopens the WAL leaves no WAL open behind', async () => {
  await withTempDir(async (root) => {
    const leader = await leaderSnapshot(join(root, 'leader'));
    let host: ShardHost | null = null;
    let closing: Promise<void> | null = null;
    const io = installHook(async () => {
      await nodeFileIo.syncDir(join(root, 'follower', 'wal'));
      closing = host!.close(); // the node closes the shard now
    });
    const dir = join(root, 'follower');
    host = await openReplicaHost(dir, { fsync: 'full', epoch: 1, io });
    const outcome = await host.receiveSnapshot({ seq: leader.seq, epochAtSeq: leader.epochAtSeq, fileBytes: leader.file.byteLength, offset: 0, bytes: leader.file }).catch((error: unknown) => error);
    await closing;
    assert.ok(isTidelogError(outcome, 'CLOSED') || !(outcome instanceof Error), `the install ends (${String(outcome)})`);
    const again = await openReplicaHost(dir, { fsync: 'full', epoch: null });
    try {
      assert.is(again.durableSeq, leader.seq, 'the shard opens again, installed');
    } finally {
      await again.close();
    }
  });
});

test.run();
