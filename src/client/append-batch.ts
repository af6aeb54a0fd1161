// One append request in the making: the items (parts of send() calls) it carries, and
// what its tries so far proved. Invariant: eventCount is the sum of its items' counts, and
// once closed its events are those items' events back to back, in item order — so the
// node's seqs for it split back into items by offset.

import type { TidelogError } from '../errors.ts';
import { EVENT_BYTES } from '../event.ts';

/** Part of one send() for one shard: at most maxBatchEvents events. */
export interface BatchItem {
  readonly events: Uint8Array;
  readonly count: number;
  /** seqs[offset … offset+count-1] are this item's seqs (0: duplicate / applied earlier). */
  acked(seqs: readonly number[], offset: number, epoch: number): void;
  /** Rejected; `maybeApplied`: a try may have been applied unheard (resending may write it twice). */
  failed(error: TidelogError, maybeApplied: boolean): void;
}

/** Codes by which the node says "refused: not applied, and the requestSeq not consumed". */
export const DEFINITIVE_REJECTIONS: ReadonlySet<string> = new Set([
  'BAD_REQUEST',
  'UNKNOWN_SIGNAL_TYPE',
  'WRONG_SHARD',
  'UNKNOWN_SHARD',
  'REQUEST_TOO_LARGE',
  'UNSUPPORTED_VERSION',
  'REQUEST_MISMATCH',
]);

/**
 * A rejection that proves the request was not applied and its requestSeq not consumed: a
 * refusal by the node. A permission the NATS server refused is no such proof. A refused
 * reply-inbox subscription leaves the request itself free to go out. A refused publish is
 * pinned by the client on the oldest request pending on that subject, which may be another
 * one, already applied (permissions changed while it was in flight, or a second producer on
 * the same connection).
 */
export function isDefinitiveRejection(error: TidelogError): boolean {
  return DEFINITIVE_REJECTIONS.has(error.code);
}

/** Retryable failures that prove this try was not applied. */
export const NOT_APPLIED: ReadonlySet<string> = new Set(['NO_RESPONDERS', 'OVERLOADED', 'NOT_LEADER', 'SEQUENCE_GAP', 'TRUNCATED']);

export class AppendBatch {
  readonly items: BatchItem[] = [];
  eventCount = 0;
  /** Set by close(). */
  events: Uint8Array | null = null;
  deadlineMs = Number.POSITIVE_INFINITY;
  /** 0 until first sent; then its number in the shard's session. */
  requestSeq = 0;
  state: 'open' | 'waiting' | 'in-flight' | 'done' = 'open';
  attempts = 0;
  retryAtMs = 0;
  /** Id of the try on the wire (ids increase per shard). */
  attemptId = 0;
  /** After SEQUENCE_GAP: tries with ids ≤ this were on the wire when the gap was seen. */
  gapSeenAtAttemptId = 0;
  /** Some try may have been applied without us hearing of it. */
  isAmbiguous = false;
  lastError: TidelogError | null = null;

  add(item: BatchItem): void {
    this.items.push(item);
    this.eventCount += item.count;
  }

  /** Joins the items' events (one copy, none for a single item) and starts the send deadline. */
  close(deadlineMs: number): void {
    this.events = joinItems(this.items, this.eventCount);
    this.state = 'waiting';
    this.deadlineMs = deadlineMs;
  }
}

function joinItems(items: readonly BatchItem[], eventCount: number): Uint8Array {
  if (items.length === 1) return items[0].events;
  const joined = new Uint8Array(eventCount * EVENT_BYTES);
  let at = 0;
  for (const item of items) {
    joined.set(item.events, at);
    at += item.events.byteLength;
  }
  return joined;
}
