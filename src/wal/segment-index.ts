// A sparse index of one segment: "the batch at byte `offset` starts at seq `firstSeq`", one
// entry per INDEX_STRIDE_BYTES of segment. A read from seq s starts at the last entry below s
// and reads forward, so a page costs O(page + stride) bytes whatever the segment's size,
// instead of reading the whole segment file per page.
// Invariant: entries ascend in both offset and firstSeq, and every entry is the start of an
// intact batch of the segment (it was written, or scanned and verified, by this process).
//
//   entries:  (firstSeq 1, offset 96) (firstSeq 3121, offset 65_700) (firstSeq 6245, …) …
//   find(s):  the last entry whose firstSeq < s  →  read batches forward from its offset
//
// Memory: two float64 per entry, ~256 entries for a 16 MiB segment (4 KiB).

/** Distance between entries (bytes of segment). */
export const INDEX_STRIDE_BYTES = 64 << 10;

export class SegmentIndex {
  private seqs: Float64Array;
  private offsets: Float64Array;
  private length = 0;

  /** An index that so far knows the first batch position, `headBytes` (right after the head record). */
  constructor(readonly headBytes: number) {
    this.seqs = new Float64Array(16);
    this.offsets = new Float64Array(16);
  }

  get entries(): number {
    return this.length;
  }

  /** Notes the batch at `offset` starting at `firstSeq`; kept when a stride passed since the last entry. */
  add(firstSeq: number, offset: number): void {
    const last = this.length - 1;
    if (last >= 0 && offset - this.offsets[last] < INDEX_STRIDE_BYTES) return;
    if (last >= 0 && (offset <= this.offsets[last] || firstSeq < this.seqs[last])) {
      throw new Error(`invariant violated: index entry (${firstSeq}, ${offset}) after (${this.seqs[last]}, ${this.offsets[last]})`);
    }
    if (this.length === this.seqs.length) {
      const seqs = new Float64Array(this.length * 2);
      const offsets = new Float64Array(this.length * 2);
      seqs.set(this.seqs);
      offsets.set(this.offsets);
      this.seqs = seqs;
      this.offsets = offsets;
    }
    this.seqs[this.length] = firstSeq;
    this.offsets[this.length] = offset;
    this.length++;
  }

  /**
   * Where to start reading to meet every batch that holds seq ≥ `seq`, and every notes-only
   * batch sitting at `seq` (their firstSeq equals the seq after them, so the entry must be
   * strictly below `seq`): the offset of the last entry whose firstSeq < seq, else the first batch.
   */
  find(seq: number): number {
    let low = 0;
    let high = this.length - 1;
    let found = -1;
    while (low <= high) {
      const middle = (low + high) >>> 1;
      if (this.seqs[middle] < seq) {
        found = middle;
        low = middle + 1;
      } else {
        high = middle - 1;
      }
    }
    return found < 0 ? this.headBytes : this.offsets[found];
  }
}
