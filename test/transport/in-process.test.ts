// InProcessTransport: the shared contract, then what only the in-process bus promises
// (deterministic round-robin, the pending bound, no re-entrant delivery, drain on close).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { InProcessBus, InProcessTransport } from '../../src/transport/in-process.ts';
import { subjectMatches } from '../../src/transport/subject.ts';
import type { Transport, TransportMessage, TransportStatus } from '../../src/transport/transport.ts';
import { expectCode } from '../support/expect-code.ts';
import { rejection } from '../support/wal-fixtures.ts';
import { WAIT_MS } from '../support/waits.ts';
import { defineTransportContract, type ContractFixture } from './transport-contract.ts';

function busFixture(): ContractFixture {
  const bus = new InProcessBus();
  const opened: Transport[] = [];
  return {
    open: async () => {
      const transport = new InProcessTransport({ bus });
      opened.push(transport);
      return transport;
    },
    teardown: async () => {
      await Promise.all(opened.map((transport) => transport.close()));
    },
  };
}

defineTransportContract('in-process', async () => busFixture());

const test = suite('in-process');
const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);
const text = (data: Uint8Array): string => new TextDecoder().decode(data);
/** One setImmediate turn: a delivery batch has run. */
const nextBatch = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

test('subjectMatches follows NATS wildcard rules', () => {
  const cases: Array<[string, string, boolean]> = [
    ['a.b.c', 'a.b.c', true],
    ['a.b.c', 'a.b', false],
    ['a.*.c', 'a.x.c', true],
    ['a.*.c', 'a.x.y.c', false],
    ['a.*', 'a', false],
    ['a.>', 'a.b', true],
    ['a.>', 'a.b.c.d', true],
    ['a.>', 'a', false],
    ['>', 'anything.at.all', true],
    ['*.*', 'a.b', true],
    ['*.*', 'a.b.c', false],
    ['a.b*', 'a.bc', false],
  ];
  for (const [pattern, subject, expected] of cases) assert.is(subjectMatches(pattern, subject), expected, `${pattern} vs ${subject}`);
});

test('round-robins a queue group in subscription order', async () => {
  const transport = new InProcessTransport();
  const got: number[][] = [[], [], []];
  for (const list of got) transport.subscribe('work', (message) => list.push(Number(text(message.data))), { queue: 'q' });
  for (let index = 0; index < 7; index++) transport.publish('work', bytes(String(index)));
  await nextBatch();
  assert.equal(got, [[0, 3, 6], [1, 4], [2, 5]]);
  await transport.close();
});

test('drops past maxPendingMessages and reports slow-consumer once per episode', async () => {
  const transport = new InProcessTransport({ maxPendingMessages: 4 });
  const statuses: TransportStatus[] = [];
  transport.onStatus((status) => statuses.push(status));
  const got: string[] = [];
  transport.subscribe('burst.*', (message) => got.push(text(message.data)));
  for (let index = 0; index < 10; index++) transport.publish('burst.one', bytes(String(index)));
  await nextBatch();
  assert.equal(got, ['0', '1', '2', '3']);
  assert.equal(statuses, [{ type: 'slow-consumer', subject: 'burst.*' }]);
  for (let index = 10; index < 20; index++) transport.publish('burst.one', bytes(String(index)));
  await nextBatch();
  assert.equal(got.slice(4), ['10', '11', '12', '13']);
  assert.is(statuses.length, 2, 'a new episode is reported again');
  await transport.close();
});

test('never delivers inside publish, even when a handler publishes', async () => {
  const transport = new InProcessTransport();
  let depth = 0;
  let maxDepth = 0;
  let hops = 0;
  transport.subscribe('ping', () => {
    depth++;
    maxDepth = Math.max(maxDepth, depth);
    if (++hops < 1_000) transport.publish('ping', bytes('again'));
    depth--;
  });
  transport.publish('ping', bytes('start'));
  while (hops < 1_000) await nextBatch();
  assert.is(maxDepth, 1);
  await transport.close();
});

test('passes data by reference: receivers get the published bytes themselves', async () => {
  const transport = new InProcessTransport();
  const got: TransportMessage[] = [];
  transport.subscribe('ref', (message) => got.push(message));
  const data = bytes('same');
  transport.publish('ref', data, 'reply.here');
  await nextBatch();
  assert.ok(got[0].data === data);
  assert.is(got[0].reply, 'reply.here');
  await transport.close();
});

test('close handles what was already queued, then stops routing to it', async () => {
  const bus = new InProcessBus();
  const closing = new InProcessTransport({ bus });
  const staying = new InProcessTransport({ bus });
  const closingGot: string[] = [];
  const stayingGot: string[] = [];
  closing.subscribe('feed', (message) => closingGot.push(text(message.data)));
  staying.subscribe('feed', (message) => stayingGot.push(text(message.data)));
  for (const word of ['a', 'b', 'c']) staying.publish('feed', bytes(word));
  const closed = closing.close();
  staying.publish('feed', bytes('after'));
  await closed;
  await nextBatch();
  assert.equal(closingGot, ['a', 'b', 'c']);
  assert.equal(stayingGot, ['a', 'b', 'c', 'after']);
  await staying.close();
});

test('caps pending requests with OVERLOADED', async () => {
  const transport = new InProcessTransport({ maxPendingRequests: 2 });
  transport.subscribe('silent', () => undefined);
  const pending = [1, 2].map(() => rejection(() => transport.request('silent', bytes('?'), { timeoutMs: 10_000 })));
  assert.is((await rejection(() => transport.request('silent', bytes('?'), { timeoutMs: 10_000 }))).code, 'OVERLOADED');
  await transport.close();
  for (const error of await Promise.all(pending)) assert.is(error.code, 'CLOSED');
});

test('inboxes of transports sharing a bus never collide', async () => {
  const bus = new InProcessBus();
  const server = new InProcessTransport({ bus });
  server.subscribe('who', (message) => server.publish(message.reply ?? 'x', message.data));
  const clients = [new InProcessTransport({ bus }), new InProcessTransport({ bus })];
  const replies = await Promise.all(clients.flatMap((client, index) => [0, 1].map((n) => client.request('who', bytes(`${index}-${n}`), { timeoutMs: WAIT_MS }))));
  assert.equal(replies.map(text), ['0-0', '0-1', '1-0', '1-1']);
  await Promise.all([server, ...clients].map((transport) => transport.close()));
});

test('status listeners: removable, and one that throws does not stop the others', async () => {
  const transport = new InProcessTransport();
  const seen: string[] = [];
  transport.onStatus(() => {
    throw new Error('listener bug');
  });
  const remove = transport.onStatus((status) => seen.push(`removed ${status.type}`));
  transport.onStatus((status) => seen.push(status.type));
  remove();
  await transport.close();
  assert.equal(seen, ['closed']);
});

test('rejects bad options with BAD_REQUEST', () => {
  expectCode(() => new InProcessTransport({ maxPendingMessages: 0 }), 'BAD_REQUEST');
  expectCode(() => new InProcessTransport({ maxPendingRequests: 1.5 }), 'BAD_REQUEST');
});

test.run();
