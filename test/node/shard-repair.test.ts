// Repair from peers (docs/REPLICATION.md): a replica whose old segment fails its checksum opens
// on its intact prefix with a durable repair marker instead of staying stopped, does not vote
// while the marker stands (it may lack batches it acknowledged), and is brought back by its
// leader; the marker goes once its log holds the leader's past the leader's commit point.
// Bits are flipped in a follower's and in a (former) leader's old segment.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { encodeEvents, type SignalEvent } from '../../src/event.ts';
import { repairMarkerFileName } from '../../src/wal/index.ts';
import { defaultSignalSchema } from '../../src/crdt/index.ts';
import { FollowerReplica, type ReplicateRequest } from '../../src/node/replication.ts';
import { ShardHost } from '../../src/node/shard-host.ts';
import { FaultyFileIo } from '../support/faulty-file-io.ts';
import { ReplicaGroup, type GroupMember } from '../support/replica-group.ts';
import { rejection, removeDir, tempDir } from '../support/wal-fixtures.ts';
import { until } from '../support/waits.ts';

function events(from: number, count: number): Uint8Array {
  const list: SignalEvent[] = [];
  for (let index = 0; index < count; index++) list.push({ entityId: BigInt(from + index), signalType: 1, weight: 1, timestampNs: 1_700_000_000_000_000_000n + BigInt(from + index) });
  return encodeEvents(list);
}

/** Small segments, so the first one is old (not the tail) after a few dozen batches. */
function group(): ReplicaGroup {
  return new ReplicaGroup({ nodes: 3, wal: { segmentBytes: 4096 } });
}

async function leaderOf(group: ReplicaGroup, except: GroupMember[] = []): Promise<GroupMember> {
  let serving: GroupMember[] = [];
  await until(() => (serving = group.serving().filter((member) => !except.includes(member))).length === 1, () => `one serving leader (${describe(group)})`, 20_000);
  return serving[0];
}

function describe(group: ReplicaGroup): string {
  return group.members.map((m) => `${m.nodeId}=${m.replica?.phase ?? 'down'}@e${m.host?.epoch ?? '-'} d${m.host?.durableSeq ?? '-'} c${m.host?.committedSeq ?? '-'}${m.host?.isRepairing ? ' repairing' : ''}`).join(' ');
}

/** Flips one byte in the middle of the member's oldest segment (it must not be the newest). */
function flipOldSegment(member: GroupMember): string {
  const walDir = join(member.dir, 'wal');
  const segments = readdirSync(walDir).filter((name) => name.endsWith('.seg')).sort();
  assert.ok(segments.length >= 3, `several segments (${segments.join(', ')})`);
  const path = join(walDir, segments[0]);
  const bytes = readFileSync(path);
  const offset = Math.floor(bytes.byteLength / 2);
  bytes[offset] ^= 0x5a;
  writeFileSync(path, bytes);
  return segments[0];
}

async function fill(leader: GroupMember, batches: number, from = 1): Promise<void> {
  for (let index = 0; index < batches; index++) await leader.host!.append(events(from + index * 10, 10));
}

async function logOf(member: GroupMember): Promise<string> {
  const batches = await member.host!.readSealed(1, Number.MAX_SAFE_INTEGER);
  return batches.map((batch) => Buffer.from(batch).toString('hex')).join('|');
}

test('shard repair - a follower\'s old segment flipped: it opens repairing on its intact prefix, refuses to vote, and its leader brings it back', async () => {
  const cluster = group();
  try {
    await cluster.start();
    const leader = await leaderOf(cluster);
    await fill(leader, 40);
    const follower = cluster.members.find((member) => member !== leader)!;
    await until(() => follower.host!.committedSeq === leader.host!.committedSeq, 'the follower holds everything');
    const durableBefore = follower.host!.durableSeq;
    await cluster.stopMember(follower);
    flipOldSegment(follower);
    await cluster.startMember(follower);
    // Checked at once: the leader's next heartbeat (100 ms) starts the catch-up.
    const host = follower.host!;
    assert.ok(host.isRepairing, 'it opened (not stopped), repairing');
    assert.ok(existsSync(join(follower.dir, 'wal', repairMarkerFileName(0))), 'the marker is on disk while repairing');
    assert.ok(host.durableSeq < durableBefore, `cut back to its intact prefix (${host.durableSeq} < ${durableBefore})`);
    assert.is(host.status().repairing, true, 'status says so');
    await fill(leader, 2, 10_000);
    await until(() => !follower.host!.isRepairing && follower.host!.durableSeq === leader.host!.durableSeq, () => `repaired (${describe(cluster)})`);
    assert.not.ok(existsSync(join(follower.dir, 'wal', repairMarkerFileName(0))), 'the marker is gone');
    assert.is(await logOf(follower), await logOf(leader), 'the follower holds the leader\'s log byte for byte');
    assert.ok(leader.replica!.serving, 'the leader served throughout');
  } finally {
    await cluster.close();
  }
});

test('shard repair - a former leader\'s old segment flipped: the others lead on; it returns repairing and is brought back', async () => {
  const cluster = group();
  try {
    await cluster.start();
    const old = await leaderOf(cluster);
    await fill(old, 40);
    await until(() => cluster.members.every((member) => member.host!.committedSeq === old.host!.committedSeq), 'every replica holds everything');
    await cluster.stopMember(old);
    flipOldSegment(old);
    const fresh = await leaderOf(cluster, [old]);
    await fill(fresh, 5, 20_000);
    await cluster.startMember(old);
    assert.ok(old.host!.isRepairing, `the former leader opens repairing (${describe(cluster)})`);
    await until(() => !old.host!.isRepairing && old.host!.durableSeq === fresh.host!.durableSeq, () => `repaired (${describe(cluster)})`);
    assert.is(await logOf(old), await logOf(fresh));
    assert.is(old.host!.query(20_000n, [1])[0]?.count, 1, 'its state holds what was written while it was away');
  } finally {
    await cluster.close();
  }
});

test('shard repair - a repairing replica does not make a quorum: with the leader gone it and the other cannot elect; the leader back, all three converge', async () => {
  const cluster = group();
  try {
    await cluster.start();
    const leader = await leaderOf(cluster);
    await fill(leader, 40);
    const [damaged, other] = cluster.members.filter((member) => member !== leader);
    await until(() => cluster.members.every((member) => member.host!.committedSeq === leader.host!.committedSeq), 'every replica holds everything');
    await cluster.stopMember(damaged);
    flipOldSegment(damaged);
    await cluster.stopMember(leader);
    await cluster.startMember(damaged);
    assert.ok(damaged.host!.isRepairing);
    const refused = await rejection(() => damaged.replica!.server.prepare({ shard: 0, epoch: damaged.host!.epoch + 100, candidateId: 'probe' }));
    assert.is(refused.code, 'REPAIRING', 'a prepare is refused: no vote');
    // Several leader timeouts (1–2 s each): the other campaigns; the repairing replica grants
    // no pre-vote (it could not vote), so no epoch is even claimed.
    const claimed = (await cluster.store.latest(0))?.epoch;
    await new Promise((resolve) => setTimeout(resolve, 4_000));
    assert.is(cluster.serving().length, 0, `no leader without a voter holding the committed log (${describe(cluster)})`);
    assert.ok(other.changes.some((change) => change.includes('pre-vote: 1 of 3')), `the other's campaigns got no quorum (${other.changes.slice(-4).join(' | ')})`);
    assert.is((await cluster.store.latest(0))?.epoch, claimed, 'no epoch claimed meanwhile');
    await cluster.startMember(leader);
    const next = await leaderOf(cluster);
    assert.not.equal(next, damaged, 'the repairing replica does not lead');
    await until(() => !damaged.host!.isRepairing && damaged.host!.durableSeq === next.host!.durableSeq, () => `repaired (${describe(cluster)})`);
    assert.is(await logOf(damaged), await logOf(next));
  } finally {
    await cluster.close();
  }
});

test('shard repair - a directory sync that fails while the marker is removed fails that request only: the next one ends the repair', async () => {
  const dir = tempDir('repair-syncdir');
  const io = new FaultyFileIo();
  const host = await ShardHost.open({ shard: 0, dataDir: dir, wal: { fsync: 'full', batchLingerMs: 0 }, schema: defaultSignalSchema(), sessions: {}, recentBytes: 1 << 20, publishFeed: () => undefined, commit: 'external', io, repairFromPeers: true, startRepair: { code: 'EMPTY_LOG', message: 'test' } });
  try {
    assert.ok(host.isRepairing);
    const follower = new FollowerReplica(host);
    const heartbeat: ReplicateRequest = { shard: 0, epoch: 1, leaderId: 'l', hwm: 0, leadEnd: 0, prevSeq: 0, prevEpoch: 0, batches: [] };
    // Epoch 1 recorded first, by a request that cannot end the repair (leadEnd beyond the log).
    assert.equal(await follower.handle({ ...heartbeat, leadEnd: 1 }), { kind: 'ok', matchSeq: 0 });
    assert.ok(host.isRepairing);
    // Ending the repair: the marker's unlink, then its directory sync — which fails.
    io.inject({ op: 'syncDir', skip: 1, times: 1, code: 'EIO' });
    const first = await rejection(() => follower.handle(heartbeat));
    assert.match(first.message, /EIO/);
    assert.ok(host.isRepairing, 'not ended while its removal is not durable');
    assert.equal(await follower.handle(heartbeat), { kind: 'ok', matchSeq: 0 });
    assert.not.ok(host.isRepairing, 'the next request ends it (the marker already gone is no error)');
  } finally {
    await host.close().catch(() => undefined);
    removeDir(dir);
  }
});

test.run();
