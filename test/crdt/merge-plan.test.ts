import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { isTidelogError } from '../../src/errors.ts';
import {
  CrdtSignalState,
  decodePlan,
  defaultSignalSchema,
  encodePlan,
  HlcTimestamp,
  ReconciliationEngine,
  type SignalEvent,
} from '../../src/crdt/index.ts';

const schema = defaultSignalSchema();
const engine = new ReconciliationEngine();
const START_NS = 1_700_000_000_000_000_000n;

function view(entityId: bigint): SignalEvent {
  return { entityId, signalType: 1, weight: 1, timestampNs: START_NS };
}

/** Entities 0 … 199 from origin 1, then one event each from the given (entity, origin) pairs. */
function state(extra: [entity: bigint, origin: number][]): CrdtSignalState {
  const result = new CrdtSignalState(schema);
  for (let entity = 0n; entity < 200n; entity++) result.apply(view(entity), 1, new HlcTimestamp(START_NS, Number(entity), 1));
  for (const [entity, origin] of extra) result.apply(view(entity), origin, new HlcTimestamp(START_NS + 1n, 0, origin), 1);
  return result;
}

test('merge-plan - says how each entity differs and round-trips through bytes', () => {
  const local = state([[3n, 3], [17n, 4]]);
  const remote = state([[17n, 5], [150n, 6], [9999n, 7]]);
  const plan = engine.plan(local, remote);
  assert.equal(
    plan.entities.map((entry) => [entry.entityId, entry.how]),
    [
      [17n, 'concurrent'],
      [150n, 'remote-newer'],
      [9999n, 'missing-local'],
    ],
    'entity 3 (only local has more) is not in the plan: the peer needs it, not us',
  );
  assert.equal(
    plan.origins.map((entry) => [entry.origin, entry.localSeq, entry.remoteSeq]),
    [
      [5, 0, 1],
      [6, 0, 1],
      [7, 0, 1],
    ],
  );
  const decoded = decodePlan(encodePlan(plan), local);
  assert.equal(decoded.stats, plan.stats);
  assert.equal(decoded.basis, plan.basis);
  assert.is(Buffer.compare(encodePlan(decoded), encodePlan(plan)), 0);
  const viaBytes = local.clone();
  engine.apply(viaBytes, decoded);
  engine.apply(local, plan);
  assert.ok(viaBytes.equals(local));
  assert.ok(local.equals(local.clone().merge(remote)));
});

test('merge-plan - a conflict travels as kind 3 with the conflict count', () => {
  const local = state([[3n, 3]]);
  const remote = new CrdtSignalState(schema).merge(local);
  remote.apply({ ...view(3n), weight: 5 }, 9, new HlcTimestamp(START_NS + 1n, 0, 9), 1);
  local.apply({ ...view(3n), weight: 4 }, 9, new HlcTimestamp(START_NS + 1n, 0, 9), 1);
  const plan = engine.plan(local, remote);
  assert.equal(plan.entities.map((entry) => [entry.entityId, entry.how]), [[3n, 'conflict']]);
  assert.is(plan.stats.conflicts, 1);
  const decoded = decodePlan(encodePlan(plan), local);
  assert.equal(decoded.entities.map((entry) => entry.how), ['conflict']);
  assert.equal(decoded.stats, plan.stats);
  engine.apply(local, decoded);
  assert.ok(local.equals(remote.clone().merge(local)));
});

test('merge-plan - damaged plan bytes are DECODE_FAILED', () => {
  const local = state([]);
  const bytes = encodePlan(engine.plan(local, state([[5n, 2]])));
  for (const damaged of [bytes.subarray(0, bytes.byteLength - 3), Uint8Array.from([0x91, 0x02]), new Uint8Array(0)]) {
    assert.throws(() => decodePlan(damaged, local), (error: unknown) => isTidelogError(error, 'DECODE_FAILED'));
  }
});

test.run();
