// `npm run bench -- ingest`: producer → NATS → node → fdatasync → ack, against JetStream fed
// the same events on the same nats-server in the same run.
//
//   tidelog  : a `tidelog serve` child process (fsync full, hash router), this process runs
//              the producer client (sessions on, batches of --batch events, --senders
//              concurrent sends); events/s acknowledged durable and ack latency per send.
//   tidelog at a fixed rate (default 100 k events/s): ack latency p50/p99 when not saturated.
//   JetStream per event: one message per event (21 B) with Nats-Msg-Id, async publish with a
//              window of 1000 in flight (a file stream; nats-server 2.9 acks before fsync).
//   JetStream batched: one message per 1000 packed events (21 KB), window of 64.
//   bare durable responder (peers/bare-responder.ts): a Node process that answers only after
//              write + fdatasync with group commit (no fdatasync unless --fsync full), and does
//              nothing else; driven with the same payloads, senders or pace, one request per
//              shard per send. The floor of any service that acks after fsync over NATS here.
//
// Flags: --seconds <s> (per run, default 5), --senders <n> (16), --batch <n> (1000),
//        --shards <n> (2), --rate <events/s> (100000), --fsync full|normal|off (full),
//        --wal-linger-ms <ms> (node's wal.batchLingerMs; default: the node's default),
//        --cpu-prof-dir <dir> (a V8 CPU profile of the node process, written when it stops),
//        --only=saturated,paced,bare,peers (phases to run; default all; bare runs the phases
//        tidelog ran; without bare and peers no ratios),
//        --producer-linger-ms <ms> (0: a batch closes at the end of the event-loop turn; the
//        producer's own default of 1 adds ≥ 1 ms of timer to every paced ack, and saturated
//        batches fill up without it).
// Pacing stays on setTimeout: a setImmediate spin measured worse (p99 ≈ 14 ms vs 7 ms) as it
// takes CPU from the node and nats-server on a 2-core machine; latency counts from the
// actual send, so a late tick does not inflate it.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { createProducer } from '../src/client/index.ts';
import { EVENT_BYTES, encodeEvents, type SignalEvent } from '../src/event.ts';
import { NatsTransport } from '../src/transport/nats.ts';
import { startNatsServer } from '../src/transport/nats-server-process.ts';
import { NodeProcess } from '../test/support/node-process.ts';
import { BareResponder } from './peers/bare-responder.ts';
import { newReport, percentile, printReport, type BenchReport } from './report.ts';

interface Params {
  seconds: number;
  senders: number;
  batch: number;
  shards: number;
  rate: number;
  fsync: string;
  walLingerMs: number | undefined;
  producerLingerMs: number;
  /** Write a V8 CPU profile of the node process here (--cpu-prof-dir <dir>). */
  cpuProfileDir: string | undefined;
  /** Phases to run (--only=saturated,paced,peers; default all): for profiling one of them. */
  phases: Set<string>;
}

function parse(argv: string[]): Params {
  const value = (name: string, fallback: string): string => {
    const index = argv.indexOf(`--${name}`);
    return index >= 0 && index + 1 < argv.length ? argv[index + 1] : fallback;
  };
  return {
    seconds: Number(value('seconds', '5')),
    senders: Number(value('senders', '16')),
    batch: Number(value('batch', '1000')),
    shards: Number(value('shards', '2')),
    rate: Number(value('rate', '100000')),
    fsync: value('fsync', 'full'),
    walLingerMs: argv.includes('--wal-linger-ms') ? Number(value('wal-linger-ms', '0')) : undefined,
    producerLingerMs: Number(value('producer-linger-ms', '0')),
    cpuProfileDir: argv.includes('--cpu-prof-dir') ? value('cpu-prof-dir', '.') : undefined,
    phases: new Set((argv.find((arg) => arg.startsWith('--only='))?.slice('--only='.length) ?? 'saturated,paced,bare,peers').split(',')),
  };
}

let eventCounter = 0;
/** Distinct events (distinct content, so no dedup hits) spread over 1 M entities. */
function makePacked(count: number): Uint8Array {
  const events: SignalEvent[] = [];
  for (let index = 0; index < count; index++) {
    const n = eventCounter++;
    events.push({
      entityId: BigInt((n * 2_654_435_761) % 1_000_000) + 1n,
      signalType: 1 + (n % 5),
      weight: 1,
      timestampNs: 1_700_000_000_000_000_000n + BigInt(n),
    });
  }
  return encodeEvents(events);
}

export async function main(argv: string[]): Promise<void> {
  const params = parse(argv);
  const report = newReport('ingest', { ...params });
  const dir = await mkdtemp(join(tmpdir(), 'tidelog-bench-ingest-'));
  const server = await startNatsServer({ jetStream: true, storeDir: join(dir, 'nats') });
  let node: NodeProcess | null = null;
  try {
    node = await NodeProcess.start({
      dir,
      config: {
        namespace: 'bench',
        nats: { servers: [server.url] },
        router: params.shards === 1 ? { strategy: 'single' } : { strategy: 'hash', shards: params.shards },
        wal: { fsync: params.fsync, ...(params.walLingerMs === undefined ? {} : { batchLingerMs: params.walLingerMs }) },
      },
      ...(params.cpuProfileDir === undefined ? {} : { execArgv: ['--cpu-prof', '--cpu-prof-dir', params.cpuProfileDir] }),
    });
    const transport = await NatsTransport.connect({ servers: [server.url], name: 'bench-producer' });
    try {
      const tidelogRun: { saturated?: RunResult; paced?: RunResult } = {};
      if (params.phases.has('saturated')) {
        const run = await withProducer(transport, params, 'saturated', saturated);
        tidelogRun.saturated = run;
        report.rows.push(
          { name: 'tidelog: events/s acked durable', value: run.eventsPerSecond, unit: 'events/s', note: `${params.senders} senders × ${params.batch}` },
          { name: 'tidelog: ack latency p50 (saturated)', value: run.p50Us, unit: 'µs' },
          { name: 'tidelog: ack latency p99 (saturated)', value: run.p99Us, unit: 'µs' },
        );
      }
      if (params.phases.has('paced')) {
        const run = await withProducer(transport, params, 'paced', paced);
        tidelogRun.paced = run;
        report.rows.push(
          { name: `tidelog: achieved rate (target ${params.rate})`, value: run.eventsPerSecond, unit: 'events/s' },
          { name: 'tidelog: ack latency p50 (paced)', value: run.p50Us, unit: 'µs' },
          { name: 'tidelog: ack latency p99 (paced)', value: run.p99Us, unit: 'µs' },
        );
      }
      const bareEventsPerSecond = params.phases.has('bare') ? await bareResponderRows(server.url, dir, params, report, tidelogRun) : Number.NaN;
      const nc = params.phases.has('peers') ? await connect({ servers: [server.url], name: 'bench-jetstream' }) : null;
      try {
        if (nc !== null) await jetStreamRows(nc, params, report, tidelogRun.saturated?.eventsPerSecond ?? Number.NaN, bareEventsPerSecond);
      } finally {
        await nc?.close();
      }
    } finally {
      await transport.close();
    }
  } finally {
    await node?.stop();
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  }
  printReport(report);
}

/**
 * The bare durable responder (peers/bare-responder.ts), driven like tidelog in each phase
 * tidelog ran: the floor of any service that acks after fdatasync over NATS on this machine.
 * Resolves with its saturated events/s (NaN when tidelog ran no saturated phase).
 */
async function bareResponderRows(url: string, dir: string, params: Params, report: BenchReport, tidelog: { saturated?: RunResult; paced?: RunResult }): Promise<number> {
  const responder = await BareResponder.start(url, dir, params.shards, params.fsync === 'full');
  let saturatedEventsPerSecond = Number.NaN;
  try {
    const send: Send = async (payload) => {
      await responder.request(payload);
      return payload.byteLength / EVENT_BYTES;
    };
    if (tidelog.saturated !== undefined) {
      const bare = await saturated(params, send);
      saturatedEventsPerSecond = bare.eventsPerSecond;
      report.rows.push(
        { name: 'bare durable responder: events/s', value: bare.eventsPerSecond, unit: 'events/s', note: `${params.senders} senders × ${params.batch}, group commit, no parsing` },
        { name: 'bare durable responder: ack latency p99 (saturated)', value: bare.p99Us, unit: 'µs' },
      );
      report.ratios['tidelog / bare durable responder (saturated events/s)'] = tidelog.saturated.eventsPerSecond / bare.eventsPerSecond;
    }
    if (tidelog.paced !== undefined) {
      const bare = await paced(params, send);
      report.rows.push(
        { name: 'bare durable responder: ack latency p50 (paced)', value: bare.p50Us, unit: 'µs' },
        { name: 'bare durable responder: ack latency p99 (paced)', value: bare.p99Us, unit: 'µs' },
      );
      report.ratios['tidelog / bare durable responder (paced ack p99)'] = tidelog.paced.p99Us / bare.p99Us;
    }
  } finally {
    await responder.stop();
  }
  return saturatedEventsPerSecond;
}

/** The JetStream peers on the same server, and tidelog's (and the bare responder's) ratios to them. */
async function jetStreamRows(nc: NatsConnection, params: Params, report: BenchReport, tidelogEventsPerSecond: number, bareEventsPerSecond: number): Promise<void> {
    const perEvent = await jetStreamPerEvent(nc, params);
    const batched = await jetStreamBatched(nc, params);
    report.rows.push(
      { name: 'JetStream per event (Msg-Id, 1000 in flight)', value: perEvent.eventsPerSecond, unit: 'events/s', note: 'acks before fsync' },
      { name: 'JetStream per event: ack latency p99', value: perEvent.p99Us, unit: 'µs' },
      { name: 'JetStream batched 1000/msg (64 in flight)', value: batched.eventsPerSecond, unit: 'events/s', note: 'acks before fsync' },
    );
    report.ratios['tidelog / JetStream per event'] = tidelogEventsPerSecond / perEvent.eventsPerSecond;
    report.ratios['tidelog / JetStream batched'] = tidelogEventsPerSecond / batched.eventsPerSecond;
    if (Number.isFinite(bareEventsPerSecond)) report.ratios['bare durable responder / JetStream batched'] = bareEventsPerSecond / batched.eventsPerSecond;
}

interface RunResult {
  eventsPerSecond: number;
  p50Us: number;
  p99Us: number;
}

/** Sends a pre-built payload and resolves with the events acknowledged. */
type Send = (payload: Uint8Array) => Promise<number>;

/** One phase (`saturated` or `paced`) driven through a producer of its own. */
async function withProducer(transport: NatsTransport, params: Params, phase: 'saturated' | 'paced', drive: (params: Params, send: Send) => Promise<RunResult>): Promise<RunResult> {
  const producer = await createProducer({ transport, namespace: 'bench', producerId: `bench-${phase}`, lingerMs: params.producerLingerMs });
  try {
    return await drive(params, async (payload) => (await producer.send(payload)).length);
  } finally {
    await producer.close();
  }
}

/** `params.senders` concurrent senders of `params.batch`-event payloads for params.seconds. */
async function saturated(params: Params, send: Send): Promise<RunResult> {
  const latencies: number[] = [];
  let acked = 0;
  // Pre-built payloads: the benchmark measures the pipeline, not event generation.
  const payloads = Array.from({ length: 64 }, () => makePacked(params.batch));
  const warmupEnd = performance.now() + 1000;
  let lastAckMs = warmupEnd;
  const endMs = warmupEnd + params.seconds * 1000;
  const sender = async (id: number): Promise<void> => {
    let round = id;
    while (performance.now() < endMs) {
      const payload = payloads[round++ % payloads.length];
      const sentMs = performance.now();
      const events = await send(payload);
      if (sentMs >= warmupEnd) {
        lastAckMs = performance.now();
        latencies.push((lastAckMs - sentMs) * 1000);
        acked += events;
      }
    }
  };
  // The first second warms up (JIT, connections, segment creation) and is not counted.
  await Promise.all(Array.from({ length: params.senders }, (_, id) => sender(id)));
  const elapsedMs = lastAckMs - warmupEnd;
  return { eventsPerSecond: (acked * 1000) / elapsedMs, p50Us: percentile(latencies, 50), p99Us: percentile(latencies, 99) };
}

/** Sends at a fixed rate in 1 ms ticks and measures send → durable ack per call. */
async function paced(params: Params, send: Send): Promise<RunResult> {
  const perTick = Math.max(1, Math.round(params.rate / 1000));
  const payloads = Array.from({ length: 64 }, () => makePacked(perTick));
  const latencies: number[] = [];
  const pending: Array<Promise<void>> = [];
  let acked = 0;
  // The first second warms up (JIT, the producer's first requests) and is not counted.
  const startedMs = performance.now();
  const warmupEndMs = startedMs + 1000;
  const endMs = warmupEndMs + params.seconds * 1000;
  let tick = 0;
  while (performance.now() < endMs) {
    const dueMs = startedMs + tick;
    const waitMs = dueMs - performance.now();
    if (waitMs > 0) await new Promise((resolve) => setTimeout(resolve, waitMs));
    const sentMs = performance.now();
    const payload = payloads[tick % payloads.length];
    tick++;
    pending.push(
      send(payload).then((events) => {
        if (sentMs < warmupEndMs) return;
        latencies.push((performance.now() - sentMs) * 1000);
        acked += events;
      }),
    );
    if (pending.length > 4096) await Promise.all(pending.splice(0, 2048));
  }
  await Promise.all(pending);
  const elapsedMs = performance.now() - warmupEndMs;
  return { eventsPerSecond: (acked * 1000) / elapsedMs, p50Us: percentile(latencies, 50), p99Us: percentile(latencies, 99) };
}

interface JetStreamRun {
  stream: string;
  subject: string;
  /** Publishes kept in flight at once. */
  window: number;
  eventsPerMessage: number;
  /** The message body of publish number `index`. */
  payloadAt: (index: number) => Uint8Array;
}

/** Async publishes with Nats-Msg-Id into a fresh file stream for params.seconds. */
async function jetStreamPublish(nc: NatsConnection, params: Params, run: JetStreamRun): Promise<RunResult> {
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: run.stream, subjects: [run.subject], storage: 'file', duplicate_window: 60_000_000_000 });
  const js = jetstream(nc);
  const latencies: number[] = [];
  let acked = 0;
  let next = 0;
  const startedMs = performance.now();
  const endMs = startedMs + params.seconds * 1000;
  const worker = async (): Promise<void> => {
    while (performance.now() < endMs) {
      const index = next++;
      const sentMs = performance.now();
      await js.publish(run.subject, run.payloadAt(index), { msgID: `${run.stream}-${index}` });
      latencies.push((performance.now() - sentMs) * 1000);
      acked += run.eventsPerMessage;
    }
  };
  await Promise.all(Array.from({ length: run.window }, () => worker()));
  const elapsedMs = performance.now() - startedMs;
  await jsm.streams.delete(run.stream);
  return { eventsPerSecond: (acked * 1000) / elapsedMs, p50Us: percentile(latencies, 50), p99Us: percentile(latencies, 99) };
}

function jetStreamPerEvent(nc: NatsConnection, params: Params): Promise<RunResult> {
  const events = makePacked(100_000);
  return jetStreamPublish(nc, params, {
    stream: 'bench-per-event',
    subject: 'bench.js.event',
    window: 1000,
    eventsPerMessage: 1,
    payloadAt: (index) => events.subarray((index % 100_000) * EVENT_BYTES, ((index % 100_000) + 1) * EVENT_BYTES),
  });
}

function jetStreamBatched(nc: NatsConnection, params: Params): Promise<RunResult> {
  const payloads = Array.from({ length: 64 }, () => makePacked(1000));
  return jetStreamPublish(nc, params, {
    stream: 'bench-batched',
    subject: 'bench.js.batch',
    window: 64,
    eventsPerMessage: 1000,
    payloadAt: (index) => payloads[index % payloads.length],
  });
}
