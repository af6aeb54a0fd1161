// Canonical msgpack encoding of CRDT signal state: whole-state snapshots (they ride in WAL
// checkpoint records) and the per-entity / per-origin records reconciliation exchanges.
// Invariant: the encoding is a function of the state's meaning: maps are written as arrays
// sorted by key (origins, entities, signals, contributions, flags, pending seqs), empty origin
// logs are omitted, floats are written as float64 (msgpackr writes integral values as ints,
// which decode to the same number), so equal states give identical bytes. Decoding accepts only
// that canonical form and re-checks every range, including each buffered event against the
// schema (a known signal type, a finite weight within ±MAX_ABS_WEIGHT); anything else is
// DECODE_FAILED.
//
// Snapshot: a sequence of msgpack values (not one array, so encoding and decoding stream one
// entity at a time instead of materialising the whole state as nested arrays):
//   value   field         msgpack type      meaning
//   ------  ------------  ----------------  ------------------------------------------------
//        0  header        array(5)          [magic str "tidelog/crdt-state", version uint 2,
//                                            schema str (SignalSchema.fingerprint),
//                                            origins array<OriginRow> ascending origin,
//                                            entityCount uint]
//   1 … n   entity        Entity            one per entity, ascending entity id
//
//   OriginRow     [origin u32, appliedSeq uint, pending array<[seq uint, event bin(21), hlc bin(16)]>,
//                  lastHlc bin(16) | nil]                                  greatest HLC folded
//   Entity        [entityId uint (uint64 when ≥ 2^53), cells array<Cell>, flags array<Flag>]
//   Cell          [signalType u8, contributions array<Contribution>]       ascending signalType
//   Contribution  [origin u32, lastSeq uint, eventCount uint,                 ascending origin
//                  weightPositive [hi, lo], weightNegative [hi, lo],        micros = hi·2^48 + lo
//                  score float64, anchorNs uint64, lastHlc bin(16), lastEventNs uint64,
//                  windows array<array<uint>>]                              flat [bucket, count, …]:
//                                                                          ascending, the last the
//                                                                          anchor's bucket, counts
//                                                                          1 … eventCount
//   Flag          [flagIndex uint, value bool, hlc bin(16)]                 ascending flagIndex


import { Packr } from 'msgpackr';
import { TidelogError } from '../errors.ts';
import { compareEntityKeys, entityIdOf, entityKeyOf, type EntityKey } from './entity-key.ts';
import { HLC_TIMESTAMP_BYTES, HlcTimestamp, readU32BigEndian, U32_MAX, U64_MAX, writeHlcParts } from './hlc-timestamp.ts';
import type { FlagTable } from './flag-table.ts';
import { validatePacked } from './event-fold.ts';
import { OriginLog, type PendingEvent } from './origin-log.ts';
import { EVENT_BYTES } from '../event.ts';
import { joinNs, secondsOf, splitNs } from './packed-time.ts';
import type { ContributionValues } from './contribution-values.ts';
import type { ScoreColumn } from './score-column.ts';
import type { ScoreSignal, SignalSchema } from './signal-schema.ts';
import { LIMB } from './weight-micros.ts';

export const SNAPSHOT_MAGIC = 'tidelog/crdt-state';
export const SNAPSHOT_VERSION = 2;

export type PendingRow = [seq: number, event: Uint8Array, hlc: Uint8Array];
export type OriginRow = [origin: number, appliedSeq: number, pending: PendingRow[], lastHlc: Uint8Array | null];
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

/** An entity record after validation, ready to join into a state. */
export interface DecodedEntity {
  key: EntityKey;
  cells: { signalId: number; contributions: ContributionValues[] }[];
  flags: { index: number; value: boolean; stamp: HlcTimestamp }[];
}

/** One shared Packr: plain arrays only, no record structures, bigint as (u)int64. */
export const statePackr = new Packr({ useRecords: false });

export function encodeSnapshotBytes(fingerprint: string, originRows: OriginRow[], entityRecords: Iterable<EntityRecord>, entityCount: number): Uint8Array {
  const writer = new ChunkWriter();
  writer.write(statePackr.pack([SNAPSHOT_MAGIC, SNAPSHOT_VERSION, fingerprint, originRows, entityCount]));
  let written = 0;
  for (const record of entityRecords) {
    writer.write(statePackr.pack(record));
    written++;
  }
  if (written !== entityCount) throw new Error(`invariant violated: ${written} entity records for a count of ${entityCount}`);
  return writer.finish();
}

/**
 * Decodes a snapshot, handing each validated entity to `onEntity` as it is read (so the caller
 * can fold it in without holding the whole decoded tree). Returns the origin logs; OVERLOADED
 * (before any entity is read) when their reorder buffers hold more than `maxPendingEvents`.
 */
export function decodeSnapshotBytes(
  bytes: Uint8Array,
  schema: SignalSchema,
  onEntity: (entity: DecodedEntity) => void,
  maxPendingEvents = Number.MAX_SAFE_INTEGER,
): OriginLog[] {
  if (!(bytes instanceof Uint8Array) || bytes.byteLength === 0) fail('$', 'snapshot bytes are empty');
  let logs: OriginLog[] | undefined;
  let expected = 0;
  let index = -1;
  let previous: EntityKey | undefined;
  try {
    statePackr.unpackMultiple(bytes, (value: unknown) => {
      if (index === -1) {
        const header = expectArray(value, '$[0]', 5);
        if (header[0] !== SNAPSHOT_MAGIC) fail('$[0][0]', 'not a tidelog CRDT snapshot');
        if (header[1] !== SNAPSHOT_VERSION) fail('$[0][1]', `unsupported snapshot version ${String(header[1])}`);
        if (header[2] !== schema.fingerprint) {
          throw new TidelogError('SCHEMA_INVALID', 'the snapshot was written under a different signal schema', {
            details: { expected: schema.fingerprint, found: header[2] },
          });
        }
        logs = decodeOriginRows(header[3], '$[0][3]', schema);
        const pendingEvents = logs.reduce((total, log) => total + log.pending.size, 0);
        if (pendingEvents > maxPendingEvents) {
          throw new TidelogError('OVERLOADED', `the snapshot buffers ${pendingEvents} events, more than maxPendingEvents ${maxPendingEvents}`, {
            details: { pendingEvents, maxPendingEvents },
          });
        }
        expected = expectInteger(header[4], '$[0][4]', 0);
      } else {
        const path = `$[${index + 1}]`;
        if (index >= expected) fail(path, 'more entities than the header announced');
        const entity = decodeEntityRecord(value, schema, path);
        if (previous !== undefined && compareEntityKeys(previous, entity.key) >= 0) {
          fail(path, 'entities must be strictly ascending');
        }
        previous = entity.key;
        onEntity(entity);
      }
      index++;
    });
  } catch (cause) {
    if (cause instanceof TidelogError) throw cause;
    throw new TidelogError('DECODE_FAILED', 'the snapshot is not valid msgpack', { cause });
  }
  if (logs === undefined || index !== expected) fail('$', `expected ${expected} entities, found ${Math.max(0, index)}`);
  return logs;
}

/** Concatenates packed chunks into one buffer (msgpackr's results are views into a reused buffer). */
export class ChunkWriter {
  private buffer = new Uint8Array(1 << 16);
  private length = 0;

  write(chunk: Uint8Array): void {
    if (this.length + chunk.byteLength > this.buffer.byteLength) {
      const grown = new Uint8Array(Math.max(this.buffer.byteLength * 2, this.length + chunk.byteLength));
      grown.set(this.buffer.subarray(0, this.length));
      this.buffer = grown;
    }
    this.buffer.set(chunk, this.length);
    this.length += chunk.byteLength;
  }

  /** Bytes written so far. */
  get byteLength(): number {
    return this.length;
  }

  /** A msgpack array header for `count` elements (the elements follow as separate writes). */
  writeArrayHeader(count: number): void {
    if (count < 16) this.write(Uint8Array.of(0x90 | count));
    else if (count < 0x1_0000) this.write(Uint8Array.of(0xdc, count >>> 8, count & 0xff));
    else this.write(Uint8Array.of(0xdd, count >>> 24, (count >>> 16) & 0xff, (count >>> 8) & 0xff, count & 0xff));
  }

  finish(): Uint8Array {
    return this.buffer.slice(0, this.length);
  }
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
    log.pendingSeqs().map((seq): PendingRow => {
      const event = log.pending.get(seq) as PendingEvent;
      return [seq, event.bytes, new HlcTimestamp(event.wallNs, event.logical, event.nodeId).toBytes()];
    }),
    log.lastHlc === undefined ? null : log.lastHlc.toBytes(),
  ];
}

/**
 * Origin rows, validated: origins strictly ascending, pending seqs ascending beyond
 * appliedSeq + 1, every buffered event valid under `schema` (so nothing that cannot fold ever
 * waits in a reorder buffer), lastHlc only once something was folded.
 */
export function decodeOriginRows(raw: unknown, path: string, schema: SignalSchema): OriginLog[] {
  const logs: OriginLog[] = [];
  expectArray(raw, path).forEach((rawRow, index) => {
    const rowPath = `${path}[${index}]`;
    const row = expectArray(rawRow, rowPath, 4);
    const log = new OriginLog(expectU32(row[0], `${rowPath}[0]`));
    if (logs.length > 0 && logs[logs.length - 1].origin >= log.origin) fail(rowPath, 'origins must be strictly ascending');
    log.appliedSeq = expectInteger(row[1], `${rowPath}[1]`, 0);
    let previousSeq = log.appliedSeq + 1;
    expectArray(row[2], `${rowPath}[2]`).forEach((rawPending, at) => {
      const pendingPath = `${rowPath}[2][${at}]`;
      const pending = expectArray(rawPending, pendingPath, 3);
      const seq = expectInteger(pending[0], `${pendingPath}[0]`, 1);
      if (seq <= previousSeq) fail(pendingPath, 'pending seqs must ascend, beyond appliedSeq + 1');
      previousSeq = seq;
      const eventBytes = expectBytes(pending[1], `${pendingPath}[1]`, EVENT_BYTES);
      try {
        validatePacked(schema, eventBytes, 1);
      } catch (cause) {
        throw new TidelogError('DECODE_FAILED', `${pendingPath}[1]: the buffered event is not valid under the schema`, {
          cause,
          details: { path: `${pendingPath}[1]`, reason: (cause as TidelogError).code },
        });
      }
      const hlc = decodeHlc(pending[2], `${pendingPath}[2]`);
      log.pending.set(seq, { bytes: eventBytes, wallNs: hlc.wallNs, logical: hlc.logical, nodeId: hlc.nodeId });
    });
    if (row[3] !== null) {
      if (log.appliedSeq === 0) fail(`${rowPath}[3]`, 'a lastHlc needs appliedSeq ≥ 1');
      log.lastHlc = decodeHlc(row[3], `${rowPath}[3]`);
    }
    if (log.isEmpty) fail(rowPath, 'an empty origin row is not canonical');
    logs.push(log);
  });
  return logs;
}

/** The canonical record of entity number `entity` (key `key`), or undefined when it is absent. */
export function entityToRecord(key: EntityKey, columns: readonly ScoreColumn[], flags: FlagTable, entity: number): EntityRecord | undefined {
  if (entity < 0) return undefined;
  const cells: CellRecord[] = [];
  for (const column of columns) {
    const chain = column.chain(entity);
    if (chain.length === 0) continue;
    cells.push([column.signal.id, chain.map((slot) => contributionToRecord(column.values(slot)))]);
  }
  const flagRecords: FlagRecord[] = [];
  flags.forEachSet(entity, (flag, value, wallHi, wallLo, logical, nodeId) => {
    flagRecords.push([flag, value, hlcBytes(wallHi, wallLo, logical, nodeId)]);
  });
  if (cells.length === 0 && flagRecords.length === 0) return undefined;
  return [typeof key === 'number' ? key : entityIdOf(key), cells, flagRecords];
}

/** The canonical record of a decoded entity (fresh arrays: nothing aliases the decoded bytes). */
export function decodedToRecord(entity: DecodedEntity): EntityRecord {
  return [
    typeof entity.key === 'number' ? entity.key : entityIdOf(entity.key),
    entity.cells.map((cell): CellRecord => [cell.signalId, cell.contributions.map(contributionToRecord)]),
    entity.flags.map((flag): FlagRecord => [flag.index, flag.value, flag.stamp.toBytes()]),
  ];
}

function contributionToRecord(values: ContributionValues): ContributionRecord {
  return [
    values.origin,
    values.lastSeq,
    values.eventCount,
    [values.weightPositiveHi, values.weightPositiveLo],
    [values.weightNegativeHi, values.weightNegativeLo],
    values.score,
    joinNs(values.anchorHi, values.anchorLo),
    hlcBytes(values.wallHi, values.wallLo, values.logical, values.nodeId),
    joinNs(values.eventHi, values.eventLo),
    values.windows,
  ];
}

function hlcBytes(wallHi: number, wallLo: number, logical: number, nodeId: number): Uint8Array {
  const bytes = new Uint8Array(HLC_TIMESTAMP_BYTES);
  writeHlcParts(bytes, 0, wallHi, wallLo, logical, nodeId);
  return bytes;
}

export function decodeEntityRecord(raw: unknown, schema: SignalSchema, path: string): DecodedEntity {
  const record = expectArray(raw, path, 3);
  const entity: DecodedEntity = { key: entityKeyOf(expectU64(record[0], `${path}[0]`)), cells: [], flags: [] };
  expectArray(record[1], `${path}[1]`).forEach((rawCell, index) => {
    const cellPath = `${path}[1][${index}]`;
    const cell = expectArray(rawCell, cellPath, 2);
    const signalId = expectU32(cell[0], `${cellPath}[0]`);
    const signal = signalId <= 255 ? schema.byId[signalId] : undefined;
    if (signal === undefined || signal.kind !== 'score') fail(`${cellPath}[0]`, `signal ${signalId} is not a score signal`);
    const previous = entity.cells[entity.cells.length - 1];
    if (previous !== undefined && previous.signalId >= signalId) fail(cellPath, 'cells must be strictly ascending by signal');
    const contributions = expectArray(cell[1], `${cellPath}[1]`).map((rawContribution, at) =>
      decodeContribution(rawContribution, signal, schema.bucketsPerWindow, `${cellPath}[1][${at}]`),
    );
    if (contributions.length === 0) fail(`${cellPath}[1]`, 'a cell needs at least one contribution');
    for (let at = 1; at < contributions.length; at++) {
      if (contributions[at - 1].origin >= contributions[at].origin) {
        fail(`${cellPath}[1][${at}]`, 'contributions must be strictly ascending by origin');
      }
    }
    entity.cells.push({ signalId, contributions });
  });
  let previousFlag = -1;
  expectArray(record[2], `${path}[2]`).forEach((rawFlag, index) => {
    const flagPath = `${path}[2][${index}]`;
    const flag = expectArray(rawFlag, flagPath, 3);
    const flagIndex = expectU32(flag[0], `${flagPath}[0]`);
    if (flagIndex >= schema.flags.length || flagIndex <= previousFlag) {
      fail(`${flagPath}[0]`, 'flag indexes must ascend and exist in the schema');
    }
    previousFlag = flagIndex;
    if (typeof flag[1] !== 'boolean') fail(`${flagPath}[1]`, 'a flag value is a boolean');
    entity.flags.push({ index: flagIndex, value: flag[1], stamp: decodeHlc(flag[2], `${flagPath}[2]`) });
  });
  if (entity.cells.length === 0 && entity.flags.length === 0) fail(path, 'an entity record holds no state');
  return entity;
}

function decodeContribution(raw: unknown, signal: ScoreSignal, bucketCount: number, path: string): ContributionValues {
  const record = expectArray(raw, path, 10);
  const eventCount = expectInteger(record[2], `${path}[2]`, 1);
  const [weightPositiveHi, weightPositiveLo] = expectWide(record[3], `${path}[3]`);
  const [weightNegativeHi, weightNegativeLo] = expectWide(record[4], `${path}[4]`);
  const score = record[5];
  if (typeof score !== 'number' || !Number.isFinite(score)) fail(`${path}[5]`, 'score must be a finite number');
  const [anchorHi, anchorLo] = splitNs(expectU64(record[6], `${path}[6]`));
  const lastHlc = expectBytes(record[7], `${path}[7]`, HLC_TIMESTAMP_BYTES);
  const [eventHi, eventLo] = splitNs(expectU64(record[8], `${path}[8]`));
  const anchorSeconds = secondsOf(anchorHi, anchorLo);
  const windows = expectArray(record[9], `${path}[9]`, signal.windows.length).map((rawRing, index) => {
    const ringPath = `${path}[9][${index}]`;
    const ring = expectArray(rawRing, ringPath);
    if (ring.length === 0 || ring.length % 2 !== 0 || ring.length > 2 * bucketCount) fail(ringPath, 'bad ring length');
    // The newest bucket holds the newest event, whose time is the anchor (window-rings.ts).
    const newest = Math.floor(anchorSeconds / signal.windows[index].bucketSeconds);
    if (ring[ring.length - 2] !== newest) fail(ringPath, 'the newest bucket must be the anchor\'s');
    const pairs: number[] = [];
    for (let at = 0; at < ring.length; at += 2) {
      const bucket = ring[at];
      const count = ring[at + 1];
      if (!Number.isSafeInteger(bucket) || (bucket as number) < 0) fail(ringPath, 'a bucket is a non-negative integer');
      if (!Number.isSafeInteger(count) || (count as number) < 1 || (count as number) > eventCount) {
        fail(ringPath, 'a bucket count is an integer from 1 to the event count');
      }
      if (at > 0 && (bucket as number) <= pairs[at - 2]) fail(ringPath, 'buckets must be strictly ascending');
      if ((bucket as number) <= newest - bucketCount) fail(ringPath, 'a bucket lies outside the ring');
      pairs.push(bucket as number, count as number);
    }
    return pairs;
  });
  return {
    origin: expectU32(record[0], `${path}[0]`),
    lastSeq: expectInteger(record[1], `${path}[1]`, 1),
    eventCount,
    weightPositiveHi,
    weightPositiveLo,
    weightNegativeHi,
    weightNegativeLo,
    score,
    anchorHi,
    anchorLo,
    wallHi: readU32BigEndian(lastHlc, 0),
    wallLo: readU32BigEndian(lastHlc, 4),
    logical: readU32BigEndian(lastHlc, 8),
    nodeId: readU32BigEndian(lastHlc, 12),
    eventHi,
    eventLo,
    windows,
  };
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

export function expectInteger(value: unknown, path: string, minimum: number): number {
  if (!Number.isSafeInteger(value) || (value as number) < minimum) fail(path, `expected a safe integer ≥ ${minimum}`);
  return value as number;
}

export function expectU64(value: unknown, path: string): bigint {
  if (typeof value === 'bigint' && value >= 0n && value <= U64_MAX) return value;
  if (Number.isSafeInteger(value) && (value as number) >= 0) return BigInt(value as number);
  return fail(path, 'expected a u64');
}

function expectWide(value: unknown, path: string): [number, number] {
  const [hi, lo] = expectArray(value, path, 2);
  if (!Number.isSafeInteger(hi) || (hi as number) < 0 || !Number.isSafeInteger(lo) || (lo as number) < 0 || (lo as number) >= LIMB) {
    fail(path, 'expected [hi, lo] limbs with 0 ≤ lo < 2^48');
  }
  return [hi as number, lo as number];
}

export function expectBytes(value: unknown, path: string, length: number): Uint8Array {
  if (!(value instanceof Uint8Array) || value.byteLength !== length) fail(path, `expected ${length} bytes`);
  // A private copy (msgpackr may hand out views into the input buffer), byte by byte: a
  // typed-array copy constructor would move the small buffer off-heap.
  const copy = new Uint8Array(length);
  for (let index = 0; index < length; index++) copy[index] = value[index];
  return copy;
}

function fail(path: string, message: string): never {
  throw new TidelogError('DECODE_FAILED', `${path}: ${message}`, { details: { path } });
}
