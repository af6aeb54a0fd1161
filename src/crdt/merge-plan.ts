// A merge plan: what one replica must join to reach the union with a peer, as reconciliation
// (reconcile.ts) found it. Plans are values: they encode to bytes, travel, and apply later.
// Invariant: a plan only carries the peer's state (entity records, origin rows), never a delta
// computed against floats, so applying it is a join: idempotent and order-free.
//
// MergePlan (msgpack array, encodePlan):
//   index  field     type                 meaning
//   -----  --------  -------------------  ---------------------------------------------------
//       0  version   uint                 1
//       1  schema    str                  SignalSchema.fingerprint
//       2  basis     array<[origin, seq]> local appliedSeq per origin when planned
//       3  origins   array<[localSeq, OriginRow]>  remote origin rows that differ
//       4  entities  array<[how, Entity]>  how: 0 missing-local, 1 remote-newer, 2 concurrent
//       5  stats     array<uint>          [messages, bytesExchanged, differingNodes, sent, received]

import { TidelogError } from '../errors.ts';
import { entityIdOf } from './entity-key.ts';
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

export const RECONCILE_VERSION = 1;

export type EntityDifference = 'missing-local' | 'remote-newer' | 'concurrent';
const DIFFERENCE_CODES: readonly EntityDifference[] = ['missing-local', 'remote-newer', 'concurrent'];

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
  /** The remote origin row (appliedSeq and reorder buffer). */
  row: OriginRow;
}

export interface ReconcileStats {
  messages: number;
  bytesExchanged: number;
  differingNodes: number;
  entitiesSent: number;
  entitiesReceived: number;
}

export interface MergePlan {
  version: 1;
  schema: string;
  basis: [origin: number, appliedSeq: number][];
  origins: PlanOrigin[];
  entities: PlanEntity[];
  stats: ReconcileStats;
}

/** Which side holds more of the entity: 'local', 'remote', or 'both' (each has something new). */
export function dominance(local: DecodedEntity, remote: DecodedEntity): 'local' | 'remote' | 'both' {
  let isRemoteAhead = false;
  let isLocalAhead = false;
  const seqs = (entity: DecodedEntity): Map<string, number> => {
    const found = new Map<string, number>();
    for (const cell of entity.cells) {
      for (const contribution of cell.contributions) found.set(`${cell.signalId}/${contribution.origin}`, contribution.lastSeq);
    }
    return found;
  };
  const localSeqs = seqs(local);
  const remoteSeqs = seqs(remote);
  for (const [key, seq] of remoteSeqs) {
    const mine = localSeqs.get(key) ?? 0;
    if (seq > mine) isRemoteAhead = true;
    else if (seq < mine) isLocalAhead = true;
  }
  for (const key of localSeqs.keys()) if (!remoteSeqs.has(key)) isLocalAhead = true;
  const localFlags = new Map(local.flags.map((flag) => [flag.index, flag]));
  const remoteFlags = new Map(remote.flags.map((flag) => [flag.index, flag]));
  for (const index of new Set([...localFlags.keys(), ...remoteFlags.keys()])) {
    const mine = localFlags.get(index);
    const theirs = remoteFlags.get(index);
    if (theirs === undefined) isLocalAhead = true;
    else if (mine === undefined) isRemoteAhead = true;
    else {
      // Same order as LWWRegister: the greater stamp, and on an identical stamp hide (true) wins.
      const order = theirs.stamp.compare(mine.stamp) || Number(theirs.value) - Number(mine.value);
      if (order > 0) isRemoteAhead = true;
      else if (order < 0) isLocalAhead = true;
    }
  }
  if (isRemoteAhead && isLocalAhead) return 'both';
  return isRemoteAhead ? 'remote' : 'local';
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
  const stats = expectArray(top[5], '$[5]', 5).map((value, at) => {
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
    },
  };
}
