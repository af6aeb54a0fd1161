// A real `tidelog serve` child process killed with SIGKILL during producer load and started
// again on the same data: no acknowledged event is lost, and the producer's retries (same
// session seqs) never append an event twice. Each phase lasts until what it is for has
// happened (acks before the kill, retries while the node is dead, acks after the restart),
// never a fixed time.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createConsumer, createProducer } from '../../src/client/index.ts';
import { startTestNats, connectTestTransport } from '../support/nats-harness.ts';
import { NodeProcess } from '../support/node-process.ts';
import { until } from '../support/waits.ts';
import { tempDir, removeDir } from '../support/wal-fixtures.ts';
import { LoadLedger } from './load-ledger.ts';

const test = suite('integration: node restart');

/** Acknowledged events that show the load running: a few rounds of every sender. */
const PROGRESS_EVENTS = 2_000;

test('node restart - kill -9 of the node under load loses nothing acknowledged and duplicates nothing', async () => {
  const dir = tempDir('node-restart');
  const server = await startTestNats();
  const transport = await connectTestTransport(server);
  let node: NodeProcess | null = null;
  try {
    node = await NodeProcess.start({
      dir,
      config: { namespace: 'restart', nats: { servers: [server.url] }, router: { strategy: 'hash', shards: 2 }, wal: { fsync: 'full', segmentBytes: 1 << 20 } },
    });
    const producer = await createProducer({ transport, namespace: 'restart', producerId: 'restart-test', requestTimeoutMs: 500, sendTimeoutMs: 60_000, retryBackoffMs: 20 });
    const ledger = new LoadLedger(2);
    let isStopping = false;
    const load = ledger.run(producer, 4, 150, () => isStopping);
    await until(() => ledger.hasAcked(PROGRESS_EVENTS), () => `${PROGRESS_EVENTS} acked events before the kill (acked ${ledger.acked.size})`);
    await node.kill();
    const ackedBeforeKill = ledger.acked.size;
    const retriesBeforeKill = producer.stats().retries;
    // Requests in flight at the kill time out, new ones find no responder: both are retried.
    await until(() => producer.stats().retries > retriesBeforeKill, 'the producer to retry while the node is down');
    node = await node.restart();
    await until(
      () => ledger.hasAcked(ackedBeforeKill + PROGRESS_EVENTS),
      () => `${PROGRESS_EVENTS} more acked events after the restart (acked ${ledger.acked.size - ackedBeforeKill})`,
    );
    isStopping = true;
    await load;
    await producer.flush();
    assert.ok(producer.stats().retries > 0, 'the kill interrupted requests in flight: they were retried');
    assert.equal(ledger.sendErrors, [], 'every send resolved: retries carried them over the restart');
    assert.ok(ledger.acked.size > ackedBeforeKill, 'the load went on after the restart');
    const consumer = await createConsumer({ transport, namespace: 'restart' });
    const { logEvents } = await ledger.verify(consumer);
    assert.ok(logEvents >= ledger.acked.size);
    await consumer.close();
    await producer.close();
  } finally {
    await node?.stop();
    await transport.close();
    await server.stop();
    removeDir(dir);
  }
});

test.run();
