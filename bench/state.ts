// `npm run bench -- state`: the engine at production scale — shards of millions of entities.
//
//   ingest N   producer → NATS → a `tidelog serve` child (one shard, fsync full, defaults) of
//              2·N events: every one of N entities gets a view, then every one a click (N
//              entities × 2 signal types with windowed counts). Events/s acked durable, node
//              RSS per entity (RSS after − RSS of the empty node), bytes on disk per event byte
//              (segments + snapshot files), then kill -9 and restart: time to ready, and the
//              state() of sampled entities before and after must be equal.
//   restart G  a shard of 1 M entities with G GiB of log built in-process (fsync off, the WAL
//              with the node's shard state and its snapshot policy), then a timed reopen: the
//              newest snapshot + the log after it.
// Flags: --entities a,b (default 1000000,5000000), --log-gib a,b (default 1,4), --quick
// (100k entities, 0.25 GiB), --only=ingest,restart. Progress goes to stderr.

import { spawnSync } from 'node:child_process';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createConsumer, createProducer } from '../src/client/index.ts';
import { defaultSignalSchema } from '../src/crdt/index.ts';
import { ShardHost } from '../src/node/shard-host.ts';
import { NatsTransport } from '../src/transport/nats.ts';
import { startNatsServer } from '../src/transport/nats-server-process.ts';
import { NodeProcess } from '../test/support/node-process.ts';
import { newReport, printReport, type BenchReport } from './report.ts';

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

async function restart(report: BenchReport, logGiB: number, entities: number): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'tidelog-bench-restart-'));
  const schema = defaultSignalSchema();
  const open = (fsync: 'off' | 'full'): Promise<ShardHost> =>
    ShardHost.open({
      shard: 0,
      dataDir: dir,
      wal: { fsync },
      epoch: 0,
      schema,
      sessions: {},
      recentBytes: 32 << 20,
      publishFeed: () => undefined,
    });
  try {
    // Built without fsync (fast), written back with sync(1), then reopened as a node opens it.
    const host = await open('off');
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
    const startMs = performance.now();
    const reopened = await open('full');
    const restartMs = performance.now() - startMs;
    const { recovery } = reopened;
    const entityCount = reopened.state.entityCount;
    await reopened.close();
    report.rows.push({
      name: `restart: ${(entities / 1e6).toString()} M entities, ${logGiB} GiB of log`,
      value: restartMs,
      unit: 'ms',
      note: `restore ${Math.round(recovery.phasesMs.restore)} ms, scan ${Math.round(recovery.phasesMs.scan)} ms, sync ${Math.round(recovery.phasesMs.syncClosed)} ms; restored from ${recovery.restoredFrom.source} at seq ${recovery.restoredFrom.seq.toLocaleString('en-US')}, scanned ${recovery.scannedSegments} of ${recovery.segments} segments (${Math.round(recovery.bytesScanned / 2 ** 20)} MiB), ${entityCount.toLocaleString('en-US')} entities`,
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export async function main(argv: string[]): Promise<void> {
  const isQuick = argv.includes('--quick');
  const only = argv.find((arg) => arg.startsWith('--only='))?.slice('--only='.length).split(',');
  const runs = (phase: string): boolean => only === undefined || only.includes(phase);
  const entitiesList = listArg(argv, 'entities', isQuick ? [100_000] : [1_000_000, 5_000_000]);
  const logList = listArg(argv, 'log-gib', isQuick ? [0.25] : [1, 4]);
  const restartEntities = isQuick ? 100_000 : 1_000_000;
  const report = newReport('state', { entities: entitiesList, logGiB: logList, restartEntities, senders: SENDERS, batchEvents: BATCH_EVENTS });
  if (runs('ingest')) for (const entities of entitiesList) await ingest(report, entities);
  if (runs('restart')) for (const logGiB of logList) await restart(report, logGiB, restartEntities);
  printReport(report);
}
