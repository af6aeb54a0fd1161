// Joining and comparing one signal's contributions across states (merge, decoded records,
// equality, reconciliation digests), on the stores a ScoreColumn shares with its state.
// Invariant: every join keeps, per (entity, signal, origin), the contribution with the greater
// lastSeq, and on an equal lastSeq with different contents the greater content in
// compareContributions order (contribution-values.ts), counting the clash in the column's
// `conflicts`; so joins commute, associate and are idempotent, and equal states compare and
// digest equal whatever form their windows are stored in (window-rings.ts).

import { compareContributions, type ContributionValues } from './contribution-values.ts';
import {
  ANCHOR_HI,
  ANCHOR_LO,
  EVENT_COUNT_LO,
  EVENT_HI,
  EVENT_LO,
  LAST_SEQ_F64,
  LOGICAL,
  NEXT,
  NODE,
  ORIGIN,
  POSITIVE_LO_F64,
  SCORE_F64,
  WALL_HI,
  WALL_LO,
  WINDOWS,
} from './contribution-pool.ts';
import { Section } from './copy-on-write.ts';
import type { ScoreColumn } from './score-column.ts';
import type { WordHash } from './word-hash.ts';

/**
 * Joins a decoded contribution into (entity, origin): taken if it has the greater lastSeq, or
 * the same lastSeq and the greater content (a conflict, counted). Its windows must agree with
 * its anchor (snapshot-codec.ts checks that).
 */
export function joinValues(column: ScoreColumn, entity: number, values: ContributionValues): boolean {
  const slot = column.slotFor(entity, values.origin);
  const pool = column.pool;
  const held = pool.float(slot, LAST_SEQ_F64);
  if (values.lastSeq < held) return false;
  if (values.lastSeq === held) {
    const order = compareContributions(values, column.values(slot));
    if (order === 0) return false;
    column.conflicts++;
    if (order < 0) return false;
  }
  column.barrier.copies?.touch(Section.CONTRIBUTIONS, slot);
  column.barrier.markStale(entity);
  const at = pool.offsetOf(slot);
  const floats = pool.floatsOf(slot);
  floats[at / 2 + LAST_SEQ_F64] = values.lastSeq;
  floats[at / 2 + SCORE_F64] = values.score;
  pool.setEventCount(slot, values.eventCount);
  pool.setWeights(slot, values.weightPositiveHi, values.weightPositiveLo, values.weightNegativeHi, values.weightNegativeLo);
  const words = pool.wordsOf(slot);
  words[at + ANCHOR_HI] = values.anchorHi;
  words[at + ANCHOR_LO] = values.anchorLo;
  words[at + WALL_HI] = values.wallHi;
  words[at + WALL_LO] = values.wallLo;
  words[at + LOGICAL] = values.logical;
  words[at + NODE] = values.nodeId;
  words[at + EVENT_HI] = values.eventHi;
  words[at + EVENT_LO] = values.eventLo;
  for (let window = 0; window < column.windowCount; window++) {
    words[at + WINDOWS + window] = column.rings.fromPairs(values.windows[window], words[at + WINDOWS + window]);
  }
  return true;
}

/**
 * Joins every contribution of `other` (same signal, another state): per (entity, origin) the
 * greater lastSeq, and on an equal lastSeq with different contents the greater content (a
 * conflict, counted).
 */
export function joinColumn(column: ScoreColumn, other: ScoreColumn): void {
  if (other.heads.list.length === 0) return;
  const otherPool = other.pool;
  for (let otherEntity = 0; otherEntity < other.index.count; otherEntity++) {
    const otherHead = other.headOf(otherEntity);
    if (otherHead < 0) continue;
    const entity = column.index.findOrAdd(other.index.hiOf(otherEntity), other.index.loOf(otherEntity));
    for (let source = otherHead; source >= 0; source = otherPool.word(source, NEXT) - 1) {
      const slot = column.slotFor(entity, otherPool.word(source, ORIGIN));
      const theirSeq = otherPool.float(source, LAST_SEQ_F64);
      const mySeq = column.pool.float(slot, LAST_SEQ_F64);
      if (theirSeq < mySeq) continue;
      if (theirSeq === mySeq && !isTheirsGreater(column, slot, other, source)) continue;
      copySlot(column, slot, other, source);
      column.barrier.markStale(entity);
    }
  }
}

/** Overwrites `slot` (not its origin or link) with `other`'s `source`. */
function copySlot(column: ScoreColumn, slot: number, other: ScoreColumn, source: number): void {
  column.barrier.copies?.touch(Section.CONTRIBUTIONS, slot);
  const pool = column.pool;
  const from = other.pool.offsetOf(source);
  const to = pool.offsetOf(slot);
  const floats = pool.floatsOf(slot);
  floats[to / 2 + LAST_SEQ_F64] = other.pool.float(source, LAST_SEQ_F64);
  floats[to / 2 + SCORE_F64] = other.pool.float(source, SCORE_F64);
  pool.setEventCount(slot, other.pool.eventCountOf(source));
  pool.setWeights(
    slot,
    other.pool.positiveHiOf(source),
    other.pool.float(source, POSITIVE_LO_F64),
    other.pool.negativeHiOf(source),
    other.pool.negativeLoOf(source),
  );
  // Element loops rather than subarray().set(): no typed-array objects per contribution.
  const words = pool.wordsOf(slot);
  const sourceWords = other.pool.wordsOf(source);
  for (let field = ANCHOR_HI; field <= EVENT_LO; field++) words[to + field] = sourceWords[from + field];
  for (let window = 0; window < column.windowCount; window++) {
    words[to + WINDOWS + window] = column.rings.copyFrom(other.rings, sourceWords[from + WINDOWS + window], words[to + WINDOWS + window]);
  }
}

/**
 * For two slots with the same lastSeq: whether `other`'s content wins. Equal versions almost
 * always hold equal contents, checked cheaply first; a difference is a conflict (counted).
 */
function isTheirsGreater(column: ScoreColumn, slot: number, other: ScoreColumn, otherSlot: number): boolean {
  if (slotEquals(column, slot, other, otherSlot)) return false;
  const order = compareContributions(other.values(otherSlot), column.values(slot));
  if (order !== 0) column.conflicts++;
  return order > 0;
}

/** Whether the entity's chain here holds the same contributions as `otherEntity`'s in `other` (−1: none). */
export function cellEquals(column: ScoreColumn, entity: number, other: ScoreColumn, otherEntity: number): boolean {
  let mine = column.headOf(entity);
  let theirs = otherEntity < 0 ? -1 : other.headOf(otherEntity);
  while (mine >= 0 && theirs >= 0) {
    if (!slotEquals(column, mine, other, theirs)) return false;
    mine = column.pool.word(mine, NEXT) - 1;
    theirs = other.pool.word(theirs, NEXT) - 1;
  }
  return mine < 0 && theirs < 0;
}

/** Whether two slots (of this and `other`, same signal) hold the same contribution. */
export function slotEquals(column: ScoreColumn, slot: number, other: ScoreColumn, otherSlot: number): boolean {
  const pool = column.pool;
  const theirPool = other.pool;
  const at = pool.offsetOf(slot);
  const theirAt = theirPool.offsetOf(otherSlot);
  const words = pool.wordsOf(slot);
  const theirWords = theirPool.wordsOf(otherSlot);
  const floats = pool.floatsOf(slot);
  const theirFloats = theirPool.floatsOf(otherSlot);
  if (words[at + ORIGIN] !== theirWords[theirAt + ORIGIN]) return false;
  for (let field = EVENT_COUNT_LO; field <= EVENT_LO; field++) if (words[at + field] !== theirWords[theirAt + field]) return false;
  const score = floats[at / 2 + SCORE_F64];
  const theirScore = theirFloats[theirAt / 2 + SCORE_F64];
  // The record order tells −0 from +0, so equality must too (1/−0 = −∞).
  if (score !== theirScore || (score === 0 && 1 / score !== 1 / theirScore)) return false;
  if (
    floats[at / 2 + LAST_SEQ_F64] !== theirFloats[theirAt / 2 + LAST_SEQ_F64] ||
    floats[at / 2 + POSITIVE_LO_F64] !== theirFloats[theirAt / 2 + POSITIVE_LO_F64] ||
    pool.positiveHiOf(slot) !== theirPool.positiveHiOf(otherSlot) ||
    pool.negativeLoOf(slot) !== theirPool.negativeLoOf(otherSlot) ||
    pool.negativeHiOf(slot) !== theirPool.negativeHiOf(otherSlot) ||
    pool.eventCountOf(slot) !== theirPool.eventCountOf(otherSlot)
  ) {
    return false;
  }
  for (let window = 0; window < column.windowCount; window++) {
    const newest = column.newestOf(slot, window);
    if (!column.rings.equalWindows(words[at + WINDOWS + window], other.rings, theirWords[theirAt + WINDOWS + window], newest)) return false;
  }
  return true;
}

/**
 * The content digest of the entity's cell (reconciliation): key halves, signal id, then per
 * contribution its fields as float64 words, each window's newest bucket, and the non-zero
 * ring counts with their ring index. Returns false when the entity has no cell here.
 */
export function cellDigest(column: ScoreColumn, entity: number, keyHi: number, keyLo: number, hash: WordHash): boolean {
  const head = column.headOf(entity);
  if (head < 0) return false;
  hash.reset();
  hash.word(keyHi);
  hash.word(keyLo);
  hash.word(column.signal.id);
  const pool = column.pool;
  for (let slot = head; slot >= 0; slot = pool.word(slot, NEXT) - 1) {
    const values = column.values(slot);
    hash.word(values.origin);
    hash.float64(values.lastSeq);
    hash.float64(values.eventCount);
    hash.float64(values.weightPositiveHi);
    hash.float64(values.weightPositiveLo);
    hash.float64(values.weightNegativeHi);
    hash.float64(values.weightNegativeLo);
    hash.float64(values.score);
    hash.float64(values.anchorHi);
    hash.float64(values.anchorLo);
    hash.float64(values.wallHi);
    hash.float64(values.wallLo);
    hash.float64(values.logical);
    hash.float64(values.nodeId);
    hash.float64(values.eventHi);
    hash.float64(values.eventLo);
    for (let window = 0; window < column.windowCount; window++) hash.float64(column.newestOf(slot, window));
    for (let window = 0; window < column.windowCount; window++) {
      column.rings.hashWindow(pool.word(slot, WINDOWS + window), column.newestOf(slot, window), window, hash);
    }
  }
  hash.finish();
  return true;
}
