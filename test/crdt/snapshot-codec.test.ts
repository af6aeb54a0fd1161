import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { Packr } from 'msgpackr';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { expectCode } from '../support/expect-code.ts';
import { isTidelogError } from '../../src/errors.ts';
import { CrdtSignalState, defaultSignalSchema, HlcTimestamp, parseSignalSchema, SNAPSHOT_MAGIC, SNAPSHOT_VERSION } from '../../src/crdt/index.ts';
import { deliver, makeHistory, messyDelivery, mulberry32 } from './replica-simulation.ts';

const schema = defaultSignalSchema();
const packr = new Packr({ useRecords: false });


/** A state with scores, flags, ids ≥ 2^53, several origins and a non-empty reorder buffer. */
function sampleState(seed: number): CrdtSignalState {
  const random = mulberry32(seed);
  const history = makeHistory(schema, random, { origins: [1, 2, 3], eventsPerOrigin: 40, entities: 12, bigIdShare: 0.2 });
  const state = new CrdtSignalState(schema);
  for (const batch of messyDelivery(history, random).slice(0, 40)) deliver(state, batch);
  return state;
}

// 200 random states, each with ~80 events folded in a random order.
test('snapshot-codec - snapshots round-trip byte-identically (property)', () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 2 ** 31 - 1 }), (seed) => {
      const state = sampleState(seed);
      const bytes = state.encode();
      const decoded = CrdtSignalState.decode(bytes, schema);
      assert.ok(decoded.equals(state));
      assert.is(decoded.pendingEvents(), state.pendingEvents());
      assert.is(Buffer.compare(decoded.encode(), bytes), 0);
      assert.is(Buffer.compare(state.clone().encode(), bytes), 0);
    }),
    { seed: 91, numRuns: 200 },
  );
});

test('snapshot-codec - an empty state encodes to a small canonical snapshot', () => {
  const bytes = new CrdtSignalState(schema).encode();
  assert.ok(bytes.byteLength < 80);
  assert.ok(CrdtSignalState.decode(bytes, schema).equals(new CrdtSignalState(schema)));
});

test('snapshot-codec - malformed bytes are DECODE_FAILED', () => {
  const bytes = sampleState(3).encode();
  expectCode(() => CrdtSignalState.decode(new Uint8Array(0), schema), 'DECODE_FAILED');
  expectCode(() => CrdtSignalState.decode(bytes.subarray(0, bytes.byteLength - 5), schema), 'DECODE_FAILED');
  expectCode(() => CrdtSignalState.decode(Uint8Array.from([0xc1, 0xc1, 0xc1]), schema), 'DECODE_FAILED');
  expectCode(() => CrdtSignalState.decode(packr.pack(['something else', SNAPSHOT_VERSION, schema.fingerprint, [], 0]), schema), 'DECODE_FAILED');
  expectCode(() => CrdtSignalState.decode(packr.pack([SNAPSHOT_MAGIC, SNAPSHOT_VERSION + 1, schema.fingerprint, [], 0]), schema), 'DECODE_FAILED');
  expectCode(() => CrdtSignalState.decode(packr.pack([SNAPSHOT_MAGIC, 1, schema.fingerprint, [], 0]), schema), 'DECODE_FAILED');
  expectCode(() => CrdtSignalState.decode(packr.pack([SNAPSHOT_MAGIC, SNAPSHOT_VERSION, schema.fingerprint, [], 1]), schema), 'DECODE_FAILED');
});

test('snapshot-codec - a corrupted snapshot fails with a typed error or decodes canonically', () => {
  const bytes = sampleState(4).encode();
  const random = mulberry32(9);
  for (let trial = 0; trial < 300; trial++) {
    const corrupted = bytes.slice();
    corrupted[Math.floor(random() * corrupted.byteLength)] ^= 1 + Math.floor(random() * 255);
    try {
      const decoded = CrdtSignalState.decode(corrupted, schema);
      // A flip that still decodes (a score's low bits, a count) must at least re-encode as read.
      assert.is(Buffer.compare(decoded.encode(), corrupted), 0);
    } catch (error) {
      assert.ok(isTidelogError(error), `trial ${trial}: ${String(error)}`);
      assert.ok(['DECODE_FAILED', 'SCHEMA_INVALID'].includes((error as { code: string }).code));
    }
  }
});

test('snapshot-codec - non-canonical order is DECODE_FAILED', () => {
  const entity = (id: number): unknown[] => [id, [], [[0, true, new Uint8Array(16)]]];
  const header = (count: number, origins: unknown[] = []): unknown[] => [SNAPSHOT_MAGIC, SNAPSHOT_VERSION, schema.fingerprint, origins, count];
  const stream = (...values: unknown[]): Uint8Array => Buffer.concat(values.map((value) => packr.pack(value)));
  assert.is(CrdtSignalState.decode(stream(header(2), entity(1), entity(2)), schema).entityCount, 2);
  expectCode(() => CrdtSignalState.decode(stream(header(2), entity(2), entity(1)), schema), 'DECODE_FAILED');
  expectCode(() => CrdtSignalState.decode(stream(header(1), [1, [], []]), schema), 'DECODE_FAILED');
  expectCode(() => CrdtSignalState.decode(stream(header(1), [1, [[99, []]], []]), schema), 'DECODE_FAILED');
  // An origin row's lastHlc: nil before anything folded, and only then.
  const hlc = new Uint8Array(16);
  assert.is(CrdtSignalState.decode(stream(header(0, [[1, 3, [], hlc]])), schema).appliedSeq(1), 3);
  assert.is(CrdtSignalState.decode(stream(header(0, [[1, 3, [], null]])), schema).lastHlc(1), undefined);
  expectCode(() => CrdtSignalState.decode(stream(header(0, [[1, 0, [], hlc]])), schema), 'DECODE_FAILED');
  expectCode(() => CrdtSignalState.decode(stream(header(0, [[1, 0, [], null]])), schema), 'DECODE_FAILED');
  expectCode(() => CrdtSignalState.decode(stream(header(0, [[1, 3, []]])), schema), 'DECODE_FAILED');
});

// test/crdt/fixtures/state-v2.msgpack was written by the release before the typed-array state
// (commit 7a1032f, float64 records of 472 bytes), from the same history as below.
test('snapshot-codec - a version-2 snapshot written by the previous release loads, and re-encodes byte for byte', () => {
  const fixture = new Uint8Array(readFileSync(new URL('./fixtures/state-v2.msgpack', import.meta.url)));
  const random = mulberry32(2024);
  const history = makeHistory(schema, random, { origins: [1, 2, 3], eventsPerOrigin: 150, entities: 40, bigIdShare: 0.2 });
  const state = new CrdtSignalState(schema);
  const deliveries = messyDelivery(history, random);
  for (const batch of deliveries.slice(0, Math.ceil(deliveries.length * 0.9))) deliver(state, batch);
  const loaded = CrdtSignalState.decode(fixture, schema);
  assert.ok(loaded.equals(state));
  loaded.checkInvariants();
  assert.is(loaded.pendingEvents(), 335);
  assert.is(Buffer.compare(state.encode(), fixture), 0);
  assert.is(Buffer.compare(loaded.encode(), fixture), 0);
});

test('snapshot-codec - a window whose newest bucket is not its anchor\'s is DECODE_FAILED', () => {
  const state = new CrdtSignalState(schema);
  state.apply({ entityId: 1n, signalType: 1, weight: 1, timestampNs: 1_700_000_000_000_000_000n }, 1, new HlcTimestamp(1n, 0, 1));
  const values = packr.unpackMultiple(state.encode()) as unknown[];
  const contributions = ((values[1] as unknown[][])[1] as unknown[][])[0][1] as unknown[][];
  (contributions[0][9] as number[][])[0][0] -= 1; // the 1h window's only bucket, one before the anchor's
  expectCode(() => CrdtSignalState.decode(Buffer.concat(values.map((value) => packr.pack(value))), schema), 'DECODE_FAILED');
});

test('snapshot-codec - a snapshot of another schema is SCHEMA_INVALID', () => {
  const other = parseSignalSchema({ version: 1, signals: [{ id: 1, name: 'view', kind: 'score', halfLifeSeconds: 60, windows: [] }] });
  expectCode(() => CrdtSignalState.decode(sampleState(5).encode(), other), 'SCHEMA_INVALID');
});

test.run();
