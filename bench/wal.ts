// WAL benchmark: durable append throughput (batched, concurrent, per event), fsync and commit
// latency, recovery speed, and the same work on two peers in the same run (hypercore 10 and
// a bare write+fdatasync loop, the ceiling). Prints JSON then a table (bench/report.ts);
// progress goes to stderr. `npm run bench -- wal [--quick] [--only=phase,phase]`.
//
// Every phase warms up on a throw-away WAL, then measures a fresh one, so the engine's own
// counters (wal.stats().flush) cover the timed run only. Inputs are built before timing. Rows run
// on the WAL's defaults (content dedup off: a node deduplicates session requests by session);
// one row turns the 60 s content window on, where every event is distinct, so the window keeps
// (and pays for) all of them.

import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, statfs } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { BATCH_HEADER_BYTES, EVENT_BYTES, Wal, initChecksum, nodeFileIo, recoverShard, type FsyncMode, type SignalEvent, type WalStats } from '../src/wal/index.ts';
import { BARE_HEADER_BYTES, BareLoop, type BareLoopResult } from './peers/bare-loop.ts';
import { drive, type DriveResult } from './peers/drive.ts';
import { HYPERCORE_DURABILITY, hypercoreBatchAppend, hypercorePerEventAppend } from './peers/hypercore.ts';
import { newReport, percentile, printReport, type BenchReport } from './report.ts';

// Run in this order: recovery goes last because its fsync-off build leaves the most for the
// disk to write back. 'bare' is not a phase of its own: it interleaves with the appendMany ones.
const PHASES = ['append-many', 'append-many-concurrent', 'append-many-cpu', 'append-many-objects', 'append', 'hypercore', 'bare', 'recovery'] as const;
type Phase = (typeof PHASES)[number];

const EVENTS_PER_CALL = 1000;
const CONCURRENT_CALLERS = 16;
// The default: one flush carries every sealed batch, so concurrent calls share an fdatasync.
const CONCURRENT_BATCH_MAX_EVENTS = 1000;
const PER_EVENT_CALLERS = 64;
// The node's default window for requests without a producer session.
const CONTENT_DEDUP_WINDOW_MS = 60_000;
const SEGMENT_BYTES = 16 << 20;
/** Slices a paired phase alternates between tidelog and the bare loop. */
const PAIRED_ROUNDS = 4;
/** Cap on a pre-built input pool (events), to bound memory: 24 M × 21 B ≈ 500 MB. */
const MAX_POOL_EVENTS = 24_000_000;
/**
 * Cap on a pool of SignalEvent objects (two BigInts each): millions of live objects make
 * every major GC slow and would bill the benchmark's own heap to the engine.
 */
const MAX_OBJECT_POOL_EVENTS = 1_500_000;

interface Settings {
  isQuick: boolean;
  phases: Set<Phase>;
  durationMs: number;
  warmupMs: number;
  peerDurationMs: number;
  recoveryBytes: number;
  recoveryRepeats: number;
}

function parseSettings(argv: readonly string[]): Settings {
  const isQuick = argv.includes('--quick');
  const only = argv.find((arg) => arg.startsWith('--only='))?.slice('--only='.length);
  const phases = new Set<Phase>();
  for (const name of only ? only.split(',') : PHASES) {
    if (!(PHASES as readonly string[]).includes(name)) throw new Error(`unknown phase "${name}"; known: ${PHASES.join(', ')}`);
    phases.add(name as Phase);
  }
  return {
    isQuick,
    phases,
    durationMs: isQuick ? 1000 : 4000,
    warmupMs: isQuick ? 300 : 700,
    peerDurationMs: isQuick ? 1000 : 3000,
    recoveryBytes: isQuick ? 64 << 20 : 256 << 20,
    recoveryRepeats: isQuick ? 1 : 2,
  };
}

function progress(message: string): void {
  process.stderr.write(`[bench wal] ${message}\n`);
}

/** sync(1): writes back what earlier phases left dirty, so it does not land in the next one. */
function settleDisk(): void {
  const startMs = performance.now();
  spawnSync('sync');
  progress(`sync took ${Math.round(performance.now() - startMs)} ms`);
}

// ── Inputs ─────────────────────────────────────────────────────────────────────────────

/** Hands out distinct events: entityId is a process-wide counter. */
class EventSource {
  private nextId = 1;
  private readonly baseNs = BigInt(Date.now()) * 1_000_000n;
  private readonly baseNsHigh = Number(this.baseNs >> 32n);
  private readonly baseNsLow = Number(this.baseNs & 0xffff_ffffn);

  /** `batches` packed batches of `eventsPerBatch` events, carved from one allocation. */
  packedPool(batches: number, eventsPerBatch: number): Uint8Array[] {
    const batchBytes = eventsPerBatch * EVENT_BYTES;
    const all = new Uint8Array(batches * batchBytes);
    const view = new DataView(all.buffer);
    for (let event = 0; event < batches * eventsPerBatch; event++) {
      const offset = event * EVENT_BYTES;
      const id = this.nextId++;
      const timestampLow = this.baseNsLow + id * 1000;
      view.setUint32(offset, id >>> 0, true);
      view.setUint32(offset + 4, Math.floor(id / 2 ** 32), true);
      view.setUint8(offset + 8, id & 7);
      view.setFloat32(offset + 9, 1 + (id & 15), true);
      view.setUint32(offset + 13, timestampLow >>> 0, true);
      view.setUint32(offset + 17, this.baseNsHigh + Math.floor(timestampLow / 2 ** 32), true);
    }
    return Array.from({ length: batches }, (_, index) => all.subarray(index * batchBytes, (index + 1) * batchBytes));
  }

  objects(count: number): SignalEvent[] {
    const events = new Array<SignalEvent>(count);
    for (let index = 0; index < count; index++) {
      const id = this.nextId++;
      events[index] = {
        entityId: BigInt(id),
        signalType: id & 7,
        weight: 1 + (id & 15),
        timestampNs: this.baseNs + BigInt(id * 1000),
      };
    }
    return events;
  }
}

/** Pool size for a timed run: the warm-up rate with headroom, capped. */
function poolEvents(warmupEventsPerSecond: number, durationMs: number, minimum: number, maximum: number): number {
  return Math.min(maximum, Math.max(minimum, Math.ceil(warmupEventsPerSecond * (durationMs / 1000) * 2.5)));
}

// ── tidelog phases ─────────────────────────────────────────────────────────────────────

interface WalRun {
  drive: DriveResult;
  stats: WalStats;
  /** The bare loop's share of a paired phase, at the group size asked for. */
  bare: BareLoopResult | null;
}

type PoolItem = Uint8Array | SignalEvent[] | SignalEvent;

interface WalRunSpec {
  root: string;
  name: string;
  callers: number;
  batchMaxEvents: number;
  fsync?: FsyncMode;
  /** Content dedup window (default: the WAL's, off); a 60 s window shows what it costs. */
  dedupWindowMs?: number;
  /** Builds the input pool of `events` events; returns one item per operation. */
  build: (events: number) => PoolItem[];
  isLatencyRecorded?: boolean;
  /** Cap on the timed pool (events); object pools are capped lower so the GC does not dominate. */
  maxPoolEvents?: number;
  /** Interleave slices of the bare loop at this group size (from the warm-up's WalStats). */
  pairWithBare?: (warmup: WalStats) => number;
}

function mergeDrives(parts: readonly DriveResult[]): DriveResult {
  const operations = parts.reduce((sum, part) => sum + part.operations, 0);
  const events = parts.reduce((sum, part) => sum + part.events, 0);
  const elapsedMs = parts.reduce((sum, part) => sum + part.elapsedMs, 0);
  return {
    operations,
    events,
    elapsedMs,
    eventsPerSecond: events / (elapsedMs / 1000),
    latenciesUs: parts.flatMap((part) => part.latenciesUs),
    isPoolExhausted: parts.some((part) => part.isPoolExhausted),
  };
}

async function runOnWal(spec: WalRunSpec, dir: string, durationMs: number, pool: PoolItem[], bare: BareLoop | null): Promise<WalRun> {
  const { wal } = await Wal.open({
    dir,
    fsync: spec.fsync ?? 'full',
    batchMaxEvents: spec.batchMaxEvents,
    segmentBytes: SEGMENT_BYTES,
    dedupWindowMs: spec.dedupWindowMs,
  });
  try {
    const rounds = bare === null ? 1 : PAIRED_ROUNDS;
    const parts: DriveResult[] = [];
    let offset = 0;
    for (let round = 0; round < rounds && offset < pool.length; round++) {
      const base = offset;
      const operation = async (index: number): Promise<number> => {
        const item = pool[base + index];
        if (item instanceof Uint8Array) return (await wal.appendMany(item)).length;
        if (Array.isArray(item)) return (await wal.appendMany(item)).length;
        await wal.append(item);
        return 1;
      };
      const part = await drive({
        callers: spec.callers,
        durationMs: durationMs / rounds,
        maxOperations: pool.length - offset,
        operation,
        isLatencyRecorded: spec.isLatencyRecorded,
      });
      parts.push(part);
      offset += part.operations;
      if (bare !== null) await bare.runFor(durationMs / rounds);
    }
    return { drive: mergeDrives(parts), stats: wal.stats(), bare: bare?.result() ?? null };
  } finally {
    await wal.close();
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Warm-up on a throw-away WAL (it sizes the input pool), then the timed run on a fresh one;
 * with `bareGroupEvents`, the timed run alternates slices of tidelog and of the bare loop.
 */
async function measureWal(spec: WalRunSpec, settings: Settings): Promise<WalRun> {
  progress(`${spec.name}: warm-up`);
  const warmPool = spec.build(Math.max(spec.callers * EVENTS_PER_CALL * 4, 200_000));
  const warm = await runOnWal(spec, join(spec.root, `${spec.name}-warm`), settings.warmupMs, warmPool, null);
  const events = poolEvents(warm.drive.eventsPerSecond, settings.durationMs, spec.callers * EVENTS_PER_CALL * 8, spec.maxPoolEvents ?? MAX_POOL_EVENTS);
  progress(`${spec.name}: warm-up ${Math.round(warm.drive.eventsPerSecond)} events/s; building ${events} events`);
  const pool = spec.build(events);
  let bare: BareLoop | null = null;
  if (spec.pairWithBare && settings.phases.has('bare')) {
    const groupEvents = spec.pairWithBare(warm.stats);
    progress(`${spec.name}: paired with the bare loop at ${groupEvents} events per fdatasync, ${PAIRED_ROUNDS} alternating slices`);
    const warmBare = new BareLoop(join(spec.root, `${spec.name}-bare-warm.log`), groupEvents);
    await warmBare.runFor(settings.warmupMs / 2);
    warmBare.close();
    bare = new BareLoop(join(spec.root, `${spec.name}-bare.log`), groupEvents);
  }
  try {
    const run = await runOnWal(spec, join(spec.root, spec.name), settings.durationMs, pool, bare);
    if (run.drive.isPoolExhausted) progress(`${spec.name}: input pool ran out before the deadline (the rate is still valid)`);
    progress(`${spec.name}: ${Math.round(run.drive.eventsPerSecond)} events/s over ${Math.round(run.drive.elapsedMs)} ms`);
    if (run.bare) progress(`${spec.name}: bare loop ${Math.round(run.bare.eventsPerSecond)} events/s`);
    return run;
  } finally {
    bare?.close();
    await rm(join(spec.root, `${spec.name}-bare.log`), { force: true });
    await rm(join(spec.root, `${spec.name}-bare-warm.log`), { force: true });
    settleDisk();
  }
}

interface RecoveryRun {
  bytes: number;
  events: number;
  buildEventsPerSecond: number;
  openNoDedupMs: number;
  openDefaultMs: number;
  replayedEvents: number;
  dedupRebuilt: number;
  verifyOnlyMs: number;
  segments: number;
}

/** Builds a WAL of ~settings.recoveryBytes (fsync off), then times three ways of reading it back. */
async function measureRecovery(root: string, source: EventSource, settings: Settings): Promise<RecoveryRun> {
  const dir = join(root, 'recovery');
  const callers = 4;
  const batchBytes = BATCH_HEADER_BYTES + EVENTS_PER_CALL * EVENT_BYTES;
  const batches = Math.ceil(settings.recoveryBytes / batchBytes);
  progress(`recovery: building ${batches} batches × ${EVENTS_PER_CALL} events (~${Math.round((batches * batchBytes) / 2 ** 20)} MiB, fsync off)`);
  const opened = await Wal.open({ dir, fsync: 'off', segmentBytes: SEGMENT_BYTES, dedupWindowMs: 0 });
  const building = opened.wal;
  let midSeq = 0;
  // Generated in slices so the whole log never sits in memory twice.
  const sliceBatches = 500;
  let buildEvents = 0;
  let buildMs = 0;
  for (let done = 0; done < batches; done += sliceBatches) {
    const pool = source.packedPool(Math.min(sliceBatches, batches - done), EVENTS_PER_CALL);
    const result = await drive({
      callers,
      durationMs: Number.MAX_SAFE_INTEGER,
      maxOperations: pool.length,
      operation: async (index) => (await building.appendMany(pool[index])).length,
    });
    buildEvents += result.events;
    buildMs += result.elapsedMs;
    if (midSeq === 0 && done + sliceBatches >= batches / 2) midSeq = building.lastSeq;
  }
  await building.checkpoint(midSeq);
  const segments = building.stats().segments.length;
  await building.close();
  settleDisk();

  const pureVerify = async (): Promise<{ ms: number; bytes: number }> => {
    await initChecksum();
    const startMs = performance.now();
    const { report } = await recoverShard({ io: nodeFileIo, dir, shard: 0, salvage: false, repair: false });
    return { ms: performance.now() - startMs, bytes: report.bytesScanned };
  };
  progress('recovery: warm-up scan (page cache hot from here on)');
  const { bytes } = await pureVerify();

  // Once only: it is by far the slowest open. Run in its own function so the millions of
  // replayed objects are unreachable afterwards; an untimed scan then pushes V8 to collect
  // them (its 16 MiB reads trigger major GCs) before the next timed open.
  progress('recovery: Wal.open with the content window (dedup rebuild + replay from the midpoint)');
  const openDefault = async (): Promise<{ ms: number; replayedEvents: number; dedupRebuilt: number; lastSeq: number }> => {
    const startMs = performance.now();
    const { wal, replayed, recovery } = await Wal.open({ dir, segmentBytes: SEGMENT_BYTES, dedupWindowMs: CONTENT_DEDUP_WINDOW_MS });
    const ms = performance.now() - startMs;
    const lastSeq = wal.lastSeq;
    await wal.checkpoint(lastSeq);
    await wal.close();
    return { ms, replayedEvents: replayed.length, dedupRebuilt: recovery.dedupRebuilt, lastSeq };
  };
  const { ms: openDefaultMs, replayedEvents, dedupRebuilt, lastSeq } = await openDefault();
  progress(`recovery: default open ${Math.round(openDefaultMs)} ms, replayed ${replayedEvents}`);
  await pureVerify();

  let openNoDedupMs = Infinity;
  for (let repeat = 0; repeat < settings.recoveryRepeats; repeat++) {
    const startMs = performance.now();
    const result = await Wal.open({ dir, segmentBytes: SEGMENT_BYTES, dedupWindowMs: 0 });
    openNoDedupMs = Math.min(openNoDedupMs, performance.now() - startMs);
    if (result.replayed.length !== 0) throw new Error(`expected no replay after a checkpoint at the end, got ${result.replayed.length}`);
    await result.wal.close();
  }

  let verifyOnlyMs = Infinity;
  for (let repeat = 0; repeat < settings.recoveryRepeats; repeat++) verifyOnlyMs = Math.min(verifyOnlyMs, (await pureVerify()).ms);
  await rm(dir, { recursive: true, force: true });
  return {
    bytes,
    events: lastSeq,
    buildEventsPerSecond: buildEvents / (buildMs / 1000),
    openNoDedupMs,
    openDefaultMs,
    replayedEvents,
    dedupRebuilt,
    verifyOnlyMs,
    segments,
  };
}

// ── Report ─────────────────────────────────────────────────────────────────────────────

function groupSize(stats: WalStats): number {
  return stats.flush.fsyncs === 0 ? Number.NaN : stats.flush.events / stats.flush.fsyncs;
}

function megabytesPerSecond(bytes: number, ms: number): number {
  return bytes / 1e6 / (ms / 1000);
}

async function checkSameDisk(root: string): Promise<string> {
  const [scratch, repo] = await Promise.all([statfs(root), statfs(process.cwd())]);
  const isSame = scratch.type === repo.type && scratch.blocks === repo.blocks && scratch.bfree === repo.bfree;
  return isSame ? `${root} (same file system as the repo)` : `${root} (WARNING: statfs differs from the repo's)`;
}

export async function main(argv: string[]): Promise<void> {
  const settings = parseSettings(argv);
  const root = await mkdtemp(join(tmpdir(), 'tidelog-bench-wal-'));
  const source = new EventSource();
  const notes: string[] = [];
  const report: BenchReport = newReport('wal', {
    quick: settings.isQuick,
    phases: [...settings.phases],
    dir: await checkSameDisk(root),
    durationMs: settings.durationMs,
    pairedRounds: PAIRED_ROUNDS,
    /** 1/5/15-minute load: other processes on this 2-core machine skew absolute numbers. */
    loadAverageAtStart: loadavg().map((load) => Number(load.toFixed(2))),
    eventsPerCall: EVENTS_PER_CALL,
    concurrentCallers: CONCURRENT_CALLERS,
    concurrentBatchMaxEvents: CONCURRENT_BATCH_MAX_EVENTS,
    perEventCallers: PER_EVENT_CALLERS,
    segmentBytes: SEGMENT_BYTES,
    targets: {
      appendManyEventsPerSecond: 3_000_000,
      appendManyVsBareSameGroup: 0.5,
      perEventVsHypercorePerEvent: 10,
      recoveryMegabytesPerSecond: 400,
    },
    notes,
  });
  const row = (name: string, value: number, unit: string, note?: string): void => {
    report.rows.push(note === undefined ? { name, value, unit } : { name, value, unit, note });
  };
  const bareRow = (bare: BareLoopResult | null): void => {
    if (bare === null) return;
    row(
      `  bare write+fdatasync, group ${bare.groupEvents} (paired)`,
      bare.eventsPerSecond,
      'events/s',
      `${Math.round(bare.commitsPerSecond)} commits/s, fsync p50 ${Math.round(bare.fsyncLatencyUsP50)} µs p99 ${Math.round(bare.fsyncLatencyUsP99)} µs`,
    );
  };
  const has = (phase: Phase): boolean => settings.phases.has(phase);
  const packed = (events: number): Uint8Array[] => source.packedPool(Math.ceil(events / EVENTS_PER_CALL), EVENTS_PER_CALL);
  progress(`temp dir ${root}`);
  try {
    let single: WalRun | null = null;
    let concurrent: WalRun | null = null;
    let withDedup: WalRun | null = null;
    let perEvent: WalRun | null = null;
    if (has('append-many')) {
      single = await measureWal(
        { root, name: 'append-many', callers: 1, batchMaxEvents: EVENTS_PER_CALL, build: packed, pairWithBare: () => EVENTS_PER_CALL },
        settings,
      );
      const { fsyncLatencyUs, commitLatencyUs } = single.stats.flush;
      row('appendMany(1000 packed) full, 1 caller', single.drive.eventsPerSecond, 'events/s', `group ${groupSize(single.stats).toFixed(0)} events/fsync`);
      row('  call latency, mean', (single.drive.elapsedMs * 1000) / single.drive.operations, 'µs', 'call → durable → resolved');
      row('  fsync latency p50', fsyncLatencyUs.p50, 'µs', `p99 ${fsyncLatencyUs.p99} µs`);
      row('  commit latency p50 (seal → durable)', commitLatencyUs.p50, 'µs', `p99 ${commitLatencyUs.p99} µs`);
      bareRow(single.bare);
    }
    if (has('append-many-concurrent')) {
      concurrent = await measureWal(
        {
          root,
          name: 'append-many-concurrent',
          callers: CONCURRENT_CALLERS,
          batchMaxEvents: CONCURRENT_BATCH_MAX_EVENTS,
          build: packed,
          pairWithBare: (warmup) => Math.round(groupSize(warmup)),
        },
        settings,
      );
      const { fsyncLatencyUs, commitLatencyUs, queueWaitUs, fsyncs } = concurrent.stats.flush;
      row(`appendMany(1000 packed) full, ${CONCURRENT_CALLERS} callers`, concurrent.drive.eventsPerSecond, 'events/s', `batchMaxEvents ${CONCURRENT_BATCH_MAX_EVENTS}`);
      row('  average group size', groupSize(concurrent.stats), 'events/fsync', `${fsyncs} fsyncs`);
      row('  fsync latency p50', fsyncLatencyUs.p50, 'µs');
      row('  fsync latency p99', fsyncLatencyUs.p99, 'µs');
      row('  commit latency p50 (seal → durable)', commitLatencyUs.p50, 'µs');
      row('  commit latency p99', commitLatencyUs.p99, 'µs');
      row('  queue wait p50 (seal → write starts)', queueWaitUs.p50, 'µs', `p99 ${queueWaitUs.p99} µs`);
      bareRow(concurrent.bare);
      withDedup = await measureWal(
        {
          root,
          name: 'append-many-concurrent-dedup',
          callers: CONCURRENT_CALLERS,
          batchMaxEvents: CONCURRENT_BATCH_MAX_EVENTS,
          dedupWindowMs: CONTENT_DEDUP_WINDOW_MS,
          build: packed,
          pairWithBare: (warmup) => Math.round(groupSize(warmup)),
        },
        settings,
      );
      row(`appendMany(1000 packed) full, ${CONCURRENT_CALLERS} callers, content dedup on`, withDedup.drive.eventsPerSecond, 'events/s', `${CONTENT_DEDUP_WINDOW_MS / 1000} s window; group ${groupSize(withDedup.stats).toFixed(0)} events/fsync`);
      bareRow(withDedup.bare);
    }
    if (has('append-many-cpu')) {
      const cpu = await measureWal({ root, name: 'append-many-cpu', callers: 1, batchMaxEvents: EVENTS_PER_CALL, fsync: 'off', build: packed }, settings);
      row('appendMany(1000 packed) fsync off, 1 caller', cpu.drive.eventsPerSecond, 'events/s', 'no fsync: the engine\'s CPU cost per call');
    }
    if (has('append-many-objects')) {
      const objects = await measureWal(
        {
          root,
          name: 'append-many-objects',
          callers: 1,
          batchMaxEvents: EVENTS_PER_CALL,
          build: (events) => Array.from({ length: Math.ceil(events / EVENTS_PER_CALL) }, () => source.objects(EVENTS_PER_CALL)),
          maxPoolEvents: MAX_OBJECT_POOL_EVENTS,
        },
        settings,
      );
      row('appendMany(SignalEvent[1000]) full, 1 caller', objects.drive.eventsPerSecond, 'events/s', 'object path: validate + encode');
    }
    if (has('append')) {
      perEvent = await measureWal(
        {
          root,
          name: 'append',
          callers: PER_EVENT_CALLERS,
          batchMaxEvents: EVENTS_PER_CALL,
          build: (events) => source.objects(events),
          isLatencyRecorded: true,
          maxPoolEvents: MAX_OBJECT_POOL_EVENTS,
        },
        settings,
      );
      const latencies = perEvent.drive.latenciesUs;
      const { fsyncLatencyUs, commitLatencyUs } = perEvent.stats.flush;
      row(`append(event) full, ${PER_EVENT_CALLERS} callers`, perEvent.drive.eventsPerSecond, 'events/s', `group ${groupSize(perEvent.stats).toFixed(1)} events/fsync`);
      row('  ack latency p50', percentile(latencies, 50), 'µs');
      row('  ack latency p99', percentile(latencies, 99), 'µs');
      row('  fsync latency p50', fsyncLatencyUs.p50, 'µs', `commit latency p50 ${commitLatencyUs.p50} µs`);
    }
    let hypercoreBatch: DriveResult | null = null;
    let hypercoreSingle: DriveResult | null = null;
    if (has('hypercore')) {
      progress('hypercore: append(1000 × 21 B)');
      hypercoreBatch = await hypercoreBatchAppend(join(root, 'hypercore-batch'), EVENTS_PER_CALL, settings.peerDurationMs, settings.warmupMs);
      progress(`hypercore: append(21 B) × ${PER_EVENT_CALLERS} callers`);
      hypercoreSingle = await hypercorePerEventAppend(join(root, 'hypercore-single'), PER_EVENT_CALLERS, settings.peerDurationMs, settings.warmupMs);
      row('hypercore append([1000 × 21 B]), 1 caller', hypercoreBatch.eventsPerSecond, 'events/s', 'no fsync');
      row(`hypercore append(21 B), ${PER_EVENT_CALLERS} callers`, hypercoreSingle.eventsPerSecond, 'events/s', `no fsync; ack p50 ${Math.round(percentile(hypercoreSingle.latenciesUs, 50))} µs`);
      notes.push(HYPERCORE_DURABILITY);
      await rm(join(root, 'hypercore-batch'), { recursive: true, force: true });
      await rm(join(root, 'hypercore-single'), { recursive: true, force: true });
      settleDisk();
    }
    if (has('recovery')) {
      const recovery = await measureRecovery(root, source, settings);
      const mb = (recovery.bytes / 1e6).toFixed(0);
      row('recovery: Wal.open, dedup off, checkpoint at end', megabytesPerSecond(recovery.bytes, recovery.openNoDedupMs), 'MB/s', `${mb} MB, ${recovery.segments} segments, ${Math.round(recovery.openNoDedupMs)} ms`);
      row('recovery: Wal.open, content window on (dedup + replay half)', megabytesPerSecond(recovery.bytes, recovery.openDefaultMs), 'MB/s', `${Math.round(recovery.openDefaultMs)} ms; ${recovery.replayedEvents} objects replayed, ${recovery.dedupRebuilt} dedup rebuilt`);
      row('recovery: recoverShard verify only', megabytesPerSecond(recovery.bytes, recovery.verifyOnlyMs), 'MB/s', `${Math.round(recovery.verifyOnlyMs)} ms`);
      row('  build rate, appendMany(1000) fsync off, dedup off', recovery.buildEventsPerSecond, 'events/s', '4 callers');
      notes.push(
        `recovery: ${recovery.events} events in ${recovery.segments} segments of ${SEGMENT_BYTES >> 20} MiB; page cache NOT dropped (files just written, synced, and read once before timing), ` +
          `so MB/s is the CPU cost of read+verify+scan, not disk bandwidth; best of ${settings.recoveryRepeats} except the default open (once)`,
      );
    }

    if (single?.bare) report.ratios['appendMany(1000) 1 caller / bare loop, group 1000'] = single.drive.eventsPerSecond / single.bare.eventsPerSecond;
    if (concurrent?.bare) {
      report.ratios[`appendMany ${CONCURRENT_CALLERS} callers / bare loop, group ${concurrent.bare.groupEvents}`] =
        concurrent.drive.eventsPerSecond / concurrent.bare.eventsPerSecond;
    }
    if (withDedup?.bare) {
      report.ratios[`appendMany ${CONCURRENT_CALLERS} callers, content dedup on / bare loop, group ${withDedup.bare.groupEvents}`] =
        withDedup.drive.eventsPerSecond / withDedup.bare.eventsPerSecond;
    }
    if (perEvent && hypercoreSingle) report.ratios['append(event) / hypercore per-event append'] = perEvent.drive.eventsPerSecond / hypercoreSingle.eventsPerSecond;
    if (single && hypercoreBatch) report.ratios['appendMany(1000) 1 caller / hypercore append(1000)'] = single.drive.eventsPerSecond / hypercoreBatch.eventsPerSecond;
    if (concurrent && hypercoreBatch) report.ratios[`appendMany ${CONCURRENT_CALLERS} callers / hypercore append(1000)`] = concurrent.drive.eventsPerSecond / hypercoreBatch.eventsPerSecond;
    notes.push('tidelog rows say "full" for fsync \'full\': every acknowledged event was fdatasync\'ed first; events/s counts acknowledged events');
    notes.push(
      `bare loop: one fs.write of ${BARE_HEADER_BYTES} B header + payload, then fs.fdatasync, per batch, on libuv callbacks (no checksum, dedup, actors or promises); ` +
        `run in ${PAIRED_ROUNDS} slices alternating with the tidelog phase it is compared with, so disk drift hits both`,
    );
  } finally {
    await rm(root, { recursive: true, force: true });
  }
  report.params.loadAverageAtEnd = loadavg().map((load) => Number(load.toFixed(2)));
  printReport(report);
}
