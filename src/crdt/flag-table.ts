// The state's LWW flags (hide/unhide …) in typed arrays: few entities carry flags, so an entity
// has a flag record only once some flag was set on it, and a state that never saw a flag
// allocates nothing per entity.
// Invariant: a flag holds the maximum of every (HLC, value) written to it, HLCs ordered by
// (wall, logical, nodeId) and an identical HLC won by true (lww-register.ts trueWinsTies: a
// hide beats an unhide stamped identically), so set is commutative, associative and idempotent.
// A record exists only for an entity with at least one flag set.
//
//   refs     Uint32Array  per entity: its record + 1, 0 for none       (Section.FLAG_REFS)
//   records  Uint32Array  per record, per flag of the schema (F flags)  (Section.FLAG_RECORDS)
//            word  field
//            ----  -------------------------------------------------
//               0  state: 0 never set, 1 false, 2 true
//               1  HLC wall, high u32
//               2  HLC wall, low u32
//               3  HLC logical
//               4  HLC nodeId
//            (a flag never set is all zero)

import { Section, type WriteBarrier } from './copy-on-write.ts';
import type { EntityIndex } from './entity-index.ts';
import { HlcTimestamp } from './hlc-timestamp.ts';
import { LWWRegister, trueWinsTies } from './lww-register.ts';
import { joinNs } from './packed-time.ts';
import type { WordHash } from './word-hash.ts';

export const FLAG_WORDS = 5;
export const FLAG_FALSE = 1;
export const FLAG_TRUE = 2;
const INITIAL_RECORDS = 16;

export class FlagTable {
  readonly flagCount: number;
  readonly recordWords: number;
  refs: Uint32Array | null = null;
  records: Uint32Array;
  count = 0;
  private readonly index: EntityIndex;
  private readonly barrier: WriteBarrier;

  constructor(flagCount: number, index: EntityIndex, barrier: WriteBarrier, source?: FlagTable) {
    this.flagCount = flagCount;
    this.recordWords = flagCount * FLAG_WORDS;
    this.index = index;
    this.barrier = barrier;
    if (source === undefined) {
      this.records = new Uint32Array(0);
    } else {
      this.refs = source.refs?.slice() ?? null;
      this.records = source.records.slice();
      this.count = source.count;
    }
  }

  /** Takes loaded arrays (state-image.ts); the caller validated them. */
  adopt(refs: Uint32Array | null, records: Uint32Array, count: number): void {
    this.refs = refs;
    this.records = records;
    this.count = count;
  }

  /** The entity's record, or −1 (also for entity −1: not in the index). */
  recordOf(entity: number): number {
    const refs = this.refs;
    return refs !== null && entity >= 0 && entity < refs.length ? refs[entity] - 1 : -1;
  }

  /** Writes (HLC, value) to the entity's flag if it beats the held pair; returns whether it did. */
  set(entity: number, flag: number, value: boolean, wallHi: number, wallLo: number, logical: number, nodeId: number): boolean {
    let record = this.recordOf(entity);
    if (record >= 0) {
      const at = record * this.recordWords + flag * FLAG_WORDS;
      const records = this.records;
      const state = records[at];
      if (state !== 0) {
        const order =
          wallHi - records[at + 1] || wallLo - records[at + 2] || logical - records[at + 3] || nodeId - records[at + 4];
        if (order < 0) return false;
        if (order === 0 && trueWinsTies(value, state === FLAG_TRUE) <= 0) return false;
      }
    } else {
      record = this.allocate(entity);
    }
    this.barrier.copies?.touch(Section.FLAG_RECORDS, record);
    this.barrier.markStale(entity);
    const at = record * this.recordWords + flag * FLAG_WORDS;
    this.records[at] = value ? FLAG_TRUE : FLAG_FALSE;
    this.records[at + 1] = wallHi;
    this.records[at + 2] = wallLo;
    this.records[at + 3] = logical;
    this.records[at + 4] = nodeId;
    return true;
  }

  /** A copy of the flag as an LWW register (never set: an empty register). */
  register(entity: number, flag: number): LWWRegister<boolean> {
    const register = new LWWRegister<boolean>({ tieBreak: trueWinsTies });
    const record = this.recordOf(entity);
    if (record < 0) return register;
    const at = record * this.recordWords + flag * FLAG_WORDS;
    const records = this.records;
    if (records[at] !== 0) {
      register.set(records[at] === FLAG_TRUE, new HlcTimestamp(joinNs(records[at + 1], records[at + 2]), records[at + 3], records[at + 4]));
    }
    return register;
  }

  /** The flag's value (false when never set). */
  valueOf(entity: number, flag: number): boolean {
    const record = this.recordOf(entity);
    return record >= 0 && this.records[record * this.recordWords + flag * FLAG_WORDS] === FLAG_TRUE;
  }

  /** Calls `visit` for every set flag of the entity, ascending by flag index. */
  forEachSet(entity: number, visit: (flag: number, value: boolean, wallHi: number, wallLo: number, logical: number, nodeId: number) => void): void {
    const record = this.recordOf(entity);
    if (record < 0) return;
    const records = this.records;
    for (let flag = 0; flag < this.flagCount; flag++) {
      const at = record * this.recordWords + flag * FLAG_WORDS;
      if (records[at] !== 0) visit(flag, records[at] === FLAG_TRUE, records[at + 1], records[at + 2], records[at + 3], records[at + 4]);
    }
  }

  /** Whether the entity's flags here equal `otherEntity`'s in `other` (−1: no such entity). */
  equalsEntity(entity: number, other: FlagTable, otherEntity: number): boolean {
    const mine = this.recordOf(entity);
    const theirs = otherEntity < 0 ? -1 : other.recordOf(otherEntity);
    for (let word = 0; word < this.recordWords; word++) {
      const a = mine < 0 ? 0 : this.records[mine * this.recordWords + word];
      const b = theirs < 0 ? 0 : other.records[theirs * this.recordWords + word];
      if (a !== b) return false;
    }
    return true;
  }

  /**
   * The entity's flag digest (reconciliation): key halves, a marker, then per set flag its index,
   * value and HLC words. Returns false when the entity has no flags (contributes nothing).
   */
  digest(entity: number, keyHi: number, keyLo: number, hash: WordHash): boolean {
    const record = this.recordOf(entity);
    if (record < 0) return false;
    hash.reset();
    hash.word(keyHi);
    hash.word(keyLo);
    hash.word(0xffff_ffff);
    this.forEachSet(entity, (flag, value, wallHi, wallLo, logical, nodeId) => {
      hash.word(flag);
      hash.word(value ? 1 : 0);
      hash.word(wallHi);
      hash.word(wallLo);
      hash.word(logical);
      hash.word(nodeId);
    });
    hash.finish();
    return true;
  }

  private allocate(entity: number): number {
    const record = this.count;
    if ((record + 1) * this.recordWords > this.records.length) {
      const records = new Uint32Array(Math.max(INITIAL_RECORDS, record * 2) * this.recordWords);
      records.set(this.records);
      this.barrier.copies?.freeze(Section.FLAG_RECORDS);
      this.records = records;
    }
    let refs = this.refs;
    if (refs === null || entity >= refs.length) {
      const grown = new Uint32Array(this.index.capacity);
      if (refs !== null) {
        grown.set(refs);
        this.barrier.copies?.freeze(Section.FLAG_REFS);
      }
      this.refs = refs = grown;
    }
    this.barrier.copies?.touch(Section.FLAG_REFS, entity);
    refs[entity] = record + 1;
    this.count = record + 1;
    return record;
  }
}
