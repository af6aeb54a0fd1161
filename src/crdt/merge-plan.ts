// A merge plan: what one replica must join to reach the union with a peer, as reconciliation
// (reconcile.ts) found it. Plans are values: they encode to bytes, travel, and apply later.
// Invariant: a plan only carries the peer's state (entity records, origin rows), never a delta
// computed against floats, so applying it is a join: idempotent and order-free. A large plan
// splits into pieces (splitPlan) whose encodings stay within a byte bound; entity records go
// first and origin rows last, because raising a watermark is only sound once the entities it
// covers are in. Applying the pieces in order equals applying the whole plan.
//
// MergePlan (msgpack array, encodePlan):
//   index  field     type                 meaning
//   -----  --------  -------------------  ---------------------------------------------------
//       0  version   uint                 2
//       1  schema    str                  SignalSchema.fingerprint
//       2  basis     array<[origin, seq]> local appliedSeq per origin when planned
//       3  origins   array<[localSeq, OriginRow]>  remote origin rows that differ
//       4  entities  array<[how, Entity]>  how: 0 missing-local, 1 remote-newer, 2 concurrent,
//                                          3 conflict
//       5  stats     array<uint>          [messages, bytesExchanged, differingNodes, sent,
//                                          received, conflicts]

import { TidelogError } from '../errors.ts';
import { entityIdOf } from './entity-key.ts';
import { compareContributions, type ContributionValues } from './contribution-values.ts';
import type { CrdtSignalState } from './signal-state.ts';
import {
  decodedToRecord,
  decodeEntityRecord,
  decodeOriginRows,
  expectArray,
  expectInteger,
  expectU32,
  originToRow,
  statePackr,
  unpackOrFail,
  type DecodedEntity,
  type EntityRecord,
  type OriginRow,
} from './snapshot-codec.ts';

export const RECONCILE_VERSION = 2;

/**
 * How the remote entity differs from the local one:
 * - missing-local: local has nothing for it;
 * - remote-newer: remote holds everything local does, and more;
 * - concurrent: each side holds something the other lacks;
 * - conflict: some (signal, origin) contribution has the same lastSeq on both sides but other
 *   contents (one (origin, seq) named two events); the greater content wins on both sides.
 */
export type EntityDifference = 'missing-local' | 'remote-newer' | 'concurrent' | 'conflict';
const DIFFERENCE_CODES: readonly EntityDifference[] = ['missing-local', 'remote-newer', 'concurrent', 'conflict'];

export interface PlanEntity {
  entityId: bigint;
  how: EntityDifference;
  /** The remote entity's state (snapshot-codec Entity record). */
  record: EntityRecord;
}

export interface PlanOrigin {
  origin: number;
  localSeq: number;
  remoteSeq: number;
  /** The remote origin row (appliedSeq, reorder buffer, lastHlc). */
  row: OriginRow;
}

export interface ReconcileStats {
  messages: number;
  bytesExchanged: number;
  differingNodes: number;
  entitiesSent: number;
  entitiesReceived: number;
  /** Received entities with an equal-lastSeq, different-content contribution (either side wins). */
  conflicts: number;
}

export interface MergePlan {
  version: 2;
  schema: string;
  basis: [origin: number, appliedSeq: number][];
  origins: PlanOrigin[];
  entities: PlanEntity[];
  stats: ReconcileStats;
}

export interface Dominance {
  /** Remote holds something local lacks (a newer contribution or flag, or a winning conflict). */
  isRemoteAhead: boolean;
  isLocalAhead: boolean;
  /** Contributions with the same lastSeq and different contents. */
  conflicts: number;
}

/** How two records of one entity relate, under the same orders the joins use. */
export function dominance(local: DecodedEntity, remote: DecodedEntity): Dominance {
  const result: Dominance = { isRemoteAhead: false, isLocalAhead: false, conflicts: 0 };
  const contributions = (entity: DecodedEntity): Map<string, ContributionValues> => {
    const found = new Map<string, ContributionValues>();
    for (const cell of entity.cells) {
      for (const contribution of cell.contributions) found.set(`${cell.signalId}/${contribution.origin}`, contribution);
    }
    return found;
  };
  const localContributions = contributions(local);
  const remoteContributions = contributions(remote);
  for (const [key, theirs] of remoteContributions) {
    const mine = localContributions.get(key);
    if (mine === undefined) {
      result.isRemoteAhead = true;
      continue;
    }
    const order = compareContributions(theirs, mine);
    if (order !== 0 && theirs.lastSeq === mine.lastSeq) result.conflicts++;
    if (order > 0) result.isRemoteAhead = true;
    else if (order < 0) result.isLocalAhead = true;
  }
  for (const key of localContributions.keys()) if (!remoteContributions.has(key)) result.isLocalAhead = true;
  const localFlags = new Map(local.flags.map((flag) => [flag.index, flag]));
  const remoteFlags = new Map(remote.flags.map((flag) => [flag.index, flag]));
  for (const index of new Set([...localFlags.keys(), ...remoteFlags.keys()])) {
    const mine = localFlags.get(index);
    const theirs = remoteFlags.get(index);
    if (theirs === undefined) result.isLocalAhead = true;
    else if (mine === undefined) result.isRemoteAhead = true;
    else {
      // Same order as LWWRegister: the greater stamp, and on an identical stamp hide (true) wins.
      const order = theirs.stamp.compare(mine.stamp) || Number(theirs.value) - Number(mine.value);
      if (order > 0) result.isRemoteAhead = true;
      else if (order < 0) result.isLocalAhead = true;
    }
  }
  return result;
}

/** Plans travel over the transport: msgpack, layout in the header. */
export function encodePlan(plan: MergePlan): Uint8Array {
  return statePackr.pack([
    plan.version,
    plan.schema,
    plan.basis,
    plan.origins.map((entry) => [entry.localSeq, entry.row]),
    plan.entities.map((entry) => [DIFFERENCE_CODES.indexOf(entry.how), entry.record]),
    [
      plan.stats.messages,
      plan.stats.bytesExchanged,
      plan.stats.differingNodes,
      plan.stats.entitiesSent,
      plan.stats.entitiesReceived,
      plan.stats.conflicts,
    ],
  ]);
}

/** Decodes and fully validates a plan against the schema it must apply to. */
export function decodePlan(bytes: Uint8Array, state: CrdtSignalState): MergePlan {
  const top = expectArray(unpackOrFail(bytes, 'merge plan'), '$', 6);
  if (top[0] !== RECONCILE_VERSION) throw new TidelogError('DECODE_FAILED', `unsupported plan version ${String(top[0])}`);
  if (typeof top[1] !== 'string') throw new TidelogError('DECODE_FAILED', '$[1]: schema is a string');
  const basis = expectArray(top[2], '$[2]').map((raw, at): [number, number] => {
    const pair = expectArray(raw, `$[2][${at}]`, 2);
    return [expectU32(pair[0], `$[2][${at}][0]`), expectInteger(pair[1], `$[2][${at}][1]`, 0)];
  });
  const originEntries = expectArray(top[3], '$[3]').map((raw, at) => expectArray(raw, `$[3][${at}]`, 2));
  const rows = decodeOriginRows(
    originEntries.map((entry) => entry[1]),
    '$[3][*][1]',
    state.schema,
  );
  const origins = rows.map((log, at): PlanOrigin => {
    const localSeq = originEntries[at][0];
    if (!Number.isSafeInteger(localSeq) || (localSeq as number) < 0) {
      throw new TidelogError('DECODE_FAILED', `$[3][${at}][0]: bad localSeq`);
    }
    return { origin: log.origin, localSeq: localSeq as number, remoteSeq: log.appliedSeq, row: originToRow(log) };
  });
  const entities = expectArray(top[4], '$[4]').map((raw, at): PlanEntity => {
    const entry = expectArray(raw, `$[4][${at}]`, 2);
    const how = DIFFERENCE_CODES[entry[0] as number];
    if (how === undefined) throw new TidelogError('DECODE_FAILED', `$[4][${at}][0]: unknown difference kind`);
    const entity = decodeEntityRecord(entry[1], state.schema, `$[4][${at}][1]`);
    return { entityId: entityIdOf(entity.key), how, record: decodedToRecord(entity) };
  });
  const stats = expectArray(top[5], '$[5]', 6).map((value, at) => {
    if (!Number.isSafeInteger(value) || (value as number) < 0) throw new TidelogError('DECODE_FAILED', `$[5][${at}]: bad stat`);
    return value as number;
  });
  return {
    version: RECONCILE_VERSION,
    schema: top[1],
    basis,
    origins,
    entities,
    stats: {
      messages: stats[0],
      bytesExchanged: stats[1],
      differingNodes: stats[2],
      entitiesSent: stats[3],
      entitiesReceived: stats[4],
      conflicts: stats[5],
    },
  };
}

/** The smallest maxPlanBytes splitPlan accepts (room for the envelope and a few records). */
export const MIN_PLAN_BYTES = 4096;
/** A msgpack array header and a `how` code: the most an entry adds around its record. */
const ENTRY_OVERHEAD_BYTES = 6;

/**
 * Splits a plan into pieces whose encodings are each at most `maxPlanBytes`: the entities in
 * order, then the origin rows (a row whose reorder buffer does not fit is split across pieces,
 * each part carrying the row's appliedSeq and lastHlc), so every watermark is raised only after
 * all the entities. Applying the pieces in order equals applying the plan. BAD_REQUEST when a
 * single entity or buffered event does not fit.
 */
export function splitPlan(plan: MergePlan, maxPlanBytes: number): MergePlan[] {
  if (!Number.isSafeInteger(maxPlanBytes) || maxPlanBytes < MIN_PLAN_BYTES) {
    throw new TidelogError('BAD_REQUEST', `maxPlanBytes must be an integer ≥ ${MIN_PLAN_BYTES}, got ${maxPlanBytes}`);
  }
  const envelopeBytes = encodePlan({ ...plan, origins: [], entities: [] }).byteLength + 2 * 5;
  const budget = maxPlanBytes - envelopeBytes;
  if (budget < MIN_PLAN_BYTES / 2) {
    throw new TidelogError('BAD_REQUEST', `the plan's basis and stats alone need ${envelopeBytes} of ${maxPlanBytes} bytes`);
  }
  const pieces: MergePlan[] = [];
  let entities: PlanEntity[] = [];
  let origins: PlanOrigin[] = [];
  let used = 0;
  const flush = (): void => {
    pieces.push({ ...plan, origins, entities });
    entities = [];
    origins = [];
    used = 0;
  };
  for (const entry of plan.entities) {
    const entryBytes = statePackr.pack(entry.record).byteLength + ENTRY_OVERHEAD_BYTES;
    if (entryBytes > budget) {
      throw new TidelogError('BAD_REQUEST', `entity ${entry.entityId} needs ${entryBytes} bytes, more than a plan piece holds`, {
        details: { entityId: entry.entityId, entryBytes, maxPlanBytes },
      });
    }
    if (used + entryBytes > budget) flush();
    entities.push(entry);
    used += entryBytes;
  }
  for (const entry of plan.origins) {
    for (const row of splitOriginRow(entry.row, budget)) {
      const rowBytes = statePackr.pack([entry.localSeq, row]).byteLength;
      // One row per origin and piece: decodeOriginRows wants origins strictly ascending.
      const isRepeat = origins.length > 0 && origins[origins.length - 1].origin === entry.origin;
      if (used + rowBytes > budget || isRepeat) flush();
      origins.push({ ...entry, row });
      used += rowBytes;
    }
  }
  if (entities.length > 0 || origins.length > 0 || pieces.length === 0) flush();
  return pieces;
}

/** The row, or parts of it (each with the row's appliedSeq and lastHlc) that fit `budget` bytes. */
export function splitOriginRow(row: OriginRow, budget: number): OriginRow[] {
  const [origin, appliedSeq, pending, lastHlc] = row;
  if (statePackr.pack(row).byteLength <= budget) return [row];
  const parts: OriginRow[] = [];
  const headBytes = statePackr.pack([origin, appliedSeq, [], lastHlc]).byteLength + 5;
  // The largest entry bounds them all (a loop: a buffer may hold more entries than a spread takes).
  let perEvent = 1;
  for (const entry of pending) perEvent = Math.max(perEvent, statePackr.pack(entry).byteLength);
  const perPart = Math.floor((budget - headBytes) / perEvent);
  if (perPart < 1) throw new TidelogError('BAD_REQUEST', `origin ${origin}: a buffered event does not fit ${budget} bytes`);
  for (let at = 0; at < pending.length; at += perPart) parts.push([origin, appliedSeq, pending.slice(at, at + perPart), lastHlc]);
  return parts;
}
