// The replication protocol's sharp edges, each found by an adversarial review and failing
// before its fix: a follower confirms an epoch only once it holds the leader's log to where it
// began to lead (so an election by (confirmedEpoch, length) never picks a replica that lacks a
// committed batch); a deposed leader's shipper falls silent and commits nothing; a deposed
// leader's queued appends are dropped, never sealed with the new epoch; a cut keeps the
// log's epoch floor.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { encodeEvents, type SignalEvent } from '../../src/event.ts';
import { FollowerReplica, Shipper, type FollowerLink, type InstallReply, type InstallRequest, type ReplicateReply, type ReplicateRequest } from '../../src/node/replication.ts';
import { ShardHost } from '../../src/node/shard-host.ts';
import { openReplicaHost, type ReplicaHostOptions } from '../support/replica-host.ts';
import { rejection, removeDir, tempDir } from '../support/wal-fixtures.ts';
import { until } from '../support/waits.ts';
import { FaultyFileIo } from '../support/faulty-file-io.ts';

function packed(first: number, count: number): Uint8Array {
  const events: SignalEvent[] = [];
  for (let index = 0; index < count; index++) events.push({ entityId: BigInt(first + index), signalType: 1, weight: 1, timestampNs: 1_700_000_000_000_000_000n + BigInt(first + index) });
  return encodeEvents(events);
}

/** A link that delivers while `allowed` says so and counts what it delivered. */
function link(nodeId: string, follower: FollowerReplica, allowed: (request: ReplicateRequest) => boolean): FollowerLink & { delivered: number } {
  const result = {
    nodeId,
    delivered: 0,
    async send(request: ReplicateRequest): Promise<ReplicateReply> {
      if (!allowed(request)) throw new Error(`${nodeId}: unreachable`);
      result.delivered++;
      return follower.handle(request);
    },
    install(request: InstallRequest): Promise<InstallReply> {
      return follower.install(request);
    },
  };
  return result;
}

async function withHosts(names: string[], run: (hosts: ShardHost[]) => Promise<void>, options: ReplicaHostOptions = { fsync: 'full' }): Promise<void> {
  const dirs = names.map((name) => tempDir(`repl-fault-${name}`));
  const hosts = await Promise.all(dirs.map((dir) => openReplicaHost(dir, options)));
  try {
    await run(hosts);
  } finally {
    await Promise.all(hosts.map((host) => host.close().catch(() => undefined)));
    for (const dir of dirs) removeDir(dir);
  }
}

test('replication faults - a partial catch-up does not confirm the epoch: the election prefers the replica holding every acknowledged batch', async () => {
  await withHosts(['a', 'b', 'c'], async ([a, b, c]) => {
    // Epoch 1: a leads, c is down; two requests committed on {a, b}.
    await a.lead(1);
    const s1 = new Shipper(a, [link('b', new FollowerReplica(b), () => true), link('c', new FollowerReplica(c), () => false)], { shard: 0, leaderId: 'a', replicationFactor: 3 });
    for (const [first, requestSeq] of [
      [1, 1],
      [6, 2],
    ]) {
      const call = a.append(packed(first, 5), { producerId: 'p', sessionEpoch: 1, requestSeq });
      await until(() => a.durableSeq === first + 4, 'durable on a');
      await s1.pump();
      await call;
    }
    assert.is(a.committedSeq, 10);
    // Epoch 2: b leads and gets one batch (1–5) to c, one per request, then is gone.
    await b.lead(2);
    let delivered = 0;
    const s2 = new Shipper(b, [link('c', new FollowerReplica(c), (request) => request.batches.length === 0 || delivered++ === 0), link('a', new FollowerReplica(a), () => false)], {
      shard: 0,
      leaderId: 'b',
      replicationFactor: 3,
      maxRequestBytes: 1,
    });
    await s2.pump();
    assert.is(c.durableSeq, 5, 'c holds 1–5 only');
    assert.ok(c.confirmedEpoch < 2, 'a prefix short of where b began to lead (10) does not confirm epoch 2');
    // The majority {a, c} picks by (confirmedEpoch, durable end): a, which holds 6–10.
    const key = (host: ShardHost): [number, number] => [host.confirmedEpoch, host.durableSeq];
    const [ka, kc] = [key(a), key(c)];
    assert.ok(ka[0] > kc[0] || (ka[0] === kc[0] && ka[1] > kc[1]), `a ${JSON.stringify(ka)} wins over c ${JSON.stringify(kc)}`);
  });
});

test('replication faults - a resend from an older prevSeq (its reply was lost) keeps what this epoch proved and what is committed', async () => {
  await withHosts(['a', 'b'], async ([a, b]) => {
    await a.lead(2);
    for (const first of [1, 6, 11]) {
      a.append(packed(first, 5)).catch(() => undefined);
      await until(() => a.durableSeq === first + 4, 'durable on a');
    }
    const batches = await a.readSealed(1, Number.MAX_SAFE_INTEGER);
    assert.is(batches.length, 3);
    const follower = new FollowerReplica(b);
    // leadEnd beyond the follower: epoch 2 never confirms its log in this test.
    const request = (prevSeq: number, sent: Uint8Array[], hwm: number): ReplicateRequest => ({ shard: 0, epoch: 2, leaderId: 'a', hwm, leadEnd: 1_000, prevSeq, prevEpoch: prevSeq === 0 ? 0 : 2, batches: sent });
    assert.equal(await follower.handle(request(0, batches.slice(0, 2), 0)), { kind: 'ok', matchSeq: 10 });
    // 11–15 arrives and commits to 15, but the reply is lost: the leader still has nextSeq 11.
    assert.equal(await follower.handle(request(10, batches.slice(2), 15)), { kind: 'ok', matchSeq: 15 });
    assert.is(b.committedSeq, 15);
    // The leader's view was older still (a lost reply before): it resends 1–5.
    assert.equal(await follower.handle(request(0, batches.slice(0, 1), 15)), { kind: 'ok', matchSeq: 5 });
    assert.is(b.durableSeq, 15, 'nothing proved equal in this epoch, nor committed, is cut');
    // A new follower object (a restart) knows only the commit point: it is kept too.
    assert.equal(await new FollowerReplica(b).handle(request(0, [], 15)), { kind: 'ok', matchSeq: 0 });
    assert.is(b.durableSeq, 15, 'the committed prefix is kept');
  });
});

test('replication faults - a deposed leader\'s shipper falls silent, commits nothing, and the deposed leader takes no appends', async () => {
  await withHosts(['a', 'b', 'c'], async ([a, b, c]) => {
    await a.lead(1);
    const toB = link('b', new FollowerReplica(b), () => false);
    const toC = link('c', new FollowerReplica(c), () => true);
    const s1 = new Shipper(a, [toB, toC], { shard: 0, leaderId: 'a', replicationFactor: 3 });
    const orphan = a.append(packed(1, 5), { producerId: 'p', sessionEpoch: 1, requestSeq: 1 }).then(
      () => 'acked',
      (error: { code?: string }) => error.code ?? 'error',
    );
    await until(() => a.durableSeq === 5, 'the orphan is durable on a only');
    // b leads epoch 2 (majority {b, c}) and reaches a: a records epoch 2 and stops leading.
    await b.lead(2);
    const s2 = new Shipper(b, [link('a', new FollowerReplica(a), () => true), link('c', new FollowerReplica(c), () => true)], { shard: 0, leaderId: 'b', replicationFactor: 3 });
    await s2.pump();
    assert.is(a.epoch, 2);
    assert.not.ok(a.leading);
    const sentBefore = toC.delivered;
    await s1.pump();
    assert.is(toC.delivered, sentBefore, 'the old shipper sends nothing any more');
    assert.is(await orphan, 'TRUNCATED', 'the orphan was cut by b\'s first match, never acknowledged');
    assert.is(a.committedSeq, 0);
    assert.is((await rejection(() => a.append(packed(9, 1), { producerId: 'q', sessionEpoch: 1, requestSeq: 1 }))).code, 'NOT_LEADER');
    assert.throws(() => new Shipper(a, [], { shard: 0, leaderId: 'a', replicationFactor: 3 }), /does not lead/);
  });
});

test('replication faults - appends a deposed leader had queued are dropped when it learns the new epoch, never sealed with it', async () => {
  await withHosts(
    ['a'],
    async ([a]) => {
      await a.lead(1);
      const queued = a.append(packed(1, 5), { producerId: 'p', sessionEpoch: 1, requestSeq: 1 }).then(
        () => 'acked',
        (error: { code?: string }) => error.code ?? 'error',
      );
      await a.setEpoch(2); // another replica leads epoch 2; the group was still lingering
      assert.is(await queued, 'NOT_LEADER');
      await new Promise((resolve) => setTimeout(resolve, 400)); // past the linger
      assert.is(a.durableSeq, 0, 'nothing was written, under either epoch');
    },
    { fsync: 'full', batchLingerMs: 300 },
  );
});

test('replication faults - a cut at a segment boundary keeps the epoch floor: an older epoch\'s batch is still refused after it', async () => {
  await withHosts(
    ['l1', 'l2', 'f'],
    async ([l1, l2, f]) => {
      await l1.lead(1);
      const append = async (host: ShardHost, first: number, requestSeq: number): Promise<void> => {
        const to = host.durableSeq + 5;
        host.append(packed(first, 5), { producerId: `p${host.epoch}`, sessionEpoch: 1, requestSeq }).catch(() => undefined);
        await until(() => host.durableSeq === to, 'durable');
      };
      await append(l1, 1, 1); // 1–5, epoch 1
      await append(l1, 100, 2); // 6–10, epoch 1
      await append(l1, 200, 3); // 11–15, epoch 1
      const e1 = await l1.readSealed(1, 1 << 20);
      await l2.appendSealed(e1[0]);
      await l2.lead(2);
      await append(l2, 300, 1); // 6–10, epoch 2
      await append(l2, 400, 2); // 11–15, epoch 2
      const e2 = await l2.readSealed(6, 1 << 20);
      await f.appendSealed(e1[0]);
      await f.setEpoch(2);
      await f.appendSealed(e2[0]);
      await f.appendSealed(e2[1]);
      await f.truncateAfter(10);
      const refused = await rejection(() => f.appendSealed(e1[2])); // epoch 1 at 11, after epoch 2 at 6–10
      assert.is(refused.code, 'FENCED');
      assert.is(f.epochAt(10), 2);
    },
    { fsync: 'off', segmentBytes: 200 },
  );
});

test('replication faults - an epoch start recorded for a batch whose write failed is dropped on reopen: a later older-epoch batch there reads as its own epoch', async () => {
  const dirs = ['a', 'f', 'c'].map((name) => tempDir(`repl-fault-${name}`));
  const faulty = new FaultyFileIo();
  const a = await openReplicaHost(dirs[0], { fsync: 'full' });
  const c = await openReplicaHost(dirs[2], { fsync: 'full' });
  let f = await openReplicaHost(dirs[1], { fsync: 'full', io: faulty });
  try {
    // Epoch 1: a commits 1–5 on {a, f, c}, then writes 6–10 that nobody else gets yet.
    await a.lead(1);
    const s1 = new Shipper(a, [link('f', new FollowerReplica(f), () => true), link('c', new FollowerReplica(c), () => true)], { shard: 0, leaderId: 'a', replicationFactor: 3 });
    const first = a.append(packed(1, 5), { producerId: 'p', sessionEpoch: 1, requestSeq: 1 });
    await until(() => a.durableSeq === 5, 'durable');
    await s1.pump();
    await first;
    a.append(packed(100, 5), { producerId: 'p', sessionEpoch: 1, requestSeq: 2 }).catch(() => undefined);
    await until(() => a.durableSeq === 10, 'a holds 6–10');
    // Epoch 2: c leads and writes 6–8; f records the start {2, 6}, then its segment write fails.
    await c.lead(2);
    c.append(packed(500, 3), { producerId: 'q', sessionEpoch: 1, requestSeq: 1 }).catch(() => undefined);
    await until(() => c.durableSeq === 8, 'c holds 6–8');
    faulty.inject({ op: 'write', path: /\.seg$/ });
    await new Shipper(c, [link('f', new FollowerReplica(f), () => true)], { shard: 0, leaderId: 'c', replicationFactor: 3 }).pump();
    assert.ok(f.failure !== null, 'the write failed: fail-stop');
    await f.close().catch(() => undefined);
    f = await openReplicaHost(dirs[1], { fsync: 'full', epoch: 2 });
    assert.is(f.durableSeq, 5);
    assert.is(f.epochAt(5), 1);
    assert.equal(f.epochEnd(2), { epoch: 1, endSeq: 5 }, 'no epoch-2 start without an epoch-2 batch');
    // Epoch 3: a leads (its quorum elsewhere) and ships its epoch-1 batch 6–10 to f.
    await a.lead(3);
    await a.commitTo(10);
    const s3 = new Shipper(a, [link('f', new FollowerReplica(f), () => true)], { shard: 0, leaderId: 'a', replicationFactor: 3 });
    await s3.pump();
    assert.is(f.durableSeq, 10);
    assert.is(f.epochAt(10), 1, 'f says what a says about 6–10');
    a.append(packed(900, 2), { producerId: 'r', sessionEpoch: 1, requestSeq: 1 }).catch(() => undefined);
    await until(() => a.durableSeq === 12, 'a writes on in epoch 3');
    await s3.pump();
    assert.is(f.durableSeq, 12, 'and f keeps following');
  } finally {
    await Promise.all([a, f, c].map((host) => host.close().catch(() => undefined)));
    for (const dir of dirs) removeDir(dir);
  }
});

test.run();
