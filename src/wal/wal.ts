// The WAL of one shard (a lane): the public face of the storage engine.
//
//   append/appendMany ─► CommitQueue (dedup, seqs, packed groups) ─► writer actor (when)
//                                                                  ─► flush-worker actor (write + fdatasync)
//   open: lock ─► checkpoint file ─► recovery scan (verify, cut torn tail) ─► dedup rebuild ─► replay
//
// Durability contract (fsync 'full', the default): a promise from append/appendMany
// resolves only after the batch holding its events was written and fdatasync'ed; seqs start
// at 1, are gapless and monotonic and continue across close/reopen and crashes. 'normal'
// acknowledges after the write and fdatasyncs at least every syncIntervalMs (a process crash
// loses nothing acknowledged, a power loss may lose the last interval). 'off' never syncs.
//
// Notes: appendMany(events, { note }) makes an opaque note durable in the same batch (same
// checksum) as all of the call's events, so recovery sees the note and the events or neither;
// notes reach the state machine (live and on replay), onPersisted and readBatches.

import { dirname, join, resolve } from 'node:path';
import { createActor } from 'xstate';
import { systemClock, type Clock } from '../clock.ts';
import { deferred } from '../deferred.ts';
import { TidelogError, isTidelogError } from '../errors.ts';
import { writerMachine, type WriterActor, type WriterLane } from '../actors/writer.ts';
import type { FlushRequest } from '../actors/flush-worker.ts';
import { BATCH_HEADER_BYTES, NO_NOTES } from './batch-format.ts';
import { readCheckpointFile, encodeCheckpointRecord, writeCheckpointFile } from './checkpoint-file.ts';
import { initChecksum } from './checksum.ts';
import { CommitQueue, type NoteCallback } from './commit-queue.ts';
import { DedupWindow } from './dedup.ts';
import { EVENT_BYTES, decodeEventAt, encodeEvents, validatePacked, type SignalEvent } from '../event.ts';
import { nodeFileIo, type FileIo } from './file-io.ts';
import { recordUs, type FlushMetricsSnapshot } from './flush-metrics.ts';
import { DirectoryLock } from './lock.ts';
import { firstSeqAtTimeIn, readBatches, type SegmentInfo, type StoredBatch } from './reader.ts';
import { recoverShard, setAsideFile, type RecoveryReport } from './recovery.ts';
import { checkShardId, checkpointFileName, segmentFileName } from './segment-name.ts';
import { SegmentWriter, type FsyncMode } from './segment-writer.ts';

/** A state machine the WAL keeps in step with the log (chunked-wal's model). */
export interface WalStateMachine {
  /** Replace the state with `snapshot`, taken after seq `lastSeq` (empty bytes: initial state). */
  restore(snapshot: Uint8Array, lastSeq: number): void;
  /**
   * Fold one durable batch; `events` is count × 21 packed bytes and `notes` its notes, both
   * valid during the call only. count may be 0 for a batch that carries only notes.
   */
  apply(batch: StoredBatch): void;
  /** The current state as bytes; called at a batch boundary when a segment is opened. */
  snapshot(): Uint8Array;
}

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
}

export interface AppendOptions {
  /**
   * Called synchronously once the call's seqs are assigned (0 for duplicates); the
   * 1..MAX_NOTE_BYTES bytes it returns become durable in the one batch that holds all of the
   * call's events (a call with a note is never split), atomically with them. It must not call back into the WAL. If it throws or returns anything else the
   * lane fails (those seqs could not be written with their note) and appendMany throws.
   */
  note?: NoteCallback;
}

export interface WalOptions {
  dir: string;
  shard?: number;
  segmentBytes?: number;
  batchMaxEvents?: number;
  batchLingerMs?: number;
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
  onPersisted?: (info: PersistedInfo) => void;
  /** Progress of the recovery scan on open: segments verified so far of `total`. */
  onRecoveryProgress?: (done: number, total: number) => void;
  io?: FileIo;
  clock?: Clock;
}

type ResolvedOptions = Required<Omit<WalOptions, 'stateMachine' | 'onPersisted' | 'onRecoveryProgress'>> &
  Pick<WalOptions, 'stateMachine' | 'onPersisted' | 'onRecoveryProgress'>;

export interface WalRecovery extends RecoveryReport {
  checkpointSeq: number;
  /** Events put back into the dedup window from the log's tail. */
  dedupRebuilt: number;
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
  segments: Array<Omit<SegmentInfo, 'snapshot'> & { isOpen: boolean; snapshotBytes: number }>;
  dedupEvents: number;
  flush: FlushMetricsSnapshot;
}

const EMPTY = new Uint8Array(0);
/** Upper bound on one flush's write, so one fdatasync never carries an unbounded backlog. */
const MAX_FLUSH_BYTES = 8 << 20;
const MAX_U64 = (1n << 64n) - 1n;

/** A retained segment plus what seqAtTime needs to skip it without reading it. */
interface RetainedSegment extends SegmentInfo {
  /** Newest timestampNs among its batches holding events; -1n when it holds none. */
  newestBatchNs: bigint;
}

function concatBytes(parts: readonly Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.byteLength;
  }
  return out;
}

function resolveOptions(options: WalOptions): ResolvedOptions {
  const resolved: ResolvedOptions = {
    dir: options.dir,
    shard: options.shard ?? 0,
    segmentBytes: options.segmentBytes ?? 16 << 20,
    batchMaxEvents: options.batchMaxEvents ?? 1000,
    batchLingerMs: options.batchLingerMs ?? 1,
    dedupWindowMs: options.dedupWindowMs ?? 60_000,
    dedupMaxEvents: options.dedupMaxEvents ?? 1 << 20,
    fsync: options.fsync ?? 'full',
    syncIntervalMs: options.syncIntervalMs ?? 100,
    maxPendingEvents: options.maxPendingEvents ?? 1_000_000,
    salvage: options.salvage ?? false,
    replay: options.replay ?? true,
    leaderEpoch: options.leaderEpoch ?? 0,
    stateMachine: options.stateMachine,
    onPersisted: options.onPersisted,
    onRecoveryProgress: options.onRecoveryProgress,
    io: options.io ?? nodeFileIo,
    clock: options.clock ?? systemClock,
  };
  const bad = (what: string): never => {
    throw new TidelogError('BAD_REQUEST', `Wal.open: ${what}`);
  };
  if (typeof resolved.dir !== 'string' || resolved.dir === '') bad('dir is required');
  checkShardId(resolved.shard);
  const positiveInteger = (name: keyof ResolvedOptions, max: number): void => {
    const value = resolved[name];
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > max) {
      bad(`${name} must be an integer 1..${max}, got ${String(value)}`);
    }
  };
  positiveInteger('segmentBytes', 1 << 30);
  positiveInteger('batchMaxEvents', 1 << 20);
  positiveInteger('dedupMaxEvents', 1 << 26);
  positiveInteger('syncIntervalMs', 3_600_000);
  positiveInteger('maxPendingEvents', 1 << 28);
  if (!Number.isFinite(resolved.batchLingerMs) || resolved.batchLingerMs < 0) bad('batchLingerMs must be >= 0');
  if (!Number.isFinite(resolved.dedupWindowMs) || resolved.dedupWindowMs < 0) bad('dedupWindowMs must be >= 0');
  if (!['full', 'normal', 'off'].includes(resolved.fsync)) bad(`fsync must be 'full', 'normal' or 'off'`);
  if (!Number.isSafeInteger(resolved.leaderEpoch) || resolved.leaderEpoch < 0) bad('leaderEpoch must be a u53');
  return resolved;
}

export class Wal implements WriterLane {
  readonly queue: CommitQueue;
  readonly files: SegmentWriter;
  readonly batchLingerMs: number;
  readonly nowNs: () => bigint;
  private readonly writer: WriterActor;
  private readonly segmentList: RetainedSegment[];
  private lastDurableSeq: number;
  private checkpointSeq: number;
  private failure: Error | null = null;
  private readonly closed: Promise<void>;
  private markClosed: () => void = () => undefined;
  private closing: Promise<void> | null = null;
  private syncTimer: NodeJS.Timeout | null = null;

  private constructor(
    private readonly options: ResolvedOptions,
    private readonly lock: DirectoryLock,
    recovered: { segments: RetainedSegment[]; lastSeq: number; checkpointSeq: number },
    dedup: DedupWindow,
    files: SegmentWriter,
  ) {
    this.batchLingerMs = options.batchLingerMs;
    this.nowNs = () => options.clock.nowNs();
    this.segmentList = recovered.segments;
    this.lastDurableSeq = recovered.lastSeq;
    this.checkpointSeq = recovered.checkpointSeq;
    this.files = files;
    this.queue = new CommitQueue(
      {
        shard: options.shard,
        batchMaxEvents: options.batchMaxEvents,
        maxPendingEvents: options.maxPendingEvents,
        leaderEpoch: options.leaderEpoch,
      },
      dedup,
      recovered.lastSeq + 1,
      options.clock,
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
  }

  static async open(options: WalOptions): Promise<WalOpenResult> {
    const resolved = resolveOptions(options);
    const { io, dir, shard, clock, stateMachine } = resolved;
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
      await removeLeftovers(io, dir, shard);
      let checkpoint = null;
      const setAside: string[] = [];
      try {
        checkpoint = await readCheckpointFile(io, dir, shard);
      } catch (error) {
        if (!resolved.salvage) throw error;
        // Salvage: the damaged checkpoint goes aside, so the next ordinary open is clean.
        setAside.push(await setAsideFile(io, dir, checkpointFileName(shard)));
      }
      const checkpointSeq = checkpoint?.seq ?? 0;
      const dedup = new DedupWindow(
        { windowMs: resolved.dedupWindowMs, maxEventsPerGeneration: resolved.dedupMaxEvents },
        clock.nowMs(),
      );
      const dedupCutoffNs = clock.nowNs() - BigInt(Math.round(resolved.dedupWindowMs * 2)) * 1_000_000n;
      const replayed: SignalEvent[] = [];
      // Only the newest events can still be in the window: at most two generations' worth.
      const tail = new RecentBatches(2 * resolved.dedupMaxEvents);
      let hasRestored = false;
      const nowMs = clock.nowMs();
      const newestBatchNs = new Map<string, bigint>();
      const { report, segments } = await recoverShard({
        io,
        dir,
        shard,
        salvage: resolved.salvage,
        repair: true,
        onProgress: resolved.onRecoveryProgress,
        onSegment: (segment) => {
          if (stateMachine && !hasRestored) {
            stateMachine.restore(segment.snapshot, segment.firstSeq - 1);
            hasRestored = true;
          }
        },
        onBatch: (bytes, batch, segment) => {
          const { header, offset } = batch;
          const payloadStart = offset + BATCH_HEADER_BYTES;
          if (header.count > 0) {
            if (dedup.isEnabled && header.timestampNs >= dedupCutoffNs) tail.push(bytes, payloadStart, header.count);
            const newest = newestBatchNs.get(segment.fileName) ?? -1n;
            if (header.timestampNs > newest) newestBatchNs.set(segment.fileName, header.timestampNs);
          }
          if (stateMachine) {
            stateMachine.apply({
              firstSeq: header.firstSeq,
              count: header.count,
              events: bytes.subarray(payloadStart, payloadStart + header.count * EVENT_BYTES),
              timestampNs: header.timestampNs,
              leaderEpoch: header.leaderEpoch,
              notes: batch.notes,
            });
          } else if (resolved.replay && header.firstSeq + header.count - 1 > checkpointSeq) {
            const skip = Math.max(0, checkpointSeq - header.firstSeq + 1);
            const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
            for (let index = skip; index < header.count; index++) {
              replayed.push(decodeEventAt(view, payloadStart + index * EVENT_BYTES));
            }
          }
        },
      });
      const dedupRebuilt = tail.replayInto(dedup, nowMs);
      let infos: RetainedSegment[] = segments.map((segment) => ({
        ...segment,
        newestBatchNs: newestBatchNs.get(segment.fileName) ?? -1n,
      }));
      const checkpointPath = join(dir, checkpointFileName(shard));
      if (checkpointSeq > report.lastSeq && segments.length > 0) {
        if (!resolved.salvage) {
          throw new TidelogError('CHECKPOINT_DAMAGED', `${checkpointPath}: checkpoint at seq ${checkpointSeq} is beyond the log's end ${report.lastSeq}`, {
            details: { file: checkpointPath, offset: 0 },
          });
        }
        // Salvage: the consumer has everything up to the checkpoint; set the shorter log aside
        // and continue after the checkpoint, so no seq at or below it is handed out again.
        for (const segment of infos) setAside.push(await setAsideFile(io, dir, segment.fileName));
        await io.syncDir(dir);
        infos = [];
        replayed.length = 0;
      }
      const firstRetained = infos[0]?.firstSeq;
      if (!stateMachine && firstRetained !== undefined && firstRetained > checkpointSeq + 1 && !resolved.salvage) {
        throw new TidelogError(
          'SEGMENT_GAP',
          `${join(dir, infos[0].fileName)}: the log starts at seq ${firstRetained} but the checkpoint is at ${checkpointSeq}; events ${checkpointSeq + 1}..${firstRetained - 1} are missing`,
          { details: { file: join(dir, infos[0].fileName), offset: 0, checkpointSeq } },
        );
      }
      files = new SegmentWriter(io, dir, shard, resolved.fsync, () => clock.nowNs());
      let lastSeq = report.lastSeq;
      const last = infos[infos.length - 1];
      if (last === undefined) {
        // A fresh shard (or one whose segments were all set aside): start at the next seq.
        lastSeq = Math.max(lastSeq, checkpointSeq);
        const firstSeq = lastSeq + 1;
        const snapshot = stateMachine?.snapshot() ?? EMPTY;
        const record = encodeCheckpointRecord(shard, firstSeq, clock.nowNs(), snapshot);
        await files.rotate(firstSeq, record);
        infos.push({ fileName: segmentFileName(shard, firstSeq), firstSeq, lastSeq, bytes: record.byteLength, snapshot, newestBatchNs: -1n });
      } else {
        await files.syncClosed(infos.slice(0, -1).map((segment) => segment.fileName));
        await files.resume({ fileName: last.fileName, firstSeq: last.firstSeq }, last.bytes);
      }
      const wal = new Wal(resolved, lock, { segments: infos, lastSeq, checkpointSeq }, dedup, files);
      const recovery = { ...report, quarantined: [...report.quarantined, ...setAside], checkpointSeq, dedupRebuilt };
      return { wal, replayed, recovery };
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
    try {
      if (events instanceof Uint8Array) {
        packed = events;
        count = validatePacked(events);
      } else {
        if (!Array.isArray(events)) throw new TidelogError('BAD_REQUEST', 'appendMany takes SignalEvent[] or Uint8Array');
        packed = encodeEvents(events);
        count = events.length;
      }
      if (options !== undefined) note = checkAppendOptions(options, count);
    } catch (error) {
      return Promise.reject(error);
    }
    // Outside the try: a broken note callback is a programming error; it throws (and the lane fails).
    return this.queue.enqueue(packed, count, note);
  }

  /** Records that everything up to `seq` is materialised; replay resumes strictly after it. */
  async checkpoint(seq: number, snapshot: Uint8Array = EMPTY): Promise<void> {
    if (!Number.isSafeInteger(seq) || seq < 0 || seq > this.durableSeq) {
      throw new TidelogError('OUT_OF_RANGE', `checkpoint(${seq}): seq must be 0..${this.durableSeq} (durable)`);
    }
    if (!(snapshot instanceof Uint8Array)) throw new TidelogError('BAD_REQUEST', 'checkpoint snapshot must be a Uint8Array');
    const copy = snapshot.slice(); // the caller may reuse its buffer before the task runs
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
   * Deletes whole closed segments whose events all precede `seq`; returns their names.
   * Without a state machine the events after the checkpoint are only in the log, so `seq`
   * may not pass checkpoint + 1 (OUT_OF_RANGE).
   */
  async truncateBefore(seq: number): Promise<string[]> {
    if (!Number.isSafeInteger(seq) || seq < 0) throw new TidelogError('BAD_REQUEST', `truncateBefore(${seq})`);
    if (!this.options.stateMachine && seq > this.checkpointSeq + 1) {
      throw new TidelogError('OUT_OF_RANGE', `truncateBefore(${seq}) would drop events after the checkpoint at ${this.checkpointSeq}`, {
        details: { seq, checkpointSeq: this.checkpointSeq },
      });
    }
    const removed = await this.drainClosedSegmentsWhile((segment) => segment.lastSeq < seq);
    return removed.map((segment) => segment.fileName);
  }

  /** Removes closed segments from the oldest on while `shouldDrain` says so (chunked-wal). */
  async drainClosedSegmentsWhile(shouldDrain: (segment: SegmentInfo) => boolean): Promise<SegmentInfo[]> {
    const drained: SegmentInfo[] = [];
    for (let index = 0; index < this.segmentList.length - 1 && shouldDrain(this.segmentList[index]); index++) {
      drained.push(this.segmentList[index]);
    }
    if (drained.length === 0) return [];
    // Each file leaves the list the moment it is deleted, so a failure halfway keeps it true.
    await this.runTask((files) =>
      files.remove(
        drained.map((segment) => segment.fileName),
        (fileName) => {
          if (this.segmentList[0]?.fileName === fileName) this.segmentList.shift();
        },
      ),
    );
    return drained;
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
   * Notes-only batches come when fromSeq ≤ their firstSeq ≤ toSeq + 1 (see reader.ts).
   */
  readBatches(options: { fromSeq?: number; toSeq?: number } = {}): AsyncGenerator<StoredBatch> {
    const fromSeq = options.fromSeq ?? 1;
    const toSeq = Math.min(options.toSeq ?? Number.MAX_SAFE_INTEGER, this.lastDurableSeq);
    const oldest = this.segmentList[0]?.firstSeq ?? 1;
    if (!Number.isSafeInteger(fromSeq) || fromSeq < 1) throw new TidelogError('BAD_REQUEST', `fromSeq must be >= 1`);
    if (fromSeq < oldest && fromSeq <= toSeq) {
      throw new TidelogError('OUT_OF_RANGE', `seq ${fromSeq} was truncated; the log starts at ${oldest}`, {
        details: { fromSeq, oldestSeq: oldest },
      });
    }
    const snapshot = this.segmentList.map((segment) => ({ ...segment }));
    return readBatches(this.options.io, this.options.dir, snapshot, fromSeq, toSeq);
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
    for (const segment of segments) {
      // Correct without monotone clocks: only segments with no batch as new as `timestampNs` go.
      if (segment.newestBatchNs < timestampNs) continue;
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

  /** The retained segments, oldest first, with their head snapshots (copies). */
  segments(): SegmentInfo[] {
    return this.segmentList.map(({ newestBatchNs: _, ...segment }) => segment);
  }

  stats(): WalStats {
    const last = this.segmentList.length - 1;
    return {
      shard: this.options.shard,
      state: String(this.writer.getSnapshot().value),
      nextSeq: this.queue.nextSequence,
      durableSeq: this.lastDurableSeq,
      checkpointSeq: this.checkpointSeq,
      pendingEvents: this.queue.pending,
      segments: this.segmentList.map((segment, index) => ({
        fileName: segment.fileName,
        firstSeq: segment.firstSeq,
        lastSeq: segment.lastSeq,
        bytes: segment.bytes,
        isOpen: index === last,
        snapshotBytes: segment.snapshot.byteLength,
      })),
      dedupEvents: this.queue.dedupSize,
      flush: this.files.metrics.snapshot(),
    };
  }

  /**
   * Flushes what is queued, syncs, and releases the directory. Rejects only with news: when
   * the final flush or sync fails here (so nothing is claimed durable that is not); a lane
   * that failed earlier already told every caller, and close() then just releases.
   */
  async close(): Promise<void> {
    this.closing ??= (async () => {
      const hadFailed = this.failure !== null;
      this.queue.beginClose();
      if (this.syncTimer) clearInterval(this.syncTimer);
      this.writer.send({ type: 'CLOSE_REQUESTED' });
      await this.closed;
      this.writer.stop();
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
            const snapshot = this.options.stateMachine?.snapshot() ?? EMPTY;
            const record = encodeCheckpointRecord(this.options.shard, group.firstSeq, this.nowNs(), snapshot);
            rotate = { firstSeq: group.firstSeq, checkpointRecord: record };
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
    const bytes = parts.length === 1 ? parts[0] : concatBytes(parts, total);
    return { groups, bytes, events, rotate, shouldSync: this.options.fsync === 'full' };
  }

  groupDurable(request: FlushRequest): void {
    const { groups, rotate } = request;
    // Bookkeeping first, for every batch of the flush: it is all durable, whatever a hook does.
    if (rotate !== null) {
      this.segmentList.push({
        fileName: segmentFileName(this.options.shard, rotate.firstSeq),
        firstSeq: rotate.firstSeq,
        lastSeq: rotate.firstSeq - 1,
        bytes: rotate.checkpointRecord.byteLength,
        snapshot: rotate.checkpointRecord.subarray(BATCH_HEADER_BYTES),
        newestBatchNs: -1n,
      });
    }
    const open = this.segmentList[this.segmentList.length - 1];
    const nowNs = this.nowNs();
    for (const group of groups) {
      if (group.sealed === null) continue;
      open.lastSeq = group.lastSeq;
      open.bytes += group.sealed.byteLength;
      if (group.count > 0 && group.timestampNs > open.newestBatchNs) open.newestBatchNs = group.timestampNs;
      this.lastDurableSeq = group.lastSeq;
      recordUs(this.files.metrics.commitLatency, group.sealedAtNs, nowNs);
    }
    const { stateMachine, onPersisted, shard, leaderEpoch } = this.options;
    try {
      for (const group of groups) {
        if (group.sealed === null) continue;
        stateMachine?.apply({
          firstSeq: group.firstSeq,
          count: group.count,
          events: group.events,
          timestampNs: group.timestampNs,
          leaderEpoch,
          notes: group.notes ?? NO_NOTES,
        });
        onPersisted?.({
          shard,
          firstSeq: group.firstSeq,
          lastSeq: group.lastSeq,
          events: group.count,
          bytes: group.sealed.byteLength,
          segment: open.fileName,
          notes: group.notes ?? NO_NOTES,
        });
      }
    } catch (cause) {
      // The batches are durable, so their callers are answered; then the lane stops at once
      // (before the writer looks for more work), since the state machine may now be behind.
      this.queue.complete(groups);
      const error = new TidelogError('HOOK_FAILED', `shard ${shard}: a state machine or onPersisted hook threw`, { cause });
      this.laneFailed(error);
      this.writer.send({ type: 'FLUSH_FAILED', error });
      return;
    }
    this.queue.complete(groups);
  }

  laneFailed(error: Error): void {
    this.failure ??= error;
    this.queue.fail(this.failure);
  }

  laneClosed(): void {
    this.markClosed();
  }

  private runTask(run: (files: SegmentWriter) => Promise<void>): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.closing) return Promise.reject(new TidelogError('CLOSED', 'the WAL is closed'));
    const { promise, resolve, reject } = deferred<void>();
    this.writer.send({ type: 'WORKER_OP', op: { type: 'TASK', run, resolve, reject } });
    return promise;
  }
}

/** The newest batches seen during recovery, bounded by event count, for the dedup rebuild. */
class RecentBatches {
  private batches: Array<{ bytes: Uint8Array; offset: number; count: number }> = [];
  /** Index of the oldest kept batch (dropping from the front without an O(n) shift). */
  private head = 0;
  private events = 0;
  constructor(private readonly maxEvents: number) {}

  push(bytes: Uint8Array, offset: number, count: number): void {
    this.batches.push({ bytes, offset, count });
    this.events += count;
    while (this.batches.length - this.head > 1 && this.events - this.batches[this.head].count >= this.maxEvents) {
      this.events -= this.batches[this.head].count;
      this.head++;
    }
    if (this.head > 4096 && this.head * 2 > this.batches.length) {
      this.batches = this.batches.slice(this.head);
      this.head = 0;
    }
  }

  /** Inserts the kept events oldest first; returns how many. */
  replayInto(dedup: DedupWindow, nowMs: number): number {
    let inserted = 0;
    let scratch = new Uint8Array(1024);
    for (let at = this.head; at < this.batches.length; at++) {
      const { bytes, offset, count } = this.batches[at];
      if (scratch.length < count) scratch = new Uint8Array(count);
      // The payload starts at `offset` inside the segment bytes; index events from there.
      dedup.markDuplicates(bytes.subarray(offset, offset + count * EVENT_BYTES), 0, count, nowMs, scratch);
      inserted += count;
    }
    this.batches = [];
    this.head = 0;
    return inserted;
  }
}

/** The note callback of appendMany's options, checked before anything is queued. */
function checkAppendOptions(options: AppendOptions, count: number): NoteCallback | undefined {
  if (typeof options !== 'object' || options === null) throw new TidelogError('BAD_REQUEST', 'appendMany options must be an object');
  const note: unknown = options.note;
  if (note === undefined) return undefined;
  if (typeof note !== 'function') throw new TidelogError('BAD_REQUEST', 'appendMany options.note must be a function');
  if (count === 0) throw new TidelogError('BAD_REQUEST', 'appendMany: a note needs at least one event to describe');
  return note as NoteCallback;
}

/** File-system errors leave tidelog as TidelogError IO_ERROR, the cause kept. */
function asTidelogError(error: unknown, path: string): Error {
  if (error instanceof TidelogError) return error;
  const errno = (error as NodeJS.ErrnoException | undefined)?.code ?? 'unknown';
  return new TidelogError('IO_ERROR', `${path}: ${errno}`, { cause: error, details: { errno, file: path } });
}

/** Half-made files from a crash mid-rename: never part of the log. */
async function removeLeftovers(io: FileIo, dir: string, shard: number): Promise<void> {
  const prefix = segmentFileName(shard, 1).slice(0, 10);
  const checkpointTmp = `${checkpointFileName(shard)}.tmp`;
  for (const name of await io.readdir(dir)) {
    if ((name.startsWith(prefix) && name.endsWith('.seg.tmp')) || name === checkpointTmp) {
      await io.unlink(join(dir, name));
    }
  }
}
