import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { checkHistory, formatReport, type HistoryReport } from '../../src/chaos/history-check.ts';
import { History, type ReplicaLog, type ShardReplicas } from '../../src/chaos/history.ts';
import { ManualClock } from '../../src/clock.ts';
import { defaultSignalSchema } from '../../src/crdt/index.ts';
import { EVENT_BYTES, encodeEvents, type SignalEvent } from '../../src/event.ts';
import { ShardState } from '../../src/node/shard-state.ts';
import { expectCode } from '../support/expect-code.ts';

const schema = defaultSignalSchema();
const START_NS = 1_700_000_000_000_000_000n;
const SECOND_NS = 1_000_000_000n;
const NODES = ['node-a', 'node-b', 'node-c'];
const ERROR_COUNTS = ['lost', 'duplicated', 'phantom', 'orderViolations', 'divergentShards', 'failedLanded', 'staleReads', 'stateMismatches'] as const;

type Outcome = 'ok' | 'fail' | 'unknown' | 'pending';
/** The seal time and epoch of the leader's batch number `leaderBatch`. */
type Stamp = (leaderBatch: number) => { timestampNs: bigint; leaderEpoch: number };

const LEADER_BATCH_EVENTS = 6;
const risingStamp: Stamp = (leaderBatch) => ({ timestampNs: START_NS + BigInt(leaderBatch + 1) * SECOND_NS, leaderEpoch: 1 });

/** A run in miniature: calls recorded in a History, and the log each shard ended with. */
class Run {
  readonly history = new History();
  readonly logs: SignalEvent[][];
  private counter = 0;
  private nowMs = 0;

  constructor(readonly shardCount = 2) {
    this.logs = Array.from({ length: shardCount }, () => []);
  }

  /** A new event; its timestampNs is a global counter, so its content is unique. */
  event(entityId = BigInt(this.counter % 5), signalType = 1, weight = 1): SignalEvent {
    this.counter++;
    return { entityId, signalType, weight, timestampNs: START_NS + BigInt(this.counter) * SECOND_NS };
  }

  shardOf(event: SignalEvent): number {
    return Number(event.entityId % BigInt(this.shardCount));
  }

  /** Records a call; its events reach the logs when `lands` (ok calls always land). */
  send(events: SignalEvent[], outcome: Outcome = 'ok', lands = outcome === 'ok'): number {
    const id = this.history.invoke('p1', encodeEvents(events), this.nowMs++);
    const acks = events.map((event) => {
      const shard = this.shardOf(event);
      if (lands) this.logs[shard].push(event);
      return { shard, seq: this.logs[shard].length };
    });
    if (outcome === 'ok') this.history.ok(id, acks, this.nowMs++);
    else if (outcome === 'fail') this.history.fail(id, 'OVERLOADED', this.nowMs++);
    else if (outcome === 'unknown') this.history.unknown(id, 'TIMEOUT', this.nowMs++);
    return id;
  }

  /** Ten calls over five entities, two signal types, and a hide then unhide. */
  populate(): this {
    for (let call = 0; call < 8; call++) this.send([this.event(), this.event(undefined, 2, 0.5), this.event(undefined, 1, -2)]);
    this.send([this.event(3n, 200)]);
    this.send([this.event(3n, 201), this.event(4n, 3, 1.25)]);
    return this;
  }
}

interface ReplicaSpec {
  nodeId: string;
  shard: number;
  log: readonly SignalEvent[];
  firstSeq?: number;
  committedSeq?: number;
  /** The entries as streamed, when they are not the log from firstSeq on. */
  entries?: Array<{ seq: number; event: SignalEvent }>;
  /** What the replica's state was folded from (default: the log). */
  stateLog?: readonly SignalEvent[];
  /** The leader epoch of the batch holding seq i + 1 (default: 1 everywhere). */
  epochs?: readonly number[];
  batchEvents?: number;
  stamp?: Stamp;
  leaderBatchEvents?: number;
}

/**
 * A replica's state: the log as the leader sealed it (batches of `leaderBatchEvents`, each
 * stamped by `stamp`), stored in batches of at most `batchEvents` cut inside those, as a
 * follower trims them; a cut keeps its leader batch's stamp.
 */
function foldState(shard: number, packed: Uint8Array, batchEvents: number, stamp: Stamp, leaderBatchEvents = LEADER_BATCH_EVENTS): ShardState {
  const state = new ShardState({ shard, schema, clock: new ManualClock() });
  const count = packed.byteLength / EVENT_BYTES;
  for (let leaderStart = 0; leaderStart < count; leaderStart += leaderBatchEvents) {
    const leaderEnd = Math.min(count, leaderStart + leaderBatchEvents);
    for (let start = leaderStart; start < leaderEnd; start += batchEvents) {
      const end = Math.min(leaderEnd, start + batchEvents);
      const events = packed.subarray(start * EVENT_BYTES, end * EVENT_BYTES);
      state.apply({ firstSeq: start + 1, count: end - start, events, notes: [], ...stamp(leaderStart / leaderBatchEvents) });
    }
  }
  return state;
}

function replica(spec: ReplicaSpec): ReplicaLog {
  const packed = encodeEvents(spec.log);
  const firstSeq = spec.firstSeq ?? 1;
  const stateLog = spec.stateLog === undefined ? packed : encodeEvents(spec.stateLog);
  const state = foldState(spec.shard, stateLog, spec.batchEvents ?? 2, spec.stamp ?? risingStamp, spec.leaderBatchEvents);
  const entries = spec.entries?.map(({ seq, event }) => ({ seq, event: encodeEvents([event]), epoch: spec.epochs?.[seq - 1] ?? 1 }));
  return {
    nodeId: spec.nodeId,
    firstSeq,
    committedSeq: spec.committedSeq ?? spec.log.length,
    entries:
      entries ??
      (function* () {
        for (let seq = firstSeq; seq <= spec.log.length; seq++) yield { seq, event: packed.subarray((seq - 1) * EVENT_BYTES, seq * EVENT_BYTES), epoch: spec.epochs?.[seq - 1] ?? 1 };
      })(),
    query: (entityId, signalTypes, atNs) => state.query(entityId, signalTypes, atNs),
  };
}

/** Three replicas per shard, each storing the leader's batches cut another way; `tweak` plants a defect. */
function cluster(run: Run, tweak: (spec: ReplicaSpec) => ReplicaSpec = (spec) => spec): ShardReplicas[] {
  return run.logs.map((log, shard) => ({
    shard,
    replicas: NODES.map((nodeId, index) => replica(tweak({ nodeId, shard, log, batchEvents: index + 1 }))),
  }));
}

function assertOnly(report: HistoryReport, expected: Partial<Record<(typeof ERROR_COUNTS)[number], number>>): void {
  for (const name of ERROR_COUNTS) {
    assert.is(report[name], expected[name] ?? 0, `${name}: ${report.examples[name].join(' | ')}`);
    if ((expected[name] ?? 0) > 0) assert.ok(report.examples[name].length > 0, `${name} has an example`);
  }
  assert.is(report.ok, Object.values(expected).every((count) => count === 0));
}

test('history - a clean run checks out', () => {
  const run = new Run().populate();
  run.send([run.event(1n)], 'fail', false);
  run.send([run.event(2n)], 'unknown', true);
  run.send([run.event(0n)], 'unknown', false);
  const [shard, seq] = [1, 2];
  run.history.read(shard, seq, encodeEvents([run.logs[shard][seq - 1]]));
  run.history.read(0, 1, encodeEvents([run.logs[0][0]]));
  const report = checkHistory(run.history, cluster(run), { schema });
  assertOnly(report, {});
  assert.equal(report.ops, { invoked: 13, ok: 10, fail: 1, unknown: 2, pending: 0 });
  assert.equal(report.events, { acked: 27, inLog: 28, unknownLanded: 1, unknownNotLanded: 1, notCheckable: 0, moved: 0 });
  assert.is(report.readsChecked, 2);
  assert.is(report.entitiesChecked, 5);
  assert.equal(JSON.parse(JSON.stringify(report)), report, 'plain JSON');
  assert.match(formatReport(report), /^history OK: 13 ops/);
  assert.equal(run.history.ops()[10], { id: 11, process: 'p1', invokedMs: 20, completedMs: 21, outcome: 'fail', eventCount: 1, detail: 'OVERLOADED' });
});

test('history - an acked event missing from the log is lost', () => {
  const run = new Run().populate();
  const shard = run.shardOf(run.logs[0][0]);
  const report = checkHistory(run.history, cluster(run, (spec) => (spec.shard === shard ? { ...spec, log: spec.log.slice(0, -1) } : spec)), { schema });
  assertOnly(report, { lost: 1 });
  assert.match(report.examples.lost[0], `acked at shard ${shard} seq ${run.logs[shard].length}`);
  assert.match(formatReport(report), /^history FAILED/);
});

test('history - an ack without its seq (seq 0: a session replay whose seqs were forgotten) is checked by content in its shard', () => {
  const run = new Run().populate();
  const events = [run.event(1n), run.event(1n)];
  const shard = run.shardOf(events[0]);
  const id = run.history.invoke('p1', encodeEvents(events), 100);
  run.logs[shard].push(events[0]);
  run.history.ok(id, [{ shard, seq: 0 }, { shard, seq: 0 }], 101);
  const report = checkHistory(run.history, cluster(run), { schema });
  assertOnly(report, { lost: 1 });
  assert.match(report.examples.lost[0], 'seq not known to the caller');
  run.logs[shard].push(events[1]);
  assertOnly(checkHistory(run.history, cluster(run), { schema }), {});
});

test("history - availability mode: an acked event a newer leader merged at a later seq is not lost; misplaced or missing it is", () => {
  const run = new Run().populate();
  const orphan = run.event(1n);
  const shard = run.shardOf(orphan);
  // A cut-off leader of epoch 1 acks the orphan at the next seq; the majority's leader of
  // epoch 2 writes another event there, and its merge on heal appends the orphan after it.
  const id = run.history.invoke('p2', encodeEvents([orphan]), 100);
  const ackedSeq = run.logs[shard].length + 1;
  run.history.ok(id, [{ shard, seq: ackedSeq, epoch: 1 }], 101);
  run.send([run.event(1n)]);
  run.logs[shard].push(orphan);
  assert.is(run.logs[shard][ackedSeq - 1] === orphan, false, 'another event holds the acked seq');
  const epochs = run.logs[shard].map((_, index) => (index + 1 >= ackedSeq ? 2 : 1));
  const merged = cluster(run, (spec) => (spec.shard === shard ? { ...spec, epochs } : spec));
  const availability = checkHistory(run.history, merged, { schema, acks: 'leader' });
  assertOnly(availability, {});
  assert.is(availability.events.moved, 1);
  assert.match(formatReport(availability), 'moved to a later seq by a merge: 1');
  const quorum = checkHistory(run.history, cluster(run, (spec) => (spec.shard === shard ? { ...spec, epochs } : spec)), { schema });
  assertOnly(quorum, { lost: 1 });
  assert.match(quorum.examples.lost[0], `acked at shard ${shard} seq ${ackedSeq} by epoch 1 at 101 ms: the log holds`);
  assert.match(quorum.examples.lost[0], `(it is at shard ${shard} seq ${ackedSeq + 1})`);
  // The same epoch holding both seqs is no merge: an ack with the wrong seq.
  const sameEpoch = checkHistory(run.history, cluster(run), { schema, acks: 'leader' });
  assertOnly(sameEpoch, { lost: 1 });
  // Gone from the log altogether: lost in availability mode too.
  run.logs[shard].pop();
  assertOnly(checkHistory(run.history, cluster(run, (spec) => (spec.shard === shard ? { ...spec, epochs: epochs.slice(0, -1) } : spec)), { schema, acks: 'leader' }), { lost: 1 });
});

test('history - the same event at two seqs is duplicated', () => {
  const run = new Run().populate();
  // The event lands a second time, on the other shard.
  const again = run.logs[0][3];
  const report = checkHistory(run.history, cluster(run, (spec) => (spec.shard === 1 ? { ...spec, log: [...spec.log, again] } : spec)), { schema });
  assertOnly(report, { duplicated: 1 });
  assert.match(report.examples.duplicated[0], `at shard 0 seq 4 and shard 1 seq ${run.logs[1].length + 1}`);
});

test('history - an event nobody sent is a phantom', () => {
  const run = new Run().populate();
  const stranger = { entityId: 0n, signalType: 2, weight: 7, timestampNs: 42n };
  const report = checkHistory(run.history, cluster(run, (spec) => (spec.shard === 0 ? { ...spec, log: [...spec.log, stranger] } : spec)), { schema });
  assertOnly(report, { phantom: 1 });
  assert.match(report.examples.phantom[0], 'ts 42}');
});

test("history - a gap in a replica's seqs is an order violation", () => {
  const run = new Run().populate();
  const report = checkHistory(
    run.history,
    cluster(run, (spec) =>
      spec.shard === 1 && spec.nodeId === 'node-b'
        ? { ...spec, entries: spec.log.map((event, index) => ({ seq: index + 1, event })).filter(({ seq }) => seq !== 3) }
        : spec,
    ),
    { schema },
  );
  assertOnly(report, { orderViolations: 1 });
  assert.match(report.examples.orderViolations[0], 'shard 1 node-b: seq 4 where 3 was due');
});

test('history - replicas holding other bytes at a seq diverge', () => {
  const run = new Run().populate();
  const report = checkHistory(
    run.history,
    cluster(run, (spec) =>
      spec.shard === 0 && spec.nodeId === 'node-c'
        ? { ...spec, stateLog: spec.log, log: spec.log.map((event, index) => (index === 1 ? { ...event, weight: 99 } : event)) }
        : spec,
    ),
    { schema },
  );
  assertOnly(report, { divergentShards: 1 });
  assert.match(report.examples.divergentShards[0], 'shard 0 (reference node-a): node-c holds other bytes from seq 2');
});

test('history - a replica behind the others diverges, and the longest log is the reference', () => {
  const run = new Run().populate();
  const report = checkHistory(
    run.history,
    cluster(run, (spec) => (spec.shard === 1 && spec.nodeId === 'node-a' ? { ...spec, stateLog: spec.log, log: spec.log.slice(0, -1) } : spec)),
    { schema },
  );
  // Nothing acked is lost: node-b, with the longest commit point, is the reference.
  assertOnly(report, { divergentShards: 1 });
  assert.match(report.examples.divergentShards[0], `shard 1 (reference node-b): node-a committedSeq ${run.logs[1].length - 1} vs ${run.logs[1].length}`);
});

test('history - a failed call whose event landed is reported', () => {
  const run = new Run().populate();
  const id = run.send([run.event(2n)], 'fail', true);
  run.send([run.event(2n)], 'fail', false);
  const report = checkHistory(run.history, cluster(run), { schema });
  assertOnly(report, { failedLanded: 1 });
  assert.match(report.examples.failedLanded[0], `op ${id} (p1) failed with OVERLOADED`);
});

test('history - unknown outcomes are counted, landed or not, and are no error', () => {
  const run = new Run().populate();
  run.send([run.event(1n)], 'unknown', true);
  run.send([run.event(1n), run.event(2n)], 'unknown', false);
  run.send([run.event(3n)], 'pending', true);
  const report = checkHistory(run.history, cluster(run), { schema });
  assertOnly(report, {});
  assert.equal(report.ops, { invoked: 13, ok: 10, fail: 0, unknown: 2, pending: 1 });
  assert.is(report.events.unknownLanded, 2);
  assert.is(report.events.unknownNotLanded, 2);
  assert.ok(report.notes.some((note) => note.includes('1 ops never completed')));
});

test('history - a read the final log contradicts is stale', () => {
  const run = new Run().populate();
  run.history.read(0, 2, encodeEvents([run.logs[0][1]]));
  run.history.read(0, 3, encodeEvents([run.logs[0][1]]));
  const report = checkHistory(run.history, cluster(run), { schema });
  assertOnly(report, { staleReads: 1 });
  assert.is(report.readsChecked, 2);
  assert.match(report.examples.staleReads[0], 'read of shard 0 seq 3');
});

test('history - a read past the final commit point is stale', () => {
  const run = new Run().populate();
  // Read during the run, then cut with the uncommitted suffix of a deposed leader.
  run.history.read(1, run.logs[1].length + 1, encodeEvents([run.event(1n)]));
  const report = checkHistory(run.history, cluster(run), { schema });
  assertOnly(report, { staleReads: 1 });
  assert.match(report.examples.staleReads[0], `past the final commit point ${run.logs[1].length}`);
});

test('history - a replica whose state differs is a state mismatch', () => {
  const run = new Run().populate();
  const report = checkHistory(
    run.history,
    cluster(run, (spec) =>
      spec.shard === 0 && spec.nodeId === 'node-b'
        ? { ...spec, stateLog: spec.log.map((event, index) => (index === 0 ? { ...event, weight: 3 } : event)) }
        : spec,
    ),
    { schema },
  );
  assertOnly(report, { stateMismatches: 1 });
  const line = report.examples.stateMismatches[0];
  assert.match(line, `shard 0 entity ${run.logs[0][0].entityId} node-b:`);
  assert.match(line, 'on node-a');
  assert.match(line, /model/);
});

test('history - the state check ignores what the batch stamps decide', () => {
  // A new leader (epoch 2) seals with a clock behind the old one: the hide of batch 0 outranks
  // the unhide of batch 1 on every replica, which a fold with other stamps would not see.
  const run = new Run(1);
  run.send([run.event(3n, 1), run.event(3n, 200)]);
  run.send([run.event(3n, 201), run.event(3n, 2)]);
  const stamp: Stamp = (leaderBatch) => ({ timestampNs: START_NS + (leaderBatch === 0 ? 100n : 50n) * SECOND_NS, leaderEpoch: leaderBatch + 1 });
  const replicas = cluster(run, (spec) => ({ ...spec, stamp, leaderBatchEvents: 2 }));
  const asStamped = replicas[0].replicas[0].query(3n, [1, 2, 200], START_NS) as Array<{ isHidden: boolean }>;
  const asRefolded = foldState(0, encodeEvents(run.logs[0]), 4, risingStamp).query(3n, [1, 2, 200], START_NS);
  assert.ok(asStamped[0].isHidden && !asRefolded[0].isHidden, 'the stamps decide the flag');
  const report = checkHistory(run.history, replicas, { schema });
  assertOnly(report, {});
  assert.is(report.entitiesChecked, 1);
});

test("history - events acked below a retained log's first seq are not checkable", () => {
  const run = new Run().populate();
  const report = checkHistory(run.history, cluster(run, (spec) => (spec.shard === 0 ? { ...spec, firstSeq: 3 } : spec)), { schema });
  assertOnly(report, {});
  assert.is(report.events.notCheckable, 2);
  assert.is(report.events.inLog, run.logs[0].length - 2 + run.logs[1].length);
  assert.ok(report.notes.some((note) => note.includes('shard 0: the log starts at seq 3')), report.notes.join('\n'));
});

test('history - examples are capped at 10 while counts stay whole', () => {
  const run = new Run(1);
  for (let call = 0; call < 25; call++) run.send([run.event()]);
  const report = checkHistory(run.history, cluster(run, (spec) => ({ ...spec, log: spec.log.slice(0, 0), stateLog: spec.log })), { schema });
  assert.is(report.lost, 25);
  assert.is(report.examples.lost.length, 10);
});

test('history - the state check takes a deterministic sample of at most maxStateEntities', () => {
  const run = new Run().populate();
  const check = (): HistoryReport => checkHistory(run.history, cluster(run), { schema, maxStateEntities: 3 });
  const first = check();
  assert.is(first.entitiesChecked, 3);
  assert.ok(first.notes.some((note) => note.includes('state compared for 3 of 5 entities')));
  assert.equal(check(), first);
});

test('history - recording misuse is BAD_REQUEST', () => {
  const history = new History();
  expectCode(() => history.invoke('p1', new Uint8Array(20), 0), 'BAD_REQUEST');
  const id = history.invoke('p1', encodeEvents([{ entityId: 1n, signalType: 1, weight: 1, timestampNs: 1n }]), 0);
  expectCode(() => history.ok(id, [], 1), 'BAD_REQUEST');
  expectCode(() => history.ok(id, [{ shard: 0, seq: -1 }], 1), 'BAD_REQUEST');
  history.ok(id, [{ shard: 0, seq: 1 }], 1);
  expectCode(() => history.fail(id, 'TIMEOUT', 2), 'BAD_REQUEST');
  expectCode(() => history.unknown(99, 'TIMEOUT', 2), 'BAD_REQUEST');
  expectCode(() => history.read(0, 1, new Uint8Array(22)), 'BAD_REQUEST');
  assert.equal(history.counts(), { invoked: 1, ok: 1, fail: 0, unknown: 0, pending: 0, invokedEvents: 1, ackedEvents: 1, reads: 0 });
});

test('history - 1,000,000 events over 4 shards × 3 replicas are checked', () => {
  const eventCount = 1_000_000;
  const shardCount = 4;
  const opEvents = 100;
  const entityOf = (index: number): number => (Math.imul(index, 2654435761) >>> 0) % 300_000;
  const perShard = new Array<number>(shardCount).fill(0);
  for (let index = 0; index < eventCount; index++) perShard[entityOf(index) % shardCount]++;
  const logs = perShard.map((count) => new Uint8Array(count * EVENT_BYTES));
  const lengths = new Array<number>(shardCount).fill(0);
  const history = new History();
  const packed = new Uint8Array(eventCount * EVENT_BYTES);
  const view = new DataView(packed.buffer);
  for (let index = 0; index < eventCount; index++) {
    const offset = index * EVENT_BYTES;
    view.setUint32(offset, entityOf(index), true);
    view.setUint8(offset + 8, 1 + (index % 5));
    view.setFloat32(offset + 9, 1 + (index % 3), true);
    view.setBigUint64(offset + 13, START_NS + BigInt(index), true);
  }
  for (let start = 0; start < eventCount; start += opEvents) {
    const events = packed.subarray(start * EVENT_BYTES, (start + opEvents) * EVENT_BYTES);
    const id = history.invoke(`p${start % 7}`, events, start);
    const acks: Array<{ shard: number; seq: number }> = [];
    for (let index = start; index < start + opEvents; index++) {
      const shard = entityOf(index) % shardCount;
      logs[shard].set(packed.subarray(index * EVENT_BYTES, (index + 1) * EVENT_BYTES), lengths[shard] * EVENT_BYTES);
      acks.push({ shard, seq: ++lengths[shard] });
      if (index % 10 === 0) history.read(shard, lengths[shard], packed.subarray(index * EVENT_BYTES, (index + 1) * EVENT_BYTES));
    }
    history.ok(id, acks, start + 1);
  }
  // One folded state per shard stands for all three replicas' (folding 3M events would only time the fold).
  const shards: ShardReplicas[] = logs.map((log, shard) => {
    const state = foldState(shard, log, 4096, risingStamp, 4096);
    return {
      shard,
      replicas: NODES.map((nodeId) => ({
        nodeId,
        firstSeq: 1,
        committedSeq: perShard[shard],
        entries: (function* () {
          for (let seq = 1; seq <= perShard[shard]; seq++) yield { seq, event: log.subarray((seq - 1) * EVENT_BYTES, seq * EVENT_BYTES) };
        })(),
        query: (entityId: bigint, signalTypes: readonly number[], atNs: bigint) => state.query(entityId, signalTypes, atNs),
      })),
    };
  });
  const startedMs = performance.now();
  const report = checkHistory(history, shards, { schema });
  const elapsedMs = performance.now() - startedMs;
  console.log(`  history check: ${eventCount} events, 4 shards × 3 replicas, ${report.entitiesChecked} entities in ${elapsedMs.toFixed(0)} ms`);
  assertOnly(report, {});
  assert.is(report.events.acked, eventCount);
  assert.is(report.events.inLog, eventCount);
  assert.is(report.readsChecked, eventCount / 10);
  assert.is(report.entitiesChecked, 100_000);
});

test.run();
