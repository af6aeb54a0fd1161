// The nats-server restarted under producer load: the node and the clients reconnect and
// carry on; every acknowledged event is in the log exactly once. Each phase lasts until what
// it is for has happened (acks before the stop, both connections down, both back, acks
// after the restart), never a fixed time.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import pino from 'pino';
import { createConsumer, createProducer } from '../../src/client/index.ts';
import { loadConfig } from '../../src/node/config.ts';
import { startNode } from '../../src/node/node.ts';
import { StatusLog, startTestNats, connectTestTransport } from '../support/nats-harness.ts';
import { until } from '../support/waits.ts';
import { tempDir, removeDir } from '../support/wal-fixtures.ts';
import { LoadLedger } from './load-ledger.ts';

const test = suite('integration: nats restart');

/** Acknowledged events that show the load running: a few rounds of every sender. */
const PROGRESS_EVENTS = 2_000;

test('nats restart - node and producer reconnect and carry on without loss or duplicates', async () => {
  const dir = tempDir('nats-restart');
  const server = await startTestNats();
  const nodeTransport = await connectTestTransport(server, { name: 'node' });
  const clientTransport = await connectTestTransport(server, { name: 'client' });
  const config = loadConfig({
    env: {},
    overrides: { namespace: 'natsrestart', dataDir: dir, router: { strategy: 'hash', shards: 2 }, wal: { fsync: 'full' }, log: { level: 'silent' } },
  });
  const nodeLog = new StatusLog(nodeTransport);
  const clientLog = new StatusLog(clientTransport);
  const node = await startNode({ config, transport: nodeTransport, logger: pino({ level: 'silent' }) });
  try {
    const producer = await createProducer({ transport: clientTransport, namespace: 'natsrestart', producerId: 'nats-restart', requestTimeoutMs: 500, sendTimeoutMs: 60_000, retryBackoffMs: 20 });
    const ledger = new LoadLedger(2);
    let isStopping = false;
    const load = ledger.run(producer, 4, 100, () => isStopping);
    await until(() => ledger.hasAcked(PROGRESS_EVENTS), () => `${PROGRESS_EVENTS} acked events before the stop (acked ${ledger.acked.size})`);
    await server.stop();
    await nodeLog.waitFor('disconnected');
    await clientLog.waitFor('disconnected');
    const ackedBeforeRestart = ledger.acked.size;
    await server.restart();
    await nodeLog.waitFor('reconnected');
    await clientLog.waitFor('reconnected');
    await until(
      () => ledger.hasAcked(ackedBeforeRestart + PROGRESS_EVENTS),
      () => `${PROGRESS_EVENTS} more acked events after the restart (acked ${ledger.acked.size - ackedBeforeRestart})`,
    );
    isStopping = true;
    await load;
    await producer.flush();
    assert.ok(nodeLog.count('reconnected') > 0 && clientLog.count('reconnected') > 0, 'both connections went through a reconnect');
    assert.equal(ledger.sendErrors, [], 'every send resolved');
    assert.ok(ledger.acked.size > ackedBeforeRestart, 'acks kept coming after the server came back');
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
