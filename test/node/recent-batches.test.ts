import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { EVENT_BYTES } from '../../src/event.ts';
import { RecentBatches, trimBatch } from '../../src/node/recent-batches.ts';
import type { ReadBatch } from '../../src/transport/messages.ts';

const test = suite('recent-batches');

function batch(firstSeq: number, count: number): ReadBatch {
  const events = new Uint8Array(count * EVENT_BYTES);
  // Byte 0 of each event holds its seq's low byte, so a read can be checked event by event.
  for (let index = 0; index < count; index++) events[index * EVENT_BYTES] = (firstSeq + index) & 0xff;
  return { firstSeq, epoch: 3, timestampNs: BigInt(firstSeq), events };
}

function seqsOf(batches: readonly ReadBatch[]): number[] {
  const seqs: number[] = [];
  for (const b of batches) {
    const count = b.events.byteLength / EVENT_BYTES;
    for (let index = 0; index < count; index++) {
      assert.is(b.events[index * EVENT_BYTES], (b.firstSeq + index) & 0xff, 'event bytes match their seq');
      seqs.push(b.firstSeq + index);
    }
  }
  return seqs;
}

test('recent-batches - reads any range inside what it holds, trimmed at both ends', () => {
  const ring = new RecentBatches(1 << 20);
  ring.push(batch(1, 10));
  ring.push(batch(11, 5));
  ring.push(batch(16, 20));
  assert.is(ring.firstSeq, 1);
  assert.is(ring.lastSeq, 35);
  assert.equal(seqsOf(ring.read(1, 100) ?? []), Array.from({ length: 35 }, (_, i) => i + 1));
  assert.equal(seqsOf(ring.read(7, 6) ?? []), [7, 8, 9, 10, 11, 12]);
  assert.equal(seqsOf(ring.read(15, 3) ?? []), [15, 16, 17]);
  assert.equal(ring.read(36, 10), [], 'past the end: nothing yet');
});

test('recent-batches - drops the oldest batches past maxBytes and answers null below them', () => {
  const ring = new RecentBatches(25 * EVENT_BYTES);
  ring.push(batch(1, 10));
  ring.push(batch(11, 10));
  ring.push(batch(21, 10));
  assert.is(ring.firstSeq, 11, 'the first batch was dropped');
  assert.is(ring.byteLength, 20 * EVENT_BYTES);
  assert.is(ring.read(5, 10), null, 'older than the ring: the caller goes to disk');
  assert.equal(seqsOf(ring.read(11, 3) ?? []), [11, 12, 13]);
});

test('recent-batches - a batch that does not continue the newest clears the ring (never a hole)', () => {
  const ring = new RecentBatches(1 << 20);
  ring.push(batch(1, 10));
  ring.push(batch(20, 5));
  assert.is(ring.firstSeq, 20);
  assert.is(ring.read(1, 5), null);
  assert.equal(seqsOf(ring.read(20, 100) ?? []), [20, 21, 22, 23, 24]);
});

test('recent-batches - keeps the newest batch even when it alone exceeds maxBytes', () => {
  const ring = new RecentBatches(EVENT_BYTES);
  ring.push(batch(1, 4));
  assert.is(ring.firstSeq, 1);
  assert.is(ring.lastSeq, 4);
});

test('recent-batches - trimBatch returns the same batch when nothing is cut and views otherwise', () => {
  const whole = batch(5, 10);
  assert.is(trimBatch(whole, 1, 100), whole);
  const cut = trimBatch(whole, 8, 2);
  assert.is(cut.firstSeq, 8);
  assert.is(cut.events.byteLength, 2 * EVENT_BYTES);
  assert.is(cut.events.buffer, whole.events.buffer, 'a view, not a copy');
});

test.run();
