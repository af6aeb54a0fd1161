// What the WAL keeps in step with its log (chunked-wal's model): a state machine that folds
// every durable batch, and whose snapshots the WAL writes to files of their own
// (snapshot-file.ts) so that a restart restores the newest one and replays only the log after it.
// Invariant: the state is a function of the batches applied since the state it was restored
// from; a snapshot taken after a batch describes exactly the batches applied so far.

import type { StoredBatch } from './reader.ts';

/** A snapshot being produced piece by piece, consistent as of the moment it began. */
export interface SnapshotStream {
  /**
   * The next piece (at most maxBytes; may be a view valid only until the next call), or null
   * when the snapshot is complete. Each call should cost O(maxBytes): the WAL calls it in
   * slices between other work, so a large state never stalls the event loop for long.
   */
  next(maxBytes: number): Uint8Array | null;
  /** Stop early (the WAL is closing or the write failed). */
  cancel(): void;
}

/** Receives a snapshot's bytes piece by piece on restore. */
export interface SnapshotSink {
  /** The next piece, in order (a view valid during the call only: copy what you keep). */
  push(bytes: Uint8Array): void;
  /** Every piece arrived and verified: the restored state takes effect. */
  finish(): void;
  /** The file turned out damaged: drop what was built (the WAL then tries an older snapshot). */
  abort?(): void;
}

export interface WalStateMachine {
  /** Replace the state with `snapshot`, taken after seq `lastSeq` (empty bytes: initial state). */
  restore(snapshot: Uint8Array, lastSeq: number): void;
  /**
   * Fold one durable batch; `events` is count × 21 packed bytes and `notes` its notes, both
   * valid during the call only. count may be 0 for a batch that carries only notes.
   */
  apply(batch: StoredBatch): void;
  /** The current state as bytes, all at once (used when beginSnapshot is absent). */
  snapshot(): Uint8Array;
  /** Optional: the current state as a stream, for states too large to encode in one go. */
  beginSnapshot?(): SnapshotStream;
  /** Optional: restore from a stream of the bytes beginSnapshot (or snapshot) produced. */
  beginRestore?(lastSeq: number): SnapshotSink;
}
