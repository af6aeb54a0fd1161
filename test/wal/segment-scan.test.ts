import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BATCH_HEADER_BYTES, BatchKind, encodeBatch, notesSectionBytes, writeNotes } from '../../src/wal/batch-format.ts';
import { encodeCheckpointRecord } from '../../src/wal/checkpoint-file.ts';
import { initChecksum } from '../../src/wal/checksum.ts';
import { EVENT_BYTES, encodeEvents } from '../../src/event.ts';
import { scanSegment } from '../../src/wal/segment-scan.ts';
import { encodeMarkerRecord } from '../../src/wal/segment-head.ts';
import { makeEvent } from '../support/wal-fixtures.ts';

await initChecksum();

const SHARD = 0;

function batch(firstSeq: number, count: number): Uint8Array {
  const events = Array.from({ length: count }, (_, index) => makeEvent(firstSeq + index));
  return encodeBatch(
    { kind: BatchKind.Events, shardId: SHARD, count, leaderEpoch: 0, firstSeq, timestampNs: BigInt(firstSeq) },
    encodeEvents(events),
  );
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.byteLength, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.byteLength;
  }
  return out;
}

/** An events batch (count may be 0) carrying `notes`. */
function noted(firstSeq: number, count: number, notes: readonly Uint8Array[]): Uint8Array {
  const events = encodeEvents(Array.from({ length: count }, (_, index) => makeEvent(firstSeq + index)));
  const notesBytes = notesSectionBytes(notes);
  const payload = new Uint8Array(events.byteLength + notesBytes);
  payload.set(events);
  writeNotes(payload, events.byteLength, notes);
  return encodeBatch({ kind: BatchKind.Events, shardId: SHARD, count, leaderEpoch: 0, firstSeq, notesBytes, timestampNs: 1n }, payload);
}

const head = encodeCheckpointRecord(SHARD, 1, 0n, new TextEncoder().encode('state@0'));
const batch1 = batch(1, 5);
const batch2 = batch(6, 5);

function scanLast(bytes: Uint8Array) {
  return scanSegment(bytes, { shard: SHARD, firstSeq: 1, isLastSegment: true });
}

test('segment-scan - a clean segment with a legacy head yields every batch and the head snapshot', () => {
  const scan = scanLast(concat(head, batch1, batch2));
  assert.is(scan.damage, null);
  assert.is(scan.tornTail, null);
  assert.is(scan.batches.length, 2);
  assert.is(scan.lastSeq, 10);
  assert.is(scan.head?.kind, 'legacy');
  assert.is(new TextDecoder().decode(scan.head?.legacySnapshot ?? new Uint8Array()), 'state@0');
});

test('segment-scan - a segment opening with a marker yields its fields and every batch', () => {
  const marker = encodeMarkerRecord({ shard: SHARD, firstSeq: 1, leaderEpoch: 4, timestampNs: 77n, snapshotSeq: 0, prevFirstSeq: 0, prevDedupNs: 0n });
  const scan = scanLast(concat(marker, batch1, batch2));
  assert.is(scan.damage, null);
  assert.is(scan.batches.length, 2);
  assert.is(scan.headBytes, marker.byteLength);
  assert.equal(scan.head, { kind: 'marker', timestampNs: 77n, leaderEpoch: 4, snapshotSeq: 0, prevFirstSeq: 0, prevDedupNs: 0n, legacySnapshot: null });
  const wrongSeq = encodeMarkerRecord({ shard: SHARD, firstSeq: 2, leaderEpoch: 4, timestampNs: 77n, snapshotSeq: 0, prevFirstSeq: 0, prevDedupNs: 0n });
  assert.is(scanLast(concat(wrongSeq, batch1)).damage?.code, 'CHECKPOINT_DAMAGED', 'a marker naming another seq is damage');
});

test('segment-scan - torn write after a complete batch keeps the batch (seed offsets)', () => {
  for (const tornAt of [0, 10, 32, 63, BATCH_HEADER_BYTES, BATCH_HEADER_BYTES + 5, BATCH_HEADER_BYTES + 20]) {
    const scan = scanLast(concat(head, batch1, batch2.subarray(0, tornAt)));
    assert.is(scan.damage, null, `torn at ${tornAt}`);
    assert.is(scan.lastSeq, 5, `torn at ${tornAt}`);
    assert.is(scan.validBytes, head.byteLength + batch1.byteLength);
    assert.is(scan.tornTail === null, tornAt === 0, `torn at ${tornAt}`);
  }
});

test('segment-scan - truncation at every byte of a batch yields nothing or the whole batch', () => {
  for (let cut = 0; cut <= batch1.byteLength; cut++) {
    const scan = scanLast(concat(head, batch1.subarray(0, cut)));
    assert.is(scan.damage, null, `cut at ${cut}`);
    assert.is(scan.batches.length, cut === batch1.byteLength ? 1 : 0, `cut at ${cut}`);
    assert.is(scan.lastSeq, cut === batch1.byteLength ? 5 : 0, `cut at ${cut}`);
  }
});

test('segment-scan - trailing zeroes after the last batch are a torn tail', () => {
  const scan = scanLast(concat(head, batch1, new Uint8Array(4096)));
  assert.is(scan.damage, null);
  assert.is(scan.lastSeq, 5);
  assert.ok(scan.tornTail);
  assert.is(scan.validBytes, head.byteLength + batch1.byteLength);
});

test('segment-scan - damage before the tail is an error naming the offset, not a truncation', () => {
  const bytes = concat(head, batch1, batch2);
  bytes[head.byteLength + BATCH_HEADER_BYTES + 3] ^= 0x40; // inside batch1's payload; batch2 is intact
  const scan = scanLast(bytes);
  assert.is(scan.damage?.code, 'CHECKSUM_MISMATCH');
  assert.is(scan.damage?.offset, head.byteLength);
  assert.is(scan.tornTail, null);
  assert.is(scan.lastSeq, 0);
});

test('segment-scan - a length field damaged before the tail is damage, not a torn tail', () => {
  const bytes = concat(head, batch1, batch2);
  new DataView(bytes.buffer).setUint32(head.byteLength + 32, 0x7fff_0000, true); // batch1 claims a huge payload
  const scan = scanLast(bytes);
  assert.ok(scan.damage, 'an intact batch follows, so this is not a torn tail');
});

test('segment-scan - a torn tail of a segment that is not the last is damage', () => {
  const scan = scanSegment(concat(head, batch1, batch2.subarray(0, 30)), { shard: SHARD, firstSeq: 1, isLastSegment: false });
  assert.is(scan.damage?.code, 'CORRUPT_SEGMENT');
  assert.is(scan.lastSeq, 5);
});

test('segment-scan - a damaged checkpoint record is an error even at the tail', () => {
  for (const cut of [0, 10, head.byteLength - 1]) {
    const scan = scanLast(head.subarray(0, cut));
    assert.is(scan.damage?.code, 'CHECKPOINT_DAMAGED', `head cut at ${cut}`);
  }
  const flipped = head.slice();
  flipped[BATCH_HEADER_BYTES + 1] ^= 1;
  assert.is(scanLast(flipped).damage?.code, 'CHECKPOINT_DAMAGED');
});

test('segment-scan - a checkpoint record naming another seq or shard is damage', () => {
  const wrongSeq = encodeCheckpointRecord(SHARD, 7, 0n, new Uint8Array());
  assert.is(scanLast(wrongSeq).damage?.code, 'CHECKPOINT_DAMAGED');
  const wrongShard = encodeCheckpointRecord(4, 1, 0n, new Uint8Array());
  assert.is(scanLast(wrongShard).damage?.code, 'CHECKPOINT_DAMAGED');
});

test('segment-scan - batches must continue the seqs; a jump is damage', () => {
  const scan = scanLast(concat(head, batch1, batch(7, 2)));
  assert.is(scan.damage?.code, 'CORRUPT_SEGMENT');
  assert.is(scan.lastSeq, 5);
});

test('segment-scan - a complete last batch that fails its checksum is damage, never cut as torn', () => {
  const bytes = concat(head, batch1, batch2);
  bytes[bytes.byteLength - 5] ^= 0x01; // the last record is all there: a flip, not a crash
  const scan = scanLast(bytes);
  assert.is(scan.tornTail, null);
  assert.is(scan.damage?.code, 'CHECKSUM_MISMATCH');
  assert.is(scan.damage?.offset, head.byteLength + batch1.byteLength);
});

test('segment-scan - a last batch whose end was zero-filled from a sector boundary is a torn tail', () => {
  const big = batch(6, 40); // 64 + 840 bytes: crosses a 512-byte boundary of the file
  const bytes = concat(head, batch1, big);
  const start = head.byteLength + batch1.byteLength;
  const boundary = Math.ceil((start + 100) / 512) * 512;
  bytes.fill(0, boundary);
  const scan = scanLast(bytes);
  assert.is(scan.damage, null);
  assert.is(scan.tornTail?.offset, start);
  assert.is(scan.lastSeq, 5);
});

test('segment-scan - an intact record carried inside a torn batch does not make the tear look like damage', () => {
  // A producer's events can spell a valid record; the search skips the failed batch's own span.
  const inner = batch(6, 1);
  const carrierPayload = new Uint8Array(21 * 8);
  carrierPayload.set(inner, 21);
  const carrier = encodeBatch(
    { kind: BatchKind.Events, shardId: SHARD, count: 8, leaderEpoch: 0, firstSeq: 6, timestampNs: 6n },
    carrierPayload,
  );
  const torn = carrier.subarray(0, carrier.byteLength - 10);
  const scan = scanLast(concat(head, batch1, torn));
  assert.is(scan.damage, null);
  assert.ok(scan.tornTail);
  assert.is(scan.lastSeq, 5);
});

test('segment-scan - a notes-only batch continues the seqs and carries its notes', () => {
  const notesOnly = noted(6, 0, [Uint8Array.of(1, 2), Uint8Array.of(3)]);
  const scan = scanLast(concat(head, batch1, notesOnly, batch2));
  assert.is(scan.damage, null);
  assert.equal(
    scan.batches.map((scanned) => [scanned.header.firstSeq, scanned.header.count, scanned.notes.map((note) => [...note])]),
    [
      [1, 5, []],
      [6, 0, [[1, 2], [3]]],
      [6, 5, []],
    ],
  );
  assert.is(scan.lastSeq, 10);
  const atEnd = scanLast(concat(head, batch1, notesOnly));
  assert.is(atEnd.lastSeq, 5, 'a notes-only batch holds no seq');
  assert.is(atEnd.validBytes, head.byteLength + batch1.byteLength + notesOnly.byteLength);
});

test('segment-scan - a notes-only batch that does not sit at the next seq is damage', () => {
  const scan = scanLast(concat(head, batch1, noted(7, 0, [Uint8Array.of(1)])));
  assert.is(scan.damage?.code, 'CORRUPT_SEGMENT');
});

test('segment-scan - a notes section whose lengths do not parse is damage even with a good checksum', () => {
  // Declares a 9-byte note in an 8-byte section; the checksum is computed over it as written.
  const payload = new Uint8Array(EVENT_BYTES + 8);
  payload.set(encodeEvents([makeEvent(6)]));
  new DataView(payload.buffer).setUint32(EVENT_BYTES, 9, true);
  const bad = encodeBatch({ kind: BatchKind.Events, shardId: SHARD, count: 1, leaderEpoch: 0, firstSeq: 6, notesBytes: 8, timestampNs: 1n }, payload);
  const scan = scanLast(concat(head, batch1, bad));
  assert.is(scan.damage?.code, 'CORRUPT_SEGMENT');
  assert.is(scan.damage?.offset, head.byteLength + batch1.byteLength);
  assert.is(scan.tornTail, null);
  assert.is(scan.lastSeq, 5);
});

test('segment-scan - a flipped bit in a notes section is CHECKSUM_MISMATCH, before the tail or at it', () => {
  const withNote = noted(6, 2, [Uint8Array.of(10, 20, 30, 40)]);
  const start = head.byteLength + batch1.byteLength;
  for (const isLastRecord of [false, true]) {
    const bytes = isLastRecord ? concat(head, batch1, withNote) : concat(head, batch1, withNote, batch(8, 1));
    bytes[start + withNote.byteLength - 2] ^= 0x04; // inside the note's bytes
    const scan = scanLast(bytes);
    assert.is(scan.damage?.code, 'CHECKSUM_MISMATCH', `last record: ${isLastRecord}`);
    assert.is(scan.damage?.offset, start);
    assert.is(scan.tornTail, null);
  }
});

test.run();
