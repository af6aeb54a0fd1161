// Batch format v2: the unit of group commit and of replication. One fixed 64-byte header,
// then the payload; one BLAKE3-128 checksum covers both, so a reader trusts nothing in a
// header until the checksum over header and payload verifies.
//
//   offset  size  field         notes
//   ------  ----  ------------  -----------------------------------------------------------
//        0     4  magic         ASCII "TLB2" (0x54 0x4C 0x42 0x32)
//        4     2  version       u16 = 2
//        6     2  flags         bits 0-1: kind (0 = events, 1 = checkpoint, 2 = marker);
//                               bit 2: HAS_NOTES (events only); bit 3: SKIPS_DEDUP
//                               (events only: its events bypassed the content dedup
//                               window, e.g. session appends); other bits 0
//        8     4  shardId       u32 (tidelog limits shard ids to 0..65535)
//       12     4  count         u32 events in the payload; 0 for a checkpoint or marker record
//                               and for a notes-only events batch (HAS_NOTES set)
//       16     8  leaderEpoch   u64 fencing token of the leader that wrote it (0 = none)
//       24     8  firstSeq      u64 seq of the first event (count 0: the next seq, held by
//                               none); checkpoint, marker: the segment's first seq
//       32     4  payloadBytes  u32 events: count × 21 + notesBytes; checkpoint: snapshot length;
//                               marker: 32 (segment-head.ts)
//       36     4  notesBytes    u32 length of the notes section; 0 unless HAS_NOTES
//       40     8  timestampNs   u64 wall/HLC time the batch was sealed (dedup rebuild uses it)
//       48    16  checksum      BLAKE3-128 over bytes [0, 48) followed by the payload
//   ------  ----
//       64 bytes, then payloadBytes of payload; all integers little-endian
//
// An events payload is count × 21 bytes of packed events, then (HAS_NOTES only) the notes
// section: opaque records the WAL's user makes durable atomically with those events (the
// node's producer-session records). Each note:
//
//   offset  size    field
//   ------  ------  ------------------------------------
//        0       4  length  u32 note bytes, 1..65536
//        4  length  bytes   opaque
//
// repeated until exactly notesBytes are used (so notesBytes ≥ 5 when HAS_NOTES is set). A
// batch without notes is byte-identical to one written before notes existed.
//
// A checkpoint record opens every segment: its payload is the state machine's snapshot as
// of seq firstSeq - 1, so every segment can rebuild state without the segments before it.

import { EVENT_BYTES } from '../event.ts';
import { CHECKSUM_BYTES, checksumEquals, checksumInto } from './checksum.ts';

export const BATCH_HEADER_BYTES = 64;
/** Payload of a marker record (segment-head.ts). */
export const MARKER_PAYLOAD_BYTES = 32;
export const BATCH_VERSION = 2;
export const BATCH_MAGIC = 0x32424c54; // "TLB2" read as u32 little-endian
/** Hard ceiling on one payload: a header claiming more is damage, not a batch. */
export const MAX_PAYLOAD_BYTES = 256 * 1024 * 1024;
export const MAX_SEQ = Number.MAX_SAFE_INTEGER;
/**
 * Largest single note; a note is never empty. Big enough for a session note describing any
 * request a node accepts by default (32 768 events whose seqs alternate written/duplicate:
 * 12 bytes a run → 384 KiB); the node refuses requests whose note could be larger.
 */
export const MAX_NOTE_BYTES = 512 << 10;
/** The u32 length in front of every note. */
export const NOTE_LENGTH_BYTES = 4;

const CHECKSUM_OFFSET = 48;
const KIND_MASK = 0b0011;
const HAS_NOTES = 0b0100;
const SKIPS_DEDUP = 0b1000;

export const enum BatchKind {
  Events = 0,
  Checkpoint = 1,
  Marker = 2,
}

export interface BatchHeader {
  kind: BatchKind;
  shardId: number;
  count: number;
  leaderEpoch: number;
  firstSeq: number;
  /** Whole payload: events, then the notes section. */
  payloadBytes: number;
  /** Length of the notes section at the payload's end; 0 when the batch has no notes. */
  notesBytes: number;
  timestampNs: bigint;
  /** Events only: its events bypassed the content dedup window (the rebuild on open skips them). */
  skipsDedup: boolean;
}

/** What a writer supplies: notesBytes may be left out when there are none, skipsDedup when false. */
export type BatchFields = Omit<BatchHeader, 'notesBytes' | 'skipsDedup'> & { notesBytes?: number; skipsDedup?: boolean };

/** Shared "no notes" value, so batches without notes allocate nothing. */
export const NO_NOTES: readonly Uint8Array[] = Object.freeze([]);

/** Writes header fields and checksum into `buffer`, whose payload already sits at offset 64. */
export function sealBatch(buffer: Uint8Array, header: BatchFields): Uint8Array {
  const notesBytes = header.notesBytes ?? 0;
  const view = new DataView(buffer.buffer, buffer.byteOffset, BATCH_HEADER_BYTES);
  view.setUint32(0, BATCH_MAGIC, true);
  view.setUint16(4, BATCH_VERSION, true);
  view.setUint16(6, header.kind | (notesBytes > 0 ? HAS_NOTES : 0) | (header.skipsDedup === true ? SKIPS_DEDUP : 0), true);
  view.setUint32(8, header.shardId, true);
  view.setUint32(12, header.count, true);
  view.setBigUint64(16, BigInt(header.leaderEpoch), true);
  view.setBigUint64(24, BigInt(header.firstSeq), true);
  view.setUint32(32, header.payloadBytes, true);
  view.setUint32(36, notesBytes, true);
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
export function encodeBatch(header: Omit<BatchFields, 'payloadBytes'>, payload: Uint8Array): Uint8Array {
  const buffer = new Uint8Array(BATCH_HEADER_BYTES + payload.byteLength);
  buffer.set(payload, BATCH_HEADER_BYTES);
  return sealBatch(buffer, { ...header, payloadBytes: payload.byteLength });
}

/** Bytes the notes section for `notes` takes. */
export function notesSectionBytes(notes: readonly Uint8Array[]): number {
  let total = 0;
  for (const note of notes) total += NOTE_LENGTH_BYTES + note.byteLength;
  return total;
}

/** Writes the notes section at `offset` (room must exist); returns the bytes written. */
export function writeNotes(buffer: Uint8Array, offset: number, notes: readonly Uint8Array[]): number {
  const view = new DataView(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  let at = offset;
  for (const note of notes) {
    if (note.byteLength < 1 || note.byteLength > MAX_NOTE_BYTES) {
      throw new Error(`invariant violated: a note of ${note.byteLength} bytes`);
    }
    view.setUint32(at, note.byteLength, true);
    buffer.set(note, at + NOTE_LENGTH_BYTES);
    at += NOTE_LENGTH_BYTES + note.byteLength;
  }
  return at - offset;
}

/**
 * The notes of the section at `offset` (views into `bytes`), or null when its lengths do not
 * use exactly `notesBytes` or a note is empty or longer than MAX_NOTE_BYTES.
 */
export function readNotes(bytes: Uint8Array, offset: number, notesBytes: number): Uint8Array[] | null {
  if (notesBytes === 0) return [];
  if (offset + notesBytes > bytes.byteLength) return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const notes: Uint8Array[] = [];
  const end = offset + notesBytes;
  let at = offset;
  while (at < end) {
    if (end - at < NOTE_LENGTH_BYTES) return null;
    const length = view.getUint32(at, true);
    if (length < 1 || length > MAX_NOTE_BYTES || at + NOTE_LENGTH_BYTES + length > end) return null;
    notes.push(bytes.subarray(at + NOTE_LENGTH_BYTES, at + NOTE_LENGTH_BYTES + length));
    at += NOTE_LENGTH_BYTES + length;
  }
  return notes;
}

export type HeaderProblem =
  | 'short' // fewer than 64 bytes remain
  | 'magic'
  | 'version'
  | 'flags'
  | 'length' // payloadBytes/notesBytes impossible for the kind/count or beyond MAX_PAYLOAD_BYTES
  | 'seq'; // firstSeq beyond MAX_SEQ

export type HeaderResult = { ok: true; header: BatchHeader } | { ok: false; problem: HeaderProblem };

/** Parses the header at `offset` without trusting it: the checksum is checked by verifyBatch. */
export function readBatchHeader(bytes: Uint8Array, offset: number): HeaderResult {
  if (bytes.byteLength - offset < BATCH_HEADER_BYTES) return { ok: false, problem: 'short' };
  const view = new DataView(bytes.buffer, bytes.byteOffset + offset, BATCH_HEADER_BYTES);
  if (view.getUint32(0, true) !== BATCH_MAGIC) return { ok: false, problem: 'magic' };
  if (view.getUint16(4, true) !== BATCH_VERSION) return { ok: false, problem: 'version' };
  const flags = view.getUint16(6, true);
  const kind = flags & KIND_MASK;
  const hasNotes = (flags & HAS_NOTES) !== 0;
  const skipsDedup = (flags & SKIPS_DEDUP) !== 0;
  if ((flags & ~(KIND_MASK | HAS_NOTES | SKIPS_DEDUP)) !== 0 || kind > BatchKind.Marker) {
    return { ok: false, problem: 'flags' };
  }
  if ((hasNotes || skipsDedup) && kind !== BatchKind.Events) return { ok: false, problem: 'flags' };
  const count = view.getUint32(12, true);
  const payloadBytes = view.getUint32(32, true);
  const notesBytes = view.getUint32(36, true);
  let lengthIsPossible: boolean;
  if (kind === BatchKind.Checkpoint) lengthIsPossible = count === 0 && notesBytes === 0;
  else if (kind === BatchKind.Marker) lengthIsPossible = count === 0 && notesBytes === 0 && payloadBytes === MARKER_PAYLOAD_BYTES;
  else if (!hasNotes) lengthIsPossible = count > 0 && notesBytes === 0 && payloadBytes === count * EVENT_BYTES;
  // With notes a batch may hold no event at all (every event of the call was a duplicate).
  else lengthIsPossible = notesBytes > NOTE_LENGTH_BYTES && payloadBytes === count * EVENT_BYTES + notesBytes;
  if (!lengthIsPossible || payloadBytes > MAX_PAYLOAD_BYTES) return { ok: false, problem: 'length' };
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
      notesBytes,
      timestampNs: view.getBigUint64(40, true),
      skipsDedup,
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
