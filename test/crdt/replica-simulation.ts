// Test support (not a test file): deterministic event histories of several origins and the
// messy ways replicas receive them (any order, duplicates, re-sliced batches).
import fc from 'fast-check';
import { CrdtSignalState, Hlc, HlcTimestamp, type SignalSchema } from '../../src/crdt/index.ts';

export const START_NS = 1_700_000_000_000_000_000n;
import { EVENT_BYTES } from '../../src/event.ts';

export { EVENT_BYTES };
const HOUR_NS = 3_600_000_000_000n;

/** A batch as an origin's log ships it: consecutive seqs, consecutive HLCs. */
export interface Batch {
  origin: number;
  firstSeq: number;
  bytes: Uint8Array;
  firstHlc: HlcTimestamp;
}

export interface HistoryOptions {
  origins: number[];
  eventsPerOrigin: number;
  entities: number;
  maxBatchEvents?: number;
  /** Share of events that are flag signals (hide/unhide). */
  flagShare?: number;
  /** Share of events on entity ids ≥ 2^53 (the bigint key path). */
  bigIdShare?: number;
  /** Events stamped up to this far before the previous one (out-of-order event times). */
  maxBacktrackNs?: bigint;
  /** Seq of each origin's first event (default 1). */
  firstSeq?: number;
}

export { mulberry32 } from '../../src/chaos/schedule.ts';

export function pick<T>(random: () => number, items: readonly T[]): T {
  return items[Math.floor(random() * items.length)];
}

const WEIGHTS = [1, 1, 1, 0.5, 2, 0.1, 3.25, -1, -0.25, 0, 1e-6, 1000.5];

/** Every origin's events, batched as its log would ship them, in each origin's seq order. */
export function makeHistory(schema: SignalSchema, random: () => number, options: HistoryOptions): Batch[] {
  const scoreIds = schema.signals.filter((signal) => signal.kind === 'score').map((signal) => signal.id);
  const flagIds = schema.signals.filter((signal) => signal.kind === 'flag').map((signal) => signal.id);
  const maxBatch = options.maxBatchEvents ?? 6;
  const batches: Batch[] = [];
  for (const origin of options.origins) {
    let physicalNs = START_NS + BigInt(origin) * 1000n;
    const clock = new Hlc(origin, { now: () => physicalNs, maxLogical: 50 });
    let eventNs = START_NS;
    let seq = options.firstSeq ?? 1;
    let remaining = options.eventsPerOrigin;
    while (remaining > 0) {
      const count = Math.min(remaining, 1 + Math.floor(random() * maxBatch));
      const bytes = new Uint8Array(count * EVENT_BYTES);
      const view = new DataView(bytes.buffer);
      for (let index = 0; index < count; index++) {
        const offset = index * EVENT_BYTES;
        const isBig = random() < (options.bigIdShare ?? 0.05);
        const entity = BigInt(Math.floor(random() * options.entities));
        view.setBigUint64(offset, isBig ? 0xffff_ffff_ffff_0000n + entity : entity, true);
        const isFlag = flagIds.length > 0 && random() < (options.flagShare ?? 0.1);
        bytes[offset + 8] = isFlag ? pick(random, flagIds) : pick(random, scoreIds);
        view.setFloat32(offset + 9, pick(random, WEIGHTS), true);
        // Mostly forward in time (up to 2 h a step), sometimes back (late events).
        const backtrackNs = options.maxBacktrackNs ?? HOUR_NS;
        const step = random() < 0.2 ? -BigInt(Math.floor(random() * Number(backtrackNs))) : BigInt(Math.floor(random() * 7.2e12));
        eventNs = eventNs + step < START_NS - 30n * 24n * HOUR_NS ? eventNs : eventNs + step;
        view.setBigUint64(offset + 13, eventNs, true);
      }
      physicalNs += BigInt(Math.floor(random() * 3)); // often stands still: logical counters climb
      batches.push({ origin, firstSeq: seq, bytes, firstHlc: clock.reserve(count) });
      seq += count;
      remaining -= count;
    }
  }
  return batches;
}

/** Events firstSeq + from … firstSeq + to − 1 of a batch, as their own batch. */
export function sliceBatch(batch: Batch, from: number, to: number): Batch {
  return {
    origin: batch.origin,
    firstSeq: batch.firstSeq + from,
    bytes: batch.bytes.slice(from * EVENT_BYTES, to * EVENT_BYTES),
    firstHlc: new HlcTimestamp(batch.firstHlc.wallNs, batch.firstHlc.logical + from, batch.firstHlc.nodeId),
  };
}

export function eventCount(batch: Batch): number {
  return batch.bytes.byteLength / EVENT_BYTES;
}

/** The batches in a random order, some split, some delivered again (whole or in part). */
export function messyDelivery(batches: readonly Batch[], random: () => number, duplicateShare = 0.3): Batch[] {
  const deliveries: Batch[] = [];
  for (const batch of batches) {
    const count = eventCount(batch);
    if (count > 1 && random() < 0.3) {
      const cut = 1 + Math.floor(random() * (count - 1));
      deliveries.push(sliceBatch(batch, 0, cut), sliceBatch(batch, cut, count));
    } else deliveries.push(batch);
    if (random() < duplicateShare) {
      const from = Math.floor(random() * count);
      const to = from + 1 + Math.floor(random() * (count - from));
      deliveries.push(sliceBatch(batch, from, to));
    }
  }
  shuffle(deliveries, random);
  return deliveries;
}

export function shuffle<T>(items: T[], random: () => number): T[] {
  for (let index = items.length - 1; index > 0; index--) {
    const other = Math.floor(random() * (index + 1));
    [items[index], items[other]] = [items[other], items[index]];
  }
  return items;
}

export function deliver(state: CrdtSignalState, batch: Batch): number {
  return state.applyPacked(batch.bytes, batch.origin, batch.firstSeq, batch.firstHlc);
}

/** The state that folds every batch once, each origin in seq order. */
export function referenceState(schema: SignalSchema, batches: readonly Batch[]): CrdtSignalState {
  const state = new CrdtSignalState(schema);
  const ordered = [...batches].sort((a, b) => a.origin - b.origin || a.firstSeq - b.firstSeq);
  for (const batch of ordered) deliver(state, batch);
  return state;
}

/** One random event as a fast-check record (so a failing history shrinks event by event). */
export interface EventOperation {
  origin: number;
  /** 0 stands for an id ≥ 2^53 (the bigint key path). */
  entity: number;
  signalType: number;
  weight: number;
  /** Event time step in seconds; negative for a late event. */
  stepSeconds: number;
  /** This event closes its origin's current batch (batches also close at 6 events). */
  isBatchEnd: boolean;
  /** Bit i set: replica i receives the batch this event opens. */
  deliverTo: number;
}

export function eventOperation(schema: SignalSchema, options: { origins: number; entities: number }): fc.Arbitrary<EventOperation> {
  const scoreIds = schema.signals.filter((signal) => signal.kind === 'score').map((signal) => signal.id);
  const flagIds = schema.signals.filter((signal) => signal.kind === 'flag').map((signal) => signal.id);
  return fc.record({
    origin: fc.integer({ min: 1, max: options.origins }),
    entity: fc.integer({ min: 0, max: options.entities - 1 }),
    signalType: fc.oneof({ weight: 9, arbitrary: fc.constantFrom(...scoreIds) }, { weight: 1, arbitrary: fc.constantFrom(...flagIds) }),
    weight: fc.constantFrom(...WEIGHTS),
    stepSeconds: fc.integer({ min: -3600, max: 7200 }),
    isBatchEnd: fc.boolean(),
    deliverTo: fc.integer({ min: 0, max: 7 }),
  });
}

/** A batch and the replicas (bit mask) that receive it. */
export interface AddressedBatch extends Batch {
  deliverTo: number;
}

/**
 * The operations as their origins' logs ship them: per origin, in array order, consecutive
 * seqs from 1 and HLCs from Hlc.reserve; a batch closes at isBatchEnd or at 6 events.
 */
export function historyOf(operations: readonly EventOperation[]): AddressedBatch[] {
  const byOrigin = new Map<number, EventOperation[]>();
  for (const operation of operations) {
    const list = byOrigin.get(operation.origin) ?? [];
    list.push(operation);
    byOrigin.set(operation.origin, list);
  }
  const batches: AddressedBatch[] = [];
  for (const origin of [...byOrigin.keys()].sort((a, b) => a - b)) {
    const events = byOrigin.get(origin) as EventOperation[];
    let physicalNs = START_NS + BigInt(origin) * 1000n;
    const clock = new Hlc(origin, { now: () => physicalNs, maxLogical: 50 });
    let eventNs = START_NS;
    let seq = 1;
    for (let first = 0; first < events.length; ) {
      let end = first + 1;
      while (end < events.length && end - first < 6 && !events[end - 1].isBatchEnd) end++;
      const count = end - first;
      const bytes = new Uint8Array(count * EVENT_BYTES);
      const view = new DataView(bytes.buffer);
      for (let index = 0; index < count; index++) {
        const operation = events[first + index];
        const offset = index * EVENT_BYTES;
        view.setBigUint64(offset, operation.entity === 0 ? 0xffff_ffff_ffff_0000n : BigInt(operation.entity), true);
        bytes[offset + 8] = operation.signalType;
        view.setFloat32(offset + 9, operation.weight, true);
        const nextNs = eventNs + BigInt(operation.stepSeconds) * 1_000_000_000n;
        if (nextNs >= START_NS - 30n * 24n * HOUR_NS) eventNs = nextNs;
        view.setBigUint64(offset + 13, eventNs, true);
      }
      physicalNs += BigInt(events[first].entity % 3); // often stands still: logical counters climb
      batches.push({ origin, firstSeq: seq, bytes, firstHlc: clock.reserve(count), deliverTo: events[first].deliverTo });
      seq += count;
      first = end;
    }
  }
  return batches;
}
