// One replicated shard on this node: its host, the replica server that answers leaders and
// candidates, the shard machine (src/actors/shard.ts) that decides the role, and — while this
// replica leads — the shipper. The node wires one per shard of its replica sets; the
// simulation wires them over its own network, store and clock.
//
// Invariant: producers are served (phase `serving`) only while this replica leads its
// recorded epoch and the commit point has reached the durable end it had when it began to
// lead, so the session store and the state hold everything that was ever acknowledged.

import { createActor } from 'xstate';
import { TidelogError } from '../errors.ts';
import { createShardMachine, type CampaignResult, type Leadership, type ShardActor, type ShardPhase } from '../actors/shard.ts';
import type { EpochStore } from '../cluster/epoch-store.ts';
import { ReplicaServer, campaign, type PeerNet, type ReplicaLog } from './election.ts';
import { Shipper } from './replication.ts';

export interface ReplicaTimers {
  /** Calls `tick` every `ms` until the returned function is called. */
  every(ms: number, tick: () => void): () => void;
  /** What xstate's delayed transitions use (a simulated clock in the simulation). */
  clock: { setTimeout(fn: (...args: unknown[]) => void, ms: number): unknown; clearTimeout(id: unknown): void };
  /** Monotonic milliseconds. */
  nowMs(): number;
}

export const realTimers: ReplicaTimers = {
  every: (ms, tick) => {
    const timer = setInterval(tick, ms);
    timer.unref?.();
    return () => clearInterval(timer);
  },
  clock: {
    setTimeout: (fn, ms) => setTimeout(fn, ms),
    clearTimeout: (id) => clearTimeout(id as NodeJS.Timeout),
  },
  nowMs: () => performance.now(),
};

export interface ShardReplicaOptions {
  shard: number;
  nodeId: string;
  /** Every replica of the shard, this node included. */
  replicas: readonly string[];
  /**
   * 'quorum': a majority holds a batch durable before it is acknowledged; 'all': every replica;
   * 'leader' (availability mode): the leader's own fsync, a leader cut off from its quorum
   * keeps serving, and what a replica cuts is merged back (`orphans`). The commit point (what
   * is read and folded) is a majority's in every mode.
   */
  acks: 'quorum' | 'all' | 'leader';
  /** This replica's orphan files (ShardHost): merged into the leader's log each heartbeat while any exist. */
  orphans?: OrphanSource;
  log: ReplicaLog;
  store: EpochStore;
  net: PeerNet;
  leaderTimeoutMs: number;
  heartbeatMs: number;
  timers?: ReplicaTimers;
  random?: () => number;
  /** Most bytes of batches one replicate request carries. */
  maxRequestBytes?: number;
  /** How long retention waits for a silent follower (default forever; see Shipper). */
  retentionWaitMs?: number;
  onChange?: (change: ReplicaStatus & { reason?: string }) => void;
  onStep?: (step: string, fields: Record<string, unknown>) => void;
}

/** Orphan files of one replica (availability mode; ShardHost implements it). */
export interface OrphanSource {
  /** Orphan batches kept since open: grows when a cut kept some. */
  readonly orphansKept: number;
  orphanFiles(): Promise<string[]>;
  readOrphanFile(name: string): Promise<Uint8Array[]>;
  removeOrphanFile(name: string): Promise<void>;
}

/** Bytes of orphan batches one merge request carries at most (under NATS's 1 MiB payload). */
const MERGE_REQUEST_BYTES = 512 << 10;

export interface ReplicaStatus {
  phase: ShardPhase;
  epoch: number;
  leaderId: string | null;
  /** Leader only: the highest seq each follower holds durable, as far as it knows. */
  followers?: Record<string, number>;
  /** Availability mode: orphan files waiting to be merged into the leader's log. */
  orphanFiles?: number;
  /** Availability mode: bytes of orphan batches sent to be merged, and events the leader appended of them. */
  orphanBytesSent?: number;
  orphanEventsMerged?: number;
}

export class ShardReplica {
  readonly server: ReplicaServer;
  private readonly actor: ShardActor;
  private shipper: Shipper | null = null;
  private current: ReplicaStatus;
  private isHandingOff = false;
  private readonly timers: ReplicaTimers;
  private readonly peers: string[];
  /** Availability mode: the merge loop (orphan files → the leader). */
  private stopMerging: (() => void) | null = null;
  private isMerging = false;
  /** Orphan files last seen (null: look again); orphansKept when last looked. */
  private orphanFilesSeen: number | null = null;
  private orphansKeptSeen = -1;
  private orphanBytesSent = 0;
  /** Orphan files whose merge failed: when each may be tried again. */
  private readonly mergeBackoff = new Map<string, { waitMs: number; untilMs: number }>();
  private orphanEventsMerged = 0;

  constructor(private readonly options: ShardReplicaOptions) {
    const { log, shard, nodeId } = options;
    const timers = options.timers ?? realTimers;
    this.timers = timers;
    this.peers = options.replicas.filter((replica) => replica !== nodeId);
    // Until a leader says what the other replicas hold, retention keeps everything.
    log.holdRetention(0);
    this.current = { phase: 'following', epoch: log.epoch, leaderId: null };
    this.server = new ReplicaServer(shard, log, {
      onLeaderContact: (epoch, leaderId) => this.actor.send({ type: 'LEADER_CONTACT', epoch, leaderId }),
      onPrepared: (epoch, candidateId) => this.actor.send({ type: 'PREPARED', epoch, candidateId }),
      onCampaignNow: (epoch, leaderId) => this.actor.send({ type: 'CAMPAIGN_NOW', epoch, leaderId }),
      isServing: () => this.serving,
    }, { nowMs: () => timers.nowMs(), leaderTimeoutMs: options.leaderTimeoutMs });
    const machine = createShardMachine();
    this.actor = createActor(machine, {
      clock: timers.clock as never,
      input: {
        epoch: log.epoch,
        services: {
          shard,
          nodeId,
          leaderTimeoutMs: options.leaderTimeoutMs,
          heartbeatMs: options.heartbeatMs,
          random: options.random ?? Math.random,
          every: timers.every,
          campaign: ({ preVote }) => this.campaign(preVote),
          startLeading: (epoch) => this.startLeading(epoch, timers),
          onChange: (change) => {
            this.current = { phase: change.phase, epoch: Math.max(change.epoch, log.epoch), leaderId: change.leaderId };
            options.onChange?.({ ...this.status(), ...(change.reason === undefined ? {} : { reason: change.reason }) });
          },
        },
      },
    });
  }

  start(): void {
    // An actor error would otherwise be rethrown from a timer and end the process: this
    // replica stops taking part instead (the others elect a leader without it).
    this.actor.subscribe({ error: (error) => this.options.onChange?.({ phase: 'failed', epoch: this.options.log.epoch, leaderId: null, reason: `shard machine failed: ${String((error as Error)?.message ?? error)}` }) });
    this.actor.start();
    if (this.options.orphans !== undefined) {
      this.stopMerging = this.timers.every(this.options.heartbeatMs, () => void this.mergeRound());
    }
  }

  /**
   * Each heartbeat (availability mode, or any mode while orphan files are left from it): the
   * oldest orphan file not backing off goes to the shard's leader (or, serving here, into this
   * log), in requests of at most MERGE_REQUEST_BYTES, and is removed once every part was
   * answered. A failure leaves the file and backs it off (doubling, up to a minute) so the
   * files after it go on; the leader's merge identities make a resend harmless.
   */
  private async mergeRound(): Promise<void> {
    const orphans = this.options.orphans;
    if (orphans === undefined || this.isMerging) return;
    if (orphans.orphansKept !== this.orphansKeptSeen) this.orphanFilesSeen = null;
    if (this.orphanFilesSeen === 0) return;
    const log = this.options.log;
    const leaderId = this.serving ? this.options.nodeId : this.current.leaderId;
    this.isMerging = true;
    let name: string | null = null;
    try {
      this.orphansKeptSeen = orphans.orphansKept;
      const files = await orphans.orphanFiles();
      this.orphanFilesSeen = files.length;
      for (const known of [...this.mergeBackoff.keys()]) if (!files.includes(known)) this.mergeBackoff.delete(known);
      if (files.length === 0 || leaderId === null || log.isRepairing) return;
      const nowMs = this.timers.nowMs();
      name = files.find((file) => (this.mergeBackoff.get(file)?.untilMs ?? 0) <= nowMs) ?? null;
      if (name === null) return;
      const batches = await orphans.readOrphanFile(name);
      const totals = { batches: 0, inLog: 0, alreadyMerged: 0, appended: 0, events: 0, droppedEvents: 0, bytes: 0 };
      for (const part of chunks(batches, MERGE_REQUEST_BYTES)) {
        const reply =
          leaderId === this.options.nodeId
            ? await this.mergeHere(part)
            : await this.options.net.merge!(leaderId, { shard: this.options.shard, epoch: log.epoch, fromNode: this.options.nodeId, batches: part });
        for (const key of ['batches', 'inLog', 'alreadyMerged', 'appended', 'events', 'droppedEvents'] as const) totals[key] += reply[key];
        for (const batch of part) totals.bytes += batch.byteLength;
        for (const batch of part) this.orphanBytesSent += batch.byteLength;
        this.orphanEventsMerged += reply.events;
      }
      await orphans.removeOrphanFile(name);
      this.mergeBackoff.delete(name);
      this.orphanFilesSeen = files.length - 1;
      this.report('merged', { file: name, leader: leaderId, ...totals });
    } catch (error) {
      if (name !== null) {
        const waitMs = Math.min(60_000, (this.mergeBackoff.get(name)?.waitMs ?? this.options.heartbeatMs) * 2);
        this.mergeBackoff.set(name, { waitMs, untilMs: this.timers.nowMs() + waitMs });
      }
      this.report('merge-failed', { file: name, leader: leaderId, error: String((error as Error)?.message ?? error), code: (error as { code?: unknown })?.code });
    } finally {
      this.isMerging = false;
    }
  }

  /** onStep, never throwing into a timer. */
  private report(step: string, fields: Record<string, unknown>): void {
    try {
      this.options.onStep?.(step, fields);
    } catch {
      // A logger that throws is not worth a replica.
    }
  }

  private async mergeHere(batches: Uint8Array[]) {
    const log = this.options.log;
    if (!this.serving || log.mergeOrphans === undefined) throw new TidelogError('NOT_LEADER', `shard ${this.options.shard}: this replica no longer serves; the orphans go to the next leader`);
    return log.mergeOrphans(batches);
  }

  get phase(): ShardPhase {
    return this.current.phase;
  }

  /** Producers may append here now. */
  get serving(): boolean {
    return !this.isHandingOff && this.current.phase === 'serving' && this.options.log.leading;
  }

  /**
   * Before a leader stops (SIGTERM, a rolling restart): take no more appends (the caller drops
   * the append subscription first), wait up to `maxWaitMs` for what was accepted to be durable
   * here and on a follower, then ask that follower to campaign at once (Raft's TimeoutNow), so
   * the shard is led again within an election instead of a leader timeout. Resolves with the
   * follower asked, or null (not serving, or nobody caught up in time: the timeout decides).
   */
  async handOff(maxWaitMs = 2_000): Promise<string | null> {
    const shipper = this.shipper;
    const { log, net } = this.options;
    if (shipper === null || !this.serving || net.campaignNow === undefined) return null;
    this.isHandingOff = true;
    const deadlineMs = this.timers.nowMs() + maxWaitMs;
    for (;;) {
      await shipper.pump();
      const matched = Object.entries(shipper.matchSeqs()).sort((a, b) => b[1] - a[1])[0];
      if (matched !== undefined && log.durableSeq >= log.lastAssignedSeq && matched[1] >= log.durableSeq) {
        try {
          await net.campaignNow(matched[0], { shard: this.options.shard, epoch: log.epoch, leaderId: this.options.nodeId });
          return matched[0];
        } catch {
          return null;
        }
      }
      if (this.timers.nowMs() > deadlineMs) return null;
      await new Promise((resolve) => this.timers.clock.setTimeout(resolve, 5));
    }
  }

  get leaderId(): string | null {
    return this.current.leaderId;
  }

  status(): ReplicaStatus {
    const status: ReplicaStatus = { ...this.current, epoch: this.options.log.epoch };
    if (this.shipper !== null) status.followers = this.shipper.matchSeqs();
    if (this.options.orphans !== undefined && (this.options.acks === 'leader' || (this.orphanFilesSeen ?? 0) > 0 || this.orphanBytesSent > 0)) {
      // Unknown (omitted) until listed, and again once a cut kept more since the last listing.
      if (this.orphanFilesSeen !== null && this.options.orphans?.orphansKept === this.orphansKeptSeen) status.orphanFiles = this.orphanFilesSeen;
      status.orphanBytesSent = this.orphanBytesSent;
      status.orphanEventsMerged = this.orphanEventsMerged;
    }
    return status;
  }

  /** A batch became durable here (`sealed`: its bytes, valid during the call): ship it now (the leader streams; no polling). */
  onDurable(sealed?: Uint8Array): void {
    if (this.shipper === null) return;
    if (sealed !== undefined) this.shipper.offer(sealed);
    void this.shipper.pump();
  }

  /** The host's lane failed: this replica stops taking part. */
  fail(error: Error): void {
    this.actor.send({ type: 'FAILED', error });
  }

  stop(): void {
    this.stopMerging?.();
    this.stopMerging = null;
    this.actor.send({ type: 'STOP' });
    this.shipper?.stop();
    this.shipper = null;
    this.actor.stop();
  }

  private campaign(preVote: boolean): Promise<CampaignResult> {
    return campaign({
      preVote,
      shard: this.options.shard,
      nodeId: this.options.nodeId,
      peers: this.peers,
      replicationFactor: this.options.replicas.length,
      log: this.options.log,
      server: this.server,
      store: this.options.store,
      net: this.options.net,
      onStep: this.options.onStep,
    });
  }

  private startLeading(epoch: number, timers: ReplicaTimers): Leadership {
    const { log, net, shard, nodeId } = this.options;
    // A newer epoch may have been recorded between the campaign's lead() and now.
    if (!log.leading || log.epoch !== epoch) return { tick: () => 'step-down', stop: () => undefined };
    const shipper = new Shipper(
      log,
      this.peers.map((peer) => ({ nodeId: peer, send: (request) => net.replicate(peer, request), install: (request) => net.install(peer, request) })),
      {
        shard,
        leaderId: nodeId,
        replicationFactor: this.options.replicas.length,
        ...(this.options.acks === 'all' ? { requiredReplicas: this.options.replicas.length } : {}),
        ...(this.options.maxRequestBytes === undefined ? {} : { maxRequestBytes: this.options.maxRequestBytes }),
        ...(this.options.retentionWaitMs === undefined ? {} : { retentionWaitMs: this.options.retentionWaitMs }),
        nowMs: timers.nowMs,
      },
    );
    this.shipper = shipper;
    void shipper.pump();
    return {
      tick: () => {
        // A leader that cannot write leaves the quorum: its followers elect without it.
        const failure = log.failure;
        if (failure !== null) {
          // After this tick's step-down: the replica then stops taking part (failed, final).
          queueMicrotask(() => this.fail(failure));
          return 'step-down';
        }
        if (shipper.fenced || !log.leading || log.epoch !== epoch) return 'step-down';
        // Availability mode: a leader cut off from its quorum keeps acknowledging on its own
        // fsync; a newer epoch (fenced) is what ends its term.
        if (this.options.acks !== 'leader' && shipper.quorumContactAgeMs() > this.options.leaderTimeoutMs) return 'step-down';
        log.holdRetention(shipper.retainFrom());
        void shipper.pump();
        return log.committedSeq >= shipper.leadEndSeq ? 'serving' : 'preparing';
      },
      stop: () => {
        shipper.stop();
        if (this.shipper === shipper) this.shipper = null;
      },
    };
  }
}

/** Consecutive runs of `batches` of at most `maxBytes` each (a larger batch alone). */
function chunks(batches: readonly Uint8Array[], maxBytes: number): Uint8Array[][] {
  const parts: Uint8Array[][] = [];
  let part: Uint8Array[] = [];
  let bytes = 0;
  for (const batch of batches) {
    if (part.length > 0 && bytes + batch.byteLength > maxBytes) {
      parts.push(part);
      part = [];
      bytes = 0;
    }
    part.push(batch);
    bytes += batch.byteLength;
  }
  if (part.length > 0) parts.push(part);
  return parts;
}
