// Opening a shard's WAL: everything between "the lock is held" and "the writer may start".
// A restart costs O(newest snapshot + the log after it), never O(log): the state machine is
// restored from the newest snapshot file that verifies (falling back to the one before when
// it is damaged), and only the segments from the one holding its seq onwards are scanned.
//
//   leftovers ─► checkpoint file ─► segment heads (recovery.ts) ─► choose the restore point:
//     newest valid snapshot file │ newest legacy segment head │ the log's start (empty state)
//   ─► scan from there (verify, cut a torn tail, apply / replay, rebuild the dedup window,
//      build sparse indexes) ─► resume the last segment, or open the first one
//
// Invariant: what the state machine holds afterwards is exactly the log through its last
// intact batch — restore point plus every later batch, each applied once (the snapshot file
// says how many notes-only batches at seq + 1 it already holds).

import { join } from 'node:path';
import type { Clock } from '../clock.ts';
import { TidelogError, isTidelogError } from '../errors.ts';
import { EVENT_BYTES, decodeEventAt, type SignalEvent } from '../event.ts';
import { BATCH_HEADER_BYTES } from './batch-format.ts';
import { readCheckpointFile } from './checkpoint-file.ts';
import type { DedupWindow } from './dedup.ts';
import { DELETING_SUFFIX, type FileIo } from './file-io.ts';
import { recoverShard, setAsideFile, type ListedSegment, type RecoveredSegment, type RecoveryReport } from './recovery.ts';
import { encodeMarkerRecord, readLegacySnapshot } from './segment-head.ts';
import { SegmentIndex } from './segment-index.ts';
import { checkpointFileName, listShardSnapshots, replicaFileName, segmentFileName, snapshotFileName, type SnapshotName } from './segment-name.ts';
import { SegmentWriter, type FsyncMode } from './segment-writer.ts';
import { readSnapshotFile, type SnapshotMeta } from './snapshot-file.ts';
import { installStagingName, isInstallEpochsFile } from './snapshot-install.ts';
import type { WalStateMachine } from './state-machine.ts';


export interface OpenSettings {
  io: FileIo;
  dir: string;
  shard: number;
  clock: Clock;
  fsync: FsyncMode;
  salvage: boolean;
  replay: boolean;
  leaderEpoch: number;
  dedupWindowMs: number;
  /** 'external': fold the log only up to committedSeq (or the snapshot restored). */
  commit: 'durable' | 'external';
  committedSeq: number;
  stateMachine?: WalStateMachine;
  onRecoveryProgress?: (done: number, total: number) => void;
}

/** A snapshot file the WAL keeps (for restarts, and for fallback when the newest is damaged). */
export interface SnapshotRecord {
  fileName: string;
  seq: number;
  bytes: number;
}

/** A retained segment plus what reads, seeks and retention need without reading it. */
export interface RetainedSegment {
  fileName: string;
  firstSeq: number;
  lastSeq: number;
  bytes: number;
  headBytes: number;
  openedAtNs: bigint;
  headKind: 'marker' | 'legacy';
  /** Newest seal time of a batch holding events: exact when known, -1n when none or unknown. */
  newestBatchNs: bigint;
  /** The same among deduplicated batches (not SKIPS_DEDUP); the next marker records it. */
  newestDedupNs: bigint;
  /** Whether newestBatchNs is known (false for a closed segment not scanned on open). */
  isNewestKnown: boolean;
  /** Sparse index; null until built (closed segments not scanned on open build it on first read). */
  index: SegmentIndex | null;
}

export interface RestorePoint {
  /** The state machine (or the replay) starts after this seq. */
  seq: number;
  source: 'snapshot' | 'legacy-head' | 'log-start' | 'checkpoint' | 'salvaged';
  fileName: string | null;
}

export interface WalRecovery extends RecoveryReport {
  checkpointSeq: number;
  /** Events put back into the dedup window from the log's tail. */
  dedupRebuilt: number;
  /** Where the state (or the replay) started. */
  restoredFrom: RestorePoint;
  /** Snapshot files found damaged and set aside (the WAL fell back to an older one). */
  damagedSnapshots: Array<{ file: string; reason: string }>;
  /** Where the open spent its time: restoring the state, scanning the log after it, syncing closed segments. */
  phasesMs: { restore: number; scan: number; syncClosed: number };
}

export interface OpenedLog {
  segments: RetainedSegment[];
  lastSeq: number;
  checkpointSeq: number;
  /** The newest seal time in the log: new batches are never sealed below it. */
  newestSealNs: bigint;
  snapshots: SnapshotRecord[];
  /** Bytes of log after the restore point (the snapshot policy's "log since the last snapshot"). */
  logBytesAfterSnapshot: number;
  /**
   * The state machine holds the log up to here (external commit: up to the committed seq it
   * was told; the durable batches after it are folded once commitTo reaches them).
   */
  appliedSeq: number;
  /** Notes-only batches at appliedSeq + 1 already folded. */
  notesBatchesAfter: number;
  /** The newest leader epoch among the batches scanned. */
  newestEpoch: number;
  /** Notes-only batches after the log's last event batch (scanned ones). */
  trailingNotes: number;
  /** Where the scanned batches' epochs go up: (epoch, first seq) each time one does. */
  scannedEpochStarts: Array<{ epoch: number; firstSeq: number }>;
  replayed: SignalEvent[];
  recovery: WalRecovery;
  files: SegmentWriter;
}

const EMPTY = new Uint8Array(0);
const MAX_NS = (1n << 64n) - 1n;

export async function openLog(settings: OpenSettings, dedup: DedupWindow, dedupMaxEvents: number): Promise<OpenedLog> {
  const { io, dir, shard, clock, stateMachine } = settings;
  await removeLeftovers(io, dir, shard);
  let checkpoint = null;
  const setAside: string[] = [];
  try {
    checkpoint = await readCheckpointFile(io, dir, shard);
  } catch (error) {
    if (!settings.salvage) throw error;
    // Salvage: the damaged checkpoint goes aside, so the next ordinary open is clean.
    setAside.push(await setAsideFile(io, dir, checkpointFileName(shard)));
  }
  const checkpointSeq = checkpoint?.seq ?? 0;
  let snapshotNames = listShardSnapshots(await io.readdir(dir), shard);
  const damagedSnapshots: WalRecovery['damagedSnapshots'] = [];
  const nowNs = clock.nowNs();
  const dedupCutoffNs = nowNs - BigInt(Math.round(settings.dedupWindowMs * 2)) * 1_000_000n;
  const tail = new DedupTail(2 * dedupMaxEvents);
  const replayed: SignalEvent[] = [];
  let restored: RestorePoint = { seq: checkpointSeq, source: 'checkpoint', fileName: null };
  let notesToSkip = 0;
  let newestSealNs = 0n;
  let logBytesAfterSnapshot = 0;
  // External commit: only the log up to the committed seq the owner knows is folded now.
  const isExternal = settings.commit === 'external';
  let isApplying = true;
  let appliedSeq = 0;
  let notesApplied = 0;
  let newestEpoch = 0;
  let trailingNotes = 0;
  const scannedEpochStarts: Array<{ epoch: number; firstSeq: number }> = [];

  const phasesMs = { restore: 0, scan: 0, syncClosed: 0 };
  const openStartMs = performance.now();
  const chooseScanStart = async (listed: readonly ListedSegment[]): Promise<number> => {
    if (stateMachine !== undefined) {
      const restoreStartMs = performance.now();
      const chosen = await restoreState(settings, listed, snapshotNames, damagedSnapshots);
      phasesMs.restore = performance.now() - restoreStartMs;
      restored = chosen.point;
      notesToSkip = chosen.notesBatchesAfter;
      notesApplied = chosen.notesBatchesAfter;
    }
    let start = settings.replay || stateMachine !== undefined ? restored.seq + 1 : Number.MAX_SAFE_INTEGER;
    if (dedup.isEnabled) start = Math.min(start, dedupStartSeq(listed, dedupCutoffNs));
    return start;
  };

  const { report, segments } = await recoverShard({
    io,
    dir,
    shard,
    salvage: settings.salvage,
    repair: true,
    chooseScanStart,
    onProgress: settings.onRecoveryProgress,
    onBatch: (bytes, batch) => {
      const { header, offset } = batch;
      const payloadStart = offset + BATCH_HEADER_BYTES;
      if (header.timestampNs > newestSealNs) newestSealNs = header.timestampNs;
      if (header.leaderEpoch > newestEpoch) newestEpoch = header.leaderEpoch;
      const lastStart = scannedEpochStarts[scannedEpochStarts.length - 1];
      if (lastStart === undefined || header.leaderEpoch > lastStart.epoch) scannedEpochStarts.push({ epoch: header.leaderEpoch, firstSeq: header.firstSeq });
      trailingNotes = header.count > 0 ? 0 : trailingNotes + 1;
      if (header.count > 0 && !header.skipsDedup && dedup.isEnabled && header.timestampNs >= dedupCutoffNs) {
        tail.push(bytes, payloadStart, header.count);
      }
      const lastSeq = header.firstSeq + header.count - 1;
      let isAfter: boolean;
      if (header.count > 0) isAfter = lastSeq > restored.seq;
      else if (header.firstSeq === restored.seq + 1 && notesToSkip > 0) {
        notesToSkip--;
        isAfter = false;
      } else isAfter = header.firstSeq > restored.seq;
      if (!isAfter) return;
      logBytesAfterSnapshot += BATCH_HEADER_BYTES + header.payloadBytes;
      if (isApplying && isExternal && lastSeq > Math.max(settings.committedSeq, restored.seq)) isApplying = false;
      // External commit: what follows the committed seq is neither folded nor replayed here;
      // it is folded (and reported to onPersisted) when commitTo reaches it.
      if (!isApplying) return;
      if (stateMachine !== undefined) {
        if (header.count > 0) notesApplied = 0;
        else notesApplied++;
        appliedSeq = Math.max(appliedSeq, lastSeq);
        stateMachine.apply({
          firstSeq: header.firstSeq,
          count: header.count,
          events: bytes.subarray(payloadStart, payloadStart + header.count * EVENT_BYTES),
          timestampNs: header.timestampNs,
          leaderEpoch: header.leaderEpoch,
          notes: batch.notes,
        });
      } else if (settings.replay && header.count > 0) {
        const skip = Math.max(0, restored.seq - header.firstSeq + 1);
        const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
        for (let index = skip; index < header.count; index++) {
          replayed.push(decodeEventAt(view, payloadStart + index * EVENT_BYTES));
        }
      }
    },
  });
  const dedupRebuilt = tail.replayInto(dedup, clock.nowMs());
  phasesMs.scan = performance.now() - openStartMs - phasesMs.restore;
  let infos = segments.map(toRetained);
  const checkpointPath = join(dir, checkpointFileName(shard));
  if (checkpointSeq > report.lastSeq && infos.length > 0) {
    if (!settings.salvage) {
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
  if (stateMachine !== undefined && restored.seq > report.lastSeq && infos.length > 0) {
    const file = join(dir, restored.fileName ?? infos[infos.length - 1].fileName);
    if (!settings.salvage) {
      throw new TidelogError('SNAPSHOT_DAMAGED', `${file}: the state restored is at seq ${restored.seq}, beyond the log's end ${report.lastSeq}`, {
        details: { file, offset: 0 },
      });
    }
    // Salvage: the state holds seqs the log lost; continue after them, never hand them out again.
    for (const segment of infos) setAside.push(await setAsideFile(io, dir, segment.fileName));
    await io.syncDir(dir);
    infos = [];
  }
  const firstRetained = infos[0]?.firstSeq;
  if (!stateMachine && firstRetained !== undefined && firstRetained > checkpointSeq + 1 && !settings.salvage) {
    throw new TidelogError(
      'SEGMENT_GAP',
      `${join(dir, infos[0].fileName)}: the log starts at seq ${firstRetained} but the checkpoint is at ${checkpointSeq}; events ${checkpointSeq + 1}..${firstRetained - 1} are missing`,
      { details: { file: join(dir, infos[0].fileName), offset: 0, checkpointSeq } },
    );
  }
  // Snapshot files kept: the one restored and older ones (the fallback); newer ones were set aside.
  snapshotNames = listShardSnapshots(await io.readdir(dir), shard);
  const snapshots: SnapshotRecord[] = [];
  for (const name of snapshotNames) snapshots.push({ fileName: name.fileName, seq: name.seq, bytes: await fileSize(io, join(dir, name.fileName)) });

  const files = new SegmentWriter(io, dir, shard, settings.fsync, () => clock.nowNs());
  let lastSeq = report.lastSeq;
  const last = infos[infos.length - 1];
  if (last !== undefined && last.openedAtNs > newestSealNs) newestSealNs = last.openedAtNs;
  if (last === undefined) {
    // A fresh shard (or one whose segments were all set aside): start at the next seq.
    lastSeq = Math.max(lastSeq, checkpointSeq, stateMachine !== undefined ? restored.seq : 0);
    const firstSeq = lastSeq + 1;
    const openedAtNs = nowNs > newestSealNs ? nowNs : newestSealNs;
    const record = encodeMarkerRecord({
      shard,
      firstSeq,
      leaderEpoch: settings.leaderEpoch,
      timestampNs: openedAtNs,
      snapshotSeq: snapshots[snapshots.length - 1]?.seq ?? 0,
      prevFirstSeq: 0,
      prevDedupNs: 0n,
    });
    await files.rotate(firstSeq, record);
    newestSealNs = openedAtNs;
    infos.push({
      fileName: segmentFileName(shard, firstSeq),
      firstSeq,
      lastSeq,
      bytes: record.byteLength,
      headBytes: record.byteLength,
      openedAtNs,
      headKind: 'marker',
      newestBatchNs: -1n,
      newestDedupNs: -1n,
      isNewestKnown: true,
      index: new SegmentIndex(record.byteLength),
    });
  } else {
    const syncStartMs = performance.now();
    await files.syncClosed(infos.slice(0, -1).map((segment) => segment.fileName));
    phasesMs.syncClosed = performance.now() - syncStartMs;
    await files.resume({ fileName: last.fileName, firstSeq: last.firstSeq }, last.bytes);
  }
  const recovery: WalRecovery = {
    ...report,
    quarantined: [...report.quarantined, ...setAside],
    checkpointSeq,
    dedupRebuilt,
    restoredFrom: restored,
    damagedSnapshots,
    phasesMs,
  };
  // Folded: up to the last batch applied (or the state restored); without a state machine the
  // whole log counts as folded, as nothing is.
  if (stateMachine === undefined) appliedSeq = isExternal ? Math.min(settings.committedSeq, lastSeq) : lastSeq;
  else appliedSeq = Math.min(lastSeq, Math.max(appliedSeq, restored.seq));
  if (appliedSeq < lastSeq && !isExternal) throw new Error(`invariant violated: the open folded to ${appliedSeq} of ${lastSeq}`);
  return { segments: infos, lastSeq, checkpointSeq, newestSealNs, snapshots, logBytesAfterSnapshot, appliedSeq, notesBatchesAfter: notesApplied, newestEpoch, trailingNotes, scannedEpochStarts, replayed, recovery, files };
}

function toRetained(segment: RecoveredSegment): RetainedSegment {
  return {
    fileName: segment.fileName,
    firstSeq: segment.firstSeq,
    lastSeq: segment.lastSeq,
    bytes: segment.bytes,
    headBytes: segment.headBytes,
    openedAtNs: segment.openedAtNs,
    headKind: segment.headKind,
    newestBatchNs: segment.newestBatchNs,
    newestDedupNs: segment.newestDedupNs,
    isNewestKnown: segment.isScanned,
    index: segment.index,
  };
}

/**
 * Restores the state machine from the newest usable source and returns where it stands:
 * the newest snapshot file that verifies and is not older than the log's start; else the
 * newest legacy segment head; else the empty state when the log starts at seq 1. A damaged
 * snapshot is set aside (`.damaged`) and the next older one tried. With nothing usable the
 * open fails with SNAPSHOT_DAMAGED, unless salvage starts from the empty state at the log's start.
 */
async function restoreState(
  settings: OpenSettings,
  listed: readonly ListedSegment[],
  snapshotNames: readonly SnapshotName[],
  damagedSnapshots: WalRecovery['damagedSnapshots'],
): Promise<{ point: RestorePoint; notesBatchesAfter: number }> {
  const { io, dir, shard } = settings;
  const stateMachine = settings.stateMachine as WalStateMachine;
  const logStart = listed[0]?.firstSeq;
  for (let index = snapshotNames.length - 1; index >= 0; index--) {
    const name = snapshotNames[index];
    // A snapshot older than the log's start cannot be continued by the log.
    if (logStart !== undefined && name.seq < logStart - 1) break;
    try {
      const meta = await restoreSnapshotFile(io, dir, shard, name, stateMachine);
      return { point: { seq: name.seq, source: 'snapshot', fileName: name.fileName }, notesBatchesAfter: meta.notesBatchesAfter };
    } catch (error) {
      if (!isTidelogError(error, 'SNAPSHOT_DAMAGED') && !isTidelogError(error, 'DECODE_FAILED')) throw error;
      damagedSnapshots.push({ file: join(dir, name.fileName), reason: error.message });
      await setAsideFile(io, dir, name.fileName);
    }
  }
  for (let index = listed.length - 1; index >= 0; index--) {
    const segment = listed[index];
    if (segment.head.kind !== 'legacy') continue;
    try {
      const snapshot = await readLegacySnapshot(io, dir, segment.fileName, segment.head);
      stateMachine.restore(snapshot, segment.firstSeq - 1);
      return { point: { seq: segment.firstSeq - 1, source: 'legacy-head', fileName: segment.fileName }, notesBatchesAfter: 0 };
    } catch (error) {
      if (!isTidelogError(error, 'CHECKPOINT_DAMAGED') && !isTidelogError(error, 'DECODE_FAILED')) throw error;
      damagedSnapshots.push({ file: join(dir, segment.fileName), reason: error.message });
    }
  }
  if (logStart === undefined || logStart === 1) {
    // Nothing to restore: the log holds everything from seq 1 (or holds nothing yet). A shard
    // whose snapshots are all damaged and whose log is empty must not start over silently.
    if (logStart !== undefined || damagedSnapshots.length === 0 || settings.salvage) {
      stateMachine.restore(EMPTY, 0);
      return { point: { seq: 0, source: 'log-start', fileName: null }, notesBatchesAfter: 0 };
    }
  }
  const first = damagedSnapshots[0];
  const file = first?.file ?? join(dir, listed[0]?.fileName ?? snapshotFileName(shard, 0));
  if (!settings.salvage) {
    const reason =
      first === undefined
        ? `no snapshot covers the log's start at seq ${logStart ?? 1}: the state before it cannot be rebuilt`
        : `every snapshot is damaged (newest: ${first.reason}); the log starts at seq ${logStart ?? 1}`;
    throw new TidelogError('SNAPSHOT_DAMAGED', `${file}: ${reason}`, { details: { file, offset: 0 } });
  }
  // Salvage: start from the empty state at the log's start; what came before is lost.
  const seq = (logStart ?? 1) - 1;
  stateMachine.restore(EMPTY, seq);
  return { point: { seq, source: 'salvaged', fileName: null }, notesBatchesAfter: 0 };
}

/** Streams a snapshot file into the state machine (whole bytes when it has no streaming restore). */
async function restoreSnapshotFile(io: FileIo, dir: string, shard: number, name: SnapshotName, stateMachine: WalStateMachine): Promise<SnapshotMeta> {
  if (stateMachine.beginRestore !== undefined) {
    const sink = stateMachine.beginRestore(name.seq);
    try {
      const reading = await readSnapshotFile(io, dir, name.fileName, { shard, seq: name.seq }, (chunk) => sink.push(chunk));
      sink.finish();
      return reading.meta;
    } catch (error) {
      sink.abort?.();
      throw error;
    }
  }
  const parts: Uint8Array[] = [];
  const reading = await readSnapshotFile(io, dir, name.fileName, { shard, seq: name.seq }, (chunk) => parts.push(chunk.slice()));
  const bytes = new Uint8Array(reading.payloadBytes);
  let offset = 0;
  for (const part of parts) {
    bytes.set(part, offset);
    offset += part.byteLength;
  }
  stateMachine.restore(bytes, name.seq);
  return reading.meta;
}

/**
 * The first seq of the oldest segment that may hold deduplicated events sealed at or after
 * `cutoffNs` (the window's rebuild needs nothing older). A segment's next marker records the
 * newest such seal time in it (0: none — a shard whose producers use sessions has none, and
 * its restart reads no extra segment for the window); a legacy head promises nothing, so a
 * segment followed by one is always read. The last segment is always scanned anyway.
 */
function dedupStartSeq(listed: readonly ListedSegment[], cutoffNs: bigint): number {
  for (let index = 0; index < listed.length - 1; index++) {
    const next = listed[index + 1];
    const newestBound = next.head.kind === 'marker' ? next.head.prevDedupNs : MAX_NS;
    if (newestBound >= cutoffNs) return listed[index].firstSeq;
  }
  return listed[listed.length - 1]?.firstSeq ?? Number.MAX_SAFE_INTEGER;
}

async function fileSize(io: FileIo, path: string): Promise<number> {
  const file = await io.open(path, 'read');
  try {
    return await file.size();
  } finally {
    await file.close();
  }
}

/** Half-made files from a crash mid-rename: never part of the log. */
async function removeLeftovers(io: FileIo, dir: string, shard: number): Promise<void> {
  const segmentPrefix = segmentFileName(shard, 1).slice(0, 10);
  const snapshotPrefix = snapshotFileName(shard, 1).slice(0, 11);
  const checkpointTmp = `${checkpointFileName(shard)}.tmp`;
  const replicaTmp = `${replicaFileName(shard)}.tmp`;
  for (const name of await io.readdir(dir)) {
    const isSegmentTmp = name.startsWith(segmentPrefix) && name.endsWith('.seg.tmp');
    const isSnapshotTmp = name.startsWith(snapshotPrefix) && name.endsWith('.snap.tmp');
    // A file deleteGradually was cutting down when the process stopped: already dropped.
    const isDeleting = (name.startsWith(segmentPrefix) || name.startsWith(snapshotPrefix)) && name.endsWith(DELETING_SUFFIX);
    // An install's staging file: the transfer starts over (snapshot-install.ts).
    // An install's epoch table with no install pending (completeInstall ran before this).
    const isInstallTmp = name === installStagingName(shard) || isInstallEpochsFile(name, shard);
    if (isSegmentTmp || isSnapshotTmp || isDeleting || isInstallTmp || name === checkpointTmp || name === replicaTmp) await io.unlink(join(dir, name));
  }
}

/** The newest batches seen during recovery, bounded by event count, for the dedup rebuild. */
class DedupTail {
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
