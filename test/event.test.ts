import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fc from 'fast-check';
import { EVENT_BYTES, decodeEvents, encodeEvents, toEntityId, validatePacked, type SignalEvent, type SignalEventInput } from '../src/event.ts';
import { isTidelogError } from '../src/errors.ts';

const arbitraryEvent: fc.Arbitrary<SignalEvent> = fc.record({
  entityId: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
  signalType: fc.integer({ min: 0, max: 255 }),
  weight: fc.float({ noNaN: true, noDefaultInfinity: true }),
  timestampNs: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
});

test('event - packs to 21 bytes little-endian at the documented offsets', () => {
  const bytes = encodeEvents([{ entityId: 0x0102030405060708n, signalType: 0xab, weight: 1.5, timestampNs: 0x1112131415161718n }]);
  assert.is(bytes.byteLength, EVENT_BYTES);
  assert.equal([...bytes.subarray(0, 8)], [8, 7, 6, 5, 4, 3, 2, 1]);
  assert.is(bytes[8], 0xab);
  assert.is(new DataView(bytes.buffer).getFloat32(9, true), 1.5);
  assert.equal([...bytes.subarray(13, 21)], [0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11]);
});

test('event - encode/decode round-trips any valid event bit for bit (property)', () => {
  fc.assert(
    fc.property(fc.array(arbitraryEvent, { maxLength: 50 }), (events) => {
      const decoded = decodeEvents(encodeEvents(events));
      assert.is(decoded.length, events.length);
      decoded.forEach((event, index) => {
        assert.is(event.entityId, events[index].entityId);
        assert.is(event.signalType, events[index].signalType);
        assert.ok(Object.is(event.weight, Math.fround(events[index].weight)));
        assert.is(event.timestampNs, events[index].timestampNs);
      });
    }),
    { seed: 21, numRuns: 300 },
  );
});

test('event - rejects what would not round-trip with BAD_REQUEST', () => {
  const bad: Array<Partial<SignalEvent> | null> = [
    { entityId: -1n, signalType: 1, weight: 1, timestampNs: 0n },
    { entityId: 1n << 64n, signalType: 1, weight: 1, timestampNs: 0n },
    { entityId: 1n, signalType: 256, weight: 1, timestampNs: 0n },
    { entityId: 1n, signalType: 1.5, weight: 1, timestampNs: 0n },
    { entityId: 1n, signalType: 1, weight: Number.NaN, timestampNs: 0n },
    { entityId: 1n, signalType: 1, weight: Number.POSITIVE_INFINITY, timestampNs: 0n },
    { entityId: 1n, signalType: 1, weight: 1e39, timestampNs: 0n },
    { entityId: 1n, signalType: 1, weight: 1, timestampNs: -5n },
    null,
  ];
  for (const event of bad) {
    try {
      encodeEvents([event as SignalEvent]);
      assert.unreachable(`accepted ${String(event)}`);
    } catch (error) {
      assert.ok(isTidelogError(error, 'BAD_REQUEST'), String(error));
    }
  }
});

test('event - entityId: a u64 bigint or a non-negative safe integer number; decoded always as a bigint', () => {
  const asNumber: SignalEventInput = { entityId: 42, signalType: 1, weight: 1, timestampNs: 7n };
  const maxSafe: SignalEventInput = { entityId: Number.MAX_SAFE_INTEGER, signalType: 1, weight: 1, timestampNs: 7n };
  const packed = encodeEvents([asNumber, maxSafe]);
  assert.equal(packed, encodeEvents([{ ...asNumber, entityId: 42n }, { ...maxSafe, entityId: 2n ** 53n - 1n }]));
  assert.equal(decodeEvents(packed).map((event) => event.entityId), [42n, 2n ** 53n - 1n]);
  assert.is(toEntityId(0), 0n);
  assert.is(toEntityId(Number.MAX_SAFE_INTEGER), 2n ** 53n - 1n);
  assert.is(toEntityId(2n ** 64n - 1n), 2n ** 64n - 1n);
});

test('event - an entityId that is no u64 is BAD_REQUEST naming the field, the event and the value', () => {
  const bad: Array<[unknown, string]> = [
    [2 ** 53, '9007199254740992'],
    [1.5, '1.5'],
    [-1, '-1'],
    [Number.NaN, 'NaN'],
    [Number.POSITIVE_INFINITY, 'Infinity'],
    [-1n, '-1n'],
    [2n ** 64n, '18446744073709551616n'],
    ['42', '"42"'],
    [undefined, 'undefined'],
  ];
  for (const [entityId, shown] of bad) {
    const good: SignalEventInput = { entityId: 1n, signalType: 1, weight: 1, timestampNs: 0n };
    try {
      encodeEvents([good, { ...good, entityId: entityId as bigint }]);
      assert.unreachable(`accepted ${shown}`);
    } catch (error) {
      assert.ok(isTidelogError(error, 'BAD_REQUEST'), String(error));
      assert.is(error.message, `BAD_REQUEST: event 1: entityId must be a u64 bigint or a non-negative safe integer, got ${shown}`);
      assert.equal(error.context, { index: 1, entityId: shown });
    }
    try {
      toEntityId(entityId);
      assert.unreachable(`toEntityId accepted ${shown}`);
    } catch (error) {
      assert.ok(isTidelogError(error, 'BAD_REQUEST'), String(error));
      assert.is(error.message, `BAD_REQUEST: entityId must be a u64 bigint or a non-negative safe integer, got ${shown}`);
    }
  }
});

test('event - packed input must be n × 21 bytes with finite weights', () => {
  assert.is(validatePacked(new Uint8Array(42)), 2);
  assert.throws(() => validatePacked(new Uint8Array(22)), (error: unknown) => isTidelogError(error, 'BAD_REQUEST'));
  const packed = encodeEvents([{ entityId: 1n, signalType: 1, weight: 1, timestampNs: 1n }]);
  new DataView(packed.buffer).setFloat32(9, Number.NaN, true);
  assert.throws(() => validatePacked(packed), (error: unknown) => isTidelogError(error, 'BAD_REQUEST'));
});

test.run();
