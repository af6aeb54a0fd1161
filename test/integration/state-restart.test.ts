// A shard of a million entities killed with SIGKILL while its state snapshots are being
// written, then started again on the same data: every entity answers state() as before the
// kill, and the restart restored a snapshot and replayed only the log after it.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { createConsumer, createProducer, type EntityState } from '../../src/client/index.ts';
import { startTestNats, connectTestTransport } from '../support/nats-harness.ts';
import { NodeProcess } from '../support/node-process.ts';
import { tempDir, removeDir } from '../support/wal-fixtures.ts';

const test = suite('integration: state restart');

const ENTITIES = 1_000_000;
const BATCH_EVENTS = 4_000;
const SAMPLE = 400;

/** Batch `index`: every entity gets a view, then every second entity a click (1.5 M events). */
function batch(index: number): Uint8Array {
  const bytes = new Uint8Array(BATCH_EVENTS * 21);
  const view = new DataView(bytes.buffer);
  for (let slot = 0; slot < BATCH_EVENTS; slot++) {
    const n = index * BATCH_EVENTS + slot;
    const isClick = n >= ENTITIES;
    const entity = isClick ? 2 * (n - ENTITIES) + 1 : n + 1;
    const at = slot * 21;
    view.setUint32(at, entity, true);
    view.setUint8(at + 8, isClick ? 2 : 1);
    view.setFloat32(at + 9, 1 + (n % 3), true);
    view.setBigUint64(at + 13, 1_700_000_000_000_000_000n + BigInt(n) * 1_000_000n, true);
  }
  return bytes;
}

/** What state() says, with the decayed score rounded: it moves with the query time. */
function comparable(reply: EntityState): unknown {
  return reply.signals.map((signal) => ({ ...signal, score: Number(signal.score.toPrecision(6)) }));
}

test('state restart - 1 M entities: kill -9 while snapshots are written, restart answers state() as before', async () => {
  const dir = tempDir('state-restart');
  const server = await startTestNats();
  const transport = await connectTestTransport(server);
  let node: NodeProcess | null = null;
  try {
    // Small snapshot thresholds, so several snapshots are taken (and one may be mid-write at the kill).
    const config = {
      namespace: 'staterestart',
      nats: { servers: [server.url] },
      router: { strategy: 'single' },
      wal: { fsync: 'full', segmentBytes: 4 << 20, snapshotMinLogBytes: 6 << 20, snapshotLogRatio: 0.1 },
    };
    node = await NodeProcess.start({ dir, config, env: { TIDELOG_LOG_LEVEL: 'info' } });
    const producer = await createProducer({ transport, namespace: 'staterestart', producerId: 'state-restart', sendTimeoutMs: 120_000 });
    const batches = Math.ceil((ENTITIES * 1.5) / BATCH_EVENTS);
    let next = 0;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (next < batches) await producer.send(batch(next++));
      }),
    );
    await producer.close();
    const consumer = await createConsumer({ transport, namespace: 'staterestart' });
    const sample = Array.from({ length: SAMPLE }, (_, index) => BigInt(1 + Math.floor((index * ENTITIES) / SAMPLE) + (index % 2)));
    sample.push(1n, 2n, BigInt(ENTITIES), BigInt(ENTITIES + 7));
    const before = await Promise.all(sample.map((entityId) => consumer.state(entityId)));
    assert.is(before[0].signals.find((signal) => signal.signalType === 1)?.count, 1, 'entity 1 was viewed once');
    assert.is(before[0].signals.find((signal) => signal.signalType === 2)?.count, 1, 'and clicked once');
    const walDir = join(dir, 'data', 'wal');
    const snapshots = readdirSync(walDir).filter((name) => name.endsWith('.snap'));
    assert.ok(snapshots.length >= 1, `snapshot files were written: ${snapshots.join(', ')}`);

    await node.kill();
    node = await node.restart();
    const after = await Promise.all(sample.map((entityId) => consumer.state(entityId)));
    for (let index = 0; index < sample.length; index++) {
      assert.equal(comparable(after[index]), comparable(before[index]), `entity ${sample[index]}`);
      assert.is(after[index].appliedSeq, before[index].appliedSeq);
    }
    assert.is(after[0].appliedSeq, ENTITIES * 1.5, 'every event is in the state');
    await consumer.close();
    // The restart restored a snapshot instead of folding 1.5 M events from the start.
    assert.match(node.stderr, /"restoredFrom":"snapshot"/);
  } finally {
    await node?.stop();
    await transport.close();
    await server.stop();
    removeDir(dir);
  }
});

test.run();
