// A real cluster (3 nats-servers, 3 `tidelog serve` processes, R = 3) with retention on: a
// follower killed under load stays away past `cluster.retentionWaitMs`, so the leader's
// retention deletes what it lacks. Restarted, it is sent the leader's newest snapshot over
// NATS, catches up, and can lead: with the old leader killed, every acknowledged event still
// in the log reads back exactly once. Then that leader returns with an empty disk: it opens
// repairing (no replica file while the shard has epochs claimed) and votes again once caught up.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createConsumer, createProducer } from '../../src/client/index.ts';
import { TidelogCluster, shardOf } from '../support/tidelog-cluster.ts';
import { untilAsync } from '../support/waits.ts';
import { LoadLedger } from './load-ledger.ts';

const test = suite('integration: snapshot install');

test('cluster install - a follower away past retentionWaitMs is sent the newest snapshot, catches up, and the shard fails over to it', async () => {
  const cluster = await TidelogCluster.start({
    namespace: 'install',
    shards: 1,
    wal: { segmentBytes: 64 << 10, snapshotLogRatio: 1, snapshotMinLogBytes: 256 << 10 },
    retention: { maxBytes: 512 << 10 },
    cluster: { retentionWaitMs: 1_000 },
  });
  try {
    const leader = await cluster.leaderOf(0);
    const away = cluster.nodeIds.find((nodeId) => nodeId !== leader)!;
    const producer = await createProducer({ transport: cluster.transport, namespace: 'install', producerId: 'install-test', requestTimeoutMs: 1_000, sendTimeoutMs: 120_000, retryBackoffMs: 50 });
    const ledger = new LoadLedger(1);
    await ledger.run(producer, 1, 500, () => ledger.acked.size >= 5_000);
    await cluster.converged();
    await cluster.kill(away);
    const awayEnd = shardOf((await cluster.status()).find((status) => status.nodeId === leader)!, 0)!.hwm;
    // Load until the leader's retention deleted seq awayEnd + 1 (the follower's next).
    let isTrimmed = false;
    let seen = '';
    const load = ledger.run(producer, 2, 1_000, () => isTrimmed);
    await untilAsync(
      async () => {
        const view = shardOf((await cluster.status()).find((status) => status.nodeId === leader)!, 0)!;
        seen = `firstSeq ${view.firstSeq}, hwm ${view.hwm}, snapshot ${view.snapshotSeq}`;
        isTrimmed = (view.firstSeq ?? 0) > awayEnd + 1;
        return isTrimmed;
      },
      () => `the leader's retention deletes seq ${awayEnd + 1} (${seen})`,
      180_000,
    );
    await load;
    assert.equal(ledger.sendErrors, []);
    await cluster.startNode(away);
    await cluster.converged();
    const statuses = await cluster.status();
    const awayView = shardOf(statuses.find((status) => status.nodeId === away)!, 0)!;
    const leaderView = shardOf(statuses.find((status) => status.nodeId === leader)!, 0)!;
    assert.ok((awayView.firstSeq ?? 0) > awayEnd + 1, `the returned follower's log starts after a snapshot (${awayView.firstSeq} > ${awayEnd + 1})`);
    assert.is(awayView.hwm, leaderView.hwm);
    assert.is(awayView.entities, leaderView.entities, 'it folded the same state');
    // The installed replica is a full member: the old leader killed, the shard is led again
    // and every acknowledged event from the log's start reads back once.
    await cluster.kill(leader);
    await cluster.leaderOf(0, leader);
    const more = new LoadLedger(1);
    await more.run(producer, 1, 100, () => more.acked.size >= 1_000);
    assert.equal(more.sendErrors, []);
    const consumer = await createConsumer({ transport: cluster.transport, namespace: 'install' });
    const fromSeq = Math.max(awayView.firstSeq ?? 1, leaderView.firstSeq ?? 1);
    await ledger.verify(consumer, fromSeq);
    // The killed leader comes back with an empty disk (replaced): it has no replica file while
    // the shard has epochs claimed, so it repairs from the peers — no vote until caught up.
    rmSync(join(cluster.dir, leader, 'data'), { recursive: true, force: true });
    const wiped = await cluster.startNode(leader);
    assert.match(wiped.stderr, /repairing from the peers/, 'the replaced disk opens repairing');
    await cluster.converged();
    await untilAsync(async () => wiped.stderr.includes('repaired from the peers'), () => `the repair ends (${wiped.stderr.slice(-2_000)})`, 60_000);
    const back = shardOf((await cluster.status()).find((status) => status.nodeId === leader)!, 0)!;
    assert.not.ok(back.repairing, 'status no longer says repairing');
    await consumer.close();
    await producer.close();
    process.stdout.write(`  follower away at seq ${awayEnd}; installed, its log starts at ${awayView.firstSeq} (leader's ${leaderView.firstSeq}), hwm ${awayView.hwm}\n`);
  } finally {
    await cluster.stop();
  }
});

test.run();
