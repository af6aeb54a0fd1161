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
  'CHECKPOINT_DAMAGED', // a checkpoint record or file failed verification
  'FSYNC_FAILED', // fdatasync/fsync reported an error; the lane is fail-stop
  'WRITE_FAILED', // write() reported an error; the lane is fail-stop
  'IO_ERROR', // another file-system error (open, rename, readdir…)
  'CLOCK_SKEW', // a remote HLC is further ahead than maxOffsetMs
  'SCHEMA_INVALID', // a signal schema failed validation
  'UNKNOWN_SIGNAL_TYPE', // an event names a signal type the schema lacks
  'DECODE_FAILED', // bytes that should hold an encoded value do not
  'OUT_OF_RANGE', // a seq below what the log still retains, or beyond what it has
  'HOOK_FAILED', // a caller-supplied callback (state machine, onPersisted) threw; the lane stops
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
