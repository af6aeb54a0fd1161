import fc from 'fast-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { expectCode } from '../support/expect-code.ts';
import {
  CrdtSignalState,
  defaultSignalSchema,
  HlcTimestamp,
  encodeEvents,
  parseSignalSchema,
  type SignalEvent,
} from '../../src/crdt/index.ts';
import {
  deliver,
  eventCount,
  eventOperation,
  historyOf,
  makeHistory,
  messyDelivery,
  mulberry32,
  referenceState,
  shuffle,
  sliceBatch,
  START_NS,
  type Batch,
} from './replica-simulation.ts';

const schema = defaultSignalSchema();
const VIEW = 1;
const LIKE = 3;
const HIDE = 200;
const UNHIDE = 201;
const SECOND_NS = 1_000_000_000n;
const HOUR_NS = 3600n * SECOND_NS;


function event(entityId: bigint, signalType: number, weight: number, timestampNs: bigint): SignalEvent {
  return { entityId, signalType, weight, timestampNs };
}

function stamp(wallOffsetNs: bigint, logical: number, nodeId: number): HlcTimestamp {
  return new HlcTimestamp(START_NS + wallOffsetNs, logical, nodeId);
}

test('signal-state - apply folds an event into score, counts, totals and last seen', () => {
  const state = new CrdtSignalState(schema);
  const at = START_NS + 10n * SECOND_NS;
  assert.is(state.apply(event(42n, VIEW, 2, START_NS), 1, stamp(0n, 0, 1), 1), 1);
  assert.is(state.apply(event(42n, VIEW, 0.5, START_NS + 5n * SECOND_NS), 1, stamp(1n, 0, 1), 2), 1);
  const view = state.query(42n, at).signals.view;
  const lambda = Math.LN2 / (86400 * 1e9);
  const expected = 2 * Math.exp(-lambda * 10e9) + Math.fround(0.5) * Math.exp(-lambda * 5e9);
  assert.ok(Math.abs(view.score - expected) / expected < 1e-12);
  assert.is(view.eventCount, 2);
  assert.is(view.weightSumMicros, 2_500_000n);
  assert.is(view.weightSum, 2.5);
  assert.equal(view.counts, { '1h': 2, '24h': 2, '7d': 2 });
  assert.is(view.lastEventNs, START_NS + 5n * SECOND_NS);
  assert.ok(view.lastHlc?.equals(stamp(1n, 0, 1)));
  assert.is(view.originCount, 1);
  assert.is(state.query(42n, at).signals.like.eventCount, 0);
  assert.equal(state.query(42n, at).flags, { hidden: false });
  assert.equal(state.entityIds(), [42n]);
  // An entity the state never saw reads as empty, whatever the arrays' sizes.
  state.apply(event(44n, HIDE, 1, START_NS), 1, stamp(2n, 0, 1), 3);
  assert.is(state.query(43n, at).signals.view.eventCount, 0);
  assert.is(state.flag(43n, 'hidden').isSet, false);
  assert.is(state.counters(43n, VIEW).events.value, 0);
});

test('signal-state - windowed counts forget events older than the window', () => {
  const state = new CrdtSignalState(schema);
  state.apply(event(1n, VIEW, 1, START_NS), 1, stamp(0n, 0, 1));
  state.apply(event(1n, VIEW, 1, START_NS + 2n * HOUR_NS), 1, stamp(1n, 0, 1));
  const counts = state.query(1n, START_NS + 2n * HOUR_NS).signals.view.counts;
  assert.equal(counts, { '1h': 1, '24h': 2, '7d': 2 });
  assert.equal(state.query(1n, START_NS + 30n * HOUR_NS).signals.view.counts, { '1h': 0, '24h': 0, '7d': 2 });
});

test('signal-state - negative weights go to the N side of the weight PN-counter', () => {
  const state = new CrdtSignalState(schema);
  state.apply(event(5n, LIKE, 3, START_NS), 1, stamp(0n, 0, 1));
  state.apply(event(5n, LIKE, -1.25, START_NS), 2, stamp(0n, 0, 2));
  const like = state.query(5n, START_NS).signals.like;
  assert.is(like.weightSumMicros, 1_750_000n);
  assert.is(like.score, 1.75);
  const { events, weightMicros } = state.counters(5n, LIKE);
  assert.is(events.value, 2);
  assert.equal(weightMicros.entries(), [
    { node: 1, p: 3_000_000n, n: 0n },
    { node: 2, p: 0n, n: 1_250_000n },
  ]);
});

test('signal-state - a duplicate seq is ignored, a seq beyond a gap waits for it', () => {
  const state = new CrdtSignalState(schema);
  const e = (n: number): SignalEvent => event(9n, VIEW, 1, START_NS + BigInt(n) * SECOND_NS);
  assert.is(state.apply(e(1), 4, stamp(0n, 1, 4), 1), 1);
  assert.is(state.apply(e(1), 4, stamp(0n, 1, 4), 1), 0, 'duplicate');
  assert.is(state.apply(e(3), 4, stamp(0n, 3, 4), 3), 0, 'buffered behind the gap');
  assert.is(state.pendingEvents(4), 1);
  assert.is(state.query(9n, START_NS + 10n * SECOND_NS).signals.view.eventCount, 1);
  assert.is(state.apply(e(2), 4, stamp(0n, 2, 4), 2), 2, 'the gap filled: both fold');
  assert.is(state.appliedSeq(4), 3);
  assert.is(state.pendingEvents(), 0);
  assert.is(state.query(9n, START_NS + 10n * SECOND_NS).signals.view.eventCount, 3);
});

test('signal-state - the reorder buffer is bounded (OVERLOADED) and registerOrigin skips to a seq', () => {
  const state = new CrdtSignalState(schema, { maxPendingEvents: 2 });
  const bytes = encodeEvents([event(1n, VIEW, 1, START_NS), event(2n, VIEW, 1, START_NS)]);
  state.applyPacked(bytes, 1, 10, stamp(0n, 0, 1));
  expectCode(() => state.applyPacked(bytes.subarray(0, 21), 1, 20, stamp(0n, 9, 1)), 'OVERLOADED');
  state.registerOrigin(1, 10);
  assert.is(state.appliedSeq(1), 11);
  assert.is(state.pendingEvents(), 0);
  assert.is(state.entityCount, 2);
});

test('signal-state - apply without a seq continues the origin, refused behind a gap', () => {
  const state = new CrdtSignalState(schema);
  state.apply(event(1n, VIEW, 1, START_NS), 7, stamp(0n, 0, 7));
  state.apply(event(1n, VIEW, 1, START_NS), 7, stamp(0n, 1, 7));
  assert.is(state.appliedSeq(7), 2);
  state.apply(event(1n, VIEW, 1, START_NS), 7, stamp(0n, 5, 7), 5);
  expectCode(() => state.apply(event(1n, VIEW, 1, START_NS), 7, stamp(0n, 6, 7)), 'BAD_REQUEST');
});

test('signal-state - bad events are rejected with stable codes and a bad batch folds nothing', () => {
  const state = new CrdtSignalState(schema);
  expectCode(() => state.apply(event(1n, 99, 1, START_NS), 1, stamp(0n, 0, 1)), 'UNKNOWN_SIGNAL_TYPE');
  expectCode(() => state.apply(event(1n, VIEW, Number.NaN, START_NS), 1, stamp(0n, 0, 1)), 'BAD_REQUEST');
  expectCode(() => state.apply(event(1n, VIEW, Number.POSITIVE_INFINITY, START_NS), 1, stamp(0n, 0, 1)), 'BAD_REQUEST');
  expectCode(() => state.apply(event(1n, VIEW, 2e9, START_NS), 1, stamp(0n, 0, 1)), 'BAD_REQUEST');
  expectCode(() => state.apply(event(-1n, VIEW, 1, START_NS), 1, stamp(0n, 0, 1)), 'BAD_REQUEST');
  expectCode(() => state.apply(event(1n, VIEW, 1, START_NS), -1, stamp(0n, 0, 1)), 'BAD_REQUEST');
  expectCode(() => state.apply(event(1n, VIEW, 1, START_NS), 1, stamp(0n, 0, 1), 0), 'BAD_REQUEST');
  const mixed = encodeEvents([event(1n, VIEW, 1, START_NS), event(2n, 77, 1, START_NS)]);
  expectCode(() => state.applyPacked(mixed, 1, 1, stamp(0n, 0, 1)), 'UNKNOWN_SIGNAL_TYPE');
  const nan = encodeEvents([event(1n, VIEW, 1, START_NS), event(2n, VIEW, 1, START_NS)]);
  new DataView(nan.buffer).setFloat32(21 + 9, Number.NaN, true);
  expectCode(() => state.applyPacked(nan, 1, 1, stamp(0n, 0, 1)), 'BAD_REQUEST');
  expectCode(() => state.applyPacked(new Uint8Array(20), 1, 1, stamp(0n, 0, 1)), 'BAD_REQUEST');
  expectCode(() => state.applyPacked(mixed.subarray(0, 21), 1, 1, {} as HlcTimestamp), 'BAD_REQUEST');
  expectCode(() => state.applyPacked(encodeEvents([event(1n, VIEW, 1, 0n), event(1n, VIEW, 1, 0n)]), 1, 1, new HlcTimestamp(0n, 0xffff_ffff, 1)), 'BAD_REQUEST');
  expectCode(() => state.query(1n, -1n), 'BAD_REQUEST');
  expectCode(() => state.counters(1n, 99), 'UNKNOWN_SIGNAL_TYPE');
  expectCode(() => state.flag(1n, 'pinned'), 'UNKNOWN_SIGNAL_TYPE');
  assert.is(state.entityCount, 0, 'nothing was folded');
  assert.is(state.appliedSeq(1), 0);
});

test('signal-state - entity ids at and above 2^53 are exact', () => {
  const state = new CrdtSignalState(schema);
  const ids = [2n ** 53n - 1n, 2n ** 53n, 2n ** 53n + 1n, 0xffff_ffff_ffff_ffffn];
  ids.forEach((id, index) => state.apply(event(id, VIEW, index + 1, START_NS), 1, stamp(0n, index, 1)));
  assert.equal(state.entityIds(), ids);
  ids.forEach((id, index) => assert.is(state.query(id, START_NS).signals.view.weightSumMicros, BigInt(index + 1) * 1_000_000n));
});

test('signal-state - a hide seen anywhere stays until an unhide with a later HLC (union semantics)', () => {
  const a = new CrdtSignalState(schema);
  const b = new CrdtSignalState(schema);
  a.apply(event(3n, HIDE, 1, START_NS), 1, stamp(10n, 0, 1));
  b.apply(event(3n, UNHIDE, 1, START_NS), 2, stamp(5n, 0, 2)); // older unhide
  assert.is(a.clone().merge(b).query(3n, START_NS).flags.hidden, true);
  assert.is(b.clone().merge(a).query(3n, START_NS).flags.hidden, true);
  b.apply(event(3n, UNHIDE, 1, START_NS), 2, stamp(11n, 0, 2)); // later unhide
  assert.is(a.clone().merge(b).query(3n, START_NS).flags.hidden, false);
  assert.is(b.clone().merge(a).query(3n, START_NS).flags.hidden, false);
  assert.ok(a.clone().merge(b).equals(b.clone().merge(a)));
  assert.ok(b.flag(3n, 'hidden').timestamp?.equals(stamp(11n, 0, 2)));
});

test('signal-state - hide wins a tie with an unhide stamped identically', () => {
  const a = new CrdtSignalState(schema);
  const b = new CrdtSignalState(schema);
  a.apply(event(3n, HIDE, 1, START_NS), 1, stamp(10n, 0, 1), 1);
  b.apply(event(3n, UNHIDE, 1, START_NS), 2, stamp(10n, 0, 1), 1); // same HLC, other origin
  assert.is(a.clone().merge(b).query(3n, START_NS).flags.hidden, true);
  assert.is(b.clone().merge(a).query(3n, START_NS).flags.hidden, true);
});

test('signal-state - merge with a state on another schema is SCHEMA_INVALID', () => {
  const other = parseSignalSchema({ version: 1, signals: [{ id: 1, name: 'view', kind: 'score', halfLifeSeconds: 60, windows: [] }] });
  expectCode(() => new CrdtSignalState(schema).merge(new CrdtSignalState(other)), 'SCHEMA_INVALID');
});

test('signal-state - clone is deep and JSON round-trips', () => {
  const state = new CrdtSignalState(schema);
  state.apply(event(1n, VIEW, 1, START_NS), 1, stamp(0n, 0, 1));
  state.apply(event(1n, HIDE, 1, START_NS), 1, stamp(0n, 1, 1));
  const copy = state.clone();
  copy.apply(event(1n, VIEW, 1, START_NS), 1, stamp(0n, 2, 1));
  copy.apply(event(1n, UNHIDE, 1, START_NS), 1, stamp(0n, 3, 1));
  assert.is(state.query(1n, START_NS).signals.view.eventCount, 1);
  assert.is(state.query(1n, START_NS).flags.hidden, true);
  const restored = CrdtSignalState.fromJSON(JSON.parse(JSON.stringify(state)), schema);
  assert.ok(restored.equals(state));
  expectCode(() => CrdtSignalState.fromJSON({ format: 'other' }, schema), 'DECODE_FAILED');
});

// Decay against the closed form Σ wᵢ·e^(−λ(T − tᵢ)) for events in any time order and several
// origins: 400 runs × up to 60 events = ~12k events; relative error ≤ 1e-9.
test('signal-state - decay agrees with the closed form within 1e-9 relative error (property)', () => {
  fc.assert(
    fc.property(
      fc.double({ min: 1, max: 30 * 86400, noNaN: true }),
      fc.array(
        fc.record({
          origin: fc.integer({ min: 1, max: 5 }),
          offsetNs: fc.bigInt({ min: 0n, max: 14n * 24n * HOUR_NS }),
          weight: fc.float({ min: Math.fround(0.001), max: Math.fround(1000), noNaN: true }),
        }),
        { minLength: 1, maxLength: 60 },
      ),
      fc.bigInt({ min: 0n, max: 7n * 24n * HOUR_NS }),
      (halfLifeSeconds, events, queryAfterNs) => {
        const custom = parseSignalSchema({ version: 1, signals: [{ id: 1, name: 'view', kind: 'score', halfLifeSeconds, windows: ['1h'] }] });
        const state = new CrdtSignalState(custom);
        const seqs = new Map<number, number>();
        let latestNs = 0n;
        for (const { origin, offsetNs, weight } of events) {
          const seq = (seqs.get(origin) ?? 0) + 1;
          seqs.set(origin, seq);
          state.apply(event(7n, 1, weight, START_NS + offsetNs), origin, stamp(BigInt(seq), 0, origin), seq);
          if (offsetNs > latestNs) latestNs = offsetNs;
        }
        const atNs = START_NS + latestNs + queryAfterNs;
        const lambda = Math.LN2 / (halfLifeSeconds * 1e9);
        let expected = 0;
        for (const { offsetNs, weight } of events) expected += Math.fround(weight) * Math.exp(-lambda * Number(atNs - START_NS - offsetNs));
        const actual = state.query(7n, atNs).signals.view.score;
        if (expected === 0) assert.is(actual, 0);
        else assert.ok(Math.abs(actual - expected) / expected <= 1e-9, `relative error ${Math.abs(actual - expected) / expected}`);
      },
    ),
    { seed: 51, numRuns: 400 },
  );
});

// The central convergence property. 5 origins write 100 events each (hides and unhides
// included); 5 replicas receive all batches in their own random order, some split, ~30%
// delivered twice, and merge with each other at random moments. At the end every replica
// equals the reference that folded each event once in seq order, and all encode to the same
// bytes. 40 runs × 5 replicas × ~700 event deliveries ≈ 140k operations.
test('signal-state - replicas that get the same events in any order, with duplicates, end equal (property)', () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 2 ** 31 - 1 }), (seed) => {
      const random = mulberry32(seed);
      const history = makeHistory(schema, random, { origins: [1, 2, 3, 4, 5], eventsPerOrigin: 100, entities: 25 });
      const reference = referenceState(schema, history);
      const replicas = [0, 1, 2, 3, 4].map(() => new CrdtSignalState(schema));
      const queues = replicas.map(() => messyDelivery(history, random));
      let isPending = true;
      while (isPending) {
        isPending = false;
        replicas.forEach((replica, index) => {
          const batch = queues[index].shift();
          if (batch === undefined) return;
          isPending = true;
          deliver(replica, batch);
          if (random() < 0.02) replica.merge(replicas[Math.floor(random() * replicas.length)]);
        });
      }
      const referenceBytes = reference.encode();
      for (const replica of replicas) {
        assert.ok(replica.equals(reference), 'replica equals the in-order reference');
        assert.is(replica.pendingEvents(), 0);
        assert.is(Buffer.compare(replica.encode(), referenceBytes), 0, 'identical snapshot bytes');
      }
    }),
    { seed: 61, numRuns: 40 },
  );
});

// Merge laws on whole states, over fast-check histories (they shrink event by event). Each run
// draws ≥ 640 events of 5 origins; each of three states receives its own subset of the batches
// (a bit per batch), in its own order, so states hold gaps and reorder buffers. 160 runs:
// ≥ 102,400 random events, counted below (each delivered to ~1.5 states on average).
test('signal-state - merge is commutative, associative and idempotent over 100k events from 5 origins, and equals seeing both (property)', () => {
  let events = 0;
  fc.assert(
    fc.property(
      fc.array(eventOperation(schema, { origins: 5, entities: 15 }), { minLength: 640, maxLength: 700 }),
      fc.integer({ min: 0, max: 2 ** 31 - 1 }),
      (operations, orderSeed) => {
        events += operations.length;
        const random = mulberry32(orderSeed);
        const history = historyOf(operations);
        const subsets = [0, 1, 2].map((replica) => shuffle(history.filter((batch) => (batch.deliverTo >> replica) & 1), random));
        const [a, b, c] = subsets.map((batches) => {
          const state = new CrdtSignalState(schema);
          for (const batch of batches) deliver(state, batch);
          return state;
        });
        assert.ok(a.clone().merge(b).equals(b.clone().merge(a)), 'commutative');
        assert.ok(a.clone().merge(b).merge(c).equals(a.clone().merge(b.clone().merge(c))), 'associative');
        assert.ok(a.clone().merge(a).equals(a), 'idempotent');
        const both = new CrdtSignalState(schema);
        for (const batch of [...subsets[0], ...subsets[1]]) deliver(both, batch);
        assert.ok(a.clone().merge(b).equals(both), 'merge = having received both sets of events');
        assert.is(a.clone().merge(b).conflicts, 0, 'one history: no conflicts');
      },
    ),
    { seed: 71, numRuns: 160 },
  );
  assert.ok(events >= 100_000, `${events} events`);
});

/** The history with the weight of every event whose seq is a multiple of `every` changed (a clash). */
function rewritten(history: readonly Batch[], every: number): Batch[] {
  return history.map((batch) => {
    const bytes = batch.bytes.slice();
    const view = new DataView(bytes.buffer);
    for (let index = 0; index < eventCount(batch); index++) {
      if ((batch.firstSeq + index) % every === 0) view.setFloat32(index * 21 + 9, view.getFloat32(index * 21 + 9, true) + 0.5, true);
    }
    return { ...batch, bytes };
  });
}

// Regression (r3): one (origin, seq) folded with different contents on two replicas. Each
// state holds a per-origin prefix of one of two histories that clash at some seqs; the laws
// hold whoever merges into whom, and the clashes are counted. 60 runs × ~300 events.
test('signal-state - merge laws hold when one (origin, seq) carries different contents (property)', () => {
  let conflicts = 0;
  fc.assert(
    fc.property(
      fc.array(eventOperation(schema, { origins: 3, entities: 6 }), { minLength: 250, maxLength: 350 }),
      fc.array(fc.tuple(fc.nat(2), fc.nat(120), fc.nat(120), fc.nat(120)), { minLength: 3, maxLength: 3 }),
      (operations, choices) => {
        const histories = [historyOf(operations), rewritten(historyOf(operations), 4)];
        const [a, b, c] = choices.map(([variant, ...prefixes]) => {
          const state = new CrdtSignalState(schema);
          for (const batch of histories[variant % 2]) {
            if (batch.firstSeq <= prefixes[batch.origin - 1]) deliver(state, sliceBatch(batch, 0, Math.min(eventCount(batch), prefixes[batch.origin - 1] - batch.firstSeq + 1)));
          }
          return state;
        });
        const ab = a.clone().merge(b);
        assert.ok(ab.equals(b.clone().merge(a)), 'commutative');
        assert.ok(ab.clone().merge(c).equals(a.clone().merge(b.clone().merge(c))), 'associative');
        assert.ok(a.clone().merge(a).equals(a), 'idempotent');
        assert.ok(ab.clone().merge(a).equals(ab) && ab.clone().merge(b).equals(ab), 'the join is an upper bound');
        assert.is(Buffer.compare(ab.encode(), b.clone().merge(a).encode()), 0, 'identical snapshot bytes');
        conflicts += ab.conflicts;
      },
    ),
    { seed: 73, numRuns: 60 },
  );
  assert.ok(conflicts > 100, `${conflicts} conflicts met`);
});

test('signal-state - one (origin, seq) with two contents: both merge orders keep the greater and count it', () => {
  const a = new CrdtSignalState(schema);
  const b = new CrdtSignalState(schema);
  const c = new CrdtSignalState(schema);
  a.apply(event(1n, VIEW, 1, START_NS), 1, stamp(0n, 0, 1), 1);
  b.apply(event(1n, VIEW, 1, START_NS), 1, stamp(5n, 0, 2), 1); // the same event under another HLC
  c.apply(event(1n, VIEW, 2, START_NS), 1, stamp(0n, 0, 1), 1); // another weight under the same seq
  for (const [x, y] of [[a, b], [a, c], [b, c]]) {
    const xy = x.clone().merge(y);
    const yx = y.clone().merge(x);
    assert.ok(xy.equals(yx), 'the merge commutes');
    assert.is(xy.conflicts, 1);
    assert.is(yx.conflicts, 1);
    assert.is(xy.query(1n, START_NS).signals.view.eventCount, 1, 'never both');
  }
  assert.is(a.clone().merge(c).query(1n, START_NS).signals.view.weightSumMicros, 2_000_000n, 'the greater content wins');
  assert.is(a.clone().merge(a).conflicts, 0, 'an identical contribution is no conflict');
});

// Regression (r12): without a seq the state numbered every event appliedSeq + 1 itself, so a
// duplicate was folded again.
test('signal-state - apply without a seq takes an HLC at or below the origin\'s newest for a duplicate', () => {
  const events = [1, 2, 3].map((n) => ({ event: event(BigInt(n % 2), VIEW, n, START_NS + BigInt(n)), hlc: stamp(0n, n, 1) }));
  const once = new CrdtSignalState(schema);
  for (const { event: e, hlc } of events) assert.is(once.apply(e, 1, hlc), 1);
  const repeated = new CrdtSignalState(schema);
  for (const index of [0, 0, 1, 0, 2, 1, 2, 2]) repeated.apply(events[index].event, 1, events[index].hlc);
  assert.ok(repeated.equals(once));
  assert.is(repeated.query(1n, START_NS).signals.view.eventCount, 2);
  assert.is(repeated.appliedSeq(1), 3);
  assert.ok(repeated.lastHlc(1)?.equals(stamp(0n, 3, 1)));
  // What the seq-less form cannot do: an event that arrives after a later one looks like a
  // duplicate. Out-of-order delivery needs the seq form.
  const late = new CrdtSignalState(schema);
  late.apply(events[2].event, 1, events[2].hlc);
  assert.is(late.apply(events[0].event, 1, events[0].hlc), 0);
  assert.is(late.appliedSeq(1), 1);
});

test('signal-state - the seq-less duplicate check survives a snapshot, a merge and a plan', () => {
  const writer = new CrdtSignalState(schema);
  for (let n = 0; n < 5; n++) writer.apply(event(BigInt(n), VIEW, 1, START_NS), 4, stamp(0n, n, 4));
  const restored = CrdtSignalState.decode(writer.encode(), schema);
  const merged = new CrdtSignalState(schema).merge(writer);
  for (const state of [restored, merged]) {
    assert.is(state.apply(event(2n, VIEW, 1, START_NS), 4, stamp(0n, 2, 4)), 0, 'a duplicate');
    assert.is(state.apply(event(9n, VIEW, 1, START_NS), 4, stamp(0n, 5, 4)), 1, 'the next event');
    assert.is(state.appliedSeq(4), 6);
    assert.ok(state.lastHlc(4)?.equals(stamp(0n, 5, 4)));
  }
  assert.ok(restored.equals(merged));
});

// The seq-less form honestly: origins interleave arbitrarily, but each origin's events arrive in
// its HLC order; duplicates (of anything already delivered) come at any time. 150 runs × ~200.
test('signal-state - apply without a seq: interleaved origins, each in HLC order, with duplicates, end equal (property)', () => {
  fc.assert(
    fc.property(
      fc.array(eventOperation(schema, { origins: 5, entities: 10 }), { minLength: 100, maxLength: 300 }),
      fc.array(fc.tuple(fc.nat(4), fc.boolean(), fc.nat()), { minLength: 200, maxLength: 600 }),
      (operations, schedule) => {
        const history = historyOf(operations).flatMap((batch) => [...Array(eventCount(batch)).keys()].map((index) => sliceBatch(batch, index, index + 1)));
        const perOrigin = [1, 2, 3, 4, 5].map((origin) => history.filter((single) => single.origin === origin));
        const next = [0, 0, 0, 0, 0];
        const state = new CrdtSignalState(schema);
        const applyOne = (single: Batch): number => state.apply(decodeOne(single), single.origin, single.firstHlc);
        for (const [lane, isDuplicate, pick] of schedule) {
          if (isDuplicate && next[lane] > 0) assert.is(applyOne(perOrigin[lane][pick % next[lane]]), 0, 'a duplicate folds nothing');
          else if (next[lane] < perOrigin[lane].length) assert.is(applyOne(perOrigin[lane][next[lane]++]), 1);
        }
        perOrigin.forEach((singles, lane) => singles.slice(next[lane]).forEach(applyOne));
        assert.ok(state.equals(referenceState(schema, history)), 'equals the fold of each event once');
      },
    ),
    { seed: 67, numRuns: 150 },
  );
});

// The seq form takes any order: single events (with their seqs) shuffled, ~30 % repeated.
test('signal-state - apply with a seq: any order, with duplicates, ends equal (property)', () => {
  fc.assert(
    fc.property(
      fc.array(eventOperation(schema, { origins: 5, entities: 10 }), { minLength: 100, maxLength: 300 }),
      fc.integer({ min: 0, max: 2 ** 31 - 1 }),
      (operations, seed) => {
        const random = mulberry32(seed);
        const history = historyOf(operations);
        const singles = history.flatMap((batch) => [...Array(eventCount(batch)).keys()].map((index) => sliceBatch(batch, index, index + 1)));
        const deliveries = shuffle([...singles, ...singles.filter(() => random() < 0.3)], random);
        const state = new CrdtSignalState(schema);
        for (const single of deliveries) state.apply(decodeOne(single), single.origin, single.firstHlc, single.firstSeq);
        assert.ok(state.equals(referenceState(schema, history)));
        assert.is(state.pendingEvents(), 0);
      },
    ),
    { seed: 68, numRuns: 150 },
  );
});

// Regression (r7): 0 · e^(+λ·Δ) was 0 · ∞ = NaN for a zero score queried far before its anchor.
test('signal-state - a score queried long before its anchor is never NaN', () => {
  const fast = parseSignalSchema({ version: 1, signals: [{ id: 1, name: 'view', kind: 'score', halfLifeSeconds: 0.001, windows: [] }] });
  const state = new CrdtSignalState(fast);
  state.apply(event(1n, 1, 0, START_NS), 1, stamp(0n, 0, 1), 1);
  state.apply(event(2n, 1, 5, START_NS), 1, stamp(0n, 1, 1), 2);
  state.apply(event(2n, 1, -3, START_NS), 2, stamp(0n, 0, 2), 1);
  const before = START_NS - 3_600_000_000_000n;
  assert.is(state.query(1n, before).signals.view.score, 0);
  const mixed = state.query(2n, before).signals.view.score;
  assert.not.ok(Number.isNaN(mixed), 'opposite growths saturate instead of ∞ − ∞');
  assert.ok(Number.isFinite(state.query(2n, START_NS + 1n).signals.view.score));
  assert.ok(CrdtSignalState.decode(state.encode(), fast).equals(state));
});

/** The single event of a one-event batch, as an object. */
function decodeOne(single: Batch): SignalEvent {
  const view = new DataView(single.bytes.buffer, single.bytes.byteOffset, 21);
  return {
    entityId: view.getBigUint64(0, true),
    signalType: single.bytes[8],
    weight: view.getFloat32(9, true),
    timestampNs: view.getBigUint64(13, true),
  };
}

test('signal-state - merging every partial replica gives the full state without double counting', () => {
  const random = mulberry32(5);
  const history = makeHistory(schema, random, { origins: [1, 2, 3], eventsPerOrigin: 200, entities: 10, flagShare: 0 });
  const reference = referenceState(schema, history);
  const parts = [0, 1, 2, 3].map(() => new CrdtSignalState(schema));
  history.forEach((batch) => {
    deliver(parts[Math.floor(random() * parts.length)], batch);
    deliver(parts[Math.floor(random() * parts.length)], batch);
  });
  const merged = parts.reduce((acc, part) => acc.merge(part), new CrdtSignalState(schema)).merge(parts[0]).merge(parts[3]);
  assert.ok(merged.equals(reference));
  let totalEvents = 0;
  for (const id of reference.entityIds()) {
    for (const signal of Object.values(merged.query(id, START_NS).signals)) totalEvents += signal.eventCount;
  }
  assert.is(totalEvents, history.reduce((sum, batch) => sum + eventCount(batch), 0));
});

test.run();
