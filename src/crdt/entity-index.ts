// The state's one entity index: u64 entity id → entity number (0, 1, 2, … in order of first
// write), shared by every score column and the flags, so an entity costs one key and one table
// entry however many signals it has. Per-entity arrays (column heads, flag refs, digests) are
// indexed by the entity number.
// Invariant: keys hold entity e's id as u32 hi, lo at record e; ids are distinct; entities are
// never removed. The table is open addressing with linear probing over entity + 1 (0 = empty),
// in pages (pages.ts), and holds every entity. It resizes incrementally, so no insert ever
// rehashes more than RESIZE_STEPS_PER_INSERT entries (a whole-table rehash stalled a fold for
// hundreds of ms at a million entities):
//
//   count·2 > capacity      → begin: a table `next` of 2 × capacity, empty
//   every insert after that → the entity goes into the current table (which still holds every
//                             entity, so lookups read it alone), then one step of ≤ 16 units:
//     phase 1                 scan the current table's slots in order; entities that existed at
//                             begin move to `next` (its writes advance in two sequential fronts,
//                             at slot s and s + capacity, so fresh memory is touched in order)
//     phase 2                 entities added since begin move to `next`, read from the keys
//   both done               → `next` becomes the table
//
// A resize begins at the insert that passes 1/2 full (C/2 + 1 entities), and the table is
// < 0.62 full when it ends (16 units per insert, a slot scanned 1 and an entity moved 1:
// phase 1's C slots and C/2 entities take at most 1.5·C/15 inserts, phase 2 then moves 15 net
// per insert).
// The table is not imaged: a loaded image rebuilds it from the keys.
//
//   keys    Pages<Uint32Array>  [hi, lo] per entity     imaged (Section.ENTITY_KEYS)
//   table   Uint32Array pages   entity + 1 per slot     rebuilt on load, never imaged

import { TidelogError } from '../errors.ts';
import { finalMix } from '../murmur.ts';
import { Section, type WriteBarrier } from './copy-on-write.ts';
import type { EntityKey } from './entity-key.ts';
import { joinNs, TWO_POW_32 } from './packed-time.ts';
import { GrowthMeter, pageShiftFor, Pages } from './pages.ts';

const INITIAL_TABLE_SLOTS = 128;
const SAFE_HI = 0x200000;
/** Work units (slots scanned, entries moved) of resizing per insert. */
export const RESIZE_STEPS_PER_INSERT = 16;
/** Table slots per page (128 KiB); a table smaller than a page is one page of its size. */
const TABLE_SHIFT = pageShiftFor(4);
const TABLE_PAGE_SLOTS = 2 ** TABLE_SHIFT;
const TABLE_SLOT_MASK = TABLE_PAGE_SLOTS - 1;
/** Keys per page: the same constants as the keys' Pages, inlined for the probe loop. */
const KEY_SHIFT = pageShiftFor(8);
const KEY_MASK = 2 ** KEY_SHIFT - 1;

export class EntityIndex {
  /** [hi, lo] per entity. */
  readonly keys: Pages<Uint32Array>;
  count = 0;
  private table: Uint32Array[];
  private tableMask: number;
  /** The table being built while resizing (pages allocated as reached), or null. */
  private next: (Uint32Array | undefined)[] | null = null;
  /** Phase 1: current-table slots scanned; entities below `resizeFrom` move in it. */
  private scanAt = 0;
  private resizeFrom = 0;
  /** Phase 2: entities from resizeFrom below this have moved. */
  private movedTo = 0;
  private readonly barrier: WriteBarrier;
  private readonly meter: GrowthMeter;

  constructor(barrier: WriteBarrier, meter = new GrowthMeter(), source?: EntityIndex) {
    this.barrier = barrier;
    this.meter = meter;
    this.keys = new Pages(Uint32Array, 2, meter, source?.keys);
    if (this.keys.shift !== KEY_SHIFT) throw new Error('invariant violated: key pages');
    if (source === undefined) {
      this.table = [new Uint32Array(INITIAL_TABLE_SLOTS)];
      this.tableMask = INITIAL_TABLE_SLOTS - 1;
    } else {
      this.table = source.table.map((page) => page.slice());
      this.tableMask = source.tableMask;
      this.count = source.count;
      this.next = source.next?.map((page) => page?.slice()) ?? null;
      this.scanAt = source.scanAt;
      this.resizeFrom = source.resizeFrom;
      this.movedTo = source.movedTo;
    }
  }

  /**
   * Takes `count` keys loaded into `keys` (image-loader.ts) and builds the table at once (a load
   * is O(state) anyway); DECODE_FAILED when two keys are equal.
   */
  adopt(count: number): void {
    this.count = count;
    this.next = null;
    let capacity = INITIAL_TABLE_SLOTS;
    while (count * 2 > capacity) capacity *= 2;
    this.table = newTable(capacity);
    this.tableMask = capacity - 1;
    for (let entity = 0; entity < count; entity++) {
      const hi = this.hiOf(entity);
      const lo = this.loOf(entity);
      const other = this.find(hi, lo);
      if (other >= 0) {
        throw new TidelogError('DECODE_FAILED', `entity ${entity} repeats the id of entity ${other}`, {
          details: { entity, other },
        });
      }
      this.place(this.table, this.tableMask, hi, lo, entity);
    }
  }

  /** The entity numbered for hi·2^32 + lo, or −1. */
  find(hi: number, lo: number): number {
    const table = this.table;
    const keys = this.keys.list as Uint32Array[];
    const mask = this.tableMask;
    let at = hashOf(hi, lo) & mask;
    for (;;) {
      const held = table[at >>> TABLE_SHIFT][at & TABLE_SLOT_MASK];
      if (held === 0) return -1;
      const entity = held - 1;
      const page = keys[entity >>> KEY_SHIFT];
      const keyAt = (entity & KEY_MASK) << 1;
      if (page[keyAt + 1] === lo && page[keyAt] === hi) return entity;
      at = (at + 1) & mask;
    }
  }

  /** Sink of warm(): keeps its loads from being optimised away. */
  private warmSink = 0;

  /**
   * Loads the table slot of every event in packed[from, to) and drops the values: the loads
   * do not depend on each other, so the CPU overlaps their cache misses, and the probes of the
   * fold that follows find the slots in cache (a 1 M-entity table does not fit in it).
   */
  warm(view: DataView, from: number, to: number, eventBytes: number): void {
    const table = this.table;
    const mask = this.tableMask;
    let sink = 0;
    for (let at = from; at < to; at++) {
      const offset = at * eventBytes;
      const slot = hashOf(view.getUint32(offset + 4, true), view.getUint32(offset, true)) & mask;
      sink ^= table[slot >>> TABLE_SHIFT][slot & TABLE_SLOT_MASK];
    }
    this.warmSink ^= sink;
  }

  /** The entity numbered for hi·2^32 + lo, numbered now when new. */
  findOrAdd(hi: number, lo: number): number {
    const table = this.table;
    const keys = this.keys.list as Uint32Array[];
    const mask = this.tableMask;
    let at = hashOf(hi, lo) & mask;
    for (;;) {
      const held = table[at >>> TABLE_SHIFT][at & TABLE_SLOT_MASK];
      if (held === 0) break;
      const entity = held - 1;
      const page = keys[entity >>> KEY_SHIFT];
      const keyAt = (entity & KEY_MASK) << 1;
      if (page[keyAt + 1] === lo && page[keyAt] === hi) return entity;
      at = (at + 1) & mask;
    }
    const entity = this.count;
    const page = this.keys.ensure(entity);
    this.barrier.copies?.touch(Section.ENTITY_KEYS, entity);
    page[(entity & KEY_MASK) << 1] = hi;
    page[((entity & KEY_MASK) << 1) + 1] = lo;
    table[at >>> TABLE_SHIFT][at & TABLE_SLOT_MASK] = entity + 1;
    this.count = entity + 1;
    if (this.next !== null) this.resizeStep();
    else if (this.count * 2 > mask + 1) this.beginResize();
    return entity;
  }

  findKey(key: EntityKey): number {
    if (typeof key === 'number') return this.find(Math.floor(key / TWO_POW_32), key % TWO_POW_32);
    return this.find(Number(key >> 32n), Number(key & 0xffff_ffffn));
  }

  findOrAddKey(key: EntityKey): number {
    if (typeof key === 'number') return this.findOrAdd(Math.floor(key / TWO_POW_32), key % TWO_POW_32);
    return this.findOrAdd(Number(key >> 32n), Number(key & 0xffff_ffffn));
  }

  /** The entity's id, high u32. */
  hiOf(entity: number): number {
    return (this.keys.list[entity >>> KEY_SHIFT] as Uint32Array)[(entity & KEY_MASK) << 1];
  }

  /** The entity's id, low u32. */
  loOf(entity: number): number {
    return (this.keys.list[entity >>> KEY_SHIFT] as Uint32Array)[((entity & KEY_MASK) << 1) + 1];
  }

  /** The entity's key (a number below 2^53, a bigint above; entity-key.ts). */
  keyOf(entity: number): EntityKey {
    const hi = this.hiOf(entity);
    const lo = this.loOf(entity);
    return hi < SAFE_HI ? hi * TWO_POW_32 + lo : joinNs(hi, lo);
  }

  /** Table slots (for tests: the load factor). */
  get capacity(): number {
    return this.tableMask + 1;
  }

  /** Whether an incremental resize is under way. */
  get isResizing(): boolean {
    return this.next !== null;
  }

  // ---- incremental resize ----

  private beginResize(): void {
    const capacity = (this.tableMask + 1) * 2;
    this.next = [];
    this.scanAt = 0;
    this.resizeFrom = this.count;
    this.movedTo = this.count;
    if (capacity <= TABLE_PAGE_SLOTS) this.nextPage(0);
  }

  /** One bounded step (see the header); switches tables when both phases are done. */
  private resizeStep(): void {
    const next = this.next as (Uint32Array | undefined)[];
    const oldCapacity = this.tableMask + 1;
    const nextMask = oldCapacity * 2 - 1;
    let budget = RESIZE_STEPS_PER_INSERT;
    while (budget > 0 && this.scanAt < oldCapacity) {
      const at = this.scanAt;
      if ((at & TABLE_SLOT_MASK) === 0 && oldCapacity >= TABLE_PAGE_SLOTS) {
        // The two fronts' pages: by the end of phase 1 every page of `next` exists.
        const pageIndex = at >>> TABLE_SHIFT;
        if (next[pageIndex] === undefined) this.nextPage(pageIndex);
        if (next[pageIndex + oldCapacity / TABLE_PAGE_SLOTS] === undefined) this.nextPage(pageIndex + oldCapacity / TABLE_PAGE_SLOTS);
      }
      const held = this.table[at >>> TABLE_SHIFT][at & TABLE_SLOT_MASK];
      if (held !== 0 && held - 1 < this.resizeFrom) {
        // Scanning the slot and moving its entity: two units.
        if (budget < 2) break;
        this.placeNext(next, nextMask, held - 1);
        budget--;
      }
      this.scanAt = at + 1;
      budget--;
    }
    while (budget > 0 && this.scanAt === oldCapacity && this.movedTo < this.count) {
      this.placeNext(next, nextMask, this.movedTo++);
      budget--;
    }
    const steps = RESIZE_STEPS_PER_INSERT - budget;
    this.meter.rehashSteps += steps;
    if (this.scanAt === oldCapacity && this.movedTo === this.count) {
      this.table = next as Uint32Array[];
      this.tableMask = nextMask;
      this.next = null;
    }
  }

  private placeNext(next: (Uint32Array | undefined)[], mask: number, entity: number): void {
    let at = hashOf(this.hiOf(entity), this.loOf(entity)) & mask;
    for (;;) {
      const page = next[at >>> TABLE_SHIFT] ?? this.nextPage(at >>> TABLE_SHIFT);
      if (page[at & TABLE_SLOT_MASK] === 0) {
        page[at & TABLE_SLOT_MASK] = entity + 1;
        return;
      }
      at = (at + 1) & mask;
    }
  }

  private nextPage(pageIndex: number): Uint32Array {
    const next = this.next as (Uint32Array | undefined)[];
    const page = new Uint32Array(Math.min(TABLE_PAGE_SLOTS, (this.tableMask + 1) * 2));
    this.meter.allocatedBytes += page.byteLength;
    while (next.length < pageIndex) next.push(undefined);
    next[pageIndex] = page;
    return page;
  }

  /** Puts the entity (known absent) into `table`. */
  private place(table: Uint32Array[], mask: number, hi: number, lo: number, entity: number): void {
    let at = hashOf(hi, lo) & mask;
    while (table[at >>> TABLE_SHIFT][at & TABLE_SLOT_MASK] !== 0) at = (at + 1) & mask;
    table[at >>> TABLE_SHIFT][at & TABLE_SLOT_MASK] = entity + 1;
  }
}

/** A zero table of `capacity` slots (a power of two) in pages. */
function newTable(capacity: number): Uint32Array[] {
  const pages: Uint32Array[] = [];
  for (let slots = 0; slots < capacity; slots += TABLE_PAGE_SLOTS) pages.push(new Uint32Array(Math.min(TABLE_PAGE_SLOTS, capacity)));
  return pages;
}

/** murmur3's finaliser over the id's two halves (the slot of hi·2^32 + lo). */
function hashOf(hi: number, lo: number): number {
  return finalMix(lo ^ Math.imul(hi, 0x9e3779b1));
}
