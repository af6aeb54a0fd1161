// Replaced disks on real in-process nodes (startNode, a shared in-memory epoch store): a node
// whose shard has no replica file while epochs are claimed repairs from its peers and records
// the newest epoch claimed. With two of three disks replaced the shard elects nobody (the one
// replica holding the committed log cannot make a quorum with two that may not vote); the
// documented way out — delete the repair markers of the replicas you trust — then works, and
// the committed event survives, taken from the one replica that kept it.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { MemoryEpochStore } from '../../src/cluster/epoch-store.ts';
import { encodeEvents } from '../../src/event.ts';
import { loadConfig } from '../../src/node/config.ts';
import { startNode, type TidelogNode } from '../../src/node/node.ts';
import { InProcessBus, InProcessTransport } from '../../src/transport/in-process.ts';
import { removeDir, tempDir } from '../support/wal-fixtures.ts';

const IDS = ['a', 'b', 'c'];

class InProcessCluster {
  private readonly bus = new InProcessBus();
  readonly store = new MemoryEpochStore();
  readonly dirs = Object.fromEntries(IDS.map((id) => [id, tempDir(`node-repair-${id}`)]));
  readonly nodes = new Map<string, { node: TidelogNode; transport: InProcessTransport }>();

  async start(id: string): Promise<void> {
    const config = loadConfig({
      env: {},
      overrides: {
        nodeId: id,
        namespace: 'repair',
        dataDir: this.dirs[id],
        router: { strategy: 'hash', shards: 1 },
        wal: { fsync: 'full', batchLingerMs: 0 },
        log: { level: 'silent' },
        cluster: { nodes: IDS, replicationFactor: 3, leaderTimeoutMs: 600, heartbeatMs: 100, requestTimeoutMs: 400 },
      },
    });
    const transport = new InProcessTransport({ bus: this.bus });
    const node = await startNode({ config, transport, logger: pino({ level: 'silent' }), epochStore: this.store });
    this.nodes.set(id, { node, transport });
  }

  async stop(id: string): Promise<void> {
    const entry = this.nodes.get(id);
    if (entry === undefined) return;
    await entry.node.stop();
    await entry.transport.close();
    this.nodes.delete(id);
  }

  async leader(waitMs: number): Promise<string | null> {
    const deadlineMs = Date.now() + waitMs;
    for (;;) {
      for (const id of IDS) if (this.nodes.get(id)?.node.replica(0)?.serving === true) return id;
      if (Date.now() > deadlineMs) return null;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  shard(id: string): Record<string, unknown> {
    return this.nodes.get(id)!.node.status().shards[0] as unknown as Record<string, unknown>;
  }

  markers(id: string): string[] {
    const walDir = join(this.dirs[id], 'wal');
    return existsSync(walDir) ? readdirSync(walDir).filter((name) => name.startsWith('repair-')) : [];
  }

  describe(): string {
    return IDS.map((id) => (this.nodes.has(id) ? `${id}=${String(this.shard(id).phase)}@e${String(this.shard(id).epoch)}${this.shard(id).repairing === true ? ' repairing' : ''}` : `${id}=down`)).join(' ');
  }
}

test('node repair - two of three disks replaced: nobody elected, the replaced record the newest epoch; markers deleted, a leader with the committed event', async () => {
  const cluster = new InProcessCluster();
  try {
    for (const id of IDS) await cluster.start(id);
    const first = await cluster.leader(10_000);
    assert.ok(first !== null, 'a leader at first');
    await cluster.nodes.get(first)!.node.host(0)!.append(encodeEvents([{ entityId: 1n, signalType: 1, weight: 1, timestampNs: 1_700_000_000_000_000_000n }]));
    const replaced = IDS.filter((id) => id !== first);
    for (const id of IDS) await cluster.stop(id);
    for (const id of replaced) rmSync(cluster.dirs[id], { recursive: true, force: true });
    const claimed = (await cluster.store.latest(0))!.epoch;
    for (const id of IDS) await cluster.start(id);
    for (const id of replaced) {
      assert.is(cluster.shard(id).repairing, true, `${id} opens repairing`);
      assert.ok(Number(cluster.shard(id).epoch) >= claimed, `${id} recorded the newest epoch claimed (${String(cluster.shard(id).epoch)} ≥ ${claimed})`);
    }
    assert.is(await cluster.leader(4_000), null, `no leader while a majority may not vote (${cluster.describe()})`);
    assert.is((await cluster.store.latest(0))!.epoch, claimed, 'and no epoch claimed: the repairing grant no pre-vote');
    // The operator accepts the loss: markers deleted on the replaced replicas.
    for (const id of IDS) await cluster.stop(id);
    for (const id of replaced) for (const marker of cluster.markers(id)) rmSync(join(cluster.dirs[id], 'wal', marker));
    for (const id of IDS) await cluster.start(id);
    for (const id of replaced) assert.not.ok(cluster.shard(id).repairing === true, `${id} is not taken for a replaced disk again`);
    const next = await cluster.leader(10_000);
    assert.ok(next !== null, `a leader after the markers went (${cluster.describe()})`);
    assert.is(cluster.nodes.get(next)!.node.host(0)!.query(1n, [1])[0]?.count, 1, 'the committed event, from the replica that kept it');
  } finally {
    for (const id of IDS) await cluster.stop(id);
    for (const id of IDS) removeDir(cluster.dirs[id]);
  }
});

test.run();
