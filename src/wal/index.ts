// The storage engine's public surface.
export { Wal } from './wal.ts';
export type { WalOptions, WalOpenResult, WalRecovery, WalStats, WalStateMachine, PersistedInfo, AppendOptions } from './wal.ts';
export type { NoteCallback } from './commit-queue.ts';
export { EVENT_BYTES, encodeEvents, decodeEvents, decodeEvent, decodeEventAt, type SignalEvent } from '../event.ts';
export type { FsyncMode } from './segment-writer.ts';
export type { FileIo, WalFile, OpenMode } from './file-io.ts';
export { nodeFileIo } from './file-io.ts';
export { readBatches, type SegmentInfo, type StoredBatch } from './reader.ts';
export {
  recoverShard,
  type RecoverOptions,
  type RecoveryReport,
  type RecoveredSegment,
  type DamageReport,
} from './recovery.ts';
export type { ScannedBatch } from './segment-scan.ts';
export { readCheckpointFile, type CheckpointFile } from './checkpoint-file.ts';
export {
  segmentFileName,
  parseSegmentFileName,
  listShardSegments,
  checkpointFileName,
  lockFileName,
} from './segment-name.ts';
export { encodeBatch, readBatchHeader, readNotes, BATCH_HEADER_BYTES, BatchKind, MAX_NOTE_BYTES } from './batch-format.ts';
export { initChecksum } from './checksum.ts';
