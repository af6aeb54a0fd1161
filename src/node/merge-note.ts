// The merge note: what a leader writes beside events it re-appends from a cut-off replica's
// orphan batch (availability mode, docs/REPLICATION.md). It names the batch's identity — the
// epoch of the leader that first acknowledged it and its first seq there — and carries session
// notes (session-note.ts) that the state folds as if written alone: the merge's own identity
// session (`~merge:E:S`, so a repeated merge of the same batch is answered, not appended), and
// the session notes of producers whose requests the batch held, their runs moved to the new
// seqs (so a producer's retry is answered with where its events are now). Old logs hold no
// merge note and read unchanged; a session note starts with byte 1 (3 with its events' digest),
// a merge note with 2.
//
//   offset  size  field           type
//   ------  ----  --------------  ---------------------------------------------
//        0     1  version         u8 = 2
//        1     8  originEpoch     u64 LE (≤ 2^53-1)
//        9     8  originFirstSeq  u64 LE, ≥ 1
//       17     4  originCount     u32 LE, ≥ 1: events the orphan batch held
//       21     8  originTimeNs    u64 LE: the orphan batch's seal time (its events' HLC wall)
//       29     4  noteCount       u32 LE, ≥ 1
//       33        notes           per note: length u32 LE, then a session note of that length
// Invariant: decode accepts exactly what encode produces.

import { TidelogError } from '../errors.ts';
import { decodeSessionNote, readU53, type SessionNote } from './session-note.ts';

export const MERGE_NOTE_VERSION = 2;
/** Bytes of a merge note before its session notes. */
export const MERGE_NOTE_HEAD_BYTES = 33;
const HEAD_BYTES = MERGE_NOTE_HEAD_BYTES;
/** Producer ids with this prefix are the merge identities; producers may not use it. */
export const MERGE_PRODUCER_PREFIX = '~merge:';

export interface MergeNote {
  originEpoch: number;
  originFirstSeq: number;
  originCount: number;
  /** The orphan batch's seal time: the state stamps the merged events' HLCs with it (LWW orders them by when they were written, not merged). */
  originTimeNs: bigint;
  /** Session notes, already encoded (session-note.ts): the identity's first. */
  notes: Uint8Array[];
}

/** The identity session of an orphan batch: `~merge:{epoch}:{firstSeq}`, epoch 1, request 1. */
export function mergeIdentity(originEpoch: number, originFirstSeq: number): { producerId: string; sessionEpoch: number; requestSeq: number } {
  return { producerId: `${MERGE_PRODUCER_PREFIX}${originEpoch}:${originFirstSeq}`, sessionEpoch: 1, requestSeq: 1 };
}

export function isMergeNote(bytes: Uint8Array): boolean {
  return bytes.byteLength > 0 && bytes[0] === MERGE_NOTE_VERSION;
}

export function encodeMergeNote(note: MergeNote): Uint8Array {
  if (note.notes.length === 0) throw new TidelogError('BAD_REQUEST', 'merge note: at least one session note');
  for (const [name, value, min] of [['originEpoch', note.originEpoch, 0], ['originFirstSeq', note.originFirstSeq, 1]] as const) {
    if (!Number.isSafeInteger(value) || value < min) throw new TidelogError('BAD_REQUEST', `merge note: ${name} must be a u53 ≥ ${min}`);
  }
  if (!Number.isInteger(note.originCount) || note.originCount < 1 || note.originCount > 0xffff_ffff) throw new TidelogError('BAD_REQUEST', 'merge note: originCount must be a u32 ≥ 1');
  if (typeof note.originTimeNs !== 'bigint' || note.originTimeNs < 0n || note.originTimeNs >= 1n << 64n) throw new TidelogError('BAD_REQUEST', 'merge note: originTimeNs must be a u64');
  let total = HEAD_BYTES;
  for (const inner of note.notes) total += 4 + inner.byteLength;
  const bytes = new Uint8Array(total);
  const view = new DataView(bytes.buffer);
  bytes[0] = MERGE_NOTE_VERSION;
  view.setBigUint64(1, BigInt(note.originEpoch), true);
  view.setBigUint64(9, BigInt(note.originFirstSeq), true);
  view.setUint32(17, note.originCount, true);
  view.setBigUint64(21, note.originTimeNs, true);
  view.setUint32(29, note.notes.length, true);
  let offset = HEAD_BYTES;
  for (const inner of note.notes) {
    view.setUint32(offset, inner.byteLength, true);
    bytes.set(inner, offset + 4);
    offset += 4 + inner.byteLength;
  }
  return bytes;
}

/** Decodes a merge note and its session notes; DECODE_FAILED on any inconsistency. */
export function decodeMergeNote(bytes: Uint8Array): { originEpoch: number; originFirstSeq: number; originCount: number; originTimeNs: bigint; sessions: SessionNote[] } {
  const fail = (reason: string): never => {
    throw new TidelogError('DECODE_FAILED', `merge note: ${reason}`);
  };
  if (!(bytes instanceof Uint8Array) || bytes.byteLength < HEAD_BYTES) fail('too short');
  if (bytes[0] !== MERGE_NOTE_VERSION) fail(`unknown version ${bytes[0]}`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const originEpoch = readU53(view, 1);
  const originFirstSeq = readU53(view, 9);
  if (originFirstSeq < 1) fail('originFirstSeq must be ≥ 1');
  const originCount = view.getUint32(17, true);
  if (originCount < 1) fail('originCount must be ≥ 1');
  const originTimeNs = view.getBigUint64(21, true);
  const noteCount = view.getUint32(29, true);
  if (noteCount < 1) fail('no session note');
  const sessions: SessionNote[] = [];
  let offset = HEAD_BYTES;
  for (let index = 0; index < noteCount; index++) {
    if (offset + 4 > bytes.byteLength) fail(`note ${index} runs past the end`);
    const length = view.getUint32(offset, true);
    if (offset + 4 + length > bytes.byteLength) fail(`note ${index} runs past the end`);
    sessions.push(decodeSessionNote(bytes.subarray(offset + 4, offset + 4 + length)));
    offset += 4 + length;
  }
  if (offset !== bytes.byteLength) fail(`${bytes.byteLength - offset} bytes after the last note`);
  return { originEpoch, originFirstSeq, originCount, originTimeNs, sessions };
}
