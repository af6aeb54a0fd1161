// A tidelog node: the supervisor actor wired to real shard hosts, endpoints, metrics and a
// transport. `startNode` resolves once every shard is recovered and the endpoints answer, or
// rejects with the error that stopped it (a damaged log, a held lock…), leaving nothing open.

import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { join } from 'node:path';
import pino, { type Logger } from 'pino';
import { createActor, waitFor } from 'xstate';
import { createNodeMachine, type NodeActor } from '../actors/node.ts';
import { lookup, type ShardRouterActor } from '../actors/shard-router.ts';
import { loadSignalSchema, type SignalSchema } from '../crdt/index.ts';
import { TidelogError, isTidelogError } from '../errors.ts';
import { ShardRouter } from '../shard-map.ts';
import { decodeReply, encodeMessage } from '../transport/codec.ts';
import { subjects as subjectsOf, type InfoReply, type ShardStatus, type StatusReply } from '../transport/messages.ts';
import type { Transport } from '../transport/transport.ts';
import { nodeFileIo, readWhole, replicaFileName, writeFileAtomic, type FileIo } from '../wal/index.ts';
import { replicaSet } from '../cluster/placement.ts';
import type { EpochStore } from '../cluster/epoch-store.ts';
import { KvEpochStore } from '../cluster/kv-epoch-store.ts';
import { DEFAULT_MAX_CONSUMER_POSITIONS, FileConsumerStore, KvConsumerStore, MemoryConsumerStore, type ConsumerStore } from '../cluster/consumer-store.ts';
import { NatsTransport } from '../transport/nats.ts';
import { DEFAULT_MONITOR_PORT, type NodeConfig } from './config.ts';
import { TransportPeerNet, serveReplica } from './replica-net.ts';
import { ShardReplica, type ReplicaTimers } from './shard-replica.ts';
import type { Endpoints } from './request-handlers.ts';
import { NodeMetrics } from './metrics.ts';
import { MonitorServer, Timeline, type MonitorSources, type TimelinePoint, type TimelineTotals } from './monitor.ts';
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
  /**
   * A cluster's epoch store; default the namespace's JetStream KV bucket on the transport's
   * NATS connection (an in-process transport needs one given: tests pass a MemoryEpochStore).
   */
  epochStore?: EpochStore;
  /** Timers of the replicated shards (tests); default the real ones. */
  replicaTimers?: ReplicaTimers;
  /**
   * Durable consumers' positions; default a file in the data dir (standalone) or the
   * namespace's JetStream KV bucket (a cluster; an in-process transport gets a memory store).
   */
  consumerStore?: ConsumerStore;
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
    private readonly replicas: Map<number, ShardReplica>,
    /** The monitoring endpoint (/metrics, /healthz, /status, the status page); null when off. */
    private readonly monitor: { server: MonitorServer | null; sampler: NodeJS.Timeout; timeline: Timeline },
    private readonly startedAtMs: number,
    /** Hands every shard this node serves to a caught-up follower (a cluster; else nothing). */
    private readonly handOff: () => Promise<void>,
    /** Durable consumers' positions. */
    readonly consumers: ConsumerStore,
  ) {}

  /** Port of the monitoring endpoint; null when it is off. */
  get metricsPort(): number | null {
    return this.monitor.server?.port ?? null;
  }

  /** The last minutes of ingest and latency, a point a second (the status page's plots). */
  timeline(): TimelinePoint[] {
    return this.monitor.timeline.points();
  }

  get state(): string {
    return String(this.actor.getSnapshot().value);
  }

  host(shard: number): ShardHost | undefined {
    return this.hosts.get(shard);
  }

  status(): StatusReply {
    return withConsumers(nodeStatus(this.nodeId, this.startedAtMs, this.state, this.hosts, this.unopened, this.replicas), this.consumers);
  }

  /** The replica of a replicated shard held here (undefined standalone or when not held). */
  replica(shard: number): ShardReplica | undefined {
    return this.replicas.get(shard);
  }

  /** Stops serving, lets what is queued become durable, closes every shard. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      await this.handOff();
      this.actor.send({ type: 'STOP' });
      const snapshot = await waitFor(this.actor, (state) => state.status === 'done', { timeout: Infinity });
      clearInterval(this.monitor.sampler);
      await this.monitor.server?.close();
      await this.consumers.close();
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
  replicas: ReadonlyMap<number, ShardReplica>,
): StatusReply {
  let sessions = 0;
  const shards = [...hosts.values()].map((host) => {
    sessions += host.state.sessions.size;
    const status = host.status();
    const replica = replicas.get(host.shard);
    if (replica === undefined) return status;
    const replicaStatus = replica.status();
    status.phase = replicaStatus.phase;
    status.role = replica.serving ? 'leader' : 'follower';
    if (replicaStatus.leaderId !== null) status.leader = replicaStatus.leaderId;
    if (replicaStatus.followers !== undefined) {
      status.followers = Object.entries(replicaStatus.followers).map(([nodeId, matchSeq]) => ({ nodeId, matchSeq }));
    }
    if (replicaStatus.orphanFiles !== undefined) status.orphanFiles = replicaStatus.orphanFiles;
    if (replicaStatus.orphanBytesSent !== undefined) status.orphanBytesSent = replicaStatus.orphanBytesSent;
    if (replicaStatus.orphanEventsMerged !== undefined) status.orphanEventsMerged = replicaStatus.orphanEventsMerged;
    return status;
  });
  for (const [shard, error] of unopened) shards.push(unopenedStatus(shard, error));
  shards.sort((a, b) => a.shard - b.shard);
  return { v: 1, t: 'status', nodeId, pid: process.pid, uptimeMs: Date.now() - startedAtMs, state, sessions, shards };
}

/** Positions a status reply lists at most (the reply stays far below NATS's 1 MiB). */
const MAX_STATUS_CONSUMERS = 1000;

/** The status with the consumers' positions this node knows of (by name, then shard; the first 1000). */
function withConsumers(status: StatusReply, consumers: ConsumerStore): StatusReply {
  const positions = consumers.positions().slice(0, MAX_STATUS_CONSUMERS);
  return positions.length === 0 ? status : { ...status, consumers: positions.map(({ name, shard, seq }) => ({ consumer: name, shard, seq })) };
}

/** The durable consumers' store the options or the mode call for. */
async function openConsumerStore(options: StartNodeOptions, clustered: boolean, logger: Logger): Promise<ConsumerStore> {
  const { config, transport } = options;
  if (options.consumerStore !== undefined) return options.consumerStore;
  if (!clustered) return FileConsumerStore.open(options.io ?? nodeFileIo, config.dataDir, DEFAULT_MAX_CONSUMER_POSITIONS);
  if (!(transport instanceof NatsTransport)) return new MemoryConsumerStore(DEFAULT_MAX_CONSUMER_POSITIONS);
  // Like the epoch bucket: a NATS cluster that just started elects its JetStream meta leader first.
  const deadlineMs = performance.now() + EPOCH_STORE_OPEN_MS;
  for (;;) {
    try {
      return await KvConsumerStore.open(transport.connection, {
        namespace: config.namespace,
        bucketReplicas: config.cluster.epochBucketReplicas,
        timeoutMs: config.cluster.requestTimeoutMs * 5,
        maxPositions: DEFAULT_MAX_CONSUMER_POSITIONS,
      });
    } catch (error) {
      if (performance.now() > deadlineMs) throw error;
      logger.warn({ err: error }, 'consumer positions: bucket not ready; retrying');
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }
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

/** The replication gauges of one shard (standalone: it always leads, no followers). */
function replicationGauges(host: ShardHost, replica: ShardReplica | undefined): { hwm: number; epoch: number; leader: number; followerLagEvents: number } {
  const hwm = host.hwm;
  if (replica === undefined) return { hwm, epoch: host.epoch, leader: 1, followerLagEvents: 0 };
  const followers = Object.values(replica.status().followers ?? {});
  return { hwm, epoch: host.epoch, leader: replica.serving ? 1 : 0, followerLagEvents: followers.length === 0 ? 0 : Math.max(0, ...followers.map((matchSeq) => hwm - matchSeq)) };
}

/** Where a node without a configured nodeId keeps the one it generated (in its data dir). */
export const NODE_ID_FILE = 'node-id';

/**
 * A standalone node's id when the config names none: generated once (host name and 8 random
 * hex digits) and kept in `<dataDir>/node-id`, so restarts keep it (metrics labels, status,
 * logs); a node with a configured id (every cluster node) uses that.
 */
async function storedNodeId(dataDir: string, io: FileIo): Promise<string> {
  const path = join(dataDir, NODE_ID_FILE);
  if (await io.exists(path)) {
    const stored = new TextDecoder().decode(await readWhole(io, path)).trim();
    if (/^[A-Za-z0-9_.-]{1,64}$/.test(stored)) return stored;
    throw new TidelogError('CONFIG_INVALID', `${path} holds no node id (1..64 of A-Z a-z 0-9 _ . -); set nodeId, or remove the file to generate one`, { details: { file: path } });
  }
  const host = hostname().replace(/[^A-Za-z0-9_.-]/g, '-').slice(0, 40) || 'node';
  const generated = `${host}-${randomBytes(4).toString('hex')}`;
  await io.mkdirp(dataDir);
  await writeFileAtomic(io, dataDir, NODE_ID_FILE, new TextEncoder().encode(`${generated}\n`));
  return generated;
}

/** Totals since start over the shards held here, for the timeline's differences. */
function timelineTotals(hosts: ReadonlyMap<number, ShardHost>): TimelineTotals {
  const totals: TimelineTotals = { events: 0, fsyncs: 0, fsyncTotalUs: 0 };
  for (const host of hosts.values()) {
    const flush = host.stats().flush;
    totals.events += flush.events;
    totals.fsyncs += flush.fsyncs;
    totals.fsyncTotalUs += flush.fsyncTotalUs;
  }
  return totals;
}

/**
 * The monitoring endpoint on metrics.host:metrics.port. The default port, when taken (another
 * node on this host), falls back to a free one with a warning; a port set otherwise must bind.
 */
async function listenMonitor(config: NodeConfig, sources: MonitorSources, logger: Logger): Promise<MonitorServer> {
  const { port, host } = config.metrics;
  try {
    return await MonitorServer.listen(port, host, sources);
  } catch (error) {
    if (port !== DEFAULT_MONITOR_PORT || !isTidelogError(error, 'IO_ERROR') || error.context.errno !== 'EADDRINUSE') throw error;
    const server = await MonitorServer.listen(0, host, sources);
    logger.warn({ port: server.port, defaultPort: port }, 'monitoring: the default port is taken; serving on a free one');
    return server;
  }
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
  const nodeId = config.nodeId === '' ? await storedNodeId(config.dataDir, options.io ?? nodeFileIo) : config.nodeId;
  const schema = options.schema ?? loadSignalSchema(config.signals);
  const router = ShardRouter.fromSpec(config.router);
  const subjects = subjectsOf(config.namespace);
  const cluster = config.cluster;
  const clustered = cluster.nodes.length > 0;
  const membership = { nodeIds: cluster.nodes, replicationFactor: cluster.replicationFactor };
  const replicaSets = new Map<number, string[]>(clustered ? router.shards.map((shard) => [shard, replicaSet(shard, membership)]) : []);
  const localShards = clustered ? router.shards.filter((shard) => replicaSets.get(shard)?.includes(nodeId) === true) : router.shards;
  await refuseSecondNode(transport, subjects.status, nodeId, clustered);
  const epochStore = clustered ? (options.epochStore ?? (await openEpochStore(transport, config, logger))) : null;
  const consumers = await openConsumerStore(options, clustered, logger);
  const peerNet = new TransportPeerNet(transport, config.namespace, cluster.requestTimeoutMs);
  const replicas = new Map<number, ShardReplica>();
  let endpoints: Endpoints | null = null;
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
        snapshotsInstalled: host.snapshotsInstalled,
        snapshotsFailed: stats.snapshots.failed,
        retentionSegmentsDeleted: stats.retention.segmentsDeleted,
        retentionBytesDeleted: stats.retention.bytesDeleted,
        failed: host.failure === null ? 0 : 1,
        ...replicationGauges(host, replicas.get(host.shard)),
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
      snapshotsInstalled: 0,
      snapshotsFailed: 0,
      retentionSegmentsDeleted: 0,
      retentionBytesDeleted: 0,
      failed: 1,
      hwm: 0,
      epoch: 0,
      leader: 0,
      followerLagEvents: 0,
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
      shards: localShards,
      openShard: async (shard) => {
        const startedMs = Date.now();
        const startRepair = clustered && epochStore !== null ? await replacedDiskRepair(shard, config.dataDir, epochStore, options.io ?? nodeFileIo, logger) : undefined;
        const host = await ShardHost.open({
          ...(startRepair === undefined ? {} : { startRepair: { code: startRepair.code, message: startRepair.message } }),
          shard,
          dataDir: config.dataDir,
          wal: { ...config.wal, retention: config.retention },
          // A replica continues with the highest epoch it recorded; standalone leads epoch 0.
          ...(clustered ? { commit: 'external' as const, onDurable: (info) => replicas.get(shard)?.onDurable(info.sealed) } : { epoch: 0 }),
          ...(clustered && cluster.acks === 'leader'
            ? { availability: true, onOrphansKept: (kept: Record<string, unknown>) => logger.warn({ shard, ...kept }, 'a cut kept its batches as an orphan file (merged into the leader\'s log next)') }
            : {}),
          schema,
          sessions: { maxSessions: config.limits.maxSessions, maxRunsPerSession: config.limits.maxRunsPerSession },
          recentBytes: RECENT_BYTES_PER_SHARD,
          publishFeed: (message) => {
            // A replicated shard's feed comes from its serving leader only (one copy per event).
            if (clustered && replicas.get(shard)?.serving !== true) return;
            try {
              transport.publish(subjects.shardFeed(shard), encodeMessage(message));
            } catch (error) {
              // The feed is best effort by design: tails detect the gap and read the disk.
              logger.debug({ err: error, shard }, 'feed publish failed');
            }
          },
          onRecoveryProgress: (done, total) => logger.info({ shard, done, total }, 'recovering shard'),
          onSnapshotInstalled: (installed) => logger.info({ shard, ...installed }, 'snapshot installed: this replica was behind its leader\'s retention'),
          ...(clustered ? { repairFromPeers: true, onRepaired: () => logger.warn({ shard }, 'repaired from the peers: the log is back past the leader\'s commit point; this replica votes again') } : {}),
          io: options.io,
          salvage: options.salvage ?? false,
        });
        // A replaced disk records the newest epoch claimed before it takes part: it refuses
        // older leaders from now on, and its replica file exists, so the next open is no longer
        // taken for a replaced disk (a deleted marker stays deleted).
        if (startRepair !== undefined && startRepair.epoch > host.epoch) await host.setEpoch(startRepair.epoch);
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
        if (host.isRepairing) logger.warn({ shard, durableSeq: host.durableSeq }, 'repairing from the peers: this replica may lack batches it acknowledged (its log was damaged and cut back to its intact prefix, or its disk was replaced); it does not vote until its leader brings it back');
        return host;
      },
      isShardOpenErrorContained: (shard, error) => {
        if (!isTidelogError(error) || !CONTAINED_OPEN_ERRORS.has(error.code)) return false;
        unopened.set(shard, error);
        logger.error({ err: error, shard }, 'shard damaged: it stays stopped, the other shards serve (tidelog serve --salvage opens it on its durable prefix)');
        return true;
      },
      closeShard: async (host) => {
        replicas.get(host.shard)?.stop();
        replicas.delete(host.shard);
        await host.close();
        hosts.delete(host.shard);
      },
      serve: (routerActor: ShardRouterActor<ShardHost>) => {
        const served = serveEndpoints({
          transport,
          shards: localShards,
          clustered,
          forwardTimeoutMs: cluster.requestTimeoutMs * 5,
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
              if (clustered && router.shards.includes(shard)) {
                throw new TidelogError('NOT_LEADER', `shard ${shard} is not held by ${nodeId}; its replicas are ${(replicaSets.get(shard) ?? []).join(', ')}`, {
                  details: { shard, replicas: (replicaSets.get(shard) ?? []).join(',') },
                });
              }
              throw new TidelogError('UNKNOWN_SHARD', `shard ${shard} is not in this node's shard map`, { details: { shard } });
            }
            const failure = entry.failure;
            const replica = replicas.get(shard);
            if (purpose === 'append' && replica !== undefined && !replica.serving && failure === null) {
              const leader = replica.leaderId;
              throw new TidelogError('NOT_LEADER', `shard ${shard} is led by ${leader ?? 'no node yet (an election is under way)'}, not ${nodeId}`, {
                details: { shard, ...(leader === null || leader === nodeId ? {} : { leader }) },
              });
            }
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
            replicas.get(shard)?.fail(error);
            endpoints?.setServing(shard, false);
            actor.send({ type: 'SHARD_FAILED', shard, error });
          },
          info: () => info,
          // Answered from the hosts, not `node`: requests can arrive before startNode returns.
          status: statusNow,
          consumers,
        });
        endpoints = served;
        const stopReplication = clustered && epochStore !== null ? startReplicas(routerActor) : [];
        return () => {
          for (const stop of stopReplication) stop();
          served.stop();
          endpoints = null;
        };
      },
      onError: (error) => {
        fatal ??= error;
        logger.error({ err: error }, 'node error');
      },
    },
  });
  /** Creates and starts the replica of every shard held here; returns what stops them. */
  function startReplicas(routerActor: ShardRouterActor<ShardHost>): Array<() => void> {
    const stops: Array<() => void> = [];
    for (const [shard, host] of hosts) {
      const set = replicaSets.get(shard) ?? [nodeId];
      const rank = set.indexOf(nodeId);
      const replica = new ShardReplica({
        shard,
        nodeId,
        replicas: set,
        acks: cluster.acks,
        log: host,
        // Every clustered replica merges orphan files it holds (left by availability mode, even
        // after a switch back to quorum); without any it only lists its directory once.
        orphans: host,
        store: epochStore!,
        net: peerNet,
        leaderTimeoutMs: cluster.leaderTimeoutMs,
        heartbeatMs: cluster.heartbeatMs,
        // Replicas wait 1 + 0.2 × rank (+ up to 0.1) leader timeouts, rank = place in the shard's
        // replica set: the preferred replica campaigns first (leaders spread over the nodes),
        // and the next one 0.2 timeouts later (300 ms at the default), more than a campaign
        // takes to prepare it, so two rarely claim epochs for one failover.
        random: () => rank * 0.2 + Math.random() * 0.1,
        maxRequestBytes: 512 << 10,
        retentionWaitMs: cluster.retentionWaitMs,
        ...(options.replicaTimers === undefined ? {} : { timers: options.replicaTimers }),
        onChange: (change) => {
          const serving = change.phase === 'serving';
          routerActor.send({ type: 'SHARD_ROLE', shard, role: serving ? 'leader' : 'follower', epoch: change.epoch, leaderId: change.leaderId });
          endpoints?.setServing(shard, serving);
          logger.info({ shard, phase: change.phase, epoch: change.epoch, leader: change.leaderId, reason: change.reason }, 'shard role');
        },
        onStep: (step, fields) =>
          step === 'merged' || step === 'merge-failed' ? logger[step === 'merged' ? 'info' : 'warn']({ shard, ...fields }, step === 'merged' ? 'orphans merged into the leader\'s log' : 'orphan merge failed (tried again)') : logger.info({ shard, step, ...fields }, 'election'),
      });
      replicas.set(shard, replica);
      stops.push(serveReplica(transport, config.namespace, nodeId, replica.server, logger));
      if (host.failure === null) replica.start();
      stops.push(() => replica.stop());
    }
    return stops;
  }

  // What {ns}.status and the monitoring endpoint answer.
  const statusNow = (): StatusReply => withConsumers(nodeStatus(nodeId, startedAtMs, String(actor.getSnapshot().value), hosts, unopened, replicas), consumers);
  actor.subscribe({ error: (error) => logger.error({ err: error }, 'node actor crashed') });
  actor.start();
  const snapshot = await waitFor(actor, (state) => state.value === 'serving' || state.status === 'done', { timeout: Infinity });
  if (snapshot.value !== 'serving') {
    actor.stop();
    await consumers.close();
    throw fatal ?? snapshot.context.error ?? new TidelogError('CLOSED', 'node stopped while starting');
  }
  const timeline = new Timeline();
  const sampler = setInterval(() => timeline.sample(Date.now(), timelineTotals(hosts), metrics.ackWindow), 1000);
  sampler.unref();
  let monitor: MonitorServer | null = null;
  if (config.metrics.enabled) {
    try {
      monitor = await listenMonitor(config, { metrics, timeline, status: statusNow }, logger);
    } catch (error) {
      clearInterval(sampler);
      actor.send({ type: 'STOP' });
      await waitFor(actor, (state) => state.status === 'done', { timeout: Infinity });
      actor.stop();
      await consumers.close();
      throw error;
    }
  }
  const metricsPort = monitor?.port ?? null;
  const handOff = async (): Promise<void> => {
    await Promise.all(
      [...replicas].map(async ([shard, replica]) => {
        if (!replica.serving) return;
        endpoints?.setServing(shard, false);
        const to = await replica.handOff();
        logger.info({ shard, to }, to === null ? 'stopping: no follower caught up in time; the leader timeout will elect one' : 'stopping: shard handed to a caught-up follower');
      }),
    );
  };
  const node = new TidelogNode(nodeId, config, actor, metrics, hosts, unopened, replicas, { server: monitor, sampler, timeline }, startedAtMs, handOff, consumers);
  logger.info({ nodeId, namespace: config.namespace, shards: router.shards.length, metricsPort }, 'node serving');
  return node;
}

/**
 * Refuses to start a node a running one already covers: standalone, any node answering on the
 * namespace (two standalone nodes would each lead every shard at epoch 0 and split the log);
 * in a cluster, a node already running with this node id.
 */
async function refuseSecondNode(transport: Transport, subject: string, nodeId: string, clustered: boolean): Promise<void> {
  const replies = await transport.requestMany(subject, encodeMessage({ v: 1, t: 'status' }), { timeoutMs: 250 });
  for (const bytes of replies) {
    let other: StatusReply;
    try {
      other = decodeReply(bytes, 'status');
    } catch {
      continue;
    }
    if (clustered && other.nodeId !== nodeId) continue;
    throw new TidelogError(
      'CONFIG_INVALID',
      clustered
        ? `node id ${nodeId} is already running (pid ${other.pid ?? 'unknown'}): each node of a cluster runs once`
        : `the namespace is already served by node ${other.nodeId} (pid ${other.pid ?? 'unknown'}); a second standalone node would split its shards' logs — stop it, or configure a cluster (cluster.nodes)`,
      { details: { otherNodeId: other.nodeId, ...(other.pid === undefined ? {} : { otherPid: other.pid }) } },
    );
  }
}

async function openEpochStore(transport: Transport, config: NodeConfig, logger: Logger): Promise<EpochStore> {
  if (!(transport instanceof NatsTransport)) {
    throw new TidelogError('CONFIG_INVALID', 'a cluster needs NATS (its epochs live in JetStream KV), or an epochStore given to startNode');
  }
  // A NATS cluster that just started elects its JetStream meta leader first: retry a while.
  const deadlineMs = performance.now() + EPOCH_STORE_OPEN_MS;
  for (let attempt = 1; ; attempt++) {
    try {
      return await KvEpochStore.open(transport.connection, {
        namespace: config.namespace,
        bucketReplicas: config.cluster.epochBucketReplicas,
        timeoutMs: config.cluster.requestTimeoutMs * 5,
      });
    } catch (error) {
      if (performance.now() > deadlineMs) throw error;
      logger.warn({ err: error, attempt }, 'epoch store not reachable yet (JetStream starting?); retrying');
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }
}

/** How long a starting node waits for JetStream to hold its epoch bucket. */
const EPOCH_STORE_OPEN_MS = 60_000;

/**
 * A replica with no replica file (it never recorded an epoch) while its shard has epochs
 * claimed: its disk was replaced or wiped (or it joins late). It may once have acknowledged
 * batches it no longer holds, so it repairs from the peers before it votes. Without an answer
 * from the epoch store it opens as before (a fresh cluster whose KV is slow to start must not
 * leave every replica unable to vote).
 */
async function replacedDiskRepair(shard: number, dataDir: string, store: EpochStore, io: FileIo, logger: Logger): Promise<{ code: string; message: string; epoch: number } | undefined> {
  if (await io.exists(join(dataDir, 'wal', replicaFileName(shard)))) return undefined;
  try {
    const latest = await store.latest(shard);
    if (latest === null) return undefined;
    return { code: 'EMPTY_LOG', message: `no replica file while epoch ${latest.epoch} of shard ${shard} is claimed (by ${latest.nodeId}): a replaced or wiped disk`, epoch: latest.epoch };
  } catch (error) {
    logger.warn({ err: error, shard }, 'the epoch store did not answer: a replica with no replica file opens as a new one');
    return undefined;
  }
}
