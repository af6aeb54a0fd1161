// The typed arrays that hold a state's entities: one entity index, one contribution pool and one
// ring pool shared by every score column, the columns' heads, and the flags. Everything the
// state knows about entities lives here, in a fixed set of paged arrays (pages.ts), so a clone
// is a copy of their pages and an image (state-image.ts) a raw dump of them.
// Invariant: an entity is in the index only if it holds a contribution or a set flag (entities
// are created by the write that gives them content and never removed), so entityCount is the
// index's count; every array write goes through the shared WriteBarrier (copy-on-write for an
// image in progress, and the reconciliation digest cache). Growth is bounded per write: stores
// add pages and never copy them, the index resizes incrementally, and every allocation and
// rehash is counted in `meter` (tests bound it per fold call).
//
//   memory per entity, default schema, one origin, two score signals of three windows each:
//   index keys 8 B + table ≤ 8 B + 2 heads × 4 B + 2 records × 80 B  ≈ 184 B, plus a pooled
//   ring (96 B) for each window that holds events in more than one bucket

import { cellDigest, cellEquals, joinColumn } from './column-join.ts';
import { ContributionPool } from './contribution-pool.ts';
import { Section, WriteBarrier, type SectionSource } from './copy-on-write.ts';
import { EntityIndex } from './entity-index.ts';
import type { EntityKey } from './entity-key.ts';
import { FLAG_WORDS, FlagTable } from './flag-table.ts';
import { joinNs, TWO_POW_32 } from './packed-time.ts';
import { GrowthMeter, Pages, type PageArray } from './pages.ts';
import { ScoreColumn, type ColumnStores } from './score-column.ts';
import type { SignalSchema } from './signal-schema.ts';
import { RingPool } from './window-rings.ts';
import { WordHash } from './word-hash.ts';

const SAFE_HI = 0x200000;

export class StateArrays {
  readonly schema: SignalSchema;
  readonly barrier = new WriteBarrier();
  readonly meter = new GrowthMeter();
  readonly index: EntityIndex;
  readonly pool: ContributionPool;
  readonly rings: RingPool;
  readonly flags: FlagTable;
  /** Indexed by signal id; undefined for flag and unknown signals. */
  readonly columns: (ScoreColumn | undefined)[];
  /** The same columns, ascending by signal id (a column's ordinal is its place here). */
  readonly columnList: ScoreColumn[] = [];
  /** The digest cache (with barrier.digestFresh): allocated when reconciliation first asks. */
  private digestHi: Pages<Uint32Array> | null = null;
  private digestLo: Pages<Uint32Array> | null = null;
  private readonly hash = new WordHash();

  constructor(schema: SignalSchema, source?: StateArrays) {
    this.schema = schema;
    const meter = this.meter;
    this.index = new EntityIndex(this.barrier, meter, source?.index);
    this.pool = new ContributionPool(windowSlotsOf(schema), this.barrier, meter, source?.pool);
    this.rings = new RingPool(schema.bucketsPerWindow, this.barrier, meter, source?.rings);
    this.flags = new FlagTable(schema.flags.length, this.barrier, meter, source?.flags);
    const stores: ColumnStores = { index: this.index, pool: this.pool, rings: this.rings, barrier: this.barrier, meter };
    this.columns = new Array<ScoreColumn | undefined>(256).fill(undefined);
    for (const signal of schema.signals) {
      if (signal.kind !== 'score') continue;
      const ordinal = this.columnList.length;
      const column = new ScoreColumn(signal, ordinal, schema.bucketsPerWindow, stores, source?.columnList[ordinal]);
      this.columns[signal.id] = column;
      this.columnList.push(column);
    }
  }

  get entityCount(): number {
    return this.index.count;
  }

  /** The imaged stores in image order (state-image.ts), as they stand now. */
  sections(): SectionSource[] {
    const entities = this.index.count;
    const contributions = this.pool.count;
    const pool = this.pool;
    // A lazily allocated store that never got a page is absent (imaged as zero records).
    const lazy = (pages: Pages<PageArray>): Pages<PageArray> | null => (pages.list.length === 0 ? null : pages);
    const sources: SectionSource[] = [
      { id: Section.ENTITY_KEYS, pages: this.index.keys, elementBytes: 8, count: entities },
      { id: Section.CONTRIBUTIONS, pages: pool.words, elementBytes: pool.strideWords * 4, count: contributions },
      { id: Section.NEGATIVE_LO, pages: lazy(pool.negativeLo), elementBytes: 8, count: contributions },
      { id: Section.POSITIVE_HI, pages: lazy(pool.positiveHi), elementBytes: 8, count: contributions },
      { id: Section.NEGATIVE_HI, pages: lazy(pool.negativeHi), elementBytes: 8, count: contributions },
      { id: Section.EVENT_COUNT_HI, pages: lazy(pool.eventCountHi), elementBytes: 4, count: contributions },
      { id: Section.NARROW_RINGS, pages: this.rings.narrow, elementBytes: this.schema.bucketsPerWindow * 4, count: this.rings.narrowCount },
      { id: Section.WIDE_RINGS, pages: this.rings.wide, elementBytes: this.schema.bucketsPerWindow * 8, count: this.rings.wideCount },
      { id: Section.FLAG_REFS, pages: lazy(this.flags.refs), elementBytes: 4, count: entities },
      { id: Section.FLAG_RECORDS, pages: this.flags.records, elementBytes: this.schema.flags.length * FLAG_WORDS * 4, count: this.flags.count },
    ];
    for (const column of this.columnList) {
      sources.push({ id: Section.HEADS + column.ordinal, pages: lazy(column.heads), elementBytes: 4, count: entities });
    }
    return sources;
  }

  /** Whether both hold the same entities with the same contributions and flags. */
  equals(other: StateArrays): boolean {
    if (this.index.count !== other.index.count) return false;
    for (let entity = 0; entity < this.index.count; entity++) {
      const otherEntity = other.index.find(this.index.hiOf(entity), this.index.loOf(entity));
      if (otherEntity < 0) return false;
      for (const column of this.columnList) {
        if (!cellEquals(column, entity, other.columns[column.signal.id] as ScoreColumn, otherEntity)) return false;
      }
      if (!this.flags.equalsEntity(entity, other.flags, otherEntity)) return false;
    }
    return true;
  }

  /** Joins `other`'s contributions and flags (same schema, another state). */
  join(other: StateArrays): void {
    for (const column of this.columnList) joinColumn(column, other.columns[column.signal.id] as ScoreColumn);
    if (other.flags.refs.list.length === 0) return;
    for (let otherEntity = 0; otherEntity < other.index.count; otherEntity++) {
      if (other.flags.recordOf(otherEntity) < 0) continue;
      const entity = this.index.findOrAdd(other.index.hiOf(otherEntity), other.index.loOf(otherEntity));
      other.flags.forEachSet(otherEntity, (flag, value, wallHi, wallLo, logical, nodeId) => {
        this.flags.set(entity, flag, value, wallHi, wallLo, logical, nodeId);
      });
    }
  }

  /** Every entity key, ascending (numbers below 2^53 first, then bigints). */
  sortedKeys(): EntityKey[] {
    const index = this.index;
    const numbers = new Float64Array(index.count);
    const bigs: bigint[] = [];
    let count = 0;
    for (let entity = 0; entity < index.count; entity++) {
      const hi = index.hiOf(entity);
      if (hi < SAFE_HI) numbers[count++] = hi * TWO_POW_32 + index.loOf(entity);
      else bigs.push(joinNs(hi, index.loOf(entity)));
    }
    const sorted: EntityKey[] = Array.from(numbers.subarray(0, count).sort());
    bigs.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    for (const big of bigs) sorted.push(big);
    return sorted;
  }

  /**
   * The entity's content digest (digest-tree.ts): the XOR of its cells' digests and its flags'
   * digest, cached per entity until a write marks it stale. The cache is allocated on the first
   * call, so states that never reconcile do not carry it.
   */
  digestOf(entity: number): [hi: number, lo: number] {
    let fresh = this.barrier.digestFresh;
    if (fresh === null) {
      this.barrier.digestFresh = fresh = new Pages(Uint8Array, 1, this.meter);
      this.digestHi = new Pages(Uint32Array, 1, this.meter);
      this.digestLo = new Pages(Uint32Array, 1, this.meter);
    }
    const digestHi = this.digestHi as Pages<Uint32Array>;
    const digestLo = this.digestLo as Pages<Uint32Array>;
    const freshPage = fresh.ensure(entity);
    const hiPage = digestHi.ensure(entity);
    const loPage = digestLo.ensure(entity);
    const freshAt = fresh.offsetOf(entity);
    const at = digestHi.offsetOf(entity);
    if (freshPage[freshAt] === 0) {
      const keyHi = this.index.hiOf(entity);
      const keyLo = this.index.loOf(entity);
      const hash = this.hash;
      let hi = 0;
      let lo = 0;
      for (const column of this.columnList) {
        if (cellDigest(column, entity, keyHi, keyLo, hash)) {
          hi ^= hash.hi;
          lo ^= hash.lo;
        }
      }
      if (this.flags.digest(entity, keyHi, keyLo, hash)) {
        hi ^= hash.hi;
        lo ^= hash.lo;
      }
      hiPage[at] = hi;
      loPage[at] = lo;
      freshPage[freshAt] = 1;
    }
    return [hiPage[at], loPage[at]];
  }
}

/** Window words per contribution record: the schema's largest window count. */
function windowSlotsOf(schema: SignalSchema): number {
  let slots = 0;
  for (const signal of schema.signals) if (signal.kind === 'score') slots = Math.max(slots, signal.windows.length);
  return slots;
}
