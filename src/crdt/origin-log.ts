// Per-origin bookkeeping: how far the origin's seq space has been folded, and a bounded reorder
// buffer for events that arrived ahead of a gap.
// Invariant: every seq ≤ appliedSeq has been folded exactly once, no pending seq is ≤
// appliedSeq + 1 (it would have been folded), and (origin, seq) names one event forever, so a
// union of two pending maps never holds two different events under one seq.

import { TidelogError } from '../errors.ts';
import type { HlcTimestamp } from './hlc-timestamp.ts';
import { EVENT_BYTES } from '../event.ts';

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

  /**
   * Buffers a batch that arrived beyond a gap (event i: seq firstSeq + i, logical + i); seqs
   * already pending are kept as they are. Returns how many events were added; OVERLOADED,
   * adding none, if that would be more than `room`.
   */
  addPending(bytes: Uint8Array, count: number, firstSeq: number, firstHlc: HlcTimestamp, room: number): number {
    let added = 0;
    for (let index = 0; index < count; index++) if (!this.pending.has(firstSeq + index)) added++;
    if (added > room) {
      throw new TidelogError('OVERLOADED', `the reorder buffer is full: origin ${this.origin} waits for seq ${this.appliedSeq + 1}`, {
        details: { origin: this.origin, appliedSeq: this.appliedSeq, pendingEvents: this.pending.size },
      });
    }
    const copy = bytes.slice(0, count * EVENT_BYTES);
    for (let index = 0; index < count; index++) {
      const seq = firstSeq + index;
      if (this.pending.has(seq)) continue;
      this.pending.set(seq, {
        bytes: copy.subarray(index * EVENT_BYTES, (index + 1) * EVENT_BYTES),
        wallNs: firstHlc.wallNs,
        logical: firstHlc.logical + index,
        nodeId: firstHlc.nodeId,
      });
    }
    return added;
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
