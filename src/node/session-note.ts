// The session note: what a leader writes into the WAL beside a producer's append, in the same
// checksummed batch as the append's last event, so the log itself says "producer P, epoch E,
// request R was applied with these seqs". Replaying notes rebuilds the idempotency store on
// restart and on every replica. Invariant: decode accepts exactly what encode produces (a
// canonical form), so a note that decodes is one that a leader wrote.
//
//   offset  size        field           type
//   ------  ----------  --------------  ------------------------------------------------
//        0           1  version         u8 = 3 (1: no digest; 2 is the merge note's, merge-note.ts)
//        1           1  producerBytes   u8, 1..64
//        2           P  producerId      UTF-8 (P = producerBytes)
//      2+P           4  sessionEpoch    u32 little-endian
//      6+P           8  requestSeq      u64 little-endian, 1..2^53-1
//     14+P           4  runCount        u32 little-endian, ≥ 1
//     18+P           4  digest          u32 LE: eventsDigest of the request's events (version 3 only)
//     22+P    12 × run  runs            per run: seq u64 LE (0 = duplicates), length u32 LE (≥ 1)
//   ------  ----------
//   22 + P + 12 × runCount bytes (version 1: 18 + P + …, no digest)
//
// The digest tells a retry from a reuse: a request under a remembered requestSeq whose events
// differ from those first applied under it is refused REQUEST_MISMATCH, not answered with the
// first request's seqs (which would drop its events silently). Version 1 notes (written before
// the digest) still decode; their requests are checked by event count only.
//
// Runs are the ack's runs (src/transport/messages.ts) in canonical form: written seqs ascend
// and never touch (a run that continues the previous one would have been merged into it), and
// two duplicate runs are never adjacent.

import { TidelogError } from '../errors.ts';
import { finalMix, mixWord } from '../murmur.ts';
import { MAX_PRODUCER_ID_BYTES, type SessionTag } from '../transport/messages.ts';

/** The first byte of a note says its kind too: 1 and 3 are session notes, 2 a merge note. */
export const SESSION_NOTE_VERSION = 3;
const VERSION_WITHOUT_DIGEST = 1;
export const RUN_BYTES = 12;
const HEAD_BYTES = 18;
const DIGEST_BYTES = 4;
const U32_MAX = 0xffff_ffff;

export interface SessionNote extends SessionTag {
  /** [seq, length, seq, length, …]; seq 0 = `length` duplicates. */
  runs: number[];
  /** eventsDigest of the request's events; undefined in a version 1 note. */
  digest?: number;
}

/**
 * A u32 digest of a request's packed events (murmur3 over their bytes and length): a retry
 * carries the same bytes, a reused requestSeq almost surely other ones. Not for integrity.
 */
export function eventsDigest(packed: Uint8Array): number {
  const view = new DataView(packed.buffer, packed.byteOffset, packed.byteLength);
  const words = packed.byteLength >>> 2;
  let hash = 0x7469_6465; // "tide"
  for (let word = 0; word < words; word++) hash = mixWord(hash, view.getUint32(word * 4, true));
  let tail = 0;
  for (let at = words * 4; at < packed.byteLength; at++) tail = (tail << 8) | packed[at];
  hash = mixWord(hash, tail);
  return finalMix(hash ^ packed.byteLength);
}

const utf8 = new TextEncoder();
/** With the u flag a paired surrogate is one code point, so only a lone half matches. */
const LONE_SURROGATE = /[\uD800-\uDFFF]/u;
const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** UTF-8 of a producer id, or BAD_REQUEST unless it is 1..64 bytes of well-formed text. */
export function producerIdBytes(producerId: string): Uint8Array {
  if (typeof producerId !== 'string' || producerId.length === 0 || LONE_SURROGATE.test(producerId)) {
    throw new TidelogError('BAD_REQUEST', 'producerId must be a non-empty well-formed string');
  }
  const bytes = utf8.encode(producerId);
  if (bytes.byteLength > MAX_PRODUCER_ID_BYTES) {
    throw new TidelogError('BAD_REQUEST', `producerId must be at most ${MAX_PRODUCER_ID_BYTES} bytes of UTF-8, got ${bytes.byteLength}`);
  }
  return bytes;
}

/** BAD_REQUEST unless the tag's epoch is a u32 and its requestSeq a positive safe integer. */
export function checkSessionNumbers(tag: SessionTag): void {
  if (!Number.isInteger(tag.sessionEpoch) || tag.sessionEpoch < 0 || tag.sessionEpoch > U32_MAX) {
    throw new TidelogError('BAD_REQUEST', `sessionEpoch must be a u32, got ${String(tag.sessionEpoch)}`);
  }
  if (!Number.isSafeInteger(tag.requestSeq) || tag.requestSeq < 1) {
    throw new TidelogError('BAD_REQUEST', `requestSeq must be a positive safe integer, got ${String(tag.requestSeq)}`);
  }
}

/** Why `runs` is not canonical, or null when it is (see the header). */
export function runsProblem(runs: readonly number[]): string | null {
  if (!Array.isArray(runs) || runs.length === 0 || runs.length % 2 !== 0) return 'runs must be non-empty [seq, length] pairs';
  let nextWritten = 1;
  let previousWasDuplicate = false;
  for (let index = 0; index < runs.length; index += 2) {
    const seq = runs[index];
    const length = runs[index + 1];
    if (!Number.isInteger(length) || length < 1 || length > U32_MAX) return `run ${index / 2}: length must be 1..${U32_MAX}`;
    if (!Number.isSafeInteger(seq) || seq < 0) return `run ${index / 2}: seq must be a u53`;
    if (seq === 0) {
      if (previousWasDuplicate) return `run ${index / 2}: two duplicate runs in a row`;
      previousWasDuplicate = true;
      continue;
    }
    if (seq < nextWritten || (seq === nextWritten && index > 0 && !previousWasDuplicate)) {
      return `run ${index / 2}: seq ${seq} does not ascend past the previous run`;
    }
    if (seq + length - 1 > Number.MAX_SAFE_INTEGER) return `run ${index / 2}: seqs pass 2^53-1`;
    nextWritten = seq + length;
    previousWasDuplicate = false;
  }
  return null;
}

/** Events a note's runs cover. */
export function runsEventCount(runs: readonly number[]): number {
  let total = 0;
  for (let index = 1; index < runs.length; index += 2) total += runs[index];
  return total;
}

/** A note's length (with a digest: version 3, the one written; without: version 1). */
export function sessionNoteBytes(producerBytes: number, runCount: number, hasDigest = true): number {
  return HEAD_BYTES + (hasDigest ? DIGEST_BYTES : 0) + producerBytes + runCount * RUN_BYTES;
}

/**
 * Encodes a note (version 3; version 1 when `digest` is undefined: a merge re-noting a request
 * an older version noted); BAD_REQUEST for a bad tag, digest or non-canonical runs.
 */
export function encodeSessionNote(tag: SessionTag, runs: readonly number[], digest?: number): Uint8Array {
  const producer = producerIdBytes(tag.producerId);
  checkSessionNumbers(tag);
  const problem = runsProblem(runs);
  if (problem !== null) throw new TidelogError('BAD_REQUEST', `session note: ${problem}`);
  const hasDigest = digest !== undefined;
  if (hasDigest && (!Number.isInteger(digest) || digest < 0 || digest > U32_MAX)) throw new TidelogError('BAD_REQUEST', `session note: digest must be a u32, got ${digest}`);
  const bytes = new Uint8Array(sessionNoteBytes(producer.byteLength, runs.length / 2, hasDigest));
  const view = new DataView(bytes.buffer);
  bytes[0] = hasDigest ? SESSION_NOTE_VERSION : VERSION_WITHOUT_DIGEST;
  bytes[1] = producer.byteLength;
  bytes.set(producer, 2);
  const offset = 2 + producer.byteLength;
  view.setUint32(offset, tag.sessionEpoch, true);
  view.setBigUint64(offset + 4, BigInt(tag.requestSeq), true);
  view.setUint32(offset + 12, runs.length / 2, true);
  if (hasDigest) view.setUint32(offset + 16, digest, true);
  writeRuns(view, offset + 16 + (hasDigest ? DIGEST_BYTES : 0), runs);
  return bytes;
}

/** Decodes a note; DECODE_FAILED on any inconsistency (never trusts the bytes). */
export function decodeSessionNote(bytes: Uint8Array): SessionNote {
  if (!(bytes instanceof Uint8Array) || bytes.byteLength < HEAD_BYTES + 1) fail('too short');
  if (bytes[0] !== SESSION_NOTE_VERSION && bytes[0] !== VERSION_WITHOUT_DIGEST) fail(`unknown version ${bytes[0]}`);
  const hasDigest = bytes[0] === SESSION_NOTE_VERSION;
  const producerBytes = bytes[1];
  if (producerBytes < 1 || producerBytes > MAX_PRODUCER_ID_BYTES) fail(`producer id of ${producerBytes} bytes`);
  if (bytes.byteLength < HEAD_BYTES + producerBytes) fail('too short for its producer id');
  const producerId = readProducerId(bytes, 2, producerBytes);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const offset = 2 + producerBytes;
  const sessionEpoch = view.getUint32(offset, true);
  const requestSeq = readU53(view, offset + 4);
  if (requestSeq < 1) fail('requestSeq must be a positive u53');
  const runCount = view.getUint32(offset + 12, true);
  if (runCount < 1 || bytes.byteLength !== sessionNoteBytes(producerBytes, runCount, hasDigest)) {
    fail(`${bytes.byteLength} bytes do not hold ${runCount} runs`);
  }
  if (!hasDigest) return { producerId, sessionEpoch, requestSeq, runs: readRuns(view, offset + 16, runCount) };
  const digest = view.getUint32(offset + 16, true);
  return { producerId, sessionEpoch, requestSeq, runs: readRuns(view, offset + 16 + DIGEST_BYTES, runCount), digest };
}

// ---- shared with the session store's snapshot, which stores runs the same way ----

/** Writes runs as (u64 seq, u32 length) pairs at `offset`; returns the offset after them. */
export function writeRuns(view: DataView, offset: number, runs: readonly number[]): number {
  for (let index = 0; index < runs.length; index += 2) {
    view.setBigUint64(offset, BigInt(runs[index]), true);
    view.setUint32(offset + 8, runs[index + 1], true);
    offset += RUN_BYTES;
  }
  return offset;
}

/** Reads `runCount` runs at `offset` (the caller checked the length); DECODE_FAILED unless canonical. */
export function readRuns(view: DataView, offset: number, runCount: number): number[] {
  const runs = new Array<number>(runCount * 2);
  for (let run = 0; run < runCount; run++) {
    runs[run * 2] = readU53(view, offset);
    runs[run * 2 + 1] = view.getUint32(offset + 8, true);
    offset += RUN_BYTES;
  }
  const problem = runsProblem(runs);
  if (problem !== null) fail(problem);
  return runs;
}

export function readU53(view: DataView, offset: number): number {
  const value = view.getBigUint64(offset, true);
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) fail(`u64 at offset ${offset} is beyond 2^53-1`);
  return Number(value);
}

export function readProducerId(bytes: Uint8Array, offset: number, length: number): string {
  let text: string;
  try {
    text = strictUtf8.decode(bytes.subarray(offset, offset + length));
  } catch (cause) {
    throw new TidelogError('DECODE_FAILED', 'session note: producer id is not UTF-8', { cause });
  }
  return text;
}

function fail(reason: string): never {
  throw new TidelogError('DECODE_FAILED', `session note: ${reason}`);
}
