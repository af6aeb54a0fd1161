// The commit point and truncateAfter under races and faults (each case was found by an
// adversarial review and failed before its fix): a commitTo that overtakes a queued cut, a
// cut that fails midway, close() during a cut or a fold from disk, a notes-only batch after a
// restart, what a restart replays, checkpoints past the commit point, a FENCED open.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readdirSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { Wal, type StoredBatch, type WalStateMachine } from '../../src/wal/index.ts';
import { collect, makeEvent, openLeading, rejection, removeDir, tempDir } from '../support/wal-fixtures.ts';
import { SumMachine } from '../support/sum-machine.ts';
import { FaultyFileIo } from '../support/faulty-file-io.ts';
import { until } from '../support/waits.ts';

const options = { segmentBytes: 512, batchMaxEvents: 4, batchLingerMs: 0, commit: 'external' as const };

interface Outcome {
  seqs?: number[];
  code?: string;
}

/** Appends `ids` as one call and waits until they are durable; the call's outcome is recorded. */
async function appendDurable(wal: Wal, ids: number[], outcomes: Outcome[] = []): Promise<Outcome> {
  const before = wal.durableSeq;
  const outcome: Outcome = {};
  outcomes.push(outcome);
  wal.appendMany(ids.map(makeEvent)).then(
    (seqs) => (outcome.seqs = seqs),
    (error: { code?: string }) => (outcome.code = error.code),
  );
  await until(() => wal.durableSeq >= before + ids.length || wal.failed !== null, 'the batch is durable');
  return outcome;
}

async function durableSeqs(wal: Wal): Promise<number[]> {
  const seqs: number[] = [];
  for await (const batch of wal.readBatches({ fromSeq: 1, uncommitted: true })) {
    for (let index = 0; index < batch.count; index++) seqs.push(batch.firstSeq + index);
  }
  return seqs;
}

test('commit-point faults - a commitTo made after truncateAfter was called wins: the cut is refused, nothing acknowledged is cut', async () => {
  const dir = tempDir();
  try {
    const machine = new SumMachine();
    const { wal } = await openLeading({ dir, ...options, stateMachine: machine });
    const outcomes: Outcome[] = [];
    for (let id = 1; id <= 6; id++) await appendDurable(wal, [id], outcomes);
    const first = wal.commitTo(3);
    const cut = rejection(() => wal.truncateAfter(3));
    const later = wal.commitTo(6);
    await Promise.all([first, later]);
    assert.is((await cut).code, 'BAD_REQUEST', 'the commit point passed the cut before it ran');
    await until(() => outcomes.every((outcome) => outcome.seqs !== undefined), 'every call is answered');
    assert.equal(await durableSeqs(wal), [1, 2, 3, 4, 5, 6], 'every acknowledged event is still in the log');
    assert.is(machine.lastSeq, 6);
    await wal.close();
  } finally {
    removeDir(dir);
  }
});

for (const op of ['truncate', 'datasync', 'syncDir'] as const) {
  test(`commit-point faults - a cut that fails at ${op} stops the lane, and the log still opens after it`, async () => {
    const dir = tempDir();
    try {
      const io = new FaultyFileIo();
      const { wal } = await openLeading({ dir, ...options, io, stateMachine: new SumMachine() });
      for (let id = 1; id <= 12; id++) await appendDurable(wal, [id]);
      await wal.commitTo(2);
      const cutName = wal.segments()[0].fileName;
      io.inject({ op, path: op === 'syncDir' ? undefined : new RegExp(cutName.replace('.', '\\.')), times: 1 });
      const error = await rejection(() => wal.truncateAfter(2));
      assert.ok(['WRITE_FAILED', 'FSYNC_FAILED', 'IO_ERROR'].includes(error.code ?? ''), error.message);
      assert.ok(wal.failed !== null, 'fail-stop: a half-made cut is never written past');
      assert.is((await rejection(() => wal.appendMany([makeEvent(99)]))).code, (wal.failed as { code?: string } | null)?.code);
      await wal.close().catch(() => undefined);
      const reopened = await Wal.open({ dir, ...options, stateMachine: new SumMachine() });
      await reopened.wal.lead(reopened.wal.epoch);
      const seqs = await durableSeqs(reopened.wal);
      assert.equal(seqs, Array.from({ length: reopened.wal.durableSeq }, (_, index) => index + 1), 'the log reopens gapless');
      assert.ok(reopened.wal.durableSeq >= 2, 'with everything committed');
      await reopened.wal.close();
    } finally {
      removeDir(dir);
    }
  });
}

test('commit-point faults - close() during a cut: callers of batches that stay are told CLOSED, never TRUNCATED', async () => {
  const dir = tempDir();
  try {
    const { wal } = await openLeading({ dir, ...options, stateMachine: new SumMachine() });
    const outcomes: Outcome[] = [];
    for (let id = 1; id <= 8; id++) await appendDurable(wal, [id], outcomes);
    await wal.commitTo(2);
    const cut = wal.truncateAfter(2).then(
      (removed) => `removed ${removed}`,
      (error: { code?: string }) => error.code ?? 'unknown',
    );
    await wal.close().catch(() => undefined);
    const cutOutcome = await cut;
    await until(() => outcomes.every((outcome) => outcome.seqs !== undefined || outcome.code !== undefined), 'every call is answered');
    const reopened = await Wal.open({ dir, ...options, stateMachine: new SumMachine(), committedSeq: 2 });
    await reopened.wal.lead(reopened.wal.epoch);
    const seqs = await durableSeqs(reopened.wal);
    await reopened.wal.close();
    outcomes.forEach((outcome, index) => {
      if (outcome.code === 'TRUNCATED') assert.not.ok(seqs.includes(index + 1), `seq ${index + 1}: TRUNCATED, yet in the log (cut: ${cutOutcome})`);
    });
    assert.ok(cutOutcome === 'removed 6' || seqs.length === 8, `either the cut happened or nothing was cut (${cutOutcome}, ${seqs.join(',')})`);
  } finally {
    removeDir(dir);
  }
});

test('commit-point faults - close() waits for a fold from disk to stop: nothing is folded after it resolves', async () => {
  const dir = tempDir();
  try {
    const first = await Wal.open({ dir, ...options });
    await first.wal.lead(first.wal.epoch);
    for (let id = 1; id <= 400; id += 4) first.wal.appendMany([id, id + 1, id + 2, id + 3].map(makeEvent)).catch(() => undefined);
    await until(() => first.wal.durableSeq === 400, 'the log is durable');
    await first.wal.close();
    const persisted: number[] = [];
    const { wal } = await openLeading({ dir, ...options, stateMachine: new SumMachine(), onPersisted: (info) => persisted.push(info.lastSeq) });
    const commit = wal.commitTo(400);
    await new Promise((resolve) => setImmediate(resolve));
    await wal.close();
    const atClose = persisted.length;
    await commit;
    await new Promise((resolve) => setImmediate(resolve));
    assert.is(persisted.length, atClose, 'no fold after close() resolved');
    const again = await Wal.open({ dir, ...options, stateMachine: new SumMachine() });
    await again.wal.lead(again.wal.epoch);
    const lastFolded = persisted[persisted.length - 1] ?? 0;
    assert.ok(again.wal.committedSeq >= lastFolded, `the commit point reached is kept: ${again.wal.committedSeq}, folded to ${lastFolded}`);
    await again.wal.close();
  } finally {
    removeDir(dir);
  }
});

/** Records each batch it folds, with its notes. */
class NotesMachine implements WalStateMachine {
  readonly log: string[] = [];
  restore(): void {}
  apply(batch: StoredBatch): void {
    this.log.push(`${batch.firstSeq}+${batch.count} [${batch.notes.map((note) => new TextDecoder().decode(note)).join(',')}]`);
  }
  snapshot(): Uint8Array {
    return new Uint8Array(0);
  }
}

test('commit-point faults - a notes-only batch written after a restart is folded once, not again from disk', async () => {
  const dir = tempDir();
  try {
    const first = await Wal.open({ dir, ...options, dedupWindowMs: 60_000, stateMachine: new NotesMachine() });
    await first.wal.lead(first.wal.epoch);
    for (let id = 1; id <= 5; id++) await appendDurable(first.wal, [id]);
    await first.wal.close(); // nothing committed
    const machine = new NotesMachine();
    const { wal } = await openLeading({ dir, ...options, dedupWindowMs: 60_000, stateMachine: machine });
    assert.is(wal.durableSeq, 5);
    // A resend of event 1 with a note: a duplicate (the window was rebuilt), so a notes-only batch at 6.
    const retry = wal.appendMany([makeEvent(1)], { note: () => new TextEncoder().encode('N') });
    await until(() => wal.queue.awaitingCommit.length === 1, 'the notes-only batch is durable');
    await wal.commitTo(5);
    assert.equal(await retry, [0]);
    assert.is(machine.log.filter((entry) => entry.endsWith('[N]')).length, 1, machine.log.join(' | '));
    assert.equal(machine.log.slice(0, 5), ['1+1 []', '2+1 []', '3+1 []', '4+1 []', '5+1 []']);
    await wal.close();
  } finally {
    removeDir(dir);
  }
});

test('commit-point faults - a restart replays only committed events; a checkpoint may not pass the commit point', async () => {
  const dir = tempDir();
  try {
    const { wal } = await openLeading({ dir, ...options });
    for (let id = 1; id <= 5; id++) await appendDurable(wal, [id]);
    await wal.commitTo(2);
    assert.is((await rejection(() => wal.checkpoint(4))).code, 'OUT_OF_RANGE', 'what is materialised elsewhere must be committed');
    await wal.close();
    const reopened = await Wal.open({ dir, ...options });
    await reopened.wal.lead(reopened.wal.epoch);
    assert.is(reopened.wal.committedSeq, 2);
    assert.equal(
      reopened.replayed.map((event) => Number(event.entityId)),
      [1, 2],
    );
    assert.equal(
      (await collect(reopened.wal.read({ fromSeq: 1 }))).map((entry) => entry.seq),
      [1, 2],
    );
    await reopened.wal.close();
    const withState = await Wal.open({ dir, ...options, stateMachine: new SumMachine() });
    await withState.wal.lead(withState.wal.epoch);
    assert.equal(withState.replayed, [], 'with a state machine nothing is replayed');
    await withState.wal.close();
  } finally {
    removeDir(dir);
  }
});

test('commit-point faults - an open FENCED by the log\'s newest epoch leaves no descriptor open', async () => {
  const dir = tempDir();
  try {
    const { wal } = await openLeading({ dir, ...options, leaderEpoch: 5 });
    await appendDurable(wal, [1]);
    await wal.commitTo(1);
    await wal.close();
    unlinkSync(join(dir, 'replica-00000.bin')); // the log itself still says epoch 5
    const descriptors = (): number => readdirSync('/proc/self/fd').length;
    const before = descriptors();
    for (let attempt = 0; attempt < 5; attempt++) assert.is((await rejection(() => Wal.open({ dir, ...options, leaderEpoch: 3 }))).code, 'FENCED');
    assert.is(descriptors(), before);
  } finally {
    removeDir(dir);
  }
});

test.run();
