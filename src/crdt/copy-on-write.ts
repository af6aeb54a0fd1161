// Copy-on-write at chunk granularity, so a state image (state-image.ts) describes the state as
// it was when the image began while the owner keeps folding into it on the same thread.
// Invariant: while an image is in progress, every write to an imaged array is preceded by
// touch(section, record). The first write to a chunk the image has not emitted yet copies the
// chunk aside, so the image reads begin-time bytes: from the copy, or from the live array where
// nothing was written since. An array that growth replaced is frozen (nobody writes to it
// again), so the image keeps reading it as it is.
//
//   chunk state   LIVE ──touch──▶ COPIED ──emitted──▶ EMITTED (the copy is dropped)
//                   └────────────emitted────────────▶ EMITTED (later touches copy nothing)
//
// A chunk is the smallest power of two of records that holds ≥ 64 KiB, so a record never
// straddles two chunks and one touch is one chunk. Without an image a write costs one null
// check (WriteBarrier.copies), with no allocation.

/** Which imaged array a write goes to (the image's section ids, state-image.ts). */
export const Section = {
  ENTITY_KEYS: 0,
  CONTRIBUTIONS: 1,
  NEGATIVE_LO: 2,
  POSITIVE_HI: 3,
  NEGATIVE_HI: 4,
  EVENT_COUNT_HI: 5,
  NARROW_RINGS: 6,
  WIDE_RINGS: 7,
  FLAG_REFS: 8,
  FLAG_RECORDS: 9,
  /** HEADS + the column's ordinal (ascending signal id). */
  HEADS: 10,
} as const;

const CHUNK_TARGET_BYTES = 64 * 1024;
const LIVE = 0;
const COPIED = 1;
const EMITTED = 2;

/** What every store checks before it writes: the image in progress and the digest cache. */
export class WriteBarrier {
  /** The chunk copies of the image in progress, or null (no image). */
  copies: SectionCopies | null = null;
  /**
   * Per entity, 1 while its cached reconciliation digest is current; null until reconciliation
   * first asks for digests (signal-state.ts), so a state that never reconciles pays nothing.
   */
  digestFresh: Uint8Array | null = null;

  /** Before writing to `entity`'s contributions or flags. */
  markStale(entity: number): void {
    const fresh = this.digestFresh;
    if (fresh !== null && entity < fresh.length) fresh[entity] = 0;
  }
}

/** An imaged array as it stands when the image begins. */
export interface SectionSource {
  id: number;
  /** The live typed array (absent: null, imaged as zero records). */
  array: ArrayBufferView | null;
  /** Bytes per record. */
  elementBytes: number;
  /** Records in use. */
  count: number;
}

export class TrackedSection {
  readonly id: number;
  readonly elementBytes: number;
  readonly count: number;
  /** The section's begin-time bytes: a view of the live (later maybe frozen) array. */
  readonly bytes: Uint8Array;
  readonly chunkShift: number;
  readonly chunkBytes: number;
  readonly chunkCount: number;
  readonly states: Uint8Array;
  readonly copies = new Map<number, Uint8Array>();
  isFrozen = false;

  constructor(source: SectionSource) {
    this.id = source.id;
    this.elementBytes = source.elementBytes;
    this.count = source.array === null ? 0 : source.count;
    const byteLength = this.count * source.elementBytes;
    this.bytes = source.array === null ? new Uint8Array(0) : new Uint8Array(source.array.buffer, source.array.byteOffset, byteLength);
    this.chunkShift = Math.max(0, Math.ceil(Math.log2(CHUNK_TARGET_BYTES / source.elementBytes)));
    this.chunkBytes = 2 ** this.chunkShift * source.elementBytes;
    this.chunkCount = Math.ceil(byteLength / this.chunkBytes);
    this.states = new Uint8Array(this.chunkCount);
  }

  get byteLength(): number {
    return this.bytes.byteLength;
  }
}

export class SectionCopies {
  readonly sections: readonly TrackedSection[];
  private readonly byId: (TrackedSection | undefined)[] = [];
  /** Bytes copied aside so far (for tests and benchmarks). */
  copiedBytes = 0;

  constructor(sources: readonly SectionSource[]) {
    this.sections = sources.map((source) => new TrackedSection(source));
    for (const section of this.sections) this.byId[section.id] = section;
  }

  /** Before a write to `record` of section `id`: copies its chunk aside if the image still needs it. */
  touch(id: number, record: number): void {
    const section = this.byId[id];
    if (section === undefined || section.isFrozen) return;
    const chunk = Math.floor(record / 2 ** section.chunkShift);
    if (chunk >= section.chunkCount || section.states[chunk] !== LIVE) return;
    const start = chunk * section.chunkBytes;
    const copy = section.bytes.slice(start, Math.min(start + section.chunkBytes, section.bytes.byteLength));
    section.copies.set(chunk, copy);
    section.states[chunk] = COPIED;
    this.copiedBytes += copy.byteLength;
  }

  /** The owner replaced section `id`'s array (growth) and will never write to the old one. */
  freeze(id: number): void {
    const section = this.byId[id];
    if (section !== undefined) section.isFrozen = true;
  }

  /**
   * Copies bytes [from, to) of `section` as they were at begin into `out` at `outAt`. Reads are
   * sequential, so a chunk read to its end is emitted: its copy is dropped and no later write
   * copies it again.
   */
  read(section: TrackedSection, from: number, to: number, out: Uint8Array, outAt: number): void {
    let at = from;
    while (at < to) {
      const chunk = Math.floor(at / section.chunkBytes);
      const chunkStart = chunk * section.chunkBytes;
      const chunkEnd = Math.min(chunkStart + section.chunkBytes, section.bytes.byteLength);
      const end = Math.min(to, chunkEnd);
      const copy = section.states[chunk] === COPIED ? section.copies.get(chunk) : undefined;
      if (copy === undefined) out.set(section.bytes.subarray(at, end), outAt + at - from);
      else out.set(copy.subarray(at - chunkStart, end - chunkStart), outAt + at - from);
      if (end === chunkEnd) {
        section.states[chunk] = EMITTED;
        section.copies.delete(chunk);
      }
      at = end;
    }
  }
}
