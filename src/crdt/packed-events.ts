// The 21-byte signal event as the CRDT layer reads it. The WAL owns the canonical definition
// (src/wal/event.ts); this is a private copy so the CRDT library stays independent of it.
//
//   offset  size  field        type
//   ------  ----  -----------  ------------------------------
//        0     8  entityId     u64 little-endian
//        8     1  signalType   u8
//        9     4  weight       f32 little-endian
//       13     8  timestampNs  u64 little-endian
//   ------  ----
//       21 bytes per event, records back to back

import { TidelogError } from '../errors.ts';

export const EVENT_BYTES = 21;
const U64_MAX = 0xffff_ffff_ffff_ffffn;

export interface SignalEvent {
  entityId: bigint;
  signalType: number;
  weight: number;
  timestampNs: bigint;
}

/** Packs events (tests, benchmarks, the single-event API); validates ranges. */
export function packEvents(events: readonly SignalEvent[]): Uint8Array {
  const bytes = new Uint8Array(events.length * EVENT_BYTES);
  const view = new DataView(bytes.buffer);
  for (let index = 0; index < events.length; index++) {
    writeEvent(view, index * EVENT_BYTES, events[index]);
  }
  return bytes;
}

export function writeEvent(view: DataView, offset: number, event: SignalEvent): void {
  if (
    event === null ||
    typeof event !== 'object' ||
    typeof event.entityId !== 'bigint' ||
    event.entityId < 0n ||
    event.entityId > U64_MAX ||
    typeof event.timestampNs !== 'bigint' ||
    event.timestampNs < 0n ||
    event.timestampNs > U64_MAX ||
    !Number.isInteger(event.signalType) ||
    event.signalType < 0 ||
    event.signalType > 255 ||
    typeof event.weight !== 'number'
  ) {
    throw new TidelogError('BAD_REQUEST', 'an event needs a u64 entityId, u8 signalType, number weight, u64 timestampNs');
  }
  view.setBigUint64(offset, event.entityId, true);
  view.setUint8(offset + 8, event.signalType);
  view.setFloat32(offset + 9, event.weight, true);
  view.setBigUint64(offset + 13, event.timestampNs, true);
}

export function readEvent(bytes: Uint8Array, offset: number): SignalEvent {
  const view = new DataView(bytes.buffer, bytes.byteOffset + offset, EVENT_BYTES);
  return {
    entityId: view.getBigUint64(0, true),
    signalType: view.getUint8(8),
    weight: view.getFloat32(9, true),
    timestampNs: view.getBigUint64(13, true),
  };
}

/** The number of events in a packed buffer; BAD_REQUEST unless its length is n × 21. */
export function packedCount(bytes: Uint8Array): number {
  if (!(bytes instanceof Uint8Array) || bytes.byteLength % EVENT_BYTES !== 0) {
    throw new TidelogError('BAD_REQUEST', `packed events must be a Uint8Array of n × ${EVENT_BYTES} bytes`);
  }
  return bytes.byteLength / EVENT_BYTES;
}
