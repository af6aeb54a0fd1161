// Per-origin bookkeeping: how far the origin's seq space has been folded, the greatest HLC
// folded, and a bounded reorder buffer for events that arrived ahead of a gap.
// Invariant: every seq ≤ appliedSeq has been folded exactly once, no pending seq is ≤
// appliedSeq + 1 once the state drained it, and (origin, seq) names one event, so a union of
// two pending maps normally never meets two different events under one seq. When it does (a
// re-used origin id, a forged event), the greater (event bytes, HLC) wins on every replica and
// the clash is counted in `conflicts`, so the union still commutes.

import { TidelogError } from '../errors.ts';
import { compareHlcParts, HlcTimestamp } from './hlc-timestamp.ts';
import { EVENT_BYTES } from '../event.ts';

export interface PendingEvent {
  /** The packed 21-byte event (a view into a private copy). */
  bytes: Uint8Array;
  wallNs: bigint;
  logical: number;
  nodeId: number;
}

export interface UniteResult {
  /** Events new to this buffer. */
  added: number;
  /** New events left out because the buffer had no room (the highest seqs go first). */
  dropped: number;
}

export class OriginLog {
  readonly origin: number;
  appliedSeq = 0;
  /**
   * The greatest HLC among the events folded for this origin (undefined before the first). One
   * origin's HLCs strictly increase, so `apply` without a seq treats an event at or below it
   * as already folded. Joined by max; only set while appliedSeq ≥ 1.
   */
  lastHlc: HlcTimestamp | undefined = undefined;
  readonly pending = new Map<number, PendingEvent>();
  /** Buffered seqs met with two different events (see the header); not part of equality. */
  conflicts = 0;

  constructor(origin: number) {
    this.origin = origin;
  }

  /** True when the log says nothing (equal to an absent log). */
  get isEmpty(): boolean {
    return this.appliedSeq === 0 && this.pending.size === 0 && this.lastHlc === undefined;
  }

  /** Records that an event stamped (wallNs, logical, nodeId) was folded. */
  noteFolded(wallNs: bigint, logical: number, nodeId: number): void {
    const last = this.lastHlc;
    if (last === undefined || compareHlcParts(wallNs, logical, nodeId, last.wallNs, last.logical, last.nodeId) > 0) {
      this.lastHlc = new HlcTimestamp(wallNs, logical, nodeId);
    }
  }

  /** Joins another replica's lastHlc (max). */
  raiseLastHlc(other: HlcTimestamp | undefined): void {
    if (other !== undefined) this.noteFolded(other.wallNs, other.logical, other.nodeId);
  }

  /**
   * Buffers a batch that arrived beyond a gap (event i: seq firstSeq + i, logical + i). A seq
   * already pending keeps the greater of the two events. Returns how many events were added;
   * OVERLOADED, changing nothing, if that would be more than `room`.
   */
  addPending(bytes: Uint8Array, count: number, firstSeq: number, firstHlc: HlcTimestamp, room: number): number {
    let added = 0;
    for (let index = 0; index < count; index++) if (!this.pending.has(firstSeq + index)) added++;
    if (added > room) {
      throw new TidelogError('OVERLOADED', `the reorder buffer is full: origin ${this.origin} waits for seq ${this.appliedSeq + 1}`, {
        details: { origin: this.origin, appliedSeq: this.appliedSeq, pendingEvents: this.pending.size, room },
      });
    }
    const copy = bytes.slice(0, count * EVENT_BYTES);
    for (let index = 0; index < count; index++) {
      this.put(firstSeq + index, {
        bytes: copy.subarray(index * EVENT_BYTES, (index + 1) * EVENT_BYTES),
        wallNs: firstHlc.wallNs,
        logical: firstHlc.logical + index,
        nodeId: firstHlc.nodeId,
      });
    }
    return added;
  }

  /**
   * Unites `source`'s buffered events beyond this log's appliedSeq into this buffer. At most
   * `room` new events are added, the lowest seqs first (they are the ones that fill gaps); a
   * seq pending on both sides keeps the greater event.
   */
  unitePending(source: OriginLog, room: number): UniteResult {
    const fresh: number[] = [];
    for (const [seq, event] of source.pending) {
      if (seq <= this.appliedSeq) continue;
      if (this.pending.has(seq)) this.put(seq, event);
      else fresh.push(seq);
    }
    fresh.sort((a, b) => a - b);
    const added = Math.min(fresh.length, Math.max(0, room));
    for (let index = 0; index < added; index++) this.put(fresh[index], source.pending.get(fresh[index]) as PendingEvent);
    return { added, dropped: fresh.length - added };
  }

  /** Pending seqs, ascending. */
  pendingSeqs(): number[] {
    return [...this.pending.keys()].sort((a, b) => a - b);
  }

  clone(): OriginLog {
    const copy = new OriginLog(this.origin);
    copy.appliedSeq = this.appliedSeq;
    copy.lastHlc = this.lastHlc;
    copy.conflicts = this.conflicts;
    // Pending events are immutable once buffered, so sharing them is safe.
    for (const [seq, event] of this.pending) copy.pending.set(seq, event);
    return copy;
  }

  equals(other: OriginLog): boolean {
    if (this.appliedSeq !== other.appliedSeq || this.pending.size !== other.pending.size) return false;
    if (this.lastHlc === undefined || other.lastHlc === undefined) {
      if (this.lastHlc !== other.lastHlc) return false;
    } else if (!this.lastHlc.equals(other.lastHlc)) return false;
    for (const [seq, event] of this.pending) {
      const theirs = other.pending.get(seq);
      if (theirs === undefined || comparePendingEvents(event, theirs) !== 0) return false;
    }
    return true;
  }

  /** Sets the seq's event, or on a clash keeps the greater one (and counts the conflict). */
  private put(seq: number, event: PendingEvent): void {
    const held = this.pending.get(seq);
    if (held === undefined) {
      this.pending.set(seq, event);
      return;
    }
    const order = comparePendingEvents(event, held);
    if (order === 0) return;
    this.conflicts++;
    if (order > 0) this.pending.set(seq, event);
  }
}

/** A total order on buffered events: the 21 event bytes, then the HLC. */
export function comparePendingEvents(a: PendingEvent, b: PendingEvent): number {
  for (let at = 0; at < EVENT_BYTES; at++) {
    if (a.bytes[at] !== b.bytes[at]) return a.bytes[at] - b.bytes[at];
  }
  return compareHlcParts(a.wallNs, a.logical, a.nodeId, b.wallNs, b.logical, b.nodeId);
}
