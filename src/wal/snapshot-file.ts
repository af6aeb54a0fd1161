// A snapshot file: the shard's state machine as of one seq, in a file of its own, so the
// state (millions of entities: hundreds of MB) is written once per snapshot instead of at
// the head of every segment. Invariant: a file with a snapshot name is complete and was
// durable before it got that name (written `<name>.tmp` → fdatasync → rename → fsync(dir));
// every byte of it is covered by a checksum, so damage is found before any of it is used.
//
//   header (64 bytes)
//   offset  size  field              notes
//   ------  ----  -----------------  -------------------------------------------------------
//        0     4  magic              ASCII "TLSF"
//        4     2  version            u16 = 1
//        6     2  flags              0
//        8     4  shard              u32
//       12     4  chunkBytes         u32 largest chunk payload
//       16     8  seq                u64 the state holds every batch through this seq
//       24     4  notesBatchesAfter  u32 notes-only batches at seq + 1 already in the state
//       28     4  reserved           0
//       32     8  leaderEpoch        u64 epoch of the last batch in the state (informative)
//       40     8  timestampNs        u64 when the snapshot was taken
//       48    16  checksum           BLAKE3-128 over bytes [0, 48)
//
//   chunk (repeated; the state machine's bytes, cut into pieces of at most chunkBytes)
//        0     4  payloadBytes       u32, 1..chunkBytes
//        4     4  index              u32, 0, 1, 2, … (chunks cannot be reordered or dropped)
//        8    16  checksum           BLAKE3-128 over bytes [0, 8) of the chunk, then its payload
//       24     …  payload
//
//   footer (64 bytes)
//        0     4  magic              ASCII "TLSE"
//        4     4  chunkCount         u32
//        8     8  payloadBytes       u64 sum of the chunks' payloads
//       16    32  reserved           0
//       48    16  checksum           BLAKE3-128 over bytes [0, 48) of the footer, then the
//                                    header's checksum (binds the footer to its header)
//
// The file's length is exactly 64 + Σ (24 + chunk) + 64. Anything else — a checksum that
// fails, a chunk out of order, bytes after the footer — is SNAPSHOT_DAMAGED naming the file
// and offset; the WAL then falls back to the snapshot before it.

import { join } from 'node:path';
import { TidelogError } from '../errors.ts';
import { checksumEquals, checksumInto } from './checksum.ts';
import { readFully, writeFully, type FileIo, type WalFile } from './file-io.ts';
import { snapshotFileName } from './segment-name.ts';

export const SNAPSHOT_HEADER_BYTES = 64;
export const SNAPSHOT_FOOTER_BYTES = 64;
export const SNAPSHOT_CHUNK_HEAD_BYTES = 24;
/** Default and largest chunk payload: one checksum per MiB keeps each slice of work short. */
export const SNAPSHOT_CHUNK_BYTES = 1 << 20;
const MAX_CHUNK_BYTES = 16 << 20;
const HEADER_MAGIC = 0x46534c54; // "TLSF"
const FOOTER_MAGIC = 0x45534c54; // "TLSE"
const VERSION = 1;
const CHECKSUM_OFFSET = 48;
/** Reads of a snapshot file are this large (several chunks each). */
const READ_BYTES = 4 << 20;

export interface SnapshotMeta {
  shard: number;
  seq: number;
  notesBatchesAfter: number;
  leaderEpoch: number;
  timestampNs: bigint;
}

export function encodeSnapshotHeader(meta: SnapshotMeta, chunkBytes: number): Uint8Array {
  const bytes = new Uint8Array(SNAPSHOT_HEADER_BYTES);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, HEADER_MAGIC, true);
  view.setUint16(4, VERSION, true);
  view.setUint32(8, meta.shard, true);
  view.setUint32(12, chunkBytes, true);
  view.setBigUint64(16, BigInt(meta.seq), true);
  view.setUint32(24, meta.notesBatchesAfter, true);
  view.setBigUint64(32, BigInt(meta.leaderEpoch), true);
  view.setBigUint64(40, meta.timestampNs, true);
  checksumInto([bytes.subarray(0, CHECKSUM_OFFSET)], bytes, CHECKSUM_OFFSET);
  return bytes;
}

/** The header's fields, or the reason they cannot be trusted. */
export function decodeSnapshotHeader(bytes: Uint8Array): { meta: SnapshotMeta; chunkBytes: number } | string {
  if (bytes.byteLength < SNAPSHOT_HEADER_BYTES) return 'shorter than a snapshot header';
  const view = new DataView(bytes.buffer, bytes.byteOffset, SNAPSHOT_HEADER_BYTES);
  if (view.getUint32(0, true) !== HEADER_MAGIC) return 'bad magic';
  if (!checksumEquals([bytes.subarray(0, CHECKSUM_OFFSET)], bytes, CHECKSUM_OFFSET)) return 'header checksum mismatch';
  if (view.getUint16(4, true) !== VERSION) return `unknown version ${view.getUint16(4, true)}`;
  if (view.getUint16(6, true) !== 0 || view.getUint32(28, true) !== 0) return 'reserved bits set';
  const chunkBytes = view.getUint32(12, true);
  if (chunkBytes < 1 || chunkBytes > MAX_CHUNK_BYTES) return `impossible chunk size ${chunkBytes}`;
  const seq = view.getBigUint64(16, true);
  const leaderEpoch = view.getBigUint64(32, true);
  if (seq > BigInt(Number.MAX_SAFE_INTEGER) || leaderEpoch > BigInt(Number.MAX_SAFE_INTEGER)) return 'seq or epoch beyond 2^53';
  return {
    chunkBytes,
    meta: {
      shard: view.getUint32(8, true),
      seq: Number(seq),
      notesBatchesAfter: view.getUint32(24, true),
      leaderEpoch: Number(leaderEpoch),
      timestampNs: view.getBigUint64(40, true),
    },
  };
}

function encodeFooter(chunkCount: number, payloadBytes: number, header: Uint8Array): Uint8Array {
  const bytes = new Uint8Array(SNAPSHOT_FOOTER_BYTES);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, FOOTER_MAGIC, true);
  view.setUint32(4, chunkCount, true);
  view.setBigUint64(8, BigInt(payloadBytes), true);
  checksumInto([bytes.subarray(0, CHECKSUM_OFFSET), header.subarray(CHECKSUM_OFFSET)], bytes, CHECKSUM_OFFSET);
  return bytes;
}

/**
 * Writes one snapshot file piece by piece. The caller feeds chunks as it produces them (each
 * call does O(chunk) work: one checksum, one write), then `finish()` makes it durable under
 * its final name, or `abort()` removes what was written.
 */
export class SnapshotFileWriter {
  private offset = SNAPSHOT_HEADER_BYTES;
  private chunkCount = 0;
  private payloadBytes = 0;
  private unsyncedBytes = 0;
  private isDone = false;
  private readonly chunkHead = new Uint8Array(SNAPSHOT_CHUNK_HEAD_BYTES);

  private constructor(
    private readonly io: FileIo,
    private readonly dir: string,
    readonly fileName: string,
    private readonly file: WalFile,
    private readonly header: Uint8Array,
    readonly chunkBytes: number,
    private readonly isSynced: boolean,
    /** fdatasync every this many bytes, so the final sync does not meet a wall of dirty pages. */
    private readonly syncEveryBytes: number,
  ) {}

  static async create(
    io: FileIo,
    dir: string,
    meta: SnapshotMeta,
    options: { chunkBytes?: number; isSynced: boolean; syncEveryBytes?: number },
  ): Promise<SnapshotFileWriter> {
    const chunkBytes = options.chunkBytes ?? SNAPSHOT_CHUNK_BYTES;
    const fileName = snapshotFileName(meta.shard, meta.seq);
    const file = await io.open(join(dir, `${fileName}.tmp`), 'create');
    const header = encodeSnapshotHeader(meta, chunkBytes);
    try {
      await writeFully(file, header, 0);
    } catch (error) {
      await file.close().catch(() => undefined);
      await io.unlink(join(dir, `${fileName}.tmp`)).catch(() => undefined);
      throw error;
    }
    return new SnapshotFileWriter(io, dir, fileName, file, header, chunkBytes, options.isSynced, options.syncEveryBytes ?? 1 << 20);
  }

  /** Total bytes written so far (header and chunk framing included). */
  get bytes(): number {
    return this.offset;
  }

  /** Appends `payload` as one or more chunks of at most chunkBytes. */
  async write(payload: Uint8Array): Promise<void> {
    for (let start = 0; start < payload.byteLength; start += this.chunkBytes) {
      const piece = payload.subarray(start, Math.min(payload.byteLength, start + this.chunkBytes));
      const head = this.chunkHead;
      const view = new DataView(head.buffer);
      view.setUint32(0, piece.byteLength, true);
      view.setUint32(4, this.chunkCount, true);
      checksumInto([head.subarray(0, 8), piece], head, 8);
      await writeFully(this.file, head, this.offset);
      await writeFully(this.file, piece, this.offset + SNAPSHOT_CHUNK_HEAD_BYTES);
      this.offset += SNAPSHOT_CHUNK_HEAD_BYTES + piece.byteLength;
      this.unsyncedBytes += SNAPSHOT_CHUNK_HEAD_BYTES + piece.byteLength;
      this.chunkCount++;
      this.payloadBytes += piece.byteLength;
      if (this.isSynced && this.unsyncedBytes >= this.syncEveryBytes) {
        await this.file.datasync();
        this.unsyncedBytes = 0;
      }
    }
  }

  /** Footer, fdatasync, rename to the final name, fsync(dir). Returns the file's length. */
  async finish(): Promise<number> {
    const footer = encodeFooter(this.chunkCount, this.payloadBytes, this.header);
    await writeFully(this.file, footer, this.offset);
    this.offset += SNAPSHOT_FOOTER_BYTES;
    if (this.isSynced) await this.file.datasync();
    await this.file.close();
    this.isDone = true;
    await this.io.rename(join(this.dir, `${this.fileName}.tmp`), join(this.dir, this.fileName));
    if (this.isSynced) await this.io.syncDir(this.dir);
    return this.offset;
  }

  /** Closes and removes the half-written file; never throws. */
  async abort(): Promise<void> {
    if (this.isDone) return;
    this.isDone = true;
    await this.file.close().catch(() => undefined);
    await this.io.unlink(join(this.dir, `${this.fileName}.tmp`)).catch(() => undefined);
  }
}

/** What readSnapshotFile found; `chunks` yields the state machine's bytes, each verified. */
export interface SnapshotReading {
  meta: SnapshotMeta;
  fileBytes: number;
  payloadBytes: number;
}

/**
 * Reads a snapshot file, verifying every checksum, and hands the payload to `onChunk` in
 * order (views valid during the call only). The footer is checked last: a consumer must not
 * commit to what it built until this resolves. SNAPSHOT_DAMAGED (file, offset) on any fault.
 */
export async function readSnapshotFile(
  io: FileIo,
  dir: string,
  fileName: string,
  expected: { shard: number; seq: number },
  onChunk: (payload: Uint8Array) => void,
): Promise<SnapshotReading> {
  const path = join(dir, fileName);
  const damaged = (offset: number, reason: string): TidelogError =>
    new TidelogError('SNAPSHOT_DAMAGED', `${path} at offset ${offset}: ${reason}`, { details: { file: path, offset } });
  const file = await io.open(path, 'read');
  try {
    const fileBytes = await file.size();
    const header = new Uint8Array(SNAPSHOT_HEADER_BYTES);
    if ((await readFully(file, header, 0)) < SNAPSHOT_HEADER_BYTES) throw damaged(0, 'shorter than a snapshot header');
    const decoded = decodeSnapshotHeader(header);
    if (typeof decoded === 'string') throw damaged(0, decoded);
    const { meta, chunkBytes } = decoded;
    if (meta.shard !== expected.shard || meta.seq !== expected.seq) {
      throw damaged(0, `header names shard ${meta.shard} seq ${meta.seq}, file name says shard ${expected.shard} seq ${expected.seq}`);
    }
    const body = fileBytes - SNAPSHOT_FOOTER_BYTES;
    if (body < SNAPSHOT_HEADER_BYTES) throw damaged(fileBytes, 'no room for a footer');
    // One buffer, refilled: a chunk never straddles two fills (it is moved to the front).
    const buffer = new Uint8Array(Math.max(READ_BYTES, SNAPSHOT_CHUNK_HEAD_BYTES + chunkBytes));
    let bufferStart = SNAPSHOT_HEADER_BYTES;
    let bufferEnd = SNAPSHOT_HEADER_BYTES;
    const ensure = async (offset: number, length: number): Promise<void> => {
      if (offset >= bufferStart && offset + length <= bufferEnd) return;
      const keep = bufferEnd - offset;
      if (keep > 0 && offset >= bufferStart) buffer.copyWithin(0, offset - bufferStart, bufferEnd - bufferStart);
      const kept = Math.max(0, keep);
      const want = Math.min(buffer.byteLength - kept, body - (offset + kept));
      const read = want > 0 ? await readFully(file, buffer.subarray(kept, kept + want), offset + kept) : 0;
      bufferStart = offset;
      bufferEnd = offset + kept + read;
      if (bufferEnd < offset + length) throw damaged(offset, 'the file ends inside a chunk');
    };
    let offset = SNAPSHOT_HEADER_BYTES;
    let index = 0;
    let payloadBytes = 0;
    while (offset < body) {
      if (body - offset < SNAPSHOT_CHUNK_HEAD_BYTES) throw damaged(offset, 'a chunk head runs into the footer');
      await ensure(offset, SNAPSHOT_CHUNK_HEAD_BYTES);
      const headAt = offset - bufferStart;
      const view = new DataView(buffer.buffer, buffer.byteOffset + headAt, 8);
      const length = view.getUint32(0, true);
      if (length < 1 || length > chunkBytes) throw damaged(offset, `impossible chunk length ${length}`);
      if (view.getUint32(4, true) !== index) throw damaged(offset, `chunk ${view.getUint32(4, true)} where chunk ${index} belongs`);
      if (offset + SNAPSHOT_CHUNK_HEAD_BYTES + length > body) throw damaged(offset, 'a chunk runs into the footer');
      await ensure(offset, SNAPSHOT_CHUNK_HEAD_BYTES + length);
      const at = offset - bufferStart;
      const payload = buffer.subarray(at + SNAPSHOT_CHUNK_HEAD_BYTES, at + SNAPSHOT_CHUNK_HEAD_BYTES + length);
      if (!checksumEquals([buffer.subarray(at, at + 8), payload], buffer, at + 8)) throw damaged(offset, `chunk ${index}: checksum mismatch`);
      onChunk(payload);
      offset += SNAPSHOT_CHUNK_HEAD_BYTES + length;
      payloadBytes += length;
      index++;
    }
    const footer = new Uint8Array(SNAPSHOT_FOOTER_BYTES);
    if ((await readFully(file, footer, body)) < SNAPSHOT_FOOTER_BYTES) throw damaged(body, 'footer missing');
    const footerView = new DataView(footer.buffer);
    if (footerView.getUint32(0, true) !== FOOTER_MAGIC) throw damaged(body, 'bad footer magic');
    if (!checksumEquals([footer.subarray(0, CHECKSUM_OFFSET), header.subarray(CHECKSUM_OFFSET)], footer, CHECKSUM_OFFSET)) {
      throw damaged(body, 'footer checksum mismatch');
    }
    if (footerView.getUint32(4, true) !== index || footerView.getBigUint64(8, true) !== BigInt(payloadBytes)) {
      throw damaged(body, `footer says ${footerView.getUint32(4, true)} chunks, the file holds ${index}`);
    }
    for (let byte = 16; byte < CHECKSUM_OFFSET; byte++) if (footer[byte] !== 0) throw damaged(body, 'reserved footer bytes set');
    return { meta, fileBytes, payloadBytes };
  } finally {
    await file.close();
  }
}
