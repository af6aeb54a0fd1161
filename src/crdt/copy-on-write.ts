// Copy-on-write, so a state image (state-image.ts) describes the state as it was when the image
// began while the owner keeps folding into it on the same thread.
// Invariant: while an image is in progress, every write to an imaged array is preceded by
// touch(section, record). The first write to a record the image has not emitted yet saves the
// record's begin-time bytes aside, so the image reads the live array and patches the saved
// records back over it. An array that growth replaced is frozen (nobody writes to it again),
// so the image keeps reading it, patched the same way.
//
//   per section   savedBits   1 bit per record: saved already
//                 chunkHead   per chunk of records (≥ 4 KiB), its first saved entry + 1 (0: none)
//                 entries     record, next entry of the same chunk + 1, the record's bytes
//   touch(r)      r emitted or saved already → nothing; else save r (one record's bytes)
//   read(a, b)    live bytes [a, b), then every saved record of the chunks [a, b) covers
//
// A record is saved at most once, so an image copies at most its own size aside, and a batch
// of n events copies at most a few records per event (80 bytes each with the default schema),
// never a whole chunk or array. Reads are sequential, so a chunk is patched at most twice (a
// piece is ≥ 64 KiB, a chunk ≤ a few KiB) and next(maxBytes) stays O(maxBytes). Without an
// image a write costs one null check (WriteBarrier.copies), with no allocation.

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

const CHUNK_TARGET_BYTES = 4 * 1024;
const INITIAL_ENTRIES = 64;

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
  /** The section's bytes: a view of the live (later maybe frozen) array, patched on reading. */
  readonly bytes: Uint8Array;
  /** Records per chunk (a power of two), and the bytes they span. */
  readonly chunkRecords: number;
  readonly chunkBytes: number;
  /** Bytes emitted so far (reads are sequential). */
  emitted = 0;
  isFrozen = false;
  private readonly savedBits: Uint8Array;
  private readonly chunkHead: Int32Array;
  private entryRecord = new Uint32Array(INITIAL_ENTRIES);
  private entryNext = new Int32Array(INITIAL_ENTRIES);
  private entryBytes: Uint8Array;
  private entryCount = 0;

  constructor(source: SectionSource) {
    this.id = source.id;
    this.elementBytes = source.elementBytes;
    this.count = source.array === null ? 0 : source.count;
    const byteLength = this.count * source.elementBytes;
    this.bytes = source.array === null ? new Uint8Array(0) : new Uint8Array(source.array.buffer, source.array.byteOffset, byteLength);
    this.chunkRecords = 2 ** Math.max(0, Math.ceil(Math.log2(CHUNK_TARGET_BYTES / Math.max(1, source.elementBytes))));
    this.chunkBytes = this.chunkRecords * Math.max(1, source.elementBytes);
    this.savedBits = new Uint8Array(Math.ceil(this.count / 8));
    // Zeroed on allocation: beginImage writes nothing per record or per chunk.
    this.chunkHead = new Int32Array(Math.ceil(byteLength / this.chunkBytes));
    this.entryBytes = new Uint8Array(INITIAL_ENTRIES * source.elementBytes);
  }

  get byteLength(): number {
    return this.bytes.byteLength;
  }

  /** Bytes saved aside. */
  get savedBytes(): number {
    return this.entryCount * this.elementBytes;
  }

  /** Saves `record` unless it is past the imaged count, emitted or saved already; returns bytes saved. */
  save(record: number): number {
    const elementBytes = this.elementBytes;
    if (record >= this.count || (record + 1) * elementBytes <= this.emitted) return 0;
    const bit = 1 << (record & 7);
    if ((this.savedBits[record >>> 3] & bit) !== 0) return 0;
    this.savedBits[record >>> 3] |= bit;
    const entry = this.entryCount++;
    if (entry === this.entryRecord.length) this.growEntries();
    this.entryRecord[entry] = record;
    const chunk = Math.floor(record / this.chunkRecords);
    this.entryNext[entry] = this.chunkHead[chunk];
    this.chunkHead[chunk] = entry + 1;
    const start = record * elementBytes;
    this.entryBytes.set(this.bytes.subarray(start, start + elementBytes), entry * elementBytes);
    return elementBytes;
  }

  /** Copies bytes [from, to) as they were at begin into `out` at `outAt`; from is where the last read ended. */
  read(from: number, to: number, out: Uint8Array, outAt: number): void {
    out.set(this.bytes.subarray(from, to), outAt);
    const elementBytes = this.elementBytes;
    const lastChunk = Math.floor((to - 1) / this.chunkBytes);
    for (let chunk = Math.floor(from / this.chunkBytes); chunk <= lastChunk; chunk++) {
      for (let entry = this.chunkHead[chunk] - 1; entry >= 0; entry = this.entryNext[entry] - 1) {
        const start = this.entryRecord[entry] * elementBytes;
        const low = Math.max(from, start);
        const high = Math.min(to, start + elementBytes);
        if (low >= high) continue;
        const saved = entry * elementBytes + low - start;
        out.set(this.entryBytes.subarray(saved, saved + high - low), outAt + low - from);
      }
    }
    this.emitted = to;
  }

  private growEntries(): void {
    const capacity = this.entryRecord.length * 2;
    const records = new Uint32Array(capacity);
    records.set(this.entryRecord);
    this.entryRecord = records;
    const next = new Int32Array(capacity);
    next.set(this.entryNext);
    this.entryNext = next;
    const bytes = new Uint8Array(capacity * this.elementBytes);
    bytes.set(this.entryBytes);
    this.entryBytes = bytes;
  }
}

export class SectionCopies {
  readonly sections: readonly TrackedSection[];
  private readonly byId: (TrackedSection | undefined)[] = [];
  /** Bytes saved aside so far (for tests and benchmarks). */
  copiedBytes = 0;

  constructor(sources: readonly SectionSource[]) {
    this.sections = sources.map((source) => new TrackedSection(source));
    for (const section of this.sections) this.byId[section.id] = section;
  }

  /** Before a write to `record` of section `id`: saves its begin-time bytes if the image still needs them. */
  touch(id: number, record: number): void {
    const section = this.byId[id];
    if (section === undefined || section.isFrozen) return;
    this.copiedBytes += section.save(record);
  }

  /** The owner replaced section `id`'s array (growth) and will never write to the old one. */
  freeze(id: number): void {
    const section = this.byId[id];
    if (section !== undefined) section.isFrozen = true;
  }
}
