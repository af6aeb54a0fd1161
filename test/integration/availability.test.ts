// Availability mode (cluster.acks 'leader') on a real cluster: 3 nats-servers whose routes pass
// through fault proxies, 3 `tidelog serve` processes, R = 3, a producer with a session on each
// side of a split of the shard's leader from both followers:
// - while split, BOTH sides acknowledge: the cut-off leader on its own fsync, the majority
//   under the leader it elects;
// - after heal the cut-off leader's suffix is kept as an orphan file, cut, and merged into the
//   majority's log at new seqs; every acknowledged event of both producers is in the log
//   exactly once (found by content: its seq may have moved), every replica holds the same log,
//   and every replica's CRDT state equals a fold of the producers' own record of what was sent.
// Prints the convergence time after heal and the merge traffic. AVAILABILITY_SPLIT_SECONDS
// (default 6) sets the split's length: the figures in docs/REPLICATION.md come from it.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { join } from 'node:path';
import { openReplicas } from '../../src/chaos/replica-reader.ts';
import { createConsumer, createProducer } from '../../src/client/index.ts';
import { EVENT_BYTES } from '../../src/event.ts';
import type { ShardStatus } from '../../src/transport/messages.ts';
import { TidelogCluster, shardOf } from '../support/tidelog-cluster.ts';
import { until, untilAsync } from '../support/waits.ts';
import { LoadLedger } from './load-ledger.ts';

const test = suite('integration: availability mode (acks leader)');

const SPLIT_MS = Number(process.env.AVAILABILITY_SPLIT_SECONDS ?? 6) * 1_000;
const AT_NS = 2_000_000_000_000_000_000n;

test('availability - a split with writes on both sides: both acknowledge; after heal the cut-off side is merged, every ack in the log once, replicas and states equal', async () => {
  const namespace = 'avail';
  const cluster = await TidelogCluster.start({ namespace, shards: 1, faults: true, cluster: { acks: 'leader' } });
  try {
    const leader = await cluster.leaderOf(0);
    const majority = cluster.nodeIds.filter((nodeId) => nodeId !== leader);
    const majorityTransport = await cluster.connect(cluster.nodeIds.indexOf(majority[0]));
    const minorityTransport = await cluster.connect(cluster.nodeIds.indexOf(leader));
    cluster.statusVia(majorityTransport);
    const producerOptions = { namespace, requestTimeoutMs: 1_000, sendTimeoutMs: 180_000, retryBackoffMs: 50 };
    const onMajority = await createProducer({ ...producerOptions, transport: majorityTransport, producerId: 'avail-majority' });
    const onMinority = await createProducer({ ...producerOptions, transport: minorityTransport, producerId: 'avail-minority' });
    const majorityLedger = new LoadLedger(1, 0, true);
    const minorityLedger = new LoadLedger(1, 1_000_000_000, true);
    let isStopping = false;
    // Paced (at most ~5 000 events/s per producer): the ledgers stay small over a long split.
    const loads = [majorityLedger.run(onMajority, 2, 50, () => isStopping, 20), minorityLedger.run(onMinority, 2, 50, () => isStopping, 20)];
    await until(() => majorityLedger.hasAcked(500) && minorityLedger.hasAcked(500), 'both producers are acknowledged before the split', 60_000);

    const splitAt = performance.now();
    cluster.nats.partition([majority, [leader]], { kind: 'cut' });
    const minorityAtSplit = minorityLedger.acked.size;
    const majorityAtSplit = majorityLedger.acked.size;
    // The cut-off leader keeps acknowledging on its own fsync; the majority elects and goes on.
    await until(() => minorityLedger.hasAcked(minorityAtSplit + 300), 'the cut-off side keeps acknowledging', 30_000);
    const minorityGoesOnMs = Math.round(performance.now() - splitAt);
    await until(() => majorityLedger.hasAcked(majorityAtSplit + 300), 'the majority side acknowledges again', 60_000);
    const majorityBackMs = Math.round(performance.now() - splitAt);
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, SPLIT_MS - (performance.now() - splitAt))));
    const splitMs = Math.round(performance.now() - splitAt);
    const ackedWhileSplit = { minority: minorityLedger.acked.size - minorityAtSplit, majority: majorityLedger.acked.size - majorityAtSplit };

    cluster.nats.heal();
    const healedAt = performance.now();
    // Merged: one epoch, one serving leader, every orphan file merged (the load goes on).
    let views: ShardStatus[] = [];
    let seen = '';
    await untilAsync(
      async () => {
        views = (await cluster.status()).map((status) => shardOf(status, 0)!).filter((view) => view !== undefined);
        seen = views.map((view) => `${view.phase}@${view.epoch} hwm ${view.hwm}/${view.lastSeq} orphans ${view.orphanFiles ?? '?'}`).join(' | ');
        return (
          views.length === 3 &&
          new Set(views.map((view) => view.epoch)).size === 1 &&
          views.filter((view) => view.phase === 'serving').length === 1 &&
          views.every((view) => view.orphanFiles === 0) &&
          views.reduce((sum, view) => sum + (view.orphanEventsMerged ?? 0), 0) > 0
        );
      },
      () => `one leader, every orphan file merged (${seen})`,
      120_000,
    );
    const mergedMs = Math.round(performance.now() - healedAt);
    const orphanBytes = views.reduce((sum, view) => sum + (view.orphanBytesSent ?? 0), 0);
    const mergedEvents = views.reduce((sum, view) => sum + (view.orphanEventsMerged ?? 0), 0);

    isStopping = true;
    await Promise.all(loads);
    await Promise.all([onMajority.flush(), onMinority.flush()]);
    assert.equal(majorityLedger.sendErrors, [], 'every majority send resolved');
    assert.equal(minorityLedger.sendErrors, [], 'every minority send resolved');
    await cluster.converged();
    const consumer = await createConsumer({ transport: majorityTransport, namespace });
    const majorityRead = await majorityLedger.verify(consumer);
    const minorityRead = await minorityLedger.verify(consumer);
    await consumer.close();
    await Promise.all([onMajority.close(), onMinority.close()]);
    assert.ok(minorityRead.moved > 0, 'events the cut-off side acknowledged moved to new seqs');
    assert.ok(mergedEvents >= minorityRead.moved, `the leader appended ${mergedEvents} merged events, ${minorityRead.moved} acked ones moved`);

    // Every replica from its own files: the same log, and a CRDT state equal to the fold of what
    // the producers sent (each event once: counts per entity and signal type).
    const model = new Map<string, number>();
    for (const ledger of [majorityLedger, minorityLedger]) {
      for (const bytes of ledger.acked.keys()) {
        const event = Buffer.from(bytes, 'hex');
        const key = `${event.readBigUInt64LE(0)}:${event.readUInt8(8)}`;
        model.set(key, (model.get(key) ?? 0) + 1);
      }
    }
    for (const nodeId of cluster.nodeIds) await cluster.stopNode(nodeId);
    const opened = await openReplicas(cluster.nodeIds.map((nodeId) => ({ nodeId, configPath: join(cluster.dir, nodeId, 'node.json') })), 1);
    try {
      const logs = opened.shards[0].replicas.map((replica) => {
        const contents: string[] = [];
        for (const { event } of replica.entries) contents.push(Buffer.from(event.subarray(0, EVENT_BYTES)).toString('hex'));
        return { nodeId: replica.nodeId, committedSeq: replica.committedSeq, contents };
      });
      for (const log of logs) {
        assert.is(log.committedSeq, logs[0].committedSeq, `${log.nodeId} commits as far as ${logs[0].nodeId}`);
        assert.ok(log.contents.join() === logs[0].contents.join(), `${log.nodeId} holds the same log as ${logs[0].nodeId}`);
      }
      assert.is(logs[0].contents.length, majorityLedger.acked.size + minorityLedger.acked.size, 'the log holds exactly the acknowledged events');
      let checked = 0;
      for (const [key, count] of model) {
        if (checked++ % 25 !== 0) continue;
        const [entity, signalType] = key.split(':').map(Number);
        for (const replica of opened.shards[0].replicas) {
          const views = replica.query(BigInt(entity), [signalType], AT_NS) as Array<{ count: number }>;
          assert.is(views[0]?.count, count, `${replica.nodeId}: entity ${entity} type ${signalType} counted ${count} times`);
        }
      }
    } finally {
      await opened.close();
    }
    process.stdout.write(
      `  split ${splitMs} ms (${leader} cut off): cut-off side acked ${ackedWhileSplit.minority} (first +300 after ${minorityGoesOnMs} ms), majority acked ${ackedWhileSplit.majority} (+300 after ${majorityBackMs} ms); ` +
        `heal → one leader and every orphan merged in ${mergedMs} ms; merge traffic ${orphanBytes} bytes of orphan batches, ${mergedEvents} events re-appended, ${minorityRead.moved} acked events moved; log ${majorityRead.logEvents} events\n`,
    );
  } finally {
    await cluster.stop();
  }
});

test.run();
