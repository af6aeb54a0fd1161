// The structural invariants of a state's arrays (state-arrays.ts), checked in O(state) on every
// image load (image-loader.ts), so hostile or damaged bytes give DECODE_FAILED instead of a
// crash, a hang or a state that reads out of bounds later; tests run the same checks on live
// states. Every check names what it found (context.path).
// Invariant checked: every head and link is in range; chains ascend strictly by origin (so
// they are acyclic) and no contribution sits in two chains or in none; every contribution's
// values are in range and exactly what a snapshot record may hold (snapshot-codec.ts); each
// window's newest bucket (from the anchor) holds ≥ 1 event, and no count exceeds the event
// count; every ring is used by exactly one window or sits on its free list exactly once; every
// flag record belongs to exactly one entity and holds a set flag; every entity holds something.

import { TidelogError } from '../errors.ts';
import {
  ANCHOR_HI,
  ANCHOR_LO,
  LAST_SEQ_F64,
  NEXT,
  ORIGIN,
  POSITIVE_LO_F64,
  SCORE_F64,
  WINDOWS,
  type ContributionPool,
} from './contribution-pool.ts';
import { FLAG_TRUE, FLAG_WORDS } from './flag-table.ts';
import { secondsOf } from './packed-time.ts';
import type { ScoreColumn } from './score-column.ts';
import type { StateArrays } from './state-arrays.ts';
import { LIMB } from './weight-micros.ts';
import { isWideWord, RING_FLAG, ringIndex, ringOf, TWO_FLAG, type RingPool } from './window-rings.ts';

const USED = 1;

/** DECODE_FAILED unless the arrays hold a well-formed state; returns each column's cell count. */
export function checkStateArrays(arrays: StateArrays): number[] {
  const entities = arrays.index.count;
  const pool = arrays.pool;
  const rings = arrays.rings;
  const slotSeen = new Uint8Array(pool.count);
  const narrowSeen = new Uint8Array(rings.narrowCount);
  const wideSeen = new Uint8Array(rings.wideCount);
  const hasContent = new Uint8Array(entities);
  const cellCounts: number[] = [];
  for (const column of arrays.columnList) {
    let cells = 0;
    if (column.heads.list.length > 0) {
      for (let entity = 0; entity < entities; entity++) {
        const head = column.headOf(entity) + 1;
        if (head === 0) continue;
        cells++;
        hasContent[entity] = USED;
        let slot = head - 1;
        let previousOrigin = -1;
        while (slot >= 0) {
          if (slot >= pool.count) fail(chainPath(column, entity, slot), `a chain points past the ${pool.count} contributions`);
          if (slotSeen[slot] === USED) fail(chainPath(column, entity, slot), 'a contribution sits in two chains, or a chain loops');
          slotSeen[slot] = USED;
          const origin = pool.word(slot, ORIGIN);
          if (origin <= previousOrigin) fail(chainPath(column, entity, slot), 'origins must ascend along a chain');
          previousOrigin = origin;
          const problem = contributionProblem(column, pool, rings, slot, narrowSeen, wideSeen);
          if (problem !== undefined) fail(chainPath(column, entity, slot), problem);
          slot = pool.word(slot, NEXT) - 1;
        }
      }
    }
    cellCounts.push(cells);
  }
  for (let slot = 0; slot < pool.count; slot++) {
    if (slotSeen[slot] !== USED) fail(`contribution ${slot}`, 'a contribution belongs to no entity');
  }
  checkFreeRings(rings, narrowSeen, wideSeen);
  checkFlags(arrays, hasContent);
  for (let entity = 0; entity < entities; entity++) {
    if (hasContent[entity] !== USED) fail(`entity ${entity}`, 'an entity holds no contribution and no flag');
  }
  return cellCounts;
}

/**
 * Invariant errors (plain Errors: a live state that fails them is a bug) unless the arrays are
 * well formed (checkStateArrays), the cell counts agree, and the index finds every entity.
 */
export function assertStateArrays(arrays: StateArrays): void {
  const cellCounts = checkStateArrays(arrays);
  arrays.columnList.forEach((column, ordinal) => {
    if (column.cellCount !== cellCounts[ordinal]) throw new Error(`invariant violated: column ${ordinal} counts ${column.cellCount} cells, holds ${cellCounts[ordinal]}`);
  });
  const index = arrays.index;
  for (let entity = 0; entity < index.count; entity++) {
    if (index.find(index.hiOf(entity), index.loOf(entity)) !== entity) throw new Error(`invariant violated: the index does not find entity ${entity}`);
  }
}

/** Why the contribution in `slot` is malformed, or undefined (no strings built when it is fine). */
function contributionProblem(
  column: ScoreColumn,
  pool: ContributionPool,
  rings: RingPool,
  slot: number,
  narrowSeen: Uint8Array,
  wideSeen: Uint8Array,
): string | undefined {
  const at = pool.offsetOf(slot);
  const words = pool.wordsOf(slot);
  const floats = pool.floatsOf(slot);
  const lastSeq = floats[at / 2 + LAST_SEQ_F64];
  if (!Number.isSafeInteger(lastSeq) || lastSeq < 1) return 'lastSeq must be a safe integer ≥ 1';
  const eventCount = pool.eventCountOf(slot);
  if (!Number.isSafeInteger(eventCount) || eventCount < 1) return 'the event count must be a safe integer ≥ 1';
  if (!areLimbs(floats[at / 2 + POSITIVE_LO_F64], pool.positiveHiOf(slot))) return 'ΣP limbs must be integers, the low one below 2^48';
  if (!areLimbs(pool.negativeLoOf(slot), pool.negativeHiOf(slot))) return 'ΣN limbs must be integers, the low one below 2^48';
  if (!Number.isFinite(floats[at / 2 + SCORE_F64])) return 'the score must be finite';
  const bucketCount = rings.bucketCount;
  const anchorSeconds = secondsOf(words[at + ANCHOR_HI], words[at + ANCHOR_LO]);
  for (let window = 0; window < pool.windowSlots; window++) {
    const word = words[at + WINDOWS + window];
    if (window >= column.windowCount) {
      if (word !== 0) return `window ${window}: a window the signal does not have must be zero`;
      continue;
    }
    const newest = Math.floor(anchorSeconds / column.signal.windows[window].bucketSeconds);
    if (word < RING_FLAG) {
      const c0 = rings.newestCount(word);
      const c1 = rings.secondCount(word);
      const offset = rings.secondOffset(word);
      if (word >= TWO_FLAG && rings.inlineWord(c0, c1, offset) !== word) return `window ${window}: a two-bucket word must hold two counts`;
      if (c0 < 1 || c0 + c1 > eventCount) return `window ${window}: inline counts must be from 1 to the event count`;
      if (word >= TWO_FLAG && (offset < 1 || offset >= bucketCount || newest - offset < 0)) return `window ${window}: the second bucket lies outside the ring`;
      continue;
    }
    const ring = ringOf(word);
    const isWide = isWideWord(word);
    const seen = isWide ? wideSeen : narrowSeen;
    if (ring >= seen.length) return `window ${window}: ring ${ring} is past the pool`;
    if (seen[ring] !== 0) return `window ${window}: ring ${ring} is used twice`;
    seen[ring] = USED;
    const counts = rings.countsOf(isWide, ring);
    const base = rings.baseOf(isWide, ring);
    const newestIndex = ringIndex(newest, bucketCount);
    for (let index = 0; index < bucketCount; index++) {
      const count = counts[base + index];
      const bucket = newest - ((newestIndex - index + bucketCount) % bucketCount);
      if (!Number.isSafeInteger(count) || count < 0 || count > eventCount) return `window ${window}: a ring count must be from 0 to the event count`;
      if (bucket < 0 && count !== 0) return `window ${window}: a bucket before time 0 must be empty`;
      if (index === newestIndex && count < 1) return `window ${window}: the newest bucket must hold the newest event`;
    }
  }
  for (let word = WINDOWS + pool.windowSlots; word < pool.strideWords; word++) {
    if (words[at + word] !== 0) return 'record padding must be zero';
  }
  return undefined;
}

function areLimbs(lo: number, hi: number): boolean {
  return Number.isInteger(lo) && lo >= 0 && lo < LIMB && Number.isSafeInteger(hi) && hi >= 0;
}

/** Follows both free lists: each ring on one must be unused and listed once; no ring may leak. */
function checkFreeRings(rings: RingPool, narrowSeen: Uint8Array, wideSeen: Uint8Array): void {
  for (const [isWide, head, seen] of [
    [false, rings.narrowFree, narrowSeen],
    [true, rings.wideFree, wideSeen],
  ] as const) {
    const what = isWide ? 'wide' : 'narrow';
    let link = head;
    while (link !== 0) {
      const ring = link - 1;
      if (!Number.isInteger(link) || ring < 0 || ring >= seen.length) fail(`${what} free list`, `link ${link} is out of range`);
      if (seen[ring] !== 0) fail(`${what} free list`, `ring ${ring} is in use or listed twice`);
      seen[ring] = USED;
      link = rings.countsOf(isWide, ring)[rings.baseOf(isWide, ring)];
    }
    for (let ring = 0; ring < seen.length; ring++) {
      if (seen[ring] !== USED) fail(`${what} ring ${ring}`, 'a ring is neither used nor free');
    }
  }
}

function checkFlags(arrays: StateArrays, hasContent: Uint8Array): void {
  const flags = arrays.flags;
  const seen = new Uint8Array(flags.count);
  if (flags.refs.list.length > 0) {
    for (let entity = 0; entity < arrays.index.count; entity++) {
      const ref = flags.refs.get(entity);
      if (ref === 0) continue;
      const record = ref - 1;
      const path = `flagRefs[${entity}]`;
      if (record >= flags.count) fail(path, `a flag ref points past the ${flags.count} records`);
      if (seen[record] !== 0) fail(path, `flag record ${record} belongs to two entities`);
      seen[record] = USED;
      hasContent[entity] = USED;
      let isAnySet = false;
      for (let flag = 0; flag < flags.flagCount; flag++) {
        const at = flag * FLAG_WORDS;
        const state = flags.word(record, at);
        if (state > FLAG_TRUE) fail(path, `flag ${flag} has state ${state}`);
        if (state === 0) {
          for (let word = 1; word < FLAG_WORDS; word++) if (flags.word(record, at + word) !== 0) fail(path, `flag ${flag} is unset but not zero`);
        } else isAnySet = true;
      }
      if (!isAnySet) fail(path, 'a flag record must hold a set flag');
    }
  }
  for (let record = 0; record < flags.count; record++) {
    if (seen[record] !== USED) fail(`flag record ${record}`, 'a flag record belongs to no entity');
  }
}

function chainPath(column: ScoreColumn, entity: number, slot: number): string {
  return `heads[${column.ordinal}][${entity}] → contribution ${slot}`;
}

function fail(path: string, message: string): never {
  throw new TidelogError('DECODE_FAILED', `${path}: ${message}`, { details: { path } });
}
