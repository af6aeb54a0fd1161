// The typed arrays that hold a state's entities: one entity index, one contribution pool and one
// ring pool shared by every score column, the columns' heads, and the flags. Everything the
// state knows about entities lives here, in a fixed set of arrays, so a clone is a handful of
// copies and an image (state-image.ts) a raw dump of them.
// Invariant: an entity is in the index only if it holds a contribution or a set flag (entities
// are created by the write that gives them content and never removed), so entityCount is the
// index's count; every array write goes through the shared WriteBarrier (copy-on-write for an
// image in progress, and the reconciliation digest cache).
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
import { ScoreColumn, type ColumnStores } from './score-column.ts';
import type { SignalSchema } from './signal-schema.ts';
import { RingPool } from './window-rings.ts';
import { WordHash } from './word-hash.ts';

const SAFE_HI = 0x200000;

export class StateArrays {
  readonly schema: SignalSchema;
  readonly barrier = new WriteBarrier();
  readonly index: EntityIndex;
  readonly pool: ContributionPool;
  readonly rings: RingPool;
  readonly flags: FlagTable;
  /** Indexed by signal id; undefined for flag and unknown signals. */
  readonly columns: (ScoreColumn | undefined)[];
  /** The same columns, ascending by signal id (a column's ordinal is its place here). */
  readonly columnList: ScoreColumn[] = [];
  private digestHi: Uint32Array | null = null;
  private digestLo: Uint32Array | null = null;
  private readonly hash = new WordHash();

  constructor(schema: SignalSchema, source?: StateArrays) {
    this.schema = schema;
    this.index = new EntityIndex(this.barrier, source?.index);
    this.pool = new ContributionPool(windowSlotsOf(schema), this.barrier, source?.pool);
    this.rings = new RingPool(schema.bucketsPerWindow, this.barrier, source?.rings);
    this.flags = new FlagTable(schema.flags.length, this.index, this.barrier, source?.flags);
    const stores: ColumnStores = { index: this.index, pool: this.pool, rings: this.rings, barrier: this.barrier };
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

  /** The imaged arrays in image order (state-image.ts), as they stand now. */
  sections(): SectionSource[] {
    const entities = this.index.count;
    const contributions = this.pool.count;
    const sources: SectionSource[] = [
      { id: Section.ENTITY_KEYS, array: this.index.keys, elementBytes: 8, count: entities },
      { id: Section.CONTRIBUTIONS, array: this.pool.words, elementBytes: this.pool.strideWords * 4, count: contributions },
      { id: Section.NEGATIVE_LO, array: this.pool.negativeLo, elementBytes: 8, count: contributions },
      { id: Section.POSITIVE_HI, array: this.pool.positiveHi, elementBytes: 8, count: contributions },
      { id: Section.NEGATIVE_HI, array: this.pool.negativeHi, elementBytes: 8, count: contributions },
      { id: Section.EVENT_COUNT_HI, array: this.pool.eventCountHi, elementBytes: 4, count: contributions },
      { id: Section.NARROW_RINGS, array: this.rings.narrow, elementBytes: this.schema.bucketsPerWindow * 4, count: this.rings.narrowCount },
      { id: Section.WIDE_RINGS, array: this.rings.wide, elementBytes: this.schema.bucketsPerWindow * 8, count: this.rings.wideCount },
      { id: Section.FLAG_REFS, array: this.flags.refs, elementBytes: 4, count: entities },
      { id: Section.FLAG_RECORDS, array: this.flags.records, elementBytes: this.schema.flags.length * FLAG_WORDS * 4, count: this.flags.count },
    ];
    for (const column of this.columnList) {
      sources.push({ id: Section.HEADS + column.ordinal, array: column.heads, elementBytes: 4, count: entities });
    }
    return sources;
  }

  /** Whether both hold the same entities with the same contributions and flags. */
  equals(other: StateArrays): boolean {
    if (this.index.count !== other.index.count) return false;
    const keys = this.index.keys;
    for (let entity = 0; entity < this.index.count; entity++) {
      const otherEntity = other.index.find(keys[entity * 2], keys[entity * 2 + 1]);
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
    const otherRefs = other.flags.refs;
    if (otherRefs === null) return;
    const otherKeys = other.index.keys;
    const end = Math.min(otherRefs.length, other.index.count);
    for (let otherEntity = 0; otherEntity < end; otherEntity++) {
      if (otherRefs[otherEntity] === 0) continue;
      const entity = this.index.findOrAdd(otherKeys[otherEntity * 2], otherKeys[otherEntity * 2 + 1]);
      other.flags.forEachSet(otherEntity, (flag, value, wallHi, wallLo, logical, nodeId) => {
        this.flags.set(entity, flag, value, wallHi, wallLo, logical, nodeId);
      });
    }
  }

  /** Every entity key, ascending (numbers below 2^53 first, then bigints). */
  sortedKeys(): EntityKey[] {
    const keys = this.index.keys;
    const numbers = new Float64Array(this.index.count);
    const bigs: bigint[] = [];
    let count = 0;
    for (let entity = 0; entity < this.index.count; entity++) {
      const hi = keys[entity * 2];
      if (hi < SAFE_HI) numbers[count++] = hi * TWO_POW_32 + keys[entity * 2 + 1];
      else bigs.push(joinNs(hi, keys[entity * 2 + 1]));
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
    if (fresh === null || entity >= fresh.length) {
      const capacity = this.index.capacity;
      const grownFresh = new Uint8Array(capacity);
      const grownHi = new Uint32Array(capacity);
      const grownLo = new Uint32Array(capacity);
      if (fresh !== null) {
        grownFresh.set(fresh);
        grownHi.set(this.digestHi as Uint32Array);
        grownLo.set(this.digestLo as Uint32Array);
      }
      this.barrier.digestFresh = fresh = grownFresh;
      this.digestHi = grownHi;
      this.digestLo = grownLo;
    }
    const digestHi = this.digestHi as Uint32Array;
    const digestLo = this.digestLo as Uint32Array;
    if (fresh[entity] === 0) {
      const keyHi = this.index.keys[entity * 2];
      const keyLo = this.index.keys[entity * 2 + 1];
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
      digestHi[entity] = hi;
      digestLo[entity] = lo;
      fresh[entity] = 1;
    }
    return [digestHi[entity], digestLo[entity]];
  }
}

/** Window words per contribution record: the schema's largest window count. */
function windowSlotsOf(schema: SignalSchema): number {
  let slots = 0;
  for (const signal of schema.signals) if (signal.kind === 'score') slots = Math.max(slots, signal.windows.length);
  return slots;
}
