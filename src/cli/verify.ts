// `tidelog wal verify`: recovery run read-only (repair: false, salvage: true) over every shard
// of a WAL directory, so it never modifies a file and never takes the lock: it can run beside
// a live writer. A torn tail is what a crash leaves and the next open cuts: a warning, exit 0.
// Anything else (a bad checksum before the tail, a seq gap, a damaged checkpoint) is damage:
// exit 1, naming file and offset.

import { join } from 'node:path';
import { isTidelogError, type ErrorCode } from '../errors.ts';
import { initChecksum, listShardSegments, listShardSnapshots, nodeFileIo, readSegmentHead, readSnapshotFile, recoverShard } from '../wal/index.ts';
import { readCheckpointFile } from '../wal/checkpoint-file.ts';
import { checkpointFileName } from '../wal/segment-name.ts';
import { formatBytes, formatCount, formatMs, formatRate } from './format.ts';
import { ExitCode, type ExitCodeValue } from './options.ts';
import { StatusLine, renderBar } from './progress.ts';
import { checkShardPresent, checkWalDirectory, findWalDirectory, liveWriterPid, segmentFiles, setAsideFiles, shardsIn, type SegmentFile } from './wal-dir.ts';

export interface VerifyOptions {
  shard?: number;
  json?: boolean;
}

export interface ShardVerification {
  shard: number;
  status: 'intact' | 'torn-tail' | 'damaged';
  segments: number;
  batches: number;
  events: number;
  /** Segment bytes read. */
  bytes: number;
  firstSeq: number;
  lastSeq: number;
  checkpointSeq: number | null;
  tornTail: { file: string; offset: number; bytes: number; reason: string } | null;
  damage: { code: ErrorCode; file: string; offset: number; reason: string } | null;
  /** `<segment>.damaged` files left by an earlier salvage. */
  setAside: string[];
  /** A live process named in the shard's lock file: its last segment may be mid-write. */
  writerPid: number | null;
  /** The shard's snapshot files, each read whole with every checksum verified. */
  snapshots: Array<{ fileName: string; seq: number; bytes: number; status: 'intact' | 'damaged'; reason: string | null }>;
  durationMs: number;
}

/** A shard is "large" past either limit; only then is a progress bar worth drawing. */
const PROGRESS_MIN_BYTES = 64 << 20;
const PROGRESS_MIN_SEGMENTS = 8;
/** A segment removed between readdir and read (a live writer's truncateBefore): rescan. */
const MAX_SCAN_ATTEMPTS = 3;

export async function runVerify(path: string, options: VerifyOptions): Promise<ExitCodeValue> {
  const { dir, fileNames } = await findWalDirectory(path);
  if (options.shard !== undefined) checkShardPresent(dir, fileNames, options.shard);
  const shards = options.shard === undefined ? shardsIn(fileNames) : [options.shard];
  if (shards.length === 0) {
    process.stderr.write(`tidelog wal verify: ${dir} holds no WAL segments (wal-SSSSS-NNNN….seg)\n`);
    return ExitCode.usage;
  }
  await initChecksum();
  const results: ShardVerification[] = [];
  for (const shard of shards) {
    const result = await verifyShard(dir, shard, process.stderr.isTTY === true);
    results.push(result);
    if (options.json !== true) process.stdout.write(renderShard(result));
  }
  const damaged = results.filter((result) => result.status === 'damaged').length;
  const torn = results.filter((result) => result.status === 'torn-tail').length;
  if (options.json === true) {
    const status = damaged > 0 ? 'damaged' : torn > 0 ? 'torn-tail' : 'intact';
    process.stdout.write(`${JSON.stringify({ dir, status, isIntact: damaged === 0, shards: results }, null, 2)}\n`);
  } else {
    process.stdout.write(renderVerdict(results.length, damaged, torn));
  }
  return damaged > 0 ? ExitCode.failed : ExitCode.ok;
}

export async function verifyShard(dir: string, shard: number, canShowProgress: boolean): Promise<ShardVerification> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await scanShard(dir, shard, canShowProgress);
    } catch (error) {
      const isVanished = (error as NodeJS.ErrnoException).code === 'ENOENT';
      if (!isVanished || attempt >= MAX_SCAN_ATTEMPTS) throw error;
    }
  }
}

async function scanShard(dir: string, shard: number, canShowProgress: boolean): Promise<ShardVerification> {
  const fileNames = await checkWalDirectory(dir);
  const files = await segmentFiles(dir, fileNames, shard);
  const writerPid = await liveWriterPid(dir, shard);
  const progress = canShowProgress && isLarge(files) ? new ShardProgress(shard, files) : null;
  const result: ShardVerification = {
    shard,
    status: 'intact',
    segments: 0,
    batches: 0,
    events: 0,
    bytes: 0,
    firstSeq: 0,
    lastSeq: 0,
    checkpointSeq: null,
    tornTail: null,
    damage: null,
    setAside: setAsideFiles(fileNames, shard),
    writerPid,
    snapshots: [],
    durationMs: 0,
  };
  try {
    const { report } = await recoverShard({
      io: nodeFileIo,
      dir,
      shard,
      salvage: true,
      repair: false,
      onProgress: (done) => progress?.update(done),
    });
    Object.assign(result, {
      segments: report.segments,
      batches: report.batches,
      events: report.events,
      bytes: report.bytesScanned,
      firstSeq: report.firstSeq,
      lastSeq: report.lastSeq,
      durationMs: report.durationMs,
    });
    if (report.truncatedTail !== null) {
      const { file, offset, bytesRemoved, reason } = report.truncatedTail;
      result.tornTail = { file, offset, bytes: bytesRemoved, reason };
    }
    if (report.damage !== null) {
      const { code, file, offset, reason } = report.damage;
      result.damage = { code, file, offset, reason };
    }
  } finally {
    progress?.clear();
  }
  try {
    result.checkpointSeq = (await readCheckpointFile(nodeFileIo, dir, shard))?.seq ?? null;
  } catch (error) {
    if (!isTidelogError(error, 'CHECKPOINT_DAMAGED')) throw error;
    result.damage ??= { code: error.code, file: join(dir, checkpointFileName(shard)), offset: 0, reason: error.message };
  }
  // Wal.open refuses a checkpoint beyond the log's end: that is damage too.
  if (result.damage === null && result.checkpointSeq !== null && result.segments > 0 && result.checkpointSeq > result.lastSeq) {
    result.damage = {
      code: 'CHECKPOINT_DAMAGED',
      file: join(dir, checkpointFileName(shard)),
      offset: 0,
      reason: `checkpoint at seq ${result.checkpointSeq} is beyond the log's end ${result.lastSeq}`,
    };
  }
  await verifySnapshots(dir, fileNames, shard, result);
  result.status = result.damage !== null ? 'damaged' : result.tornTail !== null ? 'torn-tail' : 'intact';
  return result;
}

/**
 * Every snapshot file of the shard, read whole with every checksum verified (its contents
 * belong to the state machine and are checked when a node restores it). A damaged one is
 * damage; so is a log that starts after seq 1 with no intact snapshot or legacy head to
 * continue it from.
 */
async function verifySnapshots(dir: string, fileNames: readonly string[], shard: number, result: ShardVerification): Promise<void> {
  for (const name of listShardSnapshots(fileNames, shard)) {
    try {
      const reading = await readSnapshotFile(nodeFileIo, dir, name.fileName, { shard, seq: name.seq }, () => undefined);
      result.snapshots.push({ fileName: name.fileName, seq: name.seq, bytes: reading.fileBytes, status: 'intact', reason: null });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue; // removed by a live writer meanwhile
      if (!isTidelogError(error, 'SNAPSHOT_DAMAGED')) throw error;
      result.snapshots.push({ fileName: name.fileName, seq: name.seq, bytes: 0, status: 'damaged', reason: error.message });
      const context = error.context as { offset?: number };
      result.damage ??= { code: error.code, file: join(dir, name.fileName), offset: context.offset ?? 0, reason: error.message };
    }
  }
  if (result.damage !== null || result.segments === 0 || result.firstSeq <= 1) return;
  const covers = result.snapshots.some((snapshot) => snapshot.status === 'intact' && snapshot.seq >= result.firstSeq - 1);
  const first = listShardSegments(fileNames, shard)[0];
  const hasLegacyHead = first !== undefined && (await readSegmentHead(nodeFileIo, dir, first.fileName, { shard, firstSeq: first.firstSeq }).then((head) => head.kind === 'legacy', () => false));
  if (!covers && !hasLegacyHead && result.checkpointSeq === null) {
    result.damage = {
      code: 'SNAPSHOT_DAMAGED',
      file: join(dir, first?.fileName ?? ''),
      offset: 0,
      reason: `the log starts at seq ${result.firstSeq} and no intact snapshot continues it: the state before it cannot be rebuilt`,
    };
  }
}

function isLarge(files: readonly SegmentFile[]): boolean {
  const bytes = files.reduce((sum, file) => sum + file.bytes, 0);
  return bytes > PROGRESS_MIN_BYTES || files.length > PROGRESS_MIN_SEGMENTS;
}

/** `verifying shard 0 [#####-----] 12/40 segments 210 MB/s` on stderr. */
class ShardProgress {
  private readonly line = new StatusLine(process.stderr, { isLive: true });
  private readonly startMs = performance.now();
  private readonly bytesBefore: number[] = [0];

  constructor(
    private readonly shard: number,
    private readonly files: readonly SegmentFile[],
  ) {
    for (const file of files) this.bytesBefore.push(this.bytesBefore[this.bytesBefore.length - 1] + file.bytes);
    this.update(0);
  }

  update(done: number): void {
    const total = this.files.length;
    const bytes = this.bytesBefore[Math.min(done, total)];
    const rate = formatRate(bytes, performance.now() - this.startMs);
    this.line.update(`verifying shard ${this.shard} ${renderBar(done, total)} ${done}/${total} segments ${rate}`, done === total);
  }

  clear(): void {
    this.line.clear();
  }
}

function renderShard(result: ShardVerification): string {
  const label = { intact: 'intact', 'torn-tail': 'intact, torn tail (warning)', damaged: 'DAMAGED' }[result.status];
  const lines = [
    `shard ${result.shard}: ${label}`,
    `  segments    ${formatCount(result.segments)} (${formatBytes(result.bytes)})`,
    `  batches     ${formatCount(result.batches)}`,
    `  events      ${formatCount(result.events)}`,
    `  seqs        ${result.lastSeq >= result.firstSeq && result.events > 0 ? `${result.firstSeq} … ${result.lastSeq}` : 'none'}`,
    `  checkpoint  ${result.checkpointSeq === null ? 'none' : `seq ${result.checkpointSeq}`}`,
    `  scanned in  ${formatMs(result.durationMs)} (${formatRate(result.bytes, result.durationMs)})`,
  ];
  for (const snapshot of result.snapshots) {
    lines.push(`  snapshot    seq ${snapshot.seq}: ${snapshot.status === 'intact' ? `intact (${formatBytes(snapshot.bytes)})` : `DAMAGED: ${snapshot.reason ?? ''}`}`);
  }
  if (result.writerPid !== null) lines.push(`  writer      pid ${result.writerPid} holds the lock; its last segment may be mid-write`);
  if (result.tornTail !== null) {
    const { file, offset, bytes, reason } = result.tornTail;
    lines.push(`  WARNING torn tail: ${formatCount(bytes)} bytes at offset ${offset} of ${file} (${reason})`);
    lines.push(`          a crash mid-write leaves this; the next open cuts it. Not damage.`);
  }
  if (result.damage !== null) {
    const { code, file, offset, reason } = result.damage;
    lines.push(`  DAMAGE ${code} in ${file} at offset ${offset}: ${reason}`);
    lines.push(`         the intact prefix ends at seq ${result.lastSeq}; open with salvage to keep only it`);
  }
  for (const name of result.setAside) lines.push(`  note: ${name} was set aside by an earlier salvage`);
  return `${lines.join('\n')}\n`;
}

function renderVerdict(shards: number, damaged: number, torn: number): string {
  if (damaged > 0) return `result: DAMAGED: ${damaged} of ${shards} shard(s) damaged (exit 1)\n`;
  if (torn > 0) return `result: intact with a torn tail in ${torn} shard(s): warning only (exit 0)\n`;
  return `result: intact: ${shards} shard(s) verified (exit 0)\n`;
}
