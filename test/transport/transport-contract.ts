// The Transport contract (src/transport/transport.ts) as one uvu suite, run against every
// implementation: in-process.test.ts and nats.test.ts call defineTransportContract with a
// way to open connected transports. Each test opens its own transports (several share a
// bus / server, like nodes) and closes them; nothing leaks from one test to the next.
//
// Cross-connection care for NATS: a subscription is live on the server only once the
// subscriber's SUB got there, so tests flush the subscriber before another transport
// publishes; "nothing else arrived" is checked with a sentinel message sent after the
// others (one publisher's messages arrive in order).
//
// Time: a request that expects a reply waits up to WAIT_MS, which only bounds a hang; a
// short timeoutMs appears only where nothing can answer, so no result depends on load.

import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { isTidelogError } from '../../src/errors.ts';
import type { Transport, TransportMessage } from '../../src/transport/transport.ts';
import { expectCode } from '../support/expect-code.ts';
import { rejection } from '../support/wal-fixtures.ts';
import { StatusLog } from '../support/nats-harness.ts';
import { WAIT_MS, within } from '../support/waits.ts';

export interface ContractFixture {
  /** A new transport connected to the same bus / server as the others of this fixture. */
  open(): Promise<Transport>;
  /** Closes whatever open() returned that is still open, and the bus / server. */
  teardown(): Promise<void>;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const bytes = (text: string): Uint8Array => encoder.encode(text);
const text = (data: Uint8Array): string => decoder.decode(data);

/** A subscription that records what it gets and can await a count. */
function record(transport: Transport, subject: string, queue?: string): { messages: TransportMessage[]; until: (count: number) => Promise<void>; unsubscribe: () => void } {
  const messages: TransportMessage[] = [];
  let waiter: { count: number; resolve: () => void } | null = null;
  const subscription = transport.subscribe(
    subject,
    (message) => {
      messages.push(message);
      if (waiter !== null && messages.length >= waiter.count) waiter.resolve();
    },
    queue === undefined ? {} : { queue },
  );
  return {
    messages,
    unsubscribe: () => subscription.unsubscribe(),
    until: (count) =>
      messages.length >= count
        ? Promise.resolve()
        : within(new Promise<void>((resolve) => (waiter = { count, resolve })), `${count} messages on ${subject} (got ${messages.length})`),
  };
}

let sentinels = 0;
/** Returns once everything `publisher` sent before now has reached `subscriber`'s handlers. */
async function settle(publisher: Transport, subscriber: Transport): Promise<void> {
  const subject = `sentinel.${sentinels++}`;
  const sentinel = record(subscriber, subject);
  await subscriber.flush();
  publisher.publish(subject, bytes('done'));
  await sentinel.until(1);
  sentinel.unsubscribe();
}

export interface ContractLifecycle {
  /** Once before the suite (start a server). */
  before?: () => Promise<void>;
  /** Once after the suite (stop it). */
  after?: () => Promise<void>;
}

export function defineTransportContract(name: string, createFixture: () => Promise<ContractFixture>, lifecycle: ContractLifecycle = {}): void {
  const test = suite(`${name} contract`);
  let fixture: ContractFixture;
  if (lifecycle.before !== undefined) test.before(lifecycle.before);
  if (lifecycle.after !== undefined) test.after(lifecycle.after);
  test.before.each(async () => {
    fixture = await createFixture();
  });
  test.after.each(async () => {
    await fixture.teardown();
  });

  test('delivers asynchronously, never inside publish', async () => {
    const transport = await fixture.open();
    const got = record(transport, 'async.check');
    await transport.flush();
    transport.publish('async.check', bytes('x'));
    assert.is(got.messages.length, 0);
    await got.until(1);
  });

  test('matches * to exactly one token and > to one or more', async () => {
    const [publisher, subscriber] = [await fixture.open(), await fixture.open()];
    const star = record(subscriber, 'orders.*.created');
    const tail = record(subscriber, 'orders.>');
    const exact = record(subscriber, 'orders.eu');
    await subscriber.flush();
    for (const subject of ['orders.eu.created', 'orders.us.created', 'orders.eu', 'orders.eu.created.late', 'orders', 'other.eu.created']) {
      publisher.publish(subject, bytes(subject));
    }
    await settle(publisher, subscriber);
    assert.equal(star.messages.map((m) => m.subject), ['orders.eu.created', 'orders.us.created']);
    assert.equal(tail.messages.map((m) => m.subject), ['orders.eu.created', 'orders.us.created', 'orders.eu', 'orders.eu.created.late']);
    assert.equal(exact.messages.map((m) => text(m.data)), ['orders.eu']);
  });

  test('gives each message to one member of a queue group, and to every plain subscriber', async () => {
    const [publisher, left, right] = [await fixture.open(), await fixture.open(), await fixture.open()];
    const members = [record(left, 'jobs', 'workers'), record(left, 'jobs', 'workers'), record(right, 'jobs', 'workers')];
    const watchers = [record(left, 'jobs'), record(right, 'jobs')];
    await left.flush();
    await right.flush();
    const count = 120;
    for (let index = 0; index < count; index++) publisher.publish('jobs', bytes(String(index)));
    await Promise.all(watchers.map((watcher) => watcher.until(count)));
    await settle(publisher, left);
    await settle(publisher, right);
    const handled = members.flatMap((member) => member.messages.map((m) => Number(text(m.data))));
    assert.equal(handled.sort((a, b) => a - b), Array.from({ length: count }, (_, index) => index), 'each job exactly once');
    for (const member of members) assert.ok(member.messages.length > 0, 'every member takes a share');
    for (const watcher of watchers) assert.is(watcher.messages.length, count);
  });

  test('keeps one publisher’s order across 10 000 messages', async () => {
    const [publisher, subscriber] = [await fixture.open(), await fixture.open()];
    const got = record(subscriber, 'ordered');
    await subscriber.flush();
    const count = 10_000;
    for (let index = 0; index < count; index++) {
      const data = new Uint8Array(4);
      new DataView(data.buffer).setUint32(0, index, true);
      publisher.publish('ordered', data);
    }
    await got.until(count);
    const seen = got.messages.map((m) => new DataView(m.data.buffer, m.data.byteOffset, 4).getUint32(0, true));
    const firstOutOfOrder = seen.findIndex((value, index) => value !== index);
    assert.is(firstOutOfOrder, -1, `message ${firstOutOfOrder} is ${seen[firstOutOfOrder]}`);
    assert.is(seen.length, count);
  });

  test('answers a request with the first reply', async () => {
    const [requester, responder] = [await fixture.open(), await fixture.open()];
    responder.subscribe('echo', (message) => {
      assert.ok(message.reply !== null);
      responder.publish(message.reply, bytes(`echo ${text(message.data)}`));
    });
    await responder.flush();
    const reply = await requester.request('echo', bytes('hi'), { timeoutMs: WAIT_MS });
    assert.is(text(reply), 'echo hi');
    const again = await Promise.all([1, 2, 3].map((n) => requester.request('echo', bytes(String(n)), { timeoutMs: WAIT_MS })));
    assert.equal(again.map(text), ['echo 1', 'echo 2', 'echo 3']);
  });

  test('rejects a request with NO_RESPONDERS when nothing subscribes', async () => {
    const requester = await fixture.open();
    const error = await rejection(() => requester.request('nobody.home', bytes('?'), { timeoutMs: WAIT_MS }));
    assert.is(error.code, 'NO_RESPONDERS');
  });

  test('rejects a request with TIMEOUT when the subscriber stays silent', async () => {
    const [requester, silent] = [await fixture.open(), await fixture.open()];
    silent.subscribe('silent', () => undefined);
    await silent.flush();
    // Nothing can answer: the short timeout cannot be beaten by a slow reply.
    const error = await rejection(() => requester.request('silent', bytes('?'), { timeoutMs: 50 }));
    assert.is(error.code, 'TIMEOUT');
  });

  test('requestMany collects every responder, stops at maxReplies, ends at timeoutMs, and is [] without responders', async () => {
    const [requester, responders] = [await fixture.open(), await fixture.open()];
    for (const name of ['a', 'b', 'c']) {
      responders.subscribe('census', (message) => responders.publish(message.reply ?? 'nowhere', bytes(name)));
    }
    responders.subscribe('census', () => undefined); // a member that never answers
    await responders.flush();
    // Every answer is counted in, however long the machine takes to deliver them; the call
    // ends at maxReplies (within() fails it if it waited for its far longer window instead).
    const census = (maxReplies: number): Promise<Uint8Array[]> =>
      within(requester.requestMany('census', bytes('?'), { timeoutMs: 2 * WAIT_MS, maxReplies }), `${maxReplies} census replies`);
    assert.equal((await census(3)).map(text).sort(), ['a', 'b', 'c']);
    assert.is((await census(2)).length, 2);
    // A fourth answer never comes: the window ends the call with what arrived by then.
    const windowed = await within(requester.requestMany('census', bytes('?'), { timeoutMs: 50, maxReplies: 4 }), 'the end of a 50 ms window');
    assert.ok(windowed.length <= 3 && windowed.every((reply) => ['a', 'b', 'c'].includes(text(reply))), windowed.map(text).join(','));
    assert.equal(await requester.requestMany('nobody.home', bytes('?'), { timeoutMs: WAIT_MS }), []);
  });

  test('unsubscribe stops delivery and is idempotent', async () => {
    const [publisher, subscriber] = [await fixture.open(), await fixture.open()];
    const got = record(subscriber, 'news');
    await subscriber.flush();
    publisher.publish('news', bytes('first'));
    await got.until(1);
    got.unsubscribe();
    got.unsubscribe();
    await subscriber.flush();
    publisher.publish('news', bytes('second'));
    await settle(publisher, subscriber);
    assert.equal(got.messages.map((m) => text(m.data)), ['first']);
  });

  test('reports a throwing handler and keeps delivering', async () => {
    const [publisher, subscriber] = [await fixture.open(), await fixture.open()];
    const log = new StatusLog(subscriber);
    const handled: string[] = [];
    subscriber.subscribe('fragile', (message) => {
      handled.push(text(message.data));
      if (handled.length === 1) throw new Error('handler bug');
    });
    await subscriber.flush();
    for (const word of ['one', 'two', 'three']) publisher.publish('fragile', bytes(word));
    await settle(publisher, subscriber);
    assert.equal(handled, ['one', 'two', 'three']);
    const errors = log.statuses.filter((status) => status.type === 'error');
    assert.is(errors.length, 1);
    const reported = errors[0].type === 'error' ? errors[0].error : null;
    if (!isTidelogError(reported, 'HOOK_FAILED')) assert.unreachable(`expected HOOK_FAILED, got ${String(reported)}`);
    else assert.is((reported.cause as Error).message, 'handler bug');
  });

  test('rejects malformed subjects with BAD_REQUEST', async () => {
    const transport = await fixture.open();
    expectCode(() => transport.publish('a.*', bytes('x')), 'BAD_REQUEST');
    expectCode(() => transport.publish('a..b', bytes('x')), 'BAD_REQUEST');
    expectCode(() => transport.publish('', bytes('x')), 'BAD_REQUEST');
    expectCode(() => transport.publish('a b', bytes('x')), 'BAD_REQUEST');
    expectCode(() => transport.subscribe('a.>.b', () => undefined), 'BAD_REQUEST');
    expectCode(() => transport.subscribe('a', () => undefined, { queue: '' }), 'BAD_REQUEST');
    assert.is((await rejection(() => transport.request('a.>', bytes('x'), { timeoutMs: 100 }))).code, 'BAD_REQUEST');
    assert.is((await rejection(() => transport.request('a', bytes('x'), { timeoutMs: 0 }))).code, 'BAD_REQUEST');
  });

  test('after close: CLOSED everywhere, a pending request fails, closed reported once', async () => {
    const [transport, silent] = [await fixture.open(), await fixture.open()];
    const log = new StatusLog(transport);
    silent.subscribe('slow.service', () => undefined);
    await silent.flush();
    const pending = transport.request('slow.service', bytes('?'), { timeoutMs: WAIT_MS });
    const pendingError = rejection(() => pending);
    await transport.close();
    await transport.close();
    assert.is((await pendingError).code, 'CLOSED');
    expectCode(() => transport.publish('x', bytes('x')), 'CLOSED');
    expectCode(() => transport.subscribe('x', () => undefined), 'CLOSED');
    assert.is((await rejection(() => transport.request('x', bytes('x'), { timeoutMs: 100 }))).code, 'CLOSED');
    assert.is((await rejection(() => transport.requestMany('x', bytes('x'), { timeoutMs: 100 }))).code, 'CLOSED');
    assert.is((await rejection(() => transport.flush())).code, 'CLOSED');
    assert.is(log.count('closed'), 1);
  });

  test.run();
}
