// Availability mode (cluster.acks 'leader') on a real cluster: 3 nats-servers whose routes pass
// through fault proxies, 3 `tidelog serve` processes, R = 3, a producer with a session on each
// nats-server (so on each side of any split):
// - while the shard's leader is split from both followers, BOTH sides acknowledge: the cut-off
//   leader on its own fsync, the majority under the leader it elects;
// - after heal the cut-off leader's suffix is kept as an orphan file, cut, and merged into the
//   majority's log at new seqs; every acknowledged event of every producer is in the log
//   exactly once (found by content: its seq may have moved), every replica holds the same log,
//   and every replica's CRDT state equals a fold of the producers' own record of what was sent.
// Two splits in a row, the second healed while the majority's leader is being killed.
// Prints the convergence time after each heal and the merge traffic. AVAILABILITY_SPLIT_SECONDS
// (default 6) sets the first split's length: the figures in docs/REPLICATION.md come from it.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { join } from 'node:path';
import { openReplicas } from '../../src/chaos/replica-reader.ts';
import { createConsumer, createProducer, type Producer } from '../../src/client/index.ts';
import { EVENT_BYTES } from '../../src/event.ts';
import type { ShardStatus } from '../../src/transport/messages.ts';
import type { NatsTransport } from '../../src/transport/nats.ts';
import { TidelogCluster, shardOf } from '../support/tidelog-cluster.ts';
import { until, untilAsync } from '../support/waits.ts';
import { LoadLedger } from './load-ledger.ts';

const test = suite('integration: availability mode (acks leader)');

const SPLIT_MS = Number(process.env.AVAILABILITY_SPLIT_SECONDS ?? 6) * 1_000;
const AT_NS = 2_000_000_000_000_000_000n;

/** One paced producer (with a session) per nats-server, each with its own ledger of disjoint events. */
async function loadOnEveryServer(cluster: TidelogCluster, namespace: string) {
  const transports: NatsTransport[] = [];
  const producers: Producer[] = [];
  const ledgers: LoadLedger[] = [];
  for (let index = 0; index < cluster.nodeIds.length; index++) {
    const transport = await cluster.connect(index);
    transports.push(transport);
    producers.push(await createProducer({ namespace, transport, producerId: `${namespace}-on-${index}`, requestTimeoutMs: 1_000, sendTimeoutMs: 180_000, retryBackoffMs: 50 }));
    ledgers.push(new LoadLedger(1, index * 1_000_000_000, true));
  }
  let isStopping = false;
  // Paced (at most ~5 000 events/s per producer): the ledgers stay small over a long split.
  const loads = producers.map((producer, index) => ledgers[index].run(producer, 2, 50, () => isStopping, 20));
  return {
    transports,
    ledgers,
    /** Stops sending; resolves once every send resolved; then every ledger must be free of errors. */
    async stop(): Promise<void> {
      isStopping = true;
      await Promise.all(loads);
      await Promise.all(producers.map((producer) => producer.flush()));
      for (const [index, ledger] of ledgers.entries()) assert.equal(ledger.sendErrors, [], `every send of the producer on server ${index} resolved`);
      await Promise.all(producers.map((producer) => producer.close()));
    },
  };
}

/** Waits for one epoch, one serving leader and no orphan file anywhere; the views then. */
async function untilMerged(cluster: TidelogCluster, mergedBy: { nodeId: string; before: number } | null = null, waitMs = 120_000): Promise<ShardStatus[]> {
  let views: ShardStatus[] = [];
  let seen = '';
  await untilAsync(
    async () => {
      const statuses = await cluster.status();
      views = statuses.map((status) => shardOf(status, 0)).filter((view) => view !== undefined);
      seen = views.map((view) => `${view.phase}@${view.epoch} hwm ${view.hwm}/${view.lastSeq} orphans ${view.orphanFiles ?? '?'}`).join(' | ');
      const merger = mergedBy === null ? undefined : statuses.find((status) => status.nodeId === mergedBy.nodeId);
      const hasMerged = mergedBy === null || (merger !== undefined && (shardOf(merger, 0)?.orphanEventsMerged ?? 0) > mergedBy.before);
      return (
        views.length === cluster.nodeIds.length &&
        new Set(views.map((view) => view.epoch)).size === 1 &&
        views.filter((view) => view.phase === 'serving').length === 1 &&
        views.every((view) => view.orphanFiles === 0) &&
        hasMerged
      );
    },
    () => `one leader, every orphan file merged (${seen})`,
    waitMs,
  );
  return views;
}

/**
 * With the load stopped and every node stopped: every acknowledged event in the log once (by
 * content), every replica's files holding the same log, and a CRDT state equal to the fold of
 * what the producers sent. Returns the acked events that moved to another seq.
 */
async function verifyEverything(cluster: TidelogCluster, namespace: string, transport: NatsTransport, ledgers: readonly LoadLedger[]): Promise<{ moved: number; logEvents: number }> {
  // Final: every replica's durable end is its commit point, all equal (nothing left to cut, so
  // no orphan file can appear any more), and no orphan file waits anywhere. A replica may cut
  // (and keep) a suffix after untilMerged saw none: it must be merged before the read-back.
  let seen = '';
  await untilAsync(
    async () => {
      const views = (await cluster.status()).map((status) => shardOf(status, 0)).filter((view) => view !== undefined);
      seen = views.map((view) => `${view.phase} hwm ${view.hwm}/${view.lastSeq} orphans ${view.orphanFiles ?? '?'}`).join(' | ');
      return views.length === cluster.nodeIds.length && views.some((view) => view.phase === 'serving') && views.every((view) => view.lastSeq === view.hwm && view.hwm === views[0].hwm && view.orphanFiles === 0);
    },
    () => `converged with every orphan merged (${seen})`,
    120_000,
  );
  const consumer = await createConsumer({ transport, namespace });
  let moved = 0;
  let logEvents = 0;
  for (const ledger of ledgers) {
    const read = await ledger.verify(consumer);
    moved += read.moved;
    logEvents = read.logEvents;
  }
  await consumer.close();
  let acked = 0;
  let unknown = 0;
  const sent = new Set<string>();
  for (const ledger of ledgers) {
    acked += ledger.acked.size;
    unknown += ledger.unknown.size;
    for (const bytes of ledger.acked.keys()) sent.add(bytes);
    for (const bytes of ledger.unknown) sent.add(bytes);
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
    // Every acked event is in it once (verified above); besides them only events of sends
    // answered "maybe applied", each at most once; nothing never sent.
    assert.ok(logs[0].contents.length >= acked && logs[0].contents.length <= acked + unknown, `the log holds ${logs[0].contents.length} events: ${acked} acked, ${unknown} maybe applied`);
    const model = new Map<string, number>();
    for (const bytes of logs[0].contents) {
      assert.ok(sent.has(bytes), 'an event in the log was sent');
      const event = Buffer.from(bytes, 'hex');
      const key = `${event.readBigUInt64LE(0)}:${event.readUInt8(8)}`;
      model.set(key, (model.get(key) ?? 0) + 1);
    }
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
  return { moved, logEvents };
}

test('availability - splits with writes on both sides, the second healed while the majority\'s leader is killed: both sides acknowledge; after each heal the cut-off side is merged; every ack in the log once, replicas and states equal', async () => {
  const namespace = 'avail';
  const cluster = await TidelogCluster.start({ namespace, shards: 1, faults: true, cluster: { acks: 'leader' } });
  try {
    const load = await loadOnEveryServer(cluster, namespace);
    await until(() => load.ledgers.every((ledger) => ledger.hasAcked(500)), 'every producer is acknowledged before the split', 60_000);
    const leaders: string[] = [];
    const figures: string[] = [];
    for (let round = 0; round < 2; round++) {
      const leader = await cluster.leaderOf(0);
      leaders.push(leader);
      const majority = cluster.nodeIds.filter((nodeId) => nodeId !== leader);
      const majorityIndex = cluster.nodeIds.indexOf(majority[0]);
      cluster.statusVia(load.transports[majorityIndex]);
      const cutOff = load.ledgers[cluster.nodeIds.indexOf(leader)];
      const onMajority = load.ledgers[majorityIndex];
      await untilMerged(cluster);
      const bytesSent = async (): Promise<Map<string, number>> => new Map((await cluster.status()).map((status) => [status.nodeId, shardOf(status, 0)?.orphanBytesSent ?? 0]));
      const before = await bytesSent();
      const leaderView = (await cluster.status()).find((status) => status.nodeId === leader);
      const mergedBefore = (leaderView === undefined ? undefined : shardOf(leaderView, 0)?.orphanEventsMerged) ?? 0;

      const splitAt = performance.now();
      cluster.nats.partition([majority, [leader]], { kind: 'cut' });
      const cutOffAtSplit = cutOff.acked.size;
      const majorityAtSplit = onMajority.acked.size;
      // The cut-off leader keeps acknowledging on its own fsync; the majority elects and goes on.
      await until(() => cutOff.hasAcked(cutOffAtSplit + 300), `round ${round}: the cut-off side keeps acknowledging`, 30_000);
      const cutOffGoesOnMs = Math.round(performance.now() - splitAt);
      const majorityLeader = await cluster.leaderOf(0, leader);
      leaders.push(majorityLeader);
      await until(() => onMajority.hasAcked(majorityAtSplit + 300), `round ${round}: the majority side acknowledges again`, 60_000);
      const majorityBackMs = Math.round(performance.now() - splitAt);
      const splitFor = round === 0 ? SPLIT_MS : 3_000;
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, splitFor - (performance.now() - splitAt))));
      const splitMs = Math.round(performance.now() - splitAt);
      const ackedWhileSplit = { cutOff: cutOff.acked.size - cutOffAtSplit, majority: onMajority.acked.size - majorityAtSplit };
      if (round === 1) {
        // The heal comes while the majority's leader dies: the others elect, and the orphans
        // go to whoever leads next.
        await cluster.kill(majorityLeader);
        cluster.nats.heal();
        await new Promise((resolve) => setTimeout(resolve, 1_000));
        await cluster.startNode(majorityLeader);
      } else cluster.nats.heal();
      const healedAt = performance.now();
      // The cut-off leader acknowledged events alone: it must have sent some to be merged.
      await untilMerged(cluster, { nodeId: leader, before: mergedBefore });
      const mergedMs = Math.round(performance.now() - healedAt);
      // Per node: a node restarted meanwhile counts from 0 again.
      let orphanBytes = 0;
      for (const [nodeId, now] of await bytesSent()) orphanBytes += now >= (before.get(nodeId) ?? 0) ? now - (before.get(nodeId) ?? 0) : now;
      figures.push(
        `round ${round}: split ${splitMs} ms (${leader} cut off${round === 1 ? `, ${majorityLeader} killed at heal` : ''}): cut-off side acked ${ackedWhileSplit.cutOff} (first +300 after ${cutOffGoesOnMs} ms), majority acked ${ackedWhileSplit.majority} (+300 after ${majorityBackMs} ms); ` +
          `heal → one leader and every orphan merged in ${mergedMs} ms; ${orphanBytes} bytes of orphan batches sent`,
      );
    }
    await load.stop();
    const { moved, logEvents } = await verifyEverything(cluster, namespace, load.transports[0], load.ledgers);
    assert.ok(moved > 0, 'events the cut-off sides acknowledged moved to new seqs');
    process.stdout.write(`  ${figures.join('\n  ')}\n  leaders ${leaders.join(' → ')}; ${moved} acked events moved, each in the log once; log ${logEvents} events\n`);
  } finally {
    await cluster.stop();
  }
});

test.run();
