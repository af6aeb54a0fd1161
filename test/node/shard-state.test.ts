import fc from 'fast-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ManualClock } from '../../src/clock.ts';
import { defaultSignalSchema } from '../../src/crdt/index.ts';
import { isTidelogError } from '../../src/errors.ts';
import { EVENT_BYTES, encodeEvents, type SignalEvent } from '../../src/event.ts';
import { encodeSessionNote } from '../../src/node/session-note.ts';
import { ShardState } from '../../src/node/shard-state.ts';
import { seqsToRuns } from '../../src/transport/ack-runs.ts';
import { Wal, type StoredBatch } from '../../src/wal/index.ts';
import { expectCode } from '../support/expect-code.ts';
import { withTempDir } from '../support/wal-fixtures.ts';

const schema = defaultSignalSchema();
const SHARD = 3;
const START_NS = 1_700_000_000_000_000_000n;
const SECOND_NS = 1_000_000_000n;
const SIGNAL_TYPES = [1, 2, 3, 4, 5, 200, 201];

function state(options: { shard?: number } = {}): ShardState {
  return new ShardState({ shard: options.shard ?? SHARD, schema, clock: new ManualClock() });
}

function batch(firstSeq: number, events: readonly SignalEvent[], options: Partial<StoredBatch> = {}): StoredBatch {
  return {
    firstSeq,
    count: events.length,
    events: encodeEvents(events),
    timestampNs: START_NS + BigInt(firstSeq) * SECOND_NS,
    leaderEpoch: 1,
    notes: [],
    ...options,
  };
}

function view(entityId: bigint, signalType: number, weight = 1, offsetSeconds = 0n): SignalEvent {
  return { entityId, signalType, weight, timestampNs: START_NS + offsetSeconds * SECOND_NS };
}

/** A log: events cut into the leader's batches, and producer calls each noted with its last event. */
interface Log {
  packed: Uint8Array;
  /** Leader batches: [start, end) event indexes, seal time, epoch. */
  batches: Array<{ start: number; end: number; timestampNs: bigint; leaderEpoch: number }>;
  /** Producer calls: [start, end) event indexes, requestSeq. */
  calls: Array<{ start: number; end: number; requestSeq: number }>;
}

const logArbitrary: fc.Arbitrary<Log> = fc
  .record({
    events: fc.array(
      fc.record({
        entity: fc.integer({ min: 0, max: 12 }),
        isBig: fc.boolean(),
        type: fc.constantFrom(...SIGNAL_TYPES),
        weight: fc.constantFrom(1, 0.5, 2, -1, 0, 3.25),
        ageSeconds: fc.integer({ min: 0, max: 100_000 }),
      }),
      { minLength: 1, maxLength: 120 },
    ),
    batchCuts: fc.array(fc.nat(), { maxLength: 20 }),
    callCuts: fc.array(fc.nat(), { maxLength: 20 }),
    sealGapsSeconds: fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 21, maxLength: 21 }),
    epochBump: fc.nat(20),
  })
  .map(({ events, batchCuts, callCuts, sealGapsSeconds, epochBump }) => {
    const packed = encodeEvents(
      events.map((event) => ({
        entityId: BigInt(event.entity) + (event.isBig ? 2n ** 60n : 0n),
        signalType: event.type,
        weight: event.weight,
        timestampNs: START_NS - BigInt(event.ageSeconds) * SECOND_NS,
      })),
    );
    const cut = (cuts: number[]): number[] => [...new Set([0, ...cuts.map((value) => value % events.length), events.length])].sort((a, b) => a - b);
    const batchEdges = cut(batchCuts);
    let sealNs = START_NS;
    const batches = batchEdges.slice(1).map((end, index) => {
      // Equal seal times happen (a fast leader): the seq still orders the stamps.
      sealNs += BigInt(sealGapsSeconds[index]) * SECOND_NS;
      return { start: batchEdges[index], end, timestampNs: sealNs, leaderEpoch: index >= epochBump ? 2 : 1 };
    });
    const callEdges = cut(callCuts);
    const calls = callEdges.slice(1).map((end, index) => ({ start: callEdges[index], end, requestSeq: index + 1 }));
    return { packed, batches, calls };
  });

/** The log's batches as a WAL stores them, each leader batch further split at `splits`. */
function storedBatches(log: Log, splits: readonly number[] = []): StoredBatch[] {
  const stored: StoredBatch[] = [];
  for (const leader of log.batches) {
    const edges = [...new Set([leader.start, ...splits.filter((at) => at > leader.start && at < leader.end), leader.end])].sort((a, b) => a - b);
    for (let index = 0; index + 1 < edges.length; index++) {
      const [start, end] = [edges[index], edges[index + 1]];
      const notes = log.calls
        .filter((call) => call.end - 1 >= start && call.end - 1 < end)
        .map((call) => encodeSessionNote({ producerId: 'producer', sessionEpoch: 1, requestSeq: call.requestSeq }, [call.start + 1, call.end - call.start]));
      stored.push({
        firstSeq: start + 1,
        count: end - start,
        events: log.packed.subarray(start * EVENT_BYTES, end * EVENT_BYTES),
        timestampNs: leader.timestampNs,
        leaderEpoch: leader.leaderEpoch,
        notes,
      });
    }
  }
  return stored;
}

test('shard-state - replicas fed the same log in different batch cuts converge to identical snapshot bytes', () => {
  fc.assert(
    fc.property(logArbitrary, fc.array(fc.nat(120), { maxLength: 30 }), (log, splits) => {
      const whole = state();
      for (const stored of storedBatches(log)) whole.apply(stored);
      const trimmed = state();
      for (const stored of storedBatches(log, splits)) trimmed.apply(stored);
      assert.equal(trimmed.snapshot(), whole.snapshot());
      assert.is(trimmed.appliedSeq, log.packed.byteLength / EVENT_BYTES);
      assert.ok(trimmed.crdt.equals(whole.crdt));
    }),
    { seed: 51, numRuns: 150 },
  );
});

test('shard-state - restore(snapshot) and then the rest equals applying everything', () => {
  fc.assert(
    fc.property(logArbitrary, fc.nat(), (log, cutAt) => {
      const batches = storedBatches(log);
      const everything = state();
      for (const stored of batches) everything.apply(stored);
      const cut = cutAt % (batches.length + 1);
      const before = state();
      for (const stored of batches.slice(0, cut)) before.apply(stored);
      const resumed = state();
      resumed.restore(before.snapshot(), before.appliedSeq);
      assert.equal(resumed.snapshot(), before.snapshot());
      for (const stored of batches.slice(cut)) resumed.apply(stored);
      assert.equal(resumed.snapshot(), everything.snapshot());
      assert.equal(resumed.query(5n, undefined, START_NS), everything.query(5n, undefined, START_NS));
    }),
    { seed: 52, numRuns: 150 },
  );
});

test('shard-state - a batch applied again over its snapshot changes nothing', () => {
  const shard = state();
  const first = batch(1, [view(1n, 1), view(2n, 200)], {
    notes: [encodeSessionNote({ producerId: 'p', sessionEpoch: 1, requestSeq: 1 }, [1, 2])],
  });
  shard.apply(first);
  const snapshot = shard.snapshot();
  shard.apply(first);
  assert.equal(shard.snapshot(), snapshot);
  assert.is(shard.appliedSeq, 2);
  // Not even a session evicted since comes back.
  const small = new ShardState({ shard: SHARD, schema, sessions: { maxSessions: 1 } });
  small.apply(first);
  small.apply(batch(3, [view(1n, 1)], { notes: [encodeSessionNote({ producerId: 'q', sessionEpoch: 1, requestSeq: 1 }, [3, 1])] }));
  const evicted = small.snapshot();
  small.apply(first);
  assert.equal(small.snapshot(), evicted);
});

test('shard-state - notes feed the session store: a retry after durability replays the seqs', () => {
  const shard = state();
  assert.is(shard.sessions.begin({ producerId: 'p', sessionEpoch: 1, requestSeq: 1 }, 2).kind, 'append');
  shard.apply(batch(1, [view(1n, 1), view(1n, 2)], { notes: [encodeSessionNote({ producerId: 'p', sessionEpoch: 1, requestSeq: 1 }, [1, 2])] }));
  assert.equal(shard.sessions.begin({ producerId: 'p', sessionEpoch: 1, requestSeq: 1 }, 2), { kind: 'replay', runs: [1, 2] });
  assert.is(shard.sessions.size, 1);
});

test('shard-state - query answers per signal type like StateReply.signals', () => {
  const shard = state();
  shard.apply(batch(1, [view(7n, 1, 2, -10n), view(7n, 1, 0.5, -5n), view(7n, 3, 1, -1n), view(8n, 1)]));
  const signals = shard.query(7n, undefined, START_NS);
  assert.equal(
    signals.map((signal) => signal.signalType),
    SIGNAL_TYPES,
  );
  const viewSignal = signals[0];
  assert.is(viewSignal.name, 'view');
  assert.is(viewSignal.count, 2);
  assert.is(viewSignal.total, 2.5);
  assert.is(viewSignal.isHidden, false);
  assert.is(viewSignal.lastUpdateNs, START_NS - 5n * SECOND_NS);
  assert.ok(viewSignal.score > 2.49 && viewSignal.score < 2.5);
  assert.is(signals[2].count, 1);
  assert.is(signals[1].count, 0);
  assert.equal(
    shard.query(7n, [3, 1], START_NS).map((signal) => signal.name),
    ['view', 'like'],
  );
  expectCode(() => shard.query(7n, [99]), 'UNKNOWN_SIGNAL_TYPE');
  // A hide sets isHidden on every signal of the entity; an unhide stamped later clears it.
  shard.apply(batch(5, [view(7n, 200)]));
  const hidden = shard.query(7n, undefined, START_NS);
  assert.ok(hidden.every((signal) => signal.isHidden));
  assert.is(hidden.find((signal) => signal.signalType === 200)?.lastUpdateNs, START_NS + 5n * SECOND_NS);
  shard.apply(batch(6, [view(7n, 201)]));
  assert.ok(shard.query(7n, undefined, START_NS).every((signal) => !signal.isHidden));
});

test('shard-state - within one batch a later unhide beats an earlier hide (stamps follow seqs)', () => {
  const shard = state();
  shard.apply(batch(1, [view(9n, 200), view(9n, 201)], { timestampNs: START_NS }));
  assert.is(shard.query(9n, [1], START_NS)[0].isHidden, false);
  shard.apply(batch(3, [view(9n, 201), view(9n, 200)], { timestampNs: START_NS }));
  assert.is(shard.query(9n, [1], START_NS)[0].isHidden, true);
});

test('shard-state - checkSignalTypes rejects unknown types and unfoldable weights, naming the event', () => {
  const shard = state();
  shard.checkSignalTypes(encodeEvents([view(1n, 1), view(2n, 200)]));
  for (const [events, code, index] of [
    [[view(1n, 1), view(1n, 77)], 'UNKNOWN_SIGNAL_TYPE', 1],
    [[view(1n, 0)], 'UNKNOWN_SIGNAL_TYPE', 0],
    [[view(1n, 1), view(1n, 2), view(1n, 1, 2e9)], 'BAD_REQUEST', 2],
  ] as const) {
    try {
      shard.checkSignalTypes(encodeEvents(events));
      assert.unreachable(`expected ${code}`);
    } catch (error) {
      assert.ok(isTidelogError(error, code), String(error));
      assert.is(error.context.index, index);
    }
  }
  expectCode(() => shard.checkSignalTypes(new Uint8Array(EVENT_BYTES - 1)), 'BAD_REQUEST');
});

test('shard-state - events the schema does not know are skipped and counted, never thrown', () => {
  const shard = state();
  shard.apply(batch(1, [view(1n, 1), view(1n, 77), view(1n, 1, 2e9), view(1n, 1)]));
  shard.apply(batch(5, [view(1n, 99)]));
  shard.apply(batch(6, [view(1n, 1)]));
  assert.is(shard.skippedEvents, 3);
  assert.is(shard.appliedSeq, 6);
  assert.is(shard.query(1n, [1], START_NS)[0].count, 3);
  assert.is(shard.crdt.appliedSeq(shard.origin), 6);
  // The skips are part of the state's seq space, so a restored replica continues cleanly.
  const restored = state();
  restored.restore(shard.snapshot(), 6);
  restored.apply(batch(7, [view(1n, 1)]));
  shard.apply(batch(7, [view(1n, 1)]));
  assert.equal(restored.snapshot(), shard.snapshot());
});

test('shard-state - a damaged note is counted and skipped; the batch still applies', () => {
  const shard = state();
  const good = encodeSessionNote({ producerId: 'p', sessionEpoch: 1, requestSeq: 1 }, [1, 1]);
  shard.apply(batch(1, [view(1n, 1)], { notes: [good.subarray(0, good.byteLength - 1), good] }));
  assert.is(shard.rejectedNotes, 1);
  assert.is(shard.sessions.size, 1);
  assert.is(shard.appliedSeq, 1);
});

test('shard-state - stamps stay valid across the 2^32 wrap of the logical counter, whatever the cut', () => {
  const firstSeq = 2 ** 32 - 2;
  const events = [view(1n, 200), view(1n, 201), view(1n, 1), view(1n, 200), view(1n, 1)];
  const whole = state();
  whole.restore(new Uint8Array(0), firstSeq - 1);
  whole.apply(batch(firstSeq, events, { timestampNs: START_NS }));
  const cut = state();
  cut.restore(new Uint8Array(0), firstSeq - 1);
  cut.apply(batch(firstSeq, events.slice(0, 3), { timestampNs: START_NS }));
  cut.apply(batch(firstSeq + 3, events.slice(3), { timestampNs: START_NS }));
  assert.equal(cut.snapshot(), whole.snapshot());
  assert.is(whole.appliedSeq, firstSeq + 4);
  assert.is(whole.query(1n, [1], START_NS)[0].count, 2);
});

test('shard-state - onBatch sees every applied batch', () => {
  const shard = state();
  const seen: number[] = [];
  shard.onBatch = (stored) => seen.push(stored.firstSeq);
  shard.apply(batch(1, [view(1n, 1)]));
  shard.apply(batch(2, [view(1n, 1), view(2n, 1)]));
  assert.equal(seen, [1, 2]);
});

test('shard-state - a batch beyond a gap is a broken invariant, not a silent skip', () => {
  const shard = state();
  shard.apply(batch(1, [view(1n, 1)]));
  assert.throws(() => shard.apply(batch(3, [view(1n, 1)])), /invariant/);
});

test('shard-state - restore rejects snapshots of another shard, another seq or damaged bytes', () => {
  const source = state();
  source.apply(batch(1, [view(1n, 1), view(2n, 3)], { notes: [encodeSessionNote({ producerId: 'p', sessionEpoch: 1, requestSeq: 1 }, [1, 2])] }));
  const bytes = source.snapshot();
  expectCode(() => state({ shard: SHARD + 1 }).restore(bytes, 2), 'DECODE_FAILED');
  expectCode(() => state().restore(bytes, 3), 'DECODE_FAILED');
  for (const length of [1, 27, 28, bytes.byteLength - 1]) expectCode(() => state().restore(bytes.subarray(0, length), 2), 'DECODE_FAILED');
  const badMagic = bytes.slice();
  badMagic[0] ^= 1;
  expectCode(() => state().restore(badMagic, 2), 'DECODE_FAILED');
  const badVersion = bytes.slice();
  badVersion[4] = 9;
  expectCode(() => state().restore(badVersion, 2), 'DECODE_FAILED');
  const target = state();
  target.restore(bytes, 2);
  assert.equal(target.snapshot(), bytes);
});

test('shard-state - an empty snapshot at seq n starts empty and folds from n + 1', () => {
  const shard = state();
  shard.apply(batch(1, [view(1n, 1)]));
  shard.restore(new Uint8Array(0), 10);
  assert.is(shard.appliedSeq, 10);
  assert.is(shard.entityCount, 0);
  shard.apply(batch(11, [view(4n, 1)]));
  assert.is(shard.query(4n, [1], START_NS)[0].count, 1);
  assert.is(shard.entityCount, 1);
});

test('shard-state - as a WAL state machine: a reopened WAL rebuilds the same state and sessions', async () => {
  await withTempDir(async (dir) => {
    const options = { dir, shard: SHARD, fsync: 'off' as const, segmentBytes: 2048, batchMaxEvents: 8, batchLingerMs: 0, dedupWindowMs: 60_000 };
    const live = state();
    const { wal } = await Wal.open({ ...options, stateMachine: live });
    const calls: SignalEvent[][] = [];
    for (let round = 0; round < 30; round++) {
      const events = Array.from({ length: 1 + (round % 5) }, (_, index) =>
        view(BigInt((round * 7 + index) % 11), SIGNAL_TYPES[(round + index) % SIGNAL_TYPES.length], 1, BigInt(round)),
      );
      calls.push(events);
    }
    calls.push(calls[calls.length - 1]); // all duplicates: its note rides a notes-only batch
    const acks: number[][] = [];
    for (const [index, events] of calls.entries()) {
      const session = { producerId: 'p', sessionEpoch: 1, requestSeq: index + 1 };
      assert.is(live.sessions.begin(session, events.length).kind, 'append');
      const seqs = await wal.appendMany(events, { note: (assigned) => encodeSessionNote(session, seqsToRuns(assigned)) });
      acks.push(seqsToRuns(seqs));
    }
    assert.equal(acks[acks.length - 1], [0, calls[calls.length - 1].length]);
    assert.ok(wal.segments().length > 2, 'the log spans several segments (restores from a head snapshot)');
    await wal.close();
    const recovered = state();
    const reopened = await Wal.open({ ...options, stateMachine: recovered });
    await reopened.wal.close();
    assert.is(recovered.appliedSeq, live.appliedSeq);
    assert.ok(recovered.crdt.equals(live.crdt));
    // Seal times are the WAL's clock, the same on both sides, so even the stamps agree.
    assert.equal(recovered.snapshot(), live.snapshot());
    for (const [index, runs] of acks.entries()) {
      const session = { producerId: 'p', sessionEpoch: 1, requestSeq: index + 1 };
      assert.equal(recovered.sessions.begin(session), { kind: 'replay', runs });
    }
  });
});

test('shard-state - a snapshot streamed while folding goes on describes the state at its start; restore takes any split', () => {
  const shard = state();
  const events = (from: number, count: number): SignalEvent[] =>
    Array.from({ length: count }, (_, index) => view(BigInt(from + index), 1 + ((from + index) % 2), 1, BigInt(index % 50)));
  shard.apply(batch(1, events(1, 5000)));
  const atStart = state();
  atStart.restore(shard.snapshot(), 5000);
  const stream = shard.beginSnapshot();
  const pieces: Uint8Array[] = [];
  let seq = 5001;
  for (let piece = stream.next(64 << 10); piece !== null; piece = stream.next(64 << 10)) {
    pieces.push(piece.slice());
    // New entities and more events for old ones between every two pieces.
    shard.apply(batch(seq, [...events(seq, 200), ...events(1, 100)]));
    seq += 300;
  }
  assert.ok(pieces.length > 3, `${pieces.length} pieces`);
  const whole = Buffer.concat(pieces);
  assert.equal(whole, Buffer.from(atStart.snapshot()), 'the bytes of the state at the start');
  for (const split of [1, 7, 4096, whole.byteLength]) {
    const restored = state();
    const sink = restored.beginRestore(5000);
    for (let at = 0; at < whole.byteLength; at += split) sink.push(whole.subarray(at, at + split));
    sink.finish();
    assert.equal(restored.snapshot(), atStart.snapshot(), `pushed in pieces of ${split}`);
    assert.equal(restored.query(42n), atStart.query(42n));
  }
  const cut = state();
  const sink = cut.beginRestore(5000);
  sink.push(whole.subarray(0, whole.byteLength - 1));
  expectCode(() => sink.finish(), 'DECODE_FAILED');
});

test('shard-state - a version-1 container (a legacy segment head: msgpack CRDT) still restores', () => {
  const source = state();
  source.apply(batch(1, [view(1n, 1), view(2n, 2, 3), view(1n, 200)]));
  const crdt = source.crdt.encode();
  const sessions = source.sessions.encode();
  const legacy = new Uint8Array(28 + crdt.byteLength + sessions.byteLength);
  const header = new DataView(legacy.buffer);
  header.setUint32(0, 0x54534c54, true);
  header.setUint16(4, 1, true);
  header.setUint32(8, SHARD, true);
  header.setBigUint64(12, 3n, true);
  header.setUint32(20, crdt.byteLength, true);
  header.setUint32(24, sessions.byteLength, true);
  legacy.set(crdt, 28);
  legacy.set(sessions, 28 + crdt.byteLength);
  const restored = state();
  restored.restore(legacy, 3);
  assert.equal(restored.snapshot(), source.snapshot());
  assert.equal(restored.query(2n), source.query(2n));
});

test.run();
