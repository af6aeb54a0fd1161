// Elections and the replica side of one shard, transport-agnostic (docs/REPLICATION.md,
// "Elections"). The shard machine (src/actors/shard.ts) decides when; this file does it.
//
//   campaign (a follower that heard no leader for leaderTimeoutMs):
//     0. pre-vote (skipped when a stopping leader handed the shard over): ask the others
//        whether they heard no leader for leaderTimeoutMs either; fewer than a quorum (with
//        this one) say so → no campaign, nothing recorded. A replica that was cut off and
//        returns cannot claim an epoch and depose the leader the others follow.
//     1. E = max(recorded epoch, newest claimed in the epoch store) + 1; claim (shard, E) with a
//        create-only key. lost / unknown → no leader here (an unknown E is never used).
//     2. record E here (older leaders are refused from now on), then `prepare E` to every
//        other replica: each records E, stops taking older epochs, and answers its log's end
//        (confirmedEpoch, durableSeq). Fewer than a quorum answer (with this one) → give up.
//     3. the best log among those answers — highest (confirmedEpoch, durableSeq), this one on a
//        tie — holds every committed batch; when it is another's, fetch from it until this log
//        equals it (log matching as a follower does, our uncompared suffix cut).
//     4. lead(E). The shipper then brings followers in line; producers are served once the
//        commit point reaches the durable end this replica had when it began to lead.
//
// Every replica runs its replication work one request at a time (ReplicaServer.serial):
// appends from a leader, prepares and the candidate's own steps, so a log's end does not move
// while it is reported or compared. Fetches only read and are not queued (two candidates
// fetching from each other must not wait on each other).

import { TidelogError, isTidelogError } from '../errors.ts';
import type { EpochStore } from '../cluster/epoch-store.ts';
import type {
  CampaignNowRequest,
  FetchReply,
  FetchRequest,
  InstallReply,
  InstallRequest,
  MergeReply,
  MergeRequest,
  PreVoteReply,
  PreVoteRequest,
  PrepareReply,
  PrepareRequest,
  ReplicateReply,
  ReplicateRequest,
} from '../transport/replication-codec.ts';
import { readBatchHeader } from '../wal/batch-format.ts';
import { FollowerReplica, type FollowerLog, type LeaderLog } from './replication.ts';

/** Everything replication needs of a shard's host (ShardHost has it all). */
export interface ReplicaLog extends FollowerLog, LeaderLog {
  readonly committedSeq: number;
  lead(epoch: number): Promise<void>;
  /** Availability mode, leader only: re-append orphan batches once each (ShardHost.mergeOrphans). */
  mergeOrphans?(batches: readonly Uint8Array[]): Promise<MergeReply>;
}

/** How a replica reaches the other replicas of its shards (NATS, or the simulation's network). */
export interface PeerNet {
  replicate(peer: string, request: ReplicateRequest): Promise<ReplicateReply>;
  preVote(peer: string, request: PreVoteRequest): Promise<PreVoteReply>;
  prepare(peer: string, request: PrepareRequest): Promise<PrepareReply>;
  fetch(peer: string, request: FetchRequest): Promise<FetchReply>;
  /** A part of the leader's snapshot for a follower behind its retention. */
  install(peer: string, request: InstallRequest): Promise<InstallReply>;
  /** Availability mode: send the leader `peer` orphan batches to merge. */
  merge?(peer: string, request: MergeRequest): Promise<MergeReply>;
  /** A stopping leader asks `peer` to campaign now (optional: the handoff is an optimisation). */
  campaignNow?(peer: string, request: CampaignNowRequest): Promise<void>;
}

export interface ReplicaEvents {
  /** The leader of `epoch` reached this replica: it is alive (the follower's timer restarts). */
  onLeaderContact(epoch: number, leaderId: string): void;
  /** A candidate of `epoch` prepared this replica (an election is under way: wait for it). */
  onPrepared(epoch: number, candidateId: string): void;
  /** The leader of `epoch` is stopping and hands the shard to this replica. */
  onCampaignNow?(epoch: number, leaderId: string): void;
  /** Whether this replica serves producers now (a merge waits for that: its state is whole). */
  isServing?(): boolean;
}

/**
 * Most bytes of batches one fetch reply carries: with its encoding (a few bytes per batch) it
 * stays well under NATS's default max_payload of 1 MiB, as replicate requests do.
 */
const FETCH_BYTES = 512 << 10;

export interface ReplicaServerOptions {
  /** Monotonic milliseconds (the simulated clock in the simulation). */
  nowMs(): number;
  /** A pre-vote is granted only after this long without a leader's contact. */
  leaderTimeoutMs: number;
}

/** One shard's replica on this node: answers leaders and candidates, one request at a time. */
export class ReplicaServer {
  private chain: Promise<unknown> = Promise.resolve();
  private readonly follower: FollowerReplica;
  /** When a leader last reached this replica (-Infinity: never since it started). */
  private lastContactMs = -Infinity;
  private lastLeaderId: string | null = null;

  constructor(
    readonly shard: number,
    private readonly log: ReplicaLog,
    private readonly events: ReplicaEvents,
    private readonly options: ReplicaServerOptions,
  ) {
    this.follower = new FollowerReplica(log);
  }

  private contact(epoch: number, leaderId: string): void {
    this.lastContactMs = this.options.nowMs();
    this.lastLeaderId = leaderId;
    this.events.onLeaderContact(epoch, leaderId);
  }

  /**
   * Granted when this replica leads nothing, is not repairing (a replica that may not vote
   * does not start elections either: with a majority repairing none can succeed, and each
   * would claim an epoch) and heard from no leader for a leader timeout. Records nothing and
   * waits for no other request (it only reads).
   */
  preVote(_request: PreVoteRequest): Promise<PreVoteReply> {
    const log = this.log;
    const silentMs = this.options.nowMs() - this.lastContactMs;
    const granted = !log.leading && !log.isRepairing && silentMs >= this.options.leaderTimeoutMs;
    return Promise.resolve({ granted, epoch: log.epoch, leaderId: this.lastLeaderId });
  }

  /** Runs `work` after every earlier request of this shard ended. */
  serial<T>(work: () => Promise<T>): Promise<T> {
    const result = this.chain.then(work);
    this.chain = result.catch(() => undefined);
    return result;
  }

  replicate(request: ReplicateRequest): Promise<ReplicateReply> {
    return this.serial(async () => {
      const reply = await this.follower.handle(request);
      if (reply.kind !== 'fenced') this.contact(request.epoch, request.leaderId);
      return reply;
    });
  }

  install(request: InstallRequest): Promise<InstallReply> {
    return this.serial(async () => {
      const reply = await this.follower.install(request);
      if (reply.kind !== 'fenced') this.contact(request.epoch, request.leaderId);
      return reply;
    });
  }

  prepare(request: PrepareRequest): Promise<PrepareReply> {
    return this.serial(async () => {
      const log = this.log;
      if (request.epoch < log.epoch || (request.epoch === log.epoch && log.leading)) return { kind: 'fenced', epoch: log.epoch };
      // Not a vote: this log may lack batches it acknowledged before its damage (the candidate
      // counts a refusal as no answer).
      if (log.isRepairing) throw new TidelogError('REPAIRING', `shard ${this.shard}: this replica is repairing its log from its leader and does not vote`, { details: { shard: this.shard } });
      if (request.epoch > log.epoch) await log.setEpoch(request.epoch);
      this.events.onPrepared(request.epoch, request.candidateId);
      return { kind: 'ok', confirmedEpoch: log.confirmedEpoch, durableSeq: log.durableSeq, committedSeq: log.committedSeq };
    });
  }

  /**
   * Orphan batches from another replica (availability mode): merged when this replica leads
   * the sender's epoch or a newer one and serves; else NOT_LEADER (the sender tries again).
   */
  async merge(request: MergeRequest): Promise<MergeReply> {
    const log = this.log;
    if (!log.leading || request.epoch > log.epoch || log.mergeOrphans === undefined || this.events.isServing?.() === false) {
      throw new TidelogError('NOT_LEADER', `shard ${this.shard}: this replica does not lead (epoch ${log.epoch}); merges go to the leader`, { details: { shard: this.shard, epoch: log.epoch } });
    }
    return log.mergeOrphans(request.batches);
  }

  /** A stopping leader of our epoch asks us to campaign now; ignored from anyone else. */
  campaignNow(request: CampaignNowRequest): Promise<void> {
    if (request.epoch === this.log.epoch && !this.log.leading) this.events.onCampaignNow?.(request.epoch, request.leaderId);
    return Promise.resolve();
  }

  async fetch(request: FetchRequest): Promise<FetchReply> {
    const log = this.log;
    if (request.committedOnly === true) return readCommitted(log, request);
    // Only a log frozen by the candidate's epoch is read for it: one that takes nothing older.
    if (request.epoch < log.epoch || log.leading) return { kind: 'fenced', epoch: log.epoch };
    if (request.epoch > log.epoch) await this.serial(() => log.setEpoch(request.epoch));
    const durableSeq = log.durableSeq;
    const batches = request.fromSeq <= durableSeq ? await log.readSealed(request.fromSeq, Math.min(request.maxBytes, FETCH_BYTES)) : [];
    const firstSeq = batches.length === 0 ? Math.min(request.fromSeq, durableSeq + 1) : batchFirstSeq(batches[0]);
    const reply: FetchReply = { kind: 'ok', batches, prevEpoch: log.epochAt(firstSeq - 1), durableSeq, committedSeq: log.committedSeq };
    if (request.epochEndOf !== undefined) reply.epochEndSeq = log.epochEnd(request.epochEndOf)?.endSeq ?? -1;
    return reply;
  }
}

/** The committed batches from fromSeq: read only, nothing recorded (an offline repair's copy). */
async function readCommitted(log: ReplicaLog, request: FetchRequest): Promise<FetchReply> {
  const committedSeq = log.committedSeq;
  const read = request.fromSeq <= committedSeq ? await log.readSealed(request.fromSeq, Math.min(request.maxBytes, FETCH_BYTES)) : [];
  const batches = read.filter((batch) => {
    const parsed = readBatchHeader(batch, 0);
    return parsed.ok && parsed.header.firstSeq + parsed.header.count - 1 <= committedSeq;
  });
  const firstSeq = batches.length === 0 ? Math.min(request.fromSeq, committedSeq + 1) : batchFirstSeq(batches[0]);
  return { kind: 'ok', batches, prevEpoch: log.epochAt(firstSeq - 1), durableSeq: log.durableSeq, committedSeq };
}

function batchFirstSeq(batch: Uint8Array): number {
  const parsed = readBatchHeader(batch, 0);
  if (!parsed.ok) throw new TidelogError('DECODE_FAILED', `fetch: not a batch (${parsed.problem})`);
  return parsed.header.firstSeq;
}

export type CampaignOutcome =
  | { kind: 'won'; epoch: number }
  /** Another node holds the epoch claimed, or a newer epoch arrived while campaigning. */
  | { kind: 'lost'; epoch: number; holder: string | null }
  /** The claim's outcome is unknown, or fewer than a quorum answered: try again later. */
  | { kind: 'failed'; epoch: number; reason: string };

export interface CampaignOptions {
  shard: number;
  nodeId: string;
  /** The other replicas of the shard. */
  peers: readonly string[];
  replicationFactor: number;
  log: ReplicaLog;
  server: ReplicaServer;
  store: EpochStore;
  net: PeerNet;
  /** Ask the others first whether they lost the leader too (false: a leader handed over). */
  preVote: boolean;
  /** Called as the campaign moves on (logs, status). */
  onStep?: (step: string, fields: Record<string, unknown>) => void;
}

export async function campaign(options: CampaignOptions): Promise<CampaignOutcome> {
  const { shard, nodeId, log, server, store, net } = options;
  const quorum = Math.floor(options.replicationFactor / 2) + 1;
  if (log.isRepairing) return { kind: 'failed', epoch: log.epoch + 1, reason: 'repairing: this log lost batches to damage; it catches up from a leader before it may lead' };
  if (options.preVote) {
    const grants = await Promise.all(
      options.peers.map(async (peer) => {
        try {
          return (await net.preVote(peer, { shard, epoch: log.epoch, candidateId: nodeId })).granted;
        } catch {
          return false;
        }
      }),
    );
    const granted = 1 + grants.filter(Boolean).length;
    if (granted < quorum) return { kind: 'failed', epoch: log.epoch + 1, reason: `pre-vote: ${granted} of ${options.replicationFactor} replicas heard no leader, ${quorum} needed` };
    options.onStep?.('pre-voted', { granted });
  }
  const latest = await store.latest(shard);
  const epoch = Math.max(log.epoch, latest?.epoch ?? 0) + 1;
  const claim = await store.claim(shard, epoch, nodeId);
  if (claim.kind === 'lost') return { kind: 'lost', epoch, holder: claim.holder.nodeId };
  if (claim.kind === 'unknown') return { kind: 'failed', epoch, reason: `claim unknown: ${claim.error.message}` };
  options.onStep?.('claimed', { epoch });
  try {
    await server.serial(() => (log.epoch < epoch ? log.setEpoch(epoch) : Promise.resolve()));
  } catch (error) {
    if (isTidelogError(error, 'FENCED')) return { kind: 'lost', epoch, holder: null };
    throw error;
  }
  if (log.epoch !== epoch) return { kind: 'lost', epoch, holder: null };

  const replies = await Promise.all(
    options.peers.map(async (peer) => {
      try {
        return { peer, reply: await net.prepare(peer, { shard, epoch, candidateId: nodeId }) };
      } catch {
        return { peer, reply: null };
      }
    }),
  );
  let best: { peer: string | null; confirmedEpoch: number; durableSeq: number } = { peer: null, confirmedEpoch: log.confirmedEpoch, durableSeq: log.durableSeq };
  let answered = 1;
  for (const { peer, reply } of replies) {
    if (reply === null) continue;
    if (reply.kind === 'fenced') return { kind: 'lost', epoch, holder: null };
    answered++;
    if (reply.confirmedEpoch > best.confirmedEpoch || (reply.confirmedEpoch === best.confirmedEpoch && reply.durableSeq > best.durableSeq)) {
      best = { peer, confirmedEpoch: reply.confirmedEpoch, durableSeq: reply.durableSeq };
    }
  }
  if (answered < quorum) return { kind: 'failed', epoch, reason: `${answered} of ${options.replicationFactor} replicas answered, ${quorum} needed` };
  options.onStep?.('prepared', { epoch, answered, best: best.peer ?? nodeId, bestSeq: best.durableSeq });

  return server.serial(async (): Promise<CampaignOutcome> => {
    if (log.epoch !== epoch) return { kind: 'lost', epoch, holder: null };
    if (best.peer !== null) {
      const caughtUp = await catchUpFrom(options, best.peer, epoch);
      if (!caughtUp) return { kind: 'failed', epoch, reason: `could not fetch the log of ${best.peer}` };
      options.onStep?.('fetched', { epoch, from: best.peer, durableSeq: log.durableSeq });
    }
    if (log.epoch !== epoch) return { kind: 'lost', epoch, holder: null };
    await log.lead(epoch);
    return { kind: 'won', epoch };
  });
}

/**
 * Makes this log equal to `peer`'s (frozen at `epoch`): log matching against its batches, our
 * divergent or longer suffix cut. Runs inside the replica's serial queue. False when the peer
 * stopped answering or a newer epoch came.
 */
async function catchUpFrom(options: CampaignOptions, peer: string, epoch: number): Promise<boolean> {
  const { log, net, shard } = options;
  const follower = new FollowerReplica(log);
  let nextSeq = Math.max(1, log.durableSeq + 1);
  for (let round = 0; round < 1_000_000; round++) {
    let fetched: FetchReply;
    try {
      fetched = await net.fetch(peer, { shard, epoch, fromSeq: nextSeq, maxBytes: FETCH_BYTES });
    } catch {
      return false;
    }
    if (fetched.kind === 'fenced' || log.epoch !== epoch) return false;
    if (nextSeq > fetched.durableSeq + 1) {
      nextSeq = fetched.durableSeq + 1;
      continue;
    }
    const prevSeq = fetched.batches.length === 0 ? nextSeq - 1 : batchFirstSeq(fetched.batches[0]) - 1;
    const reply = await follower.handle({
      shard,
      epoch,
      leaderId: peer,
      hwm: fetched.committedSeq,
      // Never confirms the epoch: lead() does, once this log is the best one.
      leadEnd: Number.MAX_SAFE_INTEGER,
      prevSeq,
      prevEpoch: fetched.prevEpoch,
      batches: fetched.batches,
    });
    switch (reply.kind) {
      case 'ok':
        if (reply.matchSeq >= fetched.durableSeq) return true;
        nextSeq = reply.matchSeq + 1;
        break;
      case 'gap':
        // The peer no longer holds what this log needs next (its retention deleted it): this
        // replica cannot be made equal to it; a replica that holds more will campaign instead.
        if (reply.expectedSeq === nextSeq) return false;
        nextSeq = reply.expectedSeq;
        break;
      case 'diverged': {
        let endSeq = -1;
        try {
          const probe = await net.fetch(peer, { shard, epoch, fromSeq: Math.max(1, reply.seq), maxBytes: 1, epochEndOf: Math.max(0, reply.epoch) });
          if (probe.kind === 'ok') endSeq = probe.epochEndSeq ?? -1;
        } catch {
          return false;
        }
        const backTo = Math.min(reply.seq - 1, endSeq < 0 ? reply.seq - 1 : endSeq);
        nextSeq = Math.max(1, backTo + 1);
        break;
      }
      case 'fenced':
        return false;
    }
  }
  return false;
}
