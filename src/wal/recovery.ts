// Recovery: scan a shard's segments in order, verify every checksum, and decide where the
// durable log ends. Feeds every intact batch, in seq order, to `onBatch`.
//
//   - segments must continue each other: next.firstSeq === previous.lastSeq + 1, else
//     SEGMENT_GAP naming both files;
//   - a torn tail of the last segment (any byte offset, trailing zeroes) is cut off;
//   - any other damage is an error naming file and offset — or, with `salvage`, the end of
//     the durable prefix: the damaged segment is kept aside as `<name>.damaged` and cut at
//     the damage, later segments are renamed `<name>.damaged`, and the log continues.
// With `repair: false` (the verify CLI) nothing on disk changes.

import { join } from 'node:path';
import { TidelogError } from '../errors.ts';
import { readWhole, writeFully, type FileIo } from './file-io.ts';
import { listShardSegments } from './segment-name.ts';
import { scanSegment, type ScannedBatch, type SegmentDamage } from './segment-scan.ts';

export interface RecoveredSegment {
  fileName: string;
  firstSeq: number;
  lastSeq: number;
  /** Intact bytes (after any truncation). */
  bytes: number;
  /** The head checkpoint record's snapshot. */
  snapshot: Uint8Array;
}

export interface DamageReport extends SegmentDamage {
  file: string;
}

export interface RecoveryReport {
  segments: number;
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
  /** Called for every intact event batch in seq order with the segment's bytes. */
  onBatch?: (bytes: Uint8Array, batch: ScannedBatch, segment: RecoveredSegment) => void;
  /** Called before a segment's batches with its head snapshot. */
  onSegment?: (segment: RecoveredSegment, index: number) => void;
  onProgress?: (done: number, total: number) => void;
}

export interface RecoveryResult {
  report: RecoveryReport;
  segments: RecoveredSegment[];
}

export async function recoverShard(options: RecoverOptions): Promise<RecoveryResult> {
  const startMs = performance.now();
  const { io, dir, shard } = options;
  const names = listShardSegments(await io.readdir(dir), shard);
  const report: RecoveryReport = {
    segments: 0,
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
  const segments: RecoveredSegment[] = [];

  for (let index = 0; index < names.length; index++) {
    const name = names[index];
    const path = join(dir, name.fileName);
    const previous = segments[segments.length - 1];
    if (previous !== undefined && name.firstSeq !== previous.lastSeq + 1) {
      const damage: DamageReport = {
        file: path,
        offset: 0,
        code: 'SEGMENT_GAP',
        reason: `${previous.fileName} ends at seq ${previous.lastSeq} but ${name.fileName} starts at ${name.firstSeq}`,
      };
      await handleDamage(options, report, names.slice(index).map((n) => n.fileName), damage, null);
      break;
    }
    const bytes = await readWhole(io, path);
    report.bytesScanned += bytes.byteLength;
    const scan = scanSegment(bytes, { shard, firstSeq: name.firstSeq, isLastSegment: index === names.length - 1 });
    const intact = scan.damage === null || scan.damage.code !== 'CHECKPOINT_DAMAGED';
    if (intact && scan.snapshot !== null) {
      const segment: RecoveredSegment = {
        fileName: name.fileName,
        firstSeq: scan.firstSeq,
        lastSeq: scan.lastSeq,
        bytes: scan.validBytes,
        snapshot: scan.snapshot.slice(),
      };
      segments.push(segment);
      options.onSegment?.(segment, index);
      for (const batch of scan.batches) {
        options.onBatch?.(bytes, batch, segment);
        report.batches++;
        report.events += batch.header.count;
      }
      report.lastSeq = scan.lastSeq;
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
      const damage: DamageReport = { ...scan.damage, file: path };
      const keepPrefix = intact ? { fileName: name.fileName, validBytes: scan.validBytes, bytes } : null;
      const setAside = names.slice(index + (intact ? 1 : 0)).map((n) => n.fileName);
      await handleDamage(options, report, setAside, damage, keepPrefix);
      break;
    }
    options.onProgress?.(index + 1, names.length);
  }
  report.segments = segments.length;
  if (segments.length > 0) report.firstSeq = segments[0].firstSeq;
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
