// `npm run bench -- state`: the engine at production scale — shards of millions of entities.
//
//   ingest N   producer → NATS → a `tidelog serve` child (one shard, fsync full, defaults) of
//              2·N events: every one of N entities gets a view, then every one a click (N
//              entities × 2 signal types with windowed counts). Events/s acked durable, node
//              RSS per entity (RSS after − RSS of the empty node), bytes on disk per event byte
//              (segments + snapshot files), then kill -9 and restart: time to ready, and the
//              state() of sampled entities before and after must be equal.
//   restart G  a shard of 1 M entities with G GiB of log built in-process (fsync off, the WAL
//              with the node's shard state and its snapshot policy), then a timed reopen in a
//              fresh process, as a restart is: the newest snapshot + the log after it.
//   snapshot   ack latency while a large snapshot is written: a shard of --snapshot-entities
//              (default 600 k) entities × 2 signal types (a ~100 MB snapshot), the WAL with
//              the node's shard state, fsync full, paced appendMany(100) at 100 k events/s
//              against existing entities; p50/p99 from each call's scheduled time (a stalled
//              event loop counts) with no snapshot running, then while snapshots are written
//              back to back. Ratio: p99 during / p99 without (target ≤ 2).
// Flags: --entities a,b (default 1000000,5000000), --log-gib a,b (default 1,4), --quick
// (100k entities, 0.25 GiB), --only=ingest,restart,snapshot. Progress goes to stderr.

import { spawnSync } from 'node:child_process';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createConsumer, createProducer } from '../src/client/index.ts';
import { defaultSignalSchema } from '../src/crdt/index.ts';
import { ShardHost } from '../src/node/shard-host.ts';
import { ShardState } from '../src/node/shard-state.ts';
import { Wal } from '../src/wal/index.ts';
import { NatsTransport } from '../src/transport/nats.ts';
import { startNatsServer } from '../src/transport/nats-server-process.ts';
import { NodeProcess } from '../test/support/node-process.ts';
import { newReport, percentile, printReport, runBenchChild, type BenchReport } from './report.ts';

const EVENT_BYTES = 21;
const BATCH_EVENTS = 1000;
const SENDERS = 16;
const SAMPLED_ENTITIES = 200;

function progress(message: string): void {
  process.stderr.write(`[bench state] ${message}\n`);
}

function listArg(argv: readonly string[], name: string, fallback: number[]): number[] {
  const index = argv.indexOf(`--${name}`);
  if (index < 0 || index + 1 >= argv.length) return fallback;
  return argv[index + 1].split(',').map(Number);
}

/** The events of batch `index` of an ingest over `entities`: views of all, then clicks of all. */
function ingestBatch(index: number, entities: number, baseNs: bigint): Uint8Array {
  const bytes = new Uint8Array(BATCH_EVENTS * EVENT_BYTES);
  const view = new DataView(bytes.buffer);
  for (let slot = 0; slot < BATCH_EVENTS; slot++) {
    const n = index * BATCH_EVENTS + slot;
    const entity = (n % entities) + 1;
    const signalType = n < entities ? 1 : 2;
    const at = slot * EVENT_BYTES;
    view.setUint32(at, entity >>> 0, true);
    view.setUint32(at + 4, Math.floor(entity / 2 ** 32), true);
    view.setUint8(at + 8, signalType);
    view.setFloat32(at + 9, 1, true);
    view.setBigUint64(at + 13, baseNs + BigInt(n) * 1000n, true);
  }
  return bytes;
}

function rssBytes(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return match === null ? Number.NaN : Number(match[1]) * 1024;
}

async function walBytes(dir: string): Promise<{ segments: number; snapshots: number }> {
  let segments = 0;
  let snapshots = 0;
  for (const name of await readdir(dir)) {
    const size = (await stat(join(dir, name))).size;
    if (name.endsWith('.seg')) segments += size;
    else if (name.endsWith('.snap')) snapshots += size;
  }
  return { segments, snapshots };
}

async function ingest(report: BenchReport, entities: number): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'tidelog-bench-state-'));
  const server = await startNatsServer({ jetStream: false });
  let node: NodeProcess | null = null;
  const transport = await NatsTransport.connect({ servers: [server.url], name: 'bench-state' });
  try {
    const config = { namespace: 'state', nats: { servers: [server.url] }, router: { strategy: 'single' } };
    node = await NodeProcess.start({ dir, config });
    const emptyRss = rssBytes(node.pid);
    const producer = await createProducer({ transport, namespace: 'state', producerId: `bench-state-${entities}` });
    const batches = Math.ceil((2 * entities) / BATCH_EVENTS);
    const baseNs = BigInt(Date.now()) * 1_000_000n - 3_600_000_000_000n;
    let next = 0;
    let acked = 0;
    const startMs = performance.now();
    let lastReportMs = startMs;
    const pid = node.pid;
    let peakRss = emptyRss;
    const sender = async (): Promise<void> => {
      while (next < batches) {
        const index = next++;
        const acks = await producer.send(ingestBatch(index, entities, baseNs));
        acked += acks.length;
        const nowMs = performance.now();
        if (nowMs - lastReportMs > 2000) {
          lastReportMs = nowMs;
          peakRss = Math.max(peakRss, rssBytes(pid));
          progress(`ingest ${entities}: ${acked.toLocaleString('en-US')} acked, ${Math.round(acked / ((nowMs - startMs) / 1000)).toLocaleString('en-US')} events/s, node RSS ${Math.round(rssBytes(pid) / 2 ** 20)} MiB`);
        }
      }
    };
    await Promise.all(Array.from({ length: SENDERS }, sender));
    const elapsedMs = performance.now() - startMs;
    await producer.close();
    const endRss = rssBytes(pid);
    peakRss = Math.max(peakRss, endRss);
    const walDir = join(dir, 'data', 'wal');
    const disk = await walBytes(walDir);
    const consumer = await createConsumer({ transport, namespace: 'state' });
    const sample = Array.from({ length: SAMPLED_ENTITIES }, (_, index) => BigInt(1 + Math.floor((index * entities) / SAMPLED_ENTITIES)));
    const before = await Promise.all(sample.map((entityId) => consumer.state(entityId)));
    await node.kill();
    const restartStartMs = performance.now();
    node = await node.restart();
    const restartMs = performance.now() - restartStartMs;
    const after = await Promise.all(sample.map((entityId) => consumer.state(entityId)));
    await consumer.close();
    const mismatched = sample.filter((_, index) => JSON.stringify(stripTime(before[index])) !== JSON.stringify(stripTime(after[index]))).length;
    const label = `${(entities / 1e6).toString()} M entities × 2 signals`;
    report.rows.push(
      { name: `ingest ${label}: events/s acked durable`, value: (acked * 1000) / elapsedMs, unit: 'events/s', note: `${acked.toLocaleString('en-US')} events` },
      { name: `  node RSS per entity`, value: (endRss - emptyRss) / entities, unit: 'B', note: `RSS ${Math.round(endRss / 2 ** 20)} MiB (empty node ${Math.round(emptyRss / 2 ** 20)} MiB, peak ${Math.round(peakRss / 2 ** 20)} MiB)` },
      {
        name: `  bytes on disk per event byte`,
        value: (disk.segments + disk.snapshots) / (acked * EVENT_BYTES),
        unit: '×',
        note: `segments ${Math.round(disk.segments / 2 ** 20)} MiB + snapshots ${Math.round(disk.snapshots / 2 ** 20)} MiB for ${Math.round((acked * EVENT_BYTES) / 2 ** 20)} MiB of events`,
      },
      { name: `  kill -9, restart to ready`, value: restartMs, unit: 'ms', note: `process start included; state() of ${SAMPLED_ENTITIES} entities equal after: ${mismatched === 0 ? 'yes' : `NO (${mismatched} differ)`}` },
    );
    if (mismatched > 0) throw new Error(`${mismatched} sampled entities answered differently after the restart`);
  } finally {
    await node?.stop();
    await transport.close();
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

/** A state reply without the fields that move with the query time. */
function stripTime(reply: unknown): unknown {
  return JSON.parse(JSON.stringify(reply, (key, value: unknown) => (key === 'score' ? undefined : typeof value === 'bigint' ? value.toString() : value)));
}

/** The restart phase's shard: one shard of the node's default schema in `dir`. */
function openRestartShard(dir: string, fsync: 'off' | 'full'): Promise<ShardHost> {
  return ShardHost.open({
    shard: 0,
    dataDir: dir,
    wal: { fsync },
    epoch: 0,
    schema: defaultSignalSchema(),
    sessions: {},
    recentBytes: 32 << 20,
    publishFeed: () => undefined,
  });
}

interface ReopenResult {
  openMs: number;
  phasesMs: { restore: number; scan: number; syncClosed: number };
  restoredFrom: string;
  restoredSeq: number;
  scannedSegments: number;
  segments: number;
  bytesScanned: number;
  entities: number;
}

/** The restart phase's child: opens the shard in `dir` as a node does and prints the timing. */
async function reopenChild(dir: string): Promise<void> {
  const startMs = performance.now();
  const host = await openRestartShard(dir, 'full');
  const openMs = performance.now() - startMs;
  const { recovery } = host;
  const result: ReopenResult = {
    openMs,
    phasesMs: recovery.phasesMs,
    restoredFrom: recovery.restoredFrom.source,
    restoredSeq: recovery.restoredFrom.seq,
    scannedSegments: recovery.scannedSegments,
    segments: recovery.segments,
    bytesScanned: recovery.bytesScanned,
    entities: host.state.entityCount,
  };
  await host.close();
  console.log(JSON.stringify(result));
}

async function restart(report: BenchReport, logGiB: number, entities: number): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'tidelog-bench-restart-'));
  try {
    // Built without fsync (fast), written back with sync(1), then reopened as a node opens it.
    const host = await openRestartShard(dir, 'off');
    const targetBytes = logGiB * 2 ** 30;
    const baseNs = BigInt(Date.now()) * 1_000_000n - 3_600_000_000_000n;
    let index = 0;
    // Appends carry a producer session, as the producer client's do (no content dedup).
    let requestSeq = 0;
    const buildStartMs = performance.now();
    let lastReportMs = buildStartMs;
    while (host.stats().logBytes < targetBytes) {
      const calls: Array<Promise<unknown>> = [];
      for (let call = 0; call < 16; call++) {
        calls.push(host.append(ingestBatch(index++, entities, baseNs), { producerId: 'bench-restart', sessionEpoch: 1, requestSeq: ++requestSeq }));
      }
      await Promise.all(calls);
      if (performance.now() - lastReportMs > 5000) {
        lastReportMs = performance.now();
        const stats = host.stats();
        progress(`restart ${logGiB} GiB: built ${Math.round(stats.logBytes / 2 ** 20)} MiB, ${stats.snapshots.taken} snapshots`);
      }
    }
    await host.close();
    const built = host.stats();
    progress(`restart ${logGiB} GiB: ${Math.round(built.logBytes / 2 ** 20)} MiB of log in ${Math.round((performance.now() - buildStartMs) / 1000)} s; reopening`);
    spawnSync('sync');
    // A restart is a new process: the reopen runs in one, so nothing this build allocated (a
    // heap that held the state, the page cache it filled) is counted for or against it.
    const reopened = runBenchChild<ReopenResult>('state', [], `--reopen-child=${dir}`);
    report.rows.push({
      name: `restart: ${(entities / 1e6).toString()} M entities, ${logGiB} GiB of log`,
      value: reopened.openMs,
      unit: 'ms',
      note: `restore ${Math.round(reopened.phasesMs.restore)} ms, scan ${Math.round(reopened.phasesMs.scan)} ms, sync ${Math.round(reopened.phasesMs.syncClosed)} ms; restored from ${reopened.restoredFrom} at seq ${reopened.restoredSeq.toLocaleString('en-US')}, scanned ${reopened.scannedSegments} of ${reopened.segments} segments (${Math.round(reopened.bytesScanned / 2 ** 20)} MiB), ${reopened.entities.toLocaleString('en-US')} entities; a fresh process, ${Math.round(reopened.childWallMs)} ms from spawn to exit`,
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const PACED_CALL_EVENTS = 100;
const PACED_CALLS_PER_SECOND = 1000;

interface PacedResult {
  calls: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

/**
 * Paced appendMany(100) at 100 k events/s for `durationMs` over entities 1..entities (existing:
 * no growth). Latency runs from each call's scheduled time to its ack, so a call the event loop
 * could not send on time counts its delay. `isCounted` (checked when a call is scheduled) picks
 * the calls that enter the result.
 */
async function paced(wal: Wal, entities: number, durationMs: number, isCounted: () => boolean): Promise<PacedResult> {
  const latencies: number[] = [];
  const pending = new Set<Promise<void>>();
  const baseNs = BigInt(Date.now()) * 1_000_000n;
  const startMs = performance.now();
  const intervalMs = 1000 / PACED_CALLS_PER_SECOND;
  let call = 0;
  let seed = 12345;
  while (performance.now() - startMs < durationMs) {
    const dueMs = startMs + call * intervalMs;
    const waitMs = dueMs - performance.now();
    if (waitMs > 0.5) await new Promise((resolve) => setTimeout(resolve, waitMs));
    const bytes = new Uint8Array(PACED_CALL_EVENTS * EVENT_BYTES);
    const view = new DataView(bytes.buffer);
    for (let slot = 0; slot < PACED_CALL_EVENTS; slot++) {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      const at = slot * EVENT_BYTES;
      view.setUint32(at, (seed % entities) + 1, true);
      view.setUint8(at + 8, 1);
      view.setFloat32(at + 9, 1, true);
      view.setBigUint64(at + 13, baseNs + BigInt(call * PACED_CALL_EVENTS + slot) * 1000n, true);
    }
    const counted = isCounted();
    const sent = wal.appendMany(bytes, { dedup: false }).then(() => {
      if (counted) latencies.push(performance.now() - dueMs);
      pending.delete(sent);
    });
    pending.add(sent);
    call++;
    if (pending.size > 10_000) throw new Error('paced: more than 10,000 calls outstanding; the WAL cannot keep up');
  }
  await Promise.all(pending);
  return { calls: latencies.length, p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99), maxMs: Math.max(0, ...latencies) };
}

async function snapshotImpact(report: BenchReport, entities: number): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'tidelog-bench-snapshot-'));
  const schema = defaultSignalSchema();
  const open = async (fsync: 'off' | 'full') => {
    const state = new ShardState({ shard: 0, schema, sessions: {} });
    // Snapshots only when asked: the baseline must not overlap one the policy started.
    const { wal } = await Wal.open({ dir, shard: 0, fsync, stateMachine: state, snapshotMinLogBytes: Number.MAX_SAFE_INTEGER, dedupWindowMs: 0 });
    return wal;
  };
  try {
    const build = await open('off');
    const baseNs = BigInt(Date.now()) * 1_000_000n - 3_600_000_000_000n;
    const batches = Math.ceil((2 * entities) / BATCH_EVENTS);
    for (let index = 0; index < batches; index += SENDERS) {
      const calls: Array<Promise<unknown>> = [];
      for (let call = index; call < Math.min(batches, index + SENDERS); call++) calls.push(build.appendMany(ingestBatch(call, entities, baseNs), { dedup: false }));
      await Promise.all(calls);
      if (index % (SENDERS * 200) === 0) progress(`snapshot: built ${index * BATCH_EVENTS} of ${batches * BATCH_EVENTS} events`);
    }
    await build.takeSnapshot();
    await build.close();
    spawnSync('sync');
    const wal = await open('full');
    try {
      const first = await wal.takeSnapshot();
      const snapshotBytes = first?.bytes ?? 0;
      progress(`snapshot: ${entities.toLocaleString('en-US')} entities, snapshot ${Math.round(snapshotBytes / 2 ** 20)} MiB; paced baseline`);
      await paced(wal, entities, 2000, () => false); // warm-up
      const baseline = await paced(wal, entities, 15_000, () => true);
      progress(`snapshot: baseline p99 ${baseline.p99Ms.toFixed(2)} ms; now with snapshots written back to back`);
      let isSnapshotting = true;
      let snapshots = 0;
      let snapshotMs = 0;
      const writer = (async () => {
        while (isSnapshotting) {
          const startMs = performance.now();
          await wal.takeSnapshot();
          snapshotMs += performance.now() - startMs;
          snapshots++;
        }
      })();
      const during = await paced(wal, entities, 15_000, () => wal.stats().snapshots.isRunning);
      isSnapshotting = false;
      await writer;
      const ratio = baseline.p99Ms === 0 ? 0 : during.p99Ms / baseline.p99Ms;
      report.rows.push(
        {
          name: `snapshot: ack p99, paced 100 k events/s, no snapshot (${(entities / 1e6).toString()} M entities)`,
          value: baseline.p99Ms,
          unit: 'ms',
          note: `p50 ${baseline.p50Ms.toFixed(2)} ms, max ${baseline.maxMs.toFixed(2)} ms over ${baseline.calls} calls of ${PACED_CALL_EVENTS} events; fsync full`,
        },
        {
          name: `snapshot: ack p99 while a ${Math.round(snapshotBytes / 1e6)} MB snapshot is written`,
          value: during.p99Ms,
          unit: 'ms',
          note: `p50 ${during.p50Ms.toFixed(2)} ms, max ${during.maxMs.toFixed(2)} ms over ${during.calls} calls; ${snapshots} snapshots, ${Math.round(snapshotMs / Math.max(1, snapshots))} ms each, longest slice ${wal.stats().snapshots.lastLongestSliceMs.toFixed(1)} ms`,
        },
      );
      report.ratios[`ack p99 during a ${Math.round(snapshotBytes / 1e6)} MB snapshot / without (target ≤ 2)`] = ratio;
    } finally {
      await wal.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export async function main(argv: string[]): Promise<void> {
  const reopenDir = argv.find((arg) => arg.startsWith('--reopen-child='))?.slice('--reopen-child='.length);
  if (reopenDir !== undefined) return reopenChild(reopenDir);
  const isQuick = argv.includes('--quick');
  const only = argv.find((arg) => arg.startsWith('--only='))?.slice('--only='.length).split(',');
  const runs = (phase: string): boolean => only === undefined || only.includes(phase);
  const entitiesList = listArg(argv, 'entities', isQuick ? [100_000] : [1_000_000, 5_000_000]);
  const logList = listArg(argv, 'log-gib', isQuick ? [0.25] : [1, 4]);
  const restartEntities = isQuick ? 100_000 : 1_000_000;
  const report = newReport('state', { entities: entitiesList, logGiB: logList, restartEntities, senders: SENDERS, batchEvents: BATCH_EVENTS });
  if (runs('ingest')) for (const entities of entitiesList) await ingest(report, entities);
  if (runs('restart')) for (const logGiB of logList) await restart(report, logGiB, restartEntities);
  if (runs('snapshot')) await snapshotImpact(report, listArg(argv, 'snapshot-entities', [isQuick ? 200_000 : 600_000])[0]);
  printReport(report);
}
