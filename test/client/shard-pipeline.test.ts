// The shard pipeline with replies scripted by hand: the in-flight window, the order of
// (re)sends, and how the session numbers continue after a batch leaves unacknowledged.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { SESSION_WINDOW, ShardPipeline, type BatchItem } from '../../src/client/shard-pipeline.ts';
import { deferred, type Deferred } from '../../src/deferred.ts';
import { TidelogError } from '../../src/errors.ts';
import { EVENT_BYTES } from '../../src/event.ts';
import type { AppendReply, SessionTag } from '../../src/transport/messages.ts';
import { settle } from '../support/fake-node.ts';

interface Call {
  session: SessionTag;
  count: number;
  reply: Deferred<AppendReply>;
  settled?: boolean;
}

interface Outcome {
  seqs?: number[];
  code?: string;
}

function harness(options: { maxInFlightRequests?: number; sendTimeoutMs?: number; sessionEpoch?: number } = {}) {
  const calls: Call[] = [];
  let nowMs = 0;
  const fenced: TidelogError[] = [];
  const pipeline = new ShardPipeline({
    shard: 0,
    producerId: 'p',
    sessionEpoch: options.sessionEpoch ?? 10,
    maxBatchEvents: 1, // every item is its own request
    lingerMs: 0,
    maxInFlightRequests: options.maxInFlightRequests ?? 8,
    sendTimeoutMs: options.sendTimeoutMs ?? 1_000_000,
    retryBackoffMs: 1,
    maxRetryBackoffMs: 2,
    nowMs: () => nowMs,
    onFenced: (error) => fenced.push(error),
    sendAppend: (_shard, session, events) => {
      const reply = deferred<AppendReply>();
      calls.push({ session: { ...session }, count: events.byteLength / EVENT_BYTES, reply });
      return reply.promise;
    },
  });
  const outcomes: Outcome[] = [];
  const add = (): Outcome => {
    const outcome: Outcome = {};
    outcomes.push(outcome);
    const item: BatchItem = {
      events: new Uint8Array(EVENT_BYTES),
      count: 1,
      acked: (seqs, offset) => void (outcome.seqs = seqs.slice(offset, offset + 1)),
      failed: (error) => void (outcome.code = error.code),
    };
    pipeline.add(item);
    pipeline.closeOpenBatch();
    return outcome;
  };
  const ok = (call: Call, seq: number) => call.reply.resolve({ v: 1, t: 'appended', parts: [{ shard: 0, epoch: 1, runs: [seq, 1] }], outcome: 'new' });
  const fail = (call: Call, code: TidelogError['code'], details: Record<string, unknown> = {}) => call.reply.reject(new TidelogError(code, 'scripted', { details }));
  const numbers = () => calls.map((call) => [call.session.sessionEpoch, call.session.requestSeq]);
  return { pipeline, calls, outcomes, add, ok, fail, numbers, fenced, setNowMs: (ms: number) => void (nowMs = ms) };
}

test('shard-pipeline - keeps at most maxInFlightRequests on the wire, numbered in order', async () => {
  const { pipeline, calls, add, ok } = harness({ maxInFlightRequests: 2 });
  const outcomes = [add(), add(), add(), add()];
  assert.equal(calls.map((call) => call.session.requestSeq), [1, 2]);
  assert.is(pipeline.stats().inFlightRequests, 2);
  assert.is(pipeline.stats().queuedEvents, 2);
  ok(calls[1], 2); // an out-of-order ack frees a slot as well
  await settle();
  assert.equal(calls.map((call) => call.session.requestSeq), [1, 2, 3]);
  ok(calls[0], 1);
  ok(calls[2], 3);
  await settle();
  ok(calls[3], 4);
  await pipeline.whenIdle();
  assert.equal(outcomes.map((outcome) => outcome.seqs), [[1], [2], [3], [4]]);
});

test('shard-pipeline - a definitive rejection leaves a hole the next batches fill once nothing is in flight', async () => {
  const { pipeline, calls, add, ok, fail, numbers } = harness();
  const [first, rejected, third, fourth] = [add(), add(), add(), add()];
  fail(calls[1], 'BAD_REQUEST');
  await settle();
  assert.is(rejected.code, 'BAD_REQUEST');
  fail(calls[2], 'SEQUENCE_GAP'); // 2 never arrived
  fail(calls[3], 'SEQUENCE_GAP');
  await settle();
  assert.is(calls.length, 4, 'nothing is renumbered while request 1 is on the wire');
  ok(calls[0], 1);
  await settle();
  assert.equal(numbers().slice(4), [[10, 2], [10, 3]], 'the batches after the hole take its number');
  ok(calls[4], 2);
  ok(calls[5], 3);
  await pipeline.whenIdle();
  assert.equal([first.seqs, third.seqs, fourth.seqs], [[1], [2], [3]]);
  add();
  assert.equal(numbers()[6], [10, 4], 'and the session goes on from there');
});

test('shard-pipeline - giving up on an ambiguous batch restarts the session: ambiguous ones fail, unsent ones move over', async () => {
  const { calls, add, ok, fail, numbers, setNowMs } = harness({ maxInFlightRequests: 2, sendTimeoutMs: 3000, sessionEpoch: 1 });
  const first = add(); // deadline 3000
  setNowMs(1500);
  const second = add(); // deadline 4500
  const third = add(); // deadline 4500; waits for a slot
  setNowMs(3100);
  fail(calls[0], 'TIMEOUT'); // first: past its deadline, and maybe applied
  await settle();
  assert.is(first.code, 'TIMEOUT');
  assert.is(calls.length, 2, 'nothing new while the second is on the wire');
  fail(calls[1], 'TIMEOUT'); // second: within its deadline, but as ambiguous
  await settle();
  assert.is(second.code, 'TIMEOUT', 'its number cannot be trusted in a new epoch');
  assert.equal(numbers(), [[1, 1], [1, 2]], 'the new epoch (3) is not used before its second has passed');
  setNowMs(4000);
  const fourth = add(); // deadline 7000; its add wakes the pipeline
  await settle();
  assert.equal(numbers(), [[1, 1], [1, 2], [3, 1], [3, 2]], 'the unsent batch opens the new epoch');
  ok(calls[2], 7);
  ok(calls[3], 8);
  await settle();
  assert.equal(third.seqs, [7]);
  assert.equal(fourth.seqs, [8]);
});

test('shard-pipeline - retries after a lost request go out in order, gaps after their predecessor', async () => {
  const { pipeline, calls, add, ok, fail, numbers } = harness({ maxInFlightRequests: 3 });
  const outcomes = [add(), add(), add()];
  fail(calls[1], 'SEQUENCE_GAP');
  fail(calls[2], 'SEQUENCE_GAP');
  await settle();
  assert.is(calls.length, 3, 'the gaps wait for the try of 1 they were sent behind');
  fail(calls[0], 'TIMEOUT');
  await settle();
  assert.equal(numbers(), [[10, 1], [10, 2], [10, 3], [10, 1], [10, 2], [10, 3]], 'resent behind the new try of 1');
  ok(calls[3], 1);
  ok(calls[4], 2);
  ok(calls[5], 3);
  await pipeline.whenIdle();
  assert.equal(outcomes.map((outcome) => outcome.seqs), [[1], [2], [3]]);
  assert.is(pipeline.stats().retries, 3);
});

test('shard-pipeline - an unreadable reply fails its batch DECODE_FAILED and restarts the session', async () => {
  const { pipeline, calls, add, numbers, setNowMs } = harness();
  const first = add();
  calls[0].reply.resolve({ v: 1, t: 'appended', parts: [{ shard: 0, epoch: 1, runs: [1, 5] }], outcome: 'new' });
  await settle();
  assert.is(first.code, 'DECODE_FAILED');
  setNowMs(12_000); // the new epoch (11) is usable once second 11 has passed
  add();
  assert.ok(numbers()[1][0] > 10, 'a new epoch: the first batch may have been applied');
  // The wake-up set for second 12 at clock 0 is 12 real seconds away: close to cancel it.
  pipeline.close(new TidelogError('CLOSED', 'test over'));
});

test('shard-pipeline - PRODUCER_FENCED fails everything and reports it', async () => {
  const { pipeline, calls, add, fail, fenced } = harness({ maxInFlightRequests: 1 });
  const outcomes = [add(), add()];
  fail(calls[0], 'PRODUCER_FENCED');
  await settle();
  assert.equal(outcomes.map((outcome) => outcome.code), ['PRODUCER_FENCED', 'PRODUCER_FENCED']);
  assert.is(fenced.length, 1);
  const late = add();
  assert.is(late.code, 'PRODUCER_FENCED');
  await pipeline.whenIdle();
});

test('shard-pipeline - a gap that says maybeAppliedElsewhere (availability mode) restarts the session and fails the batch in doubt "maybe applied" instead of resending it', async () => {
  for (const maybeElsewhere of [false, true]) {
    const { calls, add, ok, fail, numbers, setNowMs } = harness({ maxInFlightRequests: 2, sessionEpoch: 1 });
    const first = add();
    const second = add();
    ok(calls[0], 1);
    // The second's try timed out (it reached the old leader, cut off since); its retry meets a
    // new leader that lacks earlier requests of the session.
    fail(calls[1], 'TIMEOUT');
    await settle();
    fail(calls[2], 'SEQUENCE_GAP', maybeElsewhere ? { maybeAppliedElsewhere: true } : {});
    await settle();
    assert.equal(first.seqs, [1]);
    setNowMs(5_000);
    const third = add();
    await settle();
    if (maybeElsewhere) {
      assert.is(second.code, 'TIMEOUT', 'its first copy may yet be merged: not sent again');
      assert.equal(numbers().slice(3).map(([epoch, seq]) => [epoch > 1, seq]), [[true, 1]], 'a new epoch starts with the next batch');
    } else {
      assert.is(second.code, undefined, 'a plain gap proves it never applied: it moves to the new epoch');
      assert.equal(numbers().slice(3).map(([epoch, seq]) => [epoch > 1, seq]), [[true, 1], [true, 2]]);
    }
    for (const call of calls.slice(3)) ok(call, 10 + calls.indexOf(call));
    await settle();
    assert.ok(third.seqs !== undefined, 'the session goes on');
  }
});

test('shard-pipeline - new numbers stay within SESSION_WINDOW of the oldest unacknowledged request (a retry of it must not fall below the node\'s window)', async () => {
  const { calls, add, ok, fail, numbers, setNowMs } = harness({ maxInFlightRequests: 8 });
  const outcomes = Array.from({ length: 100 }, () => add());
  // Request 1 keeps being refused (not applied); everything behind it is acknowledged.
  for (let round = 0; round < 30; round++) {
    await settle();
    for (const call of calls.filter((candidate) => !candidate.settled)) {
      call.settled = true;
      if (call.session.requestSeq === 1) fail(call, 'OVERLOADED');
      else ok(call, 1000 + call.session.requestSeq);
    }
    setNowMs(round * 10 + 10);
    // The pipeline's retry wake-up is a real timer (its clock is ours).
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  await settle();
  const highest = Math.max(...numbers().map(([, seq]) => seq));
  assert.ok(highest < 1 + SESSION_WINDOW, `numbers reached ${highest} while request 1 was unacknowledged`);
  assert.ok(calls.filter((call) => call.session.requestSeq === 1).length > 5, 'request 1 was retried throughout');
  assert.is(outcomes[0].seqs, undefined, 'request 1 is still waiting');
});

test.run();
