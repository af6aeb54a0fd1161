// The storage engine's public surface.
export { Wal } from './wal.ts';
export type {
  WalOptions,
  WalOpenResult,
  WalRecovery,
  WalStats,
  WalStateMachine,
  SnapshotStream,
  SnapshotSink,
  SnapshotRecord,
  RestorePoint,
  PersistedInfo,
  AppendOptions,
  TruncateOptions,
} from './wal.ts';
export type { NoteCallback } from './commit-queue.ts';
export { EVENT_BYTES, encodeEvents, decodeEvents, decodeEvent, decodeEventAt, type SignalEvent } from '../event.ts';
export type { FsyncMode } from './segment-writer.ts';
export type { FileIo, WalFile, OpenMode } from './file-io.ts';
export { nodeFileIo, readWhole, writeFileAtomic } from './file-io.ts';
export { clearRepair, isRepairMarked, markRepair, repairMarkerFileName } from './repair-marker.ts';
export { replicaFileName } from './segment-name.ts';
export { readBatches, type SegmentInfo, type StoredBatch } from './reader.ts';
export type { RetentionPolicy } from './retention.ts';
export type { SnapshotterStats } from './snapshotter.ts';
export {
  recoverShard,
  type RecoverOptions,
  type RecoveryReport,
  type RecoveredSegment,
  type DamageReport,
  type ListedSegment,
} from './recovery.ts';
export type { ScannedBatch } from './segment-scan.ts';
export { readCheckpointFile, type CheckpointFile, type EpochStart } from './checkpoint-file.ts';
export { readSnapshotFile, SNAPSHOT_CHUNK_BYTES, type SnapshotMeta, type SnapshotReading } from './snapshot-file.ts';
export { readSegmentHead, encodeMarkerRecord, type SegmentHead } from './segment-head.ts';
export {
  segmentFileName,
  parseSegmentFileName,
  listShardSegments,
  listShardSnapshots,
  snapshotFileName,
  checkpointFileName,
  lockFileName,
} from './segment-name.ts';
export { encodeBatch, readBatchHeader, readNotes, BATCH_HEADER_BYTES, BatchKind, MAX_NOTE_BYTES } from './batch-format.ts';
export { initChecksum } from './checksum.ts';
export { listOrphans, readOrphans, removeOrphanLeftovers, removeOrphans, saveOrphans } from './orphans.ts';
