import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fc from 'fast-check';
import {
  BATCH_HEADER_BYTES,
  BatchKind,
  MAX_NOTE_BYTES,
  encodeBatch,
  notesSectionBytes,
  readBatchHeader,
  readNotes,
  verifyBatch,
  writeNotes,
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
        assert.equal(parsed.header, {
          kind: BatchKind.Events,
          shardId,
          count,
          leaderEpoch: 1,
          firstSeq,
          payloadBytes: payload.byteLength,
          notesBytes: 0,
          timestampNs,
          skipsDedup: false,
        });
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

/** An events batch with notes: count events, then the notes section. */
function notesBatch(firstSeq: number, count: number, notes: readonly Uint8Array[]): Uint8Array {
  const events = encodeEvents(Array.from({ length: count }, (_, index) => makeEvent(index + 1)));
  const notesBytes = notesSectionBytes(notes);
  const payload = new Uint8Array(events.byteLength + notesBytes);
  payload.set(events);
  writeNotes(payload, events.byteLength, notes);
  return encodeBatch({ kind: BatchKind.Events, shardId: 3, count, leaderEpoch: 7, firstSeq, notesBytes, timestampNs: 5n }, payload);
}

const bytesOf = (...values: number[]): Uint8Array => Uint8Array.from(values);

test('batch-format - a batch without notes is byte-identical to the layout before notes existed', () => {
  // Written by the encoder as it was before notes (flags 0, reserved word 0).
  const golden =
    '544c42320200000007000000020000000900000000000000e8030000000000002a0000000000000015cd853dfe9c9717' +
    '920b7c042bf26bfce2cc2af21183af712a00000000000000030000c03f00002a36fe9c97172b00000000000000040000' +
    '00c001002a36fe9c9717';
  const events = encodeEvents([
    { entityId: 42n, signalType: 3, weight: 1.5, timestampNs: 1_700_000_000_000_000_000n },
    { entityId: 43n, signalType: 4, weight: -2, timestampNs: 1_700_000_000_000_000_001n },
  ]);
  const header = { kind: BatchKind.Events, shardId: 7, count: 2, leaderEpoch: 9, firstSeq: 1000, timestampNs: 1_700_000_000_123_456_789n } as const;
  assert.is(Buffer.from(encodeBatch(header, events)).toString('hex'), golden);
  assert.is(Buffer.from(encodeBatch({ ...header, notesBytes: 0 }, events)).toString('hex'), golden);
});

test('batch-format - notes: flag bit 2, notesBytes at offset 36, section after the events', () => {
  const batch = notesBatch(10, 2, [bytesOf(1, 2, 3), bytesOf(9)]);
  const view = new DataView(batch.buffer, batch.byteOffset);
  const eventsEnd = BATCH_HEADER_BYTES + 2 * EVENT_BYTES;
  assert.is(view.getUint16(6, true), 0b100 | BatchKind.Events);
  assert.is(view.getUint32(12, true), 2);
  assert.is(view.getUint32(36, true), 4 + 3 + 4 + 1);
  assert.is(view.getUint32(32, true), 2 * EVENT_BYTES + 12);
  assert.is(batch.byteLength, eventsEnd + 12);
  assert.is(view.getUint32(eventsEnd, true), 3);
  assert.equal([...batch.subarray(eventsEnd + 4, eventsEnd + 7)], [1, 2, 3]);
  assert.is(view.getUint32(eventsEnd + 7, true), 1);
  assert.is(batch[eventsEnd + 11], 9);
  const parsed = readBatchHeader(batch, 0);
  assert.ok(parsed.ok && parsed.header.notesBytes === 12 && parsed.header.count === 2);
  assert.ok(verifyBatch(batch, 0, 2 * EVENT_BYTES + 12));
});

test('batch-format - events and notes encode and decode as a pair, count 0 included (property)', () => {
  const noteArbitrary = fc.uint8Array({ minLength: 1, maxLength: 300 });
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 2 ** 40 }),
      fc.integer({ min: 0, max: 20 }),
      fc.array(noteArbitrary, { minLength: 1, maxLength: 6 }),
      (firstSeq, count, notes) => {
        const batch = notesBatch(firstSeq, count, notes);
        const parsed = readBatchHeader(batch, 0);
        assert.ok(parsed.ok);
        if (!parsed.ok) return;
        const { header } = parsed;
        assert.is(header.count, count);
        assert.is(header.firstSeq, firstSeq);
        assert.is(header.notesBytes, notesSectionBytes(notes));
        assert.ok(verifyBatch(batch, 0, header.payloadBytes));
        const decoded = readNotes(batch, BATCH_HEADER_BYTES + count * EVENT_BYTES, header.notesBytes);
        assert.equal(decoded?.map((note) => [...note]), notes.map((note) => [...note]));
      },
    ),
    { seed: 65, numRuns: 200 },
  );
});

test('batch-format - readNotes refuses lengths that do not use the section exactly', () => {
  const section = (...parts: Array<[number, number]>): Uint8Array => {
    // [declared length, actual bytes]
    const out = new Uint8Array(parts.reduce((sum, [, actual]) => sum + 4 + actual, 0));
    const view = new DataView(out.buffer);
    let at = 0;
    for (const [declared, actual] of parts) {
      view.setUint32(at, declared, true);
      at += 4 + actual;
    }
    return out;
  };
  assert.equal(readNotes(section([2, 2], [1, 1]), 0, 11)?.length, 2);
  assert.is(readNotes(section([2, 3]), 0, 7), null, 'a byte left over');
  assert.is(readNotes(section([3, 2]), 0, 6), null, 'a note running past the section');
  assert.is(readNotes(section([0, 0], [1, 1]), 0, 9), null, 'an empty note');
  assert.is(readNotes(section([MAX_NOTE_BYTES + 1, 2]), 0, 6), null, 'a note beyond 64 KiB');
  assert.is(readNotes(section([2, 2]).subarray(0, 3), 0, 3), null, 'a cut length prefix');
  assert.is(readNotes(section([2, 2]), 0, 8), null, 'a section past the end of the bytes');
  assert.equal(readNotes(section([MAX_NOTE_BYTES, MAX_NOTE_BYTES]), 0, 4 + MAX_NOTE_BYTES)?.length, 1, 'exactly 64 KiB is fine');
});

test('batch-format - refuses impossible notes headers before trusting lengths', () => {
  const batch = notesBatch(1, 1, [bytesOf(5, 6)]);
  const mutate = (change: (v: DataView) => void): ReturnType<typeof readBatchHeader> => {
    const copy = batch.slice();
    change(new DataView(copy.buffer));
    return readBatchHeader(copy, 0);
  };
  assert.ok(readBatchHeader(batch, 0).ok);
  assert.equal(mutate((v) => v.setUint16(6, 0b100 | BatchKind.Checkpoint, true)), { ok: false, problem: 'flags' });
  assert.equal(mutate((v) => v.setUint16(6, 0b10000, true)), { ok: false, problem: 'flags' }, 'an unknown flag bit');
  assert.equal(mutate((v) => v.setUint16(6, 0b1000 | BatchKind.Checkpoint, true)), { ok: false, problem: 'flags' }, 'SKIPS_DEDUP on a checkpoint');
  assert.equal(mutate((v) => v.setUint16(6, 0b1000 | BatchKind.Marker, true)), { ok: false, problem: 'flags' }, 'SKIPS_DEDUP on a marker');
  assert.equal(mutate((v) => v.setUint16(6, 0b100 | 3, true)), { ok: false, problem: 'flags' }, 'kind 3 does not exist');
  assert.equal(mutate((v) => v.setUint16(6, BatchKind.Events, true)), { ok: false, problem: 'length' }, 'notesBytes without the flag');
  assert.equal(mutate((v) => v.setUint32(36, 7, true)), { ok: false, problem: 'length' }, 'notesBytes disagreeing with payloadBytes');
  assert.equal(mutate((v) => v.setUint32(12, 0, true)), { ok: false, problem: 'length' }, 'count disagreeing with payloadBytes');
  assert.equal(
    mutate((v) => {
      v.setUint32(36, 4, true);
      v.setUint32(32, EVENT_BYTES + 4, true);
    }),
    { ok: false, problem: 'length' },
    'a section too short for one note',
  );
  const noEvents = notesBatch(9, 0, [bytesOf(1)]);
  const parsed = readBatchHeader(noEvents, 0);
  assert.ok(parsed.ok && parsed.header.count === 0 && parsed.header.firstSeq === 9, 'count 0 is fine with notes');
  const copy = noEvents.slice();
  new DataView(copy.buffer).setUint16(6, BatchKind.Events, true);
  new DataView(copy.buffer).setUint32(36, 0, true);
  assert.equal(readBatchHeader(copy, 0), { ok: false, problem: 'length' }, 'count 0 without notes');
});

test('batch-format - the checksum covers every byte of the notes section', () => {
  const batch = notesBatch(1, 1, [bytesOf(1, 2, 3, 4), bytesOf(0)]);
  for (let offset = BATCH_HEADER_BYTES + EVENT_BYTES; offset < batch.byteLength; offset++) {
    const copy = batch.slice();
    copy[offset] ^= 0x20;
    const parsed = readBatchHeader(copy, 0);
    assert.not.ok(parsed.ok && verifyBatch(copy, 0, parsed.header.payloadBytes), `flip at byte ${offset} went unnoticed`);
  }
});

test.run();
