// When and how a shard's state machine is snapshotted to a file of its own.
//
// Policy: a new snapshot once the log written since the newest one exceeds
//   max(minLogBytes, logRatio × the newest snapshot's size)
// so snapshot writes stay ≤ 1 / logRatio of the log's bytes (write amplification), and a
// restart replays at most that much log after restoring (replay time) — both bounded
// together, whatever the state's size. One snapshot at a time; a failed one (ENOSPC, EIO)
// is abandoned, its half-written file removed, and retried after a back-off: snapshots are an
// optimisation of restarts, the log alone is durable, so a snapshot failure never fails the lane.
//
// Pump: the state machine's stream is pulled in pieces of SNAPSHOT_CHUNK_BYTES; each piece is
// checksummed and written before the next is asked for, so the event loop never holds more
// than one piece of work (≈ 1–2 ms) and acks keep flowing while a large snapshot is written.
//
//   flush durable ─► shouldStart? ─► beginSnapshot() (consistent as of the last applied batch)
//        ─► piece → checksum → write … ─► ('normal': sync the log) ─► fdatasync, rename, fsync dir
//        ─► publish (the newest snapshot), delete all but the newest `keep` files

import type { Clock } from '../clock.ts';
import { TidelogError } from '../errors.ts';
import { deleteGradually, type FileIo } from './file-io.ts';
import type { FsyncMode } from './segment-writer.ts';
import { SNAPSHOT_CHUNK_BYTES, SnapshotFileWriter, type SnapshotMeta } from './snapshot-file.ts';
import type { SnapshotStream } from './state-machine.ts';
import type { SnapshotRecord } from './wal-open.ts';

export interface SnapshotPolicy {
  /** A snapshot once the log since the last one passes logRatio × its size (0: never by ratio). */
  logRatio: number;
  /** …and at least this many bytes of log. */
  minLogBytes: number;
  /** Snapshot files kept (the newest, and older ones to fall back to). */
  keep: number;
  /** Cap on the rate a snapshot is written at (0: none); see WalOptions.snapshotMaxBytesPerSecond. */
  maxBytesPerSecond: number;
}

export interface SnapshotterHost {
  io: FileIo;
  dir: string;
  shard: number;
  fsync: FsyncMode;
  clock: Clock;
  /** Makes the log durable through everything written so far (fsync 'normal' acks unsynced writes). */
  syncLog(): Promise<void>;
  /** A new snapshot is durable and newest: older segments may be released by retention (awaited; must not reject). */
  onPublished(record: SnapshotRecord): Promise<void>;
}

export interface SnapshotterStats {
  files: SnapshotRecord[];
  /** Log bytes written after the newest snapshot began. */
  logBytesSince: number;
  isRunning: boolean;
  /** Bytes written so far by the running snapshot (0 when none runs). */
  runningBytes: number;
  taken: number;
  failed: number;
  lastError: string | null;
  lastDurationMs: number;
  /** Longest time one piece (produce + checksum) held the event loop, in the last snapshot. */
  lastLongestSliceMs: number;
}

const FIRST_BACKOFF_MS = 5_000;
const MAX_BACKOFF_MS = 300_000;

export class Snapshotter {
  private readonly files: SnapshotRecord[];
  private logBytesSince: number;
  private running: { stream: SnapshotStream; writer: SnapshotFileWriter | null; done: Promise<void>; isCancelled: boolean } | null = null;
  private retryAtMs = 0;
  private backoffMs = FIRST_BACKOFF_MS;
  private taken = 0;
  private failed = 0;
  private lastError: string | null = null;
  private lastDurationMs = 0;
  private lastLongestSliceMs = 0;
  /** Log bytes made durable while the last published snapshot was written. */
  private lastLogBytesDuring = 0;
  private isClosed = false;

  constructor(
    private readonly host: SnapshotterHost,
    private readonly policy: SnapshotPolicy,
    files: readonly SnapshotRecord[],
    logBytesSince: number,
  ) {
    this.files = [...files];
    this.logBytesSince = logBytesSince;
  }

  /** Snapshot files kept, oldest first. */
  get snapshots(): readonly SnapshotRecord[] {
    return this.files;
  }

  /** The seq of the oldest snapshot kept (0 when none): segments wholly at or below it may go. */
  get oldestKeptSeq(): number {
    return this.files[0]?.seq ?? 0;
  }

  get newestSeq(): number {
    return this.files[this.files.length - 1]?.seq ?? 0;
  }

  get isRunning(): boolean {
    return this.running !== null;
  }

  /** Counts log bytes made durable (after the newest snapshot's point). */
  recordLog(bytes: number): void {
    this.logBytesSince += bytes;
  }

  /** Whether the policy asks for a snapshot now (and none is running or backing off). */
  shouldStart(): boolean {
    if (this.running !== null || this.isClosed) return false;
    if (this.retryAtMs > 0 && this.host.clock.nowMs() < this.retryAtMs) return false;
    return this.policy.logRatio > 0 && this.logBytesSince >= this.threshold();
  }

  /**
   * Log bytes after which the next snapshot starts. A restart replays the log from where the
   * newest *published* snapshot began: what the policy waited for plus what was written while
   * the next one was being written. So the wait is ratio × size less what the last snapshot saw
   * written during it, to keep replay near ratio × size; never under half of ratio × size, so
   * snapshot writes stay ≤ 2 / ratio of the log's bytes whatever the write takes.
   */
  private threshold(): number {
    const newest = this.files[this.files.length - 1]?.bytes ?? 0;
    const target = this.policy.logRatio * newest;
    return Math.max(this.policy.minLogBytes, target - Math.min(this.lastLogBytesDuring, target / 2));
  }

  /**
   * Starts writing `stream` (the state as of `meta.seq`) to a snapshot file. Resolves when it
   * is published or abandoned; never rejects (failures are counted and retried later).
   */
  start(stream: SnapshotStream, meta: SnapshotMeta): Promise<void> {
    if (this.running !== null) throw new Error('invariant violated: a snapshot is already running');
    const bytesBefore = this.logBytesSince;
    this.logBytesSince = 0;
    const running = { stream, writer: null as SnapshotFileWriter | null, done: Promise.resolve(), isCancelled: false };
    running.done = this.pump(running, meta).then(
      () => {
        this.lastLogBytesDuring = this.logBytesSince;
        this.backoffMs = FIRST_BACKOFF_MS;
        this.retryAtMs = 0;
      },
      (error: unknown) => {
        // Abandoned: the log since the previous snapshot still counts toward the next one.
        this.logBytesSince += bytesBefore;
        this.failed++;
        this.lastError = error instanceof Error ? error.message : String(error);
        this.retryAtMs = this.host.clock.nowMs() + this.backoffMs;
        this.backoffMs = Math.min(MAX_BACKOFF_MS, this.backoffMs * 2);
      },
    );
    this.running = running;
    void running.done.finally(() => {
      if (this.running === running) this.running = null;
    });
    return running.done;
  }

  /** Waits for the running snapshot, if any, to be published or abandoned. */
  async settled(): Promise<void> {
    await this.running?.done;
  }

  /** Stops a running snapshot (its file is removed) and takes no more. */
  async close(): Promise<void> {
    this.isClosed = true;
    const running = this.running;
    if (running === null) return;
    running.isCancelled = true;
    await running.done;
  }

  stats(): SnapshotterStats {
    return {
      files: this.files.map((file) => ({ ...file })),
      logBytesSince: this.logBytesSince,
      isRunning: this.running !== null,
      runningBytes: this.running?.writer?.bytes ?? 0,
      taken: this.taken,
      failed: this.failed,
      lastError: this.lastError,
      lastDurationMs: this.lastDurationMs,
      lastLongestSliceMs: this.lastLongestSliceMs,
    };
  }

  private async pump(running: { stream: SnapshotStream; writer: SnapshotFileWriter | null; isCancelled: boolean }, meta: SnapshotMeta): Promise<void> {
    const { io, dir } = this.host;
    const startMs = performance.now();
    const rate = this.policy.maxBytesPerSecond;
    let bytesWritten = 0;
    let longestSliceMs = 0;
    try {
      running.writer = await SnapshotFileWriter.create(io, dir, meta, { isSynced: this.host.fsync !== 'off' });
      for (;;) {
        if (running.isCancelled) throw new TidelogError('CLOSED', 'the WAL closed while a snapshot was written');
        const sliceStartMs = performance.now();
        const piece = running.stream.next(SNAPSHOT_CHUNK_BYTES);
        if (piece === null) break;
        // The checksum runs synchronously inside write() before its first await.
        const written = running.writer.write(piece);
        longestSliceMs = Math.max(longestSliceMs, performance.now() - sliceStartMs);
        await written;
        bytesWritten += piece.byteLength;
        // Paced: a snapshot written flat out takes the disk and the event loop from the acks.
        const aheadMs = rate === 0 ? 0 : (bytesWritten / rate) * 1000 - (performance.now() - startMs);
        if (aheadMs >= 1) await new Promise((resolve) => setTimeout(resolve, aheadMs));
      }
      // The snapshot must never be ahead of the durable log ('normal' acknowledges unsynced writes).
      if (this.host.fsync === 'normal') await this.host.syncLog();
      if (running.isCancelled) throw new TidelogError('CLOSED', 'the WAL closed while a snapshot was written');
      const bytes = await running.writer.finish();
      const record: SnapshotRecord = { fileName: running.writer.fileName, seq: meta.seq, bytes };
      this.files.push(record);
      this.taken++;
      this.lastDurationMs = performance.now() - startMs;
      this.lastLongestSliceMs = longestSliceMs;
      try {
        await this.pruneFiles();
      } catch (error) {
        // The new snapshot is durable; an old file that would not go is removed next time.
        this.lastError = error instanceof Error ? error.message : String(error);
      }
      await this.host.onPublished(record);
    } catch (error) {
      running.stream.cancel();
      await running.writer?.abort();
      throw error;
    }
  }

  /** Deletes all but the newest `keep` snapshot files (oldest first; each leaves the list once gone). */
  private async pruneFiles(): Promise<void> {
    let removed = false;
    while (this.files.length > this.policy.keep) {
      const oldest = this.files[0];
      await deleteGradually(this.host.io, this.host.dir, oldest.fileName);
      this.files.shift();
      removed = true;
    }
    if (removed && this.host.fsync !== 'off') await this.host.io.syncDir(this.host.dir);
  }
}
