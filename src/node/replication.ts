// The replication data plane of one shard, transport-agnostic: a leader's Shipper streams
// every durable batch to each follower and moves the commit point to what a quorum holds; a
// follower's FollowerReplica checks each request against its log and appends verbatim. The
// actors (src/actors) drive these over NATS and own the role and timers; batches never travel
// one by one through a machine.
//
// Log matching (Raft's AppendEntries check, with Kafka's KIP-101 epoch ends to back up fast)
// and Viewstamped Replication's confirmation of a log by an epoch:
//
//   request { epoch, hwm, leadEnd, prevSeq, prevEpoch, batches }   prevSeq/prevEpoch: the batch
//            before the first one sent; leadEnd: the leader's durable end when it began to lead
//   follower:  epoch < recorded            → fenced { epoch }
//              epoch > recorded            → record it (a replica leading an older epoch stops)
//              prevSeq > durable end       → gap { expectedSeq }          (leader resends from there)
//              epochAt(prevSeq) ≠ prevEpoch → diverged { seq, epoch }     (leader backs up)
//              not yet confirmed by epoch  → cut what follows prevSeq (never compared), keeping the
//                                            committed prefix and what this epoch already proved
//              each batch: already here with the same epoch → skip (a resend);
//                          here with another epoch → cut the suffix from it, append;
//                          not here → append (verbatim, fsynced)
//              matched ≥ leadEnd           → record that the epoch confirmed this log
//              commit to min(hwm, matched) → ok { matchSeq }   matched: prevSeq + what was sent
//   leader:    ok       → the follower's matchSeq; it counts toward the commit point only once
//                         ≥ leadEnd (the follower confirmed the epoch); commitTo(quorum's)
//              gap      → resend from expectedSeq (from the segments)
//              diverged → back up to min(seq, own end of that epoch) + 1
//              fenced   → a newer leader exists: stop shipping (the shard machine steps down)
// A shipper speaks for the epoch it started in and falls silent once its shard no longer leads
// it. Elections compare (confirmedEpoch, durable end): a replica confirmed by epoch E holds the
// leader's log to leadEnd, so everything committed before E; everything committed in E is on a
// quorum of replicas confirmed by E, and among them the longest holds it.

import { TidelogError, isTidelogError } from '../errors.ts';
import { MAX_INSTALL_EPOCH_STARTS, MAX_INSTALL_PART_BYTES, type InstallReply, type InstallRequest, type ReplicateReply, type ReplicateRequest } from '../transport/replication-codec.ts';
import { readBatchHeader } from '../wal/batch-format.ts';
import type { SnapshotPart } from '../wal/snapshot-install.ts';
import type { EpochStart } from '../wal/index.ts';

export type { InstallReply, InstallRequest, ReplicateReply, ReplicateRequest };

/** The commit point of a replica set: the highest seq durable on a quorum (the leader counts). */
export function quorumHwm(leaderDurable: number, followerDurable: readonly number[], replicationFactor: number, required = Math.floor(replicationFactor / 2) + 1): number {
  const quorum = required;
  const all = [leaderDurable, ...followerDurable].sort((a, b) => b - a);
  return all[quorum - 1] ?? 0;
}

/** What a follower needs of its shard host. */
export interface FollowerLog {
  readonly epoch: number;
  readonly confirmedEpoch: number;
  readonly durableSeq: number;
  readonly committedSeq: number;
  /** The last seq handed out here (durable or not yet). */
  readonly lastAssignedSeq: number;
  /** Whether this replica leads its recorded epoch (then it takes no replication). */
  readonly leading: boolean;
  confirmEpoch(epoch: number): Promise<void>;
  setEpoch(epoch: number): Promise<void>;
  appendSealed(batch: Uint8Array): Promise<void>;
  truncateAfter(seq: number): Promise<number>;
  commitTo(seq: number): Promise<void>;
  epochAt(seq: number): number;
  /** Retention keeps every seq above `seq`; null: no hold. */
  holdRetention(seq: number | null): void;
  /** This replica lost part of its log to damage and does not vote until its leader brought it back (ShardHost). */
  readonly isRepairing: boolean;
  finishRepair(): Promise<void>;
  /** A part of the leader's snapshot; once complete, it replaces this log (ShardHost.receiveSnapshot). */
  receiveSnapshot(part: SnapshotPart): Promise<{ kind: 'next'; offset: number } | { kind: 'installed'; seq: number }>;
}

function batchRange(batch: Uint8Array): { firstSeq: number; lastSeq: number; epoch: number } {
  const parsed = readBatchHeader(batch, 0);
  if (!parsed.ok) throw new TidelogError('BAD_REQUEST', `replicate: not a batch (${parsed.problem})`);
  return { firstSeq: parsed.header.firstSeq, lastSeq: parsed.header.firstSeq + parsed.header.count - 1, epoch: parsed.header.leaderEpoch };
}

/** A follower's side: one request at a time (the caller serialises them per shard). */
export class FollowerReplica {
  /**
   * How far this log was last proved equal to the leader of `epoch` (a reply whose request
   * was lost makes the leader resend from an older prevSeq: what was proved stays).
   */
  private proved = { epoch: -1, seq: 0 };

  constructor(private readonly log: FollowerLog) {}

  async handle(request: ReplicateRequest): Promise<ReplicateReply> {
    const log = this.log;
    if (request.epoch < log.epoch) return { kind: 'fenced', epoch: log.epoch };
    // Recorded before anything of the new epoch is accepted, so a restart still refuses older
    // ones; a replica that led an older epoch stops taking local appends here.
    if (request.epoch > log.epoch) await log.setEpoch(request.epoch);
    if (log.leading) throw new TidelogError('BAD_REQUEST', `replicate: ${request.leaderId} sends for epoch ${request.epoch}, which this replica leads`);
    if (request.prevSeq > log.durableSeq) return { kind: 'gap', expectedSeq: log.durableSeq + 1 };
    const prevEpoch = log.epochAt(request.prevSeq);
    if (prevEpoch !== request.prevEpoch) return { kind: 'diverged', seq: request.prevSeq, epoch: prevEpoch };
    // Until this epoch confirmed the log, what follows the matched prefix was never compared
    // with its leader's log (a deposed leader's suffix, appends it had queued): it goes. The
    // committed prefix, and what this epoch's leader already proved equal, are its log too.
    const compared = Math.max(request.prevSeq, log.committedSeq, this.proved.epoch === request.epoch ? this.proved.seq : 0);
    if (log.confirmedEpoch < request.epoch && log.lastAssignedSeq > compared) await log.truncateAfter(compared);
    // What this request proves equal to the leader's log: only up to here may be committed or
    // reported (anything after may be a deposed leader's suffix, not yet compared).
    let matched = request.prevSeq;
    for (const batch of request.batches) {
      const range = batchRange(batch);
      if (range.firstSeq !== matched + 1) throw new TidelogError('BAD_REQUEST', `replicate: batches must follow seq ${matched}, got one at ${range.firstSeq}`);
      if (range.lastSeq <= log.durableSeq) {
        if (log.epochAt(range.firstSeq) === range.epoch && log.epochAt(range.lastSeq) === range.epoch) {
          matched = range.lastSeq; // a resend: (seq, epoch) names one batch
          continue;
        }
        // Another leader's batch at these seqs: ours was never committed (the leader has the
        // committed log), so it goes, with everything after it.
        await log.truncateAfter(range.firstSeq - 1);
      }
      try {
        await log.appendSealed(batch);
      } catch (error) {
        if (isTidelogError(error, 'SEQUENCE_GAP')) {
          const expected = error.context.expectedSeq;
          return { kind: 'gap', expectedSeq: typeof expected === 'number' ? expected : log.durableSeq + 1 };
        }
        throw error;
      }
      matched = range.lastSeq;
    }
    // The leader's log up to where it began to lead is here: the epoch confirms this log (an
    // election then prefers it to any replica confirmed earlier).
    if (log.confirmedEpoch < request.epoch && matched >= request.leadEnd) await log.confirmEpoch(request.epoch);
    if (this.proved.epoch !== request.epoch || matched > this.proved.seq) this.proved = { epoch: request.epoch, seq: matched };
    await log.commitTo(Math.min(request.hwm, matched));
    // A repair ends once this log holds the leader's up to where it began to lead (everything
    // committed before its epoch) and to its commit point (everything committed in it): every
    // batch this replica may have acknowledged before its damage and that counted is back.
    if (log.isRepairing && matched >= request.leadEnd && matched >= request.hwm) await log.finishRepair();
    // The leader's view of the laggiest replica: keep what it may still need, should this
    // replica lead next (without a hint, keep everything).
    log.holdRetention(request.retainFrom ?? 0);
    return { kind: 'ok', matchSeq: matched };
  }

  /**
   * A part of the leader's newest snapshot (this log's next seq is behind the leader's
   * retention). Once the whole file is here and verified it replaces this log: the committed
   * state through its seq S, which is longer than anything committed here, so nothing this
   * replica vouched for is lost (docs/REPLICATION.md, "Snapshot install").
   */
  async install(request: InstallRequest): Promise<InstallReply> {
    const log = this.log;
    if (request.epoch < log.epoch) return { kind: 'fenced', epoch: log.epoch };
    if (request.epoch > log.epoch) await log.setEpoch(request.epoch);
    if (log.leading) throw new TidelogError('BAD_REQUEST', `install: ${request.leaderId} sends for epoch ${request.epoch}, which this replica leads`);
    // The epoch of a batch in the leader's log is never above the leader's own.
    if (request.epochAtSeq > request.epoch) throw new TidelogError('BAD_REQUEST', `install: epoch ${request.epochAtSeq} at seq ${request.seq} is above the leader's epoch ${request.epoch}`);
    // Committed here already: the committed prefixes are equal, so this replica goes on from there.
    if (request.seq <= log.committedSeq) return { kind: 'done', matchSeq: log.committedSeq };
    const received = await log.receiveSnapshot(request);
    if (received.kind === 'next') return received;
    return { kind: 'done', matchSeq: received.seq };
  }
}

/** What a leader's shipper needs of its shard host. */
export interface LeaderLog {
  readonly epoch: number;
  /** Whether this replica still leads its recorded epoch. */
  readonly leading: boolean;
  /** Why this replica can no longer write (an fsync or write error: fail-stop), or null. */
  readonly failure: Error | null;
  readonly durableSeq: number;
  readonly committedSeq: number;
  commitTo(seq: number): Promise<void>;
  epochAt(seq: number): number;
  epochEnd(epoch: number): { epoch: number; endSeq: number } | null;
  /** Where each epoch's part of the log begins, epochs ascending. */
  epochStarts(): EpochStart[];
  /** Sealed batches from fromSeq to the durable end, at most maxBytes (at least one). */
  readSealed(fromSeq: number, maxBytes: number): Promise<Uint8Array[]>;
  /** Lowest seq still held (retention deleted what came before). */
  readonly firstSeq: number;
  /** The newest snapshot file kept (its name, seq and length), or null. */
  newestSnapshot(): { fileName: string; seq: number; bytes: number } | null;
  /** Part of a kept snapshot file; rejects once it is no longer kept. */
  readSnapshotPart(fileName: string, offset: number, maxBytes: number): Promise<Uint8Array>;
}

/** One follower as the shipper sees it: how to reach it. */
export interface FollowerLink {
  readonly nodeId: string;
  /** Sends one request and resolves with the reply; rejects on a timeout or transport error. */
  send(request: ReplicateRequest): Promise<ReplicateReply>;
  /** The same for a part of a snapshot. */
  install(request: InstallRequest): Promise<InstallReply>;
}

export interface ShipperOptions {
  shard: number;
  leaderId: string;
  replicationFactor: number;
  /** Replicas (the leader included) that must hold a batch durable before it commits; default a majority (acks: 'all' sets R). */
  requiredReplicas?: number;
  /** Bytes of batches one request carries at most (default 1 MiB). */
  maxRequestBytes?: number;
  /** Called once when a follower reports a newer epoch: this leader is deposed. */
  onFenced?: (epoch: number) => void;
  /** Called when a send fails (the shipper retries on the next pump). */
  onSendError?: (nodeId: string, error: Error) => void;
  /** Monotonic milliseconds (default performance.now): when followers last answered. */
  nowMs?: () => number;
  /**
   * Retention keeps what a follower lacks only while it answered within this long (default:
   * forever); one silent longer is sent the newest snapshot when it returns.
   */
  retentionWaitMs?: number;
}

interface FollowerState {
  readonly link: FollowerLink;
  /** The next seq to send. */
  nextSeq: number;
  /** Highest seq the follower reported durable in this epoch (0 until it did). */
  matchSeq: number;
  isSending: boolean;
  /** When the follower last answered this epoch's leader (not fenced), monotonic ms. */
  lastReplyMs: number;
  /** The snapshot being sent while the follower's next seq is behind this log's retention. */
  install: { fileName: string; seq: number; epochAtSeq: number; epochStarts: EpochStart[]; fileBytes: number; offset: number } | null;
}

/**
 * A leader's side for one shard: one request in flight per follower (its window), batches
 * read from the segments (the page cache serves the newest), the commit point moved as
 * acknowledgements arrive. `pump()` after each durable batch and on a heartbeat timer.
 */
/** Bytes of newest durable batches a shipper keeps in memory for followers that keep up. */
const RECENT_SHIPPING_BYTES = 16 << 20;

export class Shipper {
  private readonly followers: FollowerState[];
  private readonly recent: Array<{ firstSeq: number; count: number; bytes: Uint8Array }> = [];
  private recentHead = 0;
  private recentBytes = 0;
  private isFenced = false;
  private isStopped = false;
  private readonly maxRequestBytes: number;
  /** The epoch this shipper speaks for, fixed when it starts (after lead()). */
  private readonly epoch: number;
  /** The leader's durable end when it began to lead (see ReplicateRequest.leadEnd). */
  private readonly leadEnd: number;

  constructor(
    private readonly log: LeaderLog,
    links: readonly FollowerLink[],
    private readonly options: ShipperOptions,
  ) {
    if (!log.leading) throw new TidelogError('BAD_REQUEST', `shipper: the shard does not lead epoch ${log.epoch} (lead() first)`);
    this.maxRequestBytes = options.maxRequestBytes ?? 1 << 20;
    this.epoch = log.epoch;
    this.leadEnd = log.durableSeq;
    // Optimistic start (Raft's nextIndex): from the leader's end; gaps and divergence back up.
    const startedMs = this.nowMs();
    this.followers = links.map((link) => ({ link, nextSeq: log.durableSeq + 1, matchSeq: 0, isSending: false, lastReplyMs: startedMs, install: null }));
  }

  private nowMs(): number {
    return this.options.nowMs === undefined ? performance.now() : this.options.nowMs();
  }

  /**
   * How long ago a quorum (this leader and enough followers) last heard from each other: the
   * age of the (quorum − 1)th most recent follower answer. Past the leader timeout the leader
   * steps down: it can commit nothing, and a newer leader may exist.
   */
  quorumContactAgeMs(): number {
    const needed = Math.floor(this.options.replicationFactor / 2);
    if (needed === 0) return 0;
    const times = this.followers.map((follower) => follower.lastReplyMs).sort((a, b) => b - a);
    const time = times[needed - 1];
    return time === undefined ? Infinity : this.nowMs() - time;
  }

  /** The durable end this epoch's leader had when it began: the commit point must reach it before producers are served. */
  get leadEndSeq(): number {
    return this.leadEnd;
  }

  /**
   * A batch became durable here (onDurable's sealed bytes, valid during the call only): kept
   * in a bounded ring, so followers that keep up are served from memory; a follower further
   * behind is served from the segments.
   */
  offer(sealed: Uint8Array): void {
    if (this.isStopped) return;
    const range = batchRange(sealed);
    if (range.lastSeq < range.firstSeq) return; // notes only: the segments serve those
    const last = this.recent[this.recent.length - 1];
    // Not the next batch (a gap would make the ring lie): start the ring again from this one.
    if (last !== undefined && last.firstSeq + last.count !== range.firstSeq) this.clearRecent();
    const copy = new Uint8Array(sealed);
    this.recent.push({ firstSeq: range.firstSeq, count: range.lastSeq - range.firstSeq + 1, bytes: copy });
    this.recentBytes += copy.byteLength;
    while (this.recentBytes > RECENT_SHIPPING_BYTES && this.recentHead < this.recent.length - 1) {
      this.recentBytes -= this.recent[this.recentHead].bytes.byteLength;
      this.recentHead++;
    }
    if (this.recentHead > 1024 && this.recentHead * 2 > this.recent.length) {
      this.recent.splice(0, this.recentHead);
      this.recentHead = 0;
    }
  }

  private clearRecent(): void {
    this.recent.length = 0;
    this.recentHead = 0;
    this.recentBytes = 0;
  }

  /** Batches from the one starting at `fromSeq` out of the ring (at most maxRequestBytes, at least one); null when it does not hold that batch. */
  private fromRecent(fromSeq: number): Uint8Array[] | null {
    if (this.recentHead >= this.recent.length || fromSeq < this.recent[this.recentHead].firstSeq) return null;
    let low = this.recentHead;
    let high = this.recent.length - 1;
    while (low < high) {
      const middle = (low + high + 1) >>> 1;
      if (this.recent[middle].firstSeq <= fromSeq) low = middle;
      else high = middle - 1;
    }
    if (this.recent[low].firstSeq !== fromSeq) return null;
    const batches: Uint8Array[] = [];
    let bytes = 0;
    for (let index = low; index < this.recent.length; index++) {
      const entry = this.recent[index];
      if (batches.length > 0 && bytes + entry.bytes.byteLength > this.maxRequestBytes) break;
      batches.push(entry.bytes);
      bytes += entry.bytes.byteLength;
    }
    return batches;
  }

  /**
   * The lowest seq every replica is known to hold (0 until each follower answered in this
   * epoch): retention keeps everything above it on the leader and, told in each request, on
   * the followers, so a lagging or restarted follower is caught up from segments. A follower
   * silent for longer than retentionWaitMs is left out (the disk is not held hostage by a dead
   * replica); it is caught up from the newest snapshot instead.
   */
  retainFrom(): number {
    let lowest = this.log.durableSeq;
    const nowMs = this.nowMs();
    const waitMs = this.options.retentionWaitMs ?? Infinity;
    for (const follower of this.followers) {
      // Silent too long: retention goes on without it (it gets a snapshot when it returns).
      if (nowMs - follower.lastReplyMs > waitMs) continue;
      lowest = Math.min(lowest, follower.matchSeq);
    }
    return lowest;
  }

  /** Highest seq each follower holds durable, as far as this leader knows. */
  matchSeqs(): Record<string, number> {
    return Object.fromEntries(this.followers.map((follower) => [follower.link.nodeId, follower.matchSeq]));
  }

  get fenced(): boolean {
    return this.isFenced;
  }

  /** Ends shipping for good (the shard stepped down or closes); rounds under way stop. */
  stop(): void {
    this.isStopped = true;
  }

  /** Still the voice of its epoch: not stopped, not fenced, and the log still leads that epoch. */
  private get isActive(): boolean {
    return !this.isStopped && !this.isFenced && this.log.leading && this.log.epoch === this.epoch;
  }

  /** Sends what each idle follower lacks (or a heartbeat); resolves when these rounds end. */
  async pump(): Promise<void> {
    this.advanceCommit();
    await Promise.all(this.followers.map((follower) => this.sendRound(follower)));
  }

  private async sendRound(follower: FollowerState): Promise<void> {
    if (follower.isSending || !this.isActive) return;
    follower.isSending = true;
    try {
      // Rounds follow each other while the follower is behind and answers.
      for (let rounds = 0; rounds < 64 && this.isActive; rounds++) {
        // What the follower needs next was deleted here: it gets the newest snapshot instead.
        if (follower.nextSeq <= this.log.durableSeq && follower.nextSeq < this.log.firstSeq) {
          if (!(await this.installRound(follower))) return;
          continue;
        }
        follower.install = null;
        const batches =
          follower.nextSeq > this.log.durableSeq ? [] : (this.fromRecent(follower.nextSeq) ?? (await this.log.readSealed(follower.nextSeq, this.maxRequestBytes)));
        // The check is against the batch before the first one sent (which may start before nextSeq).
        const prevSeq = batches.length === 0 ? follower.nextSeq - 1 : batchRange(batches[0]).firstSeq - 1;
        const request: ReplicateRequest = {
          shard: this.options.shard,
          epoch: this.epoch,
          leaderId: this.options.leaderId,
          hwm: this.log.committedSeq,
          leadEnd: this.leadEnd,
          prevSeq,
          prevEpoch: this.log.epochAt(prevSeq),
          batches,
          retainFrom: this.retainFrom(),
        };
        const lastSent = batches.length === 0 ? prevSeq : batchRange(batches[batches.length - 1]).lastSeq;
        const reply = await follower.link.send(request);
        if (!this.isActive) return;
        const nextBefore = follower.nextSeq;
        const matchBefore = follower.matchSeq;
        if (!this.onReply(follower, reply, lastSent)) return;
        // A reply that moved nothing (a gap or divergence answered the same way) waits for the
        // next pump instead of spinning.
        if (follower.nextSeq === nextBefore && follower.matchSeq === matchBefore && request.batches.length > 0) return;
        if (follower.nextSeq > this.log.durableSeq && follower.matchSeq >= this.log.durableSeq) return;
      }
    } catch (error) {
      this.options.onSendError?.(follower.link.nodeId, error instanceof Error ? error : new Error(String(error)));
    } finally {
      follower.isSending = false;
    }
  }

  /**
   * Sends the follower the next part of this log's newest snapshot (starting a transfer when
   * none is under way); false when it made no progress (wait for the next pump).
   */
  private async installRound(follower: FollowerState): Promise<boolean> {
    let install = follower.install;
    if (install === null) {
      const snapshot = this.log.newestSnapshot();
      if (snapshot === null || snapshot.seq + 1 < this.log.firstSeq) {
        throw new TidelogError('OUT_OF_RANGE', `shard ${this.options.shard}: ${follower.link.nodeId} needs seq ${follower.nextSeq}, and no snapshot covers the log's start ${this.log.firstSeq}`);
      }
      // The epoch table through S travels with the snapshot: the follower then knows which epoch
      // wrote each seq it holds (snapshot-install.ts).
      const epochStarts = this.log
        .epochStarts()
        .filter((start) => start.firstSeq <= snapshot.seq)
        .slice(-MAX_INSTALL_EPOCH_STARTS);
      install = { fileName: snapshot.fileName, seq: snapshot.seq, epochAtSeq: this.log.epochAt(snapshot.seq), epochStarts, fileBytes: snapshot.bytes, offset: 0 };
      follower.install = install;
    }
    let bytes: Uint8Array;
    try {
      bytes = await this.log.readSnapshotPart(install.fileName, install.offset, MAX_INSTALL_PART_BYTES);
    } catch (error) {
      // A newer snapshot replaced it: the next round starts over with that one.
      follower.install = null;
      throw error;
    }
    const request: InstallRequest = {
      shard: this.options.shard,
      epoch: this.epoch,
      leaderId: this.options.leaderId,
      seq: install.seq,
      epochAtSeq: install.epochAtSeq,
      ...(install.offset === 0 ? { epochStarts: install.epochStarts } : {}),
      fileBytes: install.fileBytes,
      offset: install.offset,
      bytes,
    };
    const reply = await follower.link.install(request);
    if (!this.isActive) return false;
    if (reply.kind !== 'fenced') follower.lastReplyMs = this.nowMs();
    switch (reply.kind) {
      case 'next': {
        const isProgress = reply.offset !== install.offset;
        install.offset = reply.offset;
        return isProgress;
      }
      case 'done':
        follower.install = null;
        follower.matchSeq = Math.max(follower.matchSeq, reply.matchSeq);
        follower.nextSeq = reply.matchSeq + 1;
        this.advanceCommit();
        return true;
      case 'fenced':
        this.onReply(follower, reply, 0);
        return false;
    }
  }

  /** Applies a reply; false when this follower needs nothing more now. */
  private onReply(follower: FollowerState, reply: ReplicateReply, lastSent: number): boolean {
    if (reply.kind !== 'fenced') follower.lastReplyMs = this.nowMs();
    switch (reply.kind) {
      case 'ok':
        follower.matchSeq = Math.max(follower.matchSeq, reply.matchSeq);
        follower.nextSeq = Math.max(lastSent, reply.matchSeq) + 1;
        this.advanceCommit();
        return true;
      case 'gap':
        follower.nextSeq = reply.expectedSeq;
        return true;
      case 'diverged': {
        // Back up to the end of the follower's epoch as this log has it (KIP-101), never past
        // the seq that failed to match.
        const end = reply.epoch < 0 ? null : this.log.epochEnd(reply.epoch);
        const backTo = Math.min(reply.seq - 1, end === null ? reply.seq - 1 : end.endSeq);
        follower.nextSeq = Math.max(1, backTo + 1);
        return true;
      }
      case 'fenced':
        if (!this.isFenced) {
          this.isFenced = true;
          this.options.onFenced?.(reply.epoch);
        }
        return false;
    }
  }

  private advanceCommit(): void {
    if (!this.isActive) return;
    // A follower counts once it has confirmed this epoch (it holds the log to leadEnd): so the
    // first commit of an epoch covers leadEnd on a quorum of replicas that confirmed it.
    const hwm = quorumHwm(
      this.log.durableSeq,
      this.followers.map((follower) => (follower.matchSeq >= this.leadEnd ? follower.matchSeq : 0)),
      this.options.replicationFactor,
      this.options.requiredReplicas,
    );
    if (hwm > this.log.committedSeq) void this.log.commitTo(hwm);
  }
}
