// NatsTransport on a real nats-server (started by the harness on a free loopback port):
// the shared contract, then what only a network transport has to survive: a server that
// stops and comes back on the same port.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { NatsTransport } from '../../src/transport/nats.ts';
import type { NatsServerProcess } from '../../src/transport/nats-server-process.ts';
import type { Transport, TransportMessage } from '../../src/transport/transport.ts';
import { StatusLog, connectTestTransport, startTestNats } from '../support/nats-harness.ts';
import { WAIT_MS, within } from '../support/waits.ts';
import { rejection } from '../support/wal-fixtures.ts';
import { defineTransportContract } from './transport-contract.ts';

let contractServer: NatsServerProcess | null = null;

defineTransportContract(
  'nats',
  async () => {
    const opened: Transport[] = [];
    return {
      open: async () => {
        const transport = await connectTestTransport(contractServer!);
        opened.push(transport);
        return transport;
      },
      teardown: async () => {
        await Promise.all(opened.map((transport) => transport.close()));
      },
    };
  },
  {
    before: async () => {
      contractServer = await startTestNats();
    },
    after: async () => {
      await contractServer?.stop();
    },
  },
);

const test = suite('nats');
const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);
const text = (data: Uint8Array): string => new TextDecoder().decode(data);
const numbered = (index: number): Uint8Array => bytes(String(index));

let server: NatsServerProcess;
const opened: NatsTransport[] = [];
test.before(async () => {
  server = await startTestNats();
});
test.after.each(async () => {
  await Promise.all(opened.splice(0).map((transport) => transport.close()));
  if (!server.isRunning) await server.restart();
});
test.after(async () => {
  await server.stop();
});

async function open(): Promise<NatsTransport> {
  const transport = await connectTestTransport(server);
  opened.push(transport);
  return transport;
}

function collector(transport: Transport, subject: string): { got: TransportMessage[]; until: (count: number) => Promise<void> } {
  const got: TransportMessage[] = [];
  let waiter: { count: number; resolve: () => void } | null = null;
  transport.subscribe(subject, (message) => {
    got.push(message);
    if (waiter !== null && got.length >= waiter.count) waiter.resolve();
  });
  return {
    got,
    until: (count) => (got.length >= count ? Promise.resolve() : within(new Promise<void>((resolve) => (waiter = { count, resolve })), `${count} on ${subject}, got ${got.length}`)),
  };
}

test('connect rejects DISCONNECTED when no server listens', async () => {
  const port = server.port;
  await server.stop();
  const error = await rejection(() => NatsTransport.connect({ servers: `nats://127.0.0.1:${port}`, connectTimeoutMs: WAIT_MS }));
  assert.is(error.code, 'DISCONNECTED');
});

test('survives a server restart: statuses, buffered publishes, subscriptions and requests', async () => {
  const transport = await open(); // publishes to itself: its SUBs are back before its replay
  const other = await open();
  const log = new StatusLog(transport);
  const otherLog = new StatusLog(other);
  const stream = collector(transport, 'stream');
  transport.subscribe('self.echo', (message) => transport.publish(message.reply ?? 'x', message.data));
  other.subscribe('svc.echo', (message) => other.publish(message.reply ?? 'x', message.data), { queue: 'svc' });
  await other.flush();
  for (let index = 0; index < 100; index++) transport.publish('stream', numbered(index));
  await stream.until(100);

  await server.stop();
  await log.waitFor('disconnected');
  await otherLog.waitFor('disconnected');
  // While the server is down: publishes go to the reconnect buffer; a request waits.
  for (let index = 100; index < 150; index++) transport.publish('stream', numbered(index));
  const waitingRequest = transport.request('self.echo', bytes('asked while down'), { timeoutMs: WAIT_MS });
  await server.restart();
  await log.waitFor('reconnected');
  await otherLog.waitFor('reconnected');

  assert.is(text(await waitingRequest), 'asked while down');
  for (let index = 150; index < 200; index++) transport.publish('stream', numbered(index));
  await stream.until(200);
  assert.equal(stream.got.map((message) => Number(text(message.data))), Array.from({ length: 200 }, (_, index) => index));
  const types = log.types();
  assert.ok(types.indexOf('disconnected') < types.indexOf('reconnecting') && types.indexOf('reconnecting') < types.indexOf('reconnected'), types.join(','));
  await other.flush(); // its SUBs are on the server before we ask across connections
  assert.is(text(await transport.request('svc.echo', bytes('after'), { timeoutMs: WAIT_MS })), 'after');
  await transport.flush();
});

test('a request in flight when the server dies times out; the next one after reconnect succeeds', async () => {
  const requester = await open();
  const responder = await open();
  const log = new StatusLog(requester);
  const responderLog = new StatusLog(responder);
  let isAnswering = false;
  responder.subscribe('late.svc', (message) => {
    if (isAnswering) responder.publish(message.reply ?? 'x', bytes('ok'));
  });
  await responder.flush();
  // Nobody answers before the restart (isAnswering is false): TIMEOUT does not depend on load.
  const inFlight = rejection(() => requester.request('late.svc', bytes('?'), { timeoutMs: 300 }));
  await server.kill();
  assert.is((await inFlight).code, 'TIMEOUT');
  await server.restart();
  await log.waitFor('reconnected');
  await responderLog.waitFor('reconnected');
  await responder.flush();
  isAnswering = true;
  assert.is(text(await requester.request('late.svc', bytes('?'), { timeoutMs: WAIT_MS })), 'ok');
});

test('bounds the reconnect buffer with OVERLOADED', async () => {
  const transport = await NatsTransport.connect({ servers: server.url, reconnectTimeWaitMs: 50, reconnectJitterMs: 0, reconnectBufferBytes: 1_024 });
  opened.push(transport);
  const log = new StatusLog(transport);
  await server.kill();
  await log.waitFor('disconnected');
  let accepted = 0;
  let error: unknown = null;
  try {
    for (; accepted < 100; accepted++) transport.publish('full', new Uint8Array(100));
  } catch (thrown) {
    error = thrown;
  }
  assert.is((error as { code?: string } | null)?.code, 'OVERLOADED');
  assert.ok(accepted > 0 && accepted < 10, `accepted ${accepted}`);
});

test('close while the server is down still closes and reports it', async () => {
  const transport = await open();
  const log = new StatusLog(transport);
  await server.kill();
  await log.waitFor('disconnected');
  await within(transport.close(), 'close while disconnected');
  assert.is(log.count('closed'), 1);
  assert.is((await rejection(() => transport.flush())).code, 'CLOSED');
});

test.run();
