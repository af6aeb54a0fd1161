// Reads committed batches back from segment files, verifying every checksum on the way, so
// bit rot after open is reported (CHECKSUM_MISMATCH with file and offset), never returned;
// and finds the seq at a time from batch headers alone (firstSeqAtTimeIn, for seqAtTime).
//
// A notes-only batch (count 0, firstSeq F) sits between seq F - 1 and seq F. A read of
// [fromSeq, toSeq] delivers it when fromSeq <= F <= toSeq + 1: exactly when a reader that
// holds everything through fromSeq - 1 and will hold everything through toSeq can place it
// (its firstSeq is that reader's next expected seq). So reads of adjacent ranges may both
// deliver a batch that sits on their boundary; notes must be idempotent to apply.

import { join } from 'node:path';
import { TidelogError } from '../errors.ts';
import { BATCH_HEADER_BYTES, BatchKind, readBatchHeader } from './batch-format.ts';
import { EVENT_BYTES } from '../event.ts';
import { readWhole, type FileIo, type WalFile } from './file-io.ts';
import { readRecord } from './segment-scan.ts';

export interface SegmentInfo {
  fileName: string;
  firstSeq: number;
  /** Last durable seq in the segment; firstSeq - 1 when it holds none yet. */
  lastSeq: number;
  /** Durable bytes. */
  bytes: number;
  /** Snapshot carried by the segment's head checkpoint record. */
  snapshot: Uint8Array;
}

/** firstSeqAtTimeIn reads a segment in chunks this large, looking at headers only. */
const HEADER_SCAN_CHUNK_BYTES = 64 << 10;

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
}

/**
 * Batches holding seqs in [fromSeq, toSeq], in order; the first may start before fromSeq.
 * Notes-only batches come along as described at the top of this file.
 */
export async function* readBatches(
  io: FileIo,
  dir: string,
  segments: readonly SegmentInfo[],
  fromSeq: number,
  toSeq: number,
): AsyncGenerator<StoredBatch> {
  for (const segment of segments) {
    // A segment's batches start at most at lastSeq + 1 (a trailing notes-only batch).
    if (segment.lastSeq + 1 < fromSeq) continue;
    if (segment.firstSeq > toSeq + 1) return;
    const path = join(dir, segment.fileName);
    let bytes: Uint8Array;
    try {
      bytes = (await readWhole(io, path)).subarray(0, segment.bytes);
    } catch (cause) {
      throw new TidelogError('OUT_OF_RANGE', `${path} is no longer readable (removed by truncation?)`, { cause });
    }
    let offset = 0;
    while (offset < bytes.byteLength) {
      const record = readRecord(bytes, offset);
      if (!record.ok) {
        throw new TidelogError(record.code, `${path} at offset ${offset}: ${record.reason}`, {
          details: { file: path, offset },
        });
      }
      const header = record.header;
      const next = offset + BATCH_HEADER_BYTES + header.payloadBytes;
      const isNotesOnly = header.count === 0;
      // The seq a reader must have reached for this batch to be news; see the top of the file.
      const reach = isNotesOnly ? header.firstSeq : header.firstSeq + header.count - 1;
      if (header.kind === BatchKind.Events && reach >= fromSeq) {
        if (header.firstSeq > (isNotesOnly ? toSeq + 1 : toSeq)) return;
        yield {
          firstSeq: header.firstSeq,
          count: header.count,
          events: bytes.subarray(offset + BATCH_HEADER_BYTES, offset + BATCH_HEADER_BYTES + header.count * EVENT_BYTES),
          timestampNs: header.timestampNs,
          leaderEpoch: header.leaderEpoch,
          notes: record.notes,
        };
      }
      offset = next;
    }
  }
}

/**
 * The firstSeq of the segment's first batch holding events whose timestampNs is ≥
 * `timestampNs`, among its first `segment.bytes` bytes; null when none qualifies. Reads
 * headers only (in chunks, skipping payloads), so checksums are not verified here; headers
 * are still checked for structure and seq continuity (CORRUPT_SEGMENT). An unreadable file is
 * OUT_OF_RANGE, as in readBatches.
 */
export async function firstSeqAtTimeIn(io: FileIo, dir: string, segment: SegmentInfo, timestampNs: bigint): Promise<number | null> {
  const path = join(dir, segment.fileName);
  let file: WalFile;
  try {
    file = await io.open(path, 'read');
  } catch (cause) {
    throw new TidelogError('OUT_OF_RANGE', `${path} is no longer readable (removed by truncation?)`, { cause });
  }
  const damage = (offset: number, reason: string): TidelogError =>
    new TidelogError('CORRUPT_SEGMENT', `${path} at offset ${offset}: ${reason}`, { details: { file: path, offset } });
  try {
    const chunk = new Uint8Array(Math.min(HEADER_SCAN_CHUNK_BYTES, segment.bytes));
    let chunkStart = 0;
    let chunkLength = 0;
    let offset = BATCH_HEADER_BYTES + segment.snapshot.byteLength; // past the head checkpoint record
    let expectedSeq = segment.firstSeq;
    while (offset < segment.bytes) {
      if (offset + BATCH_HEADER_BYTES > chunkStart + chunkLength) {
        chunkStart = offset;
        chunkLength = await readFullyAt(file, chunk.subarray(0, Math.min(chunk.byteLength, segment.bytes - offset)), offset);
      }
      const parsed = readBatchHeader(chunk.subarray(0, chunkLength), offset - chunkStart);
      if (!parsed.ok) throw damage(offset, `bad header (${parsed.problem})`);
      const { header } = parsed;
      if (header.kind !== BatchKind.Events || header.firstSeq !== expectedSeq) {
        throw damage(offset, `batch at seq ${header.firstSeq}, expected events from ${expectedSeq}`);
      }
      if (header.count > 0 && header.timestampNs >= timestampNs) return header.firstSeq;
      expectedSeq += header.count;
      offset += BATCH_HEADER_BYTES + header.payloadBytes;
    }
    return null;
  } finally {
    await file.close();
  }
}

/** Reads into all of `into` from `position`, looping over short reads; returns bytes read. */
async function readFullyAt(file: WalFile, into: Uint8Array, position: number): Promise<number> {
  let done = 0;
  while (done < into.byteLength) {
    const read = await file.read(done === 0 ? into : into.subarray(done), position + done);
    if (read === 0) break;
    done += read;
  }
  return done;
}
