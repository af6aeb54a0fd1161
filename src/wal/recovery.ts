// Recovery: decide where a shard's durable log ends and what in it can be trusted, reading
// only what a restart needs. Every segment's head record is read (a few bytes each); the
// bodies are scanned — every checksum verified — only from the segment holding the seq the
// caller asks for (the newest usable snapshot's, see wal-open.ts) to the end. Older segments
// are listed from their heads: their ends follow from the next segment's first seq, and the
// marker chain (segment-head.ts) shows a missing segment without reading any body. Their
// checksums are verified when they are read, and by `tidelog wal verify`.
//
//   - marker heads chain: a marker's prevFirstSeq must name the segment before it, else
//     SEGMENT_GAP naming the file; scanned segments must continue each other's seqs too;
//   - a torn tail of the last segment (any byte offset, trailing zeroes) is cut off;
//   - any other damage is an error naming file and offset — or, with `salvage`, the end of
//     the durable prefix: the damaged segment is kept aside as `<name>.damaged` and cut at
//     the damage, later segments are renamed `<name>.damaged`, and the log continues.
// With `repair: false` (the verify CLI) nothing on disk changes.

import { join } from 'node:path';
import { TidelogError, isTidelogError } from '../errors.ts';
import { readWhole, writeFully, type FileIo } from './file-io.ts';
import { readSegmentHead, type SegmentHead } from './segment-head.ts';
import { SegmentIndex } from './segment-index.ts';
import { listShardSegments } from './segment-name.ts';
import { scanSegment, type ScannedBatch, type SegmentDamage } from './segment-scan.ts';

export interface RecoveredSegment {
  fileName: string;
  firstSeq: number;
  lastSeq: number;
  /** Intact bytes (after any truncation); for a segment not scanned, its file size. */
  bytes: number;
  /** Bytes of the head record: the first batch starts here. */
  headBytes: number;
  /** The head record's timestampNs: when the segment was opened. */
  openedAtNs: bigint;
  headKind: 'marker' | 'legacy';
  /** Whether the body was scanned (every checksum verified) during this recovery. */
  isScanned: boolean;
  /** Scanned only: seal time of its newest batch holding events; -1n when it holds none. */
  newestBatchNs: bigint;
  /** Scanned only: the same among batches whose events entered the dedup window (not SKIPS_DEDUP). */
  newestDedupNs: bigint;
  /** Scanned only: the sparse index built while scanning. */
  index: SegmentIndex | null;
}

/** A segment as listed before any body is read. */
export interface ListedSegment {
  fileName: string;
  firstSeq: number;
  head: SegmentHead;
}

export interface DamageReport extends SegmentDamage {
  file: string;
}

export interface RecoveryReport {
  segments: number;
  /** Segments whose bodies were scanned. */
  scannedSegments: number;
  batches: number;
  events: number;
  bytesScanned: number;
  durationMs: number;
  firstSeq: number;
  lastSeq: number;
  /** The torn tail cut off the last segment, if there was one. */
  truncatedTail: { file: string; offset: number; bytesRemoved: number; reason: string } | null;
  /** With salvage: where the durable prefix ended and what was set aside. */
  damage: DamageReport | null;
  quarantined: string[];
}

export interface RecoverOptions {
  io: FileIo;
  dir: string;
  shard: number;
  salvage: boolean;
  repair: boolean;
  /**
   * Called once with the listed segments (heads read, no body yet), before anything is
   * scanned; returns the seq whose segment the scan starts at (default 1: scan everything).
   * Where the snapshot is restored (wal-open.ts).
   */
  chooseScanStart?: (segments: readonly ListedSegment[]) => Promise<number>;
  /** Called for every intact event batch of the scanned segments, in seq order, with the segment's bytes. */
  onBatch?: (bytes: Uint8Array, batch: ScannedBatch, segment: RecoveredSegment) => void;
  onProgress?: (done: number, total: number) => void;
}

export interface RecoveryResult {
  report: RecoveryReport;
  segments: RecoveredSegment[];
}

export async function recoverShard(options: RecoverOptions): Promise<RecoveryResult> {
  const startMs = performance.now();
  const { io, dir, shard } = options;
  let names = listShardSegments(await io.readdir(dir), shard);
  const report: RecoveryReport = {
    segments: 0,
    scannedSegments: 0,
    batches: 0,
    events: 0,
    bytesScanned: 0,
    durationMs: 0,
    firstSeq: names[0]?.firstSeq ?? 0,
    lastSeq: 0,
    truncatedTail: null,
    damage: null,
    quarantined: [],
  };

  // Heads first: the chain of markers tells whether a segment is missing.
  const listed: ListedSegment[] = [];
  for (let index = 0; index < names.length; index++) {
    const name = names[index];
    const path = join(dir, name.fileName);
    let head: SegmentHead;
    try {
      head = await readSegmentHead(io, dir, name.fileName, { shard, firstSeq: name.firstSeq });
    } catch (error) {
      if (!isTidelogError(error, 'CHECKPOINT_DAMAGED')) throw error;
      const reason = error.message.slice(error.message.indexOf(' at offset 0: ') + ' at offset 0: '.length);
      const damage: DamageReport = { file: path, offset: 0, code: 'CHECKPOINT_DAMAGED', reason };
      await handleDamage(options, report, names.slice(index).map((n) => n.fileName), damage, null);
      names = names.slice(0, index);
      break;
    }
    const previous = names[index - 1];
    if (previous !== undefined && head.kind === 'marker' && head.prevFirstSeq !== previous.firstSeq) {
      const damage: DamageReport = {
        file: path,
        offset: 0,
        code: 'SEGMENT_GAP',
        reason: `${name.fileName} follows the segment starting at seq ${head.prevFirstSeq}, but the segment before it is ${previous.fileName}`,
      };
      await handleDamage(options, report, names.slice(index).map((n) => n.fileName), damage, null);
      names = names.slice(0, index);
      break;
    }
    listed.push({ fileName: name.fileName, firstSeq: name.firstSeq, head });
  }

  const startSeq = options.chooseScanStart === undefined ? 1 : await options.chooseScanStart(listed);
  let scanFrom = 0;
  for (let index = 0; index < listed.length; index++) if (listed[index].firstSeq <= startSeq) scanFrom = index;

  const segments: RecoveredSegment[] = [];
  for (let index = 0; index < scanFrom; index++) {
    const entry = listed[index];
    const file = await io.open(join(dir, entry.fileName), 'read');
    let bytes: number;
    try {
      bytes = await file.size();
    } finally {
      await file.close();
    }
    segments.push({
      fileName: entry.fileName,
      firstSeq: entry.firstSeq,
      lastSeq: listed[index + 1].firstSeq - 1,
      bytes,
      headBytes: entry.head.headBytes,
      openedAtNs: entry.head.timestampNs,
      headKind: entry.head.kind,
      isScanned: false,
      newestBatchNs: -1n,
      newestDedupNs: -1n,
      index: null,
    });
    options.onProgress?.(index + 1, listed.length);
  }

  for (let index = scanFrom; index < listed.length; index++) {
    const name = listed[index];
    const path = join(dir, name.fileName);
    const previous = segments[segments.length - 1];
    if (previous !== undefined && name.firstSeq !== previous.lastSeq + 1) {
      const damage: DamageReport = {
        file: path,
        offset: 0,
        code: 'SEGMENT_GAP',
        reason: `${previous.fileName} ends at seq ${previous.lastSeq} but ${name.fileName} starts at ${name.firstSeq}`,
      };
      await handleDamage(options, report, listed.slice(index).map((n) => n.fileName), damage, null);
      break;
    }
    const bytes = await readWhole(io, path);
    report.bytesScanned += bytes.byteLength;
    report.scannedSegments++;
    const scan = scanSegment(bytes, { shard, firstSeq: name.firstSeq, isLastSegment: index === listed.length - 1 });
    if (scan.head !== null) {
      const segment: RecoveredSegment = {
        fileName: name.fileName,
        firstSeq: scan.firstSeq,
        lastSeq: scan.lastSeq,
        bytes: scan.validBytes,
        headBytes: scan.headBytes,
        openedAtNs: scan.head.timestampNs,
        headKind: scan.head.kind,
        isScanned: true,
        newestBatchNs: -1n,
        newestDedupNs: -1n,
        index: new SegmentIndex(scan.headBytes),
      };
      segments.push(segment);
      for (const batch of scan.batches) {
        segment.index?.add(batch.header.firstSeq, batch.offset);
        if (batch.header.count > 0 && batch.header.timestampNs > segment.newestBatchNs) segment.newestBatchNs = batch.header.timestampNs;
        if (batch.header.count > 0 && !batch.header.skipsDedup && batch.header.timestampNs > segment.newestDedupNs) segment.newestDedupNs = batch.header.timestampNs;
        options.onBatch?.(bytes, batch, segment);
        report.batches++;
        report.events += batch.header.count;
      }
    }
    if (scan.tornTail !== null) {
      report.truncatedTail = {
        file: path,
        offset: scan.tornTail.offset,
        bytesRemoved: scan.fileBytes - scan.validBytes,
        reason: scan.tornTail.reason,
      };
      if (options.repair) await truncateFile(io, path, scan.validBytes);
    }
    if (scan.damage !== null) {
      const intact = scan.head !== null;
      const damage: DamageReport = { ...scan.damage, file: path };
      const keepPrefix = intact ? { fileName: name.fileName, validBytes: scan.validBytes, bytes } : null;
      const setAside = listed.slice(index + (intact ? 1 : 0)).map((n) => n.fileName);
      await handleDamage(options, report, setAside, damage, keepPrefix);
      break;
    }
    options.onProgress?.(index + 1, listed.length);
  }
  report.segments = segments.length;
  if (segments.length > 0) {
    report.firstSeq = segments[0].firstSeq;
    report.lastSeq = segments[segments.length - 1].lastSeq;
  }
  report.durationMs = performance.now() - startMs;
  return { report, segments };
}

async function handleDamage(
  options: RecoverOptions,
  report: RecoveryReport,
  setAside: string[],
  damage: DamageReport,
  keepPrefix: { fileName: string; validBytes: number; bytes: Uint8Array } | null,
): Promise<void> {
  if (!options.salvage) {
    throw new TidelogError(damage.code, `${damage.file} at offset ${damage.offset}: ${damage.reason}`, {
      details: { file: damage.file, offset: damage.offset },
    });
  }
  report.damage = damage;
  if (!options.repair) return;
  const { io, dir } = options;
  if (keepPrefix !== null) {
    // Keep the original bytes for forensics, then cut the live segment at the damage.
    const asidePath = await asidePathFor(io, dir, keepPrefix.fileName);
    const aside = await io.open(asidePath, 'create');
    try {
      await writeFully(aside, keepPrefix.bytes, 0);
      await aside.sync();
    } finally {
      await aside.close();
    }
    report.quarantined.push(asidePath);
    await truncateFile(io, join(dir, keepPrefix.fileName), keepPrefix.validBytes);
  }
  for (const fileName of setAside) report.quarantined.push(await setAsideFile(io, dir, fileName));
  await io.syncDir(dir);
}

/** `<name>.damaged`, or `<name>.damaged.N` when an earlier salvage already used it: never overwrite evidence. */
async function asidePathFor(io: FileIo, dir: string, fileName: string): Promise<string> {
  for (let attempt = 0; attempt < 10_000; attempt++) {
    const path = join(dir, attempt === 0 ? `${fileName}.damaged` : `${fileName}.damaged.${attempt}`);
    if (!(await io.exists(path))) return path;
  }
  throw new TidelogError('IO_ERROR', `too many damaged copies of ${fileName} in ${dir}`);
}

/** Renames a file out of the log (it keeps its bytes); returns the new path. */
export async function setAsideFile(io: FileIo, dir: string, fileName: string): Promise<string> {
  const asidePath = await asidePathFor(io, dir, fileName);
  await io.rename(join(dir, fileName), asidePath);
  return asidePath;
}

async function truncateFile(io: FileIo, path: string, length: number): Promise<void> {
  const file = await io.open(path, 'readwrite');
  try {
    await file.truncate(length);
    await file.sync();
  } finally {
    await file.close();
  }
}
