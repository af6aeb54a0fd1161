// Durable consumers' position stores (src/cluster/consumer-store.ts): the standalone file
// store (durable before a commit resolves, group commits, reopened intact, a damaged file
// refused), the bound on positions, names checked, and the cluster's KV store against a real
// nats-server with JetStream: a position committed through one node's store is read through
// another's, and each node's watch lists it for status.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FileConsumerStore, KvConsumerStore, MemoryConsumerStore } from '../../src/cluster/consumer-store.ts';
import { nodeFileIo } from '../../src/wal/index.ts';
import { expectRejection } from '../support/expect-code.ts';
import { connectTestTransport, startTestNats } from '../support/nats-harness.ts';
import { until } from '../support/waits.ts';
import { removeDir, tempDir } from '../support/wal-fixtures.ts';
import { FaultyFileIo } from '../support/faulty-file-io.ts';

test('consumer store (file) - a resolved commit is on disk; concurrent commits share writes; a reopen has them all', async () => {
  const dir = tempDir('consumers');
  try {
    const store = await FileConsumerStore.open(nodeFileIo, dir, 100);
    assert.is(await store.position('indexer', 0), 0, 'no commit yet: 0');
    await store.commit('indexer', 0, 41);
    assert.match(readFileSync(join(dir, 'consumers.json'), 'utf8'), /"seq":41/, 'on disk once resolved');
    // 50 commits at once: every one resolves only after a write that holds it.
    await Promise.all(Array.from({ length: 50 }, (_, index) => store.commit(`c-${index}`, index % 3, index * 10)));
    await store.commit('indexer', 0, 7); // last write wins, also backwards (a reset)
    await store.close();
    const reopened = await FileConsumerStore.open(nodeFileIo, dir, 100);
    assert.is(await reopened.position('indexer', 0), 7);
    for (let index = 0; index < 50; index++) assert.is(await reopened.position(`c-${index}`, index % 3), index * 10, `c-${index}`);
    assert.is(reopened.positions().length, 51);
    assert.equal(reopened.positions()[0], { name: 'c-0', shard: 0, seq: 0 }, 'sorted by name, then shard');
    await reopened.close();
  } finally {
    removeDir(dir);
  }
});

test('consumer store (file) - a failed write rejects the commit; names, shards and seqs are checked; the bound holds', async () => {
  const dir = tempDir('consumers');
  const io = new FaultyFileIo();
  try {
    const store = await FileConsumerStore.open(io, dir, 2);
    io.inject({ op: 'sync', path: /consumers\.json/, code: 'EIO' });
    const failed = await store.commit('a', 0, 1).then(
      () => null,
      (error: unknown) => error,
    );
    assert.ok(failed instanceof Error, 'an fsync failure rejects the commit');
    io.clearFaults();
    await store.commit('a', 0, 2);
    await store.commit('b', 0, 2);
    await store.commit('a', 0, 3); // an update of a stored one: no new room needed
    await expectRejection(store.commit('c', 0, 1), 'OVERLOADED');
    for (const [name, shard, seq] of [['', 0, 1], ['a.b', 0, 1], ['x'.repeat(65), 0, 1], ['a', -1, 1], ['a', 70_000, 1], ['a', 0, -1], ['a', 0, 1.5]] as const) {
      await expectRejection(store.commit(name, shard, seq), 'BAD_REQUEST');
    }
    await store.close();
  } finally {
    removeDir(dir);
  }
});

test('consumer store (file) - a file it did not write stops the open with CONFIG_INVALID', async () => {
  const dir = tempDir('consumers');
  try {
    writeFileSync(join(dir, 'consumers.json'), '{"positions": [{"name": "ok", "shard": 0, "seq": -4}]}');
    await expectRejection(FileConsumerStore.open(nodeFileIo, dir, 10), 'CONFIG_INVALID');
    writeFileSync(join(dir, 'consumers.json'), 'not json');
    await expectRejection(FileConsumerStore.open(nodeFileIo, dir, 10), 'CONFIG_INVALID');
  } finally {
    removeDir(dir);
  }
});

test('consumer store (memory) - positions per name and shard', async () => {
  const store = new MemoryConsumerStore(10);
  await store.commit('x', 1, 5);
  await store.commit('x', 2, 9);
  assert.is(await store.position('x', 1), 5);
  assert.is(await store.position('x', 3), 0);
  assert.equal(store.positions(), [
    { name: 'x', shard: 1, seq: 5 },
    { name: 'x', shard: 2, seq: 9 },
  ]);
  await expectRejection(store.commit('no spaces', 0, 1), 'BAD_REQUEST');
});

test('consumer store (KV) - a position committed through one node is read through another and listed by its watch', async () => {
  const nats = await startTestNats({ jetStream: true });
  const first = await connectTestTransport(nats);
  const second = await connectTestTransport(nats);
  try {
    const options = { namespace: 'kvconsumers', bucketReplicas: 1, maxPositions: 100 };
    const a = await KvConsumerStore.open(first.connection, options);
    const b = await KvConsumerStore.open(second.connection, options);
    assert.is(await b.position('indexer', 3), 0);
    await a.commit('indexer', 3, 1234);
    assert.is(await b.position('indexer', 3), 1234, "another node's store reads it at once");
    await until(() => b.positions().some((position) => position.name === 'indexer' && position.seq === 1234), "the other node's watch lists it");
    await b.commit('indexer', 3, 1300);
    assert.is(await a.position('indexer', 3), 1300, 'last write wins');
    await a.close();
    await b.close();
    // A store opened later (a restarted node) finds it.
    const c = await KvConsumerStore.open(first.connection, options);
    assert.is(await c.position('indexer', 3), 1300);
    await until(() => c.positions().length === 1, 'the watch lists what the bucket holds');
    await c.close();
  } finally {
    await first.close();
    await second.close();
    await nats.stop();
  }
});

test.run();
