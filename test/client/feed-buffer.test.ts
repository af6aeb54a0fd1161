// The tail's feed buffer: bounded by messages and events, oldest out first.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { FeedBuffer } from '../../src/client/feed-buffer.ts';
import { EVENT_BYTES } from '../../src/event.ts';
import type { FeedMessage } from '../../src/transport/messages.ts';

function feed(firstSeq: number, count: number): FeedMessage {
  return { v: 1, t: 'feed', shard: 0, epoch: 1, firstSeq, timestampNs: 0n, events: new Uint8Array(count * EVENT_BYTES), hwm: firstSeq + count - 1 };
}

test('feed-buffer - past maxMessages or maxEvents the oldest messages go', () => {
  const buffer = new FeedBuffer(3, 10);
  for (let index = 0; index < 5; index++) buffer.push(feed(1 + index * 2, 2));
  assert.is(buffer.size, 3);
  assert.is(buffer.droppedMessages, 2);
  assert.is(buffer.peek()?.firstSeq, 5);
  buffer.push(feed(11, 7)); // the one at 5 goes for the count; then 2 + 2 + 7 > 10 events: the one at 7 too
  assert.equal([buffer.shift()?.firstSeq, buffer.shift()?.firstSeq, buffer.shift()], [9, 11, undefined]);
  assert.is(buffer.events, 0);
  buffer.push(feed(20, 50)); // alone above maxEvents: kept, it is the newest
  assert.is(buffer.size, 1);
});

test('feed-buffer - discardBefore drops only messages that end before the seq', () => {
  const buffer = new FeedBuffer(10, 100);
  buffer.push(feed(1, 3)); // 1..3
  buffer.push(feed(4, 3)); // 4..6
  buffer.discardBefore(5);
  assert.is(buffer.peek()?.firstSeq, 4, 'a message covering the seq stays');
  buffer.discardBefore(7);
  assert.is(buffer.size, 0);
});

test('feed-buffer - wait resolves on a push, on its timeout, or on abort', async () => {
  const buffer = new FeedBuffer(10, 100);
  const controller = new AbortController();
  const arriving = buffer.wait(60_000, controller.signal);
  buffer.push(feed(1, 1));
  assert.is(await arriving, true);
  buffer.shift();
  assert.is(await buffer.wait(1, controller.signal), false);
  const aborted = buffer.wait(60_000, controller.signal);
  controller.abort();
  assert.is(await aborted, false);
});

test.run();
