// The checkpoint file: "everything up to `seq` is materialised elsewhere; replay after it".
// It holds exactly one record in batch format v2 (batch-format.ts) of kind checkpoint, whose
// firstSeq is seq + 1 and whose payload is an optional snapshot, so the same checksum code
// guards it. Written tmp → fsync → rename → fsync(dir): a reader sees the old file or the new.

import { join } from 'node:path';
import { TidelogError } from '../errors.ts';
import { BATCH_HEADER_BYTES, BatchKind, encodeBatch } from './batch-format.ts';
import { readWhole, writeFileAtomic, type FileIo } from './file-io.ts';
import { checkpointFileName } from './segment-name.ts';
import { readRecord } from './segment-scan.ts';

export interface CheckpointFile {
  seq: number;
  timestampNs: bigint;
  snapshot: Uint8Array;
}

export function encodeCheckpointRecord(
  shard: number,
  nextSeq: number,
  timestampNs: bigint,
  snapshot: Uint8Array,
): Uint8Array {
  return encodeBatch(
    { kind: BatchKind.Checkpoint, shardId: shard, count: 0, leaderEpoch: 0, firstSeq: nextSeq, timestampNs },
    snapshot,
  );
}

export async function writeCheckpointFile(io: FileIo, dir: string, shard: number, checkpoint: CheckpointFile): Promise<void> {
  const record = encodeCheckpointRecord(shard, checkpoint.seq + 1, checkpoint.timestampNs, checkpoint.snapshot);
  await writeFileAtomic(io, dir, checkpointFileName(shard), record);
}

/** The shard's checkpoint, or null when it has none. A damaged file is CHECKPOINT_DAMAGED. */
export async function readCheckpointFile(io: FileIo, dir: string, shard: number): Promise<CheckpointFile | null> {
  const path = join(dir, checkpointFileName(shard));
  if (!(await io.exists(path))) return null;
  const bytes = await readWhole(io, path);
  const record = readRecord(bytes, 0);
  const fail = (reason: string): never => {
    throw new TidelogError('CHECKPOINT_DAMAGED', `${path} at offset 0: ${reason}`, { details: { file: path, offset: 0 } });
  };
  if (!record.ok) return fail(record.reason);
  const header = record.header;
  if (header.kind !== BatchKind.Checkpoint) fail('not a checkpoint record');
  if (header.shardId !== shard) fail(`checkpoint of shard ${header.shardId}, expected ${shard}`);
  if (BATCH_HEADER_BYTES + header.payloadBytes !== bytes.byteLength) fail('trailing bytes after the checkpoint record');
  return {
    seq: header.firstSeq - 1,
    timestampNs: header.timestampNs,
    snapshot: bytes.slice(BATCH_HEADER_BYTES, BATCH_HEADER_BYTES + header.payloadBytes),
  };
}
