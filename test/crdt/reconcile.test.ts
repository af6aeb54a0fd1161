import fc from 'fast-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { expectCode } from '../support/expect-code.ts';
import {
  CrdtSignalState,
  defaultSignalSchema,
  encodePlan,
  Hlc,
  HlcTimestamp,
  MIN_MESSAGE_BYTES,
  parseSignalSchema,
  ReconciliationEngine,
  ReconcileSession,
} from '../../src/crdt/index.ts';
import {
  deliver,
  EVENT_BYTES,
  eventCount,
  makeHistory,
  messyDelivery,
  mulberry32,
  referenceState,
  shuffle,
  START_NS,
  type Batch,
} from './replica-simulation.ts';

const schema = defaultSignalSchema();
const engine = new ReconciliationEngine();
/** An engine whose messages and plan pieces hold only a few dozen entities each. */
const tight = new ReconciliationEngine({ maxMessageBytes: MIN_MESSAGE_BYTES });

/** Drives two sessions over bytes; returns every message (as sent) once both are done. */
function converse(initiator: ReconcileSession, responder: ReconcileSession): Uint8Array[] {
  const wire: Uint8Array[] = [];
  let message: Uint8Array | null = initiator.start();
  let receiver = responder;
  while (message !== null) {
    wire.push(Uint8Array.from(message));
    message = receiver.receive(wire[wire.length - 1]);
    receiver = receiver === responder ? initiator : responder;
  }
  return wire;
}


function stateFrom(batches: readonly Batch[]): CrdtSignalState {
  const state = new CrdtSignalState(schema);
  for (const batch of batches) deliver(state, batch);
  return state;
}

/**
 * `count` entities with one view each from origin 1, then one click per [entity, origin] pair
 * (each origin numbering its own events 1, 2, …; callers keep every origin's events the same
 * across states, as the contract requires).
 */
function wideState(count: number, changes: [entity: number, origin: number][]): CrdtSignalState {
  const bytes = new Uint8Array(count * EVENT_BYTES);
  const view = new DataView(bytes.buffer);
  for (let index = 0; index < count; index++) {
    view.setBigUint64(index * EVENT_BYTES, BigInt(index), true);
    bytes[index * EVENT_BYTES + 8] = 1;
    view.setFloat32(index * EVENT_BYTES + 9, 1, true);
    view.setBigUint64(index * EVENT_BYTES + 13, START_NS + BigInt(index), true);
  }
  const state = new CrdtSignalState(schema);
  state.applyPacked(bytes, 1, 1, new Hlc(1, { now: () => START_NS }).reserve(count));
  const seqs = new Map<number, number>();
  for (const [entity, origin] of changes) {
    const seq = (seqs.get(origin) ?? 0) + 1;
    seqs.set(origin, seq);
    state.apply({ entityId: BigInt(entity), signalType: 2, weight: 1, timestampNs: START_NS }, origin, new Hlc(origin, { now: () => START_NS + BigInt(seq) }).now(), seq);
  }
  return state;
}

test('reconcile - identical replicas exchange a few bytes in three messages', () => {
  const random = mulberry32(1);
  const state = referenceState(schema, makeHistory(schema, random, { origins: [1, 2], eventsPerOrigin: 200, entities: 100 }));
  const plan = engine.plan(state, state.clone());
  assert.is(plan.stats.messages, 3);
  assert.ok(plan.stats.bytesExchanged < 300, `${plan.stats.bytesExchanged} bytes`);
  assert.equal(plan.entities, []);
  assert.equal(plan.origins, []);
});

// 80 runs: two replicas that each saw a random ~60% of 5 origins' batches reconcile; every
// other run with 4 KiB messages, so origin tables, digests and entities spill across messages.
test('reconcile - plan and apply bring diverged replicas to their merge (property)', () => {
  let run = 0;
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 2 ** 31 - 1 }), (seed) => {
      const random = mulberry32(seed);
      const history = makeHistory(schema, random, { origins: [1, 2, 3, 4, 5], eventsPerOrigin: 50, entities: 40 });
      const a = stateFrom(shuffle(history.filter(() => random() < 0.6), random));
      const b = stateFrom(shuffle(history.filter(() => random() < 0.6), random));
      const expected = a.clone().merge(b);
      const chosen = run++ % 2 === 0 ? engine : tight;
      const { local, remote } = chosen.exchange(a, b);
      if (chosen === tight) {
        for (const piece of chosen.plans(a.clone(), b)) assert.ok(encodePlan(piece).byteLength <= MIN_MESSAGE_BYTES);
      }
      chosen.apply(a, local);
      chosen.apply(b, remote);
      assert.ok(a.equals(expected), 'local reached the merge');
      assert.ok(b.equals(expected), 'remote reached the merge');
      for (const entry of local.entities) assert.ok(['missing-local', 'remote-newer', 'concurrent'].includes(entry.how));
    }),
    { seed: 111, numRuns: 80 },
  );
});

// Regression (r2): a node of more than ~125k entities was spread into push() (RangeError: stack
// size) when one side was empty, in both directions. The full side now answers with bounded
// messages and keeps the rest queued.
test('reconcile - a fresh replica and one of 130,000 entities exchange bounded messages', () => {
  const full = wideState(130_000, []);
  const oneMiB = new ReconciliationEngine({ maxMessageBytes: 1 << 20 });
  // The fresh side starts: the full side's answer to its hello would hold every entity.
  const answer = oneMiB.session(full).receive(oneMiB.session(new CrdtSignalState(schema)).start()) as Uint8Array;
  assert.ok(answer.byteLength <= 1 << 20, `${answer.byteLength} bytes`);
  // The full side starts: the fresh side wants the root, the full side answers that.
  const fullSide = oneMiB.session(full);
  const wants = oneMiB.session(new CrdtSignalState(schema)).receive(fullSide.start()) as Uint8Array;
  const entities = fullSide.receive(wants) as Uint8Array;
  assert.ok(entities.byteLength <= 1 << 20 && entities.byteLength > (1 << 20) - 4096, `${entities.byteLength} bytes, full`);
});

test('reconcile - a full transfer is a stream of messages within maxMessageBytes', () => {
  const full = wideState(3_000, [[5, 2], [2999, 3]]);
  const fresh = new CrdtSignalState(schema);
  const wire = converse(tight.session(fresh), tight.session(full));
  assert.ok(wire.length > 20, `${wire.length} messages`);
  for (const message of wire) assert.ok(message.byteLength <= MIN_MESSAGE_BYTES, `${message.byteLength} bytes`);
  // Applied piece by piece as it arrives (sync), the fresh replica ends equal.
  const synced = new CrdtSignalState(schema);
  const stats = tight.sync(synced, full);
  assert.ok(synced.equals(full));
  assert.is(stats.entitiesReceived, 3_000);
  assert.is(stats.messages, wire.length);
});

test('reconcile - plans() cuts a plan into pieces within maxMessageBytes, origin rows last', () => {
  const remote = wideState(1_500, [[3, 2]]);
  // A reorder buffer too large for one piece: origin 9 waits for seq 1 and holds 300 events.
  for (let seq = 2; seq < 302; seq++) {
    remote.apply({ entityId: BigInt(seq), signalType: 1, weight: 1, timestampNs: START_NS }, 9, new HlcTimestamp(START_NS, seq, 9), seq);
  }
  const local = wideState(100, []);
  const pieces = tight.plans(local, remote);
  assert.ok(pieces.length > 5, `${pieces.length} pieces`);
  for (const piece of pieces) assert.ok(encodePlan(piece).byteLength <= MIN_MESSAGE_BYTES, `${encodePlan(piece).byteLength} bytes`);
  const firstWithOrigins = pieces.findIndex((piece) => piece.origins.length > 0);
  assert.ok(pieces.slice(firstWithOrigins).every((piece) => piece.entities.length === 0 || piece === pieces[firstWithOrigins]));
  assert.ok(pieces.slice(0, firstWithOrigins).every((piece) => piece.origins.length === 0), 'watermarks after every entity');
  assert.ok(pieces.filter((piece) => piece.origins.some((entry) => entry.origin === 9)).length > 1, 'the big row was split');
  const whole = local.clone();
  tight.apply(whole, tight.plan(local, remote));
  for (const piece of pieces) tight.apply(local, piece);
  assert.ok(local.equals(whole));
  assert.ok(local.equals(local.clone().merge(remote)));
  assert.is(local.pendingEvents(9), 300);
});

// Regression (r3): with one (origin, seq) folded differently on two replicas, the plan called
// neither side ahead, both kept their own, and sync never converged, silently.
test('reconcile - an equal-seq conflict converges, is planned as conflict and counted', () => {
  const a = wideState(50, []);
  const b = wideState(50, []);
  a.apply({ entityId: 7n, signalType: 2, weight: 1, timestampNs: START_NS }, 4, new HlcTimestamp(START_NS, 0, 4), 1);
  b.apply({ entityId: 7n, signalType: 2, weight: 2, timestampNs: START_NS }, 4, new HlcTimestamp(START_NS, 0, 4), 1);
  const { local, remote } = engine.exchange(a, b);
  const losing = [local, remote].find((plan) => plan.entities.length > 0);
  assert.equal(losing?.entities.map((entry) => [entry.entityId, entry.how]), [[7n, 'conflict']]);
  assert.is(local.stats.conflicts, 1);
  assert.is(remote.stats.conflicts, 1);
  engine.apply(a, local);
  engine.apply(b, remote);
  assert.ok(a.equals(b));
  assert.is(a.query(7n, START_NS).signals.click.weightSumMicros, 2_000_000n, 'the greater content won');
  assert.is(a.conflicts + b.conflicts, 1, 'the replica that took the other content counted it');
  assert.ok(a.equals(a.clone().merge(b)));
});

// Regression: the round limit was a plain Error in exchange(); a session fed by a peer that
// never converges now refuses with a TidelogError.
test('reconcile - a peer that never converges is refused with BAD_REQUEST', () => {
  const mine = wideState(200, []);
  const hello = engine.session(wideState(200, [[3, 2]])).start();
  const session = engine.session(mine);
  expectCode(() => {
    for (let round = 0; round < 100; round++) session.receive(hello);
  }, 'BAD_REQUEST');
});

test('reconcile - apply is idempotent and a stale plan changes nothing', () => {
  const random = mulberry32(2);
  const history = makeHistory(schema, random, { origins: [1, 2, 3], eventsPerOrigin: 80, entities: 30 });
  const a = stateFrom(history.filter((_, index) => index % 2 === 0));
  const b = stateFrom(history.filter((_, index) => index % 3 !== 0));
  const plan = engine.plan(a, b);
  const once = engine.apply(a, plan);
  assert.ok(once.entitiesChanged > 0);
  const snapshot = a.encode();
  assert.equal(engine.apply(a, plan), { entitiesChanged: 0, originsRaised: 0 });
  assert.is(Buffer.compare(a.encode(), snapshot), 0);
  for (const batch of history) deliver(a, batch);
  const full = a.encode();
  engine.apply(a, plan);
  assert.is(Buffer.compare(a.encode(), full), 0);
});

test('reconcile - bytes grow with the number of differing entities, not with the state size', () => {
  const changed = (count: number): [number, number][] => Array.from({ length: count }, (_, index) => [index * 97 + 5, 2]);
  const bytes = (size: number, differing: number): number => {
    const local = wideState(size, []);
    const remote = wideState(size, changed(differing));
    const plan = engine.plan(local, remote);
    engine.apply(local, plan);
    assert.ok(local.equals(remote));
    return plan.stats.bytesExchanged;
  };
  const small = bytes(2_000, 10);
  const large = bytes(40_000, 10);
  assert.ok(large < small * 2, `10 differences: ${small} B at 2k entities, ${large} B at 40k`);
  const many = bytes(40_000, 200);
  assert.ok(many > large * 8, `200 differences cost more than 10: ${many} vs ${large}`);
  assert.ok(many < 200 * 2_000, `${many / 200} B per difference`);
  assert.ok(large < wideState(40_000, []).encode().byteLength / 100, 'far less than a snapshot');
});

// A partition with writes on both sides: origin 1 (the old leader, n0) keeps writing on the
// minority {n0, n1}; origin 2 (a new leader, n2) writes on the majority {n2, n3, n4}; both hide
// and unhide. Each side spreads its writes lossily and reconciles internally; after healing, a
// ring of reconciliations leaves all five equal to the state that folded every event once.
// 30 runs × 5 nodes × ~400 events ≈ 60k operations.
test('reconcile - a partition with writes on both sides heals to one state without double counting (property)', () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 2 ** 31 - 1 }), (seed) => {
      const random = mulberry32(seed);
      const origin1 = makeHistory(schema, random, { origins: [1], eventsPerOrigin: 240, entities: 30, flagShare: 0.15 });
      const origin2 = makeHistory(schema, random, { origins: [2], eventsPerOrigin: 160, entities: 30, flagShare: 0.15 });
      const cut = Math.floor(origin1.length / 2);
      const before = origin1.slice(0, cut);
      const minorityWrites = origin1.slice(cut);
      const nodes = [0, 1, 2, 3, 4].map(() => new CrdtSignalState(schema));
      for (const node of nodes) for (const batch of messyDelivery(before, random)) deliver(node, batch);

      // The first member of each side is the writer: it folds its own writes in order. The
      // others get them late, out of order, duplicated, and lose a fifth of the batches.
      const sides = [
        { members: [0, 1], writes: minorityWrites },
        { members: [2, 3, 4], writes: origin2 },
      ];
      for (const side of sides) {
        for (const member of side.members) {
          const isWriter = member === side.members[0];
          const arriving = isWriter ? side.writes : messyDelivery(side.writes, random).filter(() => random() < 0.8);
          arriving.forEach((batch, index) => {
            deliver(nodes[member], batch);
            if (index % 10 === 9) {
              const peer = side.members[Math.floor(random() * side.members.length)];
              if (peer !== member) engine.sync(nodes[member], nodes[peer]);
            }
          });
        }
      }
      // Heal: a ring of reconciliations, twice round.
      for (let round = 0; round < 2; round++) {
        for (let index = 0; index < nodes.length; index++) engine.sync(nodes[index], nodes[(index + 1) % nodes.length]);
      }
      const everything = [...origin1, ...origin2];
      const reference = referenceState(schema, everything);
      for (const node of nodes) assert.ok(node.equals(reference), 'every node equals the fold of every event once');

      // No double counting, checked against the raw events.
      let scoreEvents = 0;
      let weightMicros = 0n;
      for (const batch of everything) {
        const view = new DataView(batch.bytes.buffer, batch.bytes.byteOffset);
        for (let index = 0; index < eventCount(batch); index++) {
          if (batch.bytes[index * EVENT_BYTES + 8] >= 200) continue;
          scoreEvents++;
          const weight = view.getFloat32(index * EVENT_BYTES + 9, true);
          weightMicros += BigInt(Math.sign(weight) * Math.round(Math.abs(weight) * 1e6));
        }
      }
      let countedEvents = 0;
      let countedMicros = 0n;
      for (const id of nodes[3].entityIds()) {
        for (const signal of Object.values(nodes[3].query(id, START_NS).signals)) {
          countedEvents += signal.eventCount;
          countedMicros += signal.weightSumMicros;
        }
      }
      assert.is(countedEvents, scoreEvents);
      assert.is(countedMicros, weightMicros);
    }),
    { seed: 121, numRuns: 30 },
  );
});

test('reconcile - sessions need nothing but bytes in both directions', () => {
  const a = wideState(300, [[1, 2], [2, 2], [3, 2]]);
  const b = wideState(300, [[200, 3]]);
  const initiator = engine.session(a);
  const responder = engine.session(b);
  const wire = converse(initiator, responder);
  assert.ok(initiator.isDone && responder.isDone);
  engine.apply(a, initiator.plan());
  engine.apply(b, responder.plan());
  assert.ok(a.equals(b));
  expectCode(() => initiator.receive(wire[0]), 'BAD_REQUEST');
});

test('reconcile - bad messages and misapplied plans are refused with stable codes', () => {
  const a = wideState(100, [[1, 2]]);
  const b = wideState(100, [[2, 3]]);
  expectCode(() => engine.session(a).receive(Uint8Array.from([0xc1])), 'DECODE_FAILED');
  expectCode(() => engine.session(a).receive(Uint8Array.from([0x93, 1, 2, 3])), 'DECODE_FAILED');
  const other = new CrdtSignalState(
    parseSignalSchema({ version: 1, signals: [{ id: 1, name: 'view', kind: 'score', halfLifeSeconds: 60, windows: [] }] }),
  );
  expectCode(() => engine.session(a).receive(engine.session(other).start()), 'SCHEMA_INVALID');
  expectCode(() => engine.plan(a, other), 'SCHEMA_INVALID');
  // A plan made for `a` must not raise a fresh state's watermarks: it lacks what a already had.
  const plan = engine.plan(a, b);
  expectCode(() => engine.apply(new CrdtSignalState(schema), plan), 'BAD_REQUEST');
  expectCode(() => engine.apply(other, plan), 'SCHEMA_INVALID');
});

test.run();
