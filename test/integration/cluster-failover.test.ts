// A real cluster — 3 nats-servers with routes and 3 `tidelog serve` processes, R = 3 — under
// producer load: the leader of a shard is killed with SIGKILL again and again and started
// again. Every acknowledged event is in the log exactly once afterwards, every replica holds
// the same committed log, and each failover (kill → the next ack of that shard) is measured.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createConsumer, createProducer } from '../../src/client/index.ts';
import { TidelogCluster } from '../support/tidelog-cluster.ts';
import { until } from '../support/waits.ts';
import { LoadLedger } from './load-ledger.ts';

const test = suite('integration: cluster failover');

const KILLS = Number(process.env.CLUSTER_KILLS ?? 10);
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
    isStopping = true;
    await load;
    await producer.flush();
    assert.equal(ledger.sendErrors, [], 'every send resolved: retries carried them over each failover');
    await cluster.converged();
    const consumer = await createConsumer({ transport: cluster.transport, namespace: 'failover' });
    await ledger.verify(consumer);
    await consumer.close();
    await producer.close();
    process.stdout.write(`  failover (kill → next ack on that shard), ms: ${failoversMs.join(', ')}\n`);
  } finally {
    await cluster.stop();
  }
});

test.run();
