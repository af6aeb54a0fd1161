import fc from 'fast-check';
import { Packr } from 'msgpackr';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { expectCode } from '../support/expect-code.ts';
import { HLC_TIMESTAMP_BYTES, HlcTimestamp, registerHlcExtension } from '../../src/crdt/index.ts';

const timestamp = fc
  .record({
    wallNs: fc.bigInt({ min: 0n, max: 0xffff_ffff_ffff_ffffn }),
    logical: fc.integer({ min: 0, max: 0xffff_ffff }),
    nodeId: fc.integer({ min: 0, max: 0xffff_ffff }),
  })
  .map(({ wallNs, logical, nodeId }) => new HlcTimestamp(wallNs, logical, nodeId));


test('hlc-timestamp - orders by wall, then logical, then node id', () => {
  const a = new HlcTimestamp(10n, 5, 9);
  const b = new HlcTimestamp(11n, 0, 0);
  const c = new HlcTimestamp(10n, 6, 0);
  const d = new HlcTimestamp(10n, 5, 10);
  assert.ok(b.isAfter(a) && c.isAfter(a) && d.isAfter(a));
  assert.ok(b.isAfter(c) && c.isAfter(d));
  assert.is(a.compare(new HlcTimestamp(10n, 5, 9)), 0);
});

test('hlc-timestamp - the 16-byte form round-trips and sorts like the timestamps (property)', () => {
  fc.assert(
    fc.property(timestamp, timestamp, (a, b) => {
      const bytesA = a.toBytes();
      assert.is(bytesA.byteLength, HLC_TIMESTAMP_BYTES);
      assert.ok(HlcTimestamp.fromBytes(bytesA).equals(a));
      assert.is(Math.sign(Buffer.compare(bytesA, b.toBytes())), Math.sign(a.compare(b)));
    }),
    { seed: 7, numRuns: 2000 },
  );
});

test('hlc-timestamp - JSON round-trips', () => {
  fc.assert(
    fc.property(timestamp, (a) => {
      assert.ok(HlcTimestamp.fromJSON(JSON.parse(JSON.stringify(a))).equals(a));
    }),
    { seed: 8, numRuns: 500 },
  );
});

test('hlc-timestamp - rides in msgpackr as extension 0x48', () => {
  registerHlcExtension();
  registerHlcExtension();
  const packr = new Packr({ useRecords: false });
  const stamp = new HlcTimestamp(1_700_000_000_000_000_123n, 42, 7);
  const decoded = packr.unpack(packr.pack({ at: stamp, list: [stamp] })) as { at: HlcTimestamp; list: HlcTimestamp[] };
  assert.ok(decoded.at instanceof HlcTimestamp);
  assert.ok(decoded.at.equals(stamp));
  assert.ok(decoded.list[0].equals(stamp));
  assert.is(packr.pack(stamp).byteLength, 2 + HLC_TIMESTAMP_BYTES);
});

test('hlc-timestamp - bad input is BAD_REQUEST, bad encodings are DECODE_FAILED', () => {
  expectCode(() => new HlcTimestamp(-1n, 0, 0), 'BAD_REQUEST');
  expectCode(() => new HlcTimestamp(2n ** 64n, 0, 0), 'BAD_REQUEST');
  expectCode(() => new HlcTimestamp(0n, 1.5, 0), 'BAD_REQUEST');
  expectCode(() => new HlcTimestamp(0n, 0, -1), 'BAD_REQUEST');
  expectCode(() => HlcTimestamp.fromBytes(new Uint8Array(15)), 'DECODE_FAILED');
  expectCode(() => HlcTimestamp.fromJSON({ wallNs: 12, logical: 0, nodeId: 0 }), 'DECODE_FAILED');
  expectCode(() => HlcTimestamp.fromJSON({ wallNs: '12', logical: -1, nodeId: 0 }), 'DECODE_FAILED');
  expectCode(() => HlcTimestamp.fromJSON(null), 'DECODE_FAILED');
});

test.run();
