// The options of Wal.open, their defaults and their bounds. Invariant: a ResolvedOptions
// value passed every check below, so the engine never re-validates them.

import { systemClock, type Clock } from '../clock.ts';
import { TidelogError } from '../errors.ts';
import { nodeFileIo, type FileIo } from './file-io.ts';
import type { RetentionPolicy } from './retention.ts';
import { checkShardId } from './segment-name.ts';
import type { FsyncMode } from './segment-writer.ts';
import type { WalStateMachine } from './state-machine.ts';

export interface PersistedInfo {
  shard: number;
  firstSeq: number;
  /** firstSeq - 1 for a batch that carries only notes. */
  lastSeq: number;
  events: number;
  bytes: number;
  segment: string;
  /** The batch's notes (valid during the call only); empty when none. */
  notes: readonly Uint8Array[];
  /**
   * onDurable only: the sealed batch as written (header included; valid during the call only):
   * what a shipper sends and a follower's appendSealed takes.
   */
  sealed?: Uint8Array;
}

export interface WalOptions {
  dir: string;
  shard?: number;
  segmentBytes?: number;
  batchMaxEvents?: number;
  batchLingerMs?: number;
  /** Content dedup window for appends that do not opt out (0: off). */
  dedupWindowMs?: number;
  /** Cap on events remembered per dedup generation (memory bound; see dedup.ts). */
  dedupMaxEvents?: number;
  fsync?: FsyncMode;
  /** 'normal' only: the longest time written data may stay unsynced. */
  syncIntervalMs?: number;
  /** Bound on events accepted but not yet durable; past it appends fail with OVERLOADED. */
  maxPendingEvents?: number;
  /** Return the durable prefix instead of failing on damage before the tail. */
  salvage?: boolean;
  /** Decode events after the checkpoint into `replayed` (default true); false skips it. */
  replay?: boolean;
  leaderEpoch?: number;
  stateMachine?: WalStateMachine;
  /**
   * With a state machine: a snapshot file once the log since the last one passes
   * snapshotLogRatio × that snapshot's size (default 1: snapshot writes ≤ the log's bytes,
   * replay after a restart ≤ the state's size — a 1 M-entity shard restarts in a few
   * seconds); 0 turns automatic snapshots off.
   */
  snapshotLogRatio?: number;
  /** …and at least this many bytes of log (default 64 MiB): a small state is not snapshotted every flush. */
  snapshotMinLogBytes?: number;
  /** Snapshot files kept (default 2: the newest and one to fall back to when it is damaged). */
  snapshotsKept?: number;
  /**
   * Cap on the rate a snapshot is written at (default 64 MiB/s; 0: none). Written flat out, a
   * snapshot holds the disk and the event loop: measured (npm run bench -- state --only=snapshot)
   * ack p99 at a paced 100 k events/s rose 2.7× while snapshots were written; the cap trades a
   * longer snapshot (a 100 MB one takes ~1.5 s) for acks that barely notice it.
   */
  snapshotMaxBytesPerSecond?: number;
  /** Delete whole old segments behind a snapshot (or the checkpoint); default: keep everything. */
  retention?: Partial<RetentionPolicy>;
  /**
   * Each batch once it is committed (folded into the state machine, callers about to be
   * answered). Standalone, a batch is committed once durable.
   */
  onPersisted?: (info: PersistedInfo) => void;
  /**
   * Who moves the commit point. 'durable' (default; one node): a batch is committed once it is
   * durable here. 'external' (replication): the owner calls commitTo(hwm) as a quorum of
   * replicas makes batches durable; appendMany resolves, the state machine folds, onPersisted
   * runs and snapshots describe the log only up to it. Durable batches past it wait (they
   * count in maxPendingEvents) or are cut by truncateAfter.
   */
  commit?: 'durable' | 'external';
  /**
   * 'external' only: when appendMany resolves. 'commit' (default): at the commit point.
   * 'durable': once the call's batch is durable here (availability mode: a leader acknowledges
   * on its own fsync; the batch is still committed, folded and read only at commitTo).
   */
  resolveAt?: 'commit' | 'durable';
  /**
   * 'external' only: a seq its owner knows to be committed (it kept it from an earlier run;
   * never above the truth). On open the state machine folds the log up to it (or up to the
   * snapshot restored, if later); what follows waits for commitTo.
   */
  committedSeq?: number;
  /** Each batch once it is durable here, before it is committed (the replication shipper's feed). */
  onDurable?: (info: PersistedInfo) => void;
  /** Progress of the recovery scan on open: segments verified so far of `total`. */
  onRecoveryProgress?: (done: number, total: number) => void;
  io?: FileIo;
  clock?: Clock;
}

export type ResolvedOptions = Required<Omit<WalOptions, 'stateMachine' | 'onPersisted' | 'onDurable' | 'onRecoveryProgress' | 'retention'>> &
  Pick<WalOptions, 'stateMachine' | 'onPersisted' | 'onDurable' | 'onRecoveryProgress'> & { retention: RetentionPolicy };

export function resolveOptions(options: WalOptions): ResolvedOptions {
  const resolved: ResolvedOptions = {
    dir: options.dir,
    shard: options.shard ?? 0,
    segmentBytes: options.segmentBytes ?? 16 << 20,
    batchMaxEvents: options.batchMaxEvents ?? 1000,
    batchLingerMs: options.batchLingerMs ?? 0,
    dedupWindowMs: options.dedupWindowMs ?? 0,
    dedupMaxEvents: options.dedupMaxEvents ?? 1 << 20,
    fsync: options.fsync ?? 'full',
    syncIntervalMs: options.syncIntervalMs ?? 100,
    maxPendingEvents: options.maxPendingEvents ?? 1_000_000,
    salvage: options.salvage ?? false,
    replay: options.replay ?? true,
    leaderEpoch: options.leaderEpoch ?? 0,
    stateMachine: options.stateMachine,
    snapshotLogRatio: options.snapshotLogRatio ?? 1,
    snapshotMinLogBytes: options.snapshotMinLogBytes ?? 64 << 20,
    snapshotsKept: options.snapshotsKept ?? 2,
    snapshotMaxBytesPerSecond: options.snapshotMaxBytesPerSecond ?? 64 << 20,
    retention: { maxAgeMs: options.retention?.maxAgeMs ?? 0, maxBytes: options.retention?.maxBytes ?? 0 },
    onPersisted: options.onPersisted,
    commit: options.commit ?? 'durable',
    committedSeq: options.committedSeq ?? 0,
    resolveAt: options.resolveAt ?? 'commit',
    onDurable: options.onDurable,
    onRecoveryProgress: options.onRecoveryProgress,
    io: options.io ?? nodeFileIo,
    clock: options.clock ?? systemClock,
  };
  const bad = (what: string): never => {
    throw new TidelogError('BAD_REQUEST', `Wal.open: ${what}`);
  };
  if (typeof resolved.dir !== 'string' || resolved.dir === '') bad('dir is required');
  checkShardId(resolved.shard);
  const integer = (name: string, value: unknown, min: number, max: number): void => {
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      bad(`${name} must be an integer ${min}..${max}, got ${String(value)}`);
    }
  };
  integer('segmentBytes', resolved.segmentBytes, 1, 1 << 30);
  integer('batchMaxEvents', resolved.batchMaxEvents, 1, 1 << 20);
  integer('dedupMaxEvents', resolved.dedupMaxEvents, 1, 1 << 26);
  integer('syncIntervalMs', resolved.syncIntervalMs, 1, 3_600_000);
  integer('maxPendingEvents', resolved.maxPendingEvents, 1, 1 << 28);
  integer('snapshotMinLogBytes', resolved.snapshotMinLogBytes, 0, Number.MAX_SAFE_INTEGER);
  integer('snapshotsKept', resolved.snapshotsKept, 1, 64);
  integer('snapshotMaxBytesPerSecond', resolved.snapshotMaxBytesPerSecond, 0, Number.MAX_SAFE_INTEGER);
  integer('retention.maxBytes', resolved.retention.maxBytes, 0, Number.MAX_SAFE_INTEGER);
  if (!Number.isFinite(resolved.retention.maxAgeMs) || resolved.retention.maxAgeMs < 0) bad('retention.maxAgeMs must be >= 0');
  if (!Number.isFinite(resolved.snapshotLogRatio) || resolved.snapshotLogRatio < 0) bad('snapshotLogRatio must be >= 0');
  if (!Number.isFinite(resolved.batchLingerMs) || resolved.batchLingerMs < 0) bad('batchLingerMs must be >= 0');
  if (!Number.isFinite(resolved.dedupWindowMs) || resolved.dedupWindowMs < 0) bad('dedupWindowMs must be >= 0');
  if (!['full', 'normal', 'off'].includes(resolved.fsync)) bad(`fsync must be 'full', 'normal' or 'off'`);
  if (!Number.isSafeInteger(resolved.leaderEpoch) || resolved.leaderEpoch < 0) bad('leaderEpoch must be a u53');
  if (resolved.commit !== 'durable' && resolved.commit !== 'external') bad(`commit must be 'durable' or 'external'`);
  if (!Number.isSafeInteger(resolved.committedSeq) || resolved.committedSeq < 0) bad('committedSeq must be a u53');
  if (resolved.commit === 'durable' && options.committedSeq !== undefined) bad(`committedSeq needs commit: 'external'`);
  if (resolved.resolveAt !== 'commit' && resolved.resolveAt !== 'durable') bad(`resolveAt must be 'commit' or 'durable'`);
  if (resolved.commit === 'durable' && resolved.resolveAt === 'durable') bad(`resolveAt: 'durable' needs commit: 'external'`);
  return resolved;
}
