// A real cluster — 3 nats-servers with routes and 3 `tidelog serve` processes, R = 3 — under
// producer load: the leader of a shard is killed with SIGKILL again and again and started
// again. Every acknowledged event is in the log exactly once afterwards, every replica holds
// the same committed log, and each failover (kill → the next ack of that shard) is measured.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createConsumer, createProducer } from '../../src/client/index.ts';
import { TidelogCluster, shardOf } from '../support/tidelog-cluster.ts';
import { until, untilAsync } from '../support/waits.ts';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { LoadLedger } from './load-ledger.ts';
import { NodeProcess } from '../support/node-process.ts';
import { runCli } from '../cli/harness.ts';

const test = suite('integration: cluster failover');

const KILLS = Number(process.env.CLUSTER_KILLS ?? 3);
const PROGRESS_EVENTS = 1_000;

test(`cluster failover - ${KILLS} leader kills under load: nothing acknowledged lost, nothing twice, replicas equal`, async () => {
  const cluster = await TidelogCluster.start({ namespace: 'failover', shards: 2 });
  try {
    await cluster.leaderOf(0);
    await cluster.leaderOf(1);
    const producer = await createProducer({ transport: cluster.transport, namespace: 'failover', producerId: 'failover-test', requestTimeoutMs: 1_000, sendTimeoutMs: 120_000, retryBackoffMs: 50 });
    const ledger = new LoadLedger(2);
    let isStopping = false;
    const load = ledger.run(producer, 3, 100, () => isStopping);
    // A tail of shard 0 runs across every failover: it must see every seq once, in order. It is
    // a durable consumer committing its position as it goes (the positions live in the
    // cluster's KV bucket, so any node answers, whichever was killed).
    const tailer = await createConsumer({ transport: cluster.transport, namespace: 'failover' });
    const tail = tailer.tail({ shard: 0, consumer: 'indexer', autoCommit: true, autoCommitIntervalMs: 200 });
    const tailed: Array<{ seq: number; entity: bigint }> = [];
    const tailing = (async () => {
      for await (const { seq, event } of tail) tailed.push({ seq, entity: event.entityId });
    })();
    const failoversMs: number[] = [];
    for (let kill = 0; kill < KILLS; kill++) {
      const shard = kill % 2;
      const before = ledger.acked.size;
      await until(() => ledger.hasAcked(before + PROGRESS_EVENTS), () => `progress before kill ${kill + 1} (acked ${ledger.acked.size})`, 120_000);
      const leader = await cluster.leaderOf(shard);
      const ackedOnShard = ledger.ackedOn(shard);
      const killedAt = performance.now();
      await cluster.kill(leader);
      await until(() => ledger.ackedOn(shard) > ackedOnShard + 400, () => `acks on shard ${shard} after killing its leader ${leader}`, 120_000);
      failoversMs.push(Math.round(performance.now() - killedAt));
      await cluster.startNode(leader);
    }
    // A rolling restart: the leader of shard 0 stops gracefully and hands the shard off.
    const leader = await cluster.leaderOf(0);
    const ackedOnShard = ledger.ackedOn(0);
    const stoppedAt = performance.now();
    assert.is(await cluster.stopNode(leader), 0, 'a graceful stop exits 0');
    await until(() => ledger.ackedOn(0) > ackedOnShard + 400, 'acks on shard 0 after its leader stopped gracefully', 120_000);
    const handoffMs = Math.round(performance.now() - stoppedAt);
    await cluster.startNode(leader);
    isStopping = true;
    await load;
    await producer.flush();
    assert.equal(ledger.sendErrors, [], 'every send resolved: retries carried them over each failover');
    await cluster.converged();
    const hwm0 = shardOf((await cluster.status())[0], 0)!.hwm;
    await until(() => tailed.length > 0 && tailed[tailed.length - 1].seq >= hwm0, () => `the tail reaches shard 0's hwm ${hwm0} (at ${tailed[tailed.length - 1]?.seq ?? 0})`, 60_000);
    await tail.return();
    await tailing;
    tailed.forEach((item, index) => assert.is(item.seq, index + 1, 'the tail saw every seq once, in order, across the failovers'));
    // Ending the tail committed what was processed: the loop had asked for the event after its
    // last one (it waited in next() when return() came), so every event it received.
    const position = await tailer.position({ consumer: 'indexer', shard: 0 });
    assert.is(position, tailed.length, 'the durable consumer committed through the last event it moved past');
    // Moved back 100 (the load has stopped: nothing would come after the end), then a node
    // gone (the shard's leader killed): the position is the cluster's, and a new tail of the
    // name resumes after it.
    await tailer.commit({ consumer: 'indexer', shard: 0, seq: position - 100 });
    const killed = await cluster.leaderOf(0);
    await cluster.kill(killed);
    const resumed = tailer.tail({ shard: 0, consumer: 'indexer' });
    const first = await resumed.next();
    assert.is(first.done, false);
    assert.is(first.value!.seq, position - 99, 'a tail of the consumer name resumes after its committed position');
    await resumed.return();
    await tailer.close();
    await cluster.startNode(killed);
    await cluster.converged();
    // `tidelog status` shows each node's pid and, per shard, role, leader and follower lag.
    const table = runCli(['status', '--nats', cluster.nats.urls[0], '--namespace', 'failover', '--nodes', '3', '--timeout-ms', '10000']);
    assert.is(table.status, 0, table.stderr);
    assert.match(table.stdout, /follower lag/);
    for (const nodeId of cluster.nodeIds) assert.match(table.stdout, new RegExp(`${nodeId}\\s+${cluster.processes.get(nodeId)!.pid}\\s`));
    assert.match(table.stdout, /leader \(serving\)/);
    assert.match(table.stdout, /follower \(following\)/);
    assert.match(table.stdout, /indexer\s+0\s+[\d,]+\s+[\d,]+/, 'the durable consumer, its position and lag');
    const consumer = await createConsumer({ transport: cluster.transport, namespace: 'failover' });
    await ledger.verify(consumer);
    await consumer.close();
    await producer.close();
    process.stdout.write(`  failover (kill → next ack on that shard), ms: ${failoversMs.join(', ')}; graceful stop (SIGTERM → next ack): ${handoffMs} ms\n`);
  } finally {
    await cluster.stop();
  }
});

test('cluster failover - a leader paused past the leader timeout is replaced; resumed, it follows the new epoch and serves nothing', async () => {
  const cluster = await TidelogCluster.start({ namespace: 'paused', shards: 1 });
  try {
    const old = await cluster.leaderOf(0);
    const producer = await createProducer({ transport: cluster.transport, namespace: 'paused', producerId: 'pause-test', requestTimeoutMs: 1_000, sendTimeoutMs: 120_000, retryBackoffMs: 50 });
    const ledger = new LoadLedger(1);
    let isStopping = false;
    const load = ledger.run(producer, 2, 100, () => isStopping);
    await until(() => ledger.hasAcked(PROGRESS_EVENTS), 'progress before the pause', 120_000);
    const paused = cluster.processes.get(old)!;
    const oldEpoch = shardOf((await cluster.status()).find((status) => status.nodeId === old)!, 0)!.epoch;
    paused.pause();
    const fresh = await cluster.leaderOf(0, old);
    const before = ledger.acked.size;
    await until(() => ledger.hasAcked(before + PROGRESS_EVENTS), 'acks from the new leader while the old one is paused', 120_000);
    paused.resume();
    let seen = '';
    await untilAsync(
      async () => {
        const view = shardOf((await cluster.status()).find((status) => status.nodeId === old) ?? { shards: [] } as never, 0);
        seen = JSON.stringify(view ?? null);
        return view !== undefined && view.phase === 'following' && view.epoch > oldEpoch && view.leader === fresh;
      },
      () => `the resumed leader follows ${fresh} at a newer epoch (${seen})`,
      60_000,
    );
    isStopping = true;
    await load;
    await producer.flush();
    assert.equal(ledger.sendErrors, []);
    await cluster.converged();
    const consumer = await createConsumer({ transport: cluster.transport, namespace: 'paused' });
    await ledger.verify(consumer);
    await consumer.close();
    await producer.close();
  } finally {
    await cluster.stop();
  }
});

test('cluster failover - one nats-server stopped under load: the cluster carries on', async () => {
  const cluster = await TidelogCluster.start({ namespace: 'natsdown', shards: 2 });
  try {
    await cluster.leaderOf(0);
    await cluster.leaderOf(1);
    // A second process with a running node's id is refused before it serves anything.
    const twinDir = join(cluster.dir, 'twin');
    mkdirSync(twinDir, { recursive: true });
    const twin = await NodeProcess.start({ dir: twinDir, config: { ...cluster.configOf('n1'), dataDir: join(twinDir, 'data') } }).then(
      () => 'started',
      (error: Error) => error.message,
    );
    assert.match(twin, /node id n1 is already running \(pid \d+\)/);
    const producer = await createProducer({ transport: cluster.transport, namespace: 'natsdown', producerId: 'natsdown-test', requestTimeoutMs: 1_000, sendTimeoutMs: 120_000, retryBackoffMs: 50 });
    const ledger = new LoadLedger(2);
    let isStopping = false;
    const load = ledger.run(producer, 2, 100, () => isStopping);
    await until(() => ledger.hasAcked(PROGRESS_EVENTS), 'progress before the stop', 120_000);
    // The third server goes; node n3 (connected to it alone) is cut off from the cluster.
    await cluster.nats.servers[2].stop();
    for (const shard of [0, 1]) {
      const before = ledger.ackedOn(shard);
      await until(() => ledger.ackedOn(shard) > before + PROGRESS_EVENTS, () => `shard ${shard} acks with one nats-server down`, 120_000);
    }
    isStopping = true;
    await load;
    await producer.flush();
    assert.equal(ledger.sendErrors, []);
    await cluster.kill('n3');
    await cluster.converged();
    const consumer = await createConsumer({ transport: cluster.transport, namespace: 'natsdown' });
    await ledger.verify(consumer);
    await consumer.close();
    await producer.close();
  } finally {
    await cluster.stop();
  }
});

test.run();
