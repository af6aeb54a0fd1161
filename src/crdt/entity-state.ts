// One entity's CRDT state: per score signal the per-origin contributions, plus LWW flags.
// Invariant: cells are sorted by signal id and contributions by origin, so iteration order
// (equality, digests, encodings, query sums) is canonical and identical on every replica.
//
// Entity keys: a u64 id below 2^53 is keyed as a number (no allocation on the hot path), one
// at or above 2^53 as a bigint; the form is canonical, so one id never has two keys.

import { Contribution } from './contribution.ts';
import { LWWRegister, trueWinsTies } from './lww-register.ts';
import { joinNs, TWO_POW_32 } from './packed-time.ts';
import type { ScoreSignal, SignalSchema } from './signal-schema.ts';

export type EntityKey = number | bigint;

/** hi·2^32 + lo below 2^53 as a number, otherwise as a bigint. */
export function entityKey(hi: number, lo: number): EntityKey {
  return hi < 0x200000 ? hi * TWO_POW_32 + lo : joinNs(hi, lo);
}

export function entityKeyOf(entityId: bigint): EntityKey {
  return entityId < 0x20_0000_0000_0000n ? Number(entityId) : entityId;
}

export function entityIdOf(key: EntityKey): bigint {
  return typeof key === 'bigint' ? key : BigInt(key);
}

export function compareEntityKeys(a: EntityKey, b: EntityKey): number {
  // Every number key is below every bigint key (2^53 splits the two forms).
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  if (typeof a === 'bigint' && typeof b === 'bigint') return a < b ? -1 : a > b ? 1 : 0;
  return typeof a === 'number' ? -1 : 1;
}

export function keyHalves(key: EntityKey): [hi: number, lo: number] {
  if (typeof key === 'number') return [Math.floor(key / TWO_POW_32), key % TWO_POW_32];
  return [Number(key >> 32n), Number(key & 0xffff_ffffn)];
}

/** A u32 position for the reconciliation tree: murmur3's mix over the id's two halves. */
export function positionOf(hi: number, lo: number): number {
  let hash = 0x5bd1e995;
  hash = mixWord(hash, lo);
  hash = mixWord(hash, hi);
  hash ^= 8;
  hash ^= hash >>> 16;
  hash = Math.imul(hash, 0x85ebca6b);
  hash ^= hash >>> 13;
  hash = Math.imul(hash, 0xc2b2ae35);
  hash ^= hash >>> 16;
  return hash >>> 0;
}

function mixWord(hash: number, word: number): number {
  let k = Math.imul(word, 0xcc9e2d51);
  k = (k << 15) | (k >>> 17);
  k = Math.imul(k, 0x1b873593);
  hash ^= k;
  hash = (hash << 13) | (hash >>> 19);
  return (Math.imul(hash, 5) + 0xe6546b64) | 0;
}

export class SignalCell {
  readonly signal: ScoreSignal;
  /** Ascending by origin. */
  contributions: Contribution[] = [];

  constructor(signal: ScoreSignal) {
    this.signal = signal;
  }

  contributionFor(origin: number): Contribution {
    const contributions = this.contributions;
    let at = 0;
    for (; at < contributions.length; at++) {
      const found = contributions[at];
      if (found.origin === origin) return found;
      if (found.origin > origin) break;
    }
    const created = new Contribution(origin, this.signal.windows.length);
    contributions.splice(at, 0, created);
    return created;
  }
}

export class EntityState {
  readonly key: EntityKey;
  readonly position: number;
  /** Ascending by signal id. */
  cells: SignalCell[] = [];
  /** Indexed by SignalSchema.flags; undefined until the entity has any flag. */
  flags: (LWWRegister<boolean> | undefined)[] | undefined = undefined;
  /** Cached content digest for reconciliation, recomputed when stale. */
  digestHi = 0;
  digestLo = 0;
  isDigestStale = true;

  constructor(key: EntityKey, position: number) {
    this.key = key;
    this.position = position;
  }

  static create(key: EntityKey): EntityState {
    const [hi, lo] = keyHalves(key);
    return new EntityState(key, positionOf(hi, lo));
  }

  cellFor(signal: ScoreSignal): SignalCell {
    const cells = this.cells;
    let at = 0;
    for (; at < cells.length; at++) {
      const found = cells[at];
      if (found.signal.id === signal.id) return found;
      if (found.signal.id > signal.id) break;
    }
    const created = new SignalCell(signal);
    cells.splice(at, 0, created);
    return created;
  }

  cell(signalId: number): SignalCell | undefined {
    for (const cell of this.cells) if (cell.signal.id === signalId) return cell;
    return undefined;
  }

  flagFor(flagIndex: number, flagCount: number): LWWRegister<boolean> {
    if (this.flags === undefined) this.flags = new Array<LWWRegister<boolean> | undefined>(flagCount).fill(undefined);
    let register = this.flags[flagIndex];
    if (register === undefined) {
      register = new LWWRegister<boolean>({ tieBreak: trueWinsTies });
      this.flags[flagIndex] = register;
    }
    return register;
  }

  clone(): EntityState {
    const copy = new EntityState(this.key, this.position);
    copy.cells = this.cells.map((cell) => {
      const cellCopy = new SignalCell(cell.signal);
      cellCopy.contributions = cell.contributions.map((contribution) => contribution.clone());
      return cellCopy;
    });
    copy.flags = this.flags?.map((register) => register?.clone());
    copy.digestHi = this.digestHi;
    copy.digestLo = this.digestLo;
    copy.isDigestStale = this.isDigestStale;
    return copy;
  }

  equals(other: EntityState): boolean {
    if (this.key !== other.key || this.cells.length !== other.cells.length) return false;
    for (let index = 0; index < this.cells.length; index++) {
      const a = this.cells[index];
      const b = other.cells[index];
      if (a.signal.id !== b.signal.id || a.contributions.length !== b.contributions.length) return false;
      for (let at = 0; at < a.contributions.length; at++) {
        if (!a.contributions[at].equals(b.contributions[at])) return false;
      }
    }
    const flagCount = Math.max(this.flags?.length ?? 0, other.flags?.length ?? 0);
    for (let index = 0; index < flagCount; index++) {
      const a = this.flags?.[index];
      const b = other.flags?.[index];
      if (a === undefined || b === undefined) {
        if (a !== b) return false;
      } else if (!a.equals(b)) return false;
    }
    return true;
  }

  /**
   * Joins `source` into this entity: per (signal, origin) the contribution with the greater
   * lastSeq, per flag the LWW maximum. Returns whether anything changed. Contributions taken
   * from `source` are cloned, so the two entities never share mutable state.
   */
  join(source: EntityState, schema: SignalSchema): boolean {
    let isChanged = false;
    for (const sourceCell of source.cells) {
      const cell = this.cellFor(sourceCell.signal);
      for (const incoming of sourceCell.contributions) {
        const contributions = cell.contributions;
        let at = 0;
        while (at < contributions.length && contributions[at].origin < incoming.origin) at++;
        const held = contributions[at];
        if (held === undefined || held.origin !== incoming.origin) {
          contributions.splice(at, 0, incoming.clone());
          isChanged = true;
        } else if (incoming.lastSeq > held.lastSeq) {
          contributions[at] = incoming.clone();
          isChanged = true;
        }
      }
    }
    if (source.flags !== undefined) {
      source.flags.forEach((incoming, flagIndex) => {
        if (incoming === undefined || !incoming.isSet) return;
        const register = this.flagFor(flagIndex, schema.flags.length);
        const before = register.timestamp;
        register.merge(incoming);
        // set() replaces the stamp object exactly when the incoming write wins.
        if (register.timestamp !== before) isChanged = true;
      });
    }
    if (isChanged) this.isDigestStale = true;
    return isChanged;
  }
}
