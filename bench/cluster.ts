// `npm run bench -- cluster`: a real 3-node tidelog cluster (R = 3, acks quorum, fsync full)
// against JetStream R3 on the same 3-server NATS cluster, in one run, plus leader failover.
//
//   setup    : 3 nats-servers (routes, JetStream, free loopback ports, src/transport/
//              nats-cluster.ts) and 3 `tidelog serve` child processes, node i connected to
//              nats-server i, hash router with --shards shards, every node a replica of every
//              shard. This process runs one session producer (client defaults, sendTimeoutMs
//              120 s) on a transport to all three servers.
//   tidelog  : --senders concurrent sends of --batch events (spread over every shard) for
//              --seconds after a 1 s warm-up; events/s acknowledged (durable on a quorum) and
//              ack latency per send.
//   JetStream R3 per event: a file stream with num_replicas 3; one js.publish per 21-byte
//              event with a unique Nats-Msg-Id, --js-window publishes in flight, --js-seconds.
//   JetStream R3 batched: the same stream config, one publish per --batch packed events
//              (--js-batch-window in flight), --js-seconds. nats-server 2.9 acks a replicated
//              message before any fsync (its file store syncs every 2 min by default).
//   failover : the tidelog load keeps running; --kills times the leader of shard 0 (the node
//              whose status says phase 'serving') gets SIGKILL. Right after the kill, probe
//              sends of --probe-batch events that all route to shard 0 start every 10 ms; the
//              failover time is kill → the first ack of such a send. Also measured: kill → a
//              surviving node reports shard 0 'serving' (the election). The killed node is
//              started again and the next kill waits until it reports every shard following.
//   lost     : every acked (shard, seq) is kept in a bitmap; at the end, once every node
//              reports the same hwm for each shard, a consumer reads every shard from seq 1
//              and any acked seq not read back counts as lost (must be 0).
//
// Flags: --seconds <s> (15), --senders <n> (16), --batch <n> (1000), --shards <n> (4),
//        --kills <n> (5), --js-seconds <s> (5), --js-window <n> (256),
//        --js-batch-window <n> (64), --probe-batch <n> (100).
// Progress goes to stderr; stdout has the JSON and the table only.

import { mkdirSync, rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { createConsumer, createProducer, type Ack, type Producer } from '../src/client/index.ts';
import { EVENT_BYTES, encodeEvents, type SignalEvent } from '../src/event.ts';
import { ShardRouter } from '../src/shard-map.ts';
import { decodeReply, encodeMessage } from '../src/transport/codec.ts';
import type { ShardStatus, StatusReply } from '../src/transport/messages.ts';
import { NatsTransport } from '../src/transport/nats.ts';
import { startNatsCluster, type NatsCluster } from '../src/transport/nats-cluster.ts';
import { NodeProcess } from '../test/support/node-process.ts';
import { newReport, percentile, printReport, type BenchReport } from './report.ts';

const NAMESPACE = 'bench';
const NODE_IDS = ['n1', 'n2', 'n3'];
const TARGETS = { eventsPerSecondQuorumDurable: 300_000, vsJetStreamR3PerEvent: 10, failoverP50Ms: 3000 };
/** Waits on the cluster (a leader, a rejoin, convergence) give up after this long. */
const WAIT_MS = 120_000;
const PROBE_EVERY_MS = 10;

interface Params {
  seconds: number;
  senders: number;
  batch: number;
  shards: number;
  kills: number;
  jsSeconds: number;
  jsWindow: number;
  jsBatchWindow: number;
  probeBatch: number;
}

function parse(argv: string[]): Params {
  const value = (name: string, fallback: string): number => {
    const index = argv.indexOf(`--${name}`);
    const parsed = Number(index >= 0 && index + 1 < argv.length ? argv[index + 1] : fallback);
    if (!Number.isFinite(parsed) || parsed < 0) throw new Error(`--${name} must be a non-negative number`);
    return parsed;
  };
  return {
    seconds: value('seconds', '15'),
    senders: value('senders', '16'),
    batch: value('batch', '1000'),
    shards: value('shards', '4'),
    kills: value('kills', '5'),
    jsSeconds: value('js-seconds', '5'),
    jsWindow: value('js-window', '256'),
    jsBatchWindow: value('js-batch-window', '64'),
    probeBatch: value('probe-batch', '100'),
  };
}

const progress = (text: string): void => void process.stderr.write(`[cluster] ${text}\n`);
const sleep = (ms: number): Promise<void> => new Promise((done) => setTimeout(done, ms));

let eventCounter = 0;
/** Distinct events spread over 1 M entities (a session producer's events skip content dedup anyway). */
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

/** Packed events whose entities all route to `shard` (as eventsForShard in test/support/fake-node.ts). */
function makeShardPacked(router: ShardRouter, shard: number, count: number, firstEntity: bigint): { packed: Uint8Array; nextEntity: bigint } {
  const events: SignalEvent[] = [];
  let entityId = firstEntity;
  for (; events.length < count; entityId++) {
    if (router.shardOf(entityId) !== shard) continue;
    const n = eventCounter++;
    events.push({ entityId, signalType: 1 + (n % 5), weight: 1, timestampNs: 1_700_000_000_000_000_000n + BigInt(n) });
  }
  return { packed: encodeEvents(events), nextEntity: entityId };
}

/** Every acknowledged (shard, seq), as one bit each: what the read-back must find. */
class AckLedger {
  private readonly bits = new Map<number, Uint8Array>();
  readonly ackedPerShard = new Map<number, number>();
  duplicateAcks = 0;
  zeroSeqAcks = 0;
  sendErrors = 0;
  firstSendError: string | null = null;

  record(acks: readonly Ack[]): void {
    for (const { shard, seq } of acks) {
      if (seq === 0) {
        this.zeroSeqAcks++;
        continue;
      }
      let bits = this.bits.get(shard) ?? new Uint8Array(1 << 16);
      if (seq >> 3 >= bits.length) {
        const grown = new Uint8Array(Math.max(bits.length * 2, (seq >> 3) + 1));
        grown.set(bits);
        bits = grown;
      }
      this.bits.set(shard, bits);
      const mask = 1 << (seq & 7);
      if ((bits[seq >> 3] & mask) !== 0) {
        this.duplicateAcks++;
        continue;
      }
      bits[seq >> 3] |= mask;
      this.ackedPerShard.set(shard, (this.ackedPerShard.get(shard) ?? 0) + 1);
    }
  }

  has(shard: number, seq: number): boolean {
    const bits = this.bits.get(shard);
    return bits !== undefined && seq >> 3 < bits.length && (bits[seq >> 3] & (1 << (seq & 7))) !== 0;
  }

  ackedOn(shard: number): number {
    return this.ackedPerShard.get(shard) ?? 0;
  }

  get acked(): number {
    let total = 0;
    for (const count of this.ackedPerShard.values()) total += count;
    return total;
  }

  noteError(error: unknown): void {
    this.sendErrors++;
    this.firstSendError ??= error instanceof Error ? error.message : String(error);
  }
}

/** The cluster under test: 3 nats-servers and 3 `tidelog serve` processes, each node's instances kept for their logs. */
class BenchCluster {
  readonly processes = new Map<string, NodeProcess | null>();
  /** Every process ever started (killed ones too), for the log check at the end. */
  readonly instances: Array<{ nodeId: string; node: NodeProcess }> = [];
  nats: NatsCluster | null = null;
  transport: NatsTransport | null = null;

  constructor(
    private readonly dir: string,
    private readonly shards: number,
  ) {}

  async start(): Promise<void> {
    this.nats = await startNatsCluster(3, 'tidelog-bench', NODE_IDS.map((_, index) => join(this.dir, `nats-${index + 1}`)));
    progress(`NATS cluster: ${this.nats.urls.join(', ')}`);
    // allSettled: a node that fails to start must not leave the others starting unseen by stop().
    const started = await Promise.allSettled(NODE_IDS.map((nodeId) => this.startNode(nodeId)));
    const failed = started.find((outcome) => outcome.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
    this.transport = await NatsTransport.connect({ servers: this.nats.urls, name: 'bench-cluster' });
  }

  get urls(): string[] {
    if (this.nats === null) throw new Error('the cluster is not started');
    return this.nats.urls;
  }

  async startNode(nodeId: string): Promise<void> {
    const index = NODE_IDS.indexOf(nodeId);
    const nodeDir = join(this.dir, nodeId);
    mkdirSync(nodeDir, { recursive: true });
    const node = await NodeProcess.start({
      dir: nodeDir,
      readyTimeoutMs: 90_000,
      config: {
        nodeId,
        namespace: NAMESPACE,
        nats: { servers: [this.urls[index % this.urls.length]] },
        router: { strategy: 'hash', shards: this.shards },
        wal: { fsync: 'full' },
        cluster: { nodes: NODE_IDS, replicationFactor: 3, acks: 'quorum', epochBucketReplicas: 3 },
      },
    });
    this.processes.set(nodeId, node);
    this.instances.push({ nodeId, node });
  }

  /** SIGKILL (sent before this returns its promise) and wait for the exit. */
  kill(nodeId: string): Promise<void> {
    const node = this.processes.get(nodeId);
    this.processes.set(nodeId, null);
    return node?.kill() ?? Promise.resolve();
  }

  async status(liveNodes = this.liveCount()): Promise<StatusReply[]> {
    if (this.transport === null) throw new Error('the cluster is not started');
    const replies = await this.transport.requestMany(`${NAMESPACE}.status`, encodeMessage({ v: 1, t: 'status' }), { timeoutMs: 500, maxReplies: liveNodes });
    return replies.map((bytes) => decodeReply(bytes, 'status'));
  }

  liveCount(): number {
    return [...this.processes.values()].filter((node) => node !== null).length;
  }

  /** The one node serving `shard` (and its epoch), polled until exactly one does. */
  async leaderOf(shard: number): Promise<{ nodeId: string; epoch: number }> {
    let seen = '';
    const deadline = performance.now() + WAIT_MS;
    while (performance.now() < deadline) {
      const statuses = await this.status();
      const serving = statuses.filter((status) => shardOf(status, shard)?.phase === 'serving');
      seen = statuses.map((status) => `${status.nodeId}:${shardOf(status, shard)?.phase}@${shardOf(status, shard)?.epoch}`).join(' ');
      if (serving.length === 1) return { nodeId: serving[0].nodeId, epoch: shardOf(serving[0], shard)?.epoch ?? 0 };
      await sleep(50);
    }
    throw new Error(`no single serving leader of shard ${shard} in ${WAIT_MS} ms (${seen})`);
  }

  /** Until `nodeId` reports every shard as 'following'. */
  async following(nodeId: string): Promise<void> {
    let seen = '';
    const deadline = performance.now() + WAIT_MS;
    while (performance.now() < deadline) {
      const status = (await this.status()).find((reply) => reply.nodeId === nodeId);
      seen = status === undefined ? 'no answer' : status.shards.map((view) => `${view.shard}:${view.phase}`).join(' ');
      if (status !== undefined && status.shards.length === this.shards && status.shards.every((view) => view.phase === 'following')) return;
      await sleep(100);
    }
    throw new Error(`${nodeId} did not follow every shard in ${WAIT_MS} ms (${seen})`);
  }

  /** Until every node answers, every shard has a serving leader, and all replicas hold the same hwm with nothing pending. */
  async converged(): Promise<StatusReply[]> {
    let seen = '';
    const deadline = performance.now() + WAIT_MS;
    while (performance.now() < deadline) {
      const statuses = await this.status();
      seen = statuses.map((status) => `${status.nodeId}:[${status.shards.map((s) => `${s.shard}:${s.phase}/${s.hwm}/${s.lastSeq}`).join(',')}]`).join(' ');
      if (statuses.length === NODE_IDS.length && isConverged(statuses, this.shards)) return statuses;
      await sleep(100);
    }
    throw new Error(`replicas did not converge in ${WAIT_MS} ms (${seen})`);
  }

  async stop(): Promise<void> {
    for (const node of this.processes.values()) {
      if (node === null) continue;
      const exited = await Promise.race([node.stop().then(() => true), sleep(15_000).then(() => false)]);
      if (!exited) await node.kill();
    }
    await this.transport?.close().catch(() => undefined);
    await this.nats?.stop();
  }
}

function shardOf(status: StatusReply, shard: number): ShardStatus | undefined {
  return status.shards.find((view) => view.shard === shard);
}

function isConverged(statuses: readonly StatusReply[], shards: number): boolean {
  for (let shard = 0; shard < shards; shard++) {
    const views = statuses.map((status) => shardOf(status, shard));
    if (views.some((view) => view === undefined)) return false;
    const present = views as ShardStatus[];
    if (!present.some((view) => view.phase === 'serving')) return false;
    if (new Set(present.map((view) => view.hwm)).size !== 1 || present.some((view) => view.lastSeq !== view.hwm)) return false;
  }
  return true;
}

/** `senders` loops of producer.send over `payloads` until isDone(); every ack goes into the ledger. */
async function runSenders(
  producer: Producer,
  ledger: AckLedger,
  payloads: readonly Uint8Array[],
  senders: number,
  isDone: () => boolean,
  onAck?: (sentMs: number, ackMs: number, events: number) => void,
): Promise<void> {
  const sender = async (id: number): Promise<void> => {
    let round = id;
    while (!isDone()) {
      const payload = payloads[round++ % payloads.length];
      const sentMs = performance.now();
      try {
        const acks = await producer.send(payload);
        ledger.record(acks);
        onAck?.(sentMs, performance.now(), acks.length);
      } catch (error) {
        ledger.noteError(error);
        await sleep(100);
      }
    }
  };
  await Promise.all(Array.from({ length: senders }, (_, id) => sender(id)));
}

interface RunResult {
  eventsPerSecond: number;
  p50Us: number;
  p99Us: number;
}

async function tidelogThroughput(producer: Producer, ledger: AckLedger, payloads: readonly Uint8Array[], params: Params): Promise<RunResult> {
  const latencies: number[] = [];
  let acked = 0;
  // The first second warms up (JIT, connections, segment creation) and is not counted.
  const warmupEndMs = performance.now() + 1000;
  const endMs = warmupEndMs + params.seconds * 1000;
  let lastAckMs = warmupEndMs;
  await runSenders(producer, ledger, payloads, params.senders, () => performance.now() >= endMs, (sentMs, ackMs, events) => {
    if (sentMs < warmupEndMs) return;
    lastAckMs = ackMs;
    latencies.push((ackMs - sentMs) * 1000);
    acked += events;
  });
  return { eventsPerSecond: (acked * 1000) / (lastAckMs - warmupEndMs), p50Us: percentile(latencies, 50), p99Us: percentile(latencies, 99) };
}

interface FailoverResult {
  failoverMs: number[];
  electionMs: number[];
  rejoinMs: number[];
  killed: string[];
}

/** Kills shard 0's leader `params.kills` times under load; see the header for what is timed. */
async function failovers(cluster: BenchCluster, producer: Producer, ledger: AckLedger, payloads: readonly Uint8Array[], params: Params): Promise<FailoverResult> {
  const router = ShardRouter.fromSpec({ strategy: 'hash', shards: params.shards });
  const probes: Uint8Array[] = [];
  let nextEntity = 1n;
  for (let index = 0; index < 16; index++) {
    const made = makeShardPacked(router, 0, params.probeBatch, nextEntity);
    probes.push(made.packed);
    nextEntity = made.nextEntity;
  }
  const result: FailoverResult = { failoverMs: [], electionMs: [], rejoinMs: [], killed: [] };
  let isStopping = false;
  const load = runSenders(producer, ledger, payloads, params.senders, () => isStopping);
  const probeSends: Array<Promise<void>> = [];
  try {
    await sleep(1000);
    for (let kill = 1; kill <= params.kills; kill++) {
      const leader = await cluster.leaderOf(0);
      const shardAcksBefore = ledger.ackedOn(0);
      const killedMs = performance.now();
      const killing = cluster.kill(leader.nodeId);
      // Probes: every send here starts after the SIGKILL went out.
      let firstAckMs: number | null = null;
      let onFirstAck: () => void = () => undefined;
      const firstAck = new Promise<void>((done) => (onFirstAck = done));
      const election = timeElection(cluster, leader.nodeId, leader.epoch, killedMs);
      let round = 0;
      while (firstAckMs === null) {
        if (performance.now() - killedMs > WAIT_MS) throw new Error(`kill ${kill}: no ack on shard 0 within ${WAIT_MS} ms of killing ${leader.nodeId}`);
        probeSends.push(
          producer.send(probes[round++ % probes.length]).then(
            (acks) => {
              const ackMs = performance.now();
              ledger.record(acks);
              if (firstAckMs === null) {
                firstAckMs = ackMs;
                onFirstAck();
              }
            },
            (error: unknown) => ledger.noteError(error),
          ),
        );
        await Promise.race([sleep(PROBE_EVERY_MS), firstAck]);
      }
      const failoverMs = (firstAckMs as number) - killedMs;
      await killing;
      const electionMs = await election;
      result.failoverMs.push(failoverMs);
      result.electionMs.push(electionMs);
      result.killed.push(leader.nodeId);
      progress(`kill ${kill}/${params.kills}: ${leader.nodeId} (leader of shard 0 at epoch ${leader.epoch}): failover ${failoverMs.toFixed(0)} ms (first ack of a send started after the kill), election ${electionMs.toFixed(0)} ms (a survivor serving shard 0)`);
      const restartMs = performance.now();
      await cluster.startNode(leader.nodeId);
      await cluster.following(leader.nodeId);
      result.rejoinMs.push(performance.now() - restartMs);
      progress(`  ${leader.nodeId} restarted and following every shard after ${(performance.now() - restartMs).toFixed(0)} ms; shard 0 acks since the kill: ${ledger.ackedOn(0) - shardAcksBefore}`);
      // Load on again before the next kill.
      await sleep(1000);
    }
  } finally {
    isStopping = true;
    await load;
    await Promise.all(probeSends);
  }
  return result;
}

/** Kill → a surviving node reports shard 0 'serving' at a newer epoch (status polled every 50 ms). */
async function timeElection(cluster: BenchCluster, killed: string, oldEpoch: number, killedMs: number): Promise<number> {
  while (performance.now() - killedMs < WAIT_MS) {
    const statuses = await cluster.status(NODE_IDS.length - 1).catch(() => []);
    const serving = statuses.find((status) => status.nodeId !== killed && shardOf(status, 0)?.phase === 'serving' && (shardOf(status, 0)?.epoch ?? 0) > oldEpoch);
    if (serving !== undefined) return performance.now() - killedMs;
    await sleep(50);
  }
  return Number.NaN;
}

interface JetStreamRun {
  stream: string;
  subject: string;
  window: number;
  eventsPerMessage: number;
  payloadAt: (index: number) => Uint8Array;
}

/** Async publishes with Nats-Msg-Id into a fresh R3 file stream for params.jsSeconds. */
async function jetStreamPublish(nc: NatsConnection, params: Params, run: JetStreamRun): Promise<RunResult> {
  const jsm = await jetstreamManager(nc);
  await addStream(jsm, run);
  const js = jetstream(nc);
  const latencies: number[] = [];
  let acked = 0;
  let next = 0;
  const startedMs = performance.now();
  const endMs = startedMs + params.jsSeconds * 1000;
  const worker = async (): Promise<void> => {
    while (performance.now() < endMs) {
      const index = next++;
      const sentMs = performance.now();
      await js.publish(run.subject, run.payloadAt(index), { msgID: `${run.stream}-${index}` });
      latencies.push((performance.now() - sentMs) * 1000);
      acked += run.eventsPerMessage;
    }
  };
  try {
    await Promise.all(Array.from({ length: run.window }, () => worker()));
  } finally {
    await jsm.streams.delete(run.stream).catch(() => undefined);
  }
  const elapsedMs = performance.now() - startedMs;
  return { eventsPerSecond: (acked * 1000) / elapsedMs, p50Us: percentile(latencies, 50), p99Us: percentile(latencies, 99) };
}

/** streams.add, retried while the JetStream meta leader is being elected. */
async function addStream(jsm: JetStreamManager, run: JetStreamRun): Promise<void> {
  const deadline = performance.now() + 30_000;
  for (;;) {
    try {
      await jsm.streams.add({ name: run.stream, subjects: [run.subject], storage: 'file', num_replicas: 3, duplicate_window: 60_000_000_000 });
      return;
    } catch (error) {
      if (performance.now() > deadline) throw error;
      await sleep(200);
    }
  }
}

async function jetStreamRows(nc: NatsConnection, params: Params, report: BenchReport, tidelogEventsPerSecond: number): Promise<void> {
  progress(`JetStream R3 per event: one publish per event with Nats-Msg-Id, ${params.jsWindow} in flight, ${params.jsSeconds} s`);
  const events = makePacked(100_000);
  const perEvent = await jetStreamPublish(nc, params, {
    stream: 'bench-r3-per-event',
    subject: 'bench.js.event',
    window: params.jsWindow,
    eventsPerMessage: 1,
    payloadAt: (index) => events.subarray((index % 100_000) * EVENT_BYTES, ((index % 100_000) + 1) * EVENT_BYTES),
  });
  progress(`  ${Math.round(perEvent.eventsPerSecond)} events/s`);
  progress(`JetStream R3 batched: one publish per ${params.batch} packed events, ${params.jsBatchWindow} in flight, ${params.jsSeconds} s`);
  const payloads = Array.from({ length: 64 }, () => makePacked(params.batch));
  const batched = await jetStreamPublish(nc, params, {
    stream: 'bench-r3-batched',
    subject: 'bench.js.batch',
    window: params.jsBatchWindow,
    eventsPerMessage: params.batch,
    payloadAt: (index) => payloads[index % payloads.length],
  });
  progress(`  ${Math.round(batched.eventsPerSecond)} events/s`);
  const perEventRatio = tidelogEventsPerSecond / perEvent.eventsPerSecond;
  report.rows.push(
    {
      name: `JetStream R3 per event (Msg-Id, ${params.jsWindow} in flight)`,
      value: perEvent.eventsPerSecond,
      unit: 'events/s',
      note: `acks before fsync; target tidelog ≥ ${TARGETS.vsJetStreamR3PerEvent}× this: ${perEventRatio >= TARGETS.vsJetStreamR3PerEvent ? 'met' : 'missed'}`,
    },
    { name: 'JetStream R3 per event: ack latency p50', value: perEvent.p50Us, unit: 'µs' },
    { name: 'JetStream R3 per event: ack latency p99', value: perEvent.p99Us, unit: 'µs' },
    { name: `JetStream R3 batched ${params.batch}/msg (${params.jsBatchWindow} in flight)`, value: batched.eventsPerSecond, unit: 'events/s', note: 'acks before fsync' },
    { name: 'JetStream R3 batched: ack latency p50', value: batched.p50Us, unit: 'µs' },
    { name: 'JetStream R3 batched: ack latency p99', value: batched.p99Us, unit: 'µs' },
  );
  report.ratios['tidelog / JetStream R3 per event'] = perEventRatio;
  report.ratios['tidelog / JetStream R3 batched'] = tidelogEventsPerSecond / batched.eventsPerSecond;
}

/** Reads every shard from seq 1: acked seqs not found are lost; read seqs never acked are extra. */
async function readBack(cluster: BenchCluster, ledger: AckLedger, shards: number): Promise<{ read: number; lost: number; extra: number; elapsedMs: number }> {
  if (cluster.transport === null) throw new Error('the cluster is not started');
  const startedMs = performance.now();
  const consumer = await createConsumer({ transport: cluster.transport, namespace: NAMESPACE });
  let read = 0;
  let found = 0;
  try {
    for (let shard = 0; shard < shards; shard++) {
      for await (const { seq } of consumer.read({ shard, fromSeq: 1 })) {
        read++;
        if (ledger.has(shard, seq)) found++;
      }
    }
  } finally {
    await consumer.close();
  }
  return { read, lost: ledger.acked - found, extra: read - found, elapsedMs: performance.now() - startedMs };
}

/** Error and warning lines in the kept stderr tail (16 KB) of every node process, killed ones included. */
function nodeLogSummary(cluster: BenchCluster): { errors: number; warnings: number; other: number; messages: string[] } {
  const summary = { errors: 0, warnings: 0, other: 0, messages: [] as string[] };
  const distinct = new Map<string, number>();
  for (const { nodeId, node } of cluster.instances) {
    for (const line of node.stderr.split('\n')) {
      if (line.trim() === '') continue;
      let level = 0;
      let message = line.slice(0, 200);
      try {
        const parsed = JSON.parse(line) as { level?: number; msg?: string };
        level = parsed.level ?? 0;
        message = parsed.msg ?? message;
      } catch {
        summary.other++;
      }
      if (level >= 50) summary.errors++;
      else if (level >= 40) summary.warnings++;
      if (level >= 40 || level === 0) {
        const key = `${nodeId} ${level >= 50 ? 'error' : level >= 40 ? 'warn' : 'stderr'}: ${message}`;
        distinct.set(key, (distinct.get(key) ?? 0) + 1);
      }
    }
  }
  summary.messages = [...distinct.entries()].sort((a, b) => b[1] - a[1]).slice(0, 12).map(([key, count]) => `${count}× ${key}`);
  return summary;
}

export async function main(argv: string[]): Promise<void> {
  const params = parse(argv);
  const notes: string[] = [];
  const report = newReport('cluster', {
    ...params,
    nodes: NODE_IDS.length,
    replicationFactor: 3,
    acks: 'quorum',
    fsync: 'full',
    /** 1/5/15-minute load: other processes on a 2-core machine skew absolute numbers. */
    loadAverageAtStart: loadavg().map((load) => Number(load.toFixed(2))),
    targets: TARGETS,
    notes,
  });
  const dir = await mkdtemp(join(tmpdir(), 'tidelog-bench-cluster-'));
  // An interrupted run leaves no temp dir behind (the children are killed by their own hooks).
  const removeDirOnExit = (): void => rmSync(dir, { recursive: true, force: true });
  process.once('exit', removeDirOnExit);
  const cluster = new BenchCluster(dir, params.shards);
  const ledger = new AckLedger();
  let producer: Producer | null = null;
  let nc: NatsConnection | null = null;
  try {
    progress(`starting 3 nats-servers and 3 tidelog nodes (R = 3, ${params.shards} shards) in ${dir}`);
    await cluster.start();
    for (let shard = 0; shard < params.shards; shard++) await cluster.leaderOf(shard);
    if (cluster.transport === null) throw new Error('the cluster is not started');
    producer = await createProducer({ transport: cluster.transport, namespace: NAMESPACE, producerId: 'bench-cluster', sendTimeoutMs: 120_000 });
    // Pre-built payloads: the benchmark measures the cluster, not event generation.
    const payloads = Array.from({ length: 64 }, () => makePacked(params.batch));

    progress(`tidelog: ${params.senders} senders × ${params.batch} events, 1 s warm-up + ${params.seconds} s`);
    const tidelog = await tidelogThroughput(producer, ledger, payloads, params);
    progress(`  ${Math.round(tidelog.eventsPerSecond)} events/s acked on a quorum, ack p50 ${Math.round(tidelog.p50Us)} µs p99 ${Math.round(tidelog.p99Us)} µs`);
    report.rows.push(
      {
        name: 'tidelog R3 quorum fsync: events/s acked',
        value: tidelog.eventsPerSecond,
        unit: 'events/s',
        note: `${params.senders} senders × ${params.batch}, ${params.shards} shards; target ≥ ${TARGETS.eventsPerSecondQuorumDurable.toLocaleString('en-US')}: ${tidelog.eventsPerSecond >= TARGETS.eventsPerSecondQuorumDurable ? 'met' : 'missed'}`,
      },
      { name: 'tidelog: ack latency p50 per send', value: tidelog.p50Us, unit: 'µs' },
      { name: 'tidelog: ack latency p99 per send', value: tidelog.p99Us, unit: 'µs' },
    );

    nc = await connect({ servers: cluster.urls, name: 'bench-jetstream' });
    await jetStreamRows(nc, params, report, tidelog.eventsPerSecond);
    await nc.close();
    nc = null;

    if (params.kills > 0) {
      progress(`failover: ${params.kills} × SIGKILL of shard 0's leader under load (${params.senders} senders), probes of ${params.probeBatch} shard-0 events every ${PROBE_EVERY_MS} ms`);
      const failover = await failovers(cluster, producer, ledger, payloads, params);
      const p50 = percentile([...failover.failoverMs], 50);
      report.params.failoverMs = failover.failoverMs.map((ms) => Math.round(ms));
      report.params.electionMs = failover.electionMs.map((ms) => Math.round(ms));
      report.params.rejoinMs = failover.rejoinMs.map((ms) => Math.round(ms));
      report.params.killed = failover.killed;
      report.rows.push(
        { name: 'failover p50 (kill → first ack on shard 0)', value: p50, unit: 'ms', note: `target < ${TARGETS.failoverP50Ms} ms: ${p50 < TARGETS.failoverP50Ms ? 'met' : 'missed'}` },
        { name: 'failover max', value: Math.max(...failover.failoverMs), unit: 'ms', note: `all: ${failover.failoverMs.map((ms) => Math.round(ms)).join(', ')}` },
        { name: 'election p50 (kill → survivor serving)', value: percentile([...failover.electionMs], 50), unit: 'ms', note: `all: ${failover.electionMs.map((ms) => Math.round(ms)).join(', ')}` },
        { name: 'rejoin p50 (restart → following every shard)', value: percentile([...failover.rejoinMs], 50), unit: 'ms' },
      );
    }
    await producer.flush();
    await producer.close();
    producer = null;

    progress('waiting until every node reports the same hwm for every shard');
    const final = await cluster.converged();
    const hwms = Array.from({ length: params.shards }, (_, shard) => shardOf(final[0], shard)?.hwm ?? 0);
    progress(`reading back every shard from seq 1 (hwm ${hwms.join(', ')})`);
    const check = await readBack(cluster, ledger, params.shards);
    progress(`  read ${check.read} events in ${Math.round(check.elapsedMs)} ms: ${check.lost} acked events lost, ${check.extra} read but never acked`);
    report.params.hwmPerShard = hwms;
    report.params.ackedPerShard = Array.from({ length: params.shards }, (_, shard) => ledger.ackedOn(shard));
    report.rows.push(
      { name: 'lost (acked, not read back)', value: check.lost, unit: 'events', note: `must be 0; acked ${ledger.acked}, read back ${check.read}, ${check.extra} read but never acked` },
      { name: 'send errors', value: ledger.sendErrors, unit: 'sends', note: ledger.firstSendError ?? 'none' },
    );
    if (ledger.duplicateAcks > 0) notes.push(`${ledger.duplicateAcks} (shard, seq) acked twice`);
    if (ledger.zeroSeqAcks > 0) notes.push(`${ledger.zeroSeqAcks} acks with seq 0 (duplicates)`);
  } finally {
    await producer?.close().catch(() => undefined);
    await nc?.close().catch(() => undefined);
    await cluster.stop().catch((error: unknown) => progress(`cleanup: ${String(error)}`));
    const logs = nodeLogSummary(cluster);
    notes.push(`node stderr tails: ${logs.errors} error lines, ${logs.warnings} warnings, ${logs.other} non-JSON lines`, ...logs.messages);
    progress(`node stderr tails (last 16 KB of each process): ${logs.errors} error lines, ${logs.warnings} warnings, ${logs.other} non-JSON lines`);
    for (const message of logs.messages) progress(`  ${message}`);
    await rm(dir, { recursive: true, force: true });
    process.removeListener('exit', removeDirOnExit);
  }
  printReport(report);
}
