// Tails against a scripted node that keeps appending: the yielded seqs must be exactly
// start, start+1, … with no gap and no duplicate, through the disk→feed switch, feed gaps,
// full buffers and lost feed messages.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { Clock } from '../../src/clock.ts';
import { createConsumer, type Consumer, type ConsumerOptions, type ConsumedEvent, type ShardTail } from '../../src/client/index.ts';
import type { SignalEvent } from '../../src/event.ts';
import { InProcessTransport } from '../../src/transport/in-process.ts';
import { FakeNode, eventsForShard, expectRejection, settle, type FakeNodeOptions } from '../support/fake-node.ts';
import { until, WAIT_MS, within } from '../support/waits.ts';

async function setup(consumerOptions: Partial<ConsumerOptions> = {}, nodeOptions: FakeNodeOptions = {}): Promise<{ node: FakeNode; consumer: Consumer }> {
  const node = new FakeNode({ router: { strategy: 'single' }, ...nodeOptions });
  const consumer = await createConsumer({
    transport: new InProcessTransport({ bus: node.transport.bus }),
    namespace: node.namespace,
    requestTimeoutMs: WAIT_MS, // a hang bound: a lost request comes back TIMEOUT from the node
    retryBackoffMs: 1,
    maxRetryBackoffMs: 4,
    idlePollMs: 60_000, // only tests about idleness rely on the poll
    ...consumerOptions,
  });
  return { node, consumer };
}

/** A clock that stands still until the test moves it: a deadline passes when the test says so. */
class ManualClock implements Clock {
  private atMs = 1_000_000;
  nowMs(): number {
    return this.atMs;
  }
  nowNs(): bigint {
    return BigInt(this.atMs) * 1_000_000n;
  }
  stepMs(ms: number): void {
    this.atMs += ms;
  }
}

function readsFrom(node: FakeNode, fromSeq: number): number {
  return node.requests.filter((request) => request.endpoint === 'read' && request.fromSeq === fromSeq).length;
}

/** Iterates `tail` with for-await to its end; rejects with what the loop throws. */
async function drain(tail: ShardTail): Promise<ConsumedEvent[]> {
  const out: ConsumedEvent[] = [];
  for await (const consumed of tail) out.push(consumed);
  return out;
}

/** Pulls from `tail` until it yielded seq `lastSeq`; the tail stays open. */
async function takeUntil(tail: ShardTail, lastSeq: number, onEach?: (consumed: ConsumedEvent) => void): Promise<ConsumedEvent[]> {
  const out: ConsumedEvent[] = [];
  while (out.length === 0 || out[out.length - 1].seq < lastSeq) {
    const next = await tail.next();
    assert.not.ok(next.done, 'the tail ended early');
    out.push(next.value as ConsumedEvent);
    onEach?.(next.value as ConsumedEvent);
  }
  return out;
}

function assertExactly(consumed: ConsumedEvent[], fromSeq: number, log: SignalEvent[]): void {
  assert.equal(consumed.map((item) => item.seq), Array.from({ length: consumed.length }, (_, index) => fromSeq + index), 'no gap, no duplicate');
  assert.equal(consumed.map((item) => item.event), log.slice(fromSeq - 1, fromSeq - 1 + consumed.length));
}

test('shard-tail - appends racing the start: every seq exactly once across the switch to the feed', async () => {
  const { node, consumer } = await setup();
  for (let batch = 0; batch < 20; batch++) node.appendDirect(0, eventsForShard(node.router, 0, 3, batch));
  // Appends land between page reads, before and after the page is cut, so the feed buffer
  // fills with messages that overlap what the pages return.
  let reads = 0;
  node.beforeRead = () => {
    reads++;
    if (reads <= 12) node.appendDirect(0, eventsForShard(node.router, 0, 1 + (reads % 3), 100 + reads));
    if (reads % 2 === 0) queueMicrotask(() => node.appendDirect(0, eventsForShard(node.router, 0, 2, 200 + reads)));
  };
  const tail = consumer.tail({ shard: 0, fromSeq: 5, pageEvents: 4 });
  let appendedWhileTailing = 0;
  const first = await takeUntil(tail, 40, () => {
    // Keep appending while the tail runs, in between its pulls.
    if (appendedWhileTailing++ % 5 === 0) setImmediate(() => node.appendDirect(0, eventsForShard(node.router, 0, 2, 300 + appendedWhileTailing)));
  });
  await settle(20);
  node.beforeRead = null;
  const rest = await takeUntil(tail, node.lastSeq(0));
  const all = [...first, ...rest];
  assertExactly(all, 5, node.events(0));
  assert.is(all[all.length - 1].seq, node.lastSeq(0));
  const stats = tail.stats();
  assert.ok(stats.switchesToFeed >= 1, 'the tail moved to the feed');
  assert.ok(stats.eventsFromFeed > 0 && stats.eventsFromPages > 0, 'both sources were used');
  // Live: a new append reaches the tail through the feed alone.
  const pagesBefore = stats.pagesRead;
  const liveSeq = node.appendDirect(0, eventsForShard(node.router, 0, 1, 999));
  const live = await takeUntil(tail, liveSeq);
  assertExactly([...all, ...live], 5, node.events(0));
  assert.is(tail.stats().pagesRead, pagesBefore, 'no page read for a live event');
  await tail.return();
  await consumer.close();
});

test('shard-tail - a gap in the feed sends the tail back to disk, then to the feed again', async () => {
  const { node, consumer } = await setup();
  const tail = consumer.tail({ shard: 0 });
  const pending = tail.next();
  await settle(10);
  node.appendDirect(0, eventsForShard(node.router, 0, 2, 1));
  const consumed = [(await pending).value as ConsumedEvent, ...(await takeUntil(tail, 2))];
  node.skipFeed(1);
  node.appendDirect(0, eventsForShard(node.router, 0, 3, 2)); // never published
  node.appendDirect(0, eventsForShard(node.router, 0, 2, 3));
  node.appendDirect(0, eventsForShard(node.router, 0, 2, 4));
  consumed.push(...(await takeUntil(tail, node.lastSeq(0))));
  const stats = tail.stats();
  assert.ok(stats.feedGaps >= 1, 'the gap was noticed');
  assert.ok(stats.pagesRead >= 2, 'and the hole read from disk');
  node.appendDirect(0, eventsForShard(node.router, 0, 1, 5));
  await settle(5); // its feed message arrives before the tail asks for more
  consumed.push(...(await takeUntil(tail, node.lastSeq(0))));
  assertExactly(consumed, 1, node.events(0));
  assert.ok(tail.stats().switchesToFeed >= 2, 'then the tail returned to the feed');
  await tail.return();
  await consumer.close();
});

test('shard-tail - a full feed buffer drops the oldest and the tail reads the hole from disk', async () => {
  const { node, consumer } = await setup();
  node.appendDirect(0, eventsForShard(node.router, 0, 1, 0));
  const tail = consumer.tail({ shard: 0, maxBufferedFeedMessages: 2 });
  const consumed = await takeUntil(tail, 1);
  for (let batch = 1; batch <= 10; batch++) node.appendDirect(0, eventsForShard(node.router, 0, 2, batch));
  await settle(10); // all ten feed messages arrive while nobody pulls
  consumed.push(...(await takeUntil(tail, node.lastSeq(0))));
  assertExactly(consumed, 1, node.events(0));
  assert.ok(tail.stats().feedMessagesDropped >= 8, 'the buffer stayed at its bound');
  await tail.return();
  await consumer.close();
});

test('shard-tail - an idle tail finds an event whose feed message was lost', async () => {
  const { node, consumer } = await setup();
  node.appendDirect(0, eventsForShard(node.router, 0, 1, 0));
  const tail = consumer.tail({ shard: 0, idlePollMs: 10 });
  const consumed = await takeUntil(tail, 1);
  await settle(5);
  node.skipFeed(1);
  node.appendDirect(0, eventsForShard(node.router, 0, 2, 1)); // no feed message, and nothing after it
  consumed.push(...(await takeUntil(tail, 3)));
  assertExactly(consumed, 1, node.events(0));
  await tail.return();
  await consumer.close();
});

test('shard-tail - fromTimestampNs starts at the first batch sealed at or after it', async () => {
  const { node, consumer } = await setup();
  for (let batch = 0; batch < 4; batch++) node.appendDirect(0, eventsForShard(node.router, 0, 2, batch));
  const third = node.batches(0)[2];
  const tail = consumer.tail({ shard: 0, fromTimestampNs: third.timestampNs - 1n });
  const consumed = await takeUntil(tail, node.lastSeq(0));
  assert.is(consumed[0].seq, third.firstSeq);
  assertExactly(consumed, third.firstSeq, node.events(0));
  assert.is(node.requests.filter((request) => request.endpoint === 'seek').length, 1);
  await tail.return();
  await consumer.close();
});

test('shard-tail - read failures are retried; break and close() end tails', async () => {
  const { node, consumer } = await setup();
  node.appendDirect(0, eventsForShard(node.router, 0, 3, 0));
  node.failRequests(1, 'TIMEOUT', 'read');
  node.failRequests(1, 'CLOSED', 'read'); // a shard not serving for a moment
  node.failRequests(1, 'NO_RESPONDERS', 'read'); // a failover: no replica subscribed for a moment
  node.failRequests(1, 'NOT_LEADER', 'read');
  node.failRequests(1, 'DISCONNECTED', 'read');
  node.ignoreRequests(1, 'read');
  const seqs: number[] = [];
  for await (const consumed of consumer.tail({ shard: 0 })) {
    seqs.push(consumed.seq);
    if (consumed.seq === 3) break;
  }
  assert.equal(seqs, [1, 2, 3]);
  const waiting = consumer.tail({ shard: 0, fromSeq: 4 });
  const next = waiting.next();
  await settle(5);
  await consumer.close();
  assert.ok((await next).done, 'a tail waiting for events ends on close()');
  assert.throws(() => consumer.tail({ shard: 0 }));
});

test('shard-tail - a start past hwm + 1 ends the for-await with OUT_OF_RANGE once retryTimeoutMs passed', async () => {
  const clock = new ManualClock();
  const { node, consumer } = await setup({ clock, retryTimeoutMs: 1000 });
  node.appendDirect(0, eventsForShard(node.router, 0, 3, 0)); // hwm 3: seq 4 is next, 5 is past the end
  const failing = drain(consumer.tail({ shard: 0, fromSeq: 5 }));
  failing.catch(() => undefined); // awaited below; not an unhandled rejection meanwhile
  // A follower answering the read may lag its leader: the tail asks again before it gives up.
  await until(() => readsFrom(node, 5) >= 3, 'the tail to ask again');
  clock.stepMs(1001);
  await expectRejection(within(failing, 'the tail past the end to fail'), 'OUT_OF_RANGE');
  await consumer.close();
});

test('shard-tail - at hwm + 1 the tail waits for the next event, through lagging replicas, past retryTimeoutMs', async () => {
  const clock = new ManualClock();
  const { node, consumer } = await setup({ clock, retryTimeoutMs: 1000 });
  node.appendDirect(0, eventsForShard(node.router, 0, 3, 0));
  node.lagReads(2, 2); // the first two answers come from a follower two events behind: seq 4 is past its end
  const tail = consumer.tail({ shard: 0, fromSeq: 4, idlePollMs: 5 });
  const next = tail.next();
  let failure: unknown = null;
  next.catch((error: unknown) => (failure = error));
  const isWaiting = (reads: number) => (): boolean => failure !== null || readsFrom(node, 4) >= reads;
  await until(isWaiting(3), 'the tail to reach an up-to-date replica');
  clock.stepMs(60_000); // the start was confirmed: no deadline is left to pass
  node.lagReads(3, 2); // and a lagging replica answering now means lag, not a bad fromSeq
  await until(isWaiting(readsFrom(node, 4) + 5), 'the idle tail to read past the lagging answers');
  assert.is(failure, null, 'the tail kept waiting');
  const seq = node.appendDirect(0, eventsForShard(node.router, 0, 1, 1));
  const consumed = await within(next, 'the next event');
  assert.not.ok(consumed.done, 'the tail is still running');
  assert.is((consumed.value as ConsumedEvent).seq, seq);
  assert.is(seq, 4);
  await tail.return();
  await consumer.close();
});

test('shard-tail - a shard outside the map ends the for-await with UNKNOWN_SHARD at once', async () => {
  const { node, consumer } = await setup();
  // Nothing subscribes to shard 7's subjects: its reads and seeks would meet NO_RESPONDERS,
  // as in a failover, which is retried forever.
  await expectRejection(within(drain(consumer.tail({ shard: 7 })), 'the tail of shard 7 to fail'), 'UNKNOWN_SHARD');
  await expectRejection(within(drain(consumer.tail({ shard: 7, fromTimestampNs: 1n })), 'the tail of shard 7 by time to fail'), 'UNKNOWN_SHARD');
  // A shard the map has still tails on the same consumer.
  node.appendDirect(0, eventsForShard(node.router, 0, 1, 0));
  const tail = consumer.tail({ shard: 0 });
  assert.is(((await tail.next()).value as ConsumedEvent).seq, 1);
  await tail.return();
  await consumer.close();
});

test("shard-tail - pageEvents above the node's maxRequestEvents is lowered to it, not refused", async () => {
  const { node, consumer } = await setup({ pageEvents: 50 }, { maxRequestEvents: 4 });
  node.appendDirect(0, eventsForShard(node.router, 0, 10, 0));
  const tail = consumer.tail({ shard: 0 });
  const consumed = await within(takeUntil(tail, 10), 'ten events');
  assertExactly(consumed, 1, node.events(0));
  const reads = node.requests.filter((request) => request.endpoint === 'read');
  assert.ok(reads.length >= 3 && reads.every((request) => request.eventCount <= 4), `pages of at most 4 events: ${reads.map((request) => request.eventCount).join(', ')}`);
  await tail.return();
  await consumer.close();
});

test.run();
