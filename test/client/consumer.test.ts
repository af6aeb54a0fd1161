// The consumer's bounded reads and its request/reply calls against a scripted node.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createConsumer, type Consumer, type ConsumerOptions, type ConsumedEvent, type EntityState, type SignalState } from '../../src/client/index.ts';
import { entityStateOf } from '../../src/client/entity-state.ts';
import { isTidelogError } from '../../src/errors.ts';
import { decodeReply, encodeMessage } from '../../src/transport/codec.ts';
import type { StateReply } from '../../src/transport/messages.ts';
import { InProcessTransport } from '../../src/transport/in-process.ts';
import { FakeNode, eventsForShard, expectRejection, type FakeNodeOptions } from '../support/fake-node.ts';
import { WAIT_MS } from '../support/waits.ts';

async function setup(consumerOptions: Partial<ConsumerOptions> = {}, nodeOptions: FakeNodeOptions = {}): Promise<{ node: FakeNode; consumer: Consumer }> {
  const node = new FakeNode({ router: { strategy: 'hash', shards: 2 }, ...nodeOptions });
  const consumer = await createConsumer({
    transport: new InProcessTransport({ bus: node.transport.bus }),
    namespace: node.namespace,
    requestTimeoutMs: WAIT_MS, // a hang bound: no healthy reply is ever timed out
    retryBackoffMs: 1,
    maxRetryBackoffMs: 4,
    ...consumerOptions,
  });
  return { node, consumer };
}

async function collect(iterable: AsyncIterable<ConsumedEvent>): Promise<ConsumedEvent[]> {
  const out: ConsumedEvent[] = [];
  for await (const consumed of iterable) out.push(consumed);
  return out;
}

test('consumer - read yields every event from fromSeq up to the hwm at the start, in pages', async () => {
  const { node, consumer } = await setup();
  const events = eventsForShard(node.router, 1, 10);
  node.appendDirect(1, events.slice(0, 4));
  node.appendDirect(1, events.slice(4, 7));
  node.appendDirect(1, events.slice(7));
  // Every page request after the first races a new append: the read still stops at the
  // hwm the first page reported (10).
  node.beforeRead = (_shard, fromSeq) => {
    if (fromSeq > 3) node.appendDirect(1, eventsForShard(node.router, 1, 2, 99));
  };
  const read = await collect(consumer.read({ shard: 1, fromSeq: 3, pageEvents: 3 }));
  assert.equal(read.map((consumed) => consumed.seq), [3, 4, 5, 6, 7, 8, 9, 10]);
  assert.equal(read.map((consumed) => consumed.event), events.slice(2));
  assert.ok(read.every((consumed) => consumed.shard === 1));
  const pages = node.requests.filter((request) => request.endpoint === 'read').map((request) => request.fromSeq);
  assert.equal([...new Set(pages)], [3, 6, 9]);
  await consumer.close();
});

test('consumer - read stops after maxEvents and ends at once on an empty shard', async () => {
  const { node, consumer } = await setup();
  node.appendDirect(0, eventsForShard(node.router, 0, 6));
  const read = await collect(consumer.read({ shard: 0, fromSeq: 2, maxEvents: 3 }));
  assert.equal(read.map((consumed) => consumed.seq), [2, 3, 4]);
  assert.equal(await collect(consumer.read({ shard: 1 })), []);
  await consumer.close();
});

test('consumer - read retries a busy node and rejects OUT_OF_RANGE past the end', async () => {
  const { node, consumer } = await setup();
  node.appendDirect(0, eventsForShard(node.router, 0, 2));
  node.failRequests(2, 'OVERLOADED', 'read');
  assert.equal((await collect(consumer.read({ shard: 0 }))).map((consumed) => consumed.seq), [1, 2]);
  await expectRejection(collect(consumer.read({ shard: 0, fromSeq: 9 })), 'OUT_OF_RANGE');
  await expectRejection(collect(consumer.read({ shard: 0, fromSeq: 0 })), 'BAD_REQUEST');
  await consumer.close();
});

test("consumer - pageEvents above the node's maxRequestEvents is lowered to it, not refused", async () => {
  const { node, consumer } = await setup({ pageEvents: 50 }, { maxRequestEvents: 4 });
  const events = eventsForShard(node.router, 1, 10);
  node.appendDirect(1, events);
  const everyPage = await collect(consumer.read({ shard: 1 }));
  const wideOption = await collect(consumer.read({ shard: 1, fromSeq: 3, pageEvents: 1000 }));
  assert.equal(everyPage.map((consumed) => consumed.event), events);
  assert.equal(wideOption.map((consumed) => consumed.seq), [3, 4, 5, 6, 7, 8, 9, 10]);
  const pageSizes = node.requests.filter((request) => request.endpoint === 'read').map((request) => request.eventCount);
  assert.ok(pageSizes.every((size) => size <= 4), `pages of at most 4 events: ${pageSizes.join(', ')}`);
  await consumer.close();
});

test('consumer - a read or seek of a shard outside the map rejects UNKNOWN_SHARD, not NO_RESPONDERS after the retries', async () => {
  // Nothing subscribes to shard 5's subjects, as during a failover: only the map tells the two apart.
  const { node, consumer } = await setup({ retryTimeoutMs: 2000 });
  await expectRejection(collect(consumer.read({ shard: 5 })), 'UNKNOWN_SHARD');
  await expectRejection(consumer.seek(5, 1n), 'UNKNOWN_SHARD');
  // The map is asked about the missing shard each time (it may have grown), and a shard it has reads on.
  node.appendDirect(1, eventsForShard(node.router, 1, 1));
  assert.equal((await collect(consumer.read({ shard: 1 }))).map((consumed) => consumed.seq), [1]);
  assert.ok(node.requests.filter((request) => request.endpoint === 'info').length >= 2);
  await consumer.close();
});

test('consumer - state, info, status and seek ask the cluster', async () => {
  const { node, consumer } = await setup();
  const events = eventsForShard(node.router, 1, 3);
  node.appendDirect(1, [events[0], events[0], { ...events[0], signalType: 2 }]);
  const state = await consumer.state(events[0].entityId, [1]);
  assert.is(state.shard, 1);
  assert.equal(state.signals.map((signal) => [signal.signalType, signal.count]), [[1, 2]]);
  const info = await consumer.info();
  assert.equal(info.shards, [0, 1]);
  // One node answers: stop at its reply, however late it comes; the window only bounds a hang.
  const status = await consumer.status({ timeoutMs: WAIT_MS, maxReplies: 1 });
  assert.is(status.length, 1);
  assert.is(status[0].shards[1].lastSeq, 3);
  node.appendDirect(1, [events[1]]);
  assert.is(await consumer.seek(1, node.batches(1)[1].timestampNs), 4);
  assert.is(await consumer.seek(1, node.batches(1)[1].timestampNs + 1n), 5, 'every batch older: hwm + 1');
  await expectRejection(consumer.state(-1n), 'BAD_REQUEST');
  await consumer.close();
  await expectRejection(consumer.info(), 'CLOSED');
});

test('consumer - 200 state() calls at once: every one answered, no listener-leak warning', async () => {
  const { node, consumer } = await setup();
  const events = eventsForShard(node.router, 1, 1);
  node.appendDirect(1, events);
  const warnings: Error[] = [];
  const onWarning = (warning: Error): void => {
    warnings.push(warning);
  };
  process.on('warning', onWarning);
  try {
    const replies = await Promise.all(Array.from({ length: 200 }, () => consumer.state(events[0].entityId, [1])));
    assert.ok(replies.every((reply) => reply.shard === 1 && reply.signals[0].count === 1));
    await new Promise((resolve) => setImmediate(resolve)); // warnings are emitted on the next tick
    assert.equal(warnings.map((warning) => warning.name).filter((name) => name === 'MaxListenersExceededWarning'), []);
  } finally {
    process.off('warning', onWarning);
    await consumer.close();
  }
});

test('entity state - the wire reply becomes typed values: bigint ids, the hide flag once, signals by name and type', () => {
  const maxU64 = 2n ** 64n - 1n;
  const lastViewNs = 1_700_000_000_123_456_789n; // beyond 2^53: a number would round it
  const wire: StateReply = {
    v: 1,
    t: 'entity',
    entityId: maxU64.toString(),
    shard: 3,
    appliedSeq: 41,
    signals: [
      { signalType: 1, name: 'view', score: 2.75, count: 3, total: 4.5, isHidden: true, lastUpdateNs: lastViewNs },
      { signalType: 2, name: 'click', score: 0, count: 0, total: -0.25, isHidden: true, lastUpdateNs: 0n },
      { signalType: 200, name: 'hide', score: 0, count: 0, total: 0, isHidden: true, lastUpdateNs: 1_700_000_000_000_000_001n },
    ],
  };
  // Through the codec, as consumer.state() gets it.
  const state: EntityState = entityStateOf(decodeReply(encodeMessage(wire), 'entity'));
  assert.is(state.entityId, maxU64);
  assert.is(state.shard, 3);
  assert.is(state.appliedSeq, 41);
  assert.is(state.isHidden, true);
  const view: SignalState = { signalType: 1, name: 'view', score: 2.75, count: 3, total: 4.5, lastUpdateNs: lastViewNs };
  assert.equal(state.signals, [
    view,
    { signalType: 2, name: 'click', score: 0, count: 0, total: -0.25, lastUpdateNs: 0n },
    { signalType: 200, name: 'hide', score: 0, count: 0, total: 0, lastUpdateNs: 1_700_000_000_000_000_001n },
  ]);
  assert.equal(state.signal('view'), view);
  assert.is(state.signal('view'), state.signals[0], 'by name');
  assert.is(state.signal(200), state.signals[2], 'by signal type');
  assert.is(state.signal('like'), undefined);
  assert.is(state.signal(7), undefined);
  assert.is(state.signal('1'), undefined, 'a string is a name, never a type');
  assert.ok(Object.isFrozen(state.signals) && Object.isFrozen(state.signals[0]));

  const visible = entityStateOf({ ...wire, entityId: '7', signals: wire.signals.map((signal) => ({ ...signal, isHidden: false })) });
  assert.is(visible.entityId, 7n);
  assert.is(visible.isHidden, false);
  const empty = entityStateOf({ ...wire, signals: [] });
  assert.is(empty.isHidden, null, 'no signal in the reply: the flag is unknown, not false');
  assert.equal(empty.signals, []);
});

test('consumer - state() answers a typed EntityState, for a bigint id or a safe integer number', async () => {
  const { node, consumer } = await setup();
  const events = eventsForShard(node.router, 1, 2);
  node.appendDirect(1, [events[0], events[0], { ...events[0], signalType: 2 }, events[1]]);
  const state = await consumer.state(events[0].entityId);
  assert.is(state.entityId, events[0].entityId);
  assert.is(typeof state.entityId, 'bigint');
  assert.is(state.shard, 1);
  assert.is(state.appliedSeq, 4);
  assert.is(state.isHidden, false);
  assert.equal(state.signals.map((signal) => [signal.name, signal.count]), [['type-1', 2], ['type-2', 1]]);
  assert.is(state.signal('type-1')?.count, 2);
  assert.is(state.signal('type-1')?.score, 2);
  assert.is(state.signal(2)?.total, 1);
  assert.is(state.signal('type-3'), undefined);
  const byNumber = await consumer.state(Number(events[0].entityId), [2]);
  assert.is(byNumber.entityId, events[0].entityId);
  assert.equal(byNumber.signals.map((signal) => signal.name), ['type-2']);
  await consumer.close();
});

test('consumer - state() refuses an entity id that is no u64 with BAD_REQUEST naming entityId, and asks nothing', async () => {
  const { node, consumer } = await setup();
  const asked = (): number => node.requests.filter((request) => request.endpoint === 'state').length;
  const bad: unknown[] = [2 ** 53, 1.5, -1, Number.NaN, Number.POSITIVE_INFINITY, -1n, 2n ** 64n, '42', null];
  for (const entityId of bad) {
    try {
      await consumer.state(entityId as bigint);
      assert.unreachable(`accepted ${String(entityId)}`);
    } catch (error) {
      assert.ok(isTidelogError(error, 'BAD_REQUEST'), String(error));
      assert.match(error.message, /entityId must be a u64 bigint or a non-negative safe integer, got /);
    }
  }
  assert.is(asked(), 0);
  assert.is((await consumer.state(Number.MAX_SAFE_INTEGER)).entityId, BigInt(Number.MAX_SAFE_INTEGER));
  assert.is((await consumer.state(2n ** 64n - 1n)).entityId, 2n ** 64n - 1n);
  assert.is(asked(), 2);
  await consumer.close();
});

test('consumer - status is [] when no node answers', async () => {
  const consumer = await createConsumer({ transport: new InProcessTransport(), namespace: 'nobody' });
  // Nothing subscribes, so nothing can answer within any window: a short one is safe here.
  assert.equal(await consumer.status({ timeoutMs: 10 }), []);
  await consumer.close();
});

test.run();
