// The epoch store's contract, run against the in-memory twin and against NATS JetStream KV on
// a real nats-server: one holder per (shard, epoch) however claims race, latest() finds the
// newest, a timed-out create is resolved by reading back, and claims survive a server restart.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MemoryEpochStore, epochKey, parseEpochKey, type ClaimOutcome, type EpochStore } from '../../src/cluster/epoch-store.ts';
import { KvEpochStore } from '../../src/cluster/kv-epoch-store.ts';
import { connectTestTransport, startTestNats } from '../support/nats-harness.ts';
import { WAIT_MS } from '../support/waits.ts';
import { startNatsCluster, waitForJetStream } from '../support/nats-cluster.ts';
import { NatsTransport } from '../../src/transport/nats.ts';

/**
 * Claims (shard, epoch) from `stores` at once. Never two holders: at most one `won`, every
 * `lost` names the holder the key shows, and a claim that timed out (`unknown`, allowed when
 * `allowUnknown`: a loaded machine) left the key to exactly one claimer of the race.
 */
async function race(stores: readonly EpochStore[], shard: number, epoch: number, allowUnknown = false): Promise<ClaimOutcome[]> {
  const outcomes = await Promise.all(stores.map((store, index) => store.claim(shard, epoch, `node-${index}`)));
  const winners = outcomes.filter((outcome) => outcome.kind === 'won');
  const unknown = outcomes.filter((outcome) => outcome.kind === 'unknown');
  const summary = JSON.stringify(outcomes.map((outcome) => (outcome.kind === 'unknown' ? `unknown: ${outcome.error.message}` : outcome)));
  if (!allowUnknown) assert.is(unknown.length, 0, summary);
  assert.ok(winners.length <= 1, `never two holders of shard ${shard} epoch ${epoch}: ${summary}`);
  const holder = await stores[0].get(shard, epoch);
  assert.ok(holder !== null && /^node-\d$/.test(holder.nodeId), `the key names one claimer: ${summary}`);
  for (const outcome of outcomes) {
    if (outcome.kind === 'won') assert.is(outcome.claim.nodeId, holder?.nodeId, 'the winner is the holder');
    if (outcome.kind === 'lost') assert.is(outcome.holder.nodeId, holder?.nodeId, 'a loser learns the holder');
  }
  if (unknown.length === 0) assert.is(winners.length, 1, summary);
  return outcomes;
}

async function contract(stores: readonly EpochStore[]): Promise<void> {
  for (let epoch = 1; epoch <= 20; epoch++) await race(stores, 7, epoch);
  await Promise.all(Array.from({ length: 10 }, (_, shard) => race(stores, shard + 100, 1)));
  const latest = await stores[0].latest(7);
  assert.is(latest?.epoch, 20);
  assert.is((await stores[1].latest(7))?.claimId, latest?.claimId, 'every node reads the same claim');
  assert.is(await stores[0].latest(99), null);
  assert.is(await stores[0].get(7, 21), null);
  const again = await stores[1].claim(7, 20, 'node-9');
  assert.is(again.kind, 'lost', 'a claimed epoch is never taken again');
}

test('epoch-store - keys: s.<shard>.e.<epoch>', () => {
  assert.is(epochKey(3, 17), 's.3.e.17');
  assert.equal(parseEpochKey('s.3.e.17'), { shard: 3, epoch: 17 });
  assert.is(parseEpochKey('s.3.e.x'), null);
  assert.is(parseEpochKey('other'), null);
});

test('epoch-store - the in-memory twin keeps the contract', async () => {
  const shared = new MemoryEpochStore();
  await contract([shared, shared, shared]);
});

test('epoch-store - a timed-out claim is resolved by reading back: applied → won, not yet → unknown (and it may land later)', async () => {
  const faults = new Map<number, 'timeout-applied' | 'timeout-late' | 'timeout-lost'>([
    [1, 'timeout-applied'],
    [2, 'timeout-late'],
    [3, 'timeout-lost'],
  ]);
  const store = new MemoryEpochStore((_shard, epoch) => faults.get(epoch) ?? 'none');
  assert.is((await store.claim(0, 1, 'a')).kind, 'won');
  assert.is((await store.claim(0, 2, 'a')).kind, 'unknown');
  assert.is((await store.get(0, 2))?.nodeId, 'a', 'the late create landed: epoch 2 is taken, so the claimer moves on to 3+');
  assert.is((await store.claim(0, 3, 'a')).kind, 'unknown');
  assert.is(await store.get(0, 3), null);
  const next = await store.claim(0, 2, 'b');
  assert.equal(next.kind === 'lost' ? next.holder.nodeId : next.kind, 'a');
});

test('epoch-store - NATS JetStream KV keeps the contract on a real nats-server, across a restart', async () => {
  const server = await startTestNats({ jetStream: true });
  const transports = await Promise.all([0, 1, 2].map(() => connectTestTransport(server)));
  try {
    const stores = await Promise.all(transports.map((transport) => KvEpochStore.open(transport.connection, { namespace: 'epochs-test', bucketReplicas: 1 })));
    await contract(stores);
    await server.kill();
    await server.restart();
    // The client reconnects and JetStream recovers its streams in its own time: retry the open.
    let reopened: KvEpochStore | null = null;
    const deadline = Date.now() + WAIT_MS;
    while (reopened === null) {
      try {
        reopened = await KvEpochStore.open(transports[0].connection, { namespace: 'epochs-test', bucketReplicas: 1, timeoutMs: 1_000 });
      } catch (error) {
        if (Date.now() > deadline) throw error;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
    assert.is((await reopened.latest(7))?.epoch, 20, 'claims are in the file store');
    assert.is((await reopened.claim(7, 20, 'node-5')).kind, 'lost');
    assert.is((await reopened.claim(7, 21, 'node-5')).kind, 'won');
  } finally {
    await Promise.all(transports.map((transport) => transport.close()));
    await server.stop();
  }
});

test('epoch-store - a 3-server NATS cluster, R3 bucket: 100 three-way races one holder each; with one server stopped, claims go on', async () => {
  const cluster = await startNatsCluster(3);
  const transports = await Promise.all(cluster.urls.map((url) => NatsTransport.connect({ servers: url, name: 'epoch-store-test' })));
  try {
    const stores = await Promise.all(
      transports.map((transport) => waitForJetStream(() => KvEpochStore.open(transport.connection, { namespace: 'cluster-test', bucketReplicas: 3 }))),
    );
    for (let epoch = 1; epoch <= 100; epoch++) await race(stores, 0, epoch, true);
    // A majority (2 of 3) goes on without the third server; its client is gone with it.
    await cluster.servers[2].stop();
    const claimed = await waitForJetStream(async () => {
      const outcome = await stores[0].claim(0, 101, 'node-0');
      if (outcome.kind === 'unknown') throw outcome.error;
      return outcome;
    });
    assert.is(claimed.kind, 'won');
    const seen = await waitForJetStream(() => stores[1].latest(0));
    assert.is(seen?.epoch, 101);
    assert.is(seen?.nodeId, 'node-0');
  } finally {
    await Promise.all(transports.map((transport) => transport.close().catch(() => undefined)));
    await cluster.stop();
  }
});

test.run();
