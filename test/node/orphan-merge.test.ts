// Availability mode on shard hosts (src/node/orphan-merge.ts, ShardHost availability): a leader
// cut off from its quorum acknowledges on its own fsync; when it is deposed its suffix is kept as
// an orphan file before the cut, and the new leader re-appends it at new seqs, exactly once —
// across a repeated merge, and against a producer's retry that landed on either side.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { encodeEvents, type SignalEvent } from '../../src/event.ts';
import { decodeMergeNote, isMergeNote } from '../../src/node/merge-note.ts';
import type { ShardHost } from '../../src/node/shard-host.ts';
import { readBatchHeader, readNotes } from '../../src/wal/batch-format.ts';
import { removeDir, tempDir } from '../support/wal-fixtures.ts';
import { openReplicaHost } from '../support/replica-host.ts';
import { expectRejection } from '../support/expect-code.ts';
import { until } from '../support/waits.ts';

const AT_NS = 1_900_000_000_000_000_000n;

function events(from: number, count: number): Uint8Array {
  const list: SignalEvent[] = [];
  for (let index = 0; index < count; index++) list.push({ entityId: BigInt(from + index), signalType: 1, weight: 1, timestampNs: 1_700_000_000_000_000_000n + BigInt(from + index) });
  return encodeEvents(list);
}

function count(host: ShardHost, entity: number): number {
  return host.state.query(BigInt(entity), [1], AT_NS)[0]?.count ?? 0;
}

/** Two replicas of one shard with a common committed prefix of 5 events (A led epoch 1). */
async function twoReplicas(dirs: { a: string; b: string }): Promise<{ a: ShardHost; b: ShardHost }> {
  const shipped: Uint8Array[] = [];
  const a = await openReplicaHost(dirs.a, { fsync: 'full', availability: true, onDurable: (info) => shipped.push(info.sealed!.slice()) });
  const b = await openReplicaHost(dirs.b, { fsync: 'full', availability: true });
  await a.lead(1);
  const first = a.append(events(1, 5), { producerId: 'p', sessionEpoch: 1, requestSeq: 1 });
  await until(() => a.durableSeq === 5, 'durable on A');
  for (const batch of shipped.splice(0)) await b.appendSealed(batch);
  await a.commitTo(5);
  await b.commitTo(5);
  assert.equal((await first).runs, [1, 5]);
  return { a, b };
}

test('orphan merge - a cut-off leader acks on its own fsync; deposed, its suffix is kept, merged at new seqs once, and counted once everywhere', async () => {
  const dirs = { a: tempDir('avail-a'), b: tempDir('avail-b') };
  const { a, b } = await twoReplicas(dirs);
  try {
    // The split: A keeps its epoch and acknowledges on its own disk (nothing reaches B).
    const acked = await a.append(events(100, 4), { producerId: 'p', sessionEpoch: 1, requestSeq: 2 });
    assert.equal(acked.runs, [6, 4], 'acknowledged before any commit');
    assert.is(a.committedSeq, 5);
    const sessionless = await a.append(events(200, 3));
    assert.equal(sessionless.runs, [10, 3]);
    // The majority side: B leads epoch 2 and writes its own events at the same seqs.
    await b.lead(2);
    const other = b.append(events(300, 6), { producerId: 'q', sessionEpoch: 1, requestSeq: 1 });
    await until(() => b.durableSeq === 11, 'B wrote on');
    await b.commitTo(11);
    assert.equal((await other).runs, [6, 6]);

    // Heal: A learns of epoch 2 and its unconfirmed suffix is cut — kept first.
    await a.setEpoch(2);
    assert.equal(await a.orphanFiles(), [], 'nothing kept before a cut');
    assert.is(await a.truncateAfter(5), 7);
    const files = await a.orphanFiles();
    assert.is(files.length, 1);
    const orphans = await a.readOrphanFile(files[0]);
    assert.is(orphans.length, 2, 'both acknowledged batches');

    const merged = await b.mergeOrphans(orphans);
    assert.equal({ ...merged }, { batches: 2, inLog: 0, alreadyMerged: 0, appended: 2, events: 7, droppedEvents: 0 });
    await until(() => b.durableSeq === 18, 'merged batches durable on B');
    await b.commitTo(18);
    // The same orphans again (a resend after a lost answer, or from another replica): nothing new.
    const again = await b.mergeOrphans(orphans);
    assert.equal([again.appended, again.alreadyMerged], [0, 2]);
    assert.is(b.durableSeq, 18);
    await a.removeOrphanFile(files[0]);
    assert.equal(await a.orphanFiles(), []);

    // Every event once on B; the producer's retry of the request A acknowledged is answered
    // with where its events are now.
    for (const entity of [1, 100, 103, 200, 202, 300, 305]) assert.is(count(b, entity), 1, `entity ${entity} counted once`);
    const retry = await b.append(events(100, 4), { producerId: 'p', sessionEpoch: 1, requestSeq: 2 });
    assert.is(retry.outcome, 'replayed');
    assert.equal(retry.runs, [12, 4], 'the new seqs');
    const next = b.append(events(110, 1), { producerId: 'p', sessionEpoch: 1, requestSeq: 3 });
    await until(() => b.durableSeq === 19, 'the session goes on');
    await b.commitTo(19);
    assert.equal((await next).runs, [19, 1]);

    // The merge note names the batch's origin (epoch 1, seq 6) and carries the moved session.
    const page = await b.read(12, 4);
    assert.is(page.batches[0].firstSeq, 12);
    const sealed = await b.readSealed(12, 1 << 20);
    const parsed = readBatchHeader(sealed[0], 0);
    assert.ok(parsed.ok);
    const notes = readNotes(sealed[0], 64 + parsed.header.count * 21, parsed.header.notesBytes) ?? [];
    const note = notes.find(isMergeNote);
    assert.ok(note !== undefined, 'a merge note');
    const decoded = decodeMergeNote(note);
    assert.equal([decoded.originEpoch, decoded.originFirstSeq, decoded.originCount], [1, 6, 4]);
    assert.equal(decoded.sessions.map((session) => session.producerId), ['~merge:1:6', 'p']);
    assert.equal(decoded.sessions[1].runs, [12, 4]);

    // A follows B again (the batches B has, verbatim): both hold one log and one state.
    for (const batch of await b.readSealed(6, 1 << 20)) await a.appendSealed(batch);
    await a.commitTo(19);
    for (const entity of [1, 100, 103, 110, 200, 202, 300, 305]) {
      assert.equal(a.state.query(BigInt(entity), undefined, AT_NS), b.state.query(BigInt(entity), undefined, AT_NS), `entity ${entity} equal`);
    }
  } finally {
    await a.close();
    await b.close();
    removeDir(dirs.a);
    removeDir(dirs.b);
  }
});

test('orphan merge - a request whose retry already landed on the majority is not appended twice; batches the log holds are skipped', async () => {
  const dirs = { a: tempDir('avail-a'), b: tempDir('avail-b') };
  const { a, b } = await twoReplicas(dirs);
  try {
    // A acknowledges request 2, but the producer never hears it and retries on B.
    await a.append(events(100, 4), { producerId: 'p', sessionEpoch: 1, requestSeq: 2 });
    await a.append(events(150, 2), { producerId: 'r', sessionEpoch: 1, requestSeq: 1 });
    await b.lead(2);
    const retried = b.append(events(100, 4), { producerId: 'p', sessionEpoch: 1, requestSeq: 2 });
    await until(() => b.durableSeq === 9, 'the retry landed on B');
    await b.commitTo(9);
    assert.equal((await retried).runs, [6, 4]);
    await a.setEpoch(2);
    await a.truncateAfter(5);
    const orphans = await a.readOrphanFile((await a.orphanFiles())[0]);
    // With the committed prefix's batch sent along: found in B's log as it is.
    const prefix = await b.readSealed(1, 1 << 20);
    const merged = await b.mergeOrphans([prefix[0], ...orphans]);
    assert.equal([merged.inLog, merged.appended, merged.events, merged.droppedEvents], [1, 1, 2, 4], "request 2's events left out, r's appended");
    await until(() => b.durableSeq === 11, 'durable');
    await b.commitTo(11);
    for (const entity of [100, 103, 150, 151]) assert.is(count(b, entity), 1, `entity ${entity} once`);
  } finally {
    await a.close();
    await b.close();
    removeDir(dirs.a);
    removeDir(dirs.b);
  }
});

test('orphan merge - refused off the leader and for a damaged batch; producers may not use the merge prefix', async () => {
  const dirs = { a: tempDir('avail-a'), b: tempDir('avail-b') };
  const { a, b } = await twoReplicas(dirs);
  try {
    const batch = (await a.readSealed(1, 1 << 20))[0];
    await expectRejection(b.mergeOrphans([batch]), 'NOT_LEADER');
    const flipped = batch.slice();
    flipped[70] ^= 0x01;
    await expectRejection(a.mergeOrphans([flipped]), 'CHECKSUM_MISMATCH');
    await expectRejection(a.append(events(9, 1), { producerId: '~merge:1:6', sessionEpoch: 1, requestSeq: 1 }), 'BAD_REQUEST');
  } finally {
    await a.close();
    await b.close();
    removeDir(dirs.a);
    removeDir(dirs.b);
  }
});

test.run();
