// The one error type of tidelog. Callers branch on `code`, which is stable across releases;
// the message is for people and may change.

export const ErrorCodes = [
  'BAD_REQUEST', // malformed input: wrong length, NaN weight, out-of-range field
  'OVERLOADED', // a bounded queue is full; retry later
  'CLOSED', // the component was closed
  'WAL_LOCKED', // another process (or another handle) owns the WAL directory
  'CHECKSUM_MISMATCH', // a batch or record failed its BLAKE3/CRC check before the tail
  'CORRUPT_SEGMENT', // structural damage before the tail (bad magic, impossible length…)
  'SEGMENT_GAP', // consecutive segments do not continue each other's seqs
  'CHECKPOINT_DAMAGED', // a checkpoint record or file, or a segment's head record, failed verification
  'SNAPSHOT_DAMAGED', // a state snapshot file failed verification, or no usable snapshot covers the log's start
  'FSYNC_FAILED', // fdatasync/fsync reported an error; the lane is fail-stop
  'WRITE_FAILED', // write() reported an error; the lane is fail-stop
  'IO_ERROR', // another file-system error (open, rename, readdir…)
  'CLOCK_SKEW', // a remote HLC is further ahead than maxOffsetMs
  'SCHEMA_INVALID', // a signal schema failed validation
  'UNKNOWN_SIGNAL_TYPE', // an event names a signal type the schema lacks
  'DECODE_FAILED', // bytes that should hold an encoded value do not
  'OUT_OF_RANGE', // a seq below what the log still retains, or beyond what it has
  'HOOK_FAILED', // a caller-supplied callback (state machine, onPersisted) threw; the lane stops
  'TRUNCATED', // an append not yet committed was cut from the log (a deposed leader's suffix); retry it
  'FENCED', // an epoch older than one this replica has recorded: a newer leader exists
  'REPAIRING', // this replica lost part of its log to damage: it catches up from its leader before it votes
  // wire and node (docs/PROTOCOL.md)
  'UNSUPPORTED_VERSION', // a message carries a protocol version this node does not speak
  'REQUEST_TOO_LARGE', // a request exceeds the node's maxRequestEvents / maxRequestBytes
  'WRONG_SHARD', // a per-shard request holds events that route to another shard
  'UNKNOWN_SHARD', // a shard id outside the node's shard map
  'NOT_LEADER', // this node does not lead the shard (replication: ask the leader)
  'SEQUENCE_GAP', // a producer session skipped a request seq; resend the missing ones first
  'PRODUCER_FENCED', // a newer session epoch of the same producer id exists
  'REQUEST_MISMATCH', // a session's requestSeq reused for other events than those first applied under it
  'TIMEOUT', // no reply within the deadline; the request may or may not have been applied
  'NO_RESPONDERS', // nothing listens on the subject (no node up, or wrong namespace)
  'DISCONNECTED', // the transport lost its connection and the operation could not complete
  'PERMISSION_DENIED', // the NATS server refused this connection's user a publish or subscription (details: permission)
  'CONFIG_INVALID', // a config file, env override or CLI flag failed validation
] as const;

export type ErrorCode = (typeof ErrorCodes)[number];

export class TidelogError extends Error {
  override readonly name = 'TidelogError';
  readonly code: ErrorCode;
  /**
   * Machine-readable facts (file, offset, errno, limit…). Named `context`, not `details`:
   * test runners such as uvu treat `err.details` as their own diff text and break on objects.
   */
  readonly context: Readonly<Record<string, unknown>>;

  constructor(
    code: ErrorCode,
    message: string,
    options: { cause?: unknown; details?: Record<string, unknown> } = {},
  ) {
    super(`${code}: ${message}`, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.context = Object.freeze({ ...(options.details ?? {}) });
  }
}

export function isTidelogError(value: unknown, code?: ErrorCode): value is TidelogError {
  return value instanceof TidelogError && (code === undefined || value.code === code);
}

/** Broken invariants crash loudly: this is for "cannot happen", never for bad input. */
export function invariant(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(`invariant violated: ${message}`);
}
