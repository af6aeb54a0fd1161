// Canonical msgpack encoding of CRDT signal state: whole-state snapshots (they ride in WAL
// checkpoint records) and the per-entity / per-origin records reconciliation exchanges.
// Invariant: the encoding is a function of the state's meaning: maps are written as arrays
// sorted by key (origins, entities, signals, contributions, flags, pending seqs), empty origin
// logs are omitted, floats are written as float64 (msgpackr writes integral values as ints,
// which decode to the same number), so equal states give identical bytes. Decoding accepts only
// that canonical form and re-checks every range; anything else is DECODE_FAILED.
//
// Snapshot (a msgpack array):
//   index  field         msgpack type      meaning
//   -----  ------------  ----------------  ------------------------------------------------
//       0  magic         str               "tidelog/crdt-state"
//       1  version       uint              1
//       2  schema        str               SignalSchema.fingerprint (32 hex digits)
//       3  origins       array<OriginRow>  ascending origin
//       4  entities      array<Entity>     ascending entity id
//
//   OriginRow     [origin u32, appliedSeq uint, pending array<[seq uint, event bin(21), hlc bin(16)]>]
//   Entity        [entityId uint (uint64 when ≥ 2^53), cells array<Cell>, flags array<Flag>]
//   Cell          [signalType u8, contributions array<Contribution>]       ascending signalType
//   Contribution  [origin u32, lastSeq uint, eventCount uint,                 ascending origin
//                  weightPositive [hi, lo], weightNegative [hi, lo],        micros = hi·2^48 + lo
//                  score float64, anchorNs uint64, lastHlc bin(16), lastEventNs uint64,
//                  windows array<array<uint>>]                              flat [bucket, count, …]
//   Flag          [flagIndex uint, value bool, hlc bin(16)]                 ascending flagIndex

import { Packr } from 'msgpackr';
import { TidelogError } from '../errors.ts';
import { Contribution } from './contribution.ts';
import {
  compareEntityKeys,
  EntityState,
  entityKeyOf,
  entityIdOf,
  SignalCell,
  type EntityKey,
} from './entity-state.ts';
import { HLC_TIMESTAMP_BYTES, HlcTimestamp, U32_MAX, U64_MAX } from './hlc-timestamp.ts';
import { trueWinsTies, LWWRegister } from './lww-register.ts';
import { OriginLog, type PendingEvent } from './origin-log.ts';
import { EVENT_BYTES } from './packed-events.ts';
import { joinNs, splitNs } from './packed-time.ts';
import type { SignalSchema } from './signal-schema.ts';
import { LIMB } from './weight-micros.ts';

export const SNAPSHOT_MAGIC = 'tidelog/crdt-state';
export const SNAPSHOT_VERSION = 1;

export type OriginRow = [origin: number, appliedSeq: number, pending: [number, Uint8Array, Uint8Array][]];
export type ContributionRecord = [
  origin: number,
  lastSeq: number,
  eventCount: number,
  weightPositive: [number, number],
  weightNegative: [number, number],
  score: number,
  anchorNs: bigint,
  lastHlc: Uint8Array,
  lastEventNs: bigint,
  windows: number[][],
];
export type CellRecord = [signalType: number, contributions: ContributionRecord[]];
export type FlagRecord = [flagIndex: number, value: boolean, hlc: Uint8Array];
export type EntityRecord = [entityId: number | bigint, cells: CellRecord[], flags: FlagRecord[]];

/** One shared Packr: plain arrays only, no record structures, bigint as (u)int64. */
export const statePackr = new Packr({ useRecords: false, moreTypes: false });

export function encodeSnapshotBytes(
  fingerprint: string,
  logs: Iterable<OriginLog>,
  entities: Iterable<EntityState>,
): Uint8Array {
  const originRows = [...logs]
    .filter((log) => !log.isEmpty)
    .sort((a, b) => a.origin - b.origin)
    .map(originToRow);
  const entityRecords = [...entities].sort((a, b) => compareEntityKeys(a.key, b.key)).map(entityToRecord);
  return statePackr.pack([SNAPSHOT_MAGIC, SNAPSHOT_VERSION, fingerprint, originRows, entityRecords]);
}

export function decodeSnapshotBytes(
  bytes: Uint8Array,
  schema: SignalSchema,
): { logs: OriginLog[]; entities: EntityState[] } {
  const root = unpackOrFail(bytes, 'snapshot');
  const top = expectArray(root, '$', 5);
  if (top[0] !== SNAPSHOT_MAGIC) fail('$[0]', 'not a tidelog CRDT snapshot');
  if (top[1] !== SNAPSHOT_VERSION) fail('$[1]', `unsupported snapshot version ${String(top[1])}`);
  if (top[2] !== schema.fingerprint) {
    throw new TidelogError('SCHEMA_INVALID', 'the snapshot was written under a different signal schema', {
      details: { expected: schema.fingerprint, found: top[2] },
    });
  }
  const logs = decodeOriginRows(top[3], '$[3]');
  const rawEntities = expectArray(top[4], '$[4]');
  const entities: EntityState[] = [];
  let previous: EntityKey | undefined;
  rawEntities.forEach((raw, index) => {
    const entity = entityFromRecord(raw, schema, `$[4][${index}]`);
    if (previous !== undefined && compareEntityKeys(previous, entity.key) >= 0) {
      fail(`$[4][${index}]`, 'entities must be strictly ascending');
    }
    previous = entity.key;
    entities.push(entity);
  });
  return { logs, entities };
}

export function unpackOrFail(bytes: Uint8Array, what: string): unknown {
  if (!(bytes instanceof Uint8Array) || bytes.byteLength === 0) fail('$', `${what} bytes are empty`);
  try {
    return statePackr.unpack(bytes);
  } catch (cause) {
    throw new TidelogError('DECODE_FAILED', `${what} is not valid msgpack`, { cause });
  }
}

export function originToRow(log: OriginLog): OriginRow {
  return [
    log.origin,
    log.appliedSeq,
    log.pendingSeqs().map((seq) => {
      const event = log.pending.get(seq) as PendingEvent;
      return [seq, event.bytes, new HlcTimestamp(event.wallNs, event.logical, event.nodeId).toBytes()];
    }),
  ];
}

export function decodeOriginRows(raw: unknown, path: string): OriginLog[] {
  const rows = expectArray(raw, path);
  const logs: OriginLog[] = [];
  rows.forEach((rawRow, index) => {
    const rowPath = `${path}[${index}]`;
    const row = expectArray(rawRow, rowPath, 3);
    const log = new OriginLog(expectU32(row[0], `${rowPath}[0]`));
    if (logs.length > 0 && logs[logs.length - 1].origin >= log.origin) fail(rowPath, 'origins must be strictly ascending');
    log.appliedSeq = expectSeq(row[1], `${rowPath}[1]`, 0);
    let previousSeq = log.appliedSeq + 1;
    expectArray(row[2], `${rowPath}[2]`).forEach((rawPending, at) => {
      const pendingPath = `${rowPath}[2][${at}]`;
      const pending = expectArray(rawPending, pendingPath, 3);
      const seq = expectSeq(pending[0], `${pendingPath}[0]`, 1);
      if (seq <= previousSeq) fail(pendingPath, 'pending seqs must ascend, beyond appliedSeq + 1');
      previousSeq = seq;
      const eventBytes = expectBytes(pending[1], `${pendingPath}[1]`, EVENT_BYTES);
      const hlc = decodeHlc(pending[2], `${pendingPath}[2]`);
      log.pending.set(seq, { bytes: eventBytes, wallNs: hlc.wallNs, logical: hlc.logical, nodeId: hlc.nodeId });
    });
    if (log.isEmpty) fail(rowPath, 'an empty origin row is not canonical');
    logs.push(log);
  });
  return logs;
}

export function entityToRecord(entity: EntityState): EntityRecord {
  const cells: CellRecord[] = entity.cells.map((cell) => [
    cell.signal.id,
    cell.contributions.map(
      (contribution): ContributionRecord => [
        contribution.origin,
        contribution.lastSeq,
        contribution.eventCount,
        [contribution.weightPositiveHi, contribution.weightPositiveLo],
        [contribution.weightNegativeHi, contribution.weightNegativeLo],
        contribution.score,
        joinNs(contribution.anchorHi, contribution.anchorLo),
        new HlcTimestamp(contribution.lastWallNs, contribution.lastLogical, contribution.lastNodeId).toBytes(),
        joinNs(contribution.lastEventHi, contribution.lastEventLo),
        contribution.windows,
      ],
    ),
  ]);
  const flags: FlagRecord[] = [];
  entity.flags?.forEach((register, flagIndex) => {
    const stamp = register?.timestamp;
    if (register !== undefined && stamp !== undefined) flags.push([flagIndex, register.get() === true, stamp.toBytes()]);
  });
  const key = entity.key;
  return [typeof key === 'number' ? key : entityIdOf(key), cells, flags];
}

export function entityFromRecord(raw: unknown, schema: SignalSchema, path: string): EntityState {
  const record = expectArray(raw, path, 3);
  const entity = EntityState.create(entityKeyOf(expectU64(record[0], `${path}[0]`)));
  const cells = expectArray(record[1], `${path}[1]`);
  cells.forEach((rawCell, index) => {
    const cellPath = `${path}[1][${index}]`;
    const cellRecord = expectArray(rawCell, cellPath, 2);
    const signalId = expectU32(cellRecord[0], `${cellPath}[0]`);
    const signal = signalId <= 255 ? schema.byId[signalId] : undefined;
    if (signal === undefined || signal.kind !== 'score') fail(`${cellPath}[0]`, `signal ${signalId} is not a score signal`);
    if (entity.cells.length > 0 && entity.cells[entity.cells.length - 1].signal.id >= signalId) {
      fail(cellPath, 'cells must be strictly ascending by signal');
    }
    const cell = new SignalCell(signal);
    const contributions = expectArray(cellRecord[1], `${cellPath}[1]`);
    if (contributions.length === 0) fail(`${cellPath}[1]`, 'a cell needs at least one contribution');
    contributions.forEach((rawContribution, at) => {
      const contribution = contributionFromRecord(rawContribution, signal.windows, `${cellPath}[1][${at}]`);
      const previous = cell.contributions[cell.contributions.length - 1];
      if (previous !== undefined && previous.origin >= contribution.origin) {
        fail(`${cellPath}[1][${at}]`, 'contributions must be strictly ascending by origin');
      }
      cell.contributions.push(contribution);
    });
    entity.cells.push(cell);
  });
  const flags = expectArray(record[2], `${path}[2]`);
  let previousFlag = -1;
  flags.forEach((rawFlag, index) => {
    const flagPath = `${path}[2][${index}]`;
    const flag = expectArray(rawFlag, flagPath, 3);
    const flagIndex = expectU32(flag[0], `${flagPath}[0]`);
    if (flagIndex >= schema.flags.length || flagIndex <= previousFlag) {
      fail(`${flagPath}[0]`, 'flag indexes must ascend and exist in the schema');
    }
    previousFlag = flagIndex;
    if (typeof flag[1] !== 'boolean') fail(`${flagPath}[1]`, 'a flag value is a boolean');
    const register = new LWWRegister<boolean>({ tieBreak: trueWinsTies });
    register.set(flag[1], decodeHlc(flag[2], `${flagPath}[2]`));
    if (entity.flags === undefined) {
      entity.flags = new Array<LWWRegister<boolean> | undefined>(schema.flags.length).fill(undefined);
    }
    entity.flags[flagIndex] = register;
  });
  if (entity.cells.length === 0 && entity.flags === undefined) fail(path, 'an entity record holds no state');
  return entity;
}

function contributionFromRecord(
  raw: unknown,
  windows: readonly { bucketCount: number }[],
  path: string,
): Contribution {
  const record = expectArray(raw, path, 10);
  const contribution = new Contribution(expectU32(record[0], `${path}[0]`), 0);
  contribution.lastSeq = expectSeq(record[1], `${path}[1]`, 1);
  contribution.eventCount = expectSeq(record[2], `${path}[2]`, 1);
  [contribution.weightPositiveHi, contribution.weightPositiveLo] = expectWide(record[3], `${path}[3]`);
  [contribution.weightNegativeHi, contribution.weightNegativeLo] = expectWide(record[4], `${path}[4]`);
  const score = record[5];
  if (typeof score !== 'number' || !Number.isFinite(score)) fail(`${path}[5]`, 'score must be a finite number');
  contribution.score = score;
  [contribution.anchorHi, contribution.anchorLo] = splitNs(expectU64(record[6], `${path}[6]`));
  const lastHlc = decodeHlc(record[7], `${path}[7]`);
  contribution.lastWallNs = lastHlc.wallNs;
  contribution.lastLogical = lastHlc.logical;
  contribution.lastNodeId = lastHlc.nodeId;
  [contribution.lastEventHi, contribution.lastEventLo] = splitNs(expectU64(record[8], `${path}[8]`));
  const rings = expectArray(record[9], `${path}[9]`, windows.length);
  contribution.windows = rings.map((rawRing, index) => {
    const ringPath = `${path}[9][${index}]`;
    const ring = expectArray(rawRing, ringPath);
    if (ring.length % 2 !== 0 || ring.length > 2 * windows[index].bucketCount) fail(ringPath, 'bad ring length');
    const copy: number[] = [];
    for (let at = 0; at < ring.length; at += 2) {
      const bucket = ring[at];
      const count = ring[at + 1];
      if (!Number.isSafeInteger(bucket) || (bucket as number) < 0) fail(ringPath, 'a bucket is a non-negative integer');
      if (!Number.isSafeInteger(count) || (count as number) < 1) fail(ringPath, 'a bucket count is a positive integer');
      if (at > 0 && (bucket as number) <= copy[at - 2]) fail(ringPath, 'buckets must be strictly ascending');
      copy.push(bucket as number, count as number);
    }
    return copy;
  });
  return contribution;
}

function decodeHlc(raw: unknown, path: string): HlcTimestamp {
  return HlcTimestamp.fromBytes(expectBytes(raw, path, HLC_TIMESTAMP_BYTES));
}

export function expectArray(value: unknown, path: string, length?: number): unknown[] {
  if (!Array.isArray(value)) fail(path, 'expected an array');
  if (length !== undefined && value.length !== length) fail(path, `expected ${length} elements, got ${value.length}`);
  return value;
}

export function expectU32(value: unknown, path: string): number {
  if (!Number.isInteger(value) || (value as number) < 0 || (value as number) > U32_MAX) fail(path, 'expected a u32');
  return value as number;
}

function expectSeq(value: unknown, path: string, minimum: number): number {
  if (!Number.isSafeInteger(value) || (value as number) < minimum) fail(path, `expected an integer ≥ ${minimum}`);
  return value as number;
}

export function expectU64(value: unknown, path: string): bigint {
  if (typeof value === 'bigint' && value >= 0n && value <= U64_MAX) return value;
  if (Number.isSafeInteger(value) && (value as number) >= 0) return BigInt(value as number);
  return fail(path, 'expected a u64');
}

function expectWide(value: unknown, path: string): [number, number] {
  const pair = expectArray(value, path, 2);
  const [hi, lo] = pair;
  if (!Number.isSafeInteger(hi) || (hi as number) < 0 || !Number.isSafeInteger(lo) || (lo as number) < 0 || (lo as number) >= LIMB) {
    fail(path, 'expected [hi, lo] limbs with 0 ≤ lo < 2^48');
  }
  return [hi as number, lo as number];
}

export function expectBytes(value: unknown, path: string, length: number): Uint8Array {
  if (!(value instanceof Uint8Array) || value.byteLength !== length) fail(path, `expected ${length} bytes`);
  // A private copy: msgpackr may hand out views into the input buffer.
  return new Uint8Array(value);
}

function fail(path: string, message: string): never {
  throw new TidelogError('DECODE_FAILED', `${path}: ${message}`, { details: { path } });
}
