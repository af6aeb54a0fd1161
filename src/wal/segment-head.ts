// The record that opens a segment. Since state snapshots live in files of their own
// (snapshot-file.ts), a segment opens with a small marker record — batch format v2 of kind
// marker — that says where the segment sits, never the state itself, so rotating a segment
// costs the same whatever the state's size. Invariant: a segment's head is written and
// fsynced before the segment gets its final name, so a damaged head is damage, never a tear.
//
// Marker payload (32 bytes; the record's header carries firstSeq, leaderEpoch, timestampNs):
//
//   offset  size  field         notes
//   ------  ----  ------------  ------------------------------------------------------------
//        0     4  magic         ASCII "TLMK"
//        4     2  version       u16 = 1
//        6     2  reserved      0
//        8     8  snapshotSeq   u64 seq of the newest durable snapshot file when the segment
//                               opened (0: none yet)
//       16     8  prevFirstSeq  u64 first seq of the segment before it (0: none), so a missing
//                               segment is seen from the heads alone, without reading bodies
//       24     8  prevDedupNs   u64 newest seal time of a batch in the segment before it whose
//                               events entered the content dedup window (0: none), so the
//                               window's rebuild on open reads only segments that feed it
//   ------  ----
//       32 bytes
//
// The header's timestampNs is the time the segment opened. Batch seal times never go back
// within a shard (commit-queue.ts), so it bounds every batch of the segment before it from
// above: retention by age and seek by time use that without reading the older segment.
//
// Segments written before markers existed open with a checkpoint record whose payload is the
// state machine's snapshot as of firstSeq − 1 (a "legacy head"); they are read, never written.

import { join } from 'node:path';
import { TidelogError } from '../errors.ts';
import { BATCH_HEADER_BYTES, BatchKind, MARKER_PAYLOAD_BYTES, encodeBatch, readBatchHeader, verifyBatch } from './batch-format.ts';
import { readFully, type FileIo } from './file-io.ts';

const MARKER_MAGIC = 0x4b4d4c54; // "TLMK" read as u32 little-endian
const MARKER_VERSION = 1;

export interface MarkerFields {
  shard: number;
  firstSeq: number;
  leaderEpoch: number;
  timestampNs: bigint;
  snapshotSeq: number;
  prevFirstSeq: number;
  /** Newest seal time of a deduplicated batch in the segment before (0n: none). */
  prevDedupNs: bigint;
}

export function encodeMarkerRecord(fields: MarkerFields): Uint8Array {
  const payload = new Uint8Array(MARKER_PAYLOAD_BYTES);
  const view = new DataView(payload.buffer);
  view.setUint32(0, MARKER_MAGIC, true);
  view.setUint16(4, MARKER_VERSION, true);
  view.setBigUint64(8, BigInt(fields.snapshotSeq), true);
  view.setBigUint64(16, BigInt(fields.prevFirstSeq), true);
  view.setBigUint64(24, fields.prevDedupNs, true);
  return encodeBatch(
    {
      kind: BatchKind.Marker,
      shardId: fields.shard,
      count: 0,
      leaderEpoch: fields.leaderEpoch,
      firstSeq: fields.firstSeq,
      timestampNs: fields.timestampNs,
    },
    payload,
  );
}

/** What a segment's head says, as read by readSegmentHead. */
export interface SegmentHead {
  kind: 'marker' | 'legacy';
  /** Bytes the head record takes: the first batch starts here. */
  headBytes: number;
  timestampNs: bigint;
  leaderEpoch: number;
  /** Marker only (0 for a legacy head). */
  snapshotSeq: number;
  /** Marker only (0 for a legacy head: unknown). */
  prevFirstSeq: number;
  /** Marker only: newest seal time of a deduplicated batch in the segment before (0n: none); -1n: unknown (legacy). */
  prevDedupNs: bigint;
  /** Legacy only: length of the snapshot in the head (read it with readLegacySnapshot). */
  legacySnapshotBytes: number;
}

/** The marker fields of a verified marker payload, or a reason it is not one. */
export function decodeMarkerPayload(payload: Uint8Array): { snapshotSeq: number; prevFirstSeq: number; prevDedupNs: bigint } | string {
  if (payload.byteLength !== MARKER_PAYLOAD_BYTES) return `marker payload of ${payload.byteLength} bytes`;
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  if (view.getUint32(0, true) !== MARKER_MAGIC) return 'bad marker magic';
  if (view.getUint16(4, true) !== MARKER_VERSION) return `unknown marker version ${view.getUint16(4, true)}`;
  const snapshotSeq = view.getBigUint64(8, true);
  const prevFirstSeq = view.getBigUint64(16, true);
  if (snapshotSeq > BigInt(Number.MAX_SAFE_INTEGER) || prevFirstSeq > BigInt(Number.MAX_SAFE_INTEGER)) return 'marker seq beyond 2^53';
  return { snapshotSeq: Number(snapshotSeq), prevFirstSeq: Number(prevFirstSeq), prevDedupNs: view.getBigUint64(24, true) };
}

/**
 * Reads and checks a segment's head record. A marker is verified whole (it is 96 bytes). A
 * legacy head's header is checked for structure, and its checksum only when `verifyLegacy`
 * (that means reading the whole snapshot it carries). CHECKPOINT_DAMAGED for anything wrong.
 */
export async function readSegmentHead(
  io: FileIo,
  dir: string,
  fileName: string,
  expected: { shard: number; firstSeq: number },
): Promise<SegmentHead> {
  const path = join(dir, fileName);
  const damaged = (reason: string): TidelogError =>
    new TidelogError('CHECKPOINT_DAMAGED', `${path} at offset 0: ${reason}`, { details: { file: path, offset: 0 } });
  const file = await io.open(path, 'read');
  try {
    const bytes = new Uint8Array(BATCH_HEADER_BYTES + MARKER_PAYLOAD_BYTES);
    const read = await readFully(file, bytes, 0);
    const parsed = readBatchHeader(bytes.subarray(0, read), 0);
    if (!parsed.ok) throw damaged(`head record: bad header (${parsed.problem})`);
    const header = parsed.header;
    if (header.shardId !== expected.shard || header.firstSeq !== expected.firstSeq) {
      throw damaged(`head record names shard ${header.shardId} seq ${header.firstSeq}, file name says shard ${expected.shard} seq ${expected.firstSeq}`);
    }
    if (header.kind === BatchKind.Marker) {
      if (read < bytes.byteLength || !verifyBatch(bytes, 0, MARKER_PAYLOAD_BYTES)) throw damaged('head record: checksum mismatch');
      const marker = decodeMarkerPayload(bytes.subarray(BATCH_HEADER_BYTES));
      if (typeof marker === 'string') throw damaged(marker);
      return {
        kind: 'marker',
        headBytes: BATCH_HEADER_BYTES + MARKER_PAYLOAD_BYTES,
        timestampNs: header.timestampNs,
        leaderEpoch: header.leaderEpoch,
        snapshotSeq: marker.snapshotSeq,
        prevFirstSeq: marker.prevFirstSeq,
        prevDedupNs: marker.prevDedupNs,
        legacySnapshotBytes: 0,
      };
    }
    if (header.kind !== BatchKind.Checkpoint) throw damaged('segment does not open with a marker or checkpoint record');
    return {
      kind: 'legacy',
      headBytes: BATCH_HEADER_BYTES + header.payloadBytes,
      timestampNs: header.timestampNs,
      leaderEpoch: header.leaderEpoch,
      snapshotSeq: 0,
      prevFirstSeq: 0,
      prevDedupNs: -1n,
      legacySnapshotBytes: header.payloadBytes,
    };
  } finally {
    await file.close();
  }
}

/** The snapshot a legacy head carries, checksum verified (CHECKPOINT_DAMAGED otherwise). */
export async function readLegacySnapshot(io: FileIo, dir: string, fileName: string, head: SegmentHead): Promise<Uint8Array> {
  const path = join(dir, fileName);
  const file = await io.open(path, 'read');
  try {
    const bytes = new Uint8Array(head.headBytes);
    const read = await readFully(file, bytes, 0);
    if (read < bytes.byteLength || !verifyBatch(bytes, 0, head.legacySnapshotBytes)) {
      throw new TidelogError('CHECKPOINT_DAMAGED', `${path} at offset 0: head record: checksum mismatch`, { details: { file: path, offset: 0 } });
    }
    return bytes.subarray(BATCH_HEADER_BYTES);
  } finally {
    await file.close();
  }
}
