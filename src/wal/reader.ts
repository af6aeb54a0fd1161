// Reads committed batches back from segment files, verifying every checksum on the way, so
// bit rot after open is reported (CHECKSUM_MISMATCH with file and offset), never returned.

import { join } from 'node:path';
import { TidelogError } from '../errors.ts';
import { BATCH_HEADER_BYTES } from './batch-format.ts';
import { EVENT_BYTES } from '../event.ts';
import { readWhole, type FileIo } from './file-io.ts';
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

export interface StoredBatch {
  firstSeq: number;
  count: number;
  /** Packed events, count × 21 bytes. */
  events: Uint8Array;
  timestampNs: bigint;
  leaderEpoch: number;
}

/** Batches holding seqs in [fromSeq, toSeq], in order; the first may start before fromSeq. */
export async function* readBatches(
  io: FileIo,
  dir: string,
  segments: readonly SegmentInfo[],
  fromSeq: number,
  toSeq: number,
): AsyncGenerator<StoredBatch> {
  for (const segment of segments) {
    if (segment.lastSeq < fromSeq || segment.lastSeq < segment.firstSeq) continue;
    if (segment.firstSeq > toSeq) return;
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
      const lastSeq = header.firstSeq + header.count - 1;
      if (header.count > 0 && lastSeq >= fromSeq) {
        if (header.firstSeq > toSeq) return;
        yield {
          firstSeq: header.firstSeq,
          count: header.count,
          events: bytes.subarray(offset + BATCH_HEADER_BYTES, offset + BATCH_HEADER_BYTES + header.count * EVENT_BYTES),
          timestampNs: header.timestampNs,
          leaderEpoch: header.leaderEpoch,
        };
      }
      offset = next;
    }
  }
}
