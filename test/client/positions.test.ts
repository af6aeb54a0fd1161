// Durable consumers end to end on a standalone node (in-process transport, real files): a tail
// with a consumer name and autoCommit commits as the caller moves on and when it ends; the
// position survives a node restart and a new tail of the name resumes after it; tail.commit()
// and consumer.commit()/position(); status lists the positions; bad input gets stable codes.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import pino from 'pino';
import { createConsumer, createProducer, type Consumer } from '../../src/client/index.ts';
import { loadConfig } from '../../src/node/config.ts';
import { startNode, type TidelogNode } from '../../src/node/node.ts';
import { InProcessBus, InProcessTransport } from '../../src/transport/in-process.ts';
import { expectCode, expectRejection } from '../support/expect-code.ts';
import { removeDir, tempDir } from '../support/wal-fixtures.ts';

const NAMESPACE = 'positions';

async function nodeOn(bus: InProcessBus, dataDir: string): Promise<{ node: TidelogNode; transport: InProcessTransport }> {
  const config = loadConfig({ env: {}, overrides: { namespace: NAMESPACE, dataDir, router: { strategy: 'single' }, metrics: { enabled: false }, wal: { fsync: 'full', batchLingerMs: 0 }, log: { level: 'silent' } } });
  const transport = new InProcessTransport({ bus });
  return { node: await startNode({ config, transport, logger: pino({ level: 'silent' }) }), transport };
}

async function take(consumer: Consumer, options: Parameters<Consumer['tail']>[0], count: number): Promise<number[]> {
  const tail = consumer.tail(options);
  const seqs: number[] = [];
  for await (const { seq } of tail) {
    seqs.push(seq);
    if (seqs.length === count) break;
  }
  return seqs;
}

test('durable consumers - autoCommit commits what was processed; the position survives a restart; a tail of the name resumes after it', async () => {
  const dataDir = tempDir('positions');
  const bus = new InProcessBus();
  let running = await nodeOn(bus, dataDir);
  const client = new InProcessTransport({ bus });
  try {
    const producer = await createProducer({ transport: client, namespace: NAMESPACE, producerId: 'positions-test' });
    await producer.send(Array.from({ length: 100 }, (_, index) => ({ entityId: BigInt(index + 1), signalType: 1, weight: 1, timestampNs: BigInt(index) })));
    await producer.close();
    const consumer = await createConsumer({ transport: client, namespace: NAMESPACE });
    assert.is(await consumer.position({ consumer: 'indexer', shard: 0 }), 0, 'never committed: 0');
    assert.equal(await take(consumer, { shard: 0, consumer: 'indexer', autoCommit: true }, 60), Array.from({ length: 60 }, (_, index) => index + 1), 'a new name starts at seq 1');
    // The loop broke holding seq 60: processed through 59 (at-least-once: 60 comes again).
    assert.is(await consumer.position({ consumer: 'indexer', shard: 0 }), 59);
    assert.equal(running.node.status().consumers, [{ consumer: 'indexer', shard: 0, seq: 59 }], 'status lists the position');
    await consumer.close();
    await running.node.stop();
    await running.transport.close();
    running = await nodeOn(bus, dataDir);
    const again = await createConsumer({ transport: client, namespace: NAMESPACE });
    assert.is(await again.position({ consumer: 'indexer', shard: 0 }), 59, 'kept across the restart');
    // Resumed: 60 onwards. An explicit commit stores the event in hand.
    const tail = again.tail({ shard: 0, consumer: 'indexer' });
    const first = await tail.next();
    assert.is(first.value!.seq, 60);
    for (let index = 0; index < 9; index++) await tail.next();
    await tail.commit();
    assert.is(await again.position({ consumer: 'indexer', shard: 0 }), 69, 'tail.commit() stores the event in hand');
    await tail.return();
    assert.is(await again.position({ consumer: 'indexer', shard: 0 }), 69, 'without autoCommit, ending the tail commits nothing');
    // consumer.commit() moves it anywhere (a reset); another name is independent.
    await again.commit({ consumer: 'indexer', shard: 0, seq: 10 });
    assert.equal((await take(again, { shard: 0, consumer: 'indexer' }, 1))[0], 11);
    assert.equal((await take(again, { shard: 0, consumer: 'auditor' }, 1))[0], 1);
    // Bad input.
    await expectRejection(again.commit({ consumer: 'indexer', shard: 7, seq: 1 }), 'UNKNOWN_SHARD');
    await expectRejection(again.commit({ consumer: 'no spaces', shard: 0, seq: 1 }), 'BAD_REQUEST');
    await expectRejection(again.commit({ consumer: 'indexer', shard: 0, seq: -1 }), 'BAD_REQUEST');
    expectCode(() => again.tail({ shard: 0, autoCommit: true }), 'BAD_REQUEST');
    await expectRejection(again.tail({ shard: 0 }).commit(), 'BAD_REQUEST');
    // commit() with no event handed out yet leaves the position alone (it committed 0: start over).
    await again.tail({ shard: 0, consumer: 'indexer' }).commit();
    assert.is(await again.position({ consumer: 'indexer', shard: 0 }), 10);
    await again.close();
    // autoCommit: closing the consumer commits what was processed (the loop never ended).
    const closing = await createConsumer({ transport: client, namespace: NAMESPACE });
    const open = closing.tail({ shard: 0, consumer: 'closer', autoCommit: true, autoCommitIntervalMs: 3_600_000 });
    for (let index = 0; index < 10; index++) await open.next();
    assert.is(await closing.position({ consumer: 'closer', shard: 0 }), 0, 'nothing committed yet (the interval is an hour)');
    await closing.close();
    const check = await createConsumer({ transport: client, namespace: NAMESPACE });
    assert.is(await check.position({ consumer: 'closer', shard: 0 }), 9, 'close() committed through the event before the one in hand');
    await check.close();
  } finally {
    await client.close();
    await running.node.stop();
    await running.transport.close();
    removeDir(dataDir);
  }
});

test.run();
