// The checkpoint file: "everything up to `seq` is materialised elsewhere; replay after it".
// It holds exactly one record in batch format v2 (batch-format.ts) of kind checkpoint, whose
// firstSeq is seq + 1 and whose payload is an optional snapshot, so the same checksum code
// guards it. Written tmp → fsync → rename → fsync(dir): a reader sees the old file or the new.
// The replica file (replica-SSSSS.bin) is one record of the same kind: its leaderEpoch is the
// highest epoch the replica has seen (it refuses older ones, across restarts), its firstSeq − 1
// a seq known committed when it was written, and its payload the epoch its log was last
// confirmed in (u64) followed by where each epoch's part of the log begins: n × (epoch u64,
// first seq u64), epochs ascending (docs/FORMAT.md).

import { join } from 'node:path';
import { TidelogError } from '../errors.ts';
import { BATCH_HEADER_BYTES, BatchKind, encodeBatch, type BatchHeader } from './batch-format.ts';
import { readWhole, writeFileAtomic, type FileIo } from './file-io.ts';
import { checkpointFileName, replicaFileName } from './segment-name.ts';
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
  const read = await readRecordFile(io, join(dir, checkpointFileName(shard)));
  if (read === null) return null;
  const { bytes, header, fail } = read;
  if (header.kind !== BatchKind.Checkpoint) fail('not a checkpoint record');
  if (header.shardId !== shard) fail(`checkpoint of shard ${header.shardId}, expected ${shard}`);
  if (BATCH_HEADER_BYTES + header.payloadBytes !== bytes.byteLength) fail('trailing bytes after the checkpoint record');
  return {
    seq: header.firstSeq - 1,
    timestampNs: header.timestampNs,
    snapshot: bytes.slice(BATCH_HEADER_BYTES, BATCH_HEADER_BYTES + header.payloadBytes),
  };
}

export interface EpochStart {
  epoch: number;
  /** The first seq of the log written under `epoch`. */
  firstSeq: number;
}

export interface ReplicaFile {
  /** The highest epoch this replica has seen. */
  epoch: number;
  /** A seq known committed when the file was written (a lower bound of the commit point). */
  committedSeq: number;
  /**
   * The newest epoch whose leader confirmed this log (its prefix matched the leader's and
   * anything after it was cut): Viewstamped Replication's "last normal view". A new leader is
   * chosen by (confirmedEpoch, durable end).
   */
  confirmedEpoch: number;
  /** Where each epoch's part of the log begins, epochs ascending. */
  epochStarts: readonly EpochStart[];
}

const EPOCH_START_BYTES = 16;
const CONFIRMED_BYTES = 8;

/**
 * Writes the shard's replica file (durably, atomically). `fileName` names another file of the
 * same record: an install's epoch table (snapshot-install.ts).
 */
export async function writeReplicaFile(io: FileIo, dir: string, shard: number, replica: ReplicaFile, timestampNs: bigint, fileName = replicaFileName(shard)): Promise<void> {
  const payload = new Uint8Array(CONFIRMED_BYTES + replica.epochStarts.length * EPOCH_START_BYTES);
  const view = new DataView(payload.buffer);
  view.setBigUint64(0, BigInt(replica.confirmedEpoch), true);
  replica.epochStarts.forEach((start, index) => {
    view.setBigUint64(CONFIRMED_BYTES + index * EPOCH_START_BYTES, BigInt(start.epoch), true);
    view.setBigUint64(CONFIRMED_BYTES + index * EPOCH_START_BYTES + 8, BigInt(start.firstSeq), true);
  });
  const record = encodeBatch(
    { kind: BatchKind.Checkpoint, shardId: shard, count: 0, leaderEpoch: replica.epoch, firstSeq: replica.committedSeq + 1, timestampNs },
    payload,
  );
  await writeFileAtomic(io, dir, fileName, record);
}

/** The shard's replica file (or `fileName`), or null when it has none. A damaged file is CHECKPOINT_DAMAGED. */
export async function readReplicaFile(io: FileIo, dir: string, shard: number, fileName = replicaFileName(shard)): Promise<ReplicaFile | null> {
  const read = await readRecordFile(io, join(dir, fileName));
  if (read === null) return null;
  const { bytes, header, fail } = read;
  if (header.kind !== BatchKind.Checkpoint || header.payloadBytes < CONFIRMED_BYTES || (header.payloadBytes - CONFIRMED_BYTES) % EPOCH_START_BYTES !== 0) {
    fail('not a replica record');
  }
  if (header.shardId !== shard) fail(`replica file of shard ${header.shardId}, expected ${shard}`);
  if (BATCH_HEADER_BYTES + header.payloadBytes !== bytes.byteLength) fail('trailing bytes after the replica record');
  const view = new DataView(bytes.buffer, bytes.byteOffset + BATCH_HEADER_BYTES, header.payloadBytes);
  const confirmedEpoch = Number(view.getBigUint64(0, true));
  if (!Number.isSafeInteger(confirmedEpoch) || confirmedEpoch > header.leaderEpoch) fail(`confirmed epoch ${confirmedEpoch} above the recorded epoch ${header.leaderEpoch}`);
  const epochStarts: EpochStart[] = [];
  for (let at = CONFIRMED_BYTES; at < header.payloadBytes; at += EPOCH_START_BYTES) {
    const epoch = Number(view.getBigUint64(at, true));
    const firstSeq = Number(view.getBigUint64(at + 8, true));
    const previous = epochStarts[epochStarts.length - 1];
    if (!Number.isSafeInteger(epoch) || !Number.isSafeInteger(firstSeq) || firstSeq < 1) fail('an impossible epoch start');
    if (previous !== undefined && (epoch <= previous.epoch || firstSeq < previous.firstSeq)) fail('epoch starts out of order');
    if (epoch > header.leaderEpoch) fail(`an epoch start of epoch ${epoch}, above the recorded epoch ${header.leaderEpoch}`);
    epochStarts.push({ epoch, firstSeq });
  }
  return { epoch: header.leaderEpoch, committedSeq: header.firstSeq - 1, confirmedEpoch, epochStarts };
}

/**
 * A file of one verified record (the checkpoint and replica files): its bytes and header, and
 * `fail`, which throws CHECKPOINT_DAMAGED naming the file; null when the file does not exist.
 */
async function readRecordFile(io: FileIo, path: string): Promise<{ bytes: Uint8Array; header: BatchHeader; fail: (reason: string) => never } | null> {
  if (!(await io.exists(path))) return null;
  const bytes = await readWhole(io, path);
  const record = readRecord(bytes, 0);
  const fail = (reason: string): never => {
    throw new TidelogError('CHECKPOINT_DAMAGED', `${path} at offset 0: ${reason}`, { details: { file: path, offset: 0 } });
  };
  if (!record.ok) return fail(record.reason);
  return { bytes, header: record.header, fail };
}
