// The state's LWW flags (hide/unhide …) in typed arrays: few entities carry flags, so an entity
// has a flag record only once some flag was set on it, and a state that never saw a flag
// allocates nothing per entity. Both arrays are paged (pages.ts): growth adds a page, never
// copies, and refs get a page only where some entity of that page carries a flag.
// Invariant: a flag holds the maximum of every (HLC, value) written to it, HLCs ordered by
// (wall, logical, nodeId) and an identical HLC won by true (lww-register.ts trueWinsTies: a
// hide beats an unhide stamped identically), so set is commutative, associative and idempotent.
// A record exists only for an entity with at least one flag set.
//
//   refs     Pages<Uint32Array>  per entity: its record + 1, 0 for none; "used" once any
//                                page exists (Section.FLAG_REFS)
//   records  Pages<Uint32Array>  per record, per flag of the schema (F flags)  (Section.FLAG_RECORDS)
//            word  field
//            ----  -------------------------------------------------
//               0  state: 0 never set, 1 false, 2 true
//               1  HLC wall, high u32
//               2  HLC wall, low u32
//               3  HLC logical
//               4  HLC nodeId
//            (a flag never set is all zero)

import { Section, type WriteBarrier } from './copy-on-write.ts';
import { HlcTimestamp } from './hlc-timestamp.ts';
import { LWWRegister, trueWinsTies } from './lww-register.ts';
import { joinNs } from './packed-time.ts';
import { GrowthMeter, Pages } from './pages.ts';
import type { WordHash } from './word-hash.ts';

export const FLAG_WORDS = 5;
export const FLAG_FALSE = 1;
export const FLAG_TRUE = 2;

export class FlagTable {
  readonly flagCount: number;
  readonly recordWords: number;
  readonly refs: Pages<Uint32Array>;
  readonly records: Pages<Uint32Array>;
  count = 0;
  private readonly barrier: WriteBarrier;

  constructor(flagCount: number, barrier: WriteBarrier, meter = new GrowthMeter(), source?: FlagTable) {
    this.flagCount = flagCount;
    this.recordWords = flagCount * FLAG_WORDS;
    this.barrier = barrier;
    this.refs = new Pages(Uint32Array, 1, meter, source?.refs);
    this.records = new Pages(Uint32Array, Math.max(1, this.recordWords), meter, source?.records);
    this.count = source?.count ?? 0;
  }

  /** Takes the count of records loaded into the pages (image-loader.ts); the caller validated them. */
  adopt(count: number): void {
    this.count = count;
  }

  /** The entity's record, or −1 (also for entity −1: not in the index). */
  recordOf(entity: number): number {
    return entity < 0 ? -1 : this.refs.get(entity) - 1;
  }

  /** Word `word` of flag record `record`. */
  word(record: number, word: number): number {
    return (this.records.list[record >>> this.records.shift] as Uint32Array)[this.records.offsetOf(record) + word];
  }

  /** Writes (HLC, value) to the entity's flag if it beats the held pair; returns whether it did. */
  set(entity: number, flag: number, value: boolean, wallHi: number, wallLo: number, logical: number, nodeId: number): boolean {
    let record = this.recordOf(entity);
    if (record >= 0) {
      const records = this.records.list[record >>> this.records.shift] as Uint32Array;
      const at = this.records.offsetOf(record) + flag * FLAG_WORDS;
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
    const records = this.records.list[record >>> this.records.shift] as Uint32Array;
    const at = this.records.offsetOf(record) + flag * FLAG_WORDS;
    records[at] = value ? FLAG_TRUE : FLAG_FALSE;
    records[at + 1] = wallHi;
    records[at + 2] = wallLo;
    records[at + 3] = logical;
    records[at + 4] = nodeId;
    return true;
  }

  /** A copy of the flag as an LWW register (never set: an empty register). */
  register(entity: number, flag: number): LWWRegister<boolean> {
    const register = new LWWRegister<boolean>({ tieBreak: trueWinsTies });
    const record = this.recordOf(entity);
    if (record < 0) return register;
    const at = flag * FLAG_WORDS;
    if (this.word(record, at) !== 0) {
      const stamp = new HlcTimestamp(joinNs(this.word(record, at + 1), this.word(record, at + 2)), this.word(record, at + 3), this.word(record, at + 4));
      register.set(this.word(record, at) === FLAG_TRUE, stamp);
    }
    return register;
  }

  /** The flag's value (false when never set). */
  valueOf(entity: number, flag: number): boolean {
    const record = this.recordOf(entity);
    return record >= 0 && this.word(record, flag * FLAG_WORDS) === FLAG_TRUE;
  }

  /** Calls `visit` for every set flag of the entity, ascending by flag index. */
  forEachSet(entity: number, visit: (flag: number, value: boolean, wallHi: number, wallLo: number, logical: number, nodeId: number) => void): void {
    const record = this.recordOf(entity);
    if (record < 0) return;
    const records = this.records.list[record >>> this.records.shift] as Uint32Array;
    for (let flag = 0; flag < this.flagCount; flag++) {
      const at = this.records.offsetOf(record) + flag * FLAG_WORDS;
      if (records[at] !== 0) visit(flag, records[at] === FLAG_TRUE, records[at + 1], records[at + 2], records[at + 3], records[at + 4]);
    }
  }

  /** Whether the entity's flags here equal `otherEntity`'s in `other` (−1: no such entity). */
  equalsEntity(entity: number, other: FlagTable, otherEntity: number): boolean {
    const mine = this.recordOf(entity);
    const theirs = otherEntity < 0 ? -1 : other.recordOf(otherEntity);
    for (let word = 0; word < this.recordWords; word++) {
      const a = mine < 0 ? 0 : this.word(mine, word);
      const b = theirs < 0 ? 0 : other.word(theirs, word);
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
    this.records.ensure(record);
    const refs = this.refs.ensure(entity);
    this.barrier.copies?.touch(Section.FLAG_REFS, entity);
    refs[this.refs.offsetOf(entity)] = record + 1;
    this.count = record + 1;
    return record;
  }
}
