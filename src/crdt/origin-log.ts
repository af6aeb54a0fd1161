// Per-origin bookkeeping: how far the origin's seq space has been folded, and a bounded reorder
// buffer for events that arrived ahead of a gap.
// Invariant: every seq ≤ appliedSeq has been folded exactly once, no pending seq is ≤
// appliedSeq + 1 (it would have been folded), and (origin, seq) names one event forever, so a
// union of two pending maps never holds two different events under one seq.

import { EVENT_BYTES } from './packed-events.ts';

export interface PendingEvent {
  /** The packed 21-byte event (a view into a private copy). */
  bytes: Uint8Array;
  wallNs: bigint;
  logical: number;
  nodeId: number;
}

export class OriginLog {
  readonly origin: number;
  appliedSeq = 0;
  readonly pending = new Map<number, PendingEvent>();

  constructor(origin: number) {
    this.origin = origin;
  }

  /** True when the log says nothing (equal to an absent log). */
  get isEmpty(): boolean {
    return this.appliedSeq === 0 && this.pending.size === 0;
  }

  /** Pending seqs, ascending. */
  pendingSeqs(): number[] {
    return [...this.pending.keys()].sort((a, b) => a - b);
  }

  clone(): OriginLog {
    const copy = new OriginLog(this.origin);
    copy.appliedSeq = this.appliedSeq;
    // Pending events are immutable once buffered, so sharing them is safe.
    for (const [seq, event] of this.pending) copy.pending.set(seq, event);
    return copy;
  }

  equals(other: OriginLog): boolean {
    if (this.appliedSeq !== other.appliedSeq || this.pending.size !== other.pending.size) return false;
    for (const [seq, event] of this.pending) {
      const theirs = other.pending.get(seq);
      if (
        theirs === undefined ||
        theirs.wallNs !== event.wallNs ||
        theirs.logical !== event.logical ||
        theirs.nodeId !== event.nodeId
      ) {
        return false;
      }
      for (let at = 0; at < EVENT_BYTES; at++) if (theirs.bytes[at] !== event.bytes[at]) return false;
    }
    return true;
  }
}
