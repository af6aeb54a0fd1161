// `npm run bench -- crdt`: how fast replicas fold and merge CRDT signal state, and how many
// bytes reconciliation exchanges as a function of the divergence (not of the state size).
//   apply      events/s into CrdtSignalState from packed 1000-event batches (target ≥ 2 M/s),
//              for a skewed (Zipf s = 1 over 1 M entities) and a uniform (100 k entities) mix
//   merge      join of two 100 k-entity states (half the entities shared)
//   reconcile  bytes exchanged vs number of differing entities, at two state sizes
//   transfer   a fresh replica synced from a 1 M-entity one in messages of at most 4 MiB
//              (count, largest message, time), and plan pieces of at most 4 MiB
//   snapshot   encode/decode of a 100 k-entity state
// Flags: --quick (smaller runs, for a smoke check).
import { mulberry32 } from '../test/crdt/replica-simulation.ts';
import { CrdtSignalState, defaultSignalSchema, encodePlan, Hlc, ReconciliationEngine, type SignalSchema } from '../src/crdt/index.ts';
import { newReport, printReport } from './report.ts';

const EVENT_BYTES = 21;
const BATCH_EVENTS = 1000;
const START_NS = 1_700_000_000_000_000_000n;

export async function main(argv: string[]): Promise<void> {
  const isQuick = argv.includes('--quick');
  const applyEvents = isQuick ? 200_000 : 2_000_000;
  const schema = defaultSignalSchema();
  const report = newReport('crdt', {
    applyEvents,
    batchEvents: BATCH_EVENTS,
    bucketsPerWindow: schema.bucketsPerWindow,
    scoreSignals: schema.signals.filter((signal) => signal.kind === 'score').map((signal) => signal.name),
  });

  // ---- apply ----
  const scoreIds = schema.signals.filter((signal) => signal.kind === 'score').map((signal) => signal.id);
  const workloads: { name: string; pickEntity: (random: () => number) => number }[] = [
    { name: 'zipf(1.0) over 1M entities', pickEntity: zipfPicker(1_000_000, 1.0) },
    { name: 'uniform over 100k entities', pickEntity: (random) => Math.floor(random() * 100_000) },
  ];
  for (const workload of workloads) {
    const bytes = makeEvents(applyEvents, scoreIds, workload.pickEntity, 42);
    // The same entities and signals an hour later: a replica in steady state, whose
    // contributions exist already (no slot allocation, no growth of the columns).
    const later = shiftTimestamps(bytes, 3_600_000_000_000n);
    let bestCold = 0;
    let bestWarm = 0;
    let entities = 0;
    for (let run = 0; run < 3; run++) {
      const state = new CrdtSignalState(schema);
      const clock = new Hlc(1, { now: () => START_NS });
      bestCold = Math.max(bestCold, applyAll(state, bytes, clock, 1));
      bestWarm = Math.max(bestWarm, applyAll(state, later, clock, applyEvents + 1));
      entities = state.entityCount;
    }
    report.rows.push({ name: `apply cold, ${workload.name}`, value: bestCold, unit: 'events/s', note: `best of 3, into an empty state, ${entities} entities` });
    report.rows.push({ name: `apply warm, ${workload.name}`, value: bestWarm, unit: 'events/s', note: 'best of 3, entities already present' });
  }
  report.ratios['apply warm zipf / 2M target'] = report.rows[1].value / 2_000_000;
  report.ratios['apply cold zipf / 2M target'] = report.rows[0].value / 2_000_000;

  // ---- merge of two 100k-entity states ----
  const mergeEntities = isQuick ? 20_000 : 100_000;
  const left = buildState(schema, 1, 0, mergeEntities, 2, 7);
  const right = buildState(schema, 2, mergeEntities / 2, mergeEntities, 2, 8);
  let cloneMs = Infinity;
  let mergeMs = Infinity;
  let merged = left;
  for (let run = 0; run < 3; run++) {
    const cloneStartMs = performance.now();
    const target = left.clone();
    cloneMs = Math.min(cloneMs, performance.now() - cloneStartMs);
    const mergeStartMs = performance.now();
    target.merge(right);
    mergeMs = Math.min(mergeMs, performance.now() - mergeStartMs);
    merged = target;
  }
  report.rows.push({ name: `merge 2 × ${mergeEntities} entities (50% shared)`, value: mergeMs, unit: 'ms', note: `${merged.entityCount} entities after` });
  report.rows.push({ name: `clone ${mergeEntities}-entity state`, value: cloneMs, unit: 'ms' });

  // ---- snapshot ----
  const snapshotStartMs = performance.now();
  const snapshot = merged.encode();
  const encodeMs = performance.now() - snapshotStartMs;
  const decodeStartMs = performance.now();
  const decoded = CrdtSignalState.decode(snapshot, schema);
  const decodeMs = performance.now() - decodeStartMs;
  if (!decoded.equals(merged)) throw new Error('snapshot round trip lost state');
  report.rows.push({ name: `snapshot size, ${merged.entityCount} entities`, value: snapshot.byteLength, unit: 'bytes' });
  report.rows.push({ name: 'snapshot encode', value: encodeMs, unit: 'ms' });
  report.rows.push({ name: 'snapshot decode', value: decodeMs, unit: 'ms' });

  // ---- reconciliation bytes vs divergence ----
  const engine = new ReconciliationEngine();
  const sizes = isQuick ? [10_000] : [10_000, 100_000];
  const divergences = [0, 1, 10, 100, 1000, 10_000];
  for (const size of sizes) {
    const base = buildState(schema, 1, 0, size, 1, 9);
    const fullBytes = base.encode().byteLength;
    for (const differing of divergences) {
      if (differing > size / 2) continue;
      const remote = base.clone();
      const local = base.clone();
      divergeState(remote, size, differing, 11);
      const startedMs = performance.now();
      const plan = engine.plan(local, remote);
      const elapsedMs = performance.now() - startedMs;
      engine.apply(local, plan);
      if (!local.equals(remote)) throw new Error('reconciliation did not converge');
      report.rows.push({
        name: `reconcile ${size} entities, ${differing} differ`,
        value: plan.stats.bytesExchanged,
        unit: 'bytes',
        note: `${plan.stats.messages} msgs, ${(plan.stats.bytesExchanged / Math.max(1, differing)).toFixed(0)} B/diff, ${elapsedMs.toFixed(0)} ms, full snapshot ${fullBytes} B`,
      });
      if (differing === 100) report.ratios[`reconcile bytes / snapshot bytes, ${size} entities, 100 differ`] = plan.stats.bytesExchanged / fullBytes;
    }
  }
  // ---- full transfer to a fresh replica, in bounded messages ----
  const transferEntities = isQuick ? 100_000 : 1_000_000;
  const maxMessageBytes = 4 << 20;
  const bounded = new ReconciliationEngine({ maxMessageBytes });
  const source = buildState(schema, 1, 0, transferEntities, 1, 12);
  const fresh = new CrdtSignalState(schema);
  let largestMessageBytes = 0;
  let transferMessages = 0;
  let transferBytes = 0;
  const transferStartMs = performance.now();
  // The sessions by hand (what `sync` does) to see every message; each side applies what it
  // received after every message, so it never holds more than one message's entities.
  const freshSession = bounded.session(fresh);
  const sourceSession = bounded.session(source);
  let message: Uint8Array | null = freshSession.start();
  let isToSource = true;
  while (message !== null) {
    transferMessages++;
    transferBytes += message.byteLength;
    largestMessageBytes = Math.max(largestMessageBytes, message.byteLength);
    const [session, state] = isToSource ? [sourceSession, source] : [freshSession, fresh];
    message = session.receive(message);
    const piece = session.takePlan();
    if (piece.entities.length > 0 || piece.origins.length > 0) bounded.apply(state, piece);
    isToSource = !isToSource;
  }
  const transferMs = performance.now() - transferStartMs;
  if (!fresh.equals(source)) throw new Error('the full transfer did not converge');
  report.rows.push({
    name: `full transfer, ${transferEntities} entities to a fresh replica`,
    value: transferMs,
    unit: 'ms',
    note: `${transferMessages} msgs ≤ ${maxMessageBytes} B (largest ${largestMessageBytes} B), ${transferBytes} B in all, ${((transferEntities / transferMs) * 1000).toFixed(0)} entities/s`,
  });
  const piecesStartMs = performance.now();
  const pieces = bounded.plans(new CrdtSignalState(schema), source);
  const piecesMs = performance.now() - piecesStartMs;
  const largestPieceBytes = Math.max(...pieces.map((piece) => encodePlan(piece).byteLength));
  report.rows.push({
    name: `plan pieces, ${transferEntities} entities`,
    value: pieces.length,
    unit: 'plans',
    note: `each ≤ ${maxMessageBytes} B (largest ${largestPieceBytes} B), ${piecesMs.toFixed(0)} ms`,
  });
  report.ratios['largest transfer message / maxMessageBytes'] = largestMessageBytes / maxMessageBytes;
  printReport(report);
}

/** Folds packed events in 1000-event batches from `firstSeq`; returns events/s. */
function applyAll(state: CrdtSignalState, bytes: Uint8Array, clock: Hlc, firstSeq: number): number {
  const count = bytes.byteLength / EVENT_BYTES;
  const startedMs = performance.now();
  for (let first = 0; first < count; first += BATCH_EVENTS) {
    const batch = bytes.subarray(first * EVENT_BYTES, (first + BATCH_EVENTS) * EVENT_BYTES);
    state.applyPacked(batch, 1, firstSeq + first, clock.reserve(BATCH_EVENTS));
  }
  return count / ((performance.now() - startedMs) / 1000);
}

function shiftTimestamps(bytes: Uint8Array, byNs: bigint): Uint8Array {
  const shifted = bytes.slice();
  const view = new DataView(shifted.buffer);
  for (let offset = 0; offset < shifted.byteLength; offset += EVENT_BYTES) {
    view.setBigUint64(offset + 13, view.getBigUint64(offset + 13, true) + byNs, true);
  }
  return shifted;
}

/** n packed events over score signals; timestamps advance 1 ms per event. */
function makeEvents(count: number, signalIds: number[], pickEntity: (random: () => number) => number, seed: number): Uint8Array {
  const random = mulberry32(seed);
  const bytes = new Uint8Array(count * EVENT_BYTES);
  const view = new DataView(bytes.buffer);
  for (let index = 0; index < count; index++) {
    const offset = index * EVENT_BYTES;
    view.setBigUint64(offset, BigInt(pickEntity(random)), true);
    bytes[offset + 8] = signalIds[Math.floor(random() * signalIds.length)];
    view.setFloat32(offset + 9, Math.round(random() * 40) / 8, true);
    view.setBigUint64(offset + 13, START_NS + BigInt(index) * 1_000_000n, true);
  }
  return bytes;
}

/** A state where `origin` wrote `eventsPerEntity` events for each of `count` entities from `firstEntity`. */
function buildState(schema: SignalSchema, origin: number, firstEntity: number, count: number, eventsPerEntity: number, seed: number): CrdtSignalState {
  const random = mulberry32(seed);
  const total = count * eventsPerEntity;
  const scoreIds = schema.signals.filter((signal) => signal.kind === 'score').map((signal) => signal.id);
  const bytes = makeEvents(total, scoreIds, () => firstEntity + Math.floor(random() * count), seed);
  // Make sure every entity appears at least once.
  const view = new DataView(bytes.buffer);
  for (let index = 0; index < count; index++) view.setBigUint64(index * eventsPerEntity * EVENT_BYTES, BigInt(firstEntity + index), true);
  const state = new CrdtSignalState(schema);
  const clock = new Hlc(origin, { now: () => START_NS });
  for (let first = 0; first < total; first += BATCH_EVENTS) {
    const batchEvents = Math.min(BATCH_EVENTS, total - first);
    state.applyPacked(bytes.subarray(first * EVENT_BYTES, (first + batchEvents) * EVENT_BYTES), origin, first + 1, clock.reserve(batchEvents));
  }
  return state;
}

/** Writes one new event (origin 2) to each of `differing` distinct entities of `state`. */
function divergeState(state: CrdtSignalState, size: number, differing: number, seed: number): void {
  if (differing === 0) return;
  const random = mulberry32(seed);
  const chosen = new Set<number>();
  while (chosen.size < differing) chosen.add(Math.floor(random() * size));
  const bytes = new Uint8Array(differing * EVENT_BYTES);
  const view = new DataView(bytes.buffer);
  [...chosen].forEach((entity, index) => {
    const offset = index * EVENT_BYTES;
    view.setBigUint64(offset, BigInt(entity), true);
    bytes[offset + 8] = 1;
    view.setFloat32(offset + 9, 1, true);
    view.setBigUint64(offset + 13, START_NS + 3_600_000_000_000n, true);
  });
  state.applyPacked(bytes, 2, 1, new Hlc(2, { now: () => START_NS }).reserve(differing));
}

function zipfPicker(entities: number, exponent: number): (random: () => number) => number {
  const cumulative = new Float64Array(entities);
  let total = 0;
  for (let rank = 0; rank < entities; rank++) {
    total += 1 / (rank + 1) ** exponent;
    cumulative[rank] = total;
  }
  return (random) => {
    const target = random() * total;
    let low = 0;
    let high = entities - 1;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (cumulative[middle] < target) low = middle + 1;
      else high = middle;
    }
    // Scatter ranks over the id space so popular entities are not neighbours.
    return Math.imul(low, 0x9e3779b1) >>> 0;
  };
}

