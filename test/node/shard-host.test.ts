// ShardHost: a session append must never be able to stop its shard's
// lane, and a producer's request must stay exactly-once across a crash that tears a flush.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { statSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { defaultSignalSchema } from '../../src/crdt/index.ts';
import { isTidelogError } from '../../src/errors.ts';
import { BATCH_HEADER_BYTES } from '../../src/wal/batch-format.ts';
import { segmentFileName } from '../../src/wal/segment-name.ts';
import { EVENT_BYTES, encodeEvents, type SignalEvent } from '../../src/event.ts';
import { ShardHost, type ShardHostOptions } from '../../src/node/shard-host.ts';
import type { SessionTag } from '../../src/transport/messages.ts';
import { withTempDir } from '../support/wal-fixtures.ts';

const schema = defaultSignalSchema();

function options(dataDir: string, wal: ShardHostOptions['wal'] = {}): ShardHostOptions {
  return {
    shard: 0,
    dataDir,
    wal: { fsync: 'off', batchLingerMs: 0, dedupWindowMs: 60_000, ...wal }, // the node's default window
    epoch: 0,
    schema,
    sessions: {},
    recentBytes: 1 << 20,
    publishFeed: () => undefined,
  };
}

function event(index: number): SignalEvent {
  return { entityId: BigInt(index + 1), signalType: 1, weight: 1, timestampNs: 1_700_000_000_000_000_000n + BigInt(index) };
}

const test = suite('shard-host');

test('shard-host - a session makes retries exactly-once, so identical events in it are all real signals; without one, content dedup applies', async () => {
  await withTempDir(async (dir) => {
    const host = await ShardHost.open(options(dir));
    try {
      // Five views of one entity stamped in the same millisecond.
      const view = event(41);
      const five = encodeEvents([view, view, view, view, view]);
      const tag: SessionTag = { producerId: 'p', sessionEpoch: 1, requestSeq: 1 };
      const first = await host.append(five, tag);
      assert.is(first.written, 5, 'all five written');
      assert.is(host.query(view.entityId, [1])[0].count, 5, 'and counted five times');
      const retry = await host.append(five, tag);
      assert.equal([retry.outcome, retry.runs], ['replayed', first.runs], 'a retry of the request is answered from the session');
      assert.is(host.query(view.entityId, [1])[0].count, 5);
      const other = event(42);
      const plain = await host.append(encodeEvents([other, other]));
      assert.is(plain.written, 1, 'without a session the second copy is a content duplicate (seq 0)');
      assert.is(host.query(other.entityId, [1])[0].count, 1);
    } finally {
      await host.close();
    }
  }, 'dedup-host');
});

test('shard-host - a session append whose note would pass MAX_NOTE_BYTES does not stop the lane', async () => {
  await withTempDir(async (dir) => {
    const host = await ShardHost.open(options(dir)); // default batchMaxEvents (1000)
    try {
      // Every event twice in a row: the in-call dedup makes one written run and one duplicate
      // run per pair, 12 bytes each in the note: 12 000 runs ≈ 144 KB > 64 KiB.
      const events: SignalEvent[] = [];
      for (let index = 0; index < 6000; index++) events.push(event(index), event(index));
      const tag: SessionTag = { producerId: 'p', sessionEpoch: 1, requestSeq: 1 };
      try {
        await host.append(encodeEvents(events), tag);
      } catch (error) {
        // A refusal with a stable code is fine; taking the shard down is not.
        assert.ok(isTidelogError(error), String(error));
      }
      assert.is(host.failure, null, `the lane failed: ${String(host.failure)}`);
      const next = await host.append(encodeEvents([event(1_000_000)]), { producerId: 'q', sessionEpoch: 1, requestSeq: 1 });
      assert.is(next.written, 1);
    } finally {
      await host.close().catch(() => undefined);
    }
  }, 'review-host');
});

test('shard-host - a retry after a crash that kept only part of a split request writes nothing twice', async () => {
  await withTempDir(async (dir) => {
    // Dedup off, as a node down longer than dedupWindowMs effectively has it.
    const wal = { batchMaxEvents: 1000, dedupWindowMs: 0 };
    const events: SignalEvent[] = [];
    for (let index = 0; index < 2500; index++) events.push(event(index));
    const packed = encodeEvents(events);
    const tag: SessionTag = { producerId: 'p', sessionEpoch: 1, requestSeq: 1 };
    let host = await ShardHost.open(options(dir, wal));
    const walDir = join(dir, 'wal');
    const segment = segmentFileName(0, 1);
    const headBytes = statSync(join(walDir, segment)).size; // the segment's checkpoint record
    const first = await host.append(packed, tag);
    assert.is(first.written, 2500);
    await host.close();
    // The crash: one flush wrote the request's batches, the disk kept only the first one
    // complete (a torn write at a batch boundary).
    const segmentPath = join(walDir, segment);
    const total = statSync(segmentPath).size;
    const firstBatchEnd = headBytes + BATCH_HEADER_BYTES + 1000 * EVENT_BYTES;
    if (total > firstBatchEnd) truncateSync(segmentPath, firstBatchEnd);
    host = await ShardHost.open(options(dir, wal));
    try {
      const kept = host.hwm;
      const retry = await host.append(packed, tag); // the producer never got its ack
      const logged = host.hwm;
      assert.ok(logged <= 2500, `events of request 1 are in the log twice: kept ${kept}, retry wrote ${retry.written}, log now ends at ${logged}`);
    } finally {
      await host.close();
    }
  }, 'review-host');
});

test.run();
