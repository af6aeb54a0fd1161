// Damage in one shard stops that shard, not the node: the others serve, status names the
// damaged file and offset, and a salvage start opens it on its durable prefix.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { encodeEvents, type SignalEvent } from '../../src/event.ts';
import { loadConfig, type NodeConfig } from '../../src/node/config.ts';
import { startNode, type TidelogNode } from '../../src/node/node.ts';
import { ShardRouter } from '../../src/shard-map.ts';
import { decodeReply, encodeMessage, runsToSeqs } from '../../src/transport/codec.ts';
import { InProcessBus, InProcessTransport } from '../../src/transport/in-process.ts';
import { subjects as subjectsOf } from '../../src/transport/messages.ts';
import { BATCH_HEADER_BYTES } from '../../src/wal/index.ts';
import { rejection, removeDir, tempDir } from '../support/wal-fixtures.ts';

const NAMESPACE = 'damage';
const subjects = subjectsOf(NAMESPACE);
const router = ShardRouter.fromSpec({ strategy: 'hash', shards: 2 });

function eventsOfShard(shard: number, count: number, from = 0): SignalEvent[] {
  const found: SignalEvent[] = [];
  for (let id = 1 + from * 1000; found.length < count; id++) {
    const event = { entityId: BigInt(id), signalType: 1, weight: 1, timestampNs: 1_700_000_000_000_000_000n + BigInt(id) };
    if (router.shardOf(event.entityId) === shard) found.push(event);
  }
  return found;
}

async function withNode<T>(config: NodeConfig, bus: InProcessBus, salvage: boolean, run: (node: TidelogNode, client: InProcessTransport) => Promise<T>): Promise<T> {
  const transport = new InProcessTransport({ bus });
  const client = new InProcessTransport({ bus });
  const node = await startNode({ config, transport, logger: pino({ level: 'silent' }), salvage });
  try {
    return await run(node, client);
  } finally {
    await node.stop();
    await transport.close();
    await client.close();
  }
}

/** The seqs the shard gave the events; a node's error reply is thrown as a TidelogError. */
async function append(client: InProcessTransport, shard: number, events: SignalEvent[]): Promise<number[]> {
  const request = encodeMessage({ v: 1, t: 'append', shard, events: encodeEvents(events) });
  const reply = decodeReply(await client.request(subjects.shardAppend(shard), request, { timeoutMs: 5000 }), 'appended');
  return runsToSeqs(reply.parts[0].runs, events.length);
}

test('shard-damage - a damaged shard stays stopped while the others serve; status names file and offset; salvage opens its durable prefix', async () => {
  const dir = tempDir('damage');
  const bus = new InProcessBus();
  try {
    const config = loadConfig({
      env: {},
      overrides: { namespace: NAMESPACE, dataDir: dir, router: { strategy: 'hash', shards: 2 }, wal: { fsync: 'off', batchMaxEvents: 10 }, log: { level: 'silent' } },
    });
    await withNode(config, bus, false, async (_node, client) => {
      for (let round = 0; round < 5; round++) {
        await append(client, 0, eventsOfShard(0, 10, round));
        await append(client, 1, eventsOfShard(1, 10, round));
      }
    });
    // Flip a byte inside shard 1's third batch: an intact batch follows, so it is damage, not a tear.
    const walDir = join(dir, 'wal');
    const segment = readdirSync(walDir).find((name) => name.startsWith('wal-00001-') && name.endsWith('.seg')) as string;
    const bytes = readFileSync(join(walDir, segment));
    const batchBytes = BATCH_HEADER_BYTES + 10 * 21;
    const damagedOffset = 96 + 2 * batchBytes;
    bytes[damagedOffset + BATCH_HEADER_BYTES + 5] ^= 0x40;
    writeFileSync(join(walDir, segment), bytes);

    await withNode(config, bus, false, async (node, client) => {
      const status = node.status();
      assert.is(status.shards.length, 2, 'both shards are listed');
      const damaged = status.shards.find((shard) => shard.shard === 1);
      assert.is(damaged?.failure, 'CHECKSUM_MISMATCH');
      assert.is(damaged?.failureFile, join(walDir, segment));
      assert.is(damaged?.failureOffset, damagedOffset);
      assert.is(status.shards.find((shard) => shard.shard === 0)?.failure, undefined);
      // The healthy shard takes appends and reads; the damaged one answers its error code.
      assert.equal(await append(client, 0, eventsOfShard(0, 2, 9)), [51, 52]);
      const error = await rejection(() => append(client, 1, eventsOfShard(1, 2, 9)));
      assert.is(error.code, 'CHECKSUM_MISMATCH');
      const wire = decodeReply(await client.request(subjects.status, encodeMessage({ v: 1, t: 'status' }), { timeoutMs: 5000 }), 'status');
      assert.ok(wire.shards.some((shard) => shard.shard === 1 && shard.failureOffset === damagedOffset), 'the status reply carries it too');
    });

    await withNode(config, bus, true, async (node, client) => {
      const shard1 = node.status().shards.find((shard) => shard.shard === 1);
      assert.is(shard1?.failure, undefined, 'salvage opens the shard');
      assert.is(shard1?.lastSeq, 20, 'on its durable prefix: the two batches before the damage');
      assert.equal(await append(client, 1, eventsOfShard(1, 1, 9)), [21]);
      assert.ok(readdirSync(walDir).some((name) => name === `${segment}.damaged`), 'the damaged bytes are kept aside');
    });
  } finally {
    removeDir(dir);
  }
});

test.run();
