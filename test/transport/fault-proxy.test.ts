// The TCP fault proxy (src/transport/fault-proxy.ts): against a plain TCP server, delay keeps
// byte order, cut closes and refuses, a blackhole holds bytes until heal; in front of a real 3-server NATS cluster's routes,
// a partition stops traffic between the groups (cut, and blackhole: held open, silent) and
// heal brings it back, while traffic inside a group flows throughout.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createServer, connect, type Socket } from 'node:net';
import { FaultProxy } from '../../src/transport/fault-proxy.ts';
import type { NatsTransport } from '../../src/transport/nats.ts';
import { startNatsCluster } from '../support/nats-cluster.ts';
import { connectTestTransport } from '../support/nats-harness.ts';
import { untilAsync } from '../support/waits.ts';

/** An echo server that names itself the peer `route-x` the way a NATS route dialer does. */
async function echoServer(): Promise<{ port: number; close: () => Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('data', (chunk) => socket.write(chunk));
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no address');
  return {
    port: address.port,
    close: () => {
      for (const socket of sockets) socket.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

function dial(port: number): Promise<{ socket: Socket; received: () => string; closed: () => boolean }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let text = '';
    let isClosed = false;
    socket.on('data', (chunk) => (text += chunk.toString()));
    socket.on('close', () => (isClosed = true));
    socket.on('error', () => undefined);
    socket.once('connect', () => resolve({ socket, received: () => text, closed: () => isClosed }));
    socket.once('error', reject);
  });
}

const HELLO = 'CONNECT {"name":"x"}\r\nINFO {"server_name":"route-x"}\r\n';

test('fault proxy - delayed bytes keep their order; a cut closes the link and refuses the peer until heal', async () => {
  const echo = await echoServer();
  const proxy = await FaultProxy.start({ host: '127.0.0.1', port: echo.port });
  try {
    const first = await dial(proxy.port);
    first.socket.write(HELLO);
    await untilAsync(async () => proxy.peers().includes('route-x'), 'the proxy names the peer from its hello');
    proxy.setMode('route-x', { kind: 'delay', ms: 30 });
    const sentAt = Date.now();
    for (let index = 0; index < 20; index++) first.socket.write(`<${index}>`);
    const expected = Array.from({ length: 20 }, (_, index) => `<${index}>`).join('');
    await untilAsync(async () => first.received().endsWith(expected), () => `the delayed bytes arrive in order (${first.received()})`);
    assert.ok(Date.now() - sentAt >= 55, 'each direction was delayed');
    proxy.setMode('route-x', { kind: 'cut' });
    await untilAsync(async () => first.closed(), 'a cut closes the open link');
    const second = await dial(proxy.port);
    second.socket.write(HELLO);
    await untilAsync(async () => second.closed(), 'a new link from the cut peer is closed once it says who it is');
    proxy.heal();
    const third = await dial(proxy.port);
    third.socket.write(`${HELLO}ping`);
    await untilAsync(async () => third.received().endsWith('ping'), 'after heal the peer gets through');
    // A blackhole holds the bytes (TCP over a dead network): nothing arrives until heal, then all, in order.
    proxy.setMode('route-x', { kind: 'blackhole' });
    third.socket.write('-held-1');
    third.socket.write('-held-2');
    await new Promise((resolve) => setTimeout(resolve, 150));
    assert.ok(third.received().endsWith('ping'), 'nothing crosses a blackhole');
    assert.not.ok(third.closed(), 'a blackholed link stays open');
    proxy.heal();
    await untilAsync(async () => third.received().endsWith('ping-held-1-held-2'), () => `held bytes arrive in order after heal (${third.received()})`);
    third.socket.destroy();
  } finally {
    await proxy.close();
    await echo.close();
  }
});

async function delivered(from: NatsTransport, to: NatsTransport, subject: string): Promise<boolean> {
  let got = false;
  const subscription = to.subscribe(subject, () => (got = true));
  try {
    await to.flush();
    for (let attempt = 0; attempt < 10 && !got; attempt++) {
      from.publish(subject, new Uint8Array([1]));
      await from.flush();
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return got;
  } finally {
    subscription.unsubscribe();
  }
}

test('fault proxy - a NATS cluster partitioned 2|1 through the proxies (cut, then blackhole) stops traffic across, not within; heal restores it', async () => {
  const cluster = await startNatsCluster(3, 'faults', undefined, { faultProxies: true });
  const [a, b, c] = await Promise.all(cluster.servers.map((server) => connectTestTransport(server)));
  try {
    await untilAsync(() => delivered(a, c, 'probe.0'), 'routes come up through the proxies');
    for (const [round, mode] of [[1, { kind: 'cut' }], [2, { kind: 'blackhole' }]] as const) {
      cluster.partition([['n1', 'n2'], ['n3']], mode);
      // Interest propagates over routes: wait until n3 is unreachable from n1.
      await untilAsync(async () => !(await delivered(a, c, `probe.${round}.cut`)), `n3 is cut off (${mode.kind})`);
      assert.ok(await delivered(a, b, `probe.${round}.inside`), `n1 and n2 still talk (${mode.kind})`);
      assert.not.ok(await delivered(c, b, `probe.${round}.back`), `n3 does not reach n2 (${mode.kind})`);
      cluster.heal();
      await untilAsync(() => delivered(a, c, `probe.${round}.healed`), `after heal n1 reaches n3 again (${mode.kind})`);
    }
  } finally {
    await Promise.all([a, b, c].map((transport) => transport.close()));
    await cluster.stop();
  }
});

test.run();
