// The producer against a scripted node: batching, acks in input order, idempotent retries,
// backpressure, rejections that leave the session usable, fencing and give-up.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { systemClock, type Clock } from '../../src/clock.ts';
import { isTidelogError } from '../../src/errors.ts';
import { SendError, createProducer, type Producer, type ProducerOptions, type SignalEventInput } from '../../src/client/index.ts';
import { encodeEvents, type SignalEvent } from '../../src/event.ts';
import { InProcessTransport } from '../../src/transport/in-process.ts';
import type { RouterSpec } from '../../src/transport/messages.ts';
import { FakeNode, eventsForShard, expectRejection, settle, type FakeNodeOptions } from '../support/fake-node.ts';
import { until, WAIT_MS } from '../support/waits.ts';

// Time: no result here depends on how fast the machine runs. Requests time out only as a
// hang bound (a lost request or reply comes back as TIMEOUT from the fake node), lingers
// either never end within a test or are awaited, and sendTimeoutMs passes when the test
// moves the producer's clock.

async function setup(
  producerOptions: Partial<ProducerOptions> = {},
  nodeOptions: FakeNodeOptions = {},
): Promise<{ node: FakeNode; producer: Producer; transport: InProcessTransport }> {
  const node = new FakeNode({ router: { strategy: 'single' } satisfies RouterSpec, ...nodeOptions });
  const transport = new InProcessTransport({ bus: node.transport.bus });
  const producer = await createProducer({
    transport,
    namespace: node.namespace,
    producerId: 'test-producer',
    sessionEpoch: 1000,
    requestTimeoutMs: WAIT_MS,
    retryBackoffMs: 1,
    maxRetryBackoffMs: 4,
    ...producerOptions,
  });
  return { node, producer, transport };
}

/** The system clock, moved forward by hand: a deadline passes when the test says so. */
class SteppedClock implements Clock {
  private offsetMs = 0;
  nowMs(): number {
    return systemClock.nowMs() + this.offsetMs;
  }
  nowNs(): bigint {
    return systemClock.nowNs() + BigInt(this.offsetMs) * 1_000_000n;
  }
  stepMs(ms: number): void {
    this.offsetMs += ms;
  }
}

function requestSeqs(node: FakeNode, shard = 0): Array<[number, number]> {
  return node.appendRequests(shard).map((request) => [request.session?.sessionEpoch ?? -1, request.session?.requestSeq ?? -1]);
}

test('producer - a batch goes as soon as it holds maxBatchEvents, without lingering', async () => {
  const { node, producer } = await setup({ maxBatchEvents: 4, lingerMs: 60_000 });
  const events = eventsForShard(node.router, 0, 4);
  const first = producer.send(events.slice(0, 2));
  const second = producer.send(events.slice(2));
  await settle();
  assert.equal(node.appendRequests().map((request) => request.eventCount), [4], 'sent before any linger deadline');
  const acks = [...(await first), ...(await second)];
  assert.equal(acks.map((ack) => ack.seq), [1, 2, 3, 4]);
  await producer.close();
});

test('producer - a send is not split across requests unless it exceeds maxBatchEvents', async () => {
  const { node, producer } = await setup({ maxBatchEvents: 4, lingerMs: 60_000 });
  const events = eventsForShard(node.router, 0, 15);
  const sends = [producer.send(events.slice(0, 3)), producer.send(events.slice(3, 5)), producer.send(events.slice(5, 15))];
  await producer.flush();
  // [3] closes when 2 more would not fit; 10 events must split: the open [2] takes nothing
  // more than fits, so it closes and the chunks go as 4, 4, then a lingering 2.
  assert.equal(node.appendRequests().map((request) => [request.session?.requestSeq, request.eventCount]), [[1, 3], [2, 2], [3, 4], [4, 4], [5, 2]]);
  const acks = (await Promise.all(sends)).flat();
  assert.equal(acks.map((ack) => ack.seq), Array.from({ length: 15 }, (_, index) => index + 1));
  assert.equal(node.events(0), events);
  await producer.close();
});

test('producer - sends within lingerMs travel together in one request', async () => {
  // The linger outlasts the test, so however slowly the turns go by the sends still wait.
  const { node, producer } = await setup({ maxBatchEvents: 100, lingerMs: 60_000 });
  const events = eventsForShard(node.router, 0, 3);
  const sends: Array<ReturnType<Producer['send']>> = [];
  for (const event of events) {
    sends.push(producer.send([event]));
    await settle();
  }
  assert.is(node.appendRequests().length, 0, 'the batch waits for company');
  await producer.flush();
  const acks = await Promise.all(sends);
  assert.equal(acks.map(([ack]) => ack.seq), [1, 2, 3]);
  assert.equal(node.appendRequests().map((request) => request.eventCount), [3]);
  await producer.close();
});

test('producer - the end of lingerMs sends the batch without a flush', async () => {
  const { node, producer } = await setup({ maxBatchEvents: 100, lingerMs: 20 });
  const events = eventsForShard(node.router, 0, 3);
  // Nothing but the linger timer can send these: no flush, and the batch is not full.
  const acks = await Promise.all(events.map((event) => producer.send([event])));
  assert.equal(acks.map(([ack]) => ack.seq), [1, 2, 3]);
  assert.equal(node.appendRequests().map((request) => request.eventCount), [3]);
  await producer.close();
});

test('producer - with lingerMs 0, sends of one event-loop turn share a request and a later turn goes on its own', async () => {
  const { node, producer } = await setup({ maxBatchEvents: 100, lingerMs: 0, maxInFlightRequests: 8 });
  const events = eventsForShard(node.router, 0, 4);
  const sameTurn = [producer.send([events[0]]), producer.send([events[1]]), producer.send([events[2]])];
  await new Promise((resolve) => setImmediate(resolve));
  const later = producer.send([events[3]]);
  await Promise.all([...sameTurn, later]);
  assert.equal(node.appendRequests().map((request) => request.eventCount), [3, 1]);
  await producer.close();
});

test('producer - acks map back to input order across shards', async () => {
  const { node, producer } = await setup({ lingerMs: 0 }, { router: { strategy: 'hash', shards: 4 } });
  const events: SignalEvent[] = Array.from({ length: 200 }, (_, index) => ({
    entityId: BigInt(index * 7919 + 1),
    signalType: 1 + (index % 3),
    weight: index,
    timestampNs: BigInt(index),
  }));
  const acks = await producer.send(events);
  assert.is(acks.length, events.length);
  const shardsUsed = new Set(acks.map((ack) => ack.shard));
  assert.is(shardsUsed.size, 4, 'the events spread over every shard');
  const lastSeq = new Map<number, number>();
  acks.forEach((ack, index) => {
    assert.is(ack.shard, node.router.shardOf(events[index].entityId));
    assert.is(ack.epoch, 1);
    assert.equal(node.events(ack.shard)[ack.seq - 1], events[index], `event ${index} is at its acked seq`);
    assert.ok(ack.seq > (lastSeq.get(ack.shard) ?? 0), 'seqs grow in input order within a shard');
    lastSeq.set(ack.shard, ack.seq);
  });
  // Packed input gets the same treatment.
  const packedAcks = await producer.send(encodeEvents(events.slice(0, 10)));
  packedAcks.forEach((ack, index) => assert.equal(node.events(ack.shard)[ack.seq - 1], events[index]));
  await producer.close();
});

test("producer - a send spanning shards that fails on one rejects with each event's outcome; resending only what was not applied writes every event once", async () => {
  const clock = new SteppedClock();
  const { node, producer } = await setup({ lingerMs: 0, sendTimeoutMs: 60_000, clock }, { router: { strategy: 'hash', shards: 4 } });
  const events: SignalEvent[] = Array.from({ length: 400 }, (_, index) => ({ entityId: BigInt(index * 7919 + 1), signalType: 1, weight: index, timestampNs: BigInt(index) }));
  const shardOf = (index: number): number => node.router.shardOf(events[index].entityId);
  // Shard 1 refuses for good (not applied); shard 2 answers only TIMEOUT (maybe applied).
  node.failShard(1, 'REQUEST_TOO_LARGE');
  node.failShard(2, 'TIMEOUT');
  const sent = producer.send(events);
  await until(() => node.appendRequests(2).length >= 2, 'shard 2 was tried again');
  clock.stepMs(60_000);
  const error = await sent.then(
    () => null,
    (caught: unknown) => caught,
  );
  assert.ok(error instanceof SendError, `a SendError (${String(error)})`);
  assert.is(error.code, 'REQUEST_TOO_LARGE', "the first failure's code");
  const byShard = (shard: number): number[] => events.map((_, index) => index).filter((index) => shardOf(index) === shard);
  assert.equal(error.notApplied, byShard(1), "shard 1's events were certainly not applied");
  assert.equal(error.maybeApplied, byShard(2), "shard 2's events may have been (timeouts)");
  assert.equal(error.failures.map((failure) => [failure.shard, failure.error.code, failure.maybeApplied]).sort(), [[1, 'REQUEST_TOO_LARGE', false], [2, 'TIMEOUT', true]]);
  error.acks.forEach((ack, index) => {
    const shard = shardOf(index);
    if (shard === 1 || shard === 2) assert.is(ack, null, `event ${index} has no ack`);
    else assert.equal(node.events(shard)[ack!.seq - 1], events[index], `event ${index} is at its acked seq`);
  });
  node.clearFaults();
  const acks = await producer.send(error.eventsAt(error.notApplied));
  acks.forEach((ack, at) => assert.equal(node.events(ack.shard)[ack.seq - 1], events[error.notApplied[at]], 'the resent event landed'));
  for (const shard of [0, 1, 3]) assert.equal(node.events(shard), byShard(shard).map((index) => events[index]), `shard ${shard} holds its events once, in order`);
  await producer.close();
});

test('producer - REQUEST_MISMATCH (the node holds the number with other events) moves the session to a new epoch; later sends land', async () => {
  const { node, producer } = await setup({ lingerMs: 0 });
  const events = eventsForShard(node.router, 0, 3);
  await producer.send([events[0]]);
  node.failRequests(1, 'REQUEST_MISMATCH');
  await expectRejection(producer.send([events[1]]), 'REQUEST_MISMATCH');
  const [ack] = await producer.send([events[2]]);
  assert.is(ack.seq, 2, 'the next send lands (it was refused again and again under the same number)');
  const seqs = requestSeqs(node);
  assert.equal(seqs.slice(0, 2), [[1000, 1], [1000, 2]]);
  const [epoch, requestSeq] = seqs[2];
  assert.ok(epoch > 1000 && requestSeq === 1, `a new epoch, numbering from 1 (${epoch}, ${requestSeq})`);
  await producer.close();
});

test('producer - a request on the wire when our transport closes may have been applied: SendError says maybeApplied', async () => {
  const { node, producer, transport } = await setup({ lingerMs: 0 });
  const events = eventsForShard(node.router, 0, 2);
  node.hold();
  const sent = producer.send(events);
  await until(() => node.heldRequests === 1, 'the request reached the node');
  await transport.close();
  const error = await sent.then(
    () => null,
    (caught: unknown) => caught,
  );
  assert.ok(error instanceof SendError, String(error));
  assert.equal(error.maybeApplied, [0, 1]);
  assert.equal(error.notApplied, []);
  node.release();
  await producer.close().catch(() => undefined);
});

test('producer - a lost reply is retried with the same requestSeq and written once', async () => {
  const { node, producer } = await setup({ lingerMs: 0 });
  const events = eventsForShard(node.router, 0, 5);
  node.dropReplies(1);
  const acks = await producer.send(events);
  assert.equal(acks.map((ack) => ack.seq), [1, 2, 3, 4, 5], 'the original seqs, replayed');
  assert.equal(node.events(0), events, 'written once');
  assert.equal(requestSeqs(node), [[1000, 1], [1000, 1]]);
  assert.is(producer.stats().retries, 1);
  await producer.close();
});

test('producer - after a lost request, the pipelined ones that hit SEQUENCE_GAP are resent in order', async () => {
  const { node, producer } = await setup({ lingerMs: 0, maxBatchEvents: 1, maxInFlightRequests: 4 });
  const events = eventsForShard(node.router, 0, 6);
  node.ignoreRequests(1);
  const acks = (await Promise.all(events.map((event) => producer.send([event])))).flat();
  assert.equal(node.events(0), events, 'in send order, each once');
  assert.equal(acks.map((ack) => ack.seq), [1, 2, 3, 4, 5, 6]);
  const seqs = requestSeqs(node).map(([, requestSeq]) => requestSeq);
  // 1 is lost on the way (the node never records it); 2..4 get SEQUENCE_GAP; then 1..6 in order.
  assert.equal(seqs, [2, 3, 4, 1, 2, 3, 4, 5, 6]);
  await producer.close();
});

test("producer - a retry the node no longer remembers ('applied') resolves with seq 0", async () => {
  const { node, producer } = await setup({ lingerMs: 0 }, { rememberedRequests: 0 });
  node.dropReplies(1);
  const acks = await producer.send(eventsForShard(node.router, 0, 3));
  assert.equal(acks.map((ack) => ack.seq), [0, 0, 0]);
  assert.is(node.events(0).length, 3, 'applied once');
  await producer.close();
});

test('producer - waits above highWaterEvents and rejects OVERLOADED past maxQueuedEvents', async () => {
  const { node, producer } = await setup({ lingerMs: 0, maxBatchEvents: 4, highWaterEvents: 4, maxQueuedEvents: 10 });
  const events = eventsForShard(node.router, 0, 11);
  node.hold();
  const first = producer.send(events.slice(0, 4));
  const second = producer.send(events.slice(4, 7));
  const third = producer.send(events.slice(7, 10));
  await settle();
  assert.is(node.heldRequests, 1, 'only the admitted send reached the node');
  const stats = producer.stats();
  assert.is(stats.waitingSends, 2);
  assert.is(stats.inFlightEvents, 4);
  assert.is(stats.queuedEvents, 6);
  await expectRejection(producer.send(events.slice(10)), 'OVERLOADED');
  node.release();
  await Promise.all([first, second, third]);
  assert.equal(node.events(0), events.slice(0, 10), 'everything accepted, nothing of the refused send');
  assert.is(producer.stats().queuedEvents, 0);
  await producer.close();
});

test('producer - a non-retryable rejection fails only its batch; later numbers are reused', async () => {
  const { node, producer } = await setup({ lingerMs: 0, maxBatchEvents: 1 });
  const [good1, good2, good3] = eventsForShard(node.router, 0, 3);
  const bad = { ...good1, entityId: good1.entityId, signalType: 255 }; // the node does not know 255
  const sends = [producer.send([good1]), producer.send([bad]), producer.send([good2])];
  const [ack1, badResult, ack2] = await Promise.allSettled(sends);
  assert.is(ack1.status, 'fulfilled');
  assert.is(badResult.status, 'rejected');
  await expectRejection(sends[1], 'UNKNOWN_SIGNAL_TYPE');
  assert.is(ack2.status, 'fulfilled');
  const later = await producer.send([good3]);
  assert.equal(node.events(0), [good1, good2, good3]);
  assert.is(later[0].seq, 3);
  // 1 new, 2 rejected, 3 SEQUENCE_GAP; then the hole's number is reused: good2 as 2, good3 as 3.
  assert.equal(requestSeqs(node), [[1000, 1], [1000, 2], [1000, 3], [1000, 2], [1000, 3]]);
  assert.is(producer.stats().rejectedEvents, 1);
  await producer.close();
});

test('producer - BAD_REQUEST input is refused whole and queues nothing', async () => {
  const { node, producer } = await setup();
  const [event] = eventsForShard(node.router, 0, 1);
  await expectRejection(producer.send([event, { ...event, weight: Number.NaN }]), 'BAD_REQUEST');
  await expectRejection(producer.send([{ ...event, entityId: -1n }]), 'BAD_REQUEST');
  await expectRejection(producer.send(new Uint8Array(20)), 'BAD_REQUEST');
  await expectRejection(producer.send('nope' as unknown as Uint8Array), 'BAD_REQUEST');
  await producer.flush();
  assert.is(producer.stats().queuedEvents, 0);
  assert.is(node.appendRequests().length, 0);
  assert.equal(await producer.send([]), []);
  await producer.close();
});

test('producer - an entityId may be a non-negative safe integer number: sent as that u64, read back as a bigint', async () => {
  const { node, producer } = await setup();
  const events: SignalEventInput[] = [
    { entityId: 42, signalType: 1, weight: 1, timestampNs: 1n },
    { entityId: Number.MAX_SAFE_INTEGER, signalType: 1, weight: 2, timestampNs: 2n },
    { entityId: 2n ** 64n - 1n, signalType: 1, weight: 3, timestampNs: 3n },
  ];
  const acks = await producer.send(events);
  assert.equal(acks.map((ack) => ack.seq), [1, 2, 3]);
  assert.equal(node.events(0).map((event) => event.entityId), [42n, 2n ** 53n - 1n, 2n ** 64n - 1n]);
  await producer.close();
});

test('producer - an entityId number that is not a non-negative safe integer is BAD_REQUEST naming entityId, nothing queued', async () => {
  const { node, producer } = await setup();
  const [event] = eventsForShard(node.router, 0, 1);
  for (const entityId of [2 ** 53, 1.5, -1, Number.NaN]) {
    try {
      await producer.send([event, { ...event, entityId }]);
      assert.unreachable(`entityId ${entityId} was accepted`);
    } catch (error) {
      assert.ok(isTidelogError(error, 'BAD_REQUEST'), String(error));
      assert.match(error.message, `event 1: entityId must be a u64 bigint or a non-negative safe integer, got ${entityId}`);
      assert.is(error.context.index, 1);
    }
  }
  await producer.flush();
  assert.is(producer.stats().queuedEvents, 0);
  assert.is(node.appendRequests().length, 0);
  await producer.close();
});

test('producer - a weight beyond ±1e9 (the node refuses it) is refused locally with BAD_REQUEST and queues nothing', async () => {
  const { node, producer } = await setup();
  const [event] = eventsForShard(node.router, 0, 1);
  try {
    await producer.send([event, { ...event, weight: 2e9 }]);
    assert.unreachable('a weight of 2e9 was accepted');
  } catch (error) {
    assert.ok(isTidelogError(error, 'BAD_REQUEST'), String(error));
    assert.is(error.context.index, 1, 'the error names the event');
  }
  await expectRejection(producer.send([{ ...event, weight: -1.5e9 }]), 'BAD_REQUEST');
  await expectRejection(producer.send(encodeEvents([event, { ...event, weight: 1e10 }])), 'BAD_REQUEST');
  await producer.flush();
  assert.is(producer.stats().queuedEvents, 0);
  assert.is(node.appendRequests().length, 0, 'nothing reached the node');
  // The bound itself passes, judged on the f32 the node reads: 1e9 + 10 is stored as 1e9.
  const acks = await producer.send([{ ...event, weight: 1e9 }, { ...event, weight: -1e9 }, { ...event, weight: 1e9 + 10 }]);
  assert.equal(acks.map((ack) => ack.seq), [1, 2, 3]);
  await producer.close();
});

test('producer - PRODUCER_FENCED stops the older instance for good', async () => {
  const { node, producer: older, transport } = await setup({ lingerMs: 0 });
  const events = eventsForShard(node.router, 0, 3);
  await older.send([events[0]]);
  const newer = await createProducer({ transport, namespace: node.namespace, producerId: 'test-producer', sessionEpoch: 2000, lingerMs: 0 });
  await newer.send([events[1]]);
  await expectRejection(older.send([events[2]]), 'PRODUCER_FENCED');
  await expectRejection(older.send([events[2]]), 'PRODUCER_FENCED');
  assert.equal(node.events(0), events.slice(0, 2));
  await newer.close();
  await older.close();
});

test('producer - a send unanswered for sendTimeoutMs rejects TIMEOUT; the shard session restarts and later sends work', async () => {
  const clock = new SteppedClock();
  const { node, producer } = await setup({ lingerMs: 0, sendTimeoutMs: 60_000, clock });
  const events = eventsForShard(node.router, 0, 4);
  node.dropReplies(1000); // applied, but no answer ever arrives
  const lost = producer.send(events.slice(0, 2));
  await until(() => node.appendRequests().length >= 2, () => `a retry of the lost send (requests: ${node.appendRequests().length})`);
  clock.stepMs(60_000); // its deadline passes: the next TIMEOUT of a try ends the send
  await expectRejection(lost, 'TIMEOUT');
  node.clearFaults();
  const acks = await producer.send(events.slice(2));
  assert.equal(acks.map((ack) => ack.seq), [3, 4]);
  assert.equal(node.events(0), events, 'the timed-out send was applied once, as TIMEOUT allows');
  const seqs = requestSeqs(node);
  const [lastEpoch, lastSeq] = seqs[seqs.length - 1];
  assert.ok(lastEpoch > 1000, 'a new session epoch');
  assert.is(lastSeq, 1, 'numbering starts again');
  assert.ok(seqs.every(([epoch, requestSeq]) => requestSeq === 1 && (epoch === 1000 || epoch === lastEpoch)), 'every retry kept its number');
  assert.ok(seqs.filter(([epoch]) => epoch === 1000).length >= 2, 'the lost send was retried');
  await producer.close();
});

test('producer - the session restarts when the node answers SEQUENCE_GAP for the oldest request', async () => {
  const { node, producer } = await setup({ lingerMs: 0 });
  const events = eventsForShard(node.router, 0, 2);
  await producer.send([events[0]]);
  node.failRequests(1, 'SEQUENCE_GAP'); // as if the node had forgotten requestSeq 1
  const [ack] = await producer.send([events[1]]);
  assert.is(ack.seq, 2);
  const seqs = requestSeqs(node);
  assert.equal(seqs.slice(0, 2), [[1000, 1], [1000, 2]]);
  assert.ok(seqs[2][0] > 1000);
  assert.is(seqs[2][1], 1);
  await producer.close();
});

test('producer - retryable node errors back off and retry; others reject with their code', async () => {
  const { node, producer } = await setup({ lingerMs: 0 });
  const events = eventsForShard(node.router, 0, 2);
  node.failRequests(2, 'OVERLOADED');
  const [ack] = await producer.send([events[0]]);
  assert.is(ack.seq, 1);
  assert.is(producer.stats().retries, 2);
  node.failRequests(1, 'REQUEST_TOO_LARGE');
  await expectRejection(producer.send([events[1]]), 'REQUEST_TOO_LARGE');
  await producer.close();
});

test('producer - a leader\'s FSYNC_FAILED or WRITE_FAILED is retried with the same session number (another replica may take over)', async () => {
  const { node, producer } = await setup({ lingerMs: 0 });
  const events = eventsForShard(node.router, 0, 2);
  node.failRequests(1, 'FSYNC_FAILED');
  const [first] = await producer.send([events[0]]);
  assert.is(first.seq, 1);
  node.failRequests(1, 'WRITE_FAILED');
  const [second] = await producer.send([events[1]]);
  assert.is(second.seq, 2);
  assert.is(producer.stats().retries, 2);
  const numbers = node.appendRequests().map((request) => request.session?.requestSeq);
  assert.equal(numbers, [1, 1, 2, 2], 'each retry kept its request number');
  await producer.close();
});

test("producer - a node's CLOSED (shard not serving) is retried; our transport closing fails sends at once", async () => {
  const { node, producer, transport } = await setup({ lingerMs: 0 });
  const events = eventsForShard(node.router, 0, 2);
  node.failRequests(2, 'CLOSED');
  const [ack] = await producer.send([events[0]]);
  assert.is(ack.seq, 1);
  node.hold();
  const stranded = producer.send([events[1]]);
  await settle();
  await transport.close(); // sendTimeoutMs is 30 s: CLOSED must come long before
  await expectRejection(stranded, 'CLOSED');
  await expectRejection(producer.send([events[1]]), 'CLOSED');
  await producer.close();
});

test('producer - close flushes what is queued, then refuses with CLOSED', async () => {
  const { node, producer } = await setup({ lingerMs: 60_000 });
  const events = eventsForShard(node.router, 0, 3);
  const sent = producer.send(events);
  await producer.close();
  assert.is((await sent).length, 3);
  assert.equal(node.events(0), events);
  await expectRejection(producer.send(events), 'CLOSED');
});

test('producer - createProducer fails with NO_RESPONDERS when no node answers', async () => {
  const transport = new InProcessTransport();
  await expectRejection(createProducer({ transport, namespace: 'nobody', connectTimeoutMs: 30, retryBackoffMs: 1, maxRetryBackoffMs: 2 }), 'NO_RESPONDERS');
  await expectRejection(createProducer({ transport, namespace: 'not a token' }), 'BAD_REQUEST');
  await transport.close();
});

test('producer - the default sessionEpoch is a u32 that a quick restart still raises', async () => {
  const node = new FakeNode({ router: { strategy: 'single' } });
  const transport = new InProcessTransport({ bus: node.transport.bus });
  const events = eventsForShard(node.router, 0, 2);
  const first = await createProducer({ transport, namespace: node.namespace, producerId: 'restarted', lingerMs: 0 });
  assert.ok(first.sessionEpoch <= 0xffff_ffff);
  await first.send([events[0]]);
  await first.close();
  const second = await createProducer({ transport, namespace: node.namespace, producerId: 'restarted', lingerMs: 0 });
  assert.ok(second.sessionEpoch > first.sessionEpoch);
  const [ack] = await second.send([events[1]]);
  assert.is(ack.seq, 2, 'a fresh session, not a replay of the first one');
  assert.equal(node.events(0), events);
  await second.close();
  await expectRejection(createProducer({ transport, namespace: node.namespace, sessionEpoch: 2 ** 32 }), 'BAD_REQUEST');
});

test('producer - maxBatchEvents is clamped to the node limit', async () => {
  const { producer } = await setup({ maxBatchEvents: 10_000 }, { maxRequestEvents: 100 });
  assert.is(producer.maxBatchEvents, 100);
  await producer.close();
});

test.run();
