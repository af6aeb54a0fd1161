// The replication data plane over real shard hosts (files, fsync off for speed) and lossy
// in-memory links with seeded faults: requests lost, replies lost after the follower applied
// them. Checked after every round: whatever the leader committed, a quorum holds byte for
// byte; followers' logs are prefixes of the leader's; the commit point never goes down. Then
// a failover to the most advanced follower, with the other follower unreachable at first and
// the old leader rejoining with a suffix nobody else has: it is cut, its caller told, and
// every replica ends with the same log holding every acknowledged event exactly once.
// REPLICATION_SEEDS=n runs seeds 1..n (default 12), REPLICATION_SEED_FROM=k starts at k. The
// fault decisions follow the seed; the interleaving is the event loop's (real files), so this
// is a randomized test, not the deterministic simulation.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { encodeEvents, type SignalEvent } from '../../src/event.ts';
import { FollowerReplica, Shipper, quorumHwm, type FollowerLink, type InstallReply, type InstallRequest, type ReplicateReply, type ReplicateRequest } from '../../src/node/replication.ts';
import { ShardHost } from '../../src/node/shard-host.ts';
import { mulberry32 } from '../crdt/replica-simulation.ts';
import { removeDir, tempDir } from '../support/wal-fixtures.ts';
import { openReplicaHost } from '../support/replica-host.ts';
import { until, within } from '../support/waits.ts';

function openHost(dir: string, onDurable?: () => void): Promise<ShardHost> {
  return openReplicaHost(dir, { fsync: 'off', ...(onDurable === undefined ? {} : { onDurable }) });
}

function packed(first: number, count: number): Uint8Array {
  const events: SignalEvent[] = [];
  for (let index = 0; index < count; index++) events.push({ entityId: BigInt(first + index), signalType: 1, weight: 1, timestampNs: 1_700_000_000_000_000_000n + BigInt(first + index) });
  return encodeEvents(events);
}

/** A link to a follower that loses requests and replies as the seeded random says. */
function lossyLink(nodeId: string, follower: FollowerReplica, random: () => number, lossRate: number, isUp: () => boolean): FollowerLink & { settled(): Promise<unknown> } {
  let queue: Promise<unknown> = Promise.resolve();
  // The follower handles one request at a time, in arrival order (as a subscription does).
  const deliver = <T>(handle: () => Promise<T>): Promise<T> => {
    const handled = queue.then(async () => {
      if (!isUp() || random() < lossRate) throw new Error(`${nodeId}: request lost`);
      const reply = await handle();
      if (random() < lossRate) throw new Error(`${nodeId}: reply lost`);
      return reply;
    });
    queue = handled.catch(() => undefined);
    return handled;
  };
  return {
    nodeId,
    /** Every request sent so far has been handled (or lost). */
    settled: () => queue,
    send: (request: ReplicateRequest): Promise<ReplicateReply> => deliver(() => follower.handle(request)),
    install: (request: InstallRequest): Promise<InstallReply> => deliver(() => follower.install(request)),
  };
}

async function logOf(host: ShardHost): Promise<string[]> {
  const batches = await host.readSealed(1, Number.MAX_SAFE_INTEGER);
  return batches.map((batch) => Buffer.from(batch).toString('hex'));
}

/** The batches of a log as firstSeq+count@epoch, for failure messages. */
async function rangesOf(host: ShardHost): Promise<string> {
  const batches = await host.readSealed(1, Number.MAX_SAFE_INTEGER);
  return batches
    .map((batch) => {
      const view = new DataView(batch.buffer, batch.byteOffset, batch.byteLength);
      return `${Number(view.getBigUint64(24, true))}+${view.getUint32(12, true)}@${Number(view.getBigUint64(16, true))}`;
    })
    .join(' ');
}

/** The batches of `host` up to and including `seq` (whole batches; they end at seq when committed). */
async function prefixThrough(host: ShardHost, seq: number): Promise<string[]> {
  const out: string[] = [];
  for (const batch of await host.readSealed(1, Number.MAX_SAFE_INTEGER)) {
    const view = new DataView(batch.buffer, batch.byteOffset, batch.byteLength);
    if (Number(view.getBigUint64(24, true)) > seq) break;
    out.push(Buffer.from(batch).toString('hex'));
  }
  return out;
}

/** Invariant 1: whatever the leader has committed, a quorum (the leader included) holds byte for byte. */
async function assertQuorumHolds(leader: ShardHost, replicas: readonly ShardHost[], quorum: number): Promise<void> {
  const committed = leader.committedSeq;
  const expected = await prefixThrough(leader, committed);
  let holding = 0;
  const seen: string[] = [];
  for (const replica of replicas) {
    const got = await prefixThrough(replica, committed);
    const holds = got.length === expected.length && got.every((batch, index) => batch === expected[index]) && replica.durableSeq >= committed;
    if (holds) holding++;
    seen.push(`${holds ? 'holds' : 'lacks'} (${got.length} of ${expected.length} batches, durable ${replica.durableSeq}): ${await rangesOf(replica)}`);
  }
  assert.ok(holding >= quorum, `seq ${committed} is committed but only ${holding} replicas hold the leader's log to it: ${seen.join(' / ')}`);
}

async function entitiesOf(host: ShardHost): Promise<number[]> {
  const ids: number[] = [];
  for (const batch of await host.readSealed(1, Number.MAX_SAFE_INTEGER)) {
    const view = new DataView(batch.buffer, batch.byteOffset, batch.byteLength);
    const count = view.getUint32(12, true);
    for (let index = 0; index < count; index++) ids.push(Number(view.getBigUint64(64 + index * 21, true)));
  }
  return ids;
}

test('replication - quorumHwm is the highest seq a majority holds', () => {
  assert.is(quorumHwm(10, [7, 3], 3), 7);
  assert.is(quorumHwm(10, [0, 0], 3), 0);
  assert.is(quorumHwm(10, [12, 3], 3), 10, 'a follower never counts past what the leader has (it cannot have more)');
  assert.is(quorumHwm(10, [], 1), 10);
  assert.is(quorumHwm(10, [9, 8, 2, 1], 5), 8);
});

const SEEDS = Number(process.env.REPLICATION_SEEDS ?? 12);

for (let seed = Number(process.env.REPLICATION_SEED_FROM ?? 1); seed <= SEEDS; seed++) {
  test(`replication - seed ${seed}: lossy links, then a failover with a divergent old leader`, async () => {
    const random = mulberry32(seed);
    const dirs = ['a', 'b', 'c'].map((name) => tempDir(`repl-${name}`));
    const up = new Set(['a', 'b', 'c']);
    let shipper: Shipper | null = null;
    const pumpSoon = (): void => {
      setImmediate(() => void shipper?.pump());
    };
    const [a, b, c] = await Promise.all([openHost(dirs[0], pumpSoon), openHost(dirs[1], pumpSoon), openHost(dirs[2], pumpSoon)]);
    try {
      await a.lead(1);
      const links = [
        lossyLink('b', new FollowerReplica(b), random, 0.2, () => up.has('b')),
        lossyLink('c', new FollowerReplica(c), random, 0.2, () => up.has('c')),
      ];
      shipper = new Shipper(a, links, { shard: 0, leaderId: 'a', replicationFactor: 3 });
      let lastHwm = 0;
      const acked = new Map<number, number[]>(); // requestSeq → entity ids
      const calls: Array<Promise<void>> = [];
      let entity = 1;
      for (let requestSeq = 1; requestSeq <= 30; requestSeq++) {
        const count = 1 + Math.floor(random() * 20);
        const ids = Array.from({ length: count }, (_, index) => entity + index);
        const first = entity;
        entity += count;
        calls.push(
          a.append(packed(first, count), { producerId: 'p', sessionEpoch: 1, requestSeq }).then(() => {
            acked.set(requestSeq, ids);
          }),
        );
        if (random() < 0.3) await new Promise((resolve) => setImmediate(resolve));
        assert.ok(a.committedSeq >= lastHwm, 'the commit point never goes down');
        lastHwm = a.committedSeq;
      }
      // Heartbeats until everything is committed.
      while (acked.size < 30) {
        await shipper.pump();
        await Promise.all(links.map((link) => link.settled()));
        await assertQuorumHolds(a, [a, b, c], 2);
        assert.ok(a.committedSeq >= lastHwm);
        lastHwm = a.committedSeq;
        await new Promise((resolve) => setImmediate(resolve));
      }
      await within(Promise.all(calls), 'every append answered', 10_000);
      // Every acknowledged event is on a quorum: the leader and at least one follower.
      const logA = await logOf(a);
      for (const follower of [b, c]) {
        const log = await logOf(follower);
        assert.equal(log, logA.slice(0, log.length), 'a follower holds a prefix of the leader\'s log');
      }
      const longest = Math.max((await logOf(b)).length, (await logOf(c)).length);
      assert.is(longest, logA.length, 'a quorum holds every acknowledged batch');

      // The old leader goes on alone: batches nobody else gets (never committed, never acked).
      up.delete('b');
      up.delete('c');
      const orphan = a.append(packed(100_000, 5), { producerId: 'p', sessionEpoch: 1, requestSeq: 31 }).then(
        () => 'acked',
        (error: { code?: string }) => error.code ?? 'error',
      );
      await until(() => a.durableSeq > (logA.length === 0 ? 0 : a.committedSeq), 'the orphan suffix is durable on a only');
      shipper = null;

      // Failover: the most advanced follower leads epoch 2 (the shard machine picks it after
      // collecting a majority's log ends); it ships to the other follower and to the old leader.
      const [next, other] = b.durableSeq >= c.durableSeq ? [b, c] : [c, b];
      const nextId = next === b ? 'b' : 'c';
      const otherId = next === b ? 'c' : 'b';
      await next.lead(2);
      const leadEnd = next.durableSeq;
      up.add('b');
      up.add('c');
      // The other follower stays unreachable at first: the quorum must come from the old leader,
      // whose suffix diverges.
      let isOtherUp = false;
      const newLinks = [lossyLink(otherId, new FollowerReplica(other), random, 0.2, () => isOtherUp), lossyLink('a', new FollowerReplica(a), random, 0.2, () => true)];
      const quiet = (): Promise<unknown> => Promise.all(newLinks.map((link) => link.settled()));
      const newShipper = new Shipper(
        next,
        newLinks,
        { shard: 0, leaderId: nextId, replicationFactor: 3 },
      );
      shipper = newShipper;
      // The new leader serves once a quorum matched its log (the shard machine's gate).
      while (next.committedSeq < leadEnd) {
        await newShipper.pump();
        await quiet();
        await assertQuorumHolds(next, [next, a, other], 2);
        await new Promise((resolve) => setImmediate(resolve));
      }
      const retry = next.append(packed(100_000, 5), { producerId: 'p', sessionEpoch: 1, requestSeq: 31 });
      let retried = false;
      retry.then(
        () => (retried = true),
        () => undefined, // observed below
      );
      const converged = async (): Promise<boolean> =>
        retried && next.committedSeq === next.durableSeq && a.committedSeq === next.committedSeq && (await logOf(a)).length === (await logOf(next)).length;
      for (let round = 0; round < 2_000 && !(await converged()); round++) {
        if (round === 20) isOtherUp = true;
        await newShipper.pump();
        await quiet();
        await assertQuorumHolds(next, [next, a, other], 2);
        await new Promise((resolve) => setImmediate(resolve));
      }
      const state = async (): Promise<string> => `committed ${next.committedSeq}/${next.durableSeq}, a ${a.committedSeq}/${a.durableSeq}, matches ${JSON.stringify(newShipper.matchSeqs())}: ${nextId}: ${await rangesOf(next)} | a: ${await rangesOf(a)} | ${otherId}: ${await rangesOf(other)}`;
      await within(retry, `the retry (${await state()})`, 10_000);
      assert.is(await within(orphan, `the orphan (${await state()})`, 10_000), 'TRUNCATED', 'the old leader\'s lone suffix was cut, its caller told');
      const finalLog = await logOf(next);
      const picture = `new leader ${nextId}: ${await rangesOf(next)} | ${otherId}: ${await rangesOf(other)} | a: ${await rangesOf(a)}`;
      assert.equal(await logOf(a), finalLog, `the old leader now holds the new leader's log: ${picture}`);
      const otherLog = await logOf(other); // read once: shipping to it may still be under way
      assert.equal(otherLog, finalLog.slice(0, otherLog.length), `the other follower holds a prefix: ${picture}`);
      const ids = await entitiesOf(next);
      const expected = [...[...acked.values()].flat(), 100_000, 100_001, 100_002, 100_003, 100_004];
      assert.equal([...ids].sort((x, y) => x - y), expected.sort((x, y) => x - y), 'every acknowledged event exactly once, the retried request once');
      for (const host of [a, next]) assert.is(host.query(100_000n, [1])[0].count, 1, 'counted once');
    } finally {
      shipper = null;
      await Promise.all([a.close(), b.close(), c.close()]);
      for (const dir of dirs) removeDir(dir);
    }
  });
}

test.run();
