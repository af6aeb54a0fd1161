// The reorder buffer on every path into a state: applyPacked, merge, plans, snapshots. Each path
// checks buffered events against the schema and keeps the buffer within maxPendingEvents.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { expectCode } from '../support/expect-code.ts';
import { isTidelogError, type TidelogError } from '../../src/errors.ts';
import {
  CrdtSignalState,
  decodePlan,
  defaultSignalSchema,
  encodeEvents,
  encodePlan,
  HlcTimestamp,
  ReconciliationEngine,
  type SignalEvent,
} from '../../src/crdt/index.ts';
import type { OriginLog } from '../../src/crdt/origin-log.ts';

const schema = defaultSignalSchema();
const engine = new ReconciliationEngine();
const START_NS = 1_700_000_000_000_000_000n;
const VIEW = 1;


function view(entityId: bigint, weight = 1): SignalEvent {
  return { entityId, signalType: VIEW, weight, timestampNs: START_NS };
}

function stamp(logical: number, nodeId = 1): HlcTimestamp {
  return new HlcTimestamp(START_NS, logical, nodeId);
}

/** A state that folded origin 1's seq 1 (entity 5) and buffers seqs 3 … 2 + pending (entity 7). */
function withGap(pending = 1, options: { maxPendingEvents?: number } = {}): CrdtSignalState {
  const state = new CrdtSignalState(schema, options);
  state.apply(view(5n), 1, stamp(1), 1);
  for (let seq = 3; seq < 3 + pending; seq++) state.apply(view(7n), 1, stamp(seq), seq);
  return state;
}

/** Corrupts a buffered event in place, as a bug or bit rot could (the private map, on purpose). */
function corruptBuffered(state: CrdtSignalState, origin: number, seq: number, patch: (bytes: Uint8Array) => void): void {
  const logs = (state as unknown as { logs: Map<number, OriginLog> }).logs;
  const event = logs.get(origin)?.pending.get(seq);
  assert.ok(event !== undefined, `origin ${origin} buffers seq ${seq}`);
  patch((event as { bytes: Uint8Array }).bytes);
}

const unknownType = (bytes: Uint8Array): void => {
  bytes[8] = 99;
};
const nanWeight = (bytes: Uint8Array): void => {
  new DataView(bytes.buffer, bytes.byteOffset, 21).setFloat32(9, Number.NaN, true);
};

// Regression (r1): decodeOriginRows never looked at the buffered events; a bad one crashed the
// fold that drained it (TypeError, the event lost, appliedSeq stuck), a NaN weight folded into
// a state whose own snapshot no longer decoded.
test('origin-log - a snapshot buffering an event the schema rejects is DECODE_FAILED', () => {
  const bytes = withGap().encode();
  const at = Buffer.from(bytes).indexOf(Buffer.from(encodeEvents([view(7n)])));
  assert.ok(at > 0);
  for (const patch of [unknownType, nanWeight, (event: Uint8Array) => new DataView(event.buffer, event.byteOffset, 21).setFloat32(9, 2e9, true)]) {
    const damaged = bytes.slice();
    patch(damaged.subarray(at, at + 21));
    try {
      CrdtSignalState.decode(damaged, schema);
      assert.unreachable('decoded a snapshot with a bad buffered event');
    } catch (error) {
      assert.ok(isTidelogError(error, 'DECODE_FAILED'), String(error));
      assert.is((error as TidelogError).context.path, '$[0][3][0][2][0][1]');
    }
  }
});

test('origin-log - a plan whose origin rows buffer a bad event is refused before anything changes', () => {
  const peer = withGap();
  const local = new CrdtSignalState(schema);
  const plan = engine.plan(local, peer);
  assert.is(plan.entities.length, 1);
  unknownType(plan.origins[0].row[2][0][1]);
  const before = local.encode();
  expectCode(() => engine.apply(local, plan), 'DECODE_FAILED');
  assert.is(Buffer.compare(local.encode(), before), 0, 'not even the entities were joined');
  assert.is(local.pendingEvents(), 0);
  expectCode(() => decodePlan(encodePlan(plan), local), 'DECODE_FAILED');
});

test('origin-log - merge refuses a peer buffering an event the schema rejects, changing nothing', () => {
  for (const patch of [unknownType, nanWeight]) {
    const peer = withGap();
    corruptBuffered(peer, 1, 3, patch);
    const local = new CrdtSignalState(schema);
    local.apply(view(1n), 2, stamp(0, 2), 1);
    const before = local.encode();
    assert.throws(() => local.merge(peer), (error: unknown) => isTidelogError(error) && ['UNKNOWN_SIGNAL_TYPE', 'BAD_REQUEST'].includes(error.code));
    assert.is(local.pendingEvents(), 0);
    assert.is(local.appliedSeq(1), 0);
    assert.is(Buffer.compare(local.encode(), before), 0);
  }
});

// Regression (r1): drain deleted the event and moved appliedSeq before folding it, so a fold that
// threw lost the event for good. Every path validates now; this injects a bad event directly.
test('origin-log - drain folds a buffered event before it leaves the buffer', () => {
  const state = withGap();
  corruptBuffered(state, 1, 3, unknownType);
  assert.throws(() => state.apply(view(6n), 1, stamp(2), 2));
  assert.is(state.appliedSeq(1), 2, 'seq 2 folded');
  assert.is(state.pendingEvents(1), 1, 'seq 3 still waits: nothing was lost');
});

// Regression (r4): only applyPacked checked maxPendingEvents; merges, plans and snapshots did not.
test('origin-log - merges and plans keep the lowest buffered seqs within maxPendingEvents', () => {
  const peer = withGap(8); // buffers seqs 3 … 10
  const merged = new CrdtSignalState(schema, { maxPendingEvents: 4 });
  merged.merge(peer);
  assert.is(merged.pendingEvents(), 4);
  assert.is(merged.droppedPendingEvents, 4);
  const planned = new CrdtSignalState(schema, { maxPendingEvents: 4 });
  engine.apply(planned, engine.plan(planned, peer));
  assert.is(planned.pendingEvents(), 4);
  for (const state of [merged, planned]) {
    assert.is(state.apply(view(6n), 1, stamp(2), 2), 5, 'seq 2 fills the gap: seqs 3 … 6 (the lowest) fold');
    assert.is(state.appliedSeq(1), 6);
  }
  // Several peers: the room is shared by all origins.
  const many = new CrdtSignalState(schema, { maxPendingEvents: 4 });
  for (const origin of [1, 2, 3]) {
    const other = new CrdtSignalState(schema, { maxPendingEvents: 4 });
    for (let seq = 10; seq < 14; seq++) other.apply(view(1n), origin, stamp(seq, origin), seq);
    many.merge(other);
  }
  assert.is(many.pendingEvents(), 4);
  assert.is(many.droppedPendingEvents, 8);
});

test('origin-log - decode refuses a snapshot buffering more than maxPendingEvents (OVERLOADED)', () => {
  const bytes = withGap(5).encode();
  assert.is(CrdtSignalState.decode(bytes, schema, { maxPendingEvents: 5 }).pendingEvents(), 5);
  try {
    CrdtSignalState.decode(bytes, schema, { maxPendingEvents: 4 });
    assert.unreachable('decoded an oversized reorder buffer');
  } catch (error) {
    assert.ok(isTidelogError(error, 'OVERLOADED'), String(error));
    assert.equal(error.context, { pendingEvents: 5, maxPendingEvents: 4 });
  }
});

// Regression (r3): a clash in the reorder buffer kept whichever event the merging side held.
test('origin-log - a seq buffered with two events keeps the greater in both merge orders, counted', () => {
  const a = withGap();
  const b = new CrdtSignalState(schema);
  b.apply(view(5n), 1, stamp(1), 1);
  b.apply(view(7n, 2), 1, stamp(3), 3); // another event under seq 3
  const ab = a.clone().merge(b);
  const ba = b.clone().merge(a);
  assert.ok(ab.equals(ba));
  assert.is(ab.conflicts, 1);
  assert.is(ba.conflicts, 1);
  ab.apply(view(6n), 1, stamp(2), 2);
  ba.apply(view(6n), 1, stamp(2), 2);
  assert.ok(ab.equals(ba));
  assert.is(ab.query(7n, START_NS).signals.view.eventCount, 1);
  // applyPacked meeting a clash in its own buffer follows the same rule.
  const c = withGap();
  c.apply(view(7n, 2), 1, stamp(3), 3);
  assert.ok(c.equals(a.clone().merge(b)));
  assert.is(c.conflicts, 1);
});
test.run();
