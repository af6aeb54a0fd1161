// The events of a chaos run's calls, indexed by content for the checker (history-check.ts):
// every event the runner sends has unique content, so an event is named by its 21 bytes and a
// log entry is matched to the call that sent it without an object per event. Also the byte
// helpers the checks share (compare, read a u32, describe an event).

import { EVENT_BYTES, decodeEvent } from '../event.ts';
import { finalMix, mixWord } from '../murmur.ts';
import type { OpRecord } from './history.ts';

const OUTCOME_OK = 1;
export const OUTCOME_FAIL = 2;
const OUTCOME_MAYBE = 4; // unknown, or never completed

function hashEvent(bytes: Uint8Array, offset: number): number {
  let hash = EVENT_BYTES;
  for (let at = offset; at < offset + 20; at += 4) {
    hash = mixWord(hash, bytes[at] | (bytes[at + 1] << 8) | (bytes[at + 2] << 16) | (bytes[at + 3] << 24));
  }
  return finalMix(mixWord(hash, bytes[offset + 20]));
}

export function isSameEvent(a: Uint8Array, aOffset: number, b: Uint8Array, bOffset: number): boolean {
  for (let index = 0; index < EVENT_BYTES; index++) if (a[aOffset + index] !== b[bOffset + index]) return false;
  return true;
}

export function u32At(bytes: Uint8Array, offset: number): number {
  return (bytes[offset] | (bytes[offset + 1] << 8) | (bytes[offset + 2] << 16) | (bytes[offset + 3] << 24)) >>> 0;
}

export function describeEvent(bytes: Uint8Array, offset: number): string {
  const event = decodeEvent(bytes, offset);
  return `event {entity ${event.entityId}, type ${event.signalType}, weight ${event.weight}, ts ${event.timestampNs}}`;
}

/**
 * Every event sent, packed in one buffer and indexed by content (open addressing, no object per
 * event). Events sent twice share a canonical index: the first sending's.
 */
export class SentEvents {
  readonly bytes: Uint8Array;
  /** Record index of each event. */
  readonly recordOf: Int32Array;
  readonly canonicalOf: Int32Array;
  /** Per canonical event: OUTCOME_* bits of every call that sent it. */
  readonly outcomes: Uint8Array;
  /** Per canonical event: where it sits in the reference logs (seq 0: nowhere). */
  readonly landedShard: Int32Array;
  readonly landedSeq: Float64Array;
  readonly maxTimestampNs: bigint;
  private readonly slots: Int32Array;

  constructor(records: readonly OpRecord[]) {
    let total = 0;
    for (const record of records) total += record.events.byteLength / EVENT_BYTES;
    this.bytes = new Uint8Array(total * EVENT_BYTES);
    this.recordOf = new Int32Array(total);
    this.canonicalOf = new Int32Array(total);
    this.outcomes = new Uint8Array(total);
    this.landedShard = new Int32Array(total);
    this.landedSeq = new Float64Array(total);
    let slotCount = 1024;
    while (slotCount < total * 2) slotCount *= 2;
    this.slots = new Int32Array(slotCount);
    let maxHi = 0;
    let maxLo = 0;
    let next = 0;
    records.forEach((record, recordIndex) => {
      const bit = record.outcome === 'ok' ? OUTCOME_OK : record.outcome === 'fail' ? OUTCOME_FAIL : OUTCOME_MAYBE;
      this.bytes.set(record.events, next * EVENT_BYTES);
      for (let end = next + record.events.byteLength / EVENT_BYTES; next < end; next++) {
        const offset = next * EVENT_BYTES;
        const hi = u32At(this.bytes, offset + 17);
        const lo = u32At(this.bytes, offset + 13);
        if (hi > maxHi || (hi === maxHi && lo > maxLo)) [maxHi, maxLo] = [hi, lo];
        this.recordOf[next] = recordIndex;
        const canonical = this.insert(next);
        this.canonicalOf[next] = canonical;
        this.outcomes[canonical] |= bit;
      }
    });
    this.maxTimestampNs = (BigInt(maxHi) << 32n) | BigInt(maxLo);
  }

  /** The canonical index of the event at `offset` of `bytes`, or −1 if it was never sent. */
  find(bytes: Uint8Array, offset: number): number {
    const mask = this.slots.length - 1;
    for (let slot = hashEvent(bytes, offset) & mask; ; slot = (slot + 1) & mask) {
      const entry = this.slots[slot];
      if (entry === 0) return -1;
      if (isSameEvent(this.bytes, (entry - 1) * EVENT_BYTES, bytes, offset)) return entry - 1;
    }
  }

  private insert(index: number): number {
    const mask = this.slots.length - 1;
    const offset = index * EVENT_BYTES;
    for (let slot = hashEvent(this.bytes, offset) & mask; ; slot = (slot + 1) & mask) {
      const entry = this.slots[slot];
      if (entry === 0) {
        this.slots[slot] = index + 1;
        return index;
      }
      if (isSameEvent(this.bytes, (entry - 1) * EVENT_BYTES, this.bytes, offset)) return entry - 1;
    }
  }
}
