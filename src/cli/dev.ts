// `tidelog dev` (= `npm start`): the embedded default. It starts its own nats-server (from
// PATH, a free loopback port, JetStream on, data in a temp dir), a node with a hash router,
// and a demo producer that sends as fast as acks come back, with a live line (events/s,
// acked, p99 ack latency, per-shard seqs). At the end it reads every shard back through a
// consumer and checks that every acknowledged seq holds the event that was sent, then stops
// everything. Without nats-server it says how to install it and runs on the in-process
// transport. Exit 0 only when nothing acknowledged is missing or different.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import pino from 'pino';
import { createConsumer, createProducer, type Producer } from '../client/index.ts';
import { EVENT_BYTES, encodeEvents, type SignalEvent } from '../event.ts';
import { loadConfig } from '../node/config.ts';
import { startNode, type TidelogNode } from '../node/node.ts';
import { InProcessTransport } from '../transport/in-process.ts';
import { NatsTransport } from '../transport/nats.ts';
import { NATS_INSTALL_HINT, findNatsServer, startNatsServer, type NatsServerProcess } from '../transport/nats-server-process.ts';
import type { Transport } from '../transport/transport.ts';
import { formatCount, formatLatencyUs, formatMs, formatTable } from './format.ts';
import { ExitCode, type ExitCodeValue } from './options.ts';
import { StatusLine } from './progress.ts';

export interface DevOptions {
  seconds: number;
  shards: number;
  dir?: string;
  keep?: boolean;
  /** Concurrent `send` calls of the demo producer. */
  senders: number;
  batch: number;
  forceInProcess?: boolean;
}

const NAMESPACE = 'tidelog';
/** One in this many acknowledged events is kept and compared byte for byte at the end. */
const SAMPLE_EVERY = 97;
const LATENCY_RING = 4096;

export async function runDev(options: DevOptions): Promise<ExitCodeValue> {
  const out = (text = ''): void => void process.stdout.write(`${text}\n`);
  const isTempDir = options.dir === undefined;
  const dir = options.dir === undefined ? await mkdtemp(join(tmpdir(), 'tidelog-dev-')) : resolve(options.dir);
  const cleanups: Array<() => Promise<void>> = [];
  let exitCode: ExitCodeValue = ExitCode.failed;
  try {
    const { makeTransport, description } = await startTransport(options, dir, cleanups, out);
    const config = loadConfig({
      env: {},
      overrides: {
        namespace: NAMESPACE,
        dataDir: join(dir, 'node'),
        router: options.shards === 1 ? { strategy: 'single' } : { strategy: 'hash', shards: options.shards },
        log: { level: 'warn' },
      },
    });
    const nodeTransport = await makeTransport('tidelog-node');
    cleanups.push(() => nodeTransport.close());
    const node = await startNode({ config, transport: nodeTransport, logger: pino({ level: 'warn' }, pino.destination(2)) });
    cleanups.push(() => node.stop());
    out(`tidelog dev: node ${node.nodeId} serving ${options.shards} shard(s) on ${description}; data in ${dir}`);
    if (node.metricsPort !== null) out(`status page: http://127.0.0.1:${node.metricsPort}/ (and /status, /healthz, /metrics)`);
    out(`demo producer: ${options.senders} concurrent sends of ${options.batch} events, fsync ${config.wal.fsync}, for ${options.seconds} s`);
    out();
    const producerTransport = await makeTransport('tidelog-dev-producer');
    cleanups.push(() => producerTransport.close());
    const producer = await createProducer({ transport: producerTransport, namespace: NAMESPACE, producerId: 'dev-demo' });
    const load = await runLoad(producer, () => node.status().shards.map((shard) => `${shard.shard}:${formatCount(shard.hwm)}`).join(' '), options);
    await producer.close();
    out();
    const check = await readBack(producerTransport, load);
    out(renderSummary(node, load, check));
    exitCode = check.missing === 0 && check.different === 0 && check.countMismatch.length === 0 ? ExitCode.ok : ExitCode.failed;
    out(exitCode === ExitCode.ok ? 'PASS: every acknowledged event was read back.' : 'FAIL: acknowledged events are missing or different.');
  } catch (error) {
    process.stderr.write(`tidelog dev: FAILED: ${error instanceof Error ? error.message : String(error)}\n`);
  } finally {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
    if (isTempDir && options.keep !== true) await rm(dir, { recursive: true, force: true });
  }
  return exitCode;
}

async function startTransport(
  options: DevOptions,
  dir: string,
  cleanups: Array<() => Promise<void>>,
  out: (text?: string) => void,
): Promise<{ makeTransport: (name: string) => Promise<Transport>; description: string }> {
  const binary = options.forceInProcess === true ? null : findNatsServer();
  if (binary === null) {
    if (options.forceInProcess !== true) {
      out(`tidelog dev: nats-server is not on PATH. ${NATS_INSTALL_HINT}`);
      out('tidelog dev: running on the in-process transport instead (same node, no network).');
    }
    const shared = new InProcessTransport();
    cleanups.push(() => shared.close());
    return { makeTransport: () => Promise.resolve(shared), description: 'the in-process transport' };
  }
  const server: NatsServerProcess = await startNatsServer({ jetStream: true, storeDir: join(dir, 'nats'), binary });
  cleanups.push(() => server.stop());
  return {
    makeTransport: (name) => NatsTransport.connect({ servers: [server.url], name }),
    description: `nats-server ${server.url} (pid ${server.pid}, JetStream on)`,
  };
}

export interface LoadResult {
  acked: number;
  elapsedMs: number;
  /** Acked non-duplicate seqs per shard. */
  ackedPerShard: Map<number, number>;
  samples: Map<string, Uint8Array>;
  latencyUsP50: number;
  latencyUsP99: number;
}

/** The demo producer's senders until options.seconds pass; `shardsText` feeds the live line. */
export async function runLoad(
  producer: Producer,
  shardsText: () => string,
  options: Pick<DevOptions, 'seconds' | 'senders' | 'batch'> & { abortSignal?: AbortSignal },
): Promise<LoadResult> {
  const status = new StatusLine(process.stdout);
  const ackedPerShard = new Map<number, number>();
  const samples = new Map<string, Uint8Array>();
  const latencies = new Float64Array(LATENCY_RING);
  const allLatencies: number[] = [];
  let latencyCount = 0;
  let acked = 0;
  let counter = 0;
  const startedMs = performance.now();
  const deadlineMs = startedMs + options.seconds * 1000;
  let lastTickMs = startedMs;
  let lastTickAcked = 0;
  const render = (): void => {
    const nowMs = performance.now();
    const rate = ((acked - lastTickAcked) * 1000) / Math.max(1, nowMs - lastTickMs);
    lastTickMs = nowMs;
    lastTickAcked = acked;
    const window = latencies.slice(0, Math.min(latencyCount, LATENCY_RING)).sort();
    const p99 = window.length === 0 ? null : window[Math.min(window.length - 1, Math.floor(window.length * 0.99))];
    status.update(
      `  ${((nowMs - startedMs) / 1000).toFixed(1)} s  ${formatCount(rate)} events/s  acked ${formatCount(acked)}  ` +
        `p99 ack ${p99 === null ? '-' : formatLatencyUs(p99)}  ${shardsText()}`,
      true,
    );
  };
  const ticker = setInterval(render, 1000);
  const sender = async (senderId: number): Promise<void> => {
    while (performance.now() < deadlineMs && options.abortSignal?.aborted !== true) {
      const events: SignalEvent[] = [];
      for (let index = 0; index < options.batch; index++) events.push(demoEvent(senderId, counter++));
      const packed = encodeEvents(events);
      const sentMs = performance.now();
      const acks = await producer.send(packed);
      const latencyUs = (performance.now() - sentMs) * 1000;
      latencies[latencyCount++ % LATENCY_RING] = latencyUs;
      if (allLatencies.length < 1_000_000) allLatencies.push(latencyUs);
      for (let index = 0; index < acks.length; index++) {
        const { shard, seq } = acks[index];
        if (seq === 0) continue;
        acked++;
        ackedPerShard.set(shard, (ackedPerShard.get(shard) ?? 0) + 1);
        if (seq % SAMPLE_EVERY === 0) samples.set(`${shard}:${seq}`, packed.slice(index * EVENT_BYTES, (index + 1) * EVENT_BYTES));
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: options.senders }, (_, senderId) => sender(senderId)));
  } finally {
    clearInterval(ticker);
  }
  status.clear();
  allLatencies.sort((a, b) => a - b);
  const at = (fraction: number): number => allLatencies[Math.min(allLatencies.length - 1, Math.floor(allLatencies.length * fraction))] ?? 0;
  return { acked, elapsedMs: performance.now() - startedMs, ackedPerShard, samples, latencyUsP50: at(0.5), latencyUsP99: at(0.99) };
}

/** Distinct content for every event (so the dedup window keeps all), spread over entities. */
function demoEvent(senderId: number, counter: number): SignalEvent {
  const entity = (counter * 2_654_435_761) % 100_000;
  return {
    entityId: BigInt(entity + 1),
    signalType: 1 + (counter % 5),
    weight: 1 + (counter % 7),
    timestampNs: BigInt(Date.now()) * 1_000_000n + BigInt((senderId << 20) + (counter & 0xfffff)),
  };
}

export interface ReadBackCheck {
  readEvents: number;
  missing: number;
  different: number;
  countMismatch: string[];
  elapsedMs: number;
}

export async function readBack(transport: Transport, load: LoadResult, namespace = NAMESPACE): Promise<ReadBackCheck> {
  const startedMs = performance.now();
  const consumer = await createConsumer({ transport, namespace });
  const check: ReadBackCheck = { readEvents: 0, missing: 0, different: 0, countMismatch: [], elapsedMs: 0 };
  const remaining = new Map(load.samples);
  try {
    for (const [shard, ackedCount] of [...load.ackedPerShard.entries()].sort((a, b) => a[0] - b[0])) {
      let count = 0;
      let expectedSeq = 1;
      for await (const { seq, event } of consumer.read({ shard, fromSeq: 1 })) {
        if (seq !== expectedSeq) check.missing += seq - expectedSeq;
        expectedSeq = seq + 1;
        count++;
        const key = `${shard}:${seq}`;
        const sample = remaining.get(key);
        if (sample !== undefined) {
          remaining.delete(key);
          if (!bytesEqual(sample, encodeEvents([event]))) check.different++;
        }
      }
      check.readEvents += count;
      // The demo producer is the only writer of a fresh data dir: counts must match exactly.
      if (count !== ackedCount) check.countMismatch.push(`shard ${shard}: acked ${ackedCount}, read ${count}`);
    }
  } finally {
    await consumer.close();
  }
  check.missing += remaining.size;
  check.elapsedMs = performance.now() - startedMs;
  return check;
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  for (let index = 0; index < a.byteLength; index++) if (a[index] !== b[index]) return false;
  return true;
}

function renderSummary(node: TidelogNode, load: LoadResult, check: ReadBackCheck): string {
  const rate = (load.acked * 1000) / Math.max(1, load.elapsedMs);
  const rows = node.status().shards.map((shard) => [
    String(shard.shard),
    formatCount(shard.hwm),
    formatCount(load.ackedPerShard.get(shard.shard) ?? 0),
    String(shard.segments),
    formatCount(shard.entities),
  ]);
  return [
    formatTable(['shard', 'last seq', 'acked', 'segments', 'entities'], rows),
    '',
    `acked ${formatCount(load.acked)} events in ${formatMs(load.elapsedMs)} = ${formatCount(rate)} events/s durable; ` +
      `ack latency p50 ${formatLatencyUs(load.latencyUsP50)} p99 ${formatLatencyUs(load.latencyUsP99)}`,
    `read back ${formatCount(check.readEvents)} events in ${formatMs(check.elapsedMs)}: ` +
      `${check.missing} missing, ${check.different} different of ${load.samples.size} compared byte for byte` +
      (check.countMismatch.length > 0 ? `; ${check.countMismatch.join('; ')}` : ''),
  ].join('\n');
}
