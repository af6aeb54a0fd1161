// Which failures a client retries and how long it waits between tries. Invariant: a retry
// loop always ends — at its deadline, on a code that retrying cannot fix, or when its
// AbortSignal fires — and a wait never outlives the signal that cancels it.

import type { Logger } from 'pino';
import { TidelogError, isTidelogError, type ErrorCode } from '../errors.ts';
import type { Transport } from '../transport/transport.ts';

/** What the clients log; a pino logger fits, and so does anything with these two methods. */
export type ClientLogger = Pick<Logger, 'warn' | 'debug'>;

/**
 * Failures that say "not now" rather than "never": the node was unreachable, busy, not the
 * leader, (SEQUENCE_GAP) waits for an earlier request of the same session first,
 * (TRUNCATED) was a deposed leader whose uncommitted copy of the request was cut, or
 * (FSYNC_FAILED, WRITE_FAILED) a leader whose disk failed. A
 * CLOSED answered by a node (a shard not serving, a node stopping) is one too; a CLOSED of
 * our own side (localClosedError) is not.
 */
const RETRYABLE_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'TIMEOUT',
  'DISCONNECTED',
  'NO_RESPONDERS',
  'OVERLOADED',
  'NOT_LEADER',
  'SEQUENCE_GAP',
  'TRUNCATED',
  // The leader's disk failed (its lane is fail-stop): in a cluster another replica takes over,
  // and a session's retry is exactly once there (the batch may yet have landed: the session
  // answers it with its seqs). On a single node the retries fail the same way until the
  // deadline, which then rejects with this code.
  'FSYNC_FAILED',
  'WRITE_FAILED',
]);

export function isRetryable(error: unknown): boolean {
  if (!isTidelogError(error)) return false;
  return RETRYABLE_CODES.has(error.code) || (error.code === 'CLOSED' && !isLocalClosed(error));
}

/** CLOSED for our own side (the client or its transport was closed): never retried. */
export function localClosedError(message: string, cause?: unknown): TidelogError {
  return new TidelogError('CLOSED', message, { cause, details: { isLocal: true } });
}

export function isLocalClosed(error: unknown): boolean {
  return isTidelogError(error, 'CLOSED') && error.context.isLocal === true;
}

/**
 * transport.request, with the transport's own CLOSED marked local, so that it is told
 * apart from a CLOSED a node answers.
 */
export async function requestBytes(transport: Transport, subject: string, data: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
  try {
    return await transport.request(subject, data, { timeoutMs });
  } catch (error) {
    if (isTidelogError(error, 'CLOSED')) throw localClosedError('the client transport is closed', error);
    throw error;
  }
}

/** Anything a request can throw, as a TidelogError (a non-TidelogError is a decoding fault). */
export function asTidelogError(error: unknown): TidelogError {
  if (error instanceof TidelogError) return error;
  return new TidelogError('DECODE_FAILED', `unexpected failure: ${String(error)}`, { cause: error });
}

export interface BackoffOptions {
  /** First wait after a failure. */
  retryBackoffMs: number;
  /** Waits double per attempt up to this. */
  maxRetryBackoffMs: number;
}

/**
 * Wait before retry number `attempt` (1-based): exponential, with jitter in [½, 1] of the
 * step so that many clients failing together do not retry together.
 */
export function backoffMs(attempt: number, options: BackoffOptions): number {
  const step = Math.min(options.maxRetryBackoffMs, options.retryBackoffMs * 2 ** Math.min(attempt - 1, 30));
  return Math.max(1, Math.round(step * (0.5 + Math.random() * 0.5)));
}

/** Resolves after `ms`, or at once when `signal` fires (callers check signal.aborted). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted === true) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** `promise`'s value, or CLOSED as soon as `signal` fires. */
export function abortable<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return promise;
  if (signal.aborted) {
    promise.catch(() => undefined); // the outcome no longer matters to anyone
    return Promise.reject(closedError());
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(closedError());
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error as Error);
      },
    );
  });
}

export interface RetryOptions extends BackoffOptions {
  /** Give up (with the last error) once a retry would start after this (clock ms); Infinity: never. */
  deadlineMs: number;
  nowMs: () => number;
  signal?: AbortSignal;
  /** Told about each failure that will be retried. */
  onRetry?: (error: TidelogError, attempt: number) => void;
}

/**
 * Runs `attempt` until it succeeds, fails with a code that is not retryable, the deadline
 * passes (the last error is thrown: TIMEOUT, NO_RESPONDERS…) or the signal fires (CLOSED).
 */
export async function retrying<T>(attempt: () => Promise<T>, options: RetryOptions): Promise<T> {
  for (let tries = 1; ; tries++) {
    if (options.signal?.aborted === true) throw closedError();
    try {
      return await abortable(attempt(), options.signal);
    } catch (caught) {
      const error = asTidelogError(caught);
      if (!isRetryable(error)) throw error;
      const waitMs = backoffMs(tries, options);
      if (options.nowMs() + waitMs > options.deadlineMs) throw error;
      options.onRetry?.(error, tries);
      await sleep(waitMs, options.signal);
    }
  }
}

function closedError(): TidelogError {
  return localClosedError('the client was closed');
}
