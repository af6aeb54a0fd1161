import fc from 'fast-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { expectCode } from '../support/expect-code.ts';
import { isTidelogError } from '../../src/errors.ts';
import {
  CrdtSignalState,
  defaultSignalSchema,
  encodeEvents,
  HlcTimestamp,
  ImageLoader,
  loadStateImage,
  parseSignalSchema,
  type ImageStream,
  type SignalEvent,
} from '../../src/crdt/index.ts';
import { deliver, makeHistory, messyDelivery, mulberry32, START_NS, type Batch } from './replica-simulation.ts';

const schema = defaultSignalSchema();
const PIECE = 64 * 1024;

/** A state with scores, flags, ids ≥ 2^53, several origins and non-empty reorder buffers. */
function sampleState(seed: number, eventsPerOrigin = 60, entities = 20): CrdtSignalState {
  const random = mulberry32(seed);
  const history = makeHistory(schema, random, { origins: [1, 2, 3], eventsPerOrigin, entities, bigIdShare: 0.2 });
  const state = new CrdtSignalState(schema);
  const deliveries = messyDelivery(history, random);
  for (const batch of deliveries.slice(0, Math.ceil(deliveries.length * 0.8))) deliver(state, batch);
  return state;
}

/** All of an image's bytes, taken in pieces of `pieceBytes`. */
function drain(stream: ImageStream, pieceBytes = PIECE): Uint8Array {
  const bytes = new Uint8Array(stream.totalBytes);
  let at = 0;
  for (let piece = stream.next(pieceBytes); piece !== null; piece = stream.next(pieceBytes)) {
    assert.ok(piece.byteLength <= pieceBytes);
    bytes.set(piece, at);
    at += piece.byteLength;
  }
  assert.is(at, stream.totalBytes);
  return bytes;
}

/** Loads `bytes` pushed in random splits (1 byte up to a few KiB). */
function loadSplit(bytes: Uint8Array, random: () => number, options = {}): CrdtSignalState {
  const loader = new ImageLoader(schema, options);
  for (let at = 0; at < bytes.byteLength; ) {
    const size = random() < 0.2 ? 1 + Math.floor(random() * 7) : 1 + Math.floor(random() * 5000);
    loader.push(bytes.subarray(at, at + size));
    at += size;
  }
  return loader.finish();
}

/**
 * `count` events on fresh entities (from `firstEntity`), two score signals each, so folding them
 * grows every array: keys, contributions, heads, rings (events an hour apart need two buckets,
 * three a ring), and a flag on every tenth entity.
 */
function freshEntities(firstEntity: number, count: number, firstSeconds: number): Uint8Array {
  const events: SignalEvent[] = [];
  for (let index = 0; index < count; index++) {
    const entityId = BigInt(firstEntity + index);
    for (const signalType of [1, 2]) {
      for (let step = 0; step < 1 + (index % 4); step++) {
        events.push({ entityId, signalType, weight: step === 2 ? -0.5 : 1 + step, timestampNs: START_NS + BigInt(firstSeconds + step * 200) * 1_000_000_000n });
      }
    }
    if (index % 10 === 0) events.push({ entityId, signalType: 200, weight: 1, timestampNs: START_NS });
  }
  return encodeEvents(events);
}

test('state-image - an image round-trips to an equal state, and re-images to the same bytes', () => {
  const random = mulberry32(5);
  for (let seed = 1; seed <= 20; seed++) {
    const state = sampleState(seed);
    state.registerOrigin(9, 1); // an empty origin log: part of the state, imaged too
    const bytes = drain(state.beginImage());
    const loaded = loadSplit(bytes, random);
    assert.ok(loaded.equals(state), `seed ${seed}`);
    loaded.checkInvariants();
    assert.is(loaded.entityCount, state.entityCount);
    assert.is(loaded.pendingEvents(), state.pendingEvents());
    assert.is(loaded.conflicts, state.conflicts);
    assert.is(Buffer.compare(drain(loaded.beginImage()), bytes), 0, 'the loaded state images to the same bytes');
    assert.is(Buffer.compare(loaded.encode(), state.encode()), 0, 'and snapshots to the same msgpack');
  }
  const empty = new CrdtSignalState(schema);
  assert.ok(loadStateImage(drain(empty.beginImage()), schema).equals(empty));
});

test('state-image - the same operations give the same image bytes', () => {
  const a = sampleState(7);
  const b = sampleState(7);
  assert.is(Buffer.compare(drain(a.beginImage()), drain(b.beginImage())), 0);
  assert.is(Buffer.compare(drain(a.clone().beginImage()), drain(a.beginImage())), 0, 'a clone holds the same arrays');
});

/** One thing the owner does between two next() calls. */
type Operation =
  | { kind: 'fold'; batch: number }
  | { kind: 'grow'; count: number }
  | { kind: 'continue'; entity: number; count: number; laterSeconds: number }
  | { kind: 'merge'; seed: number }
  | { kind: 'register'; origin: number; firstSeq: number }
  | { kind: 'flag'; entity: number; isHide: boolean }
  | { kind: 'next'; pieceBytes: number };

const operation: fc.Arbitrary<Operation> = fc.oneof(
  fc.record({ kind: fc.constant('fold' as const), batch: fc.nat() }),
  fc.record({ kind: fc.constant('grow' as const), count: fc.integer({ min: 1, max: 400 }) }),
  fc.record({
    kind: fc.constant('continue' as const),
    entity: fc.integer({ min: 0, max: 2999 }),
    count: fc.integer({ min: 1, max: 300 }),
    laterSeconds: fc.integer({ min: 0, max: 200_000 }),
  }),
  fc.record({ kind: fc.constant('merge' as const), seed: fc.integer({ min: 1, max: 1000 }) }),
  fc.record({ kind: fc.constant('register' as const), origin: fc.integer({ min: 1, max: 5 }), firstSeq: fc.integer({ min: 1, max: 400 }) }),
  fc.record({ kind: fc.constant('flag' as const), entity: fc.integer({ min: 0, max: 3000 }), isHide: fc.boolean() }),
  fc.record({ kind: fc.constant('next' as const), pieceBytes: fc.integer({ min: PIECE, max: 4 * PIECE }) }),
);

// 60 runs × up to 40 operations between pieces of an image of ~3,000 entities (~0.6 MB), with
// folds on imaged and on new entities, merges, growth of every array, flags, new origins.
test('state-image - a state folding during the image still yields the state at begin (property)', () => {
  const base = new CrdtSignalState(schema);
  base.applyPacked(freshEntities(0, 3000, 0), 1, 1, new HlcTimestamp(START_NS, 0, 1));
  const random = mulberry32(3);
  const history: Batch[] = makeHistory(schema, random, { origins: [2, 4], eventsPerOrigin: 300, entities: 3000 });
  const peers = new Map<number, CrdtSignalState>();
  const peer = (seed: number): CrdtSignalState => {
    let state = peers.get(seed % 8);
    if (state === undefined) {
      state = sampleState(seed % 8, 40, 3000);
      peers.set(seed % 8, state);
    }
    return state;
  };
  let runsWithCopies = 0;
  let runs = 0;
  fc.assert(
    fc.property(fc.array(operation, { maxLength: 40 }), fc.integer({ min: 0, max: 1000 }), (operations, beginAt) => {
      const state = base.clone();
      const before = history.slice(0, beginAt % 50);
      for (const batch of before) deliver(state, batch);
      const atBegin = state.clone();
      const expected = drain(atBegin.beginImage());
      const stream = state.beginImage();
      assert.is(stream.totalBytes, expected.byteLength);
      const bytes = new Uint8Array(stream.totalBytes);
      let at = 0;
      let nextEntity = 1_000_000;
      const take = (pieceBytes: number): boolean => {
        const piece = stream.next(pieceBytes);
        if (piece === null) return false;
        bytes.set(piece, at);
        at += piece.byteLength;
        return true;
      };
      for (const step of operations) {
        switch (step.kind) {
          case 'fold':
            deliver(state, history[step.batch % history.length]);
            break;
          case 'grow':
            state.applyPacked(freshEntities(nextEntity, step.count, 9000), 7, state.appliedSeq(7) + 1, new HlcTimestamp(START_NS + 5n, 0, 7));
            nextEntity += step.count;
            break;
          case 'continue':
            // Origin 1 again, on entities imaged at begin: their records and rings change in place.
            state.applyPacked(freshEntities(step.entity, Math.min(step.count, 3000 - step.entity), step.laterSeconds), 1, state.appliedSeq(1) + 1, new HlcTimestamp(START_NS + 9n, 0, 1));
            break;
          case 'merge':
            state.merge(peer(step.seed));
            break;
          case 'register':
            state.registerOrigin(step.origin, step.firstSeq);
            break;
          case 'flag':
            state.apply({ entityId: BigInt(step.entity), signalType: step.isHide ? 200 : 201, weight: 1, timestampNs: START_NS }, 8, new HlcTimestamp(START_NS + BigInt(at), state.appliedSeq(8), 8));
            break;
          case 'next':
            take(step.pieceBytes);
            break;
        }
      }
      while (take(PIECE));
      if ((stream as unknown as { copiedBytes: number }).copiedBytes > 0) runsWithCopies++;
      runs++;
      assert.is(at, expected.byteLength);
      assert.is(Buffer.compare(bytes, expected), 0, 'the image is the begin-time state, byte for byte');
      const loaded = loadStateImage(bytes, schema);
      assert.ok(loaded.equals(atBegin));
      state.checkInvariants();
    }),
    { seed: 201, numRuns: 60 },
  );
  // The runs did write to chunks the image still needed (or the test would prove nothing).
  assert.ok(runsWithCopies > runs / 4, `${runsWithCopies} of ${runs} runs saved records aside`);
});

test('state-image - a restored state folds on to the state that folded everything', () => {
  const random = mulberry32(11);
  const history = makeHistory(schema, random, { origins: [1, 2], eventsPerOrigin: 400, entities: 300 });
  const deliveries = messyDelivery(history, random);
  const half = Math.floor(deliveries.length / 2);
  const scratch = new CrdtSignalState(schema);
  for (const batch of deliveries) deliver(scratch, batch);
  const first = new CrdtSignalState(schema);
  for (const batch of deliveries.slice(0, half)) deliver(first, batch);
  const restored = loadSplit(drain(first.beginImage()), random);
  for (const batch of deliveries.slice(half)) deliver(restored, batch);
  for (const batch of deliveries.slice(half)) deliver(first, batch);
  assert.ok(restored.equals(scratch));
  assert.is(Buffer.compare(drain(restored.beginImage()), drain(first.beginImage())), 0, 'the same operations, the same bytes');
});

test('state-image - a second beginImage cancels the first; cancel drops the bookkeeping', () => {
  const state = sampleState(2);
  const first = state.beginImage();
  const second = state.beginImage();
  expectCode(() => first.next(PIECE), 'CLOSED');
  expectCode(() => second.next(1000), 'BAD_REQUEST');
  second.cancel();
  expectCode(() => second.next(PIECE), 'CLOSED');
  assert.ok(loadStateImage(drain(state.beginImage()), schema).equals(state));
});

test('state-image - another schema is SCHEMA_INVALID, an overfull reorder buffer OVERLOADED', () => {
  const bytes = drain(sampleState(3).beginImage());
  const other = parseSignalSchema({ version: 1, signals: [{ id: 1, name: 'view', kind: 'score', halfLifeSeconds: 60, windows: [] }] });
  expectCode(() => new ImageLoader(other).push(bytes), 'SCHEMA_INVALID');
  const state = sampleState(3);
  assert.ok(state.pendingEvents() > 0);
  expectCode(() => loadStateImage(bytes, schema, { maxPendingEvents: state.pendingEvents() - 1 }), 'OVERLOADED');
  assert.is(loadStateImage(bytes, schema, { maxPendingEvents: state.pendingEvents() }).pendingEvents(), state.pendingEvents());
});

test('state-image - a truncated image is DECODE_FAILED at every length', () => {
  const bytes = drain(sampleState(4).beginImage());
  const random = mulberry32(4);
  for (let length = 0; length < bytes.byteLength; length += 1 + Math.floor(random() * 97)) {
    expectCode(() => loadSplit(bytes.subarray(0, length), random), 'DECODE_FAILED');
  }
  expectCode(() => loadSplit(Buffer.concat([bytes, new Uint8Array(1)]), random), 'DECODE_FAILED');
});

// 2,000 images with one random byte changed: each either fails with a typed error, or (a flip
// in a count, a score, a time that still validates) loads a state that passes every invariant,
// images back to exactly the bytes it came from, survives a msgpack snapshot round trip, and
// folds on.
test('state-image - flipped bits give a typed error or a state that keeps its invariants', () => {
  const state = sampleState(6);
  const bytes = drain(state.beginImage());
  const random = mulberry32(6);
  let loadedCount = 0;
  for (let trial = 0; trial < 2000; trial++) {
    const damaged = bytes.slice();
    damaged[Math.floor(random() * damaged.byteLength)] ^= 1 << Math.floor(random() * 8);
    let loaded: CrdtSignalState;
    try {
      loaded = loadSplit(damaged, random);
    } catch (error) {
      assert.ok(isTidelogError(error), `trial ${trial}: ${String(error)}`);
      assert.ok(['DECODE_FAILED', 'SCHEMA_INVALID', 'OVERLOADED'].includes(error.code), `trial ${trial}: ${error.code}`);
      continue;
    }
    loadedCount++;
    loaded.checkInvariants();
    assert.is(Buffer.compare(drain(loaded.beginImage()), damaged), 0, `trial ${trial}: re-images to the damaged bytes`);
    assert.ok(CrdtSignalState.decode(loaded.encode(), schema).equals(loaded), `trial ${trial}: snapshot round trip`);
    loaded.apply({ entityId: 1n, signalType: 1, weight: 1, timestampNs: START_NS }, 77, new HlcTimestamp(START_NS, 0, 77));
    loaded.checkInvariants();
  }
  assert.ok(loadedCount > 0 && loadedCount < 2000, `${loadedCount} damaged images loaded`);
});

test('state-image - hand-made damage is DECODE_FAILED: links out of range, loops, shared chains', () => {
  const state = new CrdtSignalState(schema);
  state.applyPacked(freshEntities(0, 50, 0), 1, 1, new HlcTimestamp(START_NS, 0, 1));
  state.applyPacked(freshEntities(0, 50, 0), 2, 1, new HlcTimestamp(START_NS, 0, 2));
  const bytes = drain(state.beginImage());
  const view = new DataView(bytes.buffer);
  const headerBytes = view.getUint32(12, true);
  const originsBytes = view.getUint32(80, true);
  const keysBytes = state.entityCount * 8;
  const contributionsAt = headerBytes + originsBytes + keysBytes;
  const strideBytes = view.getUint32(68, true);
  const patched = (patch: (data: DataView) => void): Uint8Array => {
    const copy = bytes.slice();
    patch(new DataView(copy.buffer));
    return copy;
  };
  // Contribution 0 is entity 0's origin-1 record; its next links to the origin-2 record.
  expectCode(() => loadStateImage(patched((data) => data.setUint32(contributionsAt + 4, 1_000_000, true)), schema), 'DECODE_FAILED');
  expectCode(() => loadStateImage(patched((data) => data.setUint32(contributionsAt + 4, 1, true)), schema), 'DECODE_FAILED');
  expectCode(() => loadStateImage(patched((data) => data.setUint32(contributionsAt + strideBytes + 4, 1, true)), schema), 'DECODE_FAILED');
  expectCode(() => loadStateImage(patched((data) => data.setFloat64(contributionsAt + 8, Number.NaN, true)), schema), 'DECODE_FAILED');
  expectCode(() => loadStateImage(patched((data) => data.setFloat64(contributionsAt + 24, Number.POSITIVE_INFINITY, true)), schema), 'DECODE_FAILED');
  // Two entities with one id.
  expectCode(() => loadStateImage(patched((data) => data.setUint32(headerBytes + originsBytes + 12, data.getUint32(headerBytes + originsBytes + 4, true), true)), schema), 'DECODE_FAILED');
  expectCode(() => loadStateImage(patched((data) => data.setUint32(16, data.getUint32(16, true) + 8, true)), schema), 'DECODE_FAILED');
  // A header that adds up but asks for 2^30 contributions (80 GiB): refused, never a crash.
  const huge = patched((data) => {
    const sectionAt = headerBytes - 16 * (10 + 5) + 16; // the contributions entry
    const extra = (2 ** 30 - data.getUint32(sectionAt + 8, true)) * strideBytes;
    data.setUint32(sectionAt + 8, 2 ** 30, true);
    const total = data.getUint32(16, true) + data.getUint32(20, true) * 2 ** 32 + extra;
    data.setUint32(16, total % 2 ** 32, true);
    data.setUint32(20, Math.floor(total / 2 ** 32), true);
  });
  expectCode(() => loadStateImage(huge.subarray(0, headerBytes + 1000), schema), 'DECODE_FAILED');
  expectCode(() => loadStateImage(patched((data) => data.setUint32(0, 0, true)), schema), 'DECODE_FAILED');
});

// ≥ 1 M entities: the image comes in pieces of at most 4 MiB, as many as the size needs (each
// next() does work proportional to its piece, never to the state), and loads back equal. No
// wall-clock assertion: the work per call is bounded by counting bytes.
test('state-image - a 1,000,000-entity state images in bounded pieces and loads back equal', () => {
  const state = new CrdtSignalState(schema);
  const entities = 1_000_000;
  const batchEntities = 10_000;
  const bytes = new Uint8Array(batchEntities * 2 * 21);
  const view = new DataView(bytes.buffer);
  for (let first = 0; first < entities; first += batchEntities) {
    for (let index = 0; index < batchEntities; index++) {
      for (const [at, signalType] of [
        [index * 2, 1],
        [index * 2 + 1, 2],
      ]) {
        const offset = at * 21;
        view.setUint32(offset, Math.imul(first + index, 0x9e3779b1) >>> 0, true);
        view.setUint32(offset + 4, 7, true);
        bytes[offset + 8] = signalType;
        view.setFloat32(offset + 9, 1, true);
        view.setBigUint64(offset + 13, START_NS + BigInt(first + index) * 1_000_000n, true);
      }
    }
    state.applyPacked(bytes, 1, first * 2 + 1, new HlcTimestamp(START_NS, 0, 1));
  }
  assert.is(state.entityCount, entities);
  const pieceBytes = 4 << 20;
  const atBegin = state.clone();
  const stream = state.beginImage();
  const loader = new ImageLoader(schema);
  let pieces = 0;
  let folded = 0;
  for (let piece = stream.next(pieceBytes); piece !== null; piece = stream.next(pieceBytes)) {
    assert.ok(piece.byteLength <= pieceBytes);
    pieces++;
    loader.push(piece);
    // The owner keeps folding (existing entities) between pieces.
    if (folded < 20) state.applyPacked(bytes.subarray(0, 21 * 100), 1, entities * 2 + 1 + 100 * folded++, new HlcTimestamp(START_NS + 1n, 0, 1));
  }
  assert.is(pieces, Math.ceil(stream.totalBytes / pieceBytes));
  assert.ok(pieces > 40, `${pieces} pieces`);
  const loaded = loader.finish();
  assert.ok(loaded.equals(atBegin));
  assert.is(loaded.entityCount, entities);
  assert.is(loaded.appliedSeq(1), entities * 2);
  const id = (BigInt(7) << 32n) | BigInt(Math.imul(123_456, 0x9e3779b1) >>> 0);
  assert.equal(loaded.query(id, START_NS).signals.view.eventCount, 1);
});

test.run();
