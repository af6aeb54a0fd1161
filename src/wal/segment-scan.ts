// Reads one segment's bytes and decides what in it can be trusted.
//
// A segment is: head record (marker, or a legacy checkpoint record), then event batches with
// consecutive seqs. The scan stops
// at the first record that fails (bad header, length past the end, checksum mismatch) and
// classifies the failure:
//   - torn tail:  the segment is the shard's last, no intact batch exists after the failure
//                 point, and the failed record looks like what a crash leaves (incomplete,
//                 or ending in zero-filled sectors: see looksTorn) → truncate there;
//   - damage:     anything else (an intact batch follows, the segment is not the last, the
//                 checkpoint record is bad, seqs do not continue) → an error naming file and
//                 offset, or under `salvage` the end of the durable prefix.
// Segments are created by rename after their head record is synced, so a damaged head record
// is always damage, never a torn tail. A notes-only batch (count 0, see
// batch-format.ts) takes firstSeq = the next seq and leaves lastSeq where it was.

import type { ErrorCode } from '../errors.ts';
import {
  BATCH_HEADER_BYTES,
  BATCH_MAGIC,
  BatchKind,
  NO_NOTES,
  readBatchHeader,
  readNotes,
  verifyBatch,
  type BatchHeader,
} from './batch-format.ts';
import { EVENT_BYTES } from '../event.ts';
import { decodeMarkerPayload } from './segment-head.ts';

export interface ScannedBatch {
  /** Offset of the batch header in the segment. */
  offset: number;
  header: BatchHeader;
  /** The batch's notes (views into the segment's bytes); NO_NOTES when it has none. */
  notes: readonly Uint8Array[];
}

export interface SegmentDamage {
  code: ErrorCode;
  offset: number;
  reason: string;
}

export interface ScannedHead {
  kind: 'marker' | 'legacy';
  timestampNs: bigint;
  leaderEpoch: number;
  /** Marker only (0 for a legacy head). */
  snapshotSeq: number;
  /** Marker only (0 for a legacy head). */
  prevFirstSeq: number;
  /** Marker only: newest seal time of a deduplicated batch in the segment before (0n: none; -1n legacy: unknown). */
  prevDedupNs: bigint;
  /** Legacy only: the state machine's snapshot as of firstSeq − 1 (a view of the segment's bytes). */
  legacySnapshot: Uint8Array | null;
}

export interface SegmentScan {
  firstSeq: number;
  /** Seq of the last intact event; firstSeq - 1 when the segment holds no event. */
  lastSeq: number;
  /** The head record (null when it is damaged). */
  head: ScannedHead | null;
  /** Bytes the head record takes (0 when it is damaged). */
  headBytes: number;
  batches: ScannedBatch[];
  /** End of the last intact record: everything before it verified. */
  validBytes: number;
  fileBytes: number;
  /** Set when a torn tail follows validBytes (only ever on the last segment). */
  tornTail: { offset: number; reason: string } | null;
  /** Set when the segment is damaged at `offset`; records before it are intact. */
  damage: SegmentDamage | null;
}

export interface ScanOptions {
  shard: number;
  firstSeq: number;
  isLastSegment: boolean;
}

export function scanSegment(bytes: Uint8Array, options: ScanOptions): SegmentScan {
  const scan: SegmentScan = {
    firstSeq: options.firstSeq,
    lastSeq: options.firstSeq - 1,
    head: null,
    headBytes: 0,
    batches: [],
    validBytes: 0,
    fileBytes: bytes.byteLength,
    tornTail: null,
    damage: null,
  };

  const head = readRecord(bytes, 0);
  if (!head.ok) {
    scan.damage = { code: 'CHECKPOINT_DAMAGED', offset: 0, reason: `head record: ${head.reason}` };
    return scan;
  }
  const headHeader = head.header;
  if (headHeader.kind !== BatchKind.Checkpoint && headHeader.kind !== BatchKind.Marker) {
    scan.damage = { code: 'CHECKPOINT_DAMAGED', offset: 0, reason: 'segment does not open with a marker or checkpoint record' };
    return scan;
  }
  if (headHeader.shardId !== options.shard || headHeader.firstSeq !== options.firstSeq) {
    scan.damage = {
      code: 'CHECKPOINT_DAMAGED',
      offset: 0,
      reason: `head record names shard ${headHeader.shardId} seq ${headHeader.firstSeq}, file name says shard ${options.shard} seq ${options.firstSeq}`,
    };
    return scan;
  }
  const headPayload = bytes.subarray(BATCH_HEADER_BYTES, BATCH_HEADER_BYTES + headHeader.payloadBytes);
  if (headHeader.kind === BatchKind.Marker) {
    const marker = decodeMarkerPayload(headPayload);
    if (typeof marker === 'string') {
      scan.damage = { code: 'CHECKPOINT_DAMAGED', offset: 0, reason: `head record: ${marker}` };
      return scan;
    }
    scan.head = { kind: 'marker', timestampNs: headHeader.timestampNs, leaderEpoch: headHeader.leaderEpoch, ...marker, legacySnapshot: null };
  } else {
    scan.head = { kind: 'legacy', timestampNs: headHeader.timestampNs, leaderEpoch: headHeader.leaderEpoch, snapshotSeq: 0, prevFirstSeq: 0, prevDedupNs: -1n, legacySnapshot: headPayload };
  }
  let offset = BATCH_HEADER_BYTES + headHeader.payloadBytes;
  scan.headBytes = offset;
  scan.validBytes = offset;

  while (offset < bytes.byteLength) {
    const record = readRecord(bytes, offset);
    if (!record.ok) {
      const intactAfter = findIntactRecordAfter(bytes, searchFrom(bytes, offset), options.shard, scan.lastSeq);
      if (options.isLastSegment && intactAfter < 0 && looksTorn(bytes, offset)) {
        scan.tornTail = { offset, reason: record.reason };
      } else {
        const where = intactAfter >= 0 ? `; an intact record follows at ${intactAfter}` : '';
        const whole = intactAfter < 0 && options.isLastSegment ? '; the record is complete, so this is not a torn write' : '';
        scan.damage = { code: record.code, offset, reason: `${record.reason}${where}${whole}` };
      }
      return scan;
    }
    const header = record.header;
    if (header.kind !== BatchKind.Events || header.shardId !== options.shard || header.firstSeq !== scan.lastSeq + 1) {
      scan.damage = {
        code: 'CORRUPT_SEGMENT',
        offset,
        reason:
          header.kind !== BatchKind.Events
            ? 'head record in the middle of a segment'
            : header.shardId !== options.shard
              ? `batch of shard ${header.shardId} in a segment of shard ${options.shard}`
              : `batch starts at seq ${header.firstSeq}, expected ${scan.lastSeq + 1}`,
      };
      return scan;
    }
    scan.batches.push({ offset, header, notes: record.notes });
    scan.lastSeq = header.firstSeq + header.count - 1;
    offset += BATCH_HEADER_BYTES + header.payloadBytes;
    scan.validBytes = offset;
  }
  return scan;
}

type RecordResult =
  | { ok: true; header: BatchHeader; notes: readonly Uint8Array[] }
  | { ok: false; code: ErrorCode; reason: string };

/** Reads and verifies the record at `offset`, and splits its notes section. */
export function readRecord(bytes: Uint8Array, offset: number): RecordResult {
  const parsed = readBatchHeader(bytes, offset);
  if (!parsed.ok) {
    return { ok: false, code: 'CORRUPT_SEGMENT', reason: `bad header (${parsed.problem})` };
  }
  const end = offset + BATCH_HEADER_BYTES + parsed.header.payloadBytes;
  if (end > bytes.byteLength) {
    return {
      ok: false,
      code: 'CORRUPT_SEGMENT',
      reason: `record of ${parsed.header.payloadBytes} payload bytes runs past the end (${bytes.byteLength})`,
    };
  }
  if (!verifyBatch(bytes, offset, parsed.header.payloadBytes)) {
    return { ok: false, code: 'CHECKSUM_MISMATCH', reason: 'checksum mismatch' };
  }
  const header = parsed.header;
  if (header.notesBytes === 0) return { ok: true, header, notes: NO_NOTES };
  // The checksum held, so lengths that do not add up were written that way: damage, not a tear.
  const notes = readNotes(bytes, offset + BATCH_HEADER_BYTES + header.count * EVENT_BYTES, header.notesBytes);
  if (notes === null) return { ok: false, code: 'CORRUPT_SEGMENT', reason: 'notes section does not parse' };
  return { ok: true, header, notes };
}

/**
 * Whether a failed record at `offset` (the last thing in the file) is what a crash leaves.
 * Segments are append-only files, so a crash mid-write leaves a prefix of the intended bytes,
 * possibly followed by zeroes where the file system extended the file without the data:
 *   - fewer than 64 bytes remain, or
 *   - a structurally valid header whose record runs past the end of the file, or
 *   - the file ends in zeroes that begin at `offset` or at a 512-byte boundary inside the
 *     record (a zero-filled sector).
 * A complete record that fails its checksum without such zeroes is a bit flip or an
 * overwrite: damage, never silently cut, because it may have been acknowledged.
 */
export function looksTorn(bytes: Uint8Array, offset: number): boolean {
  const end = bytes.byteLength;
  if (end - offset < BATCH_HEADER_BYTES) return true;
  const parsed = readBatchHeader(bytes, offset);
  if (parsed.ok && offset + BATCH_HEADER_BYTES + parsed.header.payloadBytes > end) return true;
  let zeroesFrom = end;
  while (zeroesFrom > offset && bytes[zeroesFrom - 1] === 0) zeroesFrom--;
  if (zeroesFrom === offset) return true;
  const sectorBoundary = Math.ceil(Math.max(zeroesFrom, offset + 1) / 512) * 512;
  return sectorBoundary < end;
}

/** Where to look for intact records after a failure: past the failed record's claimed span when its header parses. */
function searchFrom(bytes: Uint8Array, offset: number): number {
  const parsed = readBatchHeader(bytes, offset);
  if (!parsed.ok) return offset + 1;
  return Math.min(bytes.byteLength, offset + BATCH_HEADER_BYTES + parsed.header.payloadBytes);
}

/**
 * Offset of the first intact event batch of this shard, later in the log than `lastSeq`, at
 * or after `from`; -1 if none. Only such a batch proves that data after the failure was
 * written in a later flush. Only runs on the error path.
 */
function findIntactRecordAfter(bytes: Uint8Array, from: number, shard: number, lastSeq: number): number {
  const b0 = BATCH_MAGIC & 0xff;
  for (let offset = bytes.indexOf(b0, from); offset >= 0; offset = bytes.indexOf(b0, offset + 1)) {
    if (bytes.byteLength - offset < BATCH_HEADER_BYTES) return -1;
    const record = readRecord(bytes, offset);
    if (
      record.ok &&
      record.header.kind === BatchKind.Events &&
      record.header.shardId === shard &&
      record.header.firstSeq > lastSeq
    ) {
      return offset;
    }
  }
  return -1;
}
