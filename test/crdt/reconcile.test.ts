import fc from 'fast-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { isTidelogError } from '../../src/errors.ts';
import {
  CrdtSignalState,
  defaultSignalSchema,
  Hlc,
  parseSignalSchema,
  ReconciliationEngine,
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

function expectCode(run: () => unknown, code: string): void {
  try {
    run();
  } catch (error) {
    assert.ok(isTidelogError(error), String(error));
    assert.is((error as { code: string }).code, code);
    return;
  }
  assert.unreachable(`expected ${code}`);
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

// 80 runs: two replicas that each saw a random ~60% of 5 origins' batches reconcile.
test('reconcile - plan and apply bring diverged replicas to their merge (property)', () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 2 ** 31 - 1 }), (seed) => {
      const random = mulberry32(seed);
      const history = makeHistory(schema, random, { origins: [1, 2, 3, 4, 5], eventsPerOrigin: 50, entities: 40 });
      const a = stateFrom(shuffle(history.filter(() => random() < 0.6), random));
      const b = stateFrom(shuffle(history.filter(() => random() < 0.6), random));
      const expected = a.clone().merge(b);
      const { local, remote } = engine.exchange(a, b);
      engine.apply(a, local);
      engine.apply(b, remote);
      assert.ok(a.equals(expected), 'local reached the merge');
      assert.ok(b.equals(expected), 'remote reached the merge');
      for (const entry of local.entities) assert.ok(['missing-local', 'remote-newer', 'concurrent'].includes(entry.how));
    }),
    { seed: 111, numRuns: 80 },
  );
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
  const wire: Uint8Array[] = [];
  let message: Uint8Array | null = initiator.start();
  let receiver = responder;
  while (message !== null) {
    wire.push(Uint8Array.from(message));
    message = receiver.receive(wire[wire.length - 1]);
    receiver = receiver === responder ? initiator : responder;
  }
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
