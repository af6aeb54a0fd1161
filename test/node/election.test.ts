// Elections (src/node/election.ts): the reply to a candidate's fetch stays under NATS's default
// max_payload even when the best log holds many small batches (found by review: a 1 MiB
// budget of batch bytes encoded to 1 060 958 bytes, refused by the NATS client, so every
// campaign of a lagging candidate failed).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { encodeEvents, type SignalEvent } from '../../src/event.ts';
import { ReplicaServer } from '../../src/node/election.ts';
import { encodeFetchReply } from '../../src/transport/replication-codec.ts';
import { openReplicaHost } from '../support/replica-host.ts';
import { removeDir, tempDir } from '../support/wal-fixtures.ts';

const NATS_DEFAULT_MAX_PAYLOAD = 1 << 20;

function packed(first: number, count: number): Uint8Array {
  const events: SignalEvent[] = [];
  for (let index = 0; index < count; index++) events.push({ entityId: BigInt(first + index), signalType: 1, weight: 1, timestampNs: 1_700_000_000_000_000_000n + BigInt(first + index) });
  return encodeEvents(events);
}

test('election - a fetch reply of many small batches fits NATS\'s max_payload', async () => {
  const dir = tempDir('probe-fetch-payload');
  let durableWaiter: (() => void) | null = null;
  const host = await openReplicaHost(dir, { fsync: 'off', onDurable: () => durableWaiter?.() });
  try {
    await host.lead(1);
    // Light load: producers sending a few events per request, one batch each.
    let seq = 1;
    let bytes = 0;
    while (bytes < (1 << 20) + 64 * 1024) {
      const count = 1 + (seq % 10);
      const durable = new Promise<void>((resolve) => (durableWaiter = resolve));
      const call = host.append(packed(seq, count));
      await durable;
      await host.commitTo(host.durableSeq);
      await call;
      seq += count;
      bytes += 64 + 21 * count;
    }
    // The best replica answers a candidate's fetch (frozen at the candidate's epoch 2).
    await host.setEpoch(2);
    const server = new ReplicaServer(0, host, { onLeaderContact: () => undefined, onPrepared: () => undefined }, { nowMs: () => performance.now(), leaderTimeoutMs: 1_000 });
    const reply = await server.fetch({ shard: 0, epoch: 2, fromSeq: 1, maxBytes: 1 << 20 });
    assert.is(reply.kind, 'ok');
    const batchBytes = reply.kind === 'ok' ? reply.batches.reduce((sum, batch) => sum + batch.byteLength, 0) : 0;
    const encoded = encodeFetchReply(reply).byteLength;
    assert.ok(batchBytes > 256 << 10, `the reply still carries a useful amount (${batchBytes} bytes)`);
    assert.ok(encoded <= NATS_DEFAULT_MAX_PAYLOAD, `the fetch reply (${encoded} bytes) must fit NATS's max_payload (${NATS_DEFAULT_MAX_PAYLOAD})`);
  } finally {
    await host.close().catch(() => undefined);
    removeDir(dir);
  }
});

test.run();
