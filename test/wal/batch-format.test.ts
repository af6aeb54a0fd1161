import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fc from 'fast-check';
import {
  BATCH_HEADER_BYTES,
  BatchKind,
  encodeBatch,
  readBatchHeader,
  verifyBatch,
} from '../../src/wal/batch-format.ts';
import { initChecksum } from '../../src/wal/checksum.ts';
import { EVENT_BYTES, encodeEvents } from '../../src/event.ts';
import { makeEvent } from '../support/wal-fixtures.ts';

await initChecksum();

function eventsBatch(firstSeq: number, count: number): Uint8Array {
  const events = Array.from({ length: count }, (_, index) => makeEvent(firstSeq + index));
  return encodeBatch(
    { kind: BatchKind.Events, shardId: 3, count, leaderEpoch: 7, firstSeq, timestampNs: 123_456_789n },
    encodeEvents(events),
  );
}

test('batch-format - header fields sit at the documented offsets', () => {
  const batch = eventsBatch(42, 2);
  const view = new DataView(batch.buffer, batch.byteOffset);
  assert.is(batch.byteLength, BATCH_HEADER_BYTES + 2 * EVENT_BYTES);
  assert.is(new TextDecoder().decode(batch.subarray(0, 4)), 'TLB2');
  assert.is(view.getUint16(4, true), 2);
  assert.is(view.getUint16(6, true), BatchKind.Events);
  assert.is(view.getUint32(8, true), 3);
  assert.is(view.getUint32(12, true), 2);
  assert.is(view.getBigUint64(16, true), 7n);
  assert.is(view.getBigUint64(24, true), 42n);
  assert.is(view.getUint32(32, true), 2 * EVENT_BYTES);
  assert.is(view.getUint32(36, true), 0);
  assert.is(view.getBigUint64(40, true), 123_456_789n);
});

test('batch-format - encode and decode are a pair (property)', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 2 ** 40 }),
      fc.integer({ min: 1, max: 40 }),
      fc.integer({ min: 0, max: 65_535 }),
      fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
      (firstSeq, count, shardId, timestampNs) => {
        const payload = new Uint8Array(count * EVENT_BYTES).map((_, index) => (index * 31 + firstSeq) & 0xff);
        const batch = encodeBatch({ kind: BatchKind.Events, shardId, count, leaderEpoch: 1, firstSeq, timestampNs }, payload);
        const parsed = readBatchHeader(batch, 0);
        assert.ok(parsed.ok);
        if (!parsed.ok) return;
        assert.equal(parsed.header, { kind: BatchKind.Events, shardId, count, leaderEpoch: 1, firstSeq, payloadBytes: payload.byteLength, timestampNs });
        assert.ok(verifyBatch(batch, 0, payload.byteLength));
      },
    ),
    { seed: 64, numRuns: 200 },
  );
});

test('batch-format - the checksum covers every header byte and every payload byte', () => {
  const batch = eventsBatch(1, 3);
  for (let offset = 0; offset < batch.byteLength; offset++) {
    const copy = batch.slice();
    copy[offset] ^= 0x01;
    const parsed = readBatchHeader(copy, 0);
    const isValid = parsed.ok && verifyBatch(copy, 0, parsed.header.payloadBytes);
    assert.not.ok(isValid, `flip at byte ${offset} went unnoticed`);
  }
});

test('batch-format - rejects impossible headers before trusting lengths', () => {
  const batch = eventsBatch(1, 1);
  const view = new DataView(batch.buffer, batch.byteOffset);
  const mutate = (change: (v: DataView) => void): ReturnType<typeof readBatchHeader> => {
    const copy = batch.slice();
    change(new DataView(copy.buffer));
    return readBatchHeader(copy, 0);
  };
  assert.equal(readBatchHeader(batch.subarray(0, 63), 0), { ok: false, problem: 'short' });
  assert.equal(mutate((v) => v.setUint32(0, 0xdeadbeef, true)), { ok: false, problem: 'magic' });
  assert.equal(mutate((v) => v.setUint16(4, 3, true)), { ok: false, problem: 'version' });
  assert.equal(mutate((v) => v.setUint16(6, 9, true)), { ok: false, problem: 'flags' });
  assert.equal(mutate((v) => v.setUint32(32, 0xffff_ffff, true)), { ok: false, problem: 'length' });
  assert.equal(mutate((v) => v.setUint32(12, 0, true)), { ok: false, problem: 'length' });
  assert.equal(mutate((v) => v.setBigUint64(24, 0n, true)), { ok: false, problem: 'seq' });
  assert.ok(view.getUint32(0, true) !== 0);
});

test.run();
