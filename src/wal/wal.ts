// The WAL of one shard (a lane): the public face of the storage engine.
//
//   append/appendMany ─► CommitQueue (dedup, seqs, packed groups) ─► writer actor (when)
//                                                                  ─► flush-worker actor (write + fdatasync)
//   durable group ─► state machine apply ─► callers resolved ─► snapshot policy (snapshotter.ts)
//   open: lock ─► wal-open.ts (newest valid snapshot + the log after it) ─► writer starts
//
// Durability contract (fsync 'full', the default): a promise from append/appendMany
// resolves only after the batch holding its events was written and fdatasync'ed; seqs start
// at 1, are gapless and monotonic and continue across close/reopen and crashes. 'normal'
// acknowledges after the write and fdatasyncs at least every syncIntervalMs (a process crash
// loses nothing acknowledged, a power loss may lose the last interval). 'off' never syncs.
//
// State: with a state machine, its snapshots go to files of their own, taken by a policy that
// bounds snapshot writes and replay length together; segments open with a small marker
// (segment-head.ts), never the state, so memory and rotation cost do not grow with segments.
// Retention deletes whole segments behind the oldest snapshot kept.
//
// Notes: appendMany(events, { note }) makes an opaque note durable in the same batch (same
// checksum) as all of the call's events, so recovery sees the note and the events or neither;
// notes reach the state machine (live and on replay), onPersisted and readBatches.

import { dirname, join, resolve } from 'node:path';
import { createActor } from 'xstate';
import { deferred } from '../deferred.ts';
import { TidelogError, isTidelogError } from '../errors.ts';
import { writerMachine, type WriterActor, type WriterLane } from '../actors/writer.ts';
import type { FlushRequest } from '../actors/flush-worker.ts';
import { BATCH_HEADER_BYTES, BatchKind, NO_NOTES, readBatchHeader, readNotes, verifyBatch, type BatchHeader } from './batch-format.ts';
import { readReplicaFile, writeCheckpointFile, writeReplicaFile, type EpochStart } from './checkpoint-file.ts';
import { initChecksum } from './checksum.ts';
import { CommitQueue, type CommitGroup, type NoteCallback } from './commit-queue.ts';
import { DedupWindow } from './dedup.ts';
import { EVENT_BYTES, decodeEventAt, encodeEvents, validatePacked, type SignalEvent } from '../event.ts';
import { readFully } from './file-io.ts';
import { recordUs, type FlushMetricsSnapshot } from './flush-metrics.ts';
import { DirectoryLock } from './lock.ts';
import { buildSegmentIndex, firstSeqAtTimeIn, readBatches, scanHeaders, type SegmentInfo, type StoredBatch } from './reader.ts';
import { newestBatchBoundNs, segmentsToRelease } from './retention.ts';
import { encodeMarkerRecord } from './segment-head.ts';
import { SegmentIndex } from './segment-index.ts';
import { checkpointFileName, replicaFileName, segmentFileName } from './segment-name.ts';
import { SegmentWriter } from './segment-writer.ts';
import { completeInstall } from './snapshot-install.ts';
import { Snapshotter, type SnapshotterStats } from './snapshotter.ts';
import { resolveOptions, type PersistedInfo, type ResolvedOptions, type WalOptions } from './wal-options.ts';
import { openLog, type OpenedLog, type RetainedSegment, type SnapshotRecord, type WalRecovery } from './wal-open.ts';

export type { WalOptions, PersistedInfo } from './wal-options.ts';
export type { WalRecovery, SnapshotRecord, RestorePoint } from './wal-open.ts';
export type { WalStateMachine, SnapshotStream, SnapshotSink } from './state-machine.ts';

export interface TruncateOptions {
  /**
   * Called with the events batches about to be cut (sealed, in log order) once nothing is in
   * flight; the cut waits for it, and does not happen if it throws (availability mode keeps
   * them as orphans, src/wal/orphans.ts).
   */
  beforeCut?: (batches: Uint8Array[]) => Promise<void>;
}

export interface AppendOptions {
  /**
   * Called synchronously once the call's seqs are assigned (0 for duplicates); the
   * 1..MAX_NOTE_BYTES bytes it returns become durable in the one batch that holds all of the
   * call's events (a call with a note is never split), atomically with them. It must not call
   * back into the WAL. If it throws or returns anything else the lane fails (those seqs could
   * not be written with their note) and appendMany throws.
   */
  note?: NoteCallback;
  /**
   * false: the events bypass the content dedup window — neither checked nor remembered — and
   * every one is written (producer sessions make retries exactly-once, and two real signals
   * may share all 21 bytes). Default true (when the window is on).
   */
  dedup?: boolean;
}

export interface WalOpenResult {
  wal: Wal;
  /** Events with seq > checkpoint, in seq order; empty with a stateMachine or `replay: false`. */
  replayed: SignalEvent[];
  recovery: WalRecovery;
}

export interface WalStats {
  shard: number;
  state: string;
  nextSeq: number;
  durableSeq: number;
  checkpointSeq: number;
  pendingEvents: number;
  segments: Array<SegmentInfo & { isOpen: boolean }>;
  /** Bytes of segments retained (the log on disk). */
  logBytes: number;
  dedupEvents: number;
  flush: FlushMetricsSnapshot;
  snapshots: SnapshotterStats;
  retention: { maxAgeMs: number; maxBytes: number; segmentsDeleted: number; bytesDeleted: number };
}

/** Where truncateAfter cuts the log (found before anything changes). */
interface LogCut {
  segment: RetainedSegment;
  /** Byte offset of the first batch that goes. */
  offset: number;
  /** The segment's index over the batches it keeps. */
  index: SegmentIndex;
  lastKept: number;
  newestBatchNs: bigint;
  newestDedupNs: bigint;
  /** Newest epoch among the kept batches of the segment (0 when it keeps none). */
  newestEpoch: number;
}

/** Upper bound on one flush's write, so one fdatasync never carries an unbounded backlog. */
const MAX_FLUSH_BYTES = 8 << 20;
const MAX_U64 = (1n << 64n) - 1n;
/** Sparse indexes of closed segments built on demand and kept at once (each ≈ 4 KiB). */
const MAX_LAZY_INDEXES = 256;


export class Wal implements WriterLane {
  readonly queue: CommitQueue;
  readonly files: SegmentWriter;
  readonly batchLingerMs: number;
  readonly nowNs: () => bigint;
  private readonly writer: WriterActor;
  private readonly segmentList: RetainedSegment[];
  private readonly snapshotter: Snapshotter;
  private lastDurableSeq: number;
  /** Committed and folded into the state machine (standalone: the same as lastDurableSeq). */
  private appliedSeq: number;
  /** The highest seq the owner said is committed (external commit); appliedSeq follows it. */
  private commitTarget: number;
  /**
   * External commit after a restart: durable batches up to here are on disk only (not in the
   * queue); commitTo folds them from the segments before anything newer.
   */
  private diskBacklogSeq: number;
  /** Notes-only batches on disk at open right after diskBacklogSeq (the backlog's too). */
  private diskBacklogNotes: number;
  /** The newest epoch whose leader confirmed this log (VR's last normal view); see confirmEpoch. */
  private confirmed: number;
  /** Where each epoch's part of the log begins (epochs ascending), as the replica file keeps it. */
  private readonly epochStartList: EpochStart[];
  /** Epoch of the newest batch queued or in the log: a sealed batch may not go below it. */
  private newestBatchEpoch: number;
  /** Local appends are taken (standalone always; external commit between lead() and a newer epoch). */
  private isLeading: boolean;
  /** Counts cuts begun (truncateAfter): a read of uncommitted batches stops at a new one. */
  private cutGeneration = 0;
  /** Commit work in order: folding from disk is asynchronous. */
  private commitChain: Promise<void> = Promise.resolve();
  private checkpointSeq: number;
  /** Notes-only batches applied at appliedSeq + 1 (a snapshot records how many it holds). */
  private notesBatchesAfter: number;
  private failure: Error | null = null;
  private readonly closed: Promise<void>;
  private markClosed: () => void = () => undefined;
  private closing: Promise<void> | null = null;
  private syncTimer: NodeJS.Timeout | null = null;
  private retentionTimer: NodeJS.Timeout | null = null;
  private isRetentionRunning = false;
  /** Retention keeps every seq above this (replication: what a lagging replica still needs); null: no hold. */
  private retentionHoldSeq: number | null = null;
  private segmentsDeleted = 0;
  private bytesDeleted = 0;
  /** Where a flush of several batches is assembled (grows up to MAX_FLUSH_BYTES, reused). */
  private flushBuffer = new Uint8Array(0);
  /** Closed segments whose index was built on demand, least recently built first. */
  private readonly lazyIndexed: RetainedSegment[] = [];

  private constructor(
    private readonly options: ResolvedOptions,
    private readonly lock: DirectoryLock,
    opened: Omit<OpenedLog, 'replayed' | 'recovery' | 'files' | 'scannedEpochStarts'> & { epochStarts: EpochStart[]; confirmedEpoch: number },
    dedup: DedupWindow,
    files: SegmentWriter,
  ) {
    this.batchLingerMs = options.batchLingerMs;
    this.nowNs = () => options.clock.nowNs();
    this.segmentList = opened.segments;
    this.lastDurableSeq = opened.lastSeq;
    this.appliedSeq = opened.appliedSeq;
    this.commitTarget = opened.appliedSeq;
    this.diskBacklogSeq = opened.appliedSeq < opened.lastSeq ? opened.lastSeq : 0;
    this.diskBacklogNotes = this.diskBacklogSeq > 0 ? opened.trailingNotes : 0;
    this.notesBatchesAfter = opened.notesBatchesAfter;
    this.newestBatchEpoch = Math.max(opened.newestEpoch, opened.epochStarts[opened.epochStarts.length - 1]?.epoch ?? 0);
    this.epochStartList = opened.epochStarts;
    this.confirmed = opened.confirmedEpoch;
    this.isLeading = options.commit !== 'external';
    this.checkpointSeq = opened.checkpointSeq;
    this.files = files;
    this.queue = new CommitQueue(
      {
        shard: options.shard,
        batchMaxEvents: options.batchMaxEvents,
        maxPendingEvents: options.maxPendingEvents,
        leaderEpoch: options.leaderEpoch,
        newestSealNs: opened.newestSealNs,
        resolveAt: options.resolveAt,
      },
      dedup,
      opened.lastSeq + 1,
      options.clock,
    );
    this.snapshotter = new Snapshotter(
      {
        io: options.io,
        dir: options.dir,
        shard: options.shard,
        fsync: options.fsync,
        clock: options.clock,
        syncLog: () => this.runTask((segmentFiles) => segmentFiles.sync()),
        onPublished: () => this.applyRetention(),
      },
      { logRatio: options.snapshotLogRatio, minLogBytes: options.snapshotMinLogBytes, keep: options.snapshotsKept, maxBytesPerSecond: options.snapshotMaxBytesPerSecond },
      opened.snapshots,
      opened.logBytesAfterSnapshot,
    );
    this.closed = new Promise((resolve) => (this.markClosed = resolve));
    this.writer = createActor(writerMachine, { input: { lane: this } });
    // Actions never throw by design; if one does anyway, the lane fails and close() still ends.
    this.writer.subscribe({
      error: (error) => {
        this.laneFailed(error instanceof Error ? error : new Error(String(error)));
        void this.files.abandon().finally(() => this.markClosed());
      },
    });
    this.queue.onWork = (sealed) => this.writer.send({ type: 'WORK_QUEUED', sealed });
    this.queue.onBroken = (error) => {
      this.laneFailed(error);
      this.writer.send({ type: 'FLUSH_FAILED', error });
    };
    this.writer.start();
    if (options.fsync === 'normal') {
      this.syncTimer = setInterval(() => {
        if (this.files.metrics.writtenOffset > this.files.metrics.syncedOffset) {
          this.writer.send({ type: 'WORKER_OP', op: { type: 'SYNC' } });
        }
      }, options.syncIntervalMs);
      this.syncTimer.unref();
    }
    const { maxAgeMs, maxBytes } = options.retention;
    if (maxAgeMs > 0 || maxBytes > 0) {
      // Age passes without writes: look again now and then, not only after flushes.
      const everyMs = maxAgeMs > 0 ? Math.min(60_000, Math.max(1_000, maxAgeMs / 4)) : 60_000;
      this.retentionTimer = setInterval(() => void this.applyRetention(), everyMs);
      this.retentionTimer.unref();
    }
  }

  static async open(options: WalOptions): Promise<WalOpenResult> {
    const resolved = resolveOptions(options);
    const { io, dir, shard, clock } = resolved;
    await initChecksum();
    let lock: DirectoryLock;
    try {
      if (!(await io.exists(dir))) {
        await io.mkdirp(dir);
        // The new directory's own entry must be durable too, or every event in it could go.
        if (resolved.fsync !== 'off') await io.syncDir(dirname(resolve(dir)));
      }
      lock = await DirectoryLock.acquire(io, dir, shard);
    } catch (error) {
      throw asTidelogError(error, dir);
    }
    let files: SegmentWriter | null = null;
    try {
      const dedup = new DedupWindow({ windowMs: resolved.dedupWindowMs, maxEventsPerGeneration: resolved.dedupMaxEvents }, clock.nowMs());
      // A snapshot install that committed before a crash is finished first (snapshot-install.ts).
      await completeInstall(io, dir, shard, clock.nowNs());
      // The highest epoch recorded here: a caller that names an older one is fenced; one that
      // names none continues with it. The committed seq kept there helps an external commit.
      const replica = await readReplicaFile(io, dir, shard);
      if (replica !== null) {
        if (options.leaderEpoch !== undefined && options.leaderEpoch < replica.epoch) throw fencedOpen(shard, options.leaderEpoch, replica.epoch);
        resolved.leaderEpoch = Math.max(resolved.leaderEpoch, replica.epoch);
        if (resolved.commit === 'external') resolved.committedSeq = Math.max(resolved.committedSeq, replica.committedSeq);
      }
      const opened = await openLog(resolved, dedup, resolved.dedupMaxEvents);
      files = opened.files;
      if (opened.newestEpoch > resolved.leaderEpoch) {
        if (options.leaderEpoch !== undefined) throw fencedOpen(shard, options.leaderEpoch, opened.newestEpoch);
        resolved.leaderEpoch = opened.newestEpoch;
      }
      files = opened.files;
      const epochStarts = mergeEpochStarts(replica?.epochStarts ?? [], opened.scannedEpochStarts, opened.lastSeq);
      const wal = new Wal(resolved, lock, { ...opened, epochStarts, confirmedEpoch: replica?.confirmedEpoch ?? 0 }, dedup, opened.files);
      // An epoch newer than the one recorded is recorded before anything is sealed with it.
      if (resolved.leaderEpoch > (replica?.epoch ?? 0)) {
        try {
          await wal.writeReplica(resolved.leaderEpoch);
        } catch (error) {
          await wal.close().catch(() => undefined);
          throw error;
        }
      }
      return { wal, replayed: opened.replayed, recovery: opened.recovery };
    } catch (error) {
      await files?.abandon();
      await lock.release().catch(() => undefined);
      throw asTidelogError(error, dir);
    }
  }

  get shard(): number {
    return this.options.shard;
  }

  /** Highest seq acknowledged (durable under fsync 'full'). */
  get lastSeq(): number {
    return this.lastDurableSeq;
  }

  /** Same as lastSeq: the highest seq acknowledged (durable under fsync 'full'). */
  get durableSeq(): number {
    return this.lastDurableSeq;
  }

  /**
   * Highest seq committed and folded into the state machine: appendMany has resolved up to
   * here. Standalone ('durable' commit) the same as durableSeq.
   */
  get committedSeq(): number {
    return this.appliedSeq;
  }

  /**
   * External commit: everything up to `seq` is committed (durable on a quorum). Folds and
   * answers the durable batches up to min(seq, durableSeq) in order; batches made durable
   * later fold as they arrive, up to `seq`. Never moves back (a lower seq is ignored).
   * Resolves once the batches durable now and ≤ seq are folded.
   */
  commitTo(seq: number): Promise<void> {
    if (this.options.commit !== 'external') return Promise.reject(new TidelogError('BAD_REQUEST', `commitTo needs commit: 'external'`));
    if (!Number.isSafeInteger(seq) || seq < 0) return Promise.reject(new TidelogError('BAD_REQUEST', `commitTo(${seq}): seq must be a u53`));
    if (seq > this.commitTarget) this.commitTarget = seq;
    return this.advanceCommit();
  }

  /**
   * Cuts the log after `seq`: the suffix a replica wrote as (or for) a leader that was deposed
   * before a quorum had it. Every batch ending past `seq` leaves the segments (synced before
   * this resolves); appends waiting for those batches, or not yet written, reject with
   * TRUNCATED, and so do appends made while the cut runs; the next seq handed out is seq + 1.
   * External commit only; `seq` must be ≥ the commit point and end a batch. Resolves with the
   * number of events removed.
   */
  truncateAfter(seq: number, options: TruncateOptions = {}): Promise<number> {
    if (this.options.commit !== 'external') return Promise.reject(new TidelogError('BAD_REQUEST', `truncateAfter needs commit: 'external'`));
    if (!Number.isSafeInteger(seq) || seq < 0) return Promise.reject(new TidelogError('BAD_REQUEST', `truncateAfter(${seq}): seq must be a u53`));
    if (seq < this.commitTarget) {
      return Promise.reject(
        new TidelogError('BAD_REQUEST', `truncateAfter(${seq}): seqs up to ${this.commitTarget} are committed and never cut`, {
          details: { seq, committedSeq: this.commitTarget },
        }),
      );
    }
    const refusal = new TidelogError('TRUNCATED', `shard ${this.options.shard}: the log was cut after seq ${seq} before this append was committed`, {
      details: { shard: this.options.shard, seq },
    });
    // Appends made from now on are refused: they would take seqs the cut hands out again.
    this.queue.refusal ??= refusal;
    const run = this.commitChain.then(async () => {
      try {
        if (this.failure) throw this.failure;
        // Checked again in turn: a commitTo made after this call was queued moved the commit
        // point meanwhile, and a committed seq is never cut.
        const committed = Math.max(this.commitTarget, this.appliedSeq);
        if (seq < committed) {
          throw new TidelogError('BAD_REQUEST', `truncateAfter(${seq}): seqs up to ${committed} are committed and never cut`, {
            details: { seq, committedSeq: committed },
          });
        }
        if (seq >= this.queue.nextSequence - 1) return 0; // nothing was handed out past seq
        if (seq > this.lastDurableSeq) {
          throw new TidelogError('BAD_REQUEST', `truncateAfter(${seq}): the log is durable only up to ${this.lastDurableSeq}; cut at or below it`, {
            details: { seq, durableSeq: this.lastDurableSeq },
          });
        }
        const oldest = this.segmentList[0]?.firstSeq ?? 1;
        if (seq + 1 < oldest) {
          throw new TidelogError('BAD_REQUEST', `truncateAfter(${seq}): the log starts at ${oldest}`, { details: { seq, oldestSeq: oldest } });
        }
        // Found (and checked) before anything changes: a refused cut leaves everything as it was.
        const cut = await this.findCut(seq);
        if (cut.lastKept !== seq) throw new Error(`invariant violated: a cut after ${seq} keeps the log to ${cut.lastKept}`);
        // What is not yet written goes now (it never reaches the log); the flush in flight, if
        // any, ends before the task below runs (the flush worker runs one operation at a time).
        this.queue.dropUnwritten(refusal);
        let removed = 0;
        await this.runTask(async (files) => {
          // The flush in flight has ended: what is cut is final. A refusal here cuts nothing.
          if (options.beforeCut !== undefined) await options.beforeCut(await this.readCut(cut));
          try {
            removed = await this.applyCut(files, cut);
          } catch (error) {
            // Files may be half cut (segments removed, the cut segment not): fail-stop, as for
            // a failed flush; the next open repairs what a crash would have left.
            const failure = error instanceof TidelogError ? error : asTidelogError(error, this.options.dir);
            this.laneFailed(failure);
            this.writer.send({ type: 'FLUSH_FAILED', error: failure });
            throw failure;
          }
          // Only now, with the cut on disk, are the callers of the cut batches told.
          this.queue.cutDurableAfter(seq, refusal, this.options.clock.nowMs());
        });
        return removed;
      } finally {
        if (this.queue.refusal === refusal) this.queue.refusal = null;
      }
    });
    this.commitChain = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  /** Where each epoch's part of the log begins, epochs ascending (a copy). */
  epochStarts(): EpochStart[] {
    return this.epochStartList.map((start) => ({ ...start }));
  }

  /**
   * The divergence search's question (Kafka's KIP-101/KIP-279): the largest epoch ≤ `epoch`
   * this log has batches of, and the last seq it holds of that epoch (for the newest epoch, the
   * durable end). null when the log has no batch of an epoch ≤ `epoch`.
   */
  epochEnd(epoch: number): { epoch: number; endSeq: number } | null {
    let at = this.epochStartList.length - 1;
    while (at >= 0 && this.epochStartList[at].epoch > epoch) at--;
    if (at < 0) return null;
    const next = this.epochStartList[at + 1];
    return { epoch: this.epochStartList[at].epoch, endSeq: (next === undefined ? this.lastDurableSeq + 1 : next.firstSeq) - 1 };
  }

  /**
   * The epoch of the batch holding `seq` in this log (Raft's log-matching check: a batch is
   * identified by its seq and epoch); -1 for a seq before every epoch start or past the end.
   * Seq 0 (before the log) has epoch 0.
   */
  epochAt(seq: number): number {
    if (seq === 0) return 0;
    if (seq > this.lastDurableSeq) return -1;
    let at = this.epochStartList.length - 1;
    while (at >= 0 && this.epochStartList[at].firstSeq > seq) at--;
    return at < 0 ? -1 : this.epochStartList[at].epoch;
  }

  /**
   * The newest epoch whose leader confirmed this log: its leader matched this log's prefix and
   * everything after that prefix was cut, so the log is a prefix of that leader's
   * (Viewstamped Replication's last normal view). A leader confirms its own log when it starts
   * to lead. A new leader is chosen by (confirmedEpoch, durable end): a replica confirmed
   * in a later epoch has every batch committed before it.
   */
  get confirmedEpoch(): number {
    return this.confirmed;
  }

  /** Records (replica file, synced) that the leader of `epoch` confirmed this log; never goes back. */
  confirmEpoch(epoch: number): Promise<void> {
    if (!Number.isSafeInteger(epoch) || epoch < 0) return Promise.reject(new TidelogError('BAD_REQUEST', `confirmEpoch(${epoch})`));
    return this.runTask(async () => {
      if (epoch > this.options.leaderEpoch) {
        throw new TidelogError('BAD_REQUEST', `confirmEpoch(${epoch}): epoch ${this.options.leaderEpoch} is the newest recorded (setEpoch first)`);
      }
      if (epoch <= this.confirmed) return;
      const previous = this.confirmed;
      this.confirmed = epoch;
      try {
        await this.writeReplica(this.options.leaderEpoch);
      } catch (error) {
        this.confirmed = previous;
        throw error;
      }
    });
  }

  /** The highest epoch this replica has recorded; new batches are sealed with it. */
  get epoch(): number {
    return this.options.leaderEpoch;
  }

  /**
   * Records `epoch` as the highest this replica has seen (the replica file, synced) before it
   * takes effect: batches sealed afterwards carry it, and after a restart nothing older is
   * accepted (Wal.open with an older leaderEpoch is FENCED). An older epoch is FENCED; the
   * same one is a no-op.
   */
  setEpoch(epoch: number): Promise<void> {
    if (!Number.isSafeInteger(epoch) || epoch < 0) {
      return Promise.reject(new TidelogError('BAD_REQUEST', `setEpoch(${epoch}): an epoch is a u53`));
    }
    return this.runTask(async () => {
      // Checked inside the flush worker, so concurrent calls are ordered and never move back.
      if (epoch < this.options.leaderEpoch) {
        throw new TidelogError('FENCED', `shard ${this.options.shard}: epoch ${epoch} is older than ${this.options.leaderEpoch}, which this replica recorded`, {
          details: { shard: this.options.shard, epoch, recordedEpoch: this.options.leaderEpoch },
        });
      }
      if (epoch === this.options.leaderEpoch) return;
      // A newer epoch is someone else's until lead(): local appends not yet written go (they
      // would otherwise be sealed with the new epoch, as if its leader had written them).
      if (this.isLeading) {
        this.isLeading = false;
        this.queue.dropUnwritten(this.notLeading(epoch));
      }
      await this.writeReplica(epoch);
      this.options.leaderEpoch = epoch;
      this.queue.setLeaderEpoch(epoch);
    });
  }

  /**
   * Starts leading at `epoch` (external commit; the caller won the epoch's claim): records the
   * epoch, confirms this log in it, and takes local appends from then on. Until then, and after
   * a newer epoch is recorded, appendMany is NOT_LEADER (standalone, a WAL always leads).
   */
  async lead(epoch: number): Promise<void> {
    if (this.options.commit !== 'external') throw new TidelogError('BAD_REQUEST', `lead needs commit: 'external'`);
    await this.setEpoch(epoch);
    if (epoch !== this.options.leaderEpoch) throw new TidelogError('FENCED', `shard ${this.options.shard}: epoch ${epoch} is not the newest recorded`);
    await this.confirmEpoch(epoch);
    this.isLeading = true;
  }

  /** The last seq handed out (written, being written, or queued). */
  get lastAssignedSeq(): number {
    return this.queue.nextSequence - 1;
  }

  /** Whether local appends are taken (external commit: after lead(), until a newer epoch). */
  get leading(): boolean {
    return this.isLeading;
  }

  private notLeading(epoch: number): TidelogError {
    return new TidelogError('NOT_LEADER', `shard ${this.options.shard}: this replica does not lead epoch ${epoch}`, {
      details: { shard: this.options.shard, epoch },
    });
  }

  private async writeReplica(epoch: number): Promise<void> {
    const { io, dir, shard } = this.options;
    try {
      await writeReplicaFile(io, dir, shard, { epoch, committedSeq: this.appliedSeq, confirmedEpoch: this.confirmed, epochStarts: this.epochStartList }, this.nowNs());
    } catch (error) {
      throw asTidelogError(error, join(dir, replicaFileName(shard)));
    }
  }

  /** Lowest retained seq; lastSeq + 1 when the retained log holds no event. */
  get firstSeq(): number {
    return this.segmentList[0]?.firstSeq ?? this.lastDurableSeq + 1;
  }

  /** The error that stopped this lane, or null while it is healthy. */
  get failed(): Error | null {
    return this.failure;
  }

  async append(event: SignalEvent): Promise<number> {
    const seqs = await this.appendMany([event]);
    return seqs[0];
  }

  /**
   * Appends events (objects or packed n × 21 bytes); one seq per event, 0 for duplicates.
   * With `options.note`, a note is made durable atomically with all of the call's events (see
   * AppendOptions); a call of 0 events with a note is BAD_REQUEST.
   */
  appendMany(events: readonly SignalEvent[] | Uint8Array, options?: AppendOptions): Promise<number[]> {
    let packed: Uint8Array;
    let count: number;
    let note: NoteCallback | undefined;
    let skipsDedup = false;
    try {
      if (events instanceof Uint8Array) {
        packed = events;
        count = validatePacked(events);
      } else {
        if (!Array.isArray(events)) throw new TidelogError('BAD_REQUEST', 'appendMany takes SignalEvent[] or Uint8Array');
        packed = encodeEvents(events);
        count = events.length;
      }
      if (options !== undefined) ({ note, skipsDedup } = checkAppendOptions(options, count));
    } catch (error) {
      return Promise.reject(error);
    }
    if (!this.isLeading) return Promise.reject(this.notLeading(this.options.leaderEpoch));
    if (count > 0 && this.options.leaderEpoch > this.newestBatchEpoch) this.newestBatchEpoch = this.options.leaderEpoch;
    // Outside the try: a broken note callback is a programming error; it throws (and the lane fails).
    return this.queue.enqueue(packed, count, note, skipsDedup);
  }

  /**
   * A follower's append: a batch its leader sealed, written verbatim (same bytes, seqs, epoch
   * and checksum; no seqs of its own, no content dedup). It must be one whole events batch of
   * this shard whose checksum verifies, start at the next seq (else SEQUENCE_GAP, details:
   * `expectedSeq`), and carry an epoch no newer than the one recorded here (setEpoch first)
   * and no older than the log's newest batch. Resolves once the batch is durable here (what a
   * follower acknowledges); it is committed, folded and passed to onPersisted at commitTo.
   */
  appendSealed(batch: Uint8Array): Promise<void> {
    try {
      // Our own copy, checked and kept: the caller's bytes are often a view of a network
      // message whose memory the transport reuses. new Uint8Array copies; slice() would not
      // for a Node Buffer (Buffer#slice is a view), which is what NATS hands out.
      const owned = batch instanceof Uint8Array ? new Uint8Array(batch) : batch;
      const { header, notes } = this.checkSealed(owned);
      this.newestBatchEpoch = header.leaderEpoch;
      return this.queue.enqueueSealed(owned as Uint8Array, header, notes);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  private checkSealed(batch: unknown): { header: BatchHeader; notes: Uint8Array[] } {
    const bad = (reason: string, details: Record<string, unknown> = {}): never => {
      throw new TidelogError('BAD_REQUEST', `appendSealed: ${reason}`, { details });
    };
    if (this.options.commit !== 'external') bad(`a sealed batch needs commit: 'external'`);
    if (this.isLeading) bad(`this replica leads epoch ${this.options.leaderEpoch}: it takes no sealed batches`);
    if (!(batch instanceof Uint8Array)) return bad('the batch must be a Uint8Array');
    const parsed = readBatchHeader(batch, 0);
    if (!parsed.ok) return bad(`not a batch (${parsed.problem})`);
    const { header } = parsed;
    if (header.kind !== BatchKind.Events) bad('not an events batch');
    if (header.shardId !== this.options.shard) bad(`a batch of shard ${header.shardId}, this is shard ${this.options.shard}`);
    if (BATCH_HEADER_BYTES + header.payloadBytes !== batch.byteLength) bad(`${batch.byteLength} bytes for a batch of ${BATCH_HEADER_BYTES + header.payloadBytes}`);
    if (!verifyBatch(batch, 0, header.payloadBytes)) {
      throw new TidelogError('CHECKSUM_MISMATCH', `appendSealed: the batch at seq ${header.firstSeq} fails its checksum`, { details: { firstSeq: header.firstSeq } });
    }
    if (header.leaderEpoch > this.options.leaderEpoch) {
      bad(`a batch of epoch ${header.leaderEpoch}, newer than ${this.options.leaderEpoch} recorded here (setEpoch first)`, { epoch: header.leaderEpoch });
    }
    if (header.leaderEpoch < this.newestBatchEpoch) {
      throw new TidelogError('FENCED', `appendSealed: a batch of epoch ${header.leaderEpoch} after one of epoch ${this.newestBatchEpoch}`, {
        details: { epoch: header.leaderEpoch, newestEpoch: this.newestBatchEpoch },
      });
    }
    const expectedSeq = this.queue.nextSequence;
    if (header.firstSeq !== expectedSeq) {
      throw new TidelogError('SEQUENCE_GAP', `appendSealed: a batch at seq ${header.firstSeq}, the log continues at ${expectedSeq}`, {
        details: { firstSeq: header.firstSeq, expectedSeq },
      });
    }
    const eventsEnd = BATCH_HEADER_BYTES + header.count * EVENT_BYTES;
    const notes = header.notesBytes > 0 ? readNotes(batch, eventsEnd, header.notesBytes) : [];
    if (notes === null) return bad('the notes section does not parse');
    return { header, notes: notes.map((note) => note.slice()) };
  }

  /** Records that everything up to `seq` is materialised; replay resumes strictly after it. */
  async checkpoint(seq: number, snapshot: Uint8Array = new Uint8Array(0)): Promise<void> {
    // External commit: only what is committed may be materialised elsewhere (it is never cut).
    const limit = this.options.commit === 'external' ? this.appliedSeq : this.durableSeq;
    if (!Number.isSafeInteger(seq) || seq < 0 || seq > limit) {
      throw new TidelogError('OUT_OF_RANGE', `checkpoint(${seq}): seq must be 0..${limit} (${this.options.commit === 'external' ? 'committed' : 'durable'})`);
    }
    if (!(snapshot instanceof Uint8Array)) throw new TidelogError('BAD_REQUEST', 'checkpoint snapshot must be a Uint8Array');
    const copy = new Uint8Array(snapshot); // the caller may reuse its buffer before the task runs (a copy even of a Buffer)
    const timestampNs = this.nowNs();
    const { io, dir, shard } = this.options;
    await this.runTask(async (files) => {
      // Checked and recorded inside the flush worker, so concurrent checkpoints are ordered and
      // the file never moves back.
      if (seq < this.checkpointSeq) return;
      // The log must be on disk before a checkpoint that points into it ('normal' acks unsynced writes).
      if (this.options.fsync !== 'off') await files.sync();
      try {
        await writeCheckpointFile(io, dir, shard, { seq, timestampNs, snapshot: copy });
      } catch (error) {
        throw asTidelogError(error, join(dir, checkpointFileName(shard)));
      }
      this.checkpointSeq = seq;
    });
  }

  /**
   * Writes a snapshot of the state machine now (waiting for one already running), whatever the
   * policy says; resolves with the file once it is durable, or null when the WAL has no state
   * machine. A failure to write it rejects (it does not fail the lane).
   */
  async takeSnapshot(): Promise<SnapshotRecord | null> {
    if (this.options.stateMachine === undefined) return null;
    if (this.failure) throw this.failure;
    if (this.closing) throw new TidelogError('CLOSED', 'the WAL is closed');
    // Another may start while we wait (after a flush): wait until none runs, then start at once.
    while (this.snapshotter.isRunning) await this.snapshotter.settled();
    const before = this.snapshotter.stats();
    await this.startSnapshot();
    const after = this.snapshotter.stats();
    if (after.failed > before.failed) throw new TidelogError('IO_ERROR', `shard ${this.shard}: snapshot failed: ${after.lastError ?? 'unknown'}`);
    return this.snapshotter.snapshots[this.snapshotter.snapshots.length - 1] ?? null;
  }

  /**
   * Deletes whole closed segments whose events all precede `seq`; returns their names. The
   * events must be covered elsewhere: without a state machine by the checkpoint (`seq` may not
   * pass checkpoint + 1), with one by a snapshot (not past the newest snapshot's seq + 1).
   */
  async truncateBefore(seq: number): Promise<string[]> {
    if (!Number.isSafeInteger(seq) || seq < 0) throw new TidelogError('BAD_REQUEST', `truncateBefore(${seq})`);
    const coveredSeq = this.options.stateMachine ? this.snapshotter.newestSeq : this.checkpointSeq;
    if (seq > coveredSeq + 1) {
      const what = this.options.stateMachine ? `the newest snapshot at ${coveredSeq}` : `the checkpoint at ${coveredSeq}`;
      throw new TidelogError('OUT_OF_RANGE', `truncateBefore(${seq}) would drop events after ${what}`, {
        details: { seq, coveredSeq },
      });
    }
    const removed = await this.drainClosedSegmentsWhile((segment) => segment.lastSeq < seq);
    return removed.map((segment) => segment.fileName);
  }

  /** Removes closed segments from the oldest on while `shouldDrain` says so (chunked-wal). */
  async drainClosedSegmentsWhile(shouldDrain: (segment: SegmentInfo) => boolean): Promise<SegmentInfo[]> {
    const drained: RetainedSegment[] = [];
    for (let index = 0; index < this.segmentList.length - 1 && shouldDrain(this.segmentList[index]); index++) {
      drained.push(this.segmentList[index]);
    }
    if (drained.length === 0) return [];
    // Each file leaves the list the moment it is deleted, so a failure halfway keeps it true.
    await this.runTask((files) =>
      files.remove(
        drained.map((segment) => segment.fileName),
        (fileName) => {
          const first = this.segmentList[0];
          if (first?.fileName === fileName) {
            this.segmentList.shift();
            this.segmentsDeleted++;
            this.bytesDeleted += first.bytes;
          }
        },
      ),
    );
    return drained.map(toSegmentInfo);
  }

  /** Committed events from `fromSeq` (default 1) through the last seq durable at the call. */
  async *read(options: { fromSeq?: number; toSeq?: number } = {}): AsyncGenerator<{ seq: number; event: SignalEvent }> {
    for await (const batch of this.readBatches(options)) {
      if (batch.count === 0) continue; // notes only
      const first = Math.max(batch.firstSeq, options.fromSeq ?? 1);
      const last = Math.min(batch.firstSeq + batch.count - 1, options.toSeq ?? Number.MAX_SAFE_INTEGER);
      const view = new DataView(batch.events.buffer, batch.events.byteOffset, batch.events.byteLength);
      for (let seq = first; seq <= last; seq++) {
        yield { seq, event: decodeEventAt(view, (seq - batch.firstSeq) * EVENT_BYTES) };
      }
    }
  }

  /**
   * Committed batches (packed) holding seqs from `fromSeq`; the first may start earlier.
   * `uncommitted: true` goes on to the durable end (a shipper's catch-up; external commit).
   * Each carries its stored bytes in `sealed`. Notes-only batches come when fromSeq ≤ their
   * firstSeq ≤ toSeq + 1 (see reader.ts). The first segment is entered through its sparse
   * index: a page costs O(page), not O(segment).
   */
  readBatches(options: { fromSeq?: number; toSeq?: number; uncommitted?: boolean } = {}): AsyncGenerator<StoredBatch> {
    const fromSeq = options.fromSeq ?? 1;
    const end = options.uncommitted === true ? this.lastDurableSeq : this.appliedSeq;
    const toSeq = Math.min(options.toSeq ?? Number.MAX_SAFE_INTEGER, end);
    const oldest = this.segmentList[0]?.firstSeq ?? 1;
    if (!Number.isSafeInteger(fromSeq) || fromSeq < 1) throw new TidelogError('BAD_REQUEST', `fromSeq must be >= 1`);
    if (fromSeq < oldest && fromSeq <= toSeq) {
      throw new TidelogError('OUT_OF_RANGE', `seq ${fromSeq} was truncated; the log starts at ${oldest}`, {
        details: { fromSeq, oldestSeq: oldest },
      });
    }
    // One instant's view: the open segment's bytes move on while the files are read. The
    // segment holding fromSeq - 1 may end with a notes-only batch sitting at fromSeq.
    const first = this.segmentIndexAt(fromSeq - 1);
    const view = this.segmentList.slice(first).map(toSegmentInfo);
    const batches = readBatches(this.options.io, this.options.dir, view, fromSeq, toSeq, (segment) => this.startOffset(segment, fromSeq));
    if (options.uncommitted !== true) return batches; // a cut never reaches committed seqs
    return this.untilCut(batches);
  }

  /**
   * Stops a read of uncommitted batches where a cut (truncateAfter) began after the read took
   * its view: the bytes past the cut are no longer the log (and the file may end sooner).
   */
  private async *untilCut(batches: AsyncGenerator<StoredBatch>): AsyncGenerator<StoredBatch> {
    const generation = this.cutGeneration;
    try {
      for await (const batch of batches) {
        if (this.cutGeneration !== generation) return;
        yield batch;
      }
    } catch (error) {
      if (this.cutGeneration !== generation) return;
      throw error;
    }
  }

  /**
   * The first seq of the first retained batch holding events whose timestampNs (its seal
   * time) is ≥ `timestampNs`, in log order; lastSeq + 1 (the next seq) when there is none.
   * Reads batch headers only, and skips every segment whose newest batch is older.
   */
  async seqAtTime(timestampNs: bigint): Promise<number> {
    if (typeof timestampNs !== 'bigint' || timestampNs < 0n || timestampNs > MAX_U64) {
      throw new TidelogError('BAD_REQUEST', `seqAtTime takes a u64 bigint of nanoseconds, got ${String(timestampNs)}`);
    }
    // One instant's view: durable bytes and seqs move on while the files are read.
    const nextSeq = this.lastDurableSeq + 1;
    const segments = this.segmentList.map((segment) => ({ ...segment }));
    for (let index = 0; index < segments.length; index++) {
      const segment = segments[index];
      // Correct without monotone clocks: only segments with no batch as new as `timestampNs` go.
      if (newestBatchBoundNs(segments, index) < timestampNs) continue;
      let seq: number | null;
      try {
        seq = await firstSeqAtTimeIn(this.options.io, this.options.dir, segment, timestampNs);
      } catch (error) {
        // Truncated meanwhile: its batches are no longer retained, so the answer lies later.
        const isGone = !this.segmentList.some((retained) => retained.fileName === segment.fileName);
        if (isTidelogError(error, 'OUT_OF_RANGE') && isGone) continue;
        throw error;
      }
      if (seq !== null) return seq;
    }
    return nextSeq;
  }

  /** The retained segments, oldest first. */
  segments(): SegmentInfo[] {
    return this.segmentList.map(toSegmentInfo);
  }

  /** The snapshot files kept, oldest first. */
  snapshots(): SnapshotRecord[] {
    return this.snapshotter.snapshots.map((record) => ({ ...record }));
  }

  /**
   * Up to `maxBytes` of a kept snapshot file from `offset` (a leader sends its newest snapshot
   * to a replica behind its retention, snapshot-install.ts). OUT_OF_RANGE when the file is no
   * longer kept (a newer snapshot replaced it: the transfer starts over with that one).
   */
  async readSnapshotPart(fileName: string, offset: number, maxBytes: number): Promise<Uint8Array> {
    const { io, dir } = this.options;
    const notKept = (): TidelogError => new TidelogError('OUT_OF_RANGE', `shard ${this.options.shard}: snapshot ${fileName} is not kept`, { details: { file: fileName } });
    if (!this.snapshotter.snapshots.some((record) => record.fileName === fileName)) throw notKept();
    let file;
    try {
      file = await io.open(join(dir, fileName), 'read');
    } catch (error) {
      if ((error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') throw notKept();
      throw asTidelogError(error, join(dir, fileName));
    }
    try {
      const bytes = new Uint8Array(Math.max(0, Math.min(maxBytes, (await file.size()) - offset)));
      const read = await readFully(file, bytes, offset);
      return bytes.subarray(0, read);
    } catch (error) {
      throw asTidelogError(error, join(dir, fileName));
    } finally {
      await file.close().catch(() => undefined);
    }
  }

  stats(): WalStats {
    const last = this.segmentList.length - 1;
    let logBytes = 0;
    for (const segment of this.segmentList) logBytes += segment.bytes;
    return {
      shard: this.options.shard,
      state: String(this.writer.getSnapshot().value),
      nextSeq: this.queue.nextSequence,
      durableSeq: this.lastDurableSeq,
      checkpointSeq: this.checkpointSeq,
      pendingEvents: this.queue.pending,
      segments: this.segmentList.map((segment, index) => ({ ...toSegmentInfo(segment), isOpen: index === last })),
      logBytes,
      dedupEvents: this.queue.dedupSize,
      flush: this.files.metrics.snapshot(),
      snapshots: this.snapshotter.stats(),
      retention: { ...this.options.retention, segmentsDeleted: this.segmentsDeleted, bytesDeleted: this.bytesDeleted },
    };
  }

  /**
   * Flushes what is queued, syncs, and releases the directory. Rejects only with news: when
   * the final flush or sync fails here (so nothing is claimed durable that is not); a lane
   * that failed earlier already told every caller, and close() then just releases. A snapshot
   * being written is abandoned (its half-written file removed).
   */
  async close(): Promise<void> {
    this.closing ??= (async () => {
      const hadFailed = this.failure !== null;
      this.queue.beginClose();
      if (this.syncTimer) clearInterval(this.syncTimer);
      if (this.retentionTimer) clearInterval(this.retentionTimer);
      await this.snapshotter.close();
      // Commit work under way (a fold from disk stops at its next batch) and cuts finish first.
      await this.commitChain;
      // External commit: keep the commit point for the next open (a lower bound is all it claims).
      if (this.options.commit === 'external' && this.failure === null && this.appliedSeq > 0) {
        await this.runTask(() => this.writeReplica(this.options.leaderEpoch), true).catch(() => undefined);
      }
      this.writer.send({ type: 'CLOSE_REQUESTED' });
      await this.closed;
      this.writer.stop();
      // Durable batches the commit point never reached: their callers learn they were not
      // committed (after a restart the owner's commitTo may still commit them).
      if (this.queue.awaitingCommit.length > 0) {
        this.queue.fail(new TidelogError('CLOSED', `shard ${this.options.shard}: closed before seqs after ${this.appliedSeq} were committed`));
      }
      await this.lock.release();
      if (!hadFailed && this.failure !== null) throw this.failure;
    })();
    return this.closing;
  }

  // ── WriterLane: called by the writer actor ────────────────────────────────────────────

  prepareFlush(): FlushRequest {
    // Everything queued goes in this flush, as far as it fits the open segment: one write,
    // one fdatasync for all of it.
    this.queue.sealOpenGroup();
    const sealed = this.queue.sealed;
    const open = this.segmentList[this.segmentList.length - 1];
    const written = this.files.metrics.writtenOffset;
    const hasBatches = open.lastSeq >= open.firstSeq;
    const segmentBytes = this.options.segmentBytes;
    let rotate: FlushRequest['rotate'] = null;
    let space = segmentBytes - written;
    let total = 0;
    let count = 0;
    for (const group of sealed) {
      const bytes = group.sealed?.byteLength ?? 0;
      if (bytes > 0) {
        if (total === 0) {
          // The first batch always goes; it opens a new segment if it would overflow this one.
          if (hasBatches && written + bytes > segmentBytes) {
            const record = encodeMarkerRecord({
              shard: this.options.shard,
              firstSeq: group.firstSeq,
              leaderEpoch: this.options.leaderEpoch,
              timestampNs: this.queue.sealTimeNs(),
              snapshotSeq: this.snapshotter.newestSeq,
              prevFirstSeq: open.firstSeq,
              prevDedupNs: open.newestDedupNs > 0n ? open.newestDedupNs : 0n,
            });
            rotate = { firstSeq: group.firstSeq, headRecord: record };
            space = segmentBytes - record.byteLength;
          }
        } else if (total + bytes > space || total + bytes > MAX_FLUSH_BYTES) {
          break;
        }
        total += bytes;
      }
      count++;
    }
    const groups = this.queue.take(count);
    let events = 0;
    const parts: Uint8Array[] = [];
    for (const group of groups) {
      if (group.sealed === null) continue;
      parts.push(group.sealed);
      events += group.count;
    }
    // One write for the whole flush: the batches back to back in a buffer reused by every
    // flush (one flush is in flight at a time, and the next is prepared only after it).
    let bytes = parts[0] ?? new Uint8Array(0);
    if (parts.length > 1) {
      if (this.flushBuffer.byteLength < total) this.flushBuffer = new Uint8Array(Math.max(total, Math.min(MAX_FLUSH_BYTES, this.flushBuffer.byteLength * 2)));
      let offset = 0;
      for (const part of parts) {
        this.flushBuffer.set(part, offset);
        offset += part.byteLength;
      }
      bytes = this.flushBuffer.subarray(0, total);
    }
    // A batch that opens an epoch in this log: its start is recorded (the replica file) before
    // the batch is written, so the log never holds an epoch its replica file does not place.
    let opensEpoch = false;
    for (const group of groups) {
      if (group.sealed === null) continue;
      // A start recorded for a batch that never reached the log (its write failed before a
      // restart) sits at or after this batch: it is not the log's.
      while (this.epochStartList.length > 0 && this.epochStartList[this.epochStartList.length - 1].firstSeq >= group.firstSeq && group.count > 0) {
        this.epochStartList.pop();
        opensEpoch = true;
      }
      const last = this.epochStartList[this.epochStartList.length - 1];
      if (last !== undefined && group.epoch <= last.epoch) continue;
      this.epochStartList.push({ epoch: group.epoch, firstSeq: last === undefined && group.epoch === 0 ? 1 : group.firstSeq });
      opensEpoch ||= group.epoch > 0 || this.options.commit === 'external';
    }
    const prelude = opensEpoch ? (): Promise<void> => this.writeReplica(this.options.leaderEpoch) : null;
    return { groups, bytes, events, rotate, shouldSync: this.options.fsync === 'full', prelude };
  }

  groupDurable(request: FlushRequest): void {
    // The worker sees batches as FlushGroups; the queue knows them as the groups in flight.
    const groups = this.queue.inFlightGroups;
    if (groups.length !== request.groups.length) throw new Error('invariant violated: the flush persisted is not the one in flight');
    const { rotate } = request;
    // Bookkeeping first, for every batch of the flush: it is all durable, whatever a hook does.
    if (rotate !== null) {
      const headBytes = rotate.headRecord.byteLength;
      this.segmentList.push({
        fileName: segmentFileName(this.options.shard, rotate.firstSeq),
        firstSeq: rotate.firstSeq,
        lastSeq: rotate.firstSeq - 1,
        bytes: headBytes,
        headBytes,
        openedAtNs: readTimestampNs(rotate.headRecord),
        headKind: 'marker',
        newestBatchNs: -1n,
        newestDedupNs: -1n,
        isNewestKnown: true,
        index: new SegmentIndex(headBytes),
      });
    }
    const open = this.segmentList[this.segmentList.length - 1];
    const nowNs = this.nowNs();
    let flushedBytes = 0;
    for (const group of groups) {
      if (group.sealed === null) continue;
      group.segment = open.fileName;
      open.index?.add(group.firstSeq, open.bytes);
      open.lastSeq = group.lastSeq;
      open.bytes += group.sealed.byteLength;
      flushedBytes += group.sealed.byteLength;
      if (group.count > 0 && group.timestampNs > open.newestBatchNs) open.newestBatchNs = group.timestampNs;
      if (group.count > 0 && !group.skipsDedup && group.timestampNs > open.newestDedupNs) open.newestDedupNs = group.timestampNs;
      this.lastDurableSeq = group.lastSeq;
      recordUs(this.files.metrics.commitLatency, group.sealedAtNs, nowNs);
    }
    const { onDurable } = this.options;
    if (onDurable !== undefined) {
      try {
        for (const group of groups) {
          if (group.sealed === null) continue;
          onDurable({ ...this.groupInfo(group, group.sealed), sealed: group.sealed });
        }
      } catch (cause) {
        this.hookFailed(this.options.commit === 'external' ? null : groups, cause);
        return;
      }
    }
    this.snapshotter.recordLog(flushedBytes);
    if (this.options.commit === 'external') {
      this.queue.complete(groups, false);
      void this.advanceCommit();
    } else {
      this.commitTarget = this.lastDurableSeq;
      if (!this.applyGroups(groups)) return;
      this.queue.complete(groups);
      this.afterCommit();
    }
    if (rotate !== null) void this.applyRetention();
  }

  /** A hook threw: the batches are durable, so their callers are answered; then the lane stops. */
  private hookFailed(groups: readonly CommitGroup[] | null, cause: unknown): void {
    // Before the writer looks for more work, since the state machine may now be behind.
    if (groups !== null) this.queue.complete(groups);
    const error = new TidelogError('HOOK_FAILED', `shard ${this.options.shard}: a state machine, onDurable or onPersisted hook threw`, { cause });
    this.laneFailed(error);
    this.writer.send({ type: 'FLUSH_FAILED', error });
  }

  /** A written group as the hooks see it (the segment it went to is set once durable). */
  private groupInfo(group: CommitGroup, sealed: Uint8Array): PersistedInfo {
    return this.persistedInfo({ firstSeq: group.firstSeq, lastSeq: group.lastSeq, count: group.count, bytes: sealed.byteLength, notes: group.notes ?? NO_NOTES }, group.segment);
  }

  private persistedInfo(batch: { firstSeq: number; lastSeq: number; count: number; bytes: number; notes: readonly Uint8Array[] }, segment: string): PersistedInfo {
    return {
      shard: this.options.shard,
      firstSeq: batch.firstSeq,
      lastSeq: batch.lastSeq,
      events: batch.count,
      bytes: batch.bytes,
      segment,
      notes: batch.notes,
    };
  }

  /** Folds committed groups (in seq order) and runs onPersisted; false when a hook threw (the lane failed). */
  private applyGroups(groups: readonly CommitGroup[]): boolean {
    const { onPersisted } = this.options;
    try {
      for (const group of groups) {
        if (group.sealed === null) continue;
        this.applyBatch({
          firstSeq: group.firstSeq,
          count: group.count,
          events: group.events,
          timestampNs: group.timestampNs,
          leaderEpoch: group.epoch,
          notes: group.notes ?? NO_NOTES,
        });
        onPersisted?.(this.groupInfo(group, group.sealed));
      }
    } catch (cause) {
      this.hookFailed(this.options.commit === 'external' ? null : groups, cause);
      return false;
    }
    return true;
  }

  private applyBatch(batch: StoredBatch): void {
    this.options.stateMachine?.apply(batch);
    const lastSeq = batch.firstSeq + batch.count - 1;
    if (batch.count > 0) {
      this.appliedSeq = lastSeq;
      this.notesBatchesAfter = 0;
    } else this.notesBatchesAfter++;
  }

  /** At a batch boundary with every committed batch applied: the one moment a snapshot may begin. */
  private afterCommit(): void {
    if (this.options.stateMachine !== undefined && this.snapshotter.shouldStart()) void this.startSnapshot();
  }

  /**
   * External commit: folds what is durable and ≤ commitTarget, in order — first batches on disk
   * only (after a restart), then the durable groups in memory — and answers their callers.
   */
  private advanceCommit(): Promise<void> {
    this.commitChain = this.commitChain.then(async () => {
      if (this.failure !== null) return;
      if (this.diskBacklogSeq > this.appliedSeq && this.commitTarget > this.appliedSeq) await this.foldFromDisk();
      if (this.failure !== null || this.diskBacklogSeq > this.appliedSeq) return;
      const awaiting = this.queue.awaitingCommit;
      let count = 0;
      while (count < awaiting.length && awaiting[count].lastSeq <= this.commitTarget) count++;
      if (count === 0) return;
      const groups = awaiting.slice(0, count);
      if (!this.applyGroups(groups)) return;
      this.queue.settleCommitted(count);
      this.afterCommit();
    });
    return this.commitChain;
  }

  /** Folds the durable batches on disk only (found on open past the committed seq) up to commitTarget. */
  private async foldFromDisk(): Promise<void> {
    const toSeq = Math.min(this.commitTarget, this.diskBacklogSeq);
    let notesToSkip = this.notesBatchesAfter;
    // Notes-only batches right after the backlog's last event: only those on disk at open are
    // the backlog's; any later one is a group in memory, folded from there.
    let backlogNotesLeft = this.diskBacklogNotes;
    try {
      for await (const batch of this.readBatches({ fromSeq: this.appliedSeq + 1, toSeq, uncommitted: true })) {
        if (this.closing !== null) return;
        const lastSeq = batch.firstSeq + batch.count - 1;
        if (lastSeq > toSeq) break; // a batch that ends past the commit point waits whole
        if (batch.count === 0 && batch.firstSeq === this.appliedSeq + 1 && notesToSkip > 0) {
          notesToSkip--;
          continue;
        }
        if (batch.count === 0 && batch.firstSeq === this.diskBacklogSeq + 1) {
          if (backlogNotesLeft === 0) break;
          backlogNotesLeft--;
        }
        if (batch.count > 0 && lastSeq <= this.appliedSeq) continue;
        this.applyBatch(batch);
        const segment = this.segmentList[this.segmentIndexAt(batch.firstSeq)].fileName;
        this.options.onPersisted?.(this.persistedInfo({ ...batch, lastSeq, bytes: batch.sealed?.byteLength ?? 0 }, segment));
      }
    } catch (cause) {
      this.hookFailed(null, cause);
      return;
    }
    if (this.appliedSeq >= this.diskBacklogSeq && toSeq >= this.diskBacklogSeq) {
      this.diskBacklogSeq = 0;
      this.diskBacklogNotes = 0;
    }
    this.afterCommit();
  }

  laneFailed(error: Error): void {
    this.failure ??= error;
    this.queue.fail(this.failure);
  }

  laneClosed(): void {
    this.markClosed();
  }

  // ── snapshots, retention, indexes ───────────────────────────────────────────────────

  /** Begins a snapshot of the state as it is now (every durable batch applied); resolves when it settles. */
  private startSnapshot(): Promise<void> {
    const stateMachine = this.options.stateMachine;
    if (stateMachine === undefined) return Promise.resolve();
    const stream = stateMachine.beginSnapshot?.() ?? wholeBytesStream(stateMachine.snapshot());
    return this.snapshotter.start(stream, {
      shard: this.options.shard,
      seq: this.appliedSeq,
      notesBatchesAfter: this.notesBatchesAfter,
      leaderEpoch: this.options.leaderEpoch,
      timestampNs: this.nowNs(),
    });
  }

  /**
   * Replication: retention keeps every segment holding a seq above `seq` (the lowest seq a
   * replica of the shard is known to hold; a lagging follower is caught up from the segments
   * after it), on top of its own policy; null lifts the hold.
   */
  holdRetention(seq: number | null): void {
    if (seq !== null && (!Number.isSafeInteger(seq) || seq < 0)) throw new TidelogError('BAD_REQUEST', `holdRetention(${seq}): a seq is a u53`);
    const wasLower = this.retentionHoldSeq === null || (seq !== null && seq > this.retentionHoldSeq);
    this.retentionHoldSeq = seq;
    if (wasLower) void this.applyRetention();
  }

  /** Deletes the oldest segments the retention policy releases (behind the oldest snapshot kept). */
  private async applyRetention(): Promise<void> {
    if (this.isRetentionRunning || this.closing !== null || this.failure !== null) return;
    const ownFloorSeq = this.options.stateMachine ? this.snapshotter.oldestKeptSeq : this.checkpointSeq;
    const floorSeq = this.retentionHoldSeq === null ? ownFloorSeq : Math.min(ownFloorSeq, this.retentionHoldSeq);
    const count = segmentsToRelease(this.segmentList, floorSeq, this.options.retention, this.nowNs());
    if (count === 0) return;
    const names = new Set(this.segmentList.slice(0, count).map((segment) => segment.fileName));
    this.isRetentionRunning = true;
    try {
      await this.drainClosedSegmentsWhile((segment) => names.has(segment.fileName));
    } catch {
      // Counted nowhere else on purpose: a failed unlink is retried at the next pass.
    } finally {
      this.isRetentionRunning = false;
    }
  }

  /** Index in segmentList of the segment holding `seq` (the first when seq precedes them all). */
  private segmentIndexAt(seq: number): number {
    let low = 0;
    let high = this.segmentList.length - 1;
    let found = 0;
    while (low <= high) {
      const middle = (low + high) >>> 1;
      if (this.segmentList[middle].firstSeq <= seq) {
        found = middle;
        low = middle + 1;
      } else {
        high = middle - 1;
      }
    }
    return found;
  }

  /** Where a read of `fromSeq` enters `segment`: its sparse index, built from its headers when missing. */
  private async startOffset(segment: SegmentInfo, fromSeq: number): Promise<number> {
    const retained = this.segmentList[this.segmentIndexAt(segment.firstSeq)];
    if (retained === undefined || retained.fileName !== segment.fileName) return segment.headBytes;
    if (retained.index === null) {
      const index = await buildSegmentIndex(this.options.io, this.options.dir, segment);
      if (retained.index === null) {
        retained.index = index;
        this.lazyIndexed.push(retained);
        if (this.lazyIndexed.length > MAX_LAZY_INDEXES) {
          const evicted = this.lazyIndexed.shift() as RetainedSegment;
          evicted.index = null;
        }
      }
    }
    return (retained.index ?? new SegmentIndex(segment.headBytes)).find(fromSeq);
  }

  /**
   * Where truncateAfter(seq) cuts: the segment holding the first batch that ends past `seq`,
   * the offset of that batch, and what the segment keeps. BAD_REQUEST when `seq` is inside a batch.
   */
  /** The events batches a cut removes (sealed bytes, in log order), read while no flush runs. */
  private async readCut(cut: LogCut): Promise<Uint8Array[]> {
    const at = this.segmentList.indexOf(cut.segment);
    const batches: Uint8Array[] = [];
    for (let index = Math.max(at, 0); index < this.segmentList.length; index++) {
      const segment = this.segmentList[index];
      const from = index === at ? cut.offset : segment.headBytes;
      if (segment.bytes <= from) continue;
      const bytes = new Uint8Array(segment.bytes - from);
      const file = await this.options.io.open(join(this.options.dir, segment.fileName), 'read');
      try {
        const read = await readFully(file, bytes, from);
        if (read !== bytes.byteLength) throw new TidelogError('IO_ERROR', `${segment.fileName}: ${read} of ${bytes.byteLength} bytes read before a cut`);
      } finally {
        await file.close();
      }
      for (let offset = 0; offset < bytes.byteLength; ) {
        const parsed = readBatchHeader(bytes, offset);
        if (!parsed.ok) throw new TidelogError('CORRUPT_SEGMENT', `${segment.fileName}: ${parsed.problem} at byte ${from + offset} before a cut`);
        const end = offset + BATCH_HEADER_BYTES + parsed.header.payloadBytes;
        if (parsed.header.kind === BatchKind.Events) batches.push(bytes.slice(offset, end));
        offset = end;
      }
    }
    return batches;
  }

  private async findCut(seq: number): Promise<LogCut> {
    const { io, dir } = this.options;
    let at = this.segmentList.length - 1;
    while (at > 0 && this.segmentList[at].firstSeq > seq + 1) at--;
    const segment = this.segmentList[at];
    const cut: LogCut = {
      segment,
      offset: segment.bytes,
      index: new SegmentIndex(segment.headBytes),
      lastKept: segment.firstSeq - 1,
      newestBatchNs: -1n,
      newestDedupNs: -1n,
      newestEpoch: 0,
    };
    await scanHeaders(io, dir, toSegmentInfo(segment), (header, offset) => {
      const lastSeq = header.firstSeq + header.count - 1;
      if (lastSeq > seq) {
        if (header.firstSeq <= seq) {
          throw new TidelogError('BAD_REQUEST', `truncateAfter(${seq}): seq ${seq} is inside the batch of seqs ${header.firstSeq}..${lastSeq}`, {
            details: { seq, batchFirstSeq: header.firstSeq, batchLastSeq: lastSeq },
          });
        }
        cut.offset = offset;
        return false;
      }
      cut.index.add(header.firstSeq, offset);
      cut.lastKept = lastSeq;
      if (header.leaderEpoch > cut.newestEpoch) cut.newestEpoch = header.leaderEpoch;
      if (header.count > 0 && header.timestampNs > cut.newestBatchNs) cut.newestBatchNs = header.timestampNs;
      if (header.count > 0 && !header.skipsDedup && header.timestampNs > cut.newestDedupNs) cut.newestDedupNs = header.timestampNs;
      return true;
    });
    return cut;
  }

  /**
   * truncateAfter's file work, inside the flush worker: removes the segments after the cut
   * one, cuts that one, and brings the segment list and durable seq in line. Returns the
   * events removed.
   */
  private async applyCut(files: SegmentWriter, cut: LogCut): Promise<number> {
    const at = this.segmentList.indexOf(cut.segment);
    if (at < 0) throw new Error(`invariant violated: the segment to cut (${cut.segment.fileName}) left the list`);
    const later = this.segmentList.slice(at + 1);
    const lastBefore = this.lastDurableSeq;
    this.cutGeneration++;
    await files.cutBack({ fileName: cut.segment.fileName, firstSeq: cut.segment.firstSeq }, cut.offset, later.map((each) => each.fileName));
    this.segmentList.splice(at + 1);
    for (const gone of [cut.segment, ...later]) {
      const where = this.lazyIndexed.indexOf(gone);
      if (where >= 0) this.lazyIndexed.splice(where, 1);
    }
    Object.assign(cut.segment, {
      bytes: cut.offset,
      lastSeq: cut.lastKept,
      index: cut.index,
      newestBatchNs: cut.newestBatchNs,
      newestDedupNs: cut.newestDedupNs,
      isNewestKnown: true,
    });
    this.lastDurableSeq = Math.min(this.lastDurableSeq, cut.lastKept);
    // The cut batches may have carried a newer epoch; what the log keeps decides now (a segment
    // that keeps no batch allows any epoch up to the recorded one).
    this.newestBatchEpoch = cut.newestEpoch;
    // Epochs whose every batch was cut start nowhere now.
    const keptStarts = this.epochStartList.filter((start) => start.firstSeq <= cut.lastKept);
    if (keptStarts.length < this.epochStartList.length) {
      this.epochStartList.splice(0, this.epochStartList.length, ...keptStarts);
      await this.writeReplica(this.options.leaderEpoch);
    }
    // The epoch floor for sealed batches: the newest epoch the kept log holds (its segment's
    // batches may all be gone while an earlier segment's remain).
    this.newestBatchEpoch = Math.max(this.newestBatchEpoch, keptStarts[keptStarts.length - 1]?.epoch ?? 0);
    if (this.diskBacklogSeq > cut.lastKept) this.diskBacklogSeq = cut.lastKept > this.appliedSeq ? cut.lastKept : 0;
    return Math.max(0, lastBefore - this.lastDurableSeq);
  }

  /** Runs `run` in the flush worker, between flushes; `isClosing`: close() itself asks. */
  private runTask(run: (files: SegmentWriter) => Promise<void>, isClosing = false): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.closing && !isClosing) return Promise.reject(new TidelogError('CLOSED', 'the WAL is closed'));
    const { promise, resolve, reject } = deferred<void>();
    this.writer.send({ type: 'WORKER_OP', op: { type: 'TASK', run: () => run(this.files), resolve, reject } });
    return promise;
  }
}

function toSegmentInfo(segment: RetainedSegment): SegmentInfo {
  return {
    fileName: segment.fileName,
    firstSeq: segment.firstSeq,
    lastSeq: segment.lastSeq,
    bytes: segment.bytes,
    headBytes: segment.headBytes,
    openedAtNs: segment.openedAtNs,
  };
}

/** The timestampNs field of an encoded record's header. */
function readTimestampNs(record: Uint8Array): bigint {
  return new DataView(record.buffer, record.byteOffset, record.byteLength).getBigUint64(40, true);
}

/** A snapshot stream over bytes produced all at once (a state machine without beginSnapshot). */
function wholeBytesStream(bytes: Uint8Array): { next(maxBytes: number): Uint8Array | null; cancel(): void } {
  let offset = 0;
  let isDone = false;
  return {
    next(maxBytes) {
      if (isDone || offset >= bytes.byteLength) {
        isDone = true;
        return null;
      }
      const piece = bytes.subarray(offset, Math.min(bytes.byteLength, offset + maxBytes));
      offset += piece.byteLength;
      return piece;
    },
    cancel() {
      isDone = true;
    },
  };
}

/** appendMany's options, checked before anything is queued. */
function checkAppendOptions(options: AppendOptions, count: number): { note: NoteCallback | undefined; skipsDedup: boolean } {
  if (typeof options !== 'object' || options === null) throw new TidelogError('BAD_REQUEST', 'appendMany options must be an object');
  const dedup: unknown = options.dedup;
  if (dedup !== undefined && typeof dedup !== 'boolean') throw new TidelogError('BAD_REQUEST', 'appendMany options.dedup must be a boolean');
  const note: unknown = options.note;
  if (note === undefined) return { note: undefined, skipsDedup: dedup === false };
  if (typeof note !== 'function') throw new TidelogError('BAD_REQUEST', 'appendMany options.note must be a function');
  if (count === 0) throw new TidelogError('BAD_REQUEST', 'appendMany: a note needs at least one event to describe');
  return { note: note as NoteCallback, skipsDedup: dedup === false };
}

/**
 * The epoch starts a replica begins with: the replica file's (those inside the log: a start
 * past its last seq is a batch never written, or cut), then any
 * newer epoch the scan after the snapshot met (a batch written just before a crash, or a log
 * older than epoch starts). Epoch 0 with nothing before it starts at seq 1.
 */
function mergeEpochStarts(recorded: readonly EpochStart[], scanned: readonly EpochStart[], lastSeq: number): EpochStart[] {
  // A start past the log's last seq belongs to a batch that was never written (or was cut).
  const starts = recorded.filter((start) => start.firstSeq <= lastSeq).map((start) => ({ ...start }));
  for (const start of scanned) {
    const last = starts[starts.length - 1];
    if (last !== undefined && (start.epoch <= last.epoch || start.firstSeq < last.firstSeq)) continue;
    starts.push({ epoch: start.epoch, firstSeq: last === undefined && start.epoch === 0 ? 1 : start.firstSeq });
  }
  return starts;
}

function fencedOpen(shard: number, epoch: number, recordedEpoch: number): TidelogError {
  return new TidelogError('FENCED', `shard ${shard}: epoch ${epoch} is older than ${recordedEpoch}, which this replica recorded`, {
    details: { shard, epoch, recordedEpoch },
  });
}

/** File-system errors leave tidelog as TidelogError IO_ERROR, the cause kept. */
function asTidelogError(error: unknown, path: string): Error {
  if (error instanceof TidelogError) return error;
  const errno = (error as NodeJS.ErrnoException | undefined)?.code ?? 'unknown';
  return new TidelogError('IO_ERROR', `${path}: ${errno}`, { cause: error, details: { errno, file: path } });
}
