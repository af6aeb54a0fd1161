// The session snapshot: the durable producer sessions of one shard (session-store.ts) as
// bytes, carried inside the shard-state snapshot (shard-state.ts) and so in every WAL
// checkpoint. Invariant: the bytes are canonical — equal sessions in equal order give equal
// bytes, and decode accepts only what encode can produce (every count, order and bound is
// re-checked, runs must be canonical as in session-note.ts), so replicas that folded the same
// notes checkpoint identical bytes and a snapshot that decodes is one a store wrote.
//
//   offset  size   field            notes (all integers little-endian)
//   ------  -----  ---------------  ----------------------------------------------------
//        0      4  magic            ASCII "TLSS"
//        4      2  version          u16 = 2 (1: recent requests without digest fields)
//        6      2  reserved         0
//        8      8  evictedSessions  u64 ≤ 2^53-1, sessions forgotten so far (non-zero: an
//                                   unknown producer past requestSeq 1 may be a forgotten one)
//       16      4  sessionCount     u32
//       20      …  sessions         least recently noted first, each:
//
//     +0      1  producerBytes    u8, 1..64
//     +1      P  producerId       UTF-8, unique within the snapshot
//     +1+P    4  sessionEpoch     u32
//     +5+P    8  hwm              u64 ≤ 2^53-1, highest requestSeq noted
//     +13+P   8  floor            u64 ≤ hwm; requestSeqs ≤ floor were noted and forgotten
//     +21+P   4  recentCount      u32 ≤ hwm − floor
//     +25+P   …  recent           ascending requestSeq, the last one = hwm (when any), each:
//                                   8  requestSeq  u64 in (floor, hwm]
//                                   4  runCount    u32 ≥ 1
//                                   1  hasDigest   u8, 0 or 1     (version 2)
//                                   4  digest      u32, 0 without (version 2)
//                                   12 × runCount  runs as in session-note.ts
//
// A version 1 snapshot (written before digests) still decodes: its requests have none.
//
// A session with no recent requests has floor = hwm: the newest noted request is forgotten
// last, so hwm is remembered unless every request is.

import { TidelogError } from '../errors.ts';
import { MAX_PRODUCER_ID_BYTES } from '../transport/messages.ts';
import { RUN_BYTES, readProducerId, readRuns, readU53, writeRuns } from './session-note.ts';

export const SESSION_SNAPSHOT_VERSION = 2;
const VERSION_WITHOUT_DIGESTS = 1;
const SNAPSHOT_MAGIC = 0x53534c54; // "TLSS" read as u32 little-endian
const SNAPSHOT_HEAD_BYTES = 20;
const SESSION_HEAD_BYTES = 25;
const RECENT_HEAD_BYTES = 17;
const RECENT_HEAD_BYTES_V1 = 12;

/** One producer's durable session; the session store mutates it as notes are folded. */
export interface SessionRecord {
  readonly producerId: string;
  /** The UTF-8 of producerId (kept so encoding does not re-encode every id). */
  readonly producerBytes: Uint8Array;
  epoch: number;
  hwm: number;
  floor: number;
  /** requestSeq → runs ([seq, length, …]) of the remembered requests. */
  readonly recent: Map<number, number[]>;
  /** requestSeq → the digest of its events, for the requests of `recent` whose note had one. */
  readonly digests: Map<number, number>;
  /** The keys of `recent`, ascending. */
  readonly recentSeqs: number[];
  /** Runs held in `recent`. */
  runCount: number;
}

export interface SessionSnapshot {
  evictedSessions: number;
  /** Least recently noted first. */
  sessions: SessionRecord[];
}

/** The sessions (least recently noted first) as canonical bytes; see the table above. */
export function encodeSessionSnapshot(evictedSessions: number, sessions: Iterable<SessionRecord>): Uint8Array {
  const list = [...sessions];
  let total = SNAPSHOT_HEAD_BYTES;
  for (const session of list) {
    total += SESSION_HEAD_BYTES + session.producerBytes.byteLength;
    total += session.recentSeqs.length * RECENT_HEAD_BYTES + session.runCount * RUN_BYTES;
  }
  const bytes = new Uint8Array(total);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, SNAPSHOT_MAGIC, true);
  view.setUint16(4, SESSION_SNAPSHOT_VERSION, true);
  view.setBigUint64(8, BigInt(evictedSessions), true);
  view.setUint32(16, list.length, true);
  let offset = SNAPSHOT_HEAD_BYTES;
  for (const session of list) {
    const producer = session.producerBytes;
    bytes[offset] = producer.byteLength;
    bytes.set(producer, offset + 1);
    offset += 1 + producer.byteLength;
    view.setUint32(offset, session.epoch, true);
    view.setBigUint64(offset + 4, BigInt(session.hwm), true);
    view.setBigUint64(offset + 12, BigInt(session.floor), true);
    view.setUint32(offset + 20, session.recentSeqs.length, true);
    offset += SESSION_HEAD_BYTES - 1;
    for (const requestSeq of session.recentSeqs) {
      const runs = session.recent.get(requestSeq) as number[];
      const digest = session.digests.get(requestSeq);
      view.setBigUint64(offset, BigInt(requestSeq), true);
      view.setUint32(offset + 8, runs.length / 2, true);
      bytes[offset + 12] = digest === undefined ? 0 : 1;
      view.setUint32(offset + 13, digest ?? 0, true);
      offset = writeRuns(view, offset + RECENT_HEAD_BYTES, runs);
    }
  }
  return bytes;
}

/** Decodes a snapshot; DECODE_FAILED for anything encodeSessionSnapshot would not write. */
export function decodeSessionSnapshot(bytes: Uint8Array): SessionSnapshot {
  if (bytes.byteLength < SNAPSHOT_HEAD_BYTES) corrupt('too short');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint32(0, true) !== SNAPSHOT_MAGIC) corrupt('bad magic');
  const version = view.getUint16(4, true);
  if (version !== SESSION_SNAPSHOT_VERSION && version !== VERSION_WITHOUT_DIGESTS) corrupt(`unknown version ${version}`);
  const recentHeadBytes = version === VERSION_WITHOUT_DIGESTS ? RECENT_HEAD_BYTES_V1 : RECENT_HEAD_BYTES;
  if (view.getUint16(6, true) !== 0) corrupt('reserved bytes are not zero');
  const evictedSessions = readU53(view, 8);
  const count = view.getUint32(16, true);
  const sessions: SessionRecord[] = [];
  const seen = new Set<string>();
  let offset = SNAPSHOT_HEAD_BYTES;
  // Every length is checked before it is used: a count is never trusted to size anything.
  const need = (bytesNeeded: number): void => {
    if (offset + bytesNeeded > bytes.byteLength) corrupt(`truncated at offset ${offset}`);
  };
  for (let index = 0; index < count; index++) {
    need(1);
    const producerLength = bytes[offset];
    if (producerLength < 1 || producerLength > MAX_PRODUCER_ID_BYTES) corrupt(`session ${index}: producer id of ${producerLength} bytes`);
    need(SESSION_HEAD_BYTES + producerLength);
    const producerBytes = bytes.slice(offset + 1, offset + 1 + producerLength);
    const producerId = readProducerId(producerBytes, 0, producerLength);
    if (seen.has(producerId)) corrupt(`session ${index}: producer ${producerId} appears twice`);
    seen.add(producerId);
    offset += 1 + producerLength;
    const epoch = view.getUint32(offset, true);
    const hwm = readU53(view, offset + 4);
    const floor = readU53(view, offset + 12);
    const recentCount = view.getUint32(offset + 20, true);
    offset += SESSION_HEAD_BYTES - 1;
    if (floor > hwm) corrupt(`session ${index}: floor ${floor} above hwm ${hwm}`);
    if (recentCount > hwm - floor) corrupt(`session ${index}: ${recentCount} requests do not fit in (${floor}, ${hwm}]`);
    const session: SessionRecord = { producerId, producerBytes, epoch, hwm, floor, recent: new Map(), digests: new Map(), recentSeqs: [], runCount: 0 };
    let previous = floor;
    for (let recent = 0; recent < recentCount; recent++) {
      need(recentHeadBytes);
      const requestSeq = readU53(view, offset);
      const runCount = view.getUint32(offset + 8, true);
      if (requestSeq <= previous || requestSeq > hwm) corrupt(`session ${index}: requestSeq ${requestSeq} out of order`);
      if (runCount < 1) corrupt(`session ${index}: request ${requestSeq} has no runs`);
      if (recentHeadBytes === RECENT_HEAD_BYTES) {
        const hasDigest = bytes[offset + 12];
        const digest = view.getUint32(offset + 13, true);
        if (hasDigest > 1 || (hasDigest === 0 && digest !== 0)) corrupt(`session ${index}: request ${requestSeq} has a bad digest field`);
        if (hasDigest === 1) session.digests.set(requestSeq, digest);
      }
      need(recentHeadBytes + runCount * RUN_BYTES);
      session.recent.set(requestSeq, readRuns(view, offset + recentHeadBytes, runCount));
      session.recentSeqs.push(requestSeq);
      session.runCount += runCount;
      offset += recentHeadBytes + runCount * RUN_BYTES;
      previous = requestSeq;
    }
    if (recentCount === 0 ? floor !== hwm : previous !== hwm) corrupt(`session ${index}: hwm ${hwm} is not its newest request`);
    sessions.push(session);
  }
  if (offset !== bytes.byteLength) corrupt(`${bytes.byteLength - offset} bytes after the last session`);
  return { evictedSessions, sessions };
}

function corrupt(reason: string): never {
  throw new TidelogError('DECODE_FAILED', `session snapshot: ${reason}`);
}
