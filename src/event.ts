// The signal event and its 21-byte packed form: one definition for every layer (WAL, CRDT,
// wire). The data path carries packed bytes; objects exist only at the API edges.
//
//   offset  size  field        type
//   ------  ----  -----------  ------------------------------
//        0     8  entityId     u64 little-endian
//        8     1  signalType   u8
//        9     4  weight       f32 little-endian (finite)
//       13     8  timestampNs  u64 little-endian
//   ------  ----
//       21 bytes per event, records back to back, no padding

import { TidelogError } from './errors.ts';

export const EVENT_BYTES = 21;
const U64_MAX = 0xffff_ffff_ffff_ffffn;

/** An event as decoded (WAL, CRDT, wire, consumer): entityId is always a bigint. */
export interface SignalEvent {
  entityId: bigint;
  signalType: number;
  weight: number;
  timestampNs: bigint;
}

/** An entity id as callers may give one: a u64 bigint, or a number that is a non-negative safe integer. */
export type EntityIdInput = bigint | number;

/** An event as callers may give one (producer.send, encodeEvents): entityId may be a safe integer number. */
export interface SignalEventInput extends Omit<SignalEvent, 'entityId'> {
  entityId: EntityIdInput;
}

const ENTITY_ID_RULE = 'entityId must be a u64 bigint or a non-negative safe integer';

/** `value` as a u64 bigint if it is one, or a non-negative safe integer number; else null. */
export function entityIdOrNull(value: unknown): bigint | null {
  if (typeof value === 'bigint') return value >= 0n && value <= U64_MAX ? value : null;
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) return BigInt(value);
  return null;
}

/** `value` as a u64 bigint; BAD_REQUEST naming entityId if it is neither a u64 bigint nor a non-negative safe integer. */
export function toEntityId(value: unknown): bigint {
  const entityId = entityIdOrNull(value);
  if (entityId === null) {
    throw new TidelogError('BAD_REQUEST', `${ENTITY_ID_RULE}, got ${describeValue(value)}`, { details: { entityId: describeValue(value) } });
  }
  return entityId;
}

/** Packs events into n × 21 bytes, rejecting anything that would not round-trip. */
export function encodeEvents(events: readonly SignalEventInput[]): Uint8Array {
  const bytes = new Uint8Array(events.length * EVENT_BYTES);
  const view = new DataView(bytes.buffer);
  for (let index = 0; index < events.length; index++) writeEvent(view, index * EVENT_BYTES, events[index], index);
  return bytes;
}

/** Writes one validated event at `offset` of `view`. */
export function writeEvent(view: DataView, offset: number, event: SignalEventInput, index = 0): void {
  const entityId = validateEvent(event, index);
  view.setBigUint64(offset, entityId, true);
  view.setUint8(offset + 8, event.signalType);
  view.setFloat32(offset + 9, event.weight, true);
  view.setBigUint64(offset + 13, BigInt(event.timestampNs), true);
}

export function decodeEvent(bytes: Uint8Array, offset: number): SignalEvent {
  return decodeEventAt(new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength), offset);
}

/** Decodes the event at `offset` of `view`; loops reuse one view for a whole batch. */
export function decodeEventAt(view: DataView, offset: number): SignalEvent {
  return {
    entityId: view.getBigUint64(offset, true),
    signalType: view.getUint8(offset + 8),
    weight: view.getFloat32(offset + 9, true),
    timestampNs: view.getBigUint64(offset + 13, true),
  };
}

export function decodeEvents(bytes: Uint8Array): SignalEvent[] {
  const count = checkPackedLength(bytes);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const events = new Array<SignalEvent>(count);
  for (let index = 0; index < count; index++) events[index] = decodeEventAt(view, index * EVENT_BYTES);
  return events;
}

/** Returns the event count of a packed buffer, or throws BAD_REQUEST if it is not n × 21. */
export function checkPackedLength(bytes: Uint8Array): number {
  if (!(bytes instanceof Uint8Array)) throw new TidelogError('BAD_REQUEST', 'packed events must be a Uint8Array');
  if (bytes.byteLength % EVENT_BYTES !== 0) {
    throw new TidelogError(
      'BAD_REQUEST',
      `packed events must be a multiple of ${EVENT_BYTES} bytes, got ${bytes.byteLength}`,
      { details: { byteLength: bytes.byteLength } },
    );
  }
  return bytes.byteLength / EVENT_BYTES;
}

/**
 * Validates packed events: length and finite weights (the only field bytes cannot express
 * safely). With maxAbsWeight, also |weight| ≤ it, judged on the stored f32 as a node reads
 * it: a producer passes the bound the node's state machine folds (MAX_ABS_WEIGHT, 1e9,
 * src/crdt/weight-micros.ts) to refuse before queueing what the node would refuse; the codec
 * and the WAL leave that bound to the state machine.
 */
export function validatePacked(bytes: Uint8Array, maxAbsWeight = Number.POSITIVE_INFINITY): number {
  const count = checkPackedLength(bytes);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let index = 0; index < count; index++) {
    const weight = view.getFloat32(index * EVENT_BYTES + 9, true);
    if (!Number.isFinite(weight)) {
      throw new TidelogError('BAD_REQUEST', `event ${index}: weight must be finite, got ${weight}`, {
        details: { index },
      });
    }
    if (Math.abs(weight) > maxAbsWeight) {
      throw new TidelogError('BAD_REQUEST', `event ${index}: |weight| must be at most ${maxAbsWeight}, got ${weight}`, {
        details: { index, maxAbsWeight },
      });
    }
  }
  return count;
}

/** Throws BAD_REQUEST for an event that would not round-trip; returns its entity id as a bigint. */
function validateEvent(event: SignalEventInput, index: number): bigint {
  const fail = (what: string, details: Record<string, unknown> = {}): never => {
    throw new TidelogError('BAD_REQUEST', `event ${index}: ${what}`, { details: { index, ...details } });
  };
  if (event === null || typeof event !== 'object') fail('not an object');
  const entityId = entityIdOrNull(event.entityId);
  if (entityId === null) {
    const got = describeValue(event.entityId);
    return fail(`${ENTITY_ID_RULE}, got ${got}`, { entityId: got });
  }
  if (!Number.isInteger(event.signalType) || event.signalType < 0 || event.signalType > 255) {
    fail('signalType must be an integer 0..255');
  }
  if (typeof event.weight !== 'number' || !Number.isFinite(event.weight)) fail('weight must be a finite number');
  if (Math.abs(event.weight) > 3.4028234663852886e38) fail('weight does not fit in f32');
  const timestampNs = toBigIntOrNull(event.timestampNs);
  if (timestampNs === null || timestampNs < 0n || timestampNs > U64_MAX) fail('timestampNs must be a u64');
  return entityId;
}

function describeValue(value: unknown): string {
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean' || value === null || value === undefined) return String(value);
  return typeof value;
}

function toBigIntOrNull(value: unknown): bigint | null {
  if (typeof value === 'bigint') return value;
  if (typeof value === 'number' && Number.isSafeInteger(value)) return BigInt(value);
  return null;
}
