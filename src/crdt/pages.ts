// Paged storage for the state's typed arrays: records live in fixed-size pages that are added as
// a store grows and never copied, so growth costs at most one page per write however large the
// state is. (A doubling array copies the whole store in one call: measured on a 2-core VM, a fold
// of 1000 events stalled 184 ms at 0.5 M entities and 1.9 s at 4 M.)
// Invariant: record r lives in pages[r >>> shift] at element (r & mask) · recordElements, and a
// record never straddles two pages. Every page but the first holds exactly 2^shift records.
// Page 0 starts small (a fresh state stays small) and doubles until it is a full page: the only
// copy growth ever makes, at most one page. Pages are zero when allocated; a missing page, or a
// page 0 that does not reach a record yet, reads as zero.
//
//   list   [ page 0 (64 records → doubling → full) | page 1 (full) | page 2 (full) | … ]
//   record r → list[r >>> shift], elements (r & mask)·recordElements … + recordElements
//
// A page is about PAGE_TARGET_BYTES: allocating one is cheap even where the first touch of fresh
// memory is slow (≈ 11 µs per 4 KiB page on the project's Firecracker VMs: a 128 KiB page costs
// at most ≈ 0.35 ms), and a million entities still take only a few thousand pages.

export type PageArray = Uint8Array | Int32Array | Uint32Array | Float64Array;

export interface PageKind<T extends PageArray> {
  new (length: number): T;
  new (buffer: ArrayBuffer, byteOffset: number, length: number): T;
  readonly BYTES_PER_ELEMENT: number;
}

/** The size a page aims at (the largest power-of-two record count that fits). */
export const PAGE_TARGET_BYTES = 128 * 1024;
/** Records page 0 starts with. */
export const INITIAL_RECORDS = 64;

/** log2 of the records per page for records of `recordBytes`. */
export function pageShiftFor(recordBytes: number): number {
  return Math.max(0, Math.floor(Math.log2(PAGE_TARGET_BYTES / recordBytes)));
}

/**
 * The work growth did, summed over the state's life: fresh memory handed out, bytes copied
 * (page 0 doubling only) and entity-index entries re-inserted by its incremental resize
 * (entity-index.ts). Tests bound it per fold call; it is never read on the hot path.
 */
export class GrowthMeter {
  allocatedBytes = 0;
  copiedBytes = 0;
  /** Entity-index table slots scanned plus entries re-inserted while resizing. */
  rehashSteps = 0;
}

export class Pages<T extends PageArray> {
  /** The pages; a slot may be undefined (never written: zero). Mutated in place, never replaced. */
  readonly list: (T | undefined)[] = [];
  readonly shift: number;
  readonly mask: number;
  readonly recordElements: number;
  readonly kind: PageKind<T>;
  private readonly meter: GrowthMeter;

  constructor(kind: PageKind<T>, recordElements: number, meter: GrowthMeter, source?: Pages<T>) {
    this.kind = kind;
    this.recordElements = recordElements;
    this.shift = pageShiftFor(recordElements * kind.BYTES_PER_ELEMENT);
    this.mask = 2 ** this.shift - 1;
    this.meter = meter;
    if (source !== undefined) for (const page of source.list) this.list.push(page?.slice() as T | undefined);
  }

  /** Records per page (page 0 once full). */
  get pageRecords(): number {
    return this.mask + 1;
  }

  get recordBytes(): number {
    return this.recordElements * this.kind.BYTES_PER_ELEMENT;
  }

  /** Element offset of `record` in its page. */
  offsetOf(record: number): number {
    return (record & this.mask) * this.recordElements;
  }

  /** The page holding `record`, or undefined when it does not hold it yet (the record reads as zero). */
  pageOf(record: number): T | undefined {
    const page = this.list[record >>> this.shift];
    return page !== undefined && ((record & this.mask) + 1) * this.recordElements <= page.length ? page : undefined;
  }

  /** Element `field` of `record` (0 where no page holds it). */
  get(record: number, field = 0): number {
    const page = this.pageOf(record);
    return page === undefined ? 0 : page[(record & this.mask) * this.recordElements + field];
  }

  /** The page holding `record`, allocated (or page 0 doubled) when it does not reach it yet. */
  ensure(record: number): T {
    const index = record >>> this.shift;
    const page = this.list[index];
    const end = ((record & this.mask) + 1) * this.recordElements;
    if (page !== undefined && end <= page.length) return page;
    return this.grow(index, end);
  }

  /** Makes pages hold records [0, count) (an image load): O(count), allocations only. */
  reserve(count: number): void {
    for (let first = 0; first < count; first += this.pageRecords) this.ensure(Math.min(count, first + this.pageRecords) - 1);
  }

  /** Drops every page (the store is about to adopt loaded pages). */
  clear(): void {
    this.list.length = 0;
  }

  private grow(index: number, end: number): T {
    const full = this.pageRecords * this.recordElements;
    let length = full;
    if (index === 0) {
      length = Math.max(this.list[0]?.length ?? 0, INITIAL_RECORDS * this.recordElements);
      while (length < end) length *= 2;
      length = Math.min(full, length);
    }
    const page = new this.kind(length);
    this.meter.allocatedBytes += page.byteLength;
    const old = this.list[index];
    if (old !== undefined) {
      page.set(old as never);
      this.meter.copiedBytes += old.byteLength;
    }
    // The list grows by one reference per missing page (8 bytes per 2^shift records).
    while (this.list.length < index) this.list.push(undefined);
    this.list[index] = page;
    return page;
  }
}

/** A byte view of a page, for copying records in and out of images. */
export function bytesOf(page: PageArray): Uint8Array {
  return new Uint8Array(page.buffer, page.byteOffset, page.byteLength);
}

/**
 * Copies bytes [from, to) of the records held by `list` (records of `recordBytes`, 2^shift per
 * page) into `out` at `outAt`; bytes no page holds are zero.
 */
export function readPages(list: readonly (PageArray | undefined)[], pageBytes: number, from: number, to: number, out: Uint8Array, outAt: number): void {
  let at = from;
  while (at < to) {
    const index = Math.floor(at / pageBytes);
    const pageStart = index * pageBytes;
    const end = Math.min(to, pageStart + pageBytes);
    const page = list[index];
    const heldEnd = page === undefined ? at : Math.max(at, Math.min(end, pageStart + page.byteLength));
    if (heldEnd > at) out.set(new Uint8Array((page as PageArray).buffer, (page as PageArray).byteOffset + at - pageStart, heldEnd - at), outAt + at - from);
    if (heldEnd < end) out.fill(0, outAt + heldEnd - from, outAt + end - from);
    at = end;
  }
}

/**
 * Copies `bytes` into the records of `pages` from byte `at` on (an image load), allocating the
 * pages they reach: only what arrived is allocated.
 */
export function writePages(pages: Pages<PageArray>, at: number, bytes: Uint8Array): void {
  const recordBytes = pages.recordBytes;
  const pageBytes = pages.pageRecords * recordBytes;
  let done = 0;
  while (done < bytes.byteLength) {
    const position = at + done;
    const index = Math.floor(position / pageBytes);
    const within = position - index * pageBytes;
    const take = Math.min(bytes.byteLength - done, pageBytes - within);
    const page = pages.ensure(Math.floor((position + take - 1) / recordBytes));
    new Uint8Array(page.buffer, page.byteOffset + within, take).set(bytes.subarray(done, done + take));
    done += take;
  }
}
