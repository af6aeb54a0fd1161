// A real tidelog cluster for tests: a 3-server NATS cluster (routes, JetStream) and one
// `tidelog serve` child process per node, each connected to its own nats-server, with R = 3
// and the replication timeouts a 2-core machine running all of it can keep. Status comes from
// the nodes themselves (`{ns}.status`, every node answers).
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { decodeReply, encodeMessage } from '../../src/transport/codec.ts';
import type { ShardStatus, StatusReply } from '../../src/transport/messages.ts';
import type { NatsTransport } from '../../src/transport/nats.ts';
import { startNatsCluster, type NatsCluster } from './nats-cluster.ts';
import { connectTestTransport } from './nats-harness.ts';
import { NodeProcess } from './node-process.ts';
import { untilAsync } from './waits.ts';
import { removeDir, tempDir } from './wal-fixtures.ts';

export interface TidelogClusterOptions {
  namespace: string;
  shards: number;
  nodes?: number;
  /** Extra cluster settings (timeouts). */
  cluster?: Record<string, unknown>;
  wal?: Record<string, unknown>;
  retention?: Record<string, unknown>;
  /** Extra node flags per node id (e.g. --cpu-prof for a profile). */
  execArgv?: Record<string, string[]>;
  /** Route the NATS servers' links through fault proxies (nats.partition / nats.heal). */
  faults?: boolean;
  /** The nats-server (index) node `index` connects to (default: its own, index mod 3). */
  serverOf?: (nodeIndex: number) => number;
}

export class TidelogCluster {
  readonly nodeIds: string[];
  readonly processes = new Map<string, NodeProcess | null>();
  /** Where status requests go (a partition test points it at a server of the majority). */
  private statusTransport: NatsTransport;
  private readonly extraTransports: NatsTransport[] = [];
  private constructor(
    readonly nats: NatsCluster,
    readonly transport: NatsTransport,
    readonly dir: string,
    private readonly options: TidelogClusterOptions,
  ) {
    this.nodeIds = Array.from({ length: options.nodes ?? 3 }, (_, index) => `n${index + 1}`);
    this.statusTransport = transport;
  }

  /** A client connection to NATS server `index` (closed by stop()). */
  async connect(index: number): Promise<NatsTransport> {
    const transport = await connectTestTransport(this.nats.servers[index]);
    this.extraTransports.push(transport);
    return transport;
  }

  /** Status requests from now on go through `transport`. */
  statusVia(transport: NatsTransport): void {
    this.statusTransport = transport;
  }

  static async start(options: TidelogClusterOptions): Promise<TidelogCluster> {
    const nats = await startNatsCluster(3, `${options.namespace}-nats`, undefined, { faultProxies: options.faults === true });
    const transport = await connectTestTransport(nats.servers[0]);
    const cluster = new TidelogCluster(nats, transport, tempDir(`cluster-${options.namespace}`), options);
    try {
      await Promise.all(cluster.nodeIds.map((nodeId) => cluster.startNode(nodeId)));
    } catch (error) {
      await cluster.stop();
      throw error;
    }
    return cluster;
  }

  configOf(nodeId: string): Record<string, unknown> {
    const index = this.nodeIds.indexOf(nodeId);
    return {
      nodeId,
      namespace: this.options.namespace,
      nats: { servers: [this.nats.urls[(this.options.serverOf?.(index) ?? index) % this.nats.urls.length]] },
      router: { strategy: 'hash', shards: this.options.shards },
      wal: { fsync: 'full', ...this.options.wal },
      ...(this.options.retention === undefined ? {} : { retention: this.options.retention }),
      cluster: { nodes: this.nodeIds, replicationFactor: Math.min(3, this.nodeIds.length), epochBucketReplicas: 3, ...this.options.cluster },
    };
  }

  async startNode(nodeId: string): Promise<NodeProcess> {
    mkdirSync(join(this.dir, nodeId), { recursive: true });
    const execArgv = this.options.execArgv?.[nodeId];
    const node = await NodeProcess.start({ dir: join(this.dir, nodeId), config: this.configOf(nodeId), readyTimeoutMs: 90_000, ...(execArgv === undefined ? {} : { execArgv }) });
    this.processes.set(nodeId, node);
    return node;
  }

  /** SIGTERM and wait: a graceful stop (a leader hands its shards off first). */
  async stopNode(nodeId: string): Promise<number | null> {
    const code = (await this.processes.get(nodeId)?.stop()) ?? null;
    this.processes.set(nodeId, null);
    return code;
  }

  async kill(nodeId: string): Promise<void> {
    await this.processes.get(nodeId)?.kill();
    this.processes.set(nodeId, null);
  }

  async status(): Promise<StatusReply[]> {
    const replies = await this.statusTransport.requestMany(`${this.options.namespace}.status`, encodeMessage({ v: 1, t: 'status' }), { timeoutMs: 500, maxReplies: this.nodeIds.length });
    return replies.map((bytes) => decodeReply(bytes, 'status'));
  }

  /** The node serving `shard` as its leader, once exactly one does. */
  async leaderOf(shard: number, except: string | null = null): Promise<string> {
    let leader: string | null = null;
    let seen = '';
    await untilAsync(
      async () => {
        const statuses = await this.status();
        const serving = statuses.filter((status) => status.nodeId !== except && shardOf(status, shard)?.phase === 'serving');
        seen = statuses.map((status) => `${status.nodeId}:${shardOf(status, shard)?.phase}@${shardOf(status, shard)?.epoch}`).join(' ');
        leader = serving.length === 1 ? serving[0].nodeId : null;
        return leader !== null;
      },
      () => `one serving leader of shard ${shard} (${seen})`,
      90_000,
    );
    if (leader === null) throw new Error('unreachable');
    return leader;
  }

  /** Waits until every live node's replica of every shard has the same commit point (nothing pending). */
  async converged(): Promise<void> {
    let seen = '';
    await untilAsync(
      async () => {
        const statuses = await this.status();
        const live = [...this.processes.values()].filter((node) => node !== null).length;
        seen = statuses.map((status) => `${status.nodeId}:[${status.shards.map((s) => `${s.shard}:${s.phase}/${s.hwm}/${s.lastSeq}`).join(',')}]`).join(' ');
        if (statuses.length !== live) return false;
        for (let shard = 0; shard < this.options.shards; shard++) {
          const views = statuses.map((status) => shardOf(status, shard)).filter((view) => view !== undefined);
          const hwms = new Set(views.map((view) => view.hwm));
          if (hwms.size !== 1 || !views.some((view) => view.phase === 'serving') || views.some((view) => view.lastSeq !== view.hwm)) return false;
        }
        return true;
      },
      () => `every replica at the same commit point (${seen})`,
      90_000,
    );
  }

  async stop(): Promise<void> {
    for (const node of this.processes.values()) await node?.stop();
    for (const transport of this.extraTransports) await transport.close();
    await this.transport.close();
    await this.nats.stop();
    removeDir(this.dir);
  }
}

export function shardOf(status: StatusReply, shard: number): ShardStatus | undefined {
  return status.shards.find((view) => view.shard === shard);
}
