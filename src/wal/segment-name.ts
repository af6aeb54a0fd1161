// Names of the files a shard keeps in a WAL directory. Several shards may share a directory;
// every name carries the shard id, and numbers are zero-padded so names sort in seq order.
//
//   wal-SSSSS-NNNNNNNNNNNNNNNNNNNN.seg   segment of shard S whose first seq is N
//   snap-SSSSS-NNNNNNNNNNNNNNNNNNNN.snap state snapshot of shard S as of seq N (snapshot-file.ts)
//   wal-SSSSS.lock                       the shard's directory lock (flock-style, see lock.ts)
//   checkpoint-SSSSS.bin                 the shard's checkpoint file (see checkpoint-file.ts)
//   *.tmp                                half-made files; removed on open

import { TidelogError } from '../errors.ts';

export const MAX_SHARD_ID = 65_535;
const SEGMENT_PATTERN = /^wal-(\d{5})-(\d{20})\.seg$/;
const SNAPSHOT_PATTERN = /^snap-(\d{5})-(\d{20})\.snap$/;

export function checkShardId(shard: number): void {
  if (!Number.isInteger(shard) || shard < 0 || shard > MAX_SHARD_ID) {
    throw new TidelogError('BAD_REQUEST', `shard must be an integer 0..${MAX_SHARD_ID}, got ${shard}`);
  }
}

export function segmentFileName(shard: number, firstSeq: number): string {
  return `wal-${pad(shard, 5)}-${pad(firstSeq, 20)}.seg`;
}

export function snapshotFileName(shard: number, seq: number): string {
  return `snap-${pad(shard, 5)}-${pad(seq, 20)}.snap`;
}

export function lockFileName(shard: number): string {
  return `wal-${pad(shard, 5)}.lock`;
}

export function checkpointFileName(shard: number): string {
  return `checkpoint-${pad(shard, 5)}.bin`;
}

/** The replica file: the highest epoch this replica has seen, and a seq known committed. */
export function replicaFileName(shard: number): string {
  return `replica-${pad(shard, 5)}.bin`;
}

export interface SegmentName {
  shard: number;
  firstSeq: number;
  fileName: string;
}

export function parseSegmentFileName(fileName: string): SegmentName | null {
  const match = SEGMENT_PATTERN.exec(fileName);
  if (!match) return null;
  const firstSeq = Number(match[2]);
  if (!Number.isSafeInteger(firstSeq) || firstSeq < 1) return null;
  return { shard: Number(match[1]), firstSeq, fileName };
}

/** The segments of one shard among `fileNames`, in seq order. Other names are ignored. */
export function listShardSegments(fileNames: readonly string[], shard: number): SegmentName[] {
  return fileNames
    .map(parseSegmentFileName)
    .filter((name): name is SegmentName => name !== null && name.shard === shard)
    .sort((a, b) => a.firstSeq - b.firstSeq);
}

export interface SnapshotName {
  shard: number;
  /** The snapshot holds the state as of this seq. */
  seq: number;
  fileName: string;
}

export function parseSnapshotFileName(fileName: string): SnapshotName | null {
  const match = SNAPSHOT_PATTERN.exec(fileName);
  if (!match) return null;
  const seq = Number(match[2]);
  if (!Number.isSafeInteger(seq)) return null;
  return { shard: Number(match[1]), seq, fileName };
}

/** The snapshot files of one shard among `fileNames`, oldest (lowest seq) first. */
export function listShardSnapshots(fileNames: readonly string[], shard: number): SnapshotName[] {
  return fileNames
    .map(parseSnapshotFileName)
    .filter((name): name is SnapshotName => name !== null && name.shard === shard)
    .sort((a, b) => a.seq - b.seq);
}

export function pad(value: number, width: number): string {
  return String(value).padStart(width, '0');
}
