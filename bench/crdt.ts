// `npm run bench -- crdt`: how fast replicas fold and merge CRDT signal state, and how many
// bytes reconciliation exchanges as a function of the divergence (not of the state size).
//   apply      events/s into CrdtSignalState from packed 1000-event batches (target ≥ 2 M/s),
//              for a skewed (Zipf s = 1 over 1 M entities) and two uniform (100 k, 1 M entities) mixes
//   merge      join of two 100 k-entity states (half the entities shared)
//   reconcile  bytes exchanged vs number of differing entities, at two state sizes
//   transfer   a fresh replica synced from a 1 M-entity one in messages of at most 4 MiB
//              (count, largest message, time), and plan pieces of at most 4 MiB
//   snapshot   encode/decode of a 100 k-entity state
//   image      binary state image of a 1 M-entity ranking-shaped state: write rate over next(4 MiB),
//              the longest next() idle and with folds between pieces, the folds' cost meanwhile,
//              load time against a bare copy into fresh memory, and the msgpack snapshot as peer
//   memory     process RSS per entity of a ranking-shaped state (1 M and 5 M entities, two score
//              signals each, 1 % hot entities), measured in a fresh child process after a forced GC
//   growth     the longest applyPacked(1000) while the state grows to 1 M and 5 M entities (every
//              event a new entity), in a fresh child process: growth must not stall the fold
// Flags: --quick (smaller runs, for a smoke check); --only=apply,merge,snapshot,reconcile,
// transfer,image,memory,growth (comma-separated phases; default all).
import { mulberry32 } from '../test/crdt/replica-simulation.ts';
import { CrdtSignalState, defaultSignalSchema, encodePlan, Hlc, ImageLoader, ReconciliationEngine, type SignalSchema } from '../src/crdt/index.ts';
import { newReport, printReport, runBenchChild, type BenchReport } from './report.ts';

const EVENT_BYTES = 21;
const BATCH_EVENTS = 1000;
const START_NS = 1_700_000_000_000_000_000n;

export async function main(argv: string[]): Promise<void> {
  const childArg = argv.find((arg) => arg.startsWith('--memory-child='));
  if (childArg !== undefined) {
    memoryChild(Number(childArg.slice('--memory-child='.length)));
    return;
  }
  const growthArg = argv.find((arg) => arg.startsWith('--growth-child='));
  if (growthArg !== undefined) {
    growthChild(Number(growthArg.slice('--growth-child='.length)));
    return;
  }
  const isQuick = argv.includes('--quick');
  const onlyArg = argv.find((arg) => arg.startsWith('--only='));
  const only = onlyArg === undefined ? undefined : new Set(onlyArg.slice('--only='.length).split(','));
  const runs = (phase: string): boolean => only === undefined || only.has(phase);
  const applyEvents = isQuick ? 200_000 : 2_000_000;
  const schema = defaultSignalSchema();
  const report = newReport('crdt', {
    applyEvents,
    batchEvents: BATCH_EVENTS,
    bucketsPerWindow: schema.bucketsPerWindow,
    scoreSignals: schema.signals.filter((signal) => signal.kind === 'score').map((signal) => signal.name),
  });

  if (runs('apply')) benchApply(report, schema, isQuick);
  if (runs('merge') || runs('snapshot')) benchMergeAndSnapshot(report, schema, isQuick);
  if (runs('reconcile')) benchReconcile(report, schema, isQuick);
  if (runs('transfer')) benchTransfer(report, schema, isQuick);
  if (runs('image')) benchImage(report, isQuick ? 100_000 : 1_000_000, !isQuick);
  if (runs('memory')) benchMemory(report, schema, isQuick);
  if (runs('growth')) benchGrowth(report, isQuick);
  printReport(report);
}

// Each phase runs in its own function, so its states are garbage once it returns (a long-running
// function keeps its locals reachable, which would slow every later phase's garbage collection).

function benchApply(report: BenchReport, schema: SignalSchema, isQuick: boolean): void {
  const applyEvents = isQuick ? 200_000 : 2_000_000;
  // ---- apply ----
  const scoreIds = schema.signals.filter((signal) => signal.kind === 'score').map((signal) => signal.id);
  const workloads: { name: string; pickEntity: (random: () => number) => number }[] = [
    { name: 'zipf(1.0) over 1M entities', pickEntity: zipfPicker(1_000_000, 1.0) },
    { name: 'uniform over 100k entities', pickEntity: (random) => Math.floor(random() * 100_000) },
    // Every event a random one of 1 M entities: the state does not fit in the caches.
    { name: 'uniform over 1M entities', pickEntity: (random) => Math.floor(random() * 1_000_000) },
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
  const rowOf = (name: string): number => report.rows.find((row) => row.name === name)?.value ?? 0;
  report.ratios['apply warm zipf / 2M target'] = rowOf('apply warm, zipf(1.0) over 1M entities') / 2_000_000;
  report.ratios['apply cold zipf / 2M target'] = rowOf('apply cold, zipf(1.0) over 1M entities') / 2_000_000;
}

function benchMergeAndSnapshot(report: BenchReport, schema: SignalSchema, isQuick: boolean): void {
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

}

function benchReconcile(report: BenchReport, schema: SignalSchema, isQuick: boolean): void {
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
}

function benchTransfer(report: BenchReport, schema: SignalSchema, isQuick: boolean): void {
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
}

function benchMemory(report: BenchReport, schema: SignalSchema, isQuick: boolean): void {
  for (const entities of isQuick ? [100_000] : [1_000_000, 5_000_000]) {
    const memory = measureMemory(entities);
    const perEntity = (bytes: number): number => bytes / memory.entities;
    report.rows.push({
      name: `memory per entity, ${entities} entities (RSS)`,
      value: perEntity(memory.rssBytes),
      unit: 'bytes',
      note: `heapUsed + arrayBuffers ${perEntity(memory.heapUsedBytes + memory.arrayBuffersBytes).toFixed(1)} B/entity, ${memory.events} events folded in ${memory.foldMs.toFixed(0)} ms (${((memory.events / memory.foldMs) * 1000).toFixed(0)} events/s)`,
    });
    report.ratios[`RSS per entity / 250 B target, ${entities} entities`] = perEntity(memory.rssBytes) / 250;
  }
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


// ---- state images ----

const PIECE_BYTES = 4 << 20;

/**
 * A ranking-shaped state imaged in 4 MiB pieces: idle, and with folds between the pieces (the
 * node's case: copy-on-write keeps the image at its begin); then loaded back. The msgpack
 * snapshot of the same state is the peer.
 */
function benchImage(report: BenchReport, entities: number, withPeer: boolean): void {
  const schema = defaultSignalSchema();
  const state = new CrdtSignalState(schema);
  foldRankingWorkload(state, entities);
  let image = new Uint8Array(0);
  const write = (folds: Uint8Array[]): { ms: number; longestMs: number; pieces: number; copiedBytes: number; foldMs: number; longestFoldMs: number } => {
    const stream = state.beginImage();
    if (image.byteLength !== stream.totalBytes) image = new Uint8Array(stream.totalBytes);
    let ms = 0;
    let longestMs = 0;
    let pieces = 0;
    let at = 0;
    let foldMs = 0;
    let longestFoldMs = 0;
    for (;;) {
      const startedMs = performance.now();
      const piece = stream.next(PIECE_BYTES);
      const elapsedMs = performance.now() - startedMs;
      if (piece === null) break;
      ms += elapsedMs;
      longestMs = Math.max(longestMs, elapsedMs);
      image.set(piece, at);
      at += piece.byteLength;
      const fold = folds[pieces++];
      if (fold !== undefined) {
        const foldStartedMs = performance.now();
        state.applyPacked(fold, 1, state.appliedSeq(1) + 1, new Hlc(1, { now: () => START_NS }).reserve(fold.byteLength / EVENT_BYTES));
        foldMs += performance.now() - foldStartedMs;
        longestFoldMs = Math.max(longestFoldMs, performance.now() - foldStartedMs);
      }
    }
    return { ms, longestMs, pieces, copiedBytes: (stream as unknown as { copiedBytes: number }).copiedBytes, foldMs, longestFoldMs };
  };
  let idle = write([]);
  const megabytes = image.byteLength / 1e6;
  for (let run = 0; run < 2; run++) {
    const again = write([]);
    if (again.ms < idle.ms) idle = again;
  }
  report.rows.push({ name: `image write, ${entities} entities, next(4 MiB)`, value: megabytes / (idle.ms / 1000), unit: 'MB/s', note: `best of 3, ${image.byteLength} B in ${idle.pieces} pieces, ${idle.ms.toFixed(0)} ms of next()` });
  report.rows.push({ name: 'image write, longest next(4 MiB)', value: idle.longestMs, unit: 'ms', note: 'idle owner' });
  // Folds between pieces: 10,000 events on entities the image holds (scattered over the whole
  // state), so writes land on chunks the image has not emitted yet.
  const folds: Uint8Array[] = [];
  const random = mulberry32(5);
  for (let piece = 0; piece < idle.pieces; piece++) folds.push(makeEvents(10_000, [1, 2], () => Math.floor(random() * entities), 100 + piece));
  for (const fold of folds) rewriteIds(fold);
  const copyFolds = folds.map((fold) => fold.slice());
  const busy = write(folds);
  const baselineState = state.clone();
  const baselineStartedMs = performance.now();
  for (const fold of copyFolds) baselineState.applyPacked(fold, 1, baselineState.appliedSeq(1) + 1, new Hlc(1, { now: () => START_NS }).reserve(fold.byteLength / EVENT_BYTES));
  const baselineMs = performance.now() - baselineStartedMs;
  report.rows.push({
    name: 'image write while folding, longest next(4 MiB)',
    value: busy.longestMs,
    unit: 'ms',
    note: `${busy.pieces} pieces, 10,000 events folded after each; ${(busy.copiedBytes / 1e6).toFixed(1)} MB copied aside; ${(megabytes / (busy.ms / 1000)).toFixed(0)} MB/s`,
  });
  report.rows.push({
    name: 'longest fold of 10,000 events while imaging',
    value: busy.longestFoldMs,
    unit: 'ms',
    note: `${(busy.foldMs / folds.length).toFixed(1)} ms on average, ${(baselineMs / folds.length).toFixed(1)} ms without an image`,
  });
  report.ratios['fold time with an image in progress / without'] = busy.foldMs / baselineMs;
  let loadMs = Infinity;
  let loaded: CrdtSignalState | undefined;
  write([]); // `image` now holds the state as it is (the folds above changed it)
  for (let run = 0; run < 3; run++) {
    const startedMs = performance.now();
    const loader = new ImageLoader(schema);
    for (let at = 0; at < image.byteLength; at += PIECE_BYTES) loader.push(image.subarray(at, at + PIECE_BYTES));
    loaded = loader.finish();
    loadMs = Math.min(loadMs, performance.now() - startedMs);
  }
  if (!(loaded as CrdtSignalState).equals(state)) throw new Error('the image did not load back to the state');
  // The floor of any load: the same bytes copied into freshly allocated memory (the first touch
  // of each page is a page fault, which on some virtual machines costs more than the copy).
  let floorMs = Infinity;
  for (let run = 0; run < 3; run++) {
    const startedMs = performance.now();
    const fresh = new Uint8Array(image.byteLength);
    for (let at = 0; at < image.byteLength; at += PIECE_BYTES) fresh.set(image.subarray(at, at + PIECE_BYTES), at);
    floorMs = Math.min(floorMs, performance.now() - startedMs);
  }
  report.rows.push({ name: `image load, ${entities} entities`, value: loadMs, unit: 'ms', note: `best of 3, ${(megabytes / (loadMs / 1000)).toFixed(0)} MB/s, pushed in 4 MiB pieces, validated` });
  report.rows.push({ name: 'copy of the image into fresh memory (load floor)', value: floorMs, unit: 'ms', note: `${(megabytes / (floorMs / 1000)).toFixed(0)} MB/s: page faults of first touch plus memcpy` });
  report.ratios['image load ms / fresh-memory copy ms'] = loadMs / floorMs;
  if (!withPeer) return;
  const encodeStartedMs = performance.now();
  const snapshot = state.encode();
  const encodeMs = performance.now() - encodeStartedMs;
  const decodeStartedMs = performance.now();
  const decoded = CrdtSignalState.decode(snapshot, schema);
  const decodeMs = performance.now() - decodeStartedMs;
  if (!decoded.equals(state)) throw new Error('the msgpack snapshot did not round-trip');
  report.rows.push({ name: `msgpack snapshot encode, ${entities} entities`, value: encodeMs, unit: 'ms', note: `${snapshot.byteLength} B, one blocking call` });
  report.rows.push({ name: `msgpack snapshot decode, ${entities} entities`, value: decodeMs, unit: 'ms' });
  report.ratios['msgpack encode ms / image write ms'] = encodeMs / idle.ms;
  report.ratios['msgpack decode ms / image load ms'] = decodeMs / loadMs;
}

/** Turns makeEvents' entity numbers into the ranking workload's ids (entity-index order). */
function rewriteIds(bytes: Uint8Array): void {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let offset = 0; offset < bytes.byteLength; offset += EVENT_BYTES) {
    const entity = view.getUint32(offset, true);
    view.setUint32(offset, Math.imul(entity, 0x9e3779b1) >>> 0, true);
    view.setUint32(offset + 4, entity >>> 24, true);
  }
}

// ---- memory per entity ----

const HOT_SHARE = 0.01;
const DAY_NS = 86_400_000_000_000;

interface MemoryResult {
  entities: number;
  events: number;
  rssBytes: number;
  heapUsedBytes: number;
  arrayBuffersBytes: number;
  foldMs: number;
}

/**
 * A ranking-shaped workload, folded into `state` as origin 1 in 1000-event batches (one reused
 * buffer, so the workload itself holds no memory). Each entity gets events of two score signals
 * (view and click); 99 % get 1–3 events per signal within one minute, 1 % are hot: 100–500
 * events per signal spread over three days, so their windows use many buckets. Returns the
 * number of events.
 */
function foldRankingWorkload(state: CrdtSignalState, entities: number, seed = 77): number {
  const random = mulberry32(seed);
  const batch = new Uint8Array(BATCH_EVENTS * EVENT_BYTES);
  const view = new DataView(batch.buffer);
  const times = new Float64Array(512);
  const clock = new Hlc(1, { now: () => START_NS });
  let filled = 0;
  let seq = state.appliedSeq(1) + 1;
  let events = 0;
  const flush = (): void => {
    if (filled === 0) return;
    state.applyPacked(batch.subarray(0, filled * EVENT_BYTES), 1, seq, clock.reserve(filled));
    seq += filled;
    events += filled;
    filled = 0;
  };
  const startLo = Number(START_NS % 4294967296n);
  const startHi = Number(START_NS / 4294967296n);
  for (let entity = 0; entity < entities; entity++) {
    const idLo = Math.imul(entity, 0x9e3779b1) >>> 0;
    const idHi = entity >>> 24;
    const isHot = random() < HOT_SHARE;
    for (const signalType of [1, 2]) {
      const count = isHot ? 100 + Math.floor(random() * 401) : 1 + Math.floor(random() * 3);
      const spanNs = isHot ? 3 * DAY_NS : 60_000_000_000;
      const firstNs = Math.floor(random() * DAY_NS);
      for (let index = 0; index < count; index++) times[index] = firstNs + Math.floor(random() * spanNs);
      times.subarray(0, count).sort();
      for (let index = 0; index < count; index++) {
        const offset = filled * EVENT_BYTES;
        view.setUint32(offset, idLo, true);
        view.setUint32(offset + 4, idHi, true);
        batch[offset + 8] = signalType;
        view.setFloat32(offset + 9, 1 + Math.floor(random() * 8) / 4, true);
        // START_NS + times[index], as u32 halves (the sum stays far below 2^64).
        const lo = startLo + (times[index] % 4294967296);
        view.setUint32(offset + 13, lo >>> 0, true);
        view.setUint32(offset + 17, startHi + Math.floor(times[index] / 4294967296) + Math.floor(lo / 4294967296), true);
        if (++filled === BATCH_EVENTS) flush();
      }
    }
  }
  flush();
  return events;
}

/**
 * Runs in a fresh process started with --expose-gc: folds the ranking workload for `entities`
 * entities and prints the memory it added (RSS, heapUsed + arrayBuffers) after a forced GC.
 */
function memoryChild(entities: number): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) throw new Error('the memory child needs --expose-gc');
  const state = new CrdtSignalState(defaultSignalSchema());
  gc();
  gc();
  const before = process.memoryUsage();
  const startedMs = performance.now();
  const events = foldRankingWorkload(state, entities);
  const foldMs = performance.now() - startedMs;
  gc();
  gc();
  const after = process.memoryUsage();
  if (state.entityCount !== entities) throw new Error(`expected ${entities} entities, found ${state.entityCount}`);
  const result: MemoryResult = {
    entities,
    events,
    rssBytes: after.rss - before.rss,
    heapUsedBytes: after.heapUsed - before.heapUsed,
    arrayBuffersBytes: after.arrayBuffers - before.arrayBuffers,
    foldMs,
  };
  console.log(JSON.stringify(result));
}

/** Runs memoryChild in a fresh process (so nothing else this run allocated is counted). */
function measureMemory(entities: number): MemoryResult {
  return runBenchChild<MemoryResult>('crdt', ['--expose-gc'], `--memory-child=${entities}`);
}

// ---- growth: the longest fold while the state grows ----

interface GrowthResult {
  entities: number;
  batches: number;
  longestMs: number;
  /** Entity count before the longest call. */
  longestAtEntities: number;
  p99Ms: number;
  p999Ms: number;
  medianMs: number;
  totalMs: number;
  /** The same batches' entities again (no growth): the steady-state peer, median per call. */
  steadyMedianMs: number;
  steadyLongestMs: number;
}

/**
 * A node's worst case for growth: every event of every 1000-event batch names a new entity (two
 * score signals alternating), so each call adds 1000 entities and 1000 contributions; the time of
 * every applyPacked call is recorded. Then the same entities once more (an hour later), which
 * grows nothing: the peer. Each size runs in a fresh process, so no earlier phase's garbage or
 * heap shape is counted.
 */
function benchGrowth(report: BenchReport, isQuick: boolean): void {
  for (const entities of isQuick ? [200_000] : [1_000_000, 5_000_000]) {
    const result = runBenchChild<GrowthResult>('crdt', [], `--growth-child=${entities}`);
    report.rows.push({
      name: `longest applyPacked(1000) while growing to ${entities} entities`,
      value: result.longestMs,
      unit: 'ms',
      note: `at ${result.longestAtEntities} entities; p99.9 ${result.p999Ms.toFixed(2)} ms, p99 ${result.p99Ms.toFixed(2)} ms, median ${result.medianMs.toFixed(2)} ms over ${result.batches} calls (${((entities / result.totalMs) * 1000).toFixed(0)} new entities/s); no growth: median ${result.steadyMedianMs.toFixed(2)} ms, longest ${result.steadyLongestMs.toFixed(2)} ms`,
    });
    report.ratios[`longest growing fold / median growing fold, ${entities} entities`] = result.longestMs / result.medianMs;
    report.ratios[`longest growing fold / longest steady fold, ${entities} entities`] = result.longestMs / result.steadyLongestMs;
  }
}

function growthChild(entities: number): void {
  const state = new CrdtSignalState(defaultSignalSchema());
  const batch = new Uint8Array(BATCH_EVENTS * EVENT_BYTES);
  const view = new DataView(batch.buffer);
  const clock = new Hlc(1, { now: () => START_NS });
  const batches = Math.ceil(entities / BATCH_EVENTS);
  const fill = (first: number, count: number, laterNs: bigint): void => {
    for (let index = 0; index < count; index++) {
      const entity = first + index;
      const offset = index * EVENT_BYTES;
      view.setUint32(offset, Math.imul(entity, 0x9e3779b1) >>> 0, true);
      view.setUint32(offset + 4, entity >>> 24, true);
      batch[offset + 8] = 1 + (entity & 1);
      view.setFloat32(offset + 9, 1, true);
      view.setBigUint64(offset + 13, START_NS + laterNs + BigInt(entity) * 1_000_000n, true);
    }
  };
  const run = (laterNs: bigint): { times: Float64Array; longestAt: number; totalMs: number } => {
    const times = new Float64Array(batches);
    let longestAt = 0;
    const startedMs = performance.now();
    for (let call = 0; call < batches; call++) {
      const first = call * BATCH_EVENTS;
      const count = Math.min(BATCH_EVENTS, entities - first);
      fill(first, count, laterNs);
      const callStartedMs = performance.now();
      state.applyPacked(batch.subarray(0, count * EVENT_BYTES), 1, state.appliedSeq(1) + 1, clock.reserve(count));
      times[call] = performance.now() - callStartedMs;
      if (times[call] > times[longestAt]) longestAt = call;
    }
    return { times, longestAt, totalMs: performance.now() - startedMs };
  };
  const growing = run(0n);
  if (state.entityCount !== entities) throw new Error(`expected ${entities} entities, found ${state.entityCount}`);
  const steady = run(3_600_000_000_000n);
  if (state.entityCount !== entities) throw new Error('the steady pass added entities');
  const sorted = growing.times.slice().sort();
  const steadySorted = steady.times.slice().sort();
  const quantile = (values: Float64Array, share: number): number => values[Math.min(values.length - 1, Math.floor(values.length * share))];
  const result: GrowthResult = {
    entities,
    batches,
    longestMs: sorted[sorted.length - 1],
    longestAtEntities: growing.longestAt * BATCH_EVENTS,
    p99Ms: quantile(sorted, 0.99),
    p999Ms: quantile(sorted, 0.999),
    medianMs: quantile(sorted, 0.5),
    totalMs: growing.totalMs,
    steadyMedianMs: quantile(steadySorted, 0.5),
    steadyLongestMs: steadySorted[steadySorted.length - 1],
  };
  console.log(JSON.stringify(result));
}
