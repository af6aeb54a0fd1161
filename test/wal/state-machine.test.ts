// Segment-head checkpoint records carry the state machine's snapshot (chunked-wal), so old
// segments can be drained without losing state; plus the persisted hook and the read path.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fc from 'fast-check';
import { Wal, type StoredBatch, type WalStateMachine } from '../../src/wal/index.ts';
import { EVENT_BYTES } from '../../src/event.ts';
import { collect, makeEvent, rejection, removeDir, tempDir } from '../support/wal-fixtures.ts';

/** Sums entity ids and counts events; its snapshot is "lastSeq,count,sum". */
class SumMachine implements WalStateMachine {
  lastSeq = 0;
  count = 0;
  sum = 0n;
  restores: number[] = [];
  restore(snapshot: Uint8Array, lastSeq: number): void {
    this.restores.push(lastSeq);
    const text = new TextDecoder().decode(snapshot);
    const [seq, count, sum] = text === '' ? ['0', '0', '0'] : text.split(',');
    assert.is(Number(seq), lastSeq, 'a snapshot is restored at the seq it was taken');
    this.lastSeq = Number(seq);
    this.count = Number(count);
    this.sum = BigInt(sum);
  }
  apply(batch: StoredBatch): void {
    assert.is(batch.firstSeq, this.lastSeq + 1, 'batches arrive in seq order without gaps');
    const view = new DataView(batch.events.buffer, batch.events.byteOffset, batch.events.byteLength);
    for (let index = 0; index < batch.count; index++) this.sum += view.getBigUint64(index * EVENT_BYTES, true);
    this.count += batch.count;
    this.lastSeq = batch.firstSeq + batch.count - 1;
  }
  snapshot(): Uint8Array {
    return new TextEncoder().encode(`${this.lastSeq},${this.count},${this.sum}`);
  }
}

const options = { segmentBytes: 512, batchMaxEvents: 4, batchLingerMs: 0 };

test('state-machine - every segment opens with the snapshot as of its first seq', async () => {
  const dir = tempDir();
  try {
    const machine = new SumMachine();
    const { wal } = await Wal.open({ dir, ...options, stateMachine: machine });
    for (let id = 1; id <= 60; id++) await wal.append(makeEvent(id));
    const live = wal.segments();
    assert.ok(live.length > 3);
    await wal.close();
    const reopened = await Wal.open({ dir, ...options });
    const fromDisk = reopened.wal.segments();
    await reopened.wal.close();
    assert.equal(
      fromDisk.map((segment) => segment.firstSeq),
      live.map((segment) => segment.firstSeq),
    );
    for (const segment of fromDisk) {
      const before = segment.firstSeq - 1;
      assert.is(new TextDecoder().decode(segment.snapshot), `${before},${before},${(before * (before + 1)) / 2}`);
    }
  } finally {
    removeDir(dir);
  }
});

test('state-machine - draining old segments loses no state: reopen rebuilds the same sum', async () => {
  const dir = tempDir();
  try {
    const machine = new SumMachine();
    const first = await Wal.open({ dir, ...options, stateMachine: machine });
    assert.is(first.replayed.length, 0, 'with a state machine nothing is replayed as objects');
    for (let id = 1; id <= 80; id++) await first.wal.append(makeEvent(id));
    const drained = await first.wal.drainClosedSegmentsWhile((segment) => segment.lastSeq <= 40);
    assert.ok(drained.length > 0);
    assert.ok(drained.every((segment) => segment.lastSeq <= 40));
    await first.wal.close();
    const rebuilt = new SumMachine();
    const second = await Wal.open({ dir, ...options, stateMachine: rebuilt });
    assert.is(rebuilt.sum, 3240n, 'sum of 1..80');
    assert.is(rebuilt.count, 80);
    assert.is(rebuilt.restores[0], drained[drained.length - 1].lastSeq, 'restored from the oldest remaining head');
    await second.wal.close();
  } finally {
    removeDir(dir);
  }
});

test('state-machine - the persisted hook reports each durable batch in order', async () => {
  const dir = tempDir();
  try {
    const seen: Array<[number, number]> = [];
    const { wal } = await Wal.open({ dir, ...options, onPersisted: (info) => seen.push([info.firstSeq, info.lastSeq]) });
    await wal.appendMany([makeEvent(1), makeEvent(2)]);
    await wal.appendMany([makeEvent(3)]);
    assert.equal(seen, [
      [1, 2],
      [3, 3],
    ]);
    await wal.close();
  } finally {
    removeDir(dir);
  }
});

test('state-machine - read resumes from any seq and refuses seqs that were truncated', async () => {
  const dir = tempDir();
  try {
    const { wal } = await Wal.open({ dir, ...options });
    for (let id = 1; id <= 40; id++) await wal.append(makeEvent(id));
    for (const fromSeq of [1, 2, 17, 39, 40, 41]) {
      const read = await collect(wal.read({ fromSeq }));
      assert.equal(
        read.map((entry) => entry.seq),
        Array.from({ length: Math.max(0, 41 - fromSeq) }, (_, index) => fromSeq + index),
      );
      assert.ok(read.every((entry) => entry.event.entityId === BigInt(entry.seq)));
    }
    await wal.checkpoint(19);
    await wal.truncateBefore(20);
    const error = await rejection(() => collect(wal.read({ fromSeq: 1 })));
    assert.is(error.code, 'OUT_OF_RANGE');
    await wal.close();
  } finally {
    removeDir(dir);
  }
});

test('state-machine - replay after any checkpoint is exactly the later events (property)', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.tuple(fc.bigInt({ min: 1n, max: 10_000n }), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 12 }),
      fc.double({ min: 0, max: 1, noNaN: true }),
      async (raw, fraction) => {
        const dir = tempDir();
        try {
          const events = raw.map(([entityId, signalType], index) => ({
            entityId: BigInt(index) * 1_000_000n + entityId,
            signalType,
            weight: index,
            timestampNs: BigInt(index),
          }));
          const { wal } = await Wal.open({ dir, segmentBytes: 300, batchLingerMs: 0 });
          const seqs: number[] = [];
          for (const event of events) seqs.push(await wal.append(event));
          const checkpointSeq = seqs[Math.min(seqs.length - 1, Math.floor(seqs.length * fraction))];
          await wal.checkpoint(checkpointSeq);
          await wal.close();
          const reopened = await Wal.open({ dir, segmentBytes: 300 });
          assert.equal(
            reopened.replayed.map((event) => event.entityId),
            events.filter((_, index) => seqs[index] > checkpointSeq).map((event) => event.entityId),
          );
          await reopened.wal.close();
        } finally {
          removeDir(dir);
        }
      },
    ),
    { seed: 1234, numRuns: 25 },
  );
});

test.run();
