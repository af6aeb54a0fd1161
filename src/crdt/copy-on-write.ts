// Copy-on-write, so a state image (state-image.ts) describes the state as it was when the image
// began while the owner keeps folding into it on the same thread.
// Invariant: while an image is in progress, every write to an imaged record is preceded by
// touch(section, record). The first write to a record the image has not emitted yet saves the
// record's begin-time bytes aside, so the image reads the live pages and patches the saved
// records back over them. Stores keep records in pages that growth adds and never copies
// (pages.ts), so the image holds the page list as it was at begin and reads those pages; the
// one page growth does replace (page 0, doubling while small) is never written again, so the
// image reads it unchanged.
//
//   per section   savedBits   1 bit per record: saved already (pages allocated on first save)
//                 chunkHead   per chunk of records (≥ 4 KiB), its first saved entry + 1 (0: none)
//                 entries     record, next entry of the same chunk + 1, the record's bytes
//                             (paged too: saving never copies earlier entries)
//   touch(r)      r emitted or saved already → nothing; else save r (one record's bytes)
//   read(a, b)    live bytes [a, b), then every saved record of the chunks [a, b) covers
//
// A record is saved at most once, so an image copies at most its own size aside, and a batch
// of n events copies at most a few records per event (80 bytes each with the default schema),
// never a whole chunk or array. Reads are sequential, so a chunk is patched at most twice (a
// piece is ≥ 64 KiB, a chunk ≤ a few KiB) and next(maxBytes) stays O(maxBytes). beginImage
// allocates no per-record or per-chunk memory. Without an image a write costs one null check
// (WriteBarrier.copies), with no allocation.

import { bytesOf, GrowthMeter, Pages, readPages, type PageArray } from './pages.ts';

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

/** What every store checks before it writes: the image in progress and the digest cache. */
export class WriteBarrier {
  /** The chunk copies of the image in progress, or null (no image). */
  copies: SectionCopies | null = null;
  /**
   * Per entity, 1 while its cached reconciliation digest is current; null until reconciliation
   * first asks for digests (state-arrays.ts), so a state that never reconciles pays nothing.
   */
  digestFresh: Pages<Uint8Array> | null = null;

  /** Before writing to `entity`'s contributions or flags. */
  markStale(entity: number): void {
    const fresh = this.digestFresh;
    if (fresh === null) return;
    // A page that does not reach the entity holds no digest for it (a typed-array write past
    // the end is a no-op).
    const page = fresh.list[entity >>> fresh.shift];
    if (page !== undefined) page[entity & fresh.mask] = 0;
  }
}

/** An imaged store as it stands when the image begins. */
export interface SectionSource {
  id: number;
  /** The live pages (absent: null, imaged as zero records). */
  pages: Pages<PageArray> | null;
  /** Bytes per record. */
  elementBytes: number;
  /** Records in use. */
  count: number;
}

export class TrackedSection {
  readonly id: number;
  readonly elementBytes: number;
  readonly count: number;
  readonly byteLength: number;
  /** Records per chunk (a power of two), and the bytes they span. */
  readonly chunkRecords: number;
  readonly chunkBytes: number;
  /** Bytes emitted so far (reads are sequential). */
  emitted = 0;
  /** The store's pages as they were at begin (growth adds pages the image never reads). */
  private readonly pages: (PageArray | undefined)[];
  private readonly pageBytes: number;
  private readonly pageRecords: number;
  private readonly savedBits: Pages<Uint8Array>;
  private readonly chunkHead: Pages<Int32Array>;
  private readonly entryRecord: Pages<Uint32Array>;
  private readonly entryNext: Pages<Int32Array>;
  private readonly entryBytes: Pages<Uint8Array>;
  private entryCount = 0;

  constructor(source: SectionSource, meter: GrowthMeter) {
    this.id = source.id;
    this.elementBytes = source.elementBytes;
    const pages = source.pages;
    this.count = pages === null ? 0 : source.count;
    this.byteLength = this.count * source.elementBytes;
    this.pageRecords = pages === null ? 1 : pages.pageRecords;
    this.pageBytes = this.pageRecords * source.elementBytes;
    this.pages = pages === null ? [] : pages.list.slice(0, Math.ceil(this.count / this.pageRecords));
    this.chunkRecords = 2 ** Math.max(0, Math.ceil(Math.log2(CHUNK_TARGET_BYTES / Math.max(1, source.elementBytes))));
    this.chunkBytes = this.chunkRecords * Math.max(1, source.elementBytes);
    this.savedBits = new Pages(Uint8Array, 1, meter);
    this.chunkHead = new Pages(Int32Array, 1, meter);
    this.entryRecord = new Pages(Uint32Array, 1, meter);
    this.entryNext = new Pages(Int32Array, 1, meter);
    this.entryBytes = new Pages(Uint8Array, Math.max(1, source.elementBytes), meter);
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
    const bits = this.savedBits.ensure(record >>> 3);
    const bitsAt = this.savedBits.offsetOf(record >>> 3);
    if ((bits[bitsAt] & bit) !== 0) return 0;
    bits[bitsAt] |= bit;
    const entry = this.entryCount++;
    this.entryRecord.ensure(entry)[this.entryRecord.offsetOf(entry)] = record;
    const chunk = Math.floor(record / this.chunkRecords);
    const heads = this.chunkHead.ensure(chunk);
    this.entryNext.ensure(entry)[this.entryNext.offsetOf(entry)] = heads[this.chunkHead.offsetOf(chunk)];
    heads[this.chunkHead.offsetOf(chunk)] = entry + 1;
    const saved = this.entryBytes.ensure(entry);
    readPages(this.pages, this.pageBytes, record * elementBytes, (record + 1) * elementBytes, bytesOf(saved), this.entryBytes.offsetOf(entry));
    return elementBytes;
  }

  /** Copies bytes [from, to) as they were at begin into `out` at `outAt`; from is where the last read ended. */
  read(from: number, to: number, out: Uint8Array, outAt: number): void {
    readPages(this.pages, this.pageBytes, from, to, out, outAt);
    const elementBytes = this.elementBytes;
    const lastChunk = Math.floor((to - 1) / this.chunkBytes);
    for (let chunk = Math.floor(from / this.chunkBytes); chunk <= lastChunk; chunk++) {
      for (let entry = this.chunkHead.get(chunk) - 1; entry >= 0; entry = this.entryNext.get(entry) - 1) {
        const start = this.entryRecord.get(entry) * elementBytes;
        const low = Math.max(from, start);
        const high = Math.min(to, start + elementBytes);
        if (low >= high) continue;
        const saved = this.entryBytes.pageOf(entry) as Uint8Array;
        const savedAt = this.entryBytes.offsetOf(entry) + low - start;
        out.set(saved.subarray(savedAt, savedAt + high - low), outAt + low - from);
      }
    }
    this.emitted = to;
  }
}

export class SectionCopies {
  readonly sections: readonly TrackedSection[];
  private readonly byId: (TrackedSection | undefined)[] = [];
  /** Bytes saved aside so far (for tests and benchmarks). */
  copiedBytes = 0;

  constructor(sources: readonly SectionSource[], meter: GrowthMeter) {
    this.sections = sources.map((source) => new TrackedSection(source, meter));
    for (const section of this.sections) this.byId[section.id] = section;
  }

  /** Before a write to `record` of section `id`: saves its begin-time bytes if the image still needs them. */
  touch(id: number, record: number): void {
    const section = this.byId[id];
    if (section === undefined) return;
    this.copiedBytes += section.save(record);
  }
}
