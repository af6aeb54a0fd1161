// Reads committed batches back from segment files, verifying every checksum on the way, so
// bit rot after open is reported (CHECKSUM_MISMATCH with file and offset), never returned;
// finds the seq at a time from batch headers alone (firstSeqAtTimeIn, for seqAtTime); and
// builds a segment's sparse index from its headers (buildSegmentIndex).
//
// A read starts where the segment's sparse index says (segment-index.ts) and reads forward in
// bounded pieces, so a page costs O(page) bytes, not O(segment).
//
// A notes-only batch (count 0, firstSeq F) sits between seq F - 1 and seq F. A read of
// [fromSeq, toSeq] delivers it when fromSeq <= F <= toSeq + 1: exactly when a reader that
// holds everything through fromSeq - 1 and will hold everything through toSeq can place it
// (its firstSeq is that reader's next expected seq). So reads of adjacent ranges may both
// deliver a batch that sits on their boundary; notes must be idempotent to apply.

import { join } from 'node:path';
import { TidelogError } from '../errors.ts';
import { BATCH_HEADER_BYTES, BatchKind, readBatchHeader, type BatchHeader } from './batch-format.ts';
import { EVENT_BYTES } from '../event.ts';
import { readFully, type FileIo, type WalFile } from './file-io.ts';
import { SegmentIndex } from './segment-index.ts';
import { readRecord } from './segment-scan.ts';

export interface SegmentInfo {
  fileName: string;
  firstSeq: number;
  /** Last durable seq in the segment; firstSeq - 1 when it holds none yet. */
  lastSeq: number;
  /** Durable bytes. */
  bytes: number;
  /** Bytes of the head record: the first batch starts here. */
  headBytes: number;
  /** When the segment was opened (its head record's timestampNs). */
  openedAtNs: bigint;
}

/** The first read of a segment is this large; each further read doubles, up to the maximum. */
const FIRST_READ_BYTES = 64 << 10;
const MAX_READ_BYTES = 4 << 20;
/** Header scans (seek by time, index builds) read this much at a time. */
const HEADER_SCAN_CHUNK_BYTES = 256 << 10;

export interface StoredBatch {
  firstSeq: number;
  /** Events in the batch; 0 for a batch that carries only notes (firstSeq is then the next seq). */
  count: number;
  /** Packed events, count × 21 bytes. */
  events: Uint8Array;
  timestampNs: bigint;
  leaderEpoch: number;
  /** Opaque notes written atomically with these events, in append order; empty when none. */
  notes: readonly Uint8Array[];
  /** The batch as stored, header included (when read from a segment): what appendSealed takes. */
  sealed?: Uint8Array;
}

function unreadable(path: string, cause: unknown): TidelogError {
  return new TidelogError('OUT_OF_RANGE', `${path} is no longer readable (removed by truncation?)`, { cause });
}

async function openSegment(io: FileIo, path: string): Promise<WalFile> {
  try {
    return await io.open(path, 'read');
  } catch (cause) {
    throw unreadable(path, cause);
  }
}

/**
 * Batches holding seqs in [fromSeq, toSeq], in order; the first may start before fromSeq.
 * Notes-only batches come along as described at the top of this file. `startOffset` says
 * where in the first segment to begin (from its sparse index); later segments are read from
 * their first batch. Yielded views stay valid after the generator moves on.
 */
export async function* readBatches(
  io: FileIo,
  dir: string,
  segments: readonly SegmentInfo[],
  fromSeq: number,
  toSeq: number,
  startOffset: (segment: SegmentInfo) => Promise<number>,
): AsyncGenerator<StoredBatch> {
  let isFirst = true;
  for (const segment of segments) {
    // A segment's batches start at most at lastSeq + 1 (a trailing notes-only batch).
    if (segment.lastSeq + 1 < fromSeq) continue;
    if (segment.firstSeq > toSeq + 1) return;
    const path = join(dir, segment.fileName);
    const from = isFirst ? await startOffset(segment) : segment.headBytes;
    isFirst = false;
    const file = await openSegment(io, path);
    try {
      let buffer = new Uint8Array(0);
      let bufferStart = from;
      let readBytes = FIRST_READ_BYTES;
      let offset = from;
      while (offset < segment.bytes) {
        const damage = (reason: string): TidelogError =>
          new TidelogError('CORRUPT_SEGMENT', `${path} at offset ${offset}: ${reason}`, { details: { file: path, offset } });
        // Make sure the record's header, then the whole record, is in the buffer; a refill is
        // a new buffer, so views already yielded stay intact.
        const ensure = async (length: number): Promise<boolean> => {
          if (offset >= bufferStart && offset + length <= bufferStart + buffer.byteLength) return true;
          const size = Math.min(segment.bytes - offset, Math.max(readBytes, length));
          buffer = new Uint8Array(size);
          const read = await readFully(file, buffer, offset);
          buffer = buffer.subarray(0, read);
          bufferStart = offset;
          readBytes = Math.min(MAX_READ_BYTES, readBytes * 2);
          return read >= length;
        };
        if (!(await ensure(Math.min(BATCH_HEADER_BYTES, segment.bytes - offset)))) throw damage('the file is shorter than its durable length');
        const parsed = readBatchHeader(buffer, offset - bufferStart);
        if (!parsed.ok) throw damage(`bad header (${parsed.problem})`);
        const recordBytes = BATCH_HEADER_BYTES + parsed.header.payloadBytes;
        if (offset + recordBytes > segment.bytes) throw damage(`record of ${recordBytes} bytes runs past the durable end ${segment.bytes}`);
        if (!(await ensure(recordBytes))) throw damage('the file is shorter than its durable length');
        const at = offset - bufferStart;
        const record = readRecord(buffer, at);
        if (!record.ok) {
          throw new TidelogError(record.code, `${path} at offset ${offset}: ${record.reason}`, { details: { file: path, offset } });
        }
        const header = record.header;
        const isNotesOnly = header.count === 0;
        // The seq a reader must have reached for this batch to be news; see the top of the file.
        const reach = isNotesOnly ? header.firstSeq : header.firstSeq + header.count - 1;
        if (header.kind === BatchKind.Events && reach >= fromSeq) {
          if (header.firstSeq > (isNotesOnly ? toSeq + 1 : toSeq)) return;
          yield {
            firstSeq: header.firstSeq,
            count: header.count,
            events: buffer.subarray(at + BATCH_HEADER_BYTES, at + BATCH_HEADER_BYTES + header.count * EVENT_BYTES),
            timestampNs: header.timestampNs,
            leaderEpoch: header.leaderEpoch,
            notes: record.notes,
            sealed: buffer.subarray(at, at + recordBytes),
          };
        }
        offset += recordBytes;
      }
    } finally {
      await file.close();
    }
  }
}

/**
 * Visits the headers of a segment's batches in order, from its first batch to `segment.bytes`
 * (headers only, in chunks, skipping payloads: checksums are not verified here; structure and
 * seq continuity are, as CORRUPT_SEGMENT). `visit` returns false to stop. An unreadable file is
 * OUT_OF_RANGE, as in readBatches.
 */
export async function scanHeaders(
  io: FileIo,
  dir: string,
  segment: SegmentInfo,
  visit: (header: BatchHeader, offset: number) => boolean,
): Promise<void> {
  const path = join(dir, segment.fileName);
  const file = await openSegment(io, path);
  const damage = (offset: number, reason: string): TidelogError =>
    new TidelogError('CORRUPT_SEGMENT', `${path} at offset ${offset}: ${reason}`, { details: { file: path, offset } });
  try {
    const chunk = new Uint8Array(Math.max(BATCH_HEADER_BYTES, Math.min(HEADER_SCAN_CHUNK_BYTES, segment.bytes)));
    let chunkStart = 0;
    let chunkLength = 0;
    let offset = segment.headBytes;
    let expectedSeq = segment.firstSeq;
    while (offset < segment.bytes) {
      if (offset < chunkStart || offset + BATCH_HEADER_BYTES > chunkStart + chunkLength) {
        chunkStart = offset;
        chunkLength = await readFully(file, chunk.subarray(0, Math.min(chunk.byteLength, segment.bytes - offset)), offset);
      }
      const parsed = readBatchHeader(chunk.subarray(0, chunkLength), offset - chunkStart);
      if (!parsed.ok) throw damage(offset, `bad header (${parsed.problem})`);
      const { header } = parsed;
      if (header.kind !== BatchKind.Events || header.firstSeq !== expectedSeq) {
        throw damage(offset, `batch at seq ${header.firstSeq}, expected events from ${expectedSeq}`);
      }
      if (!visit(header, offset)) return;
      expectedSeq += header.count;
      offset += BATCH_HEADER_BYTES + header.payloadBytes;
    }
  } finally {
    await file.close();
  }
}

/**
 * The firstSeq of the segment's first batch holding events whose timestampNs is ≥
 * `timestampNs`; null when none qualifies.
 */
export async function firstSeqAtTimeIn(io: FileIo, dir: string, segment: SegmentInfo, timestampNs: bigint): Promise<number | null> {
  let found: number | null = null;
  await scanHeaders(io, dir, segment, (header) => {
    if (header.count > 0 && header.timestampNs >= timestampNs) {
      found = header.firstSeq;
      return false;
    }
    return true;
  });
  return found;
}

/** The sparse index of a closed segment, from its headers. */
export async function buildSegmentIndex(io: FileIo, dir: string, segment: SegmentInfo): Promise<SegmentIndex> {
  const index = new SegmentIndex(segment.headBytes);
  await scanHeaders(io, dir, segment, (header, offset) => {
    index.add(header.firstSeq, offset);
    return true;
  });
  return index;
}
