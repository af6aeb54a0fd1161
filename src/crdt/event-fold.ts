// The fold loop: packed events into score columns and flags. It is the data plane's hot path
// (≥ 2 M events/s): one entity-index probe per event (read straight from the event's u32 id
// halves, no key object, no bigint), no object per event, and the contribution's record
// written in one place. Growth inside a fold is bounded per event (pages.ts, entity-index.ts).
// Invariant: a batch is validated whole before any of it folds (validatePacked), so a bad
// event never leaves a batch half applied.

import { TidelogError } from '../errors.ts';
import { LAST_SEQ_F64, ORIGIN, type ContributionPool } from './contribution-pool.ts';
import type { WriteBarrier } from './copy-on-write.ts';
import type { EntityIndex } from './entity-index.ts';
import type { FlagTable } from './flag-table.ts';
import { EVENT_BYTES } from '../event.ts';
import { splitNs } from './packed-time.ts';
import type { BatchStamp, ScoreColumn } from './score-column.ts';
import type { SignalSchema, SignalType } from './signal-schema.ts';
import { MAX_ABS_WEIGHT } from './weight-micros.ts';

/** Where events fold to: a state's entity index, columns (by signal id) and flags. */
export interface FoldTarget {
  index: EntityIndex;
  pool: ContributionPool;
  columns: readonly (ScoreColumn | undefined)[];
  flags: FlagTable;
  barrier: WriteBarrier;
  schema: SignalSchema;
}

/** UNKNOWN_SIGNAL_TYPE or BAD_REQUEST (weight not finite or beyond ±MAX_ABS_WEIGHT) for the first bad event. */
export function validatePacked(schema: SignalSchema, bytes: Uint8Array, count: number): void {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const byId = schema.byId;
  for (let index = 0; index < count; index++) {
    const offset = index * EVENT_BYTES;
    const signalType = bytes[offset + 8];
    if (byId[signalType] === undefined) {
      throw new TidelogError('UNKNOWN_SIGNAL_TYPE', `event ${index}: signal type ${signalType} is not in the schema`, {
        details: { index, signalType },
      });
    }
    const weight = view.getFloat32(offset + 9, true);
    // The negated form also rejects NaN.
    if (!(Math.abs(weight) <= MAX_ABS_WEIGHT)) {
      throw new TidelogError('BAD_REQUEST', `event ${index}: weight must be finite and |w| ≤ ${MAX_ABS_WEIGHT}`, {
        details: { index, weight },
      });
    }
  }
}

/** foldPacked's entity numbers for one batch (reused: folds never nest). */
let scratch = new Int32Array(1024);
/** Keeps the warming loads of foldPacked from being optimised away. */
let _warmSink = 0;

function entityScratch(length: number): Int32Array {
  if (scratch.length < length) scratch = new Int32Array(Math.max(length, scratch.length * 2));
  return scratch;
}

/**
 * Folds events from … to − 1 of a validated batch; event i has seq firstSeq + i and HLC
 * (wallNs, firstLogical + i, nodeId). A score event whose seq the contribution already holds is
 * skipped (the state's per-origin watermark normally stops those earlier).
 */
export function foldPacked(
  target: FoldTarget,
  bytes: Uint8Array,
  from: number,
  to: number,
  origin: number,
  firstSeq: number,
  wallNs: bigint,
  firstLogical: number,
  nodeId: number,
): void {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const byId = target.schema.byId;
  const columns = target.columns;
  const index = target.index;
  const barrier = target.barrier;
  // The pool's page lists are extended in place, so these stay current through allocations.
  const pool = target.pool;
  const wordPages = pool.wordPages;
  const floatPages = pool.floatPages;
  const shift = pool.shift;
  const mask = pool.mask;
  const stride = pool.strideWords;
  const [wallHi, wallLo] = splitNs(wallNs);
  const stamp: BatchStamp = { wallHi, wallLo, nodeId };
  // Three passes over the batch so the CPU can overlap the cache misses of different events
  // (their loads do not depend on each other): table slots, then entities (numbered in event
  // order, as one pass would), then each event's head and record; the fold then finds them in
  // cache (npm run bench -- crdt --only=apply, "uniform over 1M entities"; docs/CRDT.md).
  index.warm(view, from, to, EVENT_BYTES);
  const entities = entityScratch(to - from);
  for (let at = from; at < to; at++) {
    const offset = at * EVENT_BYTES;
    entities[at - from] = index.findOrAdd(view.getUint32(offset + 4, true), view.getUint32(offset, true));
  }
  let sink = 0;
  for (let at = from; at < to; at++) {
    const column = columns[bytes[at * EVENT_BYTES + 8]];
    if (column === undefined) continue;
    const head = column.headOf(entities[at - from]);
    if (head >= 0) sink ^= wordPages[head >>> shift][(head & mask) * stride + ORIGIN];
  }
  _warmSink ^= sink;
  for (let at = from; at < to; at++) {
    const offset = at * EVENT_BYTES;
    const signalId = bytes[offset + 8];
    const entity = entities[at - from];
    barrier.markStale(entity);
    const column = columns[signalId];
    if (column === undefined) {
      const signal = byId[signalId] as SignalType;
      if (signal.kind === 'flag') target.flags.set(entity, signal.flagIndex, signal.value, wallHi, wallLo, firstLogical + at, nodeId);
      continue;
    }
    const head = column.headOf(entity);
    const slot = head >= 0 && wordPages[head >>> shift][(head & mask) * stride + ORIGIN] === origin ? head : column.slotFor(entity, origin);
    const seq = firstSeq + at;
    if (seq <= floatPages[slot >>> shift][(((slot & mask) * stride) >>> 1) + LAST_SEQ_F64]) continue;
    column.fold(slot, seq, view, offset, firstLogical + at, stamp);
  }
}
