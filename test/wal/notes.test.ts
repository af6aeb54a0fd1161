// Batch notes: opaque bytes made durable in the same batch (same checksum) as the last part of
// the appendMany call they describe, so recovery sees the note and those events, or neither.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isTidelogError } from '../../src/errors.ts';
import { MAX_NOTE_BYTES, Wal, nodeFileIo, recoverShard, type PersistedInfo, type StoredBatch, type WalStateMachine } from '../../src/wal/index.ts';
import { collect, makeEvent, rejection, removeDir, tempDir } from '../support/wal-fixtures.ts';

const text = (value: string): Uint8Array => new TextEncoder().encode(value);
const untext = (bytes: Uint8Array): string => new TextDecoder().decode(bytes);
const events = (from: number, count: number) => Array.from({ length: count }, (_, index) => makeEvent(from + index));

/** [firstSeq, count, notes as text]: how these tests compare batches. */
type BatchShape = [number, number, string[]];
const shape = (batch: Pick<StoredBatch, 'firstSeq' | 'count' | 'notes'>): BatchShape => [batch.firstSeq, batch.count, batch.notes.map(untext)];

/** Records every batch it is given (notes copied out: they are valid during the call only); its snapshot is that record. */
class NoteMachine implements WalStateMachine {
  applied: BatchShape[] = [];
  restores: number[] = [];
  restore(snapshot: Uint8Array, lastSeq: number): void {
    this.restores.push(lastSeq);
    this.applied = snapshot.byteLength === 0 ? [] : (JSON.parse(untext(snapshot)) as BatchShape[]);
  }
  apply(batch: StoredBatch): void {
    this.applied.push(shape(batch));
  }
  snapshot(): Uint8Array {
    return text(JSON.stringify(this.applied));
  }
}

/** The batches on disk, segment by segment, read by recovery without changing anything. */
async function diskBatches(dir: string): Promise<Array<{ fileName: string; offset: number; end: number; batch: BatchShape }>> {
  const found: Array<{ fileName: string; offset: number; end: number; batch: BatchShape }> = [];
  await recoverShard({
    io: nodeFileIo,
    dir,
    shard: 0,
    salvage: false,
    repair: false,
    onBatch: (_bytes, scanned, segment) =>
      found.push({
        fileName: segment.fileName,
        offset: scanned.offset,
        end: scanned.offset + 64 + scanned.header.payloadBytes,
        batch: [scanned.header.firstSeq, scanned.header.count, scanned.notes.map(untext)],
      }),
  });
  return found;
}

// Content dedup on (the WAL API's default is off): duplicates make the notes-only batches these tests need.
const options = { batchMaxEvents: 4, batchLingerMs: 0, fsync: 'off', dedupWindowMs: 60_000 } as const;

test('notes - a note reaches live apply, onPersisted, readBatches and replay after reopen', async () => {
  const dir = tempDir();
  try {
    const machine = new NoteMachine();
    const persisted: Array<[number, number, number, string[]]> = [];
    const onPersisted = (info: PersistedInfo): void => {
      persisted.push([info.firstSeq, info.lastSeq, info.events, info.notes.map(untext)]);
    };
    const { wal } = await Wal.open({ dir, ...options, stateMachine: machine, onPersisted });
    let seen: number[] = [];
    const seqs = await wal.appendMany(events(1, 3), {
      note: (assigned) => {
        seen = [...assigned];
        return text(`r1:${assigned.join(',')}`);
      },
    });
    assert.equal(seqs, [1, 2, 3]);
    assert.equal(seen, [1, 2, 3], 'the callback sees the seqs appendMany resolves with');
    assert.is(await wal.append(makeEvent(4)), 4);
    const biggest = new Uint8Array(MAX_NOTE_BYTES).fill(7);
    assert.equal(await wal.appendMany([makeEvent(5)], { note: () => biggest }), [5]);
    biggest.fill(0); // the WAL copied it
    const expected: BatchShape[] = [
      [1, 3, ['r1:1,2,3']],
      [4, 1, []],
      [5, 1, ['\x07'.repeat(MAX_NOTE_BYTES)]],
    ];
    assert.equal(machine.applied, expected);
    assert.equal(persisted, [
      [1, 3, 3, ['r1:1,2,3']],
      [4, 4, 1, []],
      [5, 5, 1, ['\x07'.repeat(MAX_NOTE_BYTES)]],
    ]);
    assert.equal((await collect(wal.readBatches())).map(shape), expected);
    await wal.close();

    const again = new NoteMachine();
    const reopened = await Wal.open({ dir, ...options, stateMachine: again });
    assert.equal(again.applied, expected, 'replay delivers the same notes');
    assert.equal((await collect(reopened.wal.readBatches())).map(shape), expected);
    await reopened.wal.close();
  } finally {
    removeDir(dir);
  }
});

test('notes - a call with a note is never split: all its events and the note share one batch', async () => {
  const dir = tempDir();
  try {
    const { wal } = await Wal.open({ dir, ...options, batchLingerMs: 20 });
    // batchMaxEvents is 4: without a note these calls would be split into several batches.
    await wal.appendMany(events(1, 10), { note: () => text('ten') });
    await wal.appendMany(events(11, 8), { note: () => text('eight') });
    // Another caller's events already wait in the open group: 2 + 5 does not fit, so it seals.
    const first = wal.appendMany(events(19, 2));
    const second = wal.appendMany(events(21, 5), { note: () => text('five') });
    // Two calls with notes sharing one group: the notes keep call order.
    const third = wal.appendMany(events(26, 1), { note: () => text('a') });
    const fourth = wal.appendMany(events(27, 1), { note: () => text('b') });
    assert.equal(await Promise.all([first, second, third, fourth]), [[19, 20], [21, 22, 23, 24, 25], [26], [27]]);
    // A call without a note is still split at batchMaxEvents.
    await wal.appendMany(events(28, 6));
    await wal.close();
    assert.equal(
      (await diskBatches(dir)).map((found) => found.batch),
      [
        [1, 10, ['ten']],
        [11, 8, ['eight']],
        [19, 2, []],
        [21, 5, ['five']],
        [26, 2, ['a', 'b']],
        [28, 4, []],
        [32, 2, []],
      ],
    );
  } finally {
    removeDir(dir);
  }
});

test('notes - an all-duplicate call still writes its note, in a batch of count 0, and recovery keeps it', async () => {
  const dir = tempDir();
  try {
    const machine = new NoteMachine();
    const persisted: PersistedInfo[] = [];
    const onPersisted = (info: PersistedInfo): void => {
      persisted.push({ ...info, notes: info.notes.map((note) => note.slice()) });
    };
    const { wal } = await Wal.open({ dir, ...options, stateMachine: machine, onPersisted });
    assert.equal(await wal.appendMany(events(1, 2)), [1, 2]);
    let seen: number[] = [];
    const seqs = await wal.appendMany(events(1, 2), {
      note: (assigned) => {
        seen = [...assigned];
        return text('retry');
      },
    });
    assert.equal(seqs, [0, 0]);
    assert.equal(seen, [0, 0]);
    assert.is(wal.lastSeq, 2, 'a notes-only batch holds no seq');
    assert.equal(machine.applied.at(-1), [3, 0, ['retry']], 'firstSeq is the next seq');
    const info = persisted.at(-1);
    assert.equal([info?.firstSeq, info?.lastSeq, info?.events, info?.notes.map(untext)], [3, 2, 0, ['retry']]);
    // The log's newest batch holds only a note: a reader at the tail gets it.
    assert.equal((await collect(wal.readBatches({ fromSeq: 3 }))).map(shape), [[3, 0, ['retry']]]);
    await wal.checkpoint(wal.lastSeq);
    await wal.close();

    const again = new NoteMachine();
    const reopened = await Wal.open({ dir, ...options, stateMachine: again });
    assert.equal(again.applied, [
      [1, 2, []],
      [3, 0, ['retry']],
    ]);
    assert.is(reopened.wal.lastSeq, 2);
    assert.is(reopened.recovery.events, 2);
    assert.is(reopened.recovery.dedupRebuilt, 2);
    assert.is(await reopened.wal.append(makeEvent(1)), 0, 'the dedup window was rebuilt past the notes-only batch');
    assert.is(await reopened.wal.append(makeEvent(3)), 3, 'seqs continue after it');
    assert.equal((await collect(reopened.wal.read())).map((item) => item.seq), [1, 2, 3], 'read() skips it');
    await reopened.wal.close();

    const plain = await Wal.open({ dir, ...options });
    assert.equal(plain.replayed.map((event) => event.entityId), [3n], 'replay after the checkpoint: events only');
    await plain.wal.close();
    assert.equal(
      (await diskBatches(dir)).map((found) => found.batch),
      [
        [1, 2, []],
        [3, 0, ['retry']],
        [3, 1, []],
      ],
    );
  } finally {
    removeDir(dir);
  }
});

test('notes - a notes-only batch as the last batch of a segment and as the first of the next', async () => {
  const dir = tempDir();
  try {
    // 96 (head) + 148 (4 events) + 76 (notes-only batch, 8-byte note) = 320: that batch fills
    // the first segment exactly; the next events rotate.
    const segmentBytes = 320;
    const machine = new NoteMachine();
    const { wal } = await Wal.open({ dir, ...options, segmentBytes, stateMachine: machine });
    await wal.appendMany(events(1, 4));
    assert.equal(await wal.appendMany(events(1, 4), { note: () => text('note-one') }), [0, 0, 0, 0]);
    await wal.appendMany(events(5, 4));
    assert.is((await wal.takeSnapshot())?.seq, 8, 'a snapshot at seq 8, before the second note');
    // 244 + 88 > 320, and the segment holds events: the notes-only batch opens a new segment.
    assert.equal(await wal.appendMany(events(5, 4), { note: () => text('note-two-is-longer..') }), [0, 0, 0, 0]);
    await wal.appendMany(events(9, 4));
    assert.equal(
      wal.segments().map((segment) => [segment.firstSeq, segment.lastSeq]),
      [
        [1, 4],
        [5, 8],
        [9, 12],
      ],
    );
    const onDisk = await diskBatches(dir);
    assert.equal(
      onDisk.map((found) => [found.fileName, ...found.batch]),
      [
        ['wal-00000-00000000000000000001.seg', 1, 4, []],
        ['wal-00000-00000000000000000001.seg', 5, 0, ['note-one']],
        ['wal-00000-00000000000000000005.seg', 5, 4, []],
        ['wal-00000-00000000000000000009.seg', 9, 0, ['note-two-is-longer..']],
        ['wal-00000-00000000000000000009.seg', 9, 4, []],
      ],
    );
    const live = machine.applied;
    const read = async (range: { fromSeq?: number; toSeq?: number }): Promise<BatchShape[]> =>
      (await collect(wal.readBatches(range))).map(shape);
    assert.equal(await read({ toSeq: 4 }), [
      [1, 4, []],
      [5, 0, ['note-one']],
    ]);
    assert.equal(await read({ fromSeq: 5, toSeq: 8 }), [
      [5, 0, ['note-one']],
      [5, 4, []],
      [9, 0, ['note-two-is-longer..']],
    ]);
    assert.equal(await read({ fromSeq: 6 }), [
      [5, 4, []],
      [9, 0, ['note-two-is-longer..']],
      [9, 4, []],
    ]);
    await wal.close();

    const again = new NoteMachine();
    const reopened = await Wal.open({ dir, ...options, segmentBytes, stateMachine: again });
    assert.equal(again.restores, [8], 'restored from the snapshot file at seq 8');
    assert.equal(again.applied, live, 'the snapshot plus the batches after it: every batch once');
    assert.is(reopened.wal.lastSeq, 12);
    assert.equal(await reopened.wal.truncateBefore(5), ['wal-00000-00000000000000000001.seg']);
    assert.is(reopened.wal.firstSeq, 5);
    assert.equal((await collect(reopened.wal.readBatches({ fromSeq: 5 }))).map(shape)[0], [5, 4, []]);
    assert.equal(await reopened.wal.truncateBefore(9), ['wal-00000-00000000000000000005.seg']);
    assert.equal((await collect(reopened.wal.readBatches({ fromSeq: 9 }))).map(shape), [
      [9, 0, ['note-two-is-longer..']],
      [9, 4, []],
    ]);
    assert.is((await rejection(() => reopened.wal.truncateBefore(10))).code, 'OUT_OF_RANGE', 'not past the newest snapshot');
    await reopened.wal.close();
    const last = new NoteMachine();
    const third = await Wal.open({ dir, ...options, segmentBytes, stateMachine: last });
    assert.equal(last.applied, live, 'the log starts at 9: the snapshot at 8 still rebuilds everything');
    assert.is(await third.wal.append(makeEvent(13)), 13);
    await third.wal.close();
  } finally {
    removeDir(dir);
  }
});

test('notes - readBatches delivers a notes-only batch to every range that touches its gap', async () => {
  const dir = tempDir();
  try {
    const { wal } = await Wal.open({ dir, ...options });
    await wal.appendMany(events(1, 2));
    await wal.appendMany(events(1, 1), { note: () => text('n1') });
    await wal.appendMany(events(3, 2));
    await wal.appendMany(events(3, 1), { note: () => text('n2') });
    const read = async (range: { fromSeq?: number; toSeq?: number }): Promise<BatchShape[]> =>
      (await collect(wal.readBatches(range))).map(shape);
    assert.equal(await read({ fromSeq: 1, toSeq: 2 }), [
      [1, 2, []],
      [3, 0, ['n1']],
    ]);
    assert.equal(await read({ fromSeq: 3, toSeq: 3 }), [
      [3, 0, ['n1']],
      [3, 2, []],
    ]);
    assert.equal(await read({ fromSeq: 4 }), [
      [3, 2, []],
      [5, 0, ['n2']],
    ]);
    assert.equal(await read({ fromSeq: 5 }), [[5, 0, ['n2']]]);
    assert.equal(await read({ fromSeq: 6 }), []);
    assert.equal((await collect(wal.read({ fromSeq: 2 }))).map((item) => item.seq), [2, 3, 4]);
    await wal.close();
  } finally {
    removeDir(dir);
  }
});

test('notes - cut at every byte of flushes holding notes: each batch survives whole with its note, or not at all', async () => {
  const dir = tempDir();
  try {
    const { wal } = await Wal.open({ dir, ...options });
    await wal.appendMany(events(1, 3));
    await wal.appendMany(events(4, 2), { note: () => text('with-events') });
    await wal.appendMany(events(4, 2), { note: () => text('alone') });
    await wal.close();
    const batches = await diskBatches(dir);
    assert.equal(
      batches.map((found) => found.batch),
      [
        [1, 3, []],
        [4, 2, ['with-events']],
        [6, 0, ['alone']],
      ],
    );
    const path = join(dir, batches[0].fileName);
    const original = readFileSync(path);
    const [, withEvents, alone] = batches;
    assert.is(alone.end, original.byteLength);
    for (let cut = withEvents.offset; cut <= original.byteLength; cut++) {
      writeFileSync(path, original.subarray(0, cut));
      const machine = new NoteMachine();
      const { wal: reopened, recovery } = await Wal.open({ dir, ...options, stateMachine: machine });
      const expected: BatchShape[] = [[1, 3, []]];
      if (cut >= withEvents.end) expected.push([4, 2, ['with-events']]);
      if (cut >= alone.end) expected.push([6, 0, ['alone']]);
      assert.equal(machine.applied, expected, `cut at ${cut}`);
      assert.is(reopened.lastSeq, cut >= withEvents.end ? 5 : 3, `cut at ${cut}`);
      const isBoundary = cut === withEvents.offset || cut === withEvents.end || cut === alone.end;
      assert.is(recovery.truncatedTail !== null, !isBoundary, `cut at ${cut}`);
      await reopened.close();
    }
  } finally {
    removeDir(dir);
  }
});

test('notes - a flipped bit in a notes section is CHECKSUM_MISMATCH on open and on read', async () => {
  const dir = tempDir();
  try {
    const { wal } = await Wal.open({ dir, ...options });
    await wal.appendMany(events(1, 2), { note: () => text('sensitive') });
    await wal.appendMany(events(1, 2), { note: () => text('only-a-note') });
    await wal.appendMany(events(3, 2));
    await wal.close();
    const batches = await diskBatches(dir);
    const path = join(dir, batches[0].fileName);
    const original = readFileSync(path);
    for (const victim of batches.slice(0, 2)) {
      const damaged = Buffer.from(original);
      damaged[victim.end - 3] ^= 0x08; // inside the note's bytes
      writeFileSync(path, damaged);
      const error = await rejection(() => Wal.open({ dir, ...options }));
      assert.is(error.code, 'CHECKSUM_MISMATCH');
      assert.ok(error.message.includes(`offset ${victim.offset}`), error.message);
    }
    writeFileSync(path, original);
    const reopened = await Wal.open({ dir, ...options });
    const rotten = Buffer.from(original);
    rotten[batches[1].end - 1] ^= 0x01; // bit rot after open
    writeFileSync(path, rotten);
    const error = await rejection(() => collect(reopened.wal.readBatches()));
    assert.is(error.code, 'CHECKSUM_MISMATCH');
    await reopened.wal.close();
  } finally {
    removeDir(dir);
  }
});

test('notes - bad options are BAD_REQUEST before anything is queued', async () => {
  const dir = tempDir();
  try {
    const { wal } = await Wal.open({ dir, ...options });
    const calls: Array<() => Promise<unknown>> = [
      () => wal.appendMany([], { note: () => text('x') }),
      () => wal.appendMany(new Uint8Array(0), { note: () => text('x') }),
      () => wal.appendMany([makeEvent(1)], { note: 'x' as unknown as () => Uint8Array }),
      () => wal.appendMany([makeEvent(1)], null as unknown as object),
    ];
    for (const call of calls) assert.is((await rejection(call)).code, 'BAD_REQUEST');
    assert.is(wal.stats().nextSeq, 1);
    assert.is(wal.failed, null);
    assert.equal(await wal.appendMany([makeEvent(1)], {}), [1], 'options without a note are fine');
    await wal.close();
  } finally {
    removeDir(dir);
  }
});

test('notes - a note callback that throws or returns bad bytes fails the lane; nothing of its call is written', async () => {
  let wal: Wal | null = null;
  const broken: Array<{ label: string; note: () => Uint8Array; code: string | null }> = [
    { label: 'empty', note: () => new Uint8Array(0), code: null },
    { label: 'too long', note: () => new Uint8Array(MAX_NOTE_BYTES + 1), code: null },
    { label: 'not bytes', note: () => 'text' as unknown as Uint8Array, code: null },
    {
      label: 'throws',
      note: () => {
        throw new Error('boom');
      },
      code: 'HOOK_FAILED',
    },
    {
      label: 'appends to the WAL itself',
      note: () => {
        void wal?.appendMany([makeEvent(99)]); // refused: the group is being completed
        return text('x');
      },
      code: 'HOOK_FAILED',
    },
  ];
  for (const { label, note, code } of broken) {
    const dir = tempDir();
    try {
      wal = (await Wal.open({ dir, ...options, batchLingerMs: 50 })).wal;
      assert.is(await wal.append(makeEvent(1)), 1);
      const waiting = wal.append(makeEvent(2)); // still in the open group, lingering
      let thrown: unknown = null;
      try {
        void wal.appendMany(events(3, 2), { note });
      } catch (error) {
        thrown = error;
      }
      assert.ok(thrown instanceof Error, `${label}: appendMany throws`);
      if (code === null) assert.not.ok(isTidelogError(thrown), `${label}: a programming error, not an operational one`);
      else assert.is((thrown as { code?: string }).code, code, label);
      assert.is(wal.failed, thrown, `${label}: the lane failed with it`);
      assert.is(await rejection(() => waiting), thrown, `${label}: pending callers are rejected`);
      assert.is(await rejection(() => wal!.append(makeEvent(5))), thrown, `${label}: and later ones`);
      await wal.close();
      // Event 2 may have been in a flush already (written, yet its caller told of the failure).
      const reopened = await Wal.open({ dir, ...options });
      assert.ok(reopened.wal.lastSeq <= 2, label);
      const entityIds = reopened.replayed.map((event) => event.entityId);
      assert.ok(!entityIds.includes(3n) && !entityIds.includes(4n), `${label}: the call's events were never written`);
      await reopened.wal.close();
    } finally {
      removeDir(dir);
    }
  }
});

test.run();
