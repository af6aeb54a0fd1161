import fc from 'fast-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { isTidelogError, TidelogError } from '../../src/errors.ts';
import { encodeSessionNote } from '../../src/node/session-note.ts';
import { SessionStore, type BeginResult, type SessionLimits } from '../../src/node/session-store.ts';
import type { SessionTag } from '../../src/transport/messages.ts';
import { expectCode } from '../support/expect-code.ts';

function tag(producerId: string, requestSeq: number, sessionEpoch = 1): SessionTag {
  return { producerId, sessionEpoch, requestSeq };
}

/** Runs as the WAL would give them: `count` events written from `firstSeq`. */
function runsAt(firstSeq: number, count = 1): number[] {
  return [firstSeq, count];
}

function note(producerId: string, requestSeq: number, runs: number[] = runsAt(requestSeq * 10), sessionEpoch = 1): Uint8Array {
  return encodeSessionNote(tag(producerId, requestSeq, sessionEpoch), runs);
}

function kind(result: BeginResult): string {
  return result.kind;
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  return assert.unreachable('expected a rejection');
}

test('session-store - a new producer appends request 1, and a retry after its note replays the runs', () => {
  const store = new SessionStore();
  assert.is(kind(store.begin(tag('p', 1), 3)), 'append');
  store.applyNote(note('p', 1, [100, 3]));
  assert.equal(store.begin(tag('p', 1), 3), { kind: 'replay', runs: [100, 3] });
  assert.is(kind(store.begin(tag('p', 2), 1)), 'append');
  assert.is(store.size, 1);
});

test('session-store - rejects a gap with SEQUENCE_GAP', () => {
  const store = new SessionStore();
  expectCode(() => store.begin(tag('p', 2)), 'SEQUENCE_GAP');
  store.begin(tag('p', 1));
  store.applyNote(note('p', 1));
  expectCode(() => store.begin(tag('p', 3)), 'SEQUENCE_GAP');
  assert.is(kind(store.begin(tag('p', 2))), 'append');
});

test('session-store - pipelines: N+1 is accepted while N is in flight, N+2 is a gap', () => {
  const store = new SessionStore();
  assert.is(kind(store.begin(tag('p', 1))), 'append');
  assert.is(kind(store.begin(tag('p', 2))), 'append');
  assert.is(kind(store.begin(tag('p', 3))), 'append');
  expectCode(() => store.begin(tag('p', 5)), 'SEQUENCE_GAP');
  assert.is(store.inFlightRequests, 3);
  store.applyNote(note('p', 1));
  store.applyNote(note('p', 2));
  assert.is(kind(store.begin(tag('p', 4))), 'append');
  assert.is(store.inFlightRequests, 2);
});

test('session-store - a retry of an in-flight request waits and gets the runs once durable', async () => {
  const store = new SessionStore();
  store.begin(tag('p', 1), 2);
  const retry = store.begin(tag('p', 1), 2);
  assert.is(retry.kind, 'pending');
  expectCode(() => store.begin(tag('p', 1), 5), 'REQUEST_MISMATCH'); // same requestSeq, other content
  store.applyNote(note('p', 1, [7, 2]));
  assert.equal(await (retry as { promise: Promise<number[]> }).promise, [7, 2]);
  expectCode(() => store.begin(tag('p', 1), 1), 'REQUEST_MISMATCH');
});

test('session-store - a retry whose events differ (same count, other digest) is REQUEST_MISMATCH in flight, answered at durable, noted, and after a snapshot', () => {
  const store = new SessionStore();
  assert.is(kind(store.begin(tag('p', 1), 2, { digest: 111 })), 'append');
  assert.is(kind(store.begin(tag('p', 1), 2, { digest: 111 })), 'pending', 'the same events wait for the first try');
  expectCode(() => store.begin(tag('p', 1), 2, { digest: 222 }), 'REQUEST_MISMATCH');
  // Availability mode: answered once durable, before its note.
  assert.is(kind(store.begin(tag('p', 2), 2, { digest: 333 })), 'append');
  store.markDurable(tag('p', 2), [20, 2]);
  expectCode(() => store.begin(tag('p', 2), 2, { digest: 334 }), 'REQUEST_MISMATCH');
  assert.equal(store.begin(tag('p', 2), 2, { digest: 333 }), { kind: 'replay', runs: [20, 2] });
  store.applyNote(encodeSessionNote(tag('p', 1), [10, 2], 111));
  store.applyNote(encodeSessionNote(tag('p', 2), [20, 2], 333));
  for (const remembered of [store, restored(store)]) {
    expectCode(() => remembered.begin(tag('p', 1), 2, { digest: 222 }), 'REQUEST_MISMATCH');
    assert.equal(remembered.begin(tag('p', 1), 2, { digest: 111 }), { kind: 'replay', runs: [10, 2] });
    assert.equal(remembered.begin(tag('p', 1), 2), { kind: 'replay', runs: [10, 2] }, 'a caller that knows no digest compares the count only');
  }
  // A note written before digests (version 1) is checked by count only.
  store.applyNote(note('p', 3, [30, 1]));
  assert.equal(store.begin(tag('p', 3), 1, { digest: 5 }), { kind: 'replay', runs: [30, 1] });
});

function restored(store: SessionStore): SessionStore {
  const copy = new SessionStore();
  copy.restore(store.encode());
  return copy;
}

test('session-store - abandon rejects the waiters and lets the request be sent again', async () => {
  const store = new SessionStore();
  store.begin(tag('p', 1));
  const retry = store.begin(tag('p', 1)) as { kind: 'pending'; promise: Promise<number[]> };
  const failure = new TidelogError('OVERLOADED', 'queue full');
  store.abandon(tag('p', 1), failure);
  assert.is(await rejection(retry.promise), failure);
  expectCode(() => store.begin(tag('p', 2)), 'SEQUENCE_GAP');
  assert.is(kind(store.begin(tag('p', 1))), 'append');
  store.applyNote(note('p', 1));
  store.abandon(tag('p', 1), failure); // after its note: a no-op
  assert.is(kind(store.begin(tag('p', 1))), 'replay');
});

test('session-store - a request that failed while a later one landed is appended on retry (a hole)', () => {
  const store = new SessionStore();
  store.begin(tag('p', 1));
  store.begin(tag('p', 2));
  store.abandon(tag('p', 1), new Error('write failed'));
  store.applyNote(note('p', 2));
  assert.is(kind(store.begin(tag('p', 1))), 'append');
  store.applyNote(note('p', 1, [40, 1]));
  assert.equal(store.begin(tag('p', 1)), { kind: 'replay', runs: [40, 1] });
  assert.equal(store.begin(tag('p', 2)), { kind: 'replay', runs: [20, 1] });
  assert.is(kind(store.begin(tag('p', 3))), 'append');
});

test('session-store - a lower epoch is PRODUCER_FENCED; a higher one restarts at requestSeq 1', () => {
  const store = new SessionStore();
  store.begin(tag('p', 1, 2));
  store.applyNote(note('p', 1, runsAt(5), 2));
  expectCode(() => store.begin(tag('p', 2, 1)), 'PRODUCER_FENCED');
  expectCode(() => store.begin(tag('p', 2, 3)), 'SEQUENCE_GAP');
  assert.is(kind(store.begin(tag('p', 1, 3))), 'append');
  // Fenced by the in-flight epoch 3 already, before its note lands.
  expectCode(() => store.begin(tag('p', 2, 2)), 'PRODUCER_FENCED');
  store.applyNote(note('p', 1, runsAt(9), 3));
  assert.equal(store.begin(tag('p', 1, 3)), { kind: 'replay', runs: [9, 1] });
  // A late note of the fenced epoch changes nothing.
  const before = store.encode();
  store.applyNote(note('p', 2, runsAt(11), 2));
  assert.equal(store.encode(), before);
});

test('session-store - a new epoch fences retries still waiting on the old one', async () => {
  const store = new SessionStore();
  store.begin(tag('p', 1, 1));
  const retry = store.begin(tag('p', 1, 1)) as { kind: 'pending'; promise: Promise<number[]> };
  assert.is(kind(store.begin(tag('p', 1, 2))), 'append');
  const error = await rejection(retry.promise);
  assert.ok(isTidelogError(error, 'PRODUCER_FENCED'));
  // The old append still lands; its note comes first in the log and the new epoch's after.
  store.applyNote(note('p', 1, runsAt(1), 1));
  store.applyNote(note('p', 1, runsAt(2), 2));
  assert.equal(store.begin(tag('p', 1, 2)), { kind: 'replay', runs: [2, 1] });
  expectCode(() => store.begin(tag('p', 1, 1)), 'PRODUCER_FENCED');
});

test('session-store - remembers maxRunsPerSession requests; older retries are answered applied', () => {
  const store = new SessionStore({ maxRunsPerSession: 4 });
  for (let seq = 1; seq <= 10; seq++) {
    store.begin(tag('p', seq));
    store.applyNote(note('p', seq));
  }
  assert.is(kind(store.begin(tag('p', 6))), 'applied');
  assert.is(kind(store.begin(tag('p', 1))), 'applied');
  for (let seq = 7; seq <= 10; seq++) assert.equal(store.begin(tag('p', seq)), { kind: 'replay', runs: runsAt(seq * 10) });
  assert.is(kind(store.begin(tag('p', 11))), 'append');
  assert.is(store.runCount, 4);
});

test('session-store - bounds in-flight requests per producer and waiters per request with OVERLOADED', () => {
  const store = new SessionStore({ maxRunsPerSession: 3, maxWaitersPerRequest: 2 });
  for (let seq = 1; seq <= 3; seq++) store.begin(tag('p', seq));
  expectCode(() => store.begin(tag('p', 4)), 'OVERLOADED');
  const waiters = [store.begin(tag('p', 1)), store.begin(tag('p', 1))];
  expectCode(() => store.begin(tag('p', 1)), 'OVERLOADED');
  store.failInFlight(new TidelogError('CLOSED', 'closing'));
  for (const waiter of waiters) void (waiter as { promise: Promise<number[]> }).promise.catch(() => undefined);
});

test('session-store - failInFlight rejects every waiter with the lane error', async () => {
  const store = new SessionStore();
  store.begin(tag('a', 1));
  store.begin(tag('b', 1));
  const waiters = [store.begin(tag('a', 1)), store.begin(tag('b', 1))] as Array<{ promise: Promise<number[]> }>;
  const failure = new TidelogError('FSYNC_FAILED', 'EIO');
  store.failInFlight(failure);
  for (const waiter of waiters) assert.is(await rejection(waiter.promise), failure);
  assert.is(store.inFlightRequests, 0);
  // The requests never became durable: the producers may send them again.
  assert.is(kind(store.begin(tag('a', 1))), 'append');
});

test('session-store - forgets the least recently noted session past maxSessions', () => {
  const store = new SessionStore({ maxSessions: 3 });
  for (const producer of ['p1', 'p2', 'p3']) store.applyNote(note(producer, 1));
  store.applyNote(note('p1', 2)); // p1 is now the most recent
  store.applyNote(note('p4', 1));
  assert.is(store.size, 3);
  assert.is(store.evictedSessions, 1);
  assert.equal(store.begin(tag('p1', 2)), { kind: 'replay', runs: runsAt(20) });
  assert.is(kind(store.begin(tag('p3', 1))), 'replay');
  // p2 was forgotten: its retry is appended again (best-effort once evicted).
  assert.is(kind(store.begin(tag('p2', 1))), 'append');
});

test('session-store - a note delivered again refreshes nothing: eviction order is the log order', () => {
  const store = new SessionStore({ maxSessions: 2 });
  store.applyNote(note('p1', 1));
  store.applyNote(note('p2', 1));
  const before = store.encode();
  store.applyNote(note('p1', 1));
  assert.equal(store.encode(), before);
  store.applyNote(note('p3', 1));
  assert.is(kind(store.begin(tag('p1', 1))), 'append', 'p1 was still the least recently noted');
  assert.is(kind(store.begin(tag('p2', 1))), 'replay');
});

test('session-store - an unknown producer past requestSeq 1 is a gap until sessions were evicted', () => {
  const store = new SessionStore({ maxSessions: 1 });
  expectCode(() => store.begin(tag('q', 5)), 'SEQUENCE_GAP');
  store.applyNote(note('a', 1));
  store.applyNote(note('b', 1));
  assert.is(store.evictedSessions, 1);
  assert.is(kind(store.begin(tag('q', 5))), 'append');
  assert.is(kind(store.begin(tag('q', 6))), 'append');
  expectCode(() => store.begin(tag('q', 8)), 'SEQUENCE_GAP');
  store.applyNote(note('q', 5));
  // Below the first request it saw, the store knows nothing: a retry is appended (never
  // answered 'applied', which would lose a request that did not land).
  assert.is(kind(store.begin(tag('q', 4))), 'append');
});

test('session-store - maxRememberedRuns bounds runs across sessions, oldest session first', () => {
  const store = new SessionStore({ maxRememberedRuns: 5 });
  for (let seq = 1; seq <= 3; seq++) store.applyNote(note('old', seq));
  for (let seq = 1; seq <= 3; seq++) store.applyNote(note('new', seq, [seq * 100, 1, 0, 2]));
  assert.ok(store.runCount <= 5, `runCount ${store.runCount}`);
  assert.is(kind(store.begin(tag('old', 3))), 'applied');
  assert.is(kind(store.begin(tag('new', 3))), 'replay');
  assert.is(store.size, 2);
});

test('session-store - BAD_REQUEST for a malformed tag, before anything changes', () => {
  const store = new SessionStore();
  const bad: SessionTag[] = [tag('', 1), tag('x'.repeat(65), 1), tag('p', 0), tag('p', 1.5), tag('p', 1, -1), tag('p', 1, 2 ** 32)];
  for (const value of bad) expectCode(() => store.begin(value), 'BAD_REQUEST');
  assert.is(store.inFlightRequests, 0);
  expectCode(() => new SessionStore({ maxSessions: 0 }), 'BAD_REQUEST');
});

// ---- properties ----

interface NoteHistory {
  notes: Uint8Array[];
  limits: SessionLimits;
}

/** Notes as a log holds them: per producer ascending requestSeqs (with holes), epochs rising. */
const noteHistory: fc.Arbitrary<NoteHistory> = fc
  .record({
    steps: fc.array(
      fc.record({ producer: fc.integer({ min: 0, max: 5 }), skip: fc.nat(2), isRestart: fc.boolean(), runs: fc.integer({ min: 1, max: 3 }) }),
      { maxLength: 80 },
    ),
    maxSessions: fc.integer({ min: 1, max: 6 }),
    maxRunsPerSession: fc.integer({ min: 1, max: 8 }),
    maxRememberedRuns: fc.integer({ min: 1, max: 40 }),
  })
  .map(({ steps, maxSessions, maxRunsPerSession, maxRememberedRuns }) => {
    const next = new Map<number, { epoch: number; seq: number }>();
    let seq = 1;
    const notes = steps.map((step) => {
      let state = next.get(step.producer) ?? { epoch: 1, seq: 1 };
      if (step.isRestart && state.seq > 1 && step.skip === 0) state = { epoch: state.epoch + 1, seq: 1 };
      const requestSeq = state.seq + (state.seq > 1 ? step.skip : 0);
      next.set(step.producer, { epoch: state.epoch, seq: requestSeq + 1 });
      const runs: number[] = [];
      for (let run = 0; run < step.runs; run++) {
        runs.push(run % 2 === 0 ? seq : 0, 1);
        if (run % 2 === 0) seq++;
      }
      return encodeSessionNote(tag(`producer-${step.producer}`, requestSeq, state.epoch), runs);
    });
    return { notes, limits: { maxSessions, maxRunsPerSession, maxRememberedRuns } };
  });

function storeOf(history: NoteHistory, notes: readonly Uint8Array[] = history.notes): SessionStore {
  const store = new SessionStore(history.limits);
  for (const bytes of notes) store.applyNote(bytes);
  return store;
}

test('session-store - applyNote is idempotent: a note delivered again leaves identical bytes', () => {
  fc.assert(
    fc.property(noteHistory, (history) => {
      const once = storeOf(history);
      const twice = storeOf(history, history.notes.flatMap((bytes) => [bytes, bytes]));
      assert.equal(twice.encode(), once.encode());
    }),
    { seed: 41, numRuns: 300 },
  );
});

test('session-store - every bound holds after any note history', () => {
  fc.assert(
    fc.property(noteHistory, (history) => {
      const store = new SessionStore(history.limits);
      for (const bytes of history.notes) {
        store.applyNote(bytes);
        assert.ok(store.size <= (history.limits.maxSessions as number));
        assert.ok(store.runCount <= (history.limits.maxRememberedRuns as number));
      }
    }),
    { seed: 42, numRuns: 300 },
  );
});

test('session-store - snapshot round-trips to identical bytes and identical answers', () => {
  fc.assert(
    fc.property(noteHistory, (history) => {
      const split = Math.floor(history.notes.length / 2);
      const original = storeOf(history, history.notes.slice(0, split));
      const restored = new SessionStore(history.limits);
      restored.restore(original.encode());
      assert.equal(restored.encode(), original.encode());
      assert.is(restored.size, original.size);
      assert.is(restored.runCount, original.runCount);
      // The rest of the log on top of either gives the same store.
      for (const bytes of history.notes.slice(split)) {
        original.applyNote(bytes);
        restored.applyNote(bytes);
      }
      assert.equal(restored.encode(), original.encode());
      for (let producer = 0; producer <= 5; producer++) {
        for (let seq = 1; seq <= 12; seq++) {
          for (const epoch of [1, 2, 3]) {
            const probe = tag(`producer-${producer}`, seq, epoch);
            assert.equal(outcome(() => restored.begin(probe)), outcome(() => original.begin(probe)));
            restored.failInFlight(new Error('probe'));
            original.failInFlight(new Error('probe'));
          }
        }
      }
    }),
    { seed: 43, numRuns: 150 },
  );
});

function outcome(run: () => BeginResult): unknown {
  try {
    const result = run();
    return result.kind === 'pending' ? 'pending' : result;
  } catch (error) {
    return (error as { code?: string }).code ?? String(error);
  }
}

test('session-store - an empty snapshot restores an empty store', () => {
  const store = new SessionStore();
  store.applyNote(note('p', 1));
  store.restore(new Uint8Array(0));
  assert.is(store.size, 0);
  assert.equal(store.encode(), new SessionStore().encode());
});

test('session-store - restore with lower limits cuts the snapshot as the limits would have', () => {
  const big = new SessionStore();
  for (const producer of ['a', 'b', 'c']) for (let seq = 1; seq <= 5; seq++) big.applyNote(note(producer, seq));
  const small = new SessionStore({ maxSessions: 2, maxRunsPerSession: 2 });
  small.restore(big.encode());
  assert.is(small.size, 2);
  assert.is(small.runCount, 4);
  assert.is(kind(small.begin(tag('c', 3))), 'applied');
  assert.is(kind(small.begin(tag('c', 4))), 'replay');
  assert.is(kind(small.begin(tag('a', 1))), 'append'); // a was the least recently noted: evicted
});

// Which bytes are damaged is session-snapshot.test.ts's subject; here: a failed restore changes nothing.
test('session-store - restore rejects a damaged snapshot with DECODE_FAILED and keeps its state', async () => {
  const store = new SessionStore();
  for (const producer of ['a', 'bb']) for (let seq = 1; seq <= 3; seq++) store.applyNote(note(producer, seq, [seq * 10, 2, 0, 1]));
  const bytes = store.encode();
  const target = new SessionStore();
  target.applyNote(note('keep', 1));
  target.begin(tag('keep', 2));
  const retry = target.begin(tag('keep', 2)) as { kind: 'pending'; promise: Promise<number[]> };
  const before = target.encode();
  const flipped = bytes.slice();
  flipped[0] ^= 0xff;
  for (const damaged of [bytes.subarray(0, bytes.byteLength - 1), flipped]) expectCode(() => target.restore(damaged), 'DECODE_FAILED');
  assert.equal(target.encode(), before);
  assert.is(target.inFlightRequests, 1, 'requests in flight survive a refused restore');
  target.applyNote(note('keep', 2, [7, 1]));
  assert.equal(await retry.promise, [7, 1]);
});

test('session-store - pipelined producers with failures and retries: replies match what was written', async () => {
  const window = 8;
  await fc.assert(
    fc.asyncProperty(fc.array(fc.integer({ min: 0, max: 99 }), { minLength: 1, maxLength: 150 }), async (actions) => {
      const store = new SessionStore({ maxRunsPerSession: window });
      const producers = ['a', 'b'];
      /** What each producer knows: the next new requestSeq and each request's fate. */
      const sent = producers.map(() => ({ next: 1, fate: new Map<number, 'flight' | 'failed' | number[]>() }));
      const seqsWith = (producer: number, wanted: (fate: 'flight' | 'failed' | number[]) => boolean): number[] =>
        [...sent[producer].fate].filter(([, fate]) => wanted(fate)).map(([requestSeq]) => requestSeq);
      /** The WAL: appends finish in order, each either lands (its note) or fails (abandon). */
      const wal: Array<{ producer: number; requestSeq: number }> = [];
      const waits: Array<{ promise: Promise<number[]>; producer: number; requestSeq: number; isFailed: boolean }> = [];
      let seq = 1;
      for (const action of actions) {
        const producer = action % 2;
        const state = sent[producer];
        const name = producers[producer];
        const inFlight = seqsWith(producer, (fate) => fate === 'flight');
        const landed = seqsWith(producer, Array.isArray).sort((x, y) => y - x);
        if (action < 40) {
          // A new request: a gap when the one before it failed and nothing after it is alive.
          const outcomeOf = outcome(() => store.begin(tag(name, state.next)));
          const highestAlive = Math.max(0, ...inFlight, ...landed);
          if (state.next > highestAlive + 1) {
            assert.is(outcomeOf, 'SEQUENCE_GAP');
          } else if (inFlight.length >= window) {
            assert.is(outcomeOf, 'OVERLOADED');
          } else {
            assert.equal(outcomeOf, { kind: 'append' });
            state.fate.set(state.next, 'flight');
            wal.push({ producer, requestSeq: state.next });
            state.next++;
          }
        } else if (action < 70) {
          // A retry of an earlier request.
          if (state.next === 1) continue;
          const requestSeq = 1 + (action % (state.next - 1));
          const fate = state.fate.get(requestSeq);
          const newerLanded = landed.filter((other) => other > requestSeq).length;
          let result: BeginResult;
          try {
            result = store.begin(tag(name, requestSeq));
          } catch (error) {
            assert.ok(isTidelogError(error, 'OVERLOADED'), String(error));
            assert.ok(fate === 'flight' || (fate === 'failed' && inFlight.length >= window));
            continue;
          }
          if (fate === 'flight') {
            assert.is(result.kind, 'pending');
            waits.push({ promise: (result as { promise: Promise<number[]> }).promise, producer, requestSeq, isFailed: false });
          } else if (fate === 'failed') {
            // Exact while the window still holds it; best-effort (applied) beyond.
            if (newerLanded < window) assert.is(result.kind, 'append', `failed request ${requestSeq} is appended on retry`);
            else assert.ok(result.kind === 'append' || result.kind === 'applied');
            if (result.kind === 'append') {
              state.fate.set(requestSeq, 'flight');
              wal.push({ producer, requestSeq });
            }
          } else if (newerLanded < window) {
            assert.equal(result, { kind: 'replay', runs: fate });
          } else {
            assert.is(result.kind, 'applied');
          }
        } else if (wal.length > 0) {
          const append = wal.shift() as { producer: number; requestSeq: number };
          const request = tag(producers[append.producer], append.requestSeq);
          if (action < 90) {
            const runs = [seq++, 1];
            store.applyNote(encodeSessionNote(request, runs));
            sent[append.producer].fate.set(append.requestSeq, runs);
          } else {
            store.abandon(request, new Error('append failed'));
            sent[append.producer].fate.set(append.requestSeq, 'failed');
            for (const wait of waits) {
              if (wait.producer === append.producer && wait.requestSeq === append.requestSeq) wait.isFailed = true;
            }
          }
        }
      }
      store.failInFlight(new Error('end'));
      for (const wait of waits) {
        const fate = sent[wait.producer].fate.get(wait.requestSeq);
        const isLanded = !wait.isFailed && Array.isArray(fate);
        let runs: number[] | undefined;
        try {
          runs = await wait.promise;
        } catch {
          assert.not.ok(isLanded, 'a waiter rejects only when the attempt it waited for never landed');
          continue;
        }
        assert.ok(isLanded, 'a waiter resolves only when the attempt it waited for landed');
        assert.equal(runs, fate);
      }
    }),
    { seed: 44, numRuns: 200 },
  );
});

test('session-store - availability mode: a request answered at durable replays from memory, stops counting as in flight, and ends at its note or a cut', async () => {
  const store = new SessionStore({ maxRunsPerSession: 4 });
  assert.is(kind(store.begin(tag('p', 1))), 'append');
  const waiting = store.begin(tag('p', 1));
  assert.is(waiting.kind, 'pending');
  store.markDurable(tag('p', 1), runsAt(10, 2));
  assert.equal(await (waiting as { promise: Promise<number[]> }).promise, [10, 2], 'a waiting retry is answered at durable');
  assert.equal(store.begin(tag('p', 1)), { kind: 'replay', runs: [10, 2] });
  // Durable-answered requests leave the in-flight bound: a session goes on while nothing commits.
  for (let requestSeq = 2; requestSeq <= 20; requestSeq++) {
    assert.is(kind(store.begin(tag('p', requestSeq))), 'append', `request ${requestSeq}`);
    store.markDurable(tag('p', requestSeq), runsAt(requestSeq * 10));
  }
  assert.is(store.inFlightRequests, 0);
  expectCode(() => store.begin(tag('p', 22)), 'SEQUENCE_GAP');
  // Its note commits: the durable part takes over.
  store.applyNote(note('p', 1, [10, 2]));
  assert.equal(store.begin(tag('p', 1)), { kind: 'replay', runs: [10, 2] });
  // A cut: what was only durable is forgotten, so a retry appends again.
  store.failInFlight(new TidelogError('TRUNCATED', 'cut'));
  assert.is(kind(store.begin(tag('p', 2))), 'append');
});

test.run();
