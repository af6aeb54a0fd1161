// The requestSeq sequence of one shard's producer session, and how it continues when a
// batch leaves without an ack. Invariant: the numbers the node sees from us are
// 1, 2, 3 … per sessionEpoch with no hole the node would wait on forever, and a number
// that may have been applied is never given to other events.
//
// Holes. A batch that leaves unacknowledged after it was numbered leaves a hole, and the
// node would answer every later number with SEQUENCE_GAP:
// - rejected with a definitive code (BAD_REQUEST, UNKNOWN_SIGNAL_TYPE, WRONG_SHARD,
//   REQUEST_TOO_LARGE, …): the node validates before it consumes a requestSeq, so that
//   number was never used. Once nothing is in flight, every unacked batch numbered at or
//   after the hole is renumbered from it (none of them can have been applied: the node
//   applies a session's numbers in order and the hole's number never arrived).
// - given up while ambiguous (a try timed out, so the node may have applied it): nothing
//   can tell whether its number was used, so the session restarts under a higher
//   sessionEpoch at requestSeq 1. Batches that were on the wire and are just as ambiguous
//   are rejected with TIMEOUT too ("may or may not have been applied"); batches never
//   sent, or refused definitively, move to the new epoch.
// - SEQUENCE_GAP for the oldest unsettled batch, below any hole of ours, means the node
//   lost our session (every earlier number was acknowledged): restart the session the same
//   way; nothing after the gap can have been applied, so nothing is rejected — unless the
//   node says a try may have been applied elsewhere (`maybeAppliedElsewhere`: availability
//   mode, a split): then the batches in doubt are rejected too.
// The caller renumbers only while nothing of the shard is on the wire: a reply must name
// the number its request was sent with.

import type { AppendBatch } from './append-batch.ts';

export class SessionNumbers {
  sessionEpoch: number;
  nextRequestSeq = 1;
  /** Highest requestSeq acknowledged in the current epoch. */
  private highestAckedSeq = 0;
  /** Lowest number left by a definitive rejection since the last renumbering. */
  private lowestHoleSeq = Number.POSITIVE_INFINITY;
  private mustRestart = false;
  /** On restart, reject batches whose earlier tries may have been applied. */
  private mustRejectAmbiguous = false;

  constructor(sessionEpoch: number) {
    this.sessionEpoch = sessionEpoch;
  }

  /** A batch about to be sent keeps its number, or takes the next one. */
  assign(batch: AppendBatch): void {
    if (batch.requestSeq === 0) batch.requestSeq = this.nextRequestSeq++;
  }

  acked(batch: AppendBatch): void {
    this.highestAckedSeq = Math.max(this.highestAckedSeq, batch.requestSeq);
  }

  /** A batch left unacknowledged: records the hole (or the doubt) its number leaves. */
  left(batch: AppendBatch): void {
    if (batch.requestSeq === 0) return;
    if (batch.lastError?.code === 'REQUEST_MISMATCH') {
      // The node holds this number with other events (another instance of this producerId):
      // no later batch can take it. A new epoch, which also fences the other instance.
      this.mustRestart = true;
      return;
    }
    if (batch.isAmbiguous) {
      this.mustRestart = true;
      this.mustRejectAmbiguous = true;
    } else {
      this.lowestHoleSeq = Math.min(this.lowestHoleSeq, batch.requestSeq);
    }
  }

  /**
   * SEQUENCE_GAP for the oldest unsettled batch. True (and a restart is due) when no hole of
   * ours explains it: the node forgot the session.
   */
  gapAtOldest(batch: AppendBatch, rejectAmbiguous = false): boolean {
    if (batch.requestSeq >= this.lowestHoleSeq) return false;
    this.mustRestart = true;
    // The gap's node says an earlier try may have been applied elsewhere (availability mode:
    // on the other side of a split): batches in doubt are answered "maybe applied", not resent.
    if (rejectAmbiguous) this.mustRejectAmbiguous = true;
    return true;
  }

  get needsRenumbering(): boolean {
    return this.mustRestart || this.lowestHoleSeq !== Number.POSITIVE_INFINITY;
  }

  /**
   * Renumbers `batches` (unsettled, in requestSeq order; nothing on the wire) and returns
   * the ones that must be rejected because they may have been applied under a number the
   * new epoch abandons. The caller removes and rejects those.
   */
  renumber(batches: readonly AppendBatch[], nowMs: number): AppendBatch[] {
    const doomed: AppendBatch[] = [];
    if (this.mustRestart) {
      // Seconds, like the producer's default epoch, so a later restart of the producer
      // still starts above this one (unless several restarts happen within one second).
      this.sessionEpoch = Math.max(this.sessionEpoch + 1, Math.floor(nowMs / 1000));
      for (const batch of batches) {
        if (batch.requestSeq === 0) continue;
        if (this.mustRejectAmbiguous && batch.isAmbiguous) {
          doomed.push(batch);
          continue;
        }
        batch.requestSeq = 0;
        batch.isAmbiguous = false;
        batch.gapSeenAtAttemptId = 0;
      }
      this.nextRequestSeq = 1;
      this.highestAckedSeq = 0;
    } else if (this.lowestHoleSeq !== Number.POSITIVE_INFINITY) {
      // Numbers below an ack were consumed whatever we think of them: start after it.
      const start = Math.max(this.lowestHoleSeq, this.highestAckedSeq + 1);
      for (const batch of batches) {
        if (batch.requestSeq >= start) {
          batch.requestSeq = 0;
          batch.gapSeenAtAttemptId = 0;
        }
      }
      this.nextRequestSeq = start;
    }
    this.lowestHoleSeq = Number.POSITIVE_INFINITY;
    this.mustRestart = false;
    this.mustRejectAmbiguous = false;
    return doomed;
  }
}
