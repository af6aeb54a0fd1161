// Three ShardReplicas of one shard in one process (real hosts, in-memory network, real
// timers with short timeouts): one is elected and serves; acks wait for a quorum; when the
// leader is stopped or cut off another takes over with every acknowledged event, and a
// producer's retry there is answered with the original seqs; a cut-off leader stops
// serving and its unacknowledged suffix is cut when it rejoins.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { encodeEvents, type SignalEvent } from '../../src/event.ts';
import type { SessionTag } from '../../src/transport/messages.ts';
import { FaultyFileIo } from '../support/faulty-file-io.ts';
import { ReplicaGroup, type GroupMember } from '../support/replica-group.ts';
import { until, within } from '../support/waits.ts';
import { removeDir } from '../support/wal-fixtures.ts';

/** States are compared decayed to one instant (a query decays scores to its time). */
const AT_NS = 1_900_000_000_000_000_000n;

function events(from: number, count: number): Uint8Array {
  const list: SignalEvent[] = [];
  for (let index = 0; index < count; index++) list.push({ entityId: BigInt(from + index), signalType: 1, weight: 1, timestampNs: 1_700_000_000_000_000_000n + BigInt(from + index) });
  return encodeEvents(list);
}

/** `count` events over 64 entities, each event distinct (its own timestamp). */
function fewEntities(round: number, count: number): Uint8Array {
  const list: SignalEvent[] = [];
  for (let index = 0; index < count; index++) list.push({ entityId: BigInt(7_000 + (index % 64)), signalType: 1, weight: 1, timestampNs: 1_800_000_000_000_000_000n + BigInt(round * count + index) });
  return encodeEvents(list);
}

function describe(group: ReplicaGroup): string {
  return group.members.map((m) => `${m.nodeId}=${m.replica?.phase ?? 'down'}@e${m.host?.epoch ?? '-'} c${m.host?.committedSeq ?? '-'} d${m.host?.durableSeq ?? '-'} first${m.host?.stats().segments[0]?.firstSeq ?? '-'}`).join(' ');
}

async function leaderOf(group: ReplicaGroup, except?: GroupMember, waitMs?: number): Promise<GroupMember> {
  await until(
    () => group.serving().filter((member) => member !== except).length === 1,
    () => `one serving leader (phases: ${group.members.map((m) => `${m.nodeId}=${m.replica?.phase ?? 'down'}@${m.host?.epoch ?? '-'}`).join(' ')})`,
    waitMs,
  );
  return group.serving().filter((member) => member !== except)[0];
}

test('shard replicas - one leader is elected, acks wait for a quorum, every replica folds the same committed log', async () => {
  const group = new ReplicaGroup({ nodes: 3 });
  try {
    await group.start();
    const leader = await leaderOf(group);
    // The shipper streams each durable batch from memory to followers that keep up: the
    // segments are not read (a follower behind would be served from them).
    let segmentReads = 0;
    const readSealed = leader.host!.readSealed.bind(leader.host!);
    leader.host!.readSealed = (fromSeq, maxBytes) => {
      segmentReads++;
      return readSealed(fromSeq, maxBytes);
    };
    const acks = await within(Promise.all([1, 2, 3].map((index) => leader.host!.append(events(index * 100, 50)))), 'three appends acked');
    assert.is(segmentReads, 0, 'followers that keep up are served from memory');
    assert.equal(acks.map((ack) => ack.runs[1]), [50, 50, 50]);
    const last = leader.host!.committedSeq;
    assert.ok(last >= 150, `committed ${last}`);
    for (const member of group.members) {
      await until(() => member.host!.committedSeq === last, `${member.nodeId} commits to ${last}`);
      assert.equal(member.host!.state.query(101n, [1], AT_NS), leader.host!.state.query(101n, [1], AT_NS), `${member.nodeId} folded the same state`);
      assert.is(member.host!.epoch, leader.host!.epoch);
    }
    assert.is(group.serving().length, 1, 'exactly one replica serves');
  } finally {
    await group.close();
  }
});

test('shard replicas - the leader stops: another takes over with every acked event, a retry gets its original seqs', async () => {
  const group = new ReplicaGroup({ nodes: 3 });
  try {
    await group.start();
    const first = await leaderOf(group);
    const tags: SessionTag[] = [1, 2].map((requestSeq) => ({ producerId: 'p', sessionEpoch: 1, requestSeq }));
    const acked = await Promise.all(tags.map((tag, index) => first.host!.append(events(index * 10 + 1, 10), tag)));
    const firstEpoch = first.host!.epoch;
    await group.stopMember(first);
    const second = await leaderOf(group, first);
    assert.ok(second.host!.epoch > firstEpoch, 'a newer epoch');
    const retried = await second.host!.append(events(11, 10), tags[1]);
    assert.equal([retried.outcome, retried.runs], ['replayed', acked[1].runs], 'the retry is answered with its original seqs');
    const more = await within(second.host!.append(events(21, 10), { producerId: 'p', sessionEpoch: 1, requestSeq: 3 }), 'an append on the new leader');
    assert.is(more.outcome, 'new');
    // The old leader comes back as a follower and catches up.
    await group.startMember(first);
    await until(() => first.host!.committedSeq === second.host!.committedSeq && first.host!.committedSeq >= 30, 'the old leader catches up');
    assert.is(first.replica!.serving, false);
    assert.equal(first.host!.state.query(25n, [1], AT_NS), second.host!.state.query(25n, [1], AT_NS));
  } finally {
    await group.close();
  }
});

test("shard replicas - acks 'all' waits for every replica: with one down an append stays unacknowledged until it returns", async () => {
  const group = new ReplicaGroup({ nodes: 3, acks: 'all' });
  try {
    await group.start();
    const leader = await leaderOf(group);
    await within(leader.host!.append(events(1, 10)), 'an append with every replica up');
    const away = group.members.find((member) => member !== leader)!;
    await group.stopMember(away);
    let isAcked = false;
    const pending = leader.host!.append(events(100, 10)).then((ack) => {
      isAcked = true;
      return ack;
    });
    const other = group.members.find((member) => member !== leader && member !== away)!;
    // The leader knows the remaining follower holds it (with quorum acks it would commit now).
    await until(() => leader.host!.durableSeq > 10 && (leader.replica!.status().followers?.[other.nodeId] ?? 0) === leader.host!.durableSeq, 'the leader sees the remaining follower hold the append');
    await new Promise((resolve) => setImmediate(resolve));
    assert.is(isAcked, false, 'a quorum holds it, but not every replica: no ack');
    assert.is(leader.host!.committedSeq, 10);
    await group.startMember(away);
    const ack = await within(pending, 'the ack once the third replica holds it');
    assert.is(ack.runs[0], 11);
  } finally {
    await group.close();
  }
});

test('shard replicas - a stopping leader hands off: a caught-up follower campaigns at once, with every acked event', async () => {
  const group = new ReplicaGroup({ nodes: 3, leaderTimeoutMs: 60_000 });
  try {
    await group.start();
    // With a one-minute leader timeout only a handoff elects a leader within this test's
    // waits: the first election is started the same way (a campaign-now at epoch 0).
    await group.member('n1').replica!.server.campaignNow({ shard: 0, epoch: 0, leaderId: 'test' });
    const first = await leaderOf(group);
    assert.is(first.nodeId, 'n1');
    const acked = await first.host!.append(events(1, 30));
    const to = await first.replica!.handOff();
    assert.ok(to !== null && to !== first.nodeId, `handed to ${to}`);
    assert.is(first.replica!.serving, false, 'the old leader stops serving as it hands off');
    await group.stopMember(first);
    const next = await leaderOf(group, first);
    assert.is(next.nodeId, to, 'the follower it chose leads');
    const page = await next.host!.read(acked.runs[0], 30);
    assert.is(page.batches.reduce((sum, batch) => sum + batch.events.byteLength / 21, 0), 30, 'with every acked event');
  } finally {
    await group.close();
  }
});

test('shard replicas - a leader cut off from both followers stops serving; its unacked suffix is cut when it rejoins', async () => {
  const group = new ReplicaGroup({ nodes: 3 });
  try {
    await group.start();
    const old = await leaderOf(group);
    await old.host!.append(events(1, 10));
    const committedBefore = old.host!.committedSeq;
    group.net.isolate(old.nodeId, group.ids);
    // Written and durable on the cut-off leader, never on a quorum: never acknowledged.
    let orphanSettled: string | null = null;
    old.host!.append(events(1000, 5)).then(
      () => (orphanSettled = 'acked'),
      (error: Error) => (orphanSettled = (error as { code?: string }).code ?? error.message),
    );
    await until(() => old.host!.durableSeq > committedBefore, 'the orphan append is durable on the old leader');
    const fresh = await leaderOf(group, old);
    await until(() => old.replica!.serving === false, 'the cut-off leader stops serving');
    const acked = await fresh.host!.append(events(2000, 7));
    assert.is(acked.runs[0], committedBefore + 1, 'the new leader writes after the committed prefix');
    group.net.heal();
    await until(() => old.host!.committedSeq === fresh.host!.committedSeq, 'the old leader follows the new one');
    await until(() => orphanSettled !== null, 'the orphan append is answered');
    assert.is(orphanSettled, 'TRUNCATED', 'the orphan was never acknowledged, and is cut');
    assert.is(old.host!.query(1000n, [1])[0]?.count ?? 0, 0, 'the orphan is not in the old leader\'s state');
    assert.is(old.host!.query(2000n, [1])[0]?.count, 1);
  } finally {
    await group.close();
  }
});

test('shard replicas - a follower cut off for several leader timeouts claims no epoch (pre-vote); back, it follows the same leader', async () => {
  const group = new ReplicaGroup({ nodes: 3 });
  try {
    await group.start();
    const leader = await leaderOf(group);
    await leader.host!.append(events(1, 10));
    const epoch = leader.host!.epoch;
    const claimed = (await group.store.latest(0))?.epoch;
    const cutOff = group.members.find((member) => member !== leader)!;
    group.net.isolate(cutOff.nodeId, group.ids);
    // Three leader timeouts at least (each campaign waits 1–2 s): it campaigns, and fails.
    const changesBefore = cutOff.changes.length;
    await new Promise((resolve) => setTimeout(resolve, 4_500));
    const tried = cutOff.changes.slice(changesBefore);
    assert.ok(tried.filter((change) => change.includes('pre-vote: 1 of 3')).length >= 2, `the cut-off follower campaigned, and its pre-votes failed (${tried.join(' | ')})`);
    assert.is((await group.store.latest(0))?.epoch, claimed, 'no epoch was claimed while it was cut off');
    await leader.host!.append(events(100, 10));
    group.net.heal();
    await until(() => cutOff.host!.committedSeq === leader.host!.committedSeq, () => `the follower catches up (${describe(group)})`);
    assert.ok(leader.replica!.serving, 'the leader was never deposed');
    assert.is(leader.host!.epoch, epoch, 'the leader keeps its epoch');
    assert.is(cutOff.host!.epoch, epoch, 'the follower returns to the leader\'s epoch');
  } finally {
    await group.close();
  }
});

test('shard replicas - a leader whose fsync fails leaves the quorum: it stops serving for good, the others elect and go on', async () => {
  const disks = new Map(['n1', 'n2', 'n3'].map((nodeId) => [nodeId, new FaultyFileIo()]));
  const group = new ReplicaGroup({ nodes: 3, fsync: 'full', io: (nodeId) => disks.get(nodeId) });
  try {
    await group.start();
    const leader = await leaderOf(group);
    await leader.host!.append(events(1, 10));
    disks.get(leader.nodeId)!.inject({ op: 'datasync', path: /wal-/, code: 'EIO' });
    const failed = await leader.host!.append(events(100, 10)).then(
      () => null,
      (error: Error & { code?: string }) => error.code,
    );
    assert.is(failed, 'FSYNC_FAILED');
    await until(() => leader.replica!.phase === 'failed', () => `the failed leader steps down for good (${describe(group)})`);
    const next = await leaderOf(group, leader);
    const acked = await next.host!.append(events(200, 10));
    assert.ok(acked.runs[0] > 10, 'the others go on after what was committed');
    assert.is(leader.replica!.phase, 'failed', 'and it takes no part');
  } finally {
    await group.close();
  }
});

test('shard replicas - retention keeps what a stopped follower lacks; it catches up from segments, then retention goes on', async () => {
  const group = new ReplicaGroup({
    nodes: 3,
    wal: { segmentBytes: 16 << 10, retention: { maxAgeMs: 0, maxBytes: 64 << 10 }, snapshotLogRatio: 1, snapshotMinLogBytes: 8 << 10, snapshotMaxBytesPerSecond: 0 },
  });
  try {
    await group.start();
    const leader = await leaderOf(group);
    const away = group.members.find((member) => member !== leader)!;
    await group.stopMember(away);
    // Far more than maxBytes while the follower is away: segments rotate, snapshots are taken
    // (few entities, so snapshots stay small and come often).
    for (let round = 0; round < 40; round++) await within(leader.host!.append(fewEntities(round, 200)), `append ${round} while a follower is away (${describe(group)})`);
    const held = leader.host!.stats();
    assert.is(held.segments[0].firstSeq, 1, 'the leader kept every segment the stopped follower lacks');
    assert.ok(held.logBytes > 64 << 10, `the hold kept ${held.logBytes} bytes, above maxBytes`);
    await group.startMember(away);
    await until(() => away.host!.committedSeq === leader.host!.committedSeq, 'the follower catches up from the segments');
    assert.equal(away.host!.state.query(7_001n, [1], AT_NS), leader.host!.state.query(7_001n, [1], AT_NS));
    // Once every follower holds the log, retention deletes again (behind the next snapshot).
    for (let round = 40; round < 400 && leader.host!.stats().segments[0].firstSeq === 1; round++) {
      await within(leader.host!.append(fewEntities(round, 200)), `append ${round} after the follower returned (${describe(group)})`);
    }
    assert.ok(leader.host!.stats().segments[0].firstSeq > 1, 'retention resumes on the leader');
    await until(() => away.host!.stats().segments[0].firstSeq > 1, 'and on the followers, told by the leader');
  } finally {
    // A close that never ended (the writer closed its flush worker before close() ran its
    // last task, the replica file) hung this test in 4 of 10 runs before the fix.
    await within(group.close(), 'the replicas close');
  }
});

/** The sealed batches of a host's log from `fromSeq`, as hex (equal logs: equal lists). */
async function logFrom(member: GroupMember, fromSeq: number): Promise<string[]> {
  const batches = await member.host!.readSealed(fromSeq, Number.MAX_SAFE_INTEGER);
  return batches.map((batch) => Buffer.from(batch).toString('hex'));
}

const INSTALL_WAL = { segmentBytes: 64 << 10, retention: { maxAgeMs: 0, maxBytes: 256 << 10 }, snapshotLogRatio: 1, snapshotMinLogBytes: 64 << 10, snapshotMaxBytesPerSecond: 0 };

/**
 * Appends rounds of distinct entities (the state, and so each snapshot, grows to megabytes)
 * until the leader's retention has deleted seq `pastSeq`; returns the rounds appended.
 */
async function appendUntilTrimmed(group: ReplicaGroup, leader: GroupMember, pastSeq: number, firstRound: number, minSnapshotBytes = 0): Promise<number> {
  let round = firstRound;
  const isDone = (): boolean => leader.host!.firstSeq > pastSeq && (leader.host!.newestSnapshot()?.bytes ?? 0) >= minSnapshotBytes;
  for (; round < firstRound + 400 && !isDone(); round++) {
    await within(leader.host!.append(events(100_000 + round * 2_000, 2_000)), `append ${round} (${describe(group)})`);
  }
  assert.ok(leader.host!.firstSeq > pastSeq, `the leader's retention deleted seq ${pastSeq} (${describe(group)})`);
  return round;
}

test('shard replicas - a follower silent past retentionWaitMs holds no segment; back, it is sent the newest snapshot, catches up, and can lead', async () => {
  const group = new ReplicaGroup({ nodes: 3, retentionWaitMs: 300, wal: INSTALL_WAL });
  try {
    await group.start();
    const leader = await leaderOf(group);
    const away = group.members.find((member) => member !== leader)!;
    await within(leader.host!.append(events(1, 100)), 'a first append');
    await until(() => away.host!.committedSeq >= 100, 'the follower holds the first append');
    const awayEnd = away.host!.durableSeq;
    await group.stopMember(away);
    await new Promise((resolve) => setTimeout(resolve, 400));
    // The follower is silent past the wait: retention deletes what it lacks.
    const rounds = await appendUntilTrimmed(group, leader, awayEnd + 1, 0, 3 * (512 << 10));
    const snapshot = leader.host!.newestSnapshot()!;
    assert.ok(snapshot.bytes > 2 * (512 << 10), `the snapshot spans several install parts (${snapshot.bytes} bytes)`);
    await group.startMember(away);
    await until(() => away.host!.committedSeq === leader.host!.committedSeq, () => `the returning follower is installed and catches up (${describe(group)})`, 20_000);
    const first = away.host!.firstSeq;
    assert.ok(first > awayEnd + 1, `its log now starts after the snapshot (${first})`);
    assert.equal(await logFrom(away, first), await logFrom(leader, first), 'its log equals the leader log from there');
    // The leader's epoch table came with the snapshot: the seqs the snapshot holds have their epochs.
    assert.equal(away.host!.epochStarts(), leader.host!.epochStarts(), "the leader's epoch table");
    assert.is(away.host!.epochAt(first - 2), leader.host!.epochAt(first - 2), 'the epoch of a seq below the snapshot');
    for (const entity of [1n, 50n, 100_000n, 100_000n + BigInt(rounds * 1_000), 100_000n + BigInt(rounds * 2_000 - 1)]) {
      const expected = leader.host!.state.query(entity, [1], AT_NS);
      assert.is(expected[0]?.count, 1, `entity ${entity} was appended once`);
      assert.equal(away.host!.state.query(entity, [1], AT_NS), expected, `entity ${entity}: same state`);
    }
    // The installed replica is a full member: with the old leader stopped, a leader is elected
    // and holds every acknowledged event.
    const committed = leader.host!.committedSeq;
    await group.stopMember(leader);
    const next = await leaderOf(group, undefined, 10_000);
    assert.ok(next.host!.committedSeq >= committed, `the next leader (${next.nodeId}) holds every acknowledged event`);
    await within(next.host!.append(events(900_000, 10)), 'the next leader serves');
  } finally {
    await within(group.close(), 'the replicas close');
  }
});

test('shard replicas - a replica whose disk was lost (empty data dir) is caught up from the newest snapshot', async () => {
  const group = new ReplicaGroup({ nodes: 3, wal: INSTALL_WAL });
  try {
    await group.start();
    const leader = await leaderOf(group);
    await appendUntilTrimmed(group, leader, 1, 0);
    const lost = group.members.find((member) => member !== leader)!;
    await group.stopMember(lost);
    removeDir(lost.dir);
    await group.startMember(lost);
    assert.is(lost.host!.durableSeq, 0, 'the replaced replica starts empty');
    await within(leader.host!.append(events(800_000, 10)), 'an append while it returns');
    await until(() => lost.host!.committedSeq === leader.host!.committedSeq, () => `the empty replica is installed and catches up (${describe(group)})`, 20_000);
    assert.ok(lost.host!.firstSeq > 1, 'from a snapshot, not from seq 1');
    assert.equal(await logFrom(lost, lost.host!.firstSeq), await logFrom(leader, lost.host!.firstSeq));
    assert.equal(lost.host!.state.query(800_005n, [1], AT_NS), leader.host!.state.query(800_005n, [1], AT_NS));
    assert.equal(lost.host!.state.query(100_001n, [1], AT_NS), leader.host!.state.query(100_001n, [1], AT_NS));
  } finally {
    await within(group.close(), 'the replicas close');
  }
});

test.run();
