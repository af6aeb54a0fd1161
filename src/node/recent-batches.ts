// The newest durable batches of one shard, kept in memory so that readers near the head of
// the log (tails catching up, the feed's gap repair) never touch the disk.
//
//   oldest ─► [b0][b1][b2] … [bn] ◄─ newest (push)        bounded by maxBytes: pushing past
//             firstSeq ……………………… lastSeq                   it drops from the oldest end
//
// Invariant: the batches are consecutive (each starts at the previous one's lastSeq + 1), so
// any seq in [firstSeq, lastSeq] is found by binary search. A batch that does not continue
// the newest one (a restart, a gap) clears the ring first: it never holds a hole.

import type { ReadBatch } from '../transport/messages.ts';
import { EVENT_BYTES } from '../event.ts';

export class RecentBatches {
  private readonly batches: ReadBatch[] = [];
  private head = 0;
  private bytes = 0;

  constructor(private readonly maxBytes: number) {}

  /** Lowest seq held; 0 when empty. */
  get firstSeq(): number {
    return this.head < this.batches.length ? this.batches[this.head].firstSeq : 0;
  }

  /** Highest seq held; 0 when empty. */
  get lastSeq(): number {
    const last = this.batches[this.batches.length - 1];
    return last === undefined || this.head >= this.batches.length ? 0 : last.firstSeq + last.events.byteLength / EVENT_BYTES - 1;
  }

  get byteLength(): number {
    return this.bytes;
  }

  /** Keeps `batch` (the caller hands over ownership of its events buffer). */
  push(batch: ReadBatch): void {
    const count = batch.events.byteLength / EVENT_BYTES;
    if (count === 0) return;
    if (this.head < this.batches.length && batch.firstSeq !== this.lastSeq + 1) this.clear();
    this.batches.push(batch);
    this.bytes += batch.events.byteLength;
    while (this.bytes > this.maxBytes && this.head < this.batches.length - 1) {
      this.bytes -= this.batches[this.head].events.byteLength;
      this.head++;
    }
    // Compact the array now and then so dropped batches can be collected.
    if (this.head > 1024 && this.head * 2 > this.batches.length) {
      this.batches.splice(0, this.head);
      this.head = 0;
    }
  }

  clear(): void {
    this.batches.length = 0;
    this.head = 0;
    this.bytes = 0;
  }

  /**
   * Batches covering [fromSeq, fromSeq + maxEvents), the first and last trimmed to the range;
   * null when fromSeq is older than what the ring holds (the caller reads the disk).
   */
  read(fromSeq: number, maxEvents: number): ReadBatch[] | null {
    if (this.head >= this.batches.length || fromSeq < this.firstSeq) return null;
    if (fromSeq > this.lastSeq) return [];
    let low = this.head;
    let high = this.batches.length - 1;
    while (low < high) {
      const middle = (low + high + 1) >>> 1;
      if (this.batches[middle].firstSeq <= fromSeq) low = middle;
      else high = middle - 1;
    }
    const out: ReadBatch[] = [];
    let remaining = maxEvents;
    for (let index = low; index < this.batches.length && remaining > 0; index++) {
      const trimmed = trimBatch(this.batches[index], fromSeq, remaining);
      out.push(trimmed);
      remaining -= trimmed.events.byteLength / EVENT_BYTES;
    }
    return out;
  }
}

/** The part of `batch` at or after fromSeq, at most maxEvents long (a view, not a copy). */
export function trimBatch(batch: ReadBatch, fromSeq: number, maxEvents: number): ReadBatch {
  const count = batch.events.byteLength / EVENT_BYTES;
  const skip = Math.max(0, fromSeq - batch.firstSeq);
  const take = Math.min(count - skip, maxEvents);
  if (skip === 0 && take === count) return batch;
  return {
    firstSeq: batch.firstSeq + skip,
    epoch: batch.epoch,
    timestampNs: batch.timestampNs,
    events: batch.events.subarray(skip * EVENT_BYTES, (skip + take) * EVENT_BYTES),
  };
}
