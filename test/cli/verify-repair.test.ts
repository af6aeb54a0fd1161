// `tidelog wal verify <dataDir>/wal --repair-from <nats url>` against a real node: a copy of
// the node's replica, a byte flipped in its oldest segment, is repaired from the node over NATS
// (committed batches fetched read-only and appended verbatim), verifies afterwards, holds the
// node's log byte for byte, and keeps its repair marker (the node's leader confirms it later).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createProducer } from '../../src/client/index.ts';
import { encodeEvents, type SignalEvent } from '../../src/event.ts';
import { initChecksum, nodeFileIo, recoverShard } from '../../src/wal/index.ts';
import { repairMarkerFileName } from '../../src/wal/repair-marker.ts';
import { connectTestTransport, startTestNats } from '../support/nats-harness.ts';
import { NodeProcess } from '../support/node-process.ts';
import { makeTempDir, runCli } from './harness.ts';

const NAMESPACE = 'repairns';

/** Every committed event of shard 0 in seq order, as hex, read-only (beside a live node too). */
async function eventsOf(walDir: string): Promise<string[]> {
  await initChecksum();
  const events: string[] = [];
  await recoverShard({
    io: nodeFileIo,
    dir: walDir,
    shard: 0,
    salvage: false,
    repair: false,
    onBatch: (bytes, batch) => {
      for (let index = 0; index < batch.header.count; index++) {
        const at = batch.offset + 64 + index * 21;
        events.push(Buffer.from(bytes.subarray(at, at + 21)).toString('hex'));
      }
    },
  });
  return events;
}

test('verify --repair-from - a damaged replica copy is repaired from a running node: it verifies, equals the node\'s log, and stays marked repairing', async () => {
  const nats = await startTestNats({ jetStream: true });
  const temp = makeTempDir('repair-from');
  let node: NodeProcess | null = null;
  try {
    const config = {
      nodeId: 'n1',
      namespace: NAMESPACE,
      nats: { servers: [nats.url] },
      router: { strategy: 'hash', shards: 1 },
      wal: { fsync: 'full', segmentBytes: 16 << 10 },
      cluster: { nodes: ['n1'], replicationFactor: 1, epochBucketReplicas: 1 },
    };
    const nodeDir = join(temp.dir, 'n1');
    mkdirSync(nodeDir, { recursive: true });
    node = await NodeProcess.start({ dir: nodeDir, config, readyTimeoutMs: 90_000 });
    const transport = await connectTestTransport(nats);
    const producer = await createProducer({ namespace: NAMESPACE, transport, producerId: 'repair-test' });
    for (let call = 0; call < 40; call++) {
      const events: SignalEvent[] = [];
      for (let index = 0; index < 100; index++) events.push({ entityId: BigInt(call * 100 + index + 1), signalType: 1, weight: 1, timestampNs: 1_800_000_000_000_000_000n + BigInt(call * 100 + index) });
      await producer.send(encodeEvents(events));
    }
    await producer.close();
    await transport.close();
    // A copy of the replica, taken with the node stopped; the node then serves on.
    await node.stop();
    const copyData = join(temp.dir, 'copy');
    cpSync(join(nodeDir, 'data'), copyData, { recursive: true });
    node = await node.restart();
    const copyWal = join(copyData, 'wal');
    const segments = readdirSync(copyWal).filter((name) => name.endsWith('.seg')).sort();
    assert.ok(segments.length >= 3, `several segments (${segments.length})`);
    const oldest = join(copyWal, segments[0]);
    const bytes = readFileSync(oldest);
    bytes[Math.floor(bytes.byteLength / 2)] ^= 0x40;
    writeFileSync(oldest, bytes);
    assert.is(runCli(['wal', 'verify', copyWal]).status, 1, 'the copy is damaged');

    const repaired = runCli(['wal', 'verify', copyWal, '--repair-from', nats.url, '--namespace', NAMESPACE], { timeoutMs: 120_000 });
    assert.is(repaired.status, 0, `${repaired.stdout}\n${repaired.stderr}`);
    process.stdout.write(repaired.stdout.replace(/^/gm, '  '));
    assert.match(repaired.stdout, /fetched from n1/);
    assert.match(repaired.stdout, /shard 0: verifies/);
    const after = runCli(['wal', 'verify', copyWal]);
    assert.is(after.status, 0, after.stdout + after.stderr);
    const nodeEvents = await eventsOf(join(nodeDir, 'data', 'wal'));
    const copyEvents = await eventsOf(copyWal);
    assert.is(nodeEvents.length, 4_000);
    assert.equal(copyEvents, nodeEvents, "the repaired copy holds the node's log");
    assert.ok(existsSync(join(copyWal, repairMarkerFileName(0))), 'the repair marker stays until a leader confirms the log');
    assert.ok(readdirSync(copyWal).some((name) => name.endsWith('.damaged')), 'the damaged segment is set aside, not deleted');

    // Nothing to repair: said, exit 0. A directory that is not <dataDir>/wal: a usage error.
    const again = runCli(['wal', 'verify', copyWal, '--repair-from', nats.url, '--namespace', NAMESPACE]);
    assert.is(again.status, 0, again.stderr);
    assert.match(again.stdout, /nothing to repair/);
    assert.is(runCli(['wal', 'verify', copyData, '--repair-from', nats.url]).status, 2);
  } finally {
    await node?.stop();
    await nats.stop();
    temp.remove();
  }
});

test.run();
