// Batch format v2: the unit of group commit and of replication. One fixed 64-byte header,
// then the payload; one BLAKE3-128 checksum covers both, so a reader trusts nothing in a
// header until the checksum over header and payload verifies.
//
//   offset  size  field         notes
//   ------  ----  ------------  -----------------------------------------------------------
//        0     4  magic         ASCII "TLB2" (0x54 0x4C 0x42 0x32)
//        4     2  version       u16 = 2
//        6     2  flags         bits 0-1: kind (0 = events, 1 = checkpoint); others 0
//        8     4  shardId       u32 (tidelog limits shard ids to 0..65535)
//       12     4  count         u32 events in the payload; 0 for a checkpoint record
//       16     8  leaderEpoch   u64 fencing token of the leader that wrote it (0 = none)
//       24     8  firstSeq      u64 seq of the first event; checkpoint: the segment's first seq
//       32     4  payloadBytes  u32 events: count × 21; checkpoint: snapshot length
//       36     4  reserved      0
//       40     8  timestampNs   u64 wall/HLC time the batch was sealed (dedup rebuild uses it)
//       48    16  checksum      BLAKE3-128 over bytes [0, 48) followed by the payload
//   ------  ----
//       64 bytes, then payloadBytes of payload; all integers little-endian
//
// A checkpoint record opens every segment: its payload is the state machine's snapshot as
// of seq firstSeq - 1, so every segment can rebuild state without the segments before it.

import { EVENT_BYTES } from '../event.ts';
import { CHECKSUM_BYTES, checksumEquals, checksumInto } from './checksum.ts';

export const BATCH_HEADER_BYTES = 64;
export const BATCH_VERSION = 2;
export const BATCH_MAGIC = 0x32424c54; // "TLB2" read as u32 little-endian
/** Hard ceiling on one payload: a header claiming more is damage, not a batch. */
export const MAX_PAYLOAD_BYTES = 256 * 1024 * 1024;
export const MAX_SEQ = Number.MAX_SAFE_INTEGER;

const CHECKSUM_OFFSET = 48;

export const enum BatchKind {
  Events = 0,
  Checkpoint = 1,
}

export interface BatchHeader {
  kind: BatchKind;
  shardId: number;
  count: number;
  leaderEpoch: number;
  firstSeq: number;
  payloadBytes: number;
  timestampNs: bigint;
}

/** Writes header fields and checksum into `buffer`, whose payload already sits at offset 64. */
export function sealBatch(buffer: Uint8Array, header: BatchHeader): Uint8Array {
  const view = new DataView(buffer.buffer, buffer.byteOffset, BATCH_HEADER_BYTES);
  view.setUint32(0, BATCH_MAGIC, true);
  view.setUint16(4, BATCH_VERSION, true);
  view.setUint16(6, header.kind, true);
  view.setUint32(8, header.shardId, true);
  view.setUint32(12, header.count, true);
  view.setBigUint64(16, BigInt(header.leaderEpoch), true);
  view.setBigUint64(24, BigInt(header.firstSeq), true);
  view.setUint32(32, header.payloadBytes, true);
  view.setUint32(36, 0, true);
  view.setBigUint64(40, header.timestampNs, true);
  const end = BATCH_HEADER_BYTES + header.payloadBytes;
  checksumInto(
    [buffer.subarray(0, CHECKSUM_OFFSET), buffer.subarray(BATCH_HEADER_BYTES, end)],
    buffer,
    CHECKSUM_OFFSET,
  );
  return buffer.subarray(0, end);
}

/** Encodes a whole batch from a payload (copying it); the hot path uses sealBatch in place. */
export function encodeBatch(header: Omit<BatchHeader, 'payloadBytes'>, payload: Uint8Array): Uint8Array {
  const buffer = new Uint8Array(BATCH_HEADER_BYTES + payload.byteLength);
  buffer.set(payload, BATCH_HEADER_BYTES);
  return sealBatch(buffer, { ...header, payloadBytes: payload.byteLength });
}

export type HeaderProblem =
  | 'short' // fewer than 64 bytes remain
  | 'magic'
  | 'version'
  | 'flags'
  | 'length' // payloadBytes impossible for the kind/count or beyond MAX_PAYLOAD_BYTES
  | 'seq'; // firstSeq beyond MAX_SEQ

export type HeaderResult = { ok: true; header: BatchHeader } | { ok: false; problem: HeaderProblem };

/** Parses the header at `offset` without trusting it: the checksum is checked by verifyBatch. */
export function readBatchHeader(bytes: Uint8Array, offset: number): HeaderResult {
  if (bytes.byteLength - offset < BATCH_HEADER_BYTES) return { ok: false, problem: 'short' };
  const view = new DataView(bytes.buffer, bytes.byteOffset + offset, BATCH_HEADER_BYTES);
  if (view.getUint32(0, true) !== BATCH_MAGIC) return { ok: false, problem: 'magic' };
  if (view.getUint16(4, true) !== BATCH_VERSION) return { ok: false, problem: 'version' };
  const kind = view.getUint16(6, true);
  if (kind !== BatchKind.Events && kind !== BatchKind.Checkpoint) return { ok: false, problem: 'flags' };
  const count = view.getUint32(12, true);
  const payloadBytes = view.getUint32(32, true);
  const lengthIsPossible =
    payloadBytes <= MAX_PAYLOAD_BYTES &&
    (kind === BatchKind.Events ? count > 0 && payloadBytes === count * EVENT_BYTES : count === 0);
  if (!lengthIsPossible || view.getUint32(36, true) !== 0) return { ok: false, problem: 'length' };
  const firstSeq = view.getBigUint64(24, true);
  const leaderEpoch = view.getBigUint64(16, true);
  if (firstSeq < 1n || firstSeq > BigInt(MAX_SEQ) || leaderEpoch > BigInt(MAX_SEQ)) {
    return { ok: false, problem: 'seq' };
  }
  return {
    ok: true,
    header: {
      kind,
      shardId: view.getUint32(8, true),
      count,
      leaderEpoch: Number(leaderEpoch),
      firstSeq: Number(firstSeq),
      payloadBytes,
      timestampNs: view.getBigUint64(40, true),
    },
  };
}

/** True when the checksum over the header at `offset` and its payload verifies. */
export function verifyBatch(bytes: Uint8Array, offset: number, payloadBytes: number): boolean {
  const payloadStart = offset + BATCH_HEADER_BYTES;
  return checksumEquals(
    [bytes.subarray(offset, offset + CHECKSUM_OFFSET), bytes.subarray(payloadStart, payloadStart + payloadBytes)],
    bytes,
    offset + CHECKSUM_OFFSET,
  );
}

export const BATCH_CHECKSUM_BYTES = CHECKSUM_BYTES;
