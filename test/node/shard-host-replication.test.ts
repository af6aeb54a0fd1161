// A shard host with commit: 'external', as a replica: a leader ships its durable batches to a
// follower verbatim, the commit point (a quorum of 2) releases acks, the CRDT fold and reads
// on both; a producer's retry sent to the follower after it takes over is answered with the
// original seqs (sessions ride in the batches); a deposed leader's suffix is cut.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { encodeEvents, type SignalEvent } from '../../src/event.ts';
import type { SessionTag } from '../../src/transport/messages.ts';
import { removeDir, tempDir } from '../support/wal-fixtures.ts';
import { openReplicaHost } from '../support/replica-host.ts';
import { until } from '../support/waits.ts';

function events(from: number, count: number): Uint8Array {
  const list: SignalEvent[] = [];
  for (let index = 0; index < count; index++) list.push({ entityId: BigInt(from + index), signalType: 1, weight: 1, timestampNs: 1_700_000_000_000_000_000n + BigInt(from + index) });
  return encodeEvents(list);
}

test('shard-host replication - quorum commit, the same state on both replicas, a retry answered by the new leader with the original seqs', async () => {
  const leaderDir = tempDir('leader');
  const followerDir = tempDir('follower');
  const shipped: Uint8Array[] = [];
  const leader = await openReplicaHost(leaderDir, { fsync: 'full', onDurable: (info) => shipped.push(info.sealed?.slice() ?? new Uint8Array(0)) });
  const follower = await openReplicaHost(followerDir, { fsync: 'full' });
  try {
    const tags: SessionTag[] = [1, 2, 3].map((requestSeq) => ({ producerId: 'producer-1', sessionEpoch: 1, requestSeq }));
    await leader.lead(1);
    const appends = tags.map((tag, index) => leader.append(events(index * 10 + 1, 10), tag));
    await until(() => leader.durableSeq === 30, 'the leader has 30 durable');
    assert.is(leader.hwm, 0, 'nothing is readable before a quorum has it');
    // The shipper: every durable batch to the follower, in order; the HWM is the quorum's (2 of 2).
    for (const batch of shipped) await follower.appendSealed(batch);
    const hwm = Math.min(leader.durableSeq, follower.durableSeq);
    await leader.commitTo(hwm);
    await follower.commitTo(hwm);
    const acks = await Promise.all(appends);
    assert.equal(
      acks.map((ack) => ack.runs),
      [
        [1, 10],
        [11, 10],
        [21, 10],
      ],
    );
    assert.is(follower.hwm, 30);
    for (const entity of [1n, 15n, 30n]) {
      assert.is(follower.query(entity, [1])[0].count, 1, `entity ${entity} counted on the follower`);
      assert.equal(follower.state.query(entity, undefined, 1_900_000_000_000_000_000n), leader.state.query(entity, undefined, 1_900_000_000_000_000_000n), `entity ${entity} is the same on both`);
    }
    const page = await follower.read(1, 100);
    assert.is(page.batches.reduce((sum, batch) => sum + batch.events.byteLength / 21, 0), 30);

    // The leader is gone; the follower takes over at epoch 2. The producer retries request 3.
    await follower.lead(2);
    const retry = follower.append(events(21, 10), tags[2]);
    const replayed = await retry;
    assert.equal([replayed.outcome, replayed.runs], ['replayed', [21, 10]], 'answered from the session the batches carried');
    const fresh = follower.append(events(31, 5), { producerId: 'producer-1', sessionEpoch: 1, requestSeq: 4 });
    await until(() => follower.durableSeq === 35, 'the new leader writes on');
    await follower.commitTo(35);
    assert.equal((await fresh).runs, [31, 5]);
    assert.is(follower.status().epoch, 2);
    assert.is(follower.status().role, 'leader');
  } finally {
    await leader.close();
    await follower.close();
    removeDir(leaderDir);
    removeDir(followerDir);
  }
});

test('shard-host replication - a deposed leader cuts its uncommitted suffix: its callers are told, and state and reads never saw it', async () => {
  const dir = tempDir('deposed');
  const host = await openReplicaHost(dir, { fsync: 'full' });
  try {
    await host.lead(1);
    const committed = host.append(events(1, 5), { producerId: 'p', sessionEpoch: 1, requestSeq: 1 });
    await until(() => host.durableSeq === 5, 'durable');
    await host.commitTo(5);
    await committed;
    const orphan = host.append(events(6, 5), { producerId: 'p', sessionEpoch: 1, requestSeq: 2 }).then(
      () => 'acked',
      (error: { code?: string }) => error.code,
    );
    await until(() => host.durableSeq === 10, 'the suffix is durable here only');
    assert.is(host.query(6n, [1])[0].count, 0, 'not folded: never committed');
    assert.is((await host.read(1, 100)).hwm, 5, 'and not readable');
    assert.is(await host.truncateAfter(5), 5);
    assert.is(await orphan, 'TRUNCATED');
    assert.is(host.durableSeq, 5);
    // The producer's retry of request 2 is written again (its session never recorded it).
    const retry = host.append(events(6, 5), { producerId: 'p', sessionEpoch: 1, requestSeq: 2 });
    await until(() => host.durableSeq === 10, 'written again');
    await host.commitTo(10);
    assert.equal((await retry).runs, [6, 5]);
    assert.is(host.query(6n, [1])[0].count, 1, 'counted once');
  } finally {
    await host.close();
    removeDir(dir);
  }
});

test.run();
