// The feed is published only while a tail announces itself: no tail, no feed encoded.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import pino from 'pino';
import { encodeEvents } from '../../src/event.ts';
import { loadConfig } from '../../src/node/config.ts';
import { startNode } from '../../src/node/node.ts';
import { decodeFeed, decodeReply, encodeMessage } from '../../src/transport/codec.ts';
import { InProcessBus, InProcessTransport } from '../../src/transport/in-process.ts';
import { subjects as subjectsOf } from '../../src/transport/messages.ts';
import { removeDir, tempDir } from '../support/wal-fixtures.ts';
import { within } from '../support/waits.ts';

const NAMESPACE = 'feedtest';
const subjects = subjectsOf(NAMESPACE);

test('feed-interest - a shard publishes its feed only after a tail announced itself', async () => {
  const dir = tempDir('feed');
  const bus = new InProcessBus();
  const transport = new InProcessTransport({ bus });
  const client = new InProcessTransport({ bus });
  const config = loadConfig({ env: {}, overrides: { namespace: NAMESPACE, dataDir: dir, wal: { fsync: 'off' }, log: { level: 'silent' } } });
  const node = await startNode({ config, transport, logger: pino({ level: 'silent' }) });
  try {
    const feedSeqs: number[] = [];
    let onFeed: () => void = () => undefined;
    client.subscribe(subjects.shardFeed(0), (message) => {
      feedSeqs.push(decodeFeed(message.data).firstSeq);
      onFeed();
    });
    const append = async (id: number): Promise<void> => {
      const events = encodeEvents([{ entityId: BigInt(id), signalType: 1, weight: 1, timestampNs: BigInt(id) }]);
      decodeReply(await client.request(subjects.shardAppend(0), encodeMessage({ v: 1, t: 'append', shard: 0, events }), { timeoutMs: 30_000 }), 'appended');
    };
    await append(1);
    await append(2);
    await client.flush();
    assert.equal(feedSeqs, [], 'no tail: no feed');
    client.publish(subjects.shardTail(0), encodeMessage({ v: 1, t: 'tail', shard: 0 }));
    await client.flush();
    const fed = new Promise<void>((resolve) => (onFeed = resolve));
    await append(3);
    await within(fed, 'the feed message of seq 3');
    assert.equal(feedSeqs, [3]);
    client.publish(subjects.shardTail(0), new Uint8Array([1, 2, 3]));
    await append(4);
    assert.is(node.status().shards[0].failure, undefined, 'a malformed announce is ignored');
  } finally {
    await node.stop();
    await transport.close();
    await client.close();
    removeDir(dir);
  }
});

test.run();
