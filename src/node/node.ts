// A tidelog node: the supervisor actor wired to real shard hosts, endpoints, metrics and a
// transport. `startNode` resolves once every shard is recovered and the endpoints answer, or
// rejects with the error that stopped it (a damaged log, a held lock…), leaving nothing open.

import { hostname } from 'node:os';
import pino, { type Logger } from 'pino';
import { createActor, waitFor } from 'xstate';
import { createNodeMachine, type NodeActor } from '../actors/node.ts';
import { lookup, type ShardRouterActor } from '../actors/shard-router.ts';
import { loadSignalSchema, type SignalSchema } from '../crdt/index.ts';
import { TidelogError } from '../errors.ts';
import { ShardRouter } from '../shard-map.ts';
import { encodeMessage } from '../transport/codec.ts';
import { subjects as subjectsOf, type InfoReply, type StatusReply } from '../transport/messages.ts';
import type { Transport } from '../transport/transport.ts';
import type { FileIo } from '../wal/index.ts';
import type { NodeConfig } from './config.ts';
import { NodeMetrics } from './metrics.ts';
import { serveEndpoints } from './request-handlers.ts';
import { ShardHost } from './shard-host.ts';

export interface StartNodeOptions {
  config: NodeConfig;
  transport: Transport;
  logger?: Logger;
  /** Default: loaded from config.signals. */
  schema?: SignalSchema;
  /** The file system every shard uses (tests inject faults); default the real one. */
  io?: FileIo;
}

/** Node-wide bound on requests being worked on at once (each also bounded by its shard). */
const MAX_IN_FLIGHT_REQUESTS = 8192;
/** Newest batches kept in memory per shard for readers near the head. */
const RECENT_BYTES_PER_SHARD = 32 << 20;

export class TidelogNode {
  private stopping: Promise<void> | null = null;

  constructor(
    readonly nodeId: string,
    readonly config: NodeConfig,
    private readonly actor: NodeActor<ShardHost>,
    readonly metrics: NodeMetrics,
    private readonly hosts: Map<number, ShardHost>,
    /** Port of the /metrics endpoint; null when it is off. */
    readonly metricsPort: number | null,
    private readonly startedAtMs: number,
  ) {}

  get state(): string {
    return String(this.actor.getSnapshot().value);
  }

  host(shard: number): ShardHost | undefined {
    return this.hosts.get(shard);
  }

  status(): StatusReply {
    return nodeStatus(this.nodeId, this.startedAtMs, this.state, this.hosts);
  }

  /** Stops serving, lets what is queued become durable, closes every shard. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.actor.send({ type: 'STOP' });
      const snapshot = await waitFor(this.actor, (state) => state.status === 'done', { timeout: Infinity });
      await this.metrics.close();
      this.actor.stop();
      const error = snapshot.context.error;
      if (error !== null && snapshot.value === 'stopped') throw error;
    })();
    return this.stopping;
  }
}

function nodeStatus(nodeId: string, startedAtMs: number, state: string, hosts: ReadonlyMap<number, ShardHost>): StatusReply {
  let sessions = 0;
  const shards = [...hosts.values()].map((host) => {
    sessions += host.state.sessions.size;
    return host.status();
  });
  return { v: 1, t: 'status', nodeId, uptimeMs: Date.now() - startedAtMs, state, sessions, shards };
}

export async function startNode(options: StartNodeOptions): Promise<TidelogNode> {
  const { config, transport } = options;
  const logger = options.logger ?? pino({ level: config.log.level }, pino.destination(2));
  const nodeId = config.nodeId === '' ? `${hostname()}-${process.pid}` : config.nodeId;
  const schema = options.schema ?? loadSignalSchema(config.signals);
  const router = ShardRouter.fromSpec(config.router);
  const subjects = subjectsOf(config.namespace);
  const hosts = new Map<number, ShardHost>();
  const metrics = new NodeMetrics(nodeId, () =>
    [...hosts.values()].map((host) => {
      const stats = host.stats();
      return {
        shard: host.shard,
        lastSeq: stats.nextSeq - 1,
        durableSeq: stats.durableSeq,
        checkpointSeq: stats.checkpointSeq,
        pendingEvents: stats.pendingEvents,
        sessions: host.state.sessions.size,
        entities: host.state.entityCount,
        fsyncP50Us: stats.flush.fsyncLatencyUs.p50,
        fsyncP99Us: stats.flush.fsyncLatencyUs.p99,
      };
    }),
  );
  const info: InfoReply = {
    v: 1,
    t: 'info',
    namespace: config.namespace,
    router: router.toSpec(),
    shards: router.shards,
    maxRequestEvents: config.limits.maxRequestEvents,
    maxRequestBytes: config.limits.maxRequestBytes,
  };
  const startedAtMs = Date.now();
  let fatal: Error | null = null;
  const machine = createNodeMachine<ShardHost>();
  const actor: NodeActor<ShardHost> = createActor(machine, {
    input: {
      nodeId,
      router,
      openShard: async (shard) => {
        const startedMs = Date.now();
        const host = await ShardHost.open({
          shard,
          dataDir: config.dataDir,
          wal: config.wal,
          epoch: 0,
          schema,
          sessions: { maxSessions: config.limits.maxSessions, maxRunsPerSession: config.limits.maxRunsPerSession },
          recentBytes: RECENT_BYTES_PER_SHARD,
          publishFeed: (message) => {
            try {
              transport.publish(subjects.shardFeed(shard), encodeMessage(message));
            } catch (error) {
              // The feed is best effort by design: tails detect the gap and read the disk.
              logger.debug({ err: error, shard }, 'feed publish failed');
            }
          },
          onRecoveryProgress: (done, total) => logger.info({ shard, done, total }, 'recovering shard'),
          io: options.io,
        });
        hosts.set(shard, host);
        logger.info({ shard, lastSeq: host.hwm, entities: host.state.entityCount, ms: Date.now() - startedMs }, 'shard open');
        return host;
      },
      closeShard: async (host) => {
        await host.close();
        hosts.delete(host.shard);
      },
      serve: (routerActor: ShardRouterActor<ShardHost>) =>
        serveEndpoints({
          transport,
          subjects,
          router,
          metrics,
          logger,
          limits: {
            maxRequestEvents: config.limits.maxRequestEvents,
            maxRequestBytes: config.limits.maxRequestBytes,
            maxInFlightRequests: MAX_IN_FLIGHT_REQUESTS,
          },
          hostFor: (shard, purpose) => {
            const entry = lookup(routerActor, shard);
            if (entry === undefined) {
              throw new TidelogError('UNKNOWN_SHARD', `shard ${shard} is not in this node's shard map`, { details: { shard } });
            }
            const failure = entry.failure;
            if (entry.host === null || (purpose === 'append' && failure !== null)) {
              if (failure instanceof TidelogError) throw failure;
              throw new TidelogError('CLOSED', `shard ${shard} is not serving`, { details: { shard }, cause: failure ?? undefined });
            }
            return entry.host;
          },
          shardFailed: (shard, error) => {
            // The router keeps the failure (xstate handles the send synchronously): report once.
            if ((lookup(routerActor, shard)?.failure ?? null) !== null) return;
            logger.error({ err: error, shard }, 'shard failed: its lane is read-only until restart');
            actor.send({ type: 'SHARD_FAILED', shard, error });
          },
          info: () => info,
          // Answered from the hosts, not `node`: requests can arrive before startNode returns.
          status: () => nodeStatus(nodeId, startedAtMs, String(actor.getSnapshot().value), hosts),
        }),
      onError: (error) => {
        fatal ??= error;
        logger.error({ err: error }, 'node error');
      },
    },
  });
  actor.subscribe({ error: (error) => logger.error({ err: error }, 'node actor crashed') });
  actor.start();
  const snapshot = await waitFor(actor, (state) => state.value === 'serving' || state.status === 'done', { timeout: Infinity });
  if (snapshot.value !== 'serving') {
    actor.stop();
    throw fatal ?? snapshot.context.error ?? new TidelogError('CLOSED', 'node stopped while starting');
  }
  let metricsPort: number | null = null;
  if (config.metrics.port !== 0) {
    try {
      metricsPort = await metrics.listen(config.metrics.port, config.metrics.host);
    } catch (error) {
      actor.send({ type: 'STOP' });
      await waitFor(actor, (state) => state.status === 'done', { timeout: Infinity });
      actor.stop();
      throw error;
    }
  }
  const node = new TidelogNode(nodeId, config, actor, metrics, hosts, metricsPort, startedAtMs);
  logger.info({ nodeId, namespace: config.namespace, shards: router.shards.length, metricsPort }, 'node serving');
  return node;
}
