// The nats-server restarted under producer load: the node and the clients reconnect and
// carry on; every acknowledged event is in the log exactly once.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import pino from 'pino';
import { createConsumer, createProducer } from '../../src/client/index.ts';
import { loadConfig } from '../../src/node/config.ts';
import { startNode } from '../../src/node/node.ts';
import { startTestNats, connectTestTransport } from '../support/nats-harness.ts';
import { tempDir, removeDir } from '../support/wal-fixtures.ts';
import { LoadLedger } from './load-ledger.ts';

const test = suite('integration: nats restart');

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

test('nats restart - node and producer reconnect and carry on without loss or duplicates', async () => {
  const dir = tempDir('nats-restart');
  const server = await startTestNats();
  const nodeTransport = await connectTestTransport(server, { name: 'node' });
  const clientTransport = await connectTestTransport(server, { name: 'client' });
  const config = loadConfig({
    env: {},
    overrides: { namespace: 'natsrestart', dataDir: dir, router: { strategy: 'hash', shards: 2 }, wal: { fsync: 'full' }, log: { level: 'silent' } },
  });
  const reconnects = { node: 0, client: 0 };
  nodeTransport.onStatus((status) => void (status.type === 'reconnected' && reconnects.node++));
  clientTransport.onStatus((status) => void (status.type === 'reconnected' && reconnects.client++));
  const node = await startNode({ config, transport: nodeTransport, logger: pino({ level: 'silent' }) });
  try {
    const producer = await createProducer({ transport: clientTransport, namespace: 'natsrestart', producerId: 'nats-restart', requestTimeoutMs: 500, sendTimeoutMs: 60_000, retryBackoffMs: 20 });
    const ledger = new LoadLedger(2);
    let isStopping = false;
    const load = ledger.run(producer, 4, 100, () => isStopping);
    await sleep(800);
    const ackedBeforeStop = ledger.acked.size;
    assert.ok(ackedBeforeStop > 0);
    await server.stop();
    await sleep(400);
    await server.restart();
    await sleep(1200);
    isStopping = true;
    await load;
    await producer.flush();
    assert.ok(reconnects.node > 0 && reconnects.client > 0, 'both connections went through a reconnect');
    assert.equal(ledger.sendErrors, [], 'every send resolved');
    assert.ok(ledger.acked.size > ackedBeforeStop, 'acks kept coming after the server came back');
    const consumer = await createConsumer({ transport: clientTransport, namespace: 'natsrestart' });
    await ledger.verify(consumer);
    await consumer.close();
    await producer.close();
  } finally {
    await node.stop();
    await nodeTransport.close();
    await clientTransport.close();
    await server.stop();
    removeDir(dir);
  }
});

test.run();
