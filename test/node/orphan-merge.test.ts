// Availability mode on shard hosts (src/node/orphan-merge.ts, ShardHost availability): a leader
// cut off from its quorum acknowledges on its own fsync; when it is deposed its suffix is kept as
// an orphan file before the cut, and the new leader re-appends it at new seqs, exactly once —
// across a repeated merge, and against a producer's retry that landed on either side.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { TidelogError } from '../../src/errors.ts';
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
    assert.is(b.durableSeq, 18, 'answered once durable on B');
    // A resend right after (its answer was lost), before anything committed: nothing new.
    const resent = await b.mergeOrphans(orphans);
    assert.equal([resent.appended, resent.alreadyMerged], [0, 2]);
    assert.is(b.durableSeq, 18);
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

test('orphan merge - a request merged before the one it follows: no gap refused; the earlier one stays appendable, the merged one replays', async () => {
  const dirs = { a: tempDir('avail-a'), b: tempDir('avail-b') };
  const { a, b } = await twoReplicas(dirs);
  try {
    await a.append(events(100, 2), { producerId: 'p', sessionEpoch: 1, requestSeq: 2 });
    await a.append(events(200, 3), { producerId: 'p', sessionEpoch: 1, requestSeq: 3 });
    await b.lead(2);
    await a.setEpoch(2);
    await a.truncateAfter(5);
    const orphans = await a.readOrphanFile((await a.orphanFiles())[0]);
    assert.is(orphans.length, 2);
    // Only request 3's batch reaches the leader first (request 2's is, say, on another replica).
    const merged = await b.mergeOrphans([orphans[1]]);
    assert.equal([merged.appended, merged.events], [1, 3]);
    await until(() => b.durableSeq === 8, 'durable');
    await b.commitTo(8);
    const retry3 = await b.append(events(200, 3), { producerId: 'p', sessionEpoch: 1, requestSeq: 3 });
    assert.equal([retry3.outcome, retry3.runs], ['replayed', [6, 3]]);
    const retry2 = b.append(events(100, 2), { producerId: 'p', sessionEpoch: 1, requestSeq: 2 });
    await until(() => b.durableSeq === 10, 'request 2 appended');
    await b.commitTo(10);
    assert.equal([(await retry2).outcome, (await retry2).runs], ['new', [9, 2]]);
    // Its orphan arriving now finds it landed: nothing twice.
    const late = await b.mergeOrphans([orphans[0]]);
    assert.equal([late.appended, late.droppedEvents], [0, 2]);
    for (const entity of [100, 101, 200, 202]) assert.is(count(b, entity), 1, `entity ${entity} once`);
  } finally {
    await a.close();
    await b.close();
    removeDir(dirs.a);
    removeDir(dirs.b);
  }
});

test('orphan merge - LWW flags order merged events by when they were written: a hide on the cut-off side loses to a later unhide on the majority', async () => {
  const dirs = { a: tempDir('avail-a'), b: tempDir('avail-b') };
  const { a, b } = await twoReplicas(dirs);
  const flag = (signalType: number) => encodeEvents([{ entityId: 500n, signalType, weight: 1, timestampNs: 1_700_000_000_000_000_000n }]);
  try {
    await a.append(flag(200)); // hide, on the cut-off side first
    await new Promise((resolve) => setTimeout(resolve, 5));
    await b.lead(2);
    const unhide = b.append(flag(201)); // then unhide on the majority
    await until(() => b.durableSeq === 6, 'durable');
    await b.commitTo(6);
    await unhide;
    await a.setEpoch(2);
    await a.truncateAfter(5);
    await new Promise((resolve) => setTimeout(resolve, 5));
    await b.mergeOrphans(await a.readOrphanFile((await a.orphanFiles())[0]));
    await until(() => b.durableSeq === 7, 'merged');
    await b.commitTo(7);
    assert.is(b.state.query(500n, [1], AT_NS)[0].isHidden, false, 'the later unhide wins although the hide was merged after it');
  } finally {
    await a.close();
    await b.close();
    removeDir(dirs.a);
    removeDir(dirs.b);
  }
});

test('orphan merge - a producer that restarted its session since: a fenced request found in the log is left out, one not found is kept', async () => {
  const dirs = { a: tempDir('avail-a'), b: tempDir('avail-b') };
  const { a, b } = await twoReplicas(dirs);
  try {
    // The cut-off side acknowledges requests 2 and 3 of epoch 1.
    await a.append(events(100, 2), { producerId: 'p', sessionEpoch: 1, requestSeq: 2 });
    await a.append(events(200, 2), { producerId: 'p', sessionEpoch: 1, requestSeq: 3 });
    await b.lead(2);
    // Request 2's ack was lost: the producer retried it on the majority, then started epoch 2.
    const retried = b.append(events(100, 2), { producerId: 'p', sessionEpoch: 1, requestSeq: 2 });
    const restarted = b.append(events(300, 1), { producerId: 'p', sessionEpoch: 2, requestSeq: 1 });
    await until(() => b.durableSeq === 8, 'durable');
    await b.commitTo(8);
    await Promise.all([retried, restarted]);
    await a.setEpoch(2);
    await a.truncateAfter(5);
    const merged = await b.mergeOrphans(await a.readOrphanFile((await a.orphanFiles())[0]));
    assert.equal([merged.appended, merged.events, merged.droppedEvents], [1, 2, 2], 'request 2 found in the log, request 3 kept');
    await until(() => b.durableSeq === 10, 'durable');
    await b.commitTo(10);
    for (const entity of [100, 101, 200, 201, 300]) assert.is(count(b, entity), 1, `entity ${entity} once`);
  } finally {
    await a.close();
    await b.close();
    removeDir(dirs.a);
    removeDir(dirs.b);
  }
});

test('orphan merge - a request the leader\'s session floor has passed (later ones merged first) is looked for in the log, not taken for landed', async () => {
  const dirs = { a: tempDir('avail-a'), b: tempDir('avail-b') };
  const { a, b } = await twoReplicas(dirs);
  try {
    // The cut-off side acknowledges p's requests 2..70; the merge brings 3..70 first (say, a
    // resend of a later part), so B's window (64 requests) moves its floor past 2.
    for (let seq = 2; seq <= 70; seq++) await a.append(events(1000 + seq * 10, 1), { producerId: 'p', sessionEpoch: 1, requestSeq: seq });
    await b.lead(2);
    await a.setEpoch(2);
    await a.truncateAfter(5);
    const orphans = await a.readOrphanFile((await a.orphanFiles())[0]);
    assert.is(orphans.length, 69);
    await b.mergeOrphans(orphans.slice(1));
    await b.commitTo(b.durableSeq);
    assert.is(b.state.sessions.classify({ producerId: 'p', sessionEpoch: 1, requestSeq: 2 }), 'forgotten');
    const merged = await b.mergeOrphans(orphans.slice(0, 1));
    assert.equal([merged.appended, merged.events, merged.droppedEvents], [1, 1, 0], 'not in the log: appended');
    await b.commitTo(b.durableSeq);
    for (const entity of [1020, 1030, 1700]) assert.is(count(b, entity), 1, `entity ${entity} once`);
    // And sent again now: found in the log this time.
    const again = await b.mergeOrphans(orphans);
    assert.equal([again.appended, again.alreadyMerged], [0, 69]);
  } finally {
    await a.close();
    await b.close();
    removeDir(dirs.a);
    removeDir(dirs.b);
  }
});

test('orphan merge - a gap at the majority says maybeAppliedElsewhere; the producer restarts its session, and the old epoch\'s cut-off request is merged once', async () => {
  const dirs = { a: tempDir('avail-a'), b: tempDir('avail-b') };
  const { a, b } = await twoReplicas(dirs);
  try {
    // Request 2 acknowledged on the cut-off side; the producer's request 3 reaches B.
    await a.append(events(100, 2), { producerId: 'p', sessionEpoch: 1, requestSeq: 2 });
    await b.lead(2);
    const gap = await b.append(events(200, 2), { producerId: 'p', sessionEpoch: 1, requestSeq: 3 }).then(
      () => null,
      (error: TidelogError) => error,
    );
    assert.is(gap?.code, 'SEQUENCE_GAP');
    assert.is(gap?.context.maybeAppliedElsewhere, true, 'the gap is no proof here');
    // The producer restarts under epoch 2: request 3's events go again as its request 1.
    const restarted = b.append(events(200, 2), { producerId: 'p', sessionEpoch: 2, requestSeq: 1 });
    await until(() => b.durableSeq === 7, 'durable');
    await b.commitTo(7);
    assert.equal((await restarted).runs, [6, 2]);
    // Heal: request 2 (epoch 1, now fenced) is not in the log: merged once.
    await a.setEpoch(2);
    await a.truncateAfter(5);
    const merged = await b.mergeOrphans(await a.readOrphanFile((await a.orphanFiles())[0]));
    assert.equal([merged.appended, merged.events], [1, 2]);
    await b.commitTo(b.durableSeq);
    for (const entity of [100, 101, 200, 201]) assert.is(count(b, entity), 1, `entity ${entity} once`);
  } finally {
    await a.close();
    await b.close();
    removeDir(dirs.a);
    removeDir(dirs.b);
  }
});

test('orphan merge - the log lookup starts before the first orphan batch: a copy in an older epoch\'s tail the orphans\' leader never had is found', async () => {
  const dirs = { x: tempDir('r4-x'), z: tempDir('r4-z') };
  const shipped: Uint8Array[] = [];
  const x = await openReplicaHost(dirs.x, { fsync: 'full', availability: true, onDurable: (info) => shipped.push(info.sealed!.slice()) });
  const z = await openReplicaHost(dirs.z, { fsync: 'full', availability: true });
  try {
    // Epoch 1, leader X: p's request 1 committed on X and Z (seqs 1..5).
    await x.lead(1);
    const first = x.append(events(1, 5), { producerId: 'p', sessionEpoch: 1, requestSeq: 1 });
    await until(() => x.durableSeq === 5, 'durable');
    for (const batch of shipped.splice(0)) await z.appendSealed(batch);
    await x.commitTo(5);
    await z.commitTo(5);
    await first;
    // X fsyncs p's request 2 (seqs 6..7, epoch 1) and acks it on its own disk; the reply is lost, X goes away.
    await x.append(events(100, 2), { producerId: 'p', sessionEpoch: 1, requestSeq: 2 });
    shipped.splice(0);
    // Z is elected epoch 2 (votes of Z and Y, neither holds 6..7) and is cut off at once; the
    // producer's retry of request 2 lands there, then request 3.
    await z.lead(2);
    const r2 = await z.append(events(100, 2), { producerId: 'p', sessionEpoch: 1, requestSeq: 2 });
    const r3 = await z.append(events(200, 1), { producerId: 'p', sessionEpoch: 1, requestSeq: 3 });
    assert.equal([r2.runs, r3.runs], [[6, 2], [8, 1]]);
    // X comes back and wins epoch 3 against Y (same confirmed epoch 1, longer log): it keeps
    // seqs 6..7 of epoch 1 and commits them.
    await x.lead(3);
    // The producer (request 4 next) meets SEQUENCE_GAP at X and restarts its session under epoch 2.
    const gap = await x.append(events(300, 1), { producerId: 'p', sessionEpoch: 1, requestSeq: 4 }).then(() => null, (error: TidelogError) => error);
    assert.is(gap?.code, 'SEQUENCE_GAP');
    const restarted = x.append(events(300, 1), { producerId: 'p', sessionEpoch: 2, requestSeq: 1 });
    await until(() => x.durableSeq === 8, 'durable');
    await x.commitTo(8);
    await restarted;
    // Heal: Z is cut back to the common prefix; its suffix (epoch 2) becomes an orphan, merged at X.
    await z.setEpoch(3);
    await z.truncateAfter(5);
    const orphans = await z.readOrphanFile((await z.orphanFiles())[0]);
    const merged = await x.mergeOrphans(orphans);
    assert.is(merged.droppedEvents, 2, 'request 2 found at seqs 6..7');
    await until(() => x.durableSeq > 8, 'merged');
    await x.commitTo(x.durableSeq);
    assert.is(count(x, 200), 1, 'request 3 (only on Z) merged once');
    assert.is(count(x, 100), 1, 'request 2 (at seqs 6..7 of epoch 1 here, and in the orphan) counted once');
  } finally {
    await x.close();
    await z.close();
    removeDir(dirs.x);
    removeDir(dirs.z);
  }
});

test.run();
