// The file side of a lane: owns the open segment's descriptor and is used only by the
// flush-worker actor, one operation at a time, so no write ever races another write, a
// rotation or a removal. Every failure of write or fsync is reported as WRITE_FAILED or
// FSYNC_FAILED and the lane stops: after a failed fsync the kernel may have dropped the dirty
// pages, so retrying would report data durable that is not (PostgreSQL's "fsyncgate").

import { join } from 'node:path';
import { TidelogError } from '../errors.ts';
import { deleteGradually, writeFully, type FileIo, type WalFile } from './file-io.ts';
import { FlushMetrics, recordUs } from './flush-metrics.ts';
import { segmentFileName } from './segment-name.ts';

export type FsyncMode = 'full' | 'normal' | 'off';

/** Flushes up to this size are written synchronously (see append). */
export const SYNC_WRITE_MAX_BYTES = 1 << 20;

export interface OpenSegment {
  fileName: string;
  firstSeq: number;
}

export class SegmentWriter {
  private file: WalFile | null = null;
  private segment: OpenSegment | null = null;
  readonly metrics = new FlushMetrics();

  constructor(
    private readonly io: FileIo,
    private readonly dir: string,
    private readonly shard: number,
    readonly fsyncMode: FsyncMode,
    private readonly nowNs: () => bigint,
  ) {}

  get openSegment(): OpenSegment | null {
    return this.segment;
  }

  /**
   * Continues an existing segment whose intact bytes end at `validBytes`. Recovery may have
   * read batches that sat only in the page cache (their writer died between write and
   * fdatasync); they are synced here, before anything is built on them, or a power loss
   * right after the restart would take them — and let their seqs be handed out again.
   */
  async resume(segment: OpenSegment, validBytes: number): Promise<void> {
    const file = await this.wrap('IO_ERROR', () => this.io.open(join(this.dir, segment.fileName), 'readwrite'), segment.fileName);
    this.file = file;
    this.segment = segment;
    this.metrics.writtenOffset = validBytes;
    this.metrics.syncedOffset = 0;
    if (this.fsyncMode !== 'off') {
      await this.sync();
      await this.wrap('FSYNC_FAILED', () => this.io.syncDir(this.dir));
    } else {
      this.metrics.syncedOffset = validBytes;
    }
  }

  /** fdatasync of closed segments found on open (an earlier 'off' session synced none). */
  async syncClosed(fileNames: readonly string[]): Promise<void> {
    if (this.fsyncMode === 'off') return;
    for (const fileName of fileNames) {
      const file = await this.wrap('IO_ERROR', () => this.io.open(join(this.dir, fileName), 'read'), fileName);
      try {
        await this.wrap('FSYNC_FAILED', () => file.datasync(), fileName);
      } finally {
        await file.close().catch(() => undefined);
      }
    }
  }

  /**
   * Starts a new segment at `firstSeq` whose head is `headRecord` (a marker). The old segment is
   * synced first (unless fsync is off), and the new one appears under its final name only
   * once its head record is durable, so a segment file never has a torn head.
   */
  async rotate(firstSeq: number, headRecord: Uint8Array): Promise<void> {
    if (this.file !== null && this.fsyncMode !== 'off') await this.sync();
    const fileName = segmentFileName(this.shard, firstSeq);
    const tmpPath = join(this.dir, `${fileName}.tmp`);
    const finalPath = join(this.dir, fileName);
    const file = await this.wrap('IO_ERROR', () => this.io.open(tmpPath, 'create'));
    try {
      await this.wrap('WRITE_FAILED', () => writeFully(file, headRecord, 0));
      if (this.fsyncMode !== 'off') await this.wrap('FSYNC_FAILED', () => file.sync());
      await this.wrap('IO_ERROR', () => this.io.rename(tmpPath, finalPath));
      if (this.fsyncMode !== 'off') await this.wrap('FSYNC_FAILED', () => this.io.syncDir(this.dir));
    } catch (error) {
      await file.close().catch(() => undefined);
      throw error;
    }
    const previous = this.file;
    this.file = file;
    this.segment = { fileName, firstSeq };
    this.metrics.writtenOffset = headRecord.byteLength;
    this.metrics.syncedOffset = this.fsyncMode === 'off' ? 0 : headRecord.byteLength;
    this.metrics.rotations++;
    if (previous !== null) await previous.close().catch(() => undefined);
  }

  /**
   * One write of a sealed batch (or several back to back), then one fdatasync if asked. Up
   * to SYNC_WRITE_MAX_BYTES the write is synchronous (a copy into the page cache, tens of µs)
   * and the fdatasync is submitted in the same turn: otherwise the callers this flush's
   * predecessor just answered would run their appends between write and fdatasync, and the
   * disk would wait for the CPU instead of working beside it (measured: ~30 % more events/s
   * with 16 callers).
   */
  async append(bytes: Uint8Array, shouldSync: boolean): Promise<void> {
    const file = this.requireFile();
    const writeSync = file.writeSync;
    if (writeSync !== undefined && bytes.byteLength <= SYNC_WRITE_MAX_BYTES) {
      this.writeNow(writeSync, bytes);
      if (shouldSync) await this.sync();
      return;
    }
    await this.wrap('WRITE_FAILED', () => writeFully(file, bytes, this.metrics.writtenOffset));
    this.metrics.writtenOffset += bytes.byteLength;
    this.metrics.bytes += bytes.byteLength;
    if (shouldSync) await this.sync();
  }

  /** A flush is about to be written: its first batch was sealed at sealedAtNs (queue-wait metric). */
  noteQueueWait(sealedAtNs: bigint): void {
    recordUs(this.metrics.queueWait, sealedAtNs, this.nowNs());
  }

  /** A flush of `batches` batches and `events` events was written. */
  noteWritten(batches: number, events: number): void {
    this.metrics.batches += batches;
    this.metrics.events += events;
  }

  /** writeFully, synchronously; a failure is WRITE_FAILED as in the async path. */
  private writeNow(writeSync: (bytes: Uint8Array, position: number) => number, bytes: Uint8Array): void {
    let done = 0;
    let stalls = 0;
    try {
      while (done < bytes.byteLength) {
        const written = writeSync(done === 0 ? bytes : bytes.subarray(done), this.metrics.writtenOffset + done);
        if (written <= 0) {
          if (++stalls > 1) throw Object.assign(new Error(`write made no progress at ${this.metrics.writtenOffset + done}`), { code: 'EIO' });
          continue;
        }
        stalls = 0;
        done += written;
      }
    } catch (cause) {
      throw this.failure('WRITE_FAILED', cause);
    }
    this.metrics.writtenOffset += bytes.byteLength;
    this.metrics.bytes += bytes.byteLength;
  }

  async sync(): Promise<void> {
    const file = this.requireFile();
    const target = this.metrics.writtenOffset;
    if (target === this.metrics.syncedOffset) return;
    const startNs = this.nowNs();
    await this.wrap('FSYNC_FAILED', () => file.datasync());
    const endNs = this.nowNs();
    recordUs(this.metrics.fsyncLatency, startNs, endNs);
    this.metrics.fsyncTotalUs += Number(endNs - startNs) / 1000;
    this.metrics.fsyncs++;
    this.metrics.syncedOffset = target;
  }

  /**
   * Deletes segments oldest first, reporting each as it goes so a failure halfway leaves
   * the caller's list true. A file already gone counts as removed: a retry after a partial
   * failure must be able to finish.
   */
  async remove(fileNames: readonly string[], onRemoved: (fileName: string) => void = () => undefined): Promise<void> {
    for (const fileName of fileNames) {
      if (fileName === this.segment?.fileName) {
        throw new Error(`invariant violated: asked to remove the open segment ${fileName}`);
      }
      await this.wrap('IO_ERROR', () => deleteGradually(this.io, this.dir, fileName), fileName);
      onRemoved(fileName);
    }
    if (fileNames.length > 0 && this.fsyncMode !== 'off') await this.wrap('IO_ERROR', () => this.io.syncDir(this.dir));
  }

  /**
   * Truncation of an uncommitted suffix: removes the `later` segments (newest first, so a crash
   * midway leaves a log whose segments still follow each other), then cuts `segment` to
   * `length` bytes, syncs it, and continues writing there. `segment` is the open segment or
   * an earlier one.
   */
  async cutBack(segment: OpenSegment, length: number, later: readonly string[]): Promise<void> {
    if (this.file !== null && later.includes(this.segment?.fileName ?? '')) {
      const open = this.file;
      this.file = null;
      this.segment = null;
      await open.close().catch(() => undefined);
    }
    for (const fileName of [...later].reverse()) {
      await this.wrap('IO_ERROR', () => deleteGradually(this.io, this.dir, fileName), fileName);
      // One directory sync per removal: the file system keeps no order between unsynced unlinks.
      if (this.fsyncMode !== 'off') await this.wrap('FSYNC_FAILED', () => this.io.syncDir(this.dir));
    }
    if (this.segment?.fileName !== segment.fileName) {
      const previous = this.file;
      this.file = await this.wrap('IO_ERROR', () => this.io.open(join(this.dir, segment.fileName), 'readwrite'), segment.fileName);
      this.segment = segment;
      if (previous !== null) await previous.close().catch(() => undefined);
    }
    const file = this.requireFile();
    await this.wrap('WRITE_FAILED', () => file.truncate(length), segment.fileName);
    if (this.fsyncMode !== 'off') await this.wrap('FSYNC_FAILED', () => file.datasync(), segment.fileName);
    this.metrics.writtenOffset = length;
    this.metrics.syncedOffset = length;
  }

  async close(): Promise<void> {
    const file = this.file;
    if (file === null) return;
    try {
      if (this.fsyncMode !== 'off') await this.sync();
    } finally {
      this.file = null;
      await file.close().catch(() => undefined);
    }
  }

  /** Closes without syncing; used once the lane has failed. */
  async abandon(): Promise<void> {
    const file = this.file;
    this.file = null;
    if (file !== null) await file.close().catch(() => undefined);
  }

  private requireFile(): WalFile {
    if (this.file === null) throw new Error('invariant violated: no open segment');
    return this.file;
  }

  private async wrap<T>(
    code: 'WRITE_FAILED' | 'FSYNC_FAILED' | 'IO_ERROR',
    run: () => Promise<T>,
    fileName: string | undefined = this.segment?.fileName,
  ): Promise<T> {
    try {
      return await run();
    } catch (cause) {
      throw this.failure(code, cause, fileName);
    }
  }

  /** A file-system error as the TidelogError of `code`, errno and file in its details. */
  private failure(code: 'WRITE_FAILED' | 'FSYNC_FAILED' | 'IO_ERROR', cause: unknown, fileName: string | undefined = this.segment?.fileName): Error {
    if (cause instanceof TidelogError) return cause;
    const errno = (cause as NodeJS.ErrnoException | undefined)?.code ?? 'unknown';
    return new TidelogError(code, `${fileName ?? this.dir}: ${errno}`, {
      cause,
      details: { errno, file: fileName === undefined ? this.dir : join(this.dir, fileName), shard: this.shard },
    });
  }
}
