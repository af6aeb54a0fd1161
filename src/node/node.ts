// A tidelog node: the supervisor actor wired to real shard hosts, endpoints, metrics and a
// transport. `startNode` resolves once every shard is recovered and the endpoints answer, or
// rejects with the error that stopped it (a damaged log, a held lock…), leaving nothing open.

import { hostname } from 'node:os';
import pino, { type Logger } from 'pino';
import { createActor, waitFor } from 'xstate';
import { createNodeMachine, type NodeActor } from '../actors/node.ts';
import { lookup, type ShardRouterActor } from '../actors/shard-router.ts';
import { loadSignalSchema, type SignalSchema } from '../crdt/index.ts';
import { TidelogError, isTidelogError } from '../errors.ts';
import { ShardRouter } from '../shard-map.ts';
import { encodeMessage } from '../transport/codec.ts';
import { subjects as subjectsOf, type InfoReply, type ShardStatus, type StatusReply } from '../transport/messages.ts';
import type { Transport } from '../transport/transport.ts';
import type { FileIo } from '../wal/index.ts';
import type { NodeConfig } from './config.ts';
import { NodeMetrics } from './metrics.ts';
import { serveEndpoints } from './request-handlers.ts';
import { ShardHost, failureFields } from './shard-host.ts';

export interface StartNodeOptions {
  config: NodeConfig;
  transport: Transport;
  logger?: Logger;
  /** Default: loaded from config.signals. */
  schema?: SignalSchema;
  /** The file system every shard uses (tests inject faults); default the real one. */
  io?: FileIo;
  /**
   * Open damaged shards on their durable prefix (damaged bytes set aside as `.damaged`)
   * instead of leaving them stopped: `tidelog serve --salvage`.
   */
  salvage?: boolean;
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
    private readonly unopened: Map<number, Error>,
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
    return nodeStatus(this.nodeId, this.startedAtMs, this.state, this.hosts, this.unopened);
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

function nodeStatus(
  nodeId: string,
  startedAtMs: number,
  state: string,
  hosts: ReadonlyMap<number, ShardHost>,
  unopened: ReadonlyMap<number, Error>,
): StatusReply {
  let sessions = 0;
  const shards = [...hosts.values()].map((host) => {
    sessions += host.state.sessions.size;
    return host.status();
  });
  for (const [shard, error] of unopened) shards.push(unopenedStatus(shard, error));
  shards.sort((a, b) => a.shard - b.shard);
  return { v: 1, t: 'status', nodeId, uptimeMs: Date.now() - startedAtMs, state, sessions, shards };
}

/** A shard that could not open: nothing to report but the error and where it is. */
function unopenedStatus(shard: number, error: Error): ShardStatus {
  return {
    shard,
    role: 'leader',
    epoch: 0,
    lastSeq: 0,
    hwm: 0,
    checkpointSeq: 0,
    pendingEvents: 0,
    segments: 0,
    appliedSeq: 0,
    entities: 0,
    ...failureFields(error),
  };
}

/** Errors that stop one shard's open but not the node: the shard's own files are damaged or unreadable. */
const CONTAINED_OPEN_ERRORS = new Set<string>([
  'CHECKSUM_MISMATCH',
  'CORRUPT_SEGMENT',
  'SEGMENT_GAP',
  'CHECKPOINT_DAMAGED',
  'SNAPSHOT_DAMAGED',
  'DECODE_FAILED',
  'IO_ERROR',
]);

export async function startNode(options: StartNodeOptions): Promise<TidelogNode> {
  const { config, transport } = options;
  const logger = options.logger ?? pino({ level: config.log.level }, pino.destination(2));
  const nodeId = config.nodeId === '' ? `${hostname()}-${process.pid}` : config.nodeId;
  const schema = options.schema ?? loadSignalSchema(config.signals);
  const router = ShardRouter.fromSpec(config.router);
  const subjects = subjectsOf(config.namespace);
  const hosts = new Map<number, ShardHost>();
  const unopened = new Map<number, Error>();
  const metrics = new NodeMetrics(nodeId, () => [
    ...[...hosts.values()].map((host) => {
      const stats = host.stats();
      const newest = stats.snapshots.files[stats.snapshots.files.length - 1];
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
        firstSeq: stats.segments[0]?.firstSeq ?? stats.durableSeq + 1,
        logBytes: stats.logBytes,
        snapshotSeq: newest?.seq ?? 0,
        snapshotBytes: newest?.bytes ?? 0,
        snapshotsTaken: stats.snapshots.taken,
        snapshotsFailed: stats.snapshots.failed,
        retentionSegmentsDeleted: stats.retention.segmentsDeleted,
        retentionBytesDeleted: stats.retention.bytesDeleted,
        failed: host.failure === null ? 0 : 1,
      };
    }),
    ...[...unopened.keys()].map((shard) => ({
      shard,
      lastSeq: 0,
      durableSeq: 0,
      checkpointSeq: 0,
      pendingEvents: 0,
      sessions: 0,
      entities: 0,
      fsyncP50Us: 0,
      fsyncP99Us: 0,
      firstSeq: 0,
      logBytes: 0,
      snapshotSeq: 0,
      snapshotBytes: 0,
      snapshotsTaken: 0,
      snapshotsFailed: 0,
      retentionSegmentsDeleted: 0,
      retentionBytesDeleted: 0,
      failed: 1,
    })),
  ]);
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
          wal: { ...config.wal, retention: config.retention },
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
          salvage: options.salvage ?? false,
        });
        hosts.set(shard, host);
        const { recovery } = host;
        logger.info(
          {
            shard,
            lastSeq: host.hwm,
            entities: host.state.entityCount,
            restoredFrom: recovery.restoredFrom.source,
            restoredSeq: recovery.restoredFrom.seq,
            scannedSegments: recovery.scannedSegments,
            segments: recovery.segments,
            phasesMs: recovery.phasesMs,
            ms: Date.now() - startedMs,
          },
          'shard open',
        );
        for (const damaged of recovery.damagedSnapshots) logger.warn({ shard, ...damaged }, 'damaged snapshot set aside; an older one was used');
        if (recovery.damage !== null) logger.warn({ shard, damage: recovery.damage, quarantined: recovery.quarantined }, 'salvaged: damaged bytes set aside');
        return host;
      },
      isShardOpenErrorContained: (shard, error) => {
        if (!isTidelogError(error) || !CONTAINED_OPEN_ERRORS.has(error.code)) return false;
        unopened.set(shard, error);
        logger.error({ err: error, shard }, 'shard damaged: it stays stopped, the other shards serve (tidelog serve --salvage opens it on its durable prefix)');
        return true;
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
          status: () => nodeStatus(nodeId, startedAtMs, String(actor.getSnapshot().value), hosts, unopened),
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
  const node = new TidelogNode(nodeId, config, actor, metrics, hosts, unopened, metricsPort, startedAtMs);
  logger.info({ nodeId, namespace: config.namespace, shards: router.shards.length, metricsPort }, 'node serving');
  return node;
}
