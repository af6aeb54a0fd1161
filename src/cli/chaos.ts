// `tidelog chaos` (`npm run chaos`): a local cluster — 3 nats-servers whose route links pass
// through fault proxies, 3 `tidelog serve` nodes (R = 3, quorum acks, or with `--acks leader`
// availability mode: a cut-off leader keeps acknowledging and merges on heal) — under a paced
// producer load, with one fault at a time from a seeded schedule (src/chaos/schedule.ts):
// kill -9 and restart of a node, SIGSTOP/SIGCONT, a nats-server cut off or blackholed from
// the others, delayed links, kill -9 of a nats-server, and disk faults inside a node (fsync
// EIO, ENOSPC, a power cut that loses unsynced bytes: src/wal/injected-faults.ts). Every producer call goes into a
// Jepsen-style history (invoke, then ok / fail / unknown) and every event a tail consumer
// reads is recorded. After the last fault the cluster heals, the load stops, the replicas
// converge, the nodes stop; then each node's replica of each shard is opened from its own
// files and the history checker (src/chaos/history.ts) decides: every acknowledged event
// present exactly once at its seq, nothing that was never sent, gapless seqs, equal logs and
// equal CRDT state on every replica, no read of anything the final log does not hold.
//
// The summary: operations, acked, lost (must be 0), duplicated (must be 0), failovers, each
// shard's longest unavailability, the convergence time after each fault, the seed (`--seed`
// replays the fault schedule; the interleaving with the load is the machine's). A progress
// line while it runs. Exit 0 only when the checker finds nothing.

import { writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createConsumer, createProducer, type Consumer, type Producer } from '../client/index.ts';
import { ChaosLoad } from '../chaos/chaos-load.ts';
import { checkHistory, formatReport, type HistoryReport } from '../chaos/history-check.ts';
import { History } from '../chaos/history.ts';
import { openReplicas } from '../chaos/replica-reader.ts';
import { FAULT_KINDS, faultSchedule, type FaultKind, type FaultStep } from '../chaos/schedule.ts';
import { encodeEvents } from '../event.ts';
import { loadConfig } from '../node/config.ts';
import { decodeReply, encodeMessage } from '../transport/codec.ts';
import type { StatusReply } from '../transport/messages.ts';
import { NatsTransport } from '../transport/nats.ts';
import { startNatsCluster, type NatsCluster } from '../transport/nats-cluster.ts';
import { NATS_INSTALL_HINT, findNatsServer } from '../transport/nats-server-process.ts';
import { formatCount, formatMs, formatTable } from './format.ts';
import { localNodeChild, type NodeChild } from './node-child.ts';
import { ExitCode, type ExitCodeValue } from './options.ts';
import { StatusLine } from './progress.ts';

export interface ChaosOptions {
  seconds: number;
  seed: number;
  shards: number;
  /** Target events/s of the whole load. */
  rate: number;
  batch: number;
  kinds: readonly FaultKind[];
  /** The nodes' cluster.acks (default quorum); 'leader' runs availability mode. */
  acks?: 'quorum' | 'leader';
  dir?: string;
  keep?: boolean;
  json?: boolean;
}

const NAMESPACE = 'tidelog';
const NODES = 3;
/** How long the replicas get to converge after a fault ends, and after the run. */
const CONVERGE_WAIT_MS = 120_000;
/** The disk-fault file of a node with no fault in force (src/wal/injected-faults.ts). */
const NO_DISK_FAULTS = `${JSON.stringify({ rules: [] })}\n`;
/** A call that has no answer after this long is recorded as unknown. */
const SEND_TIMEOUT_MS = 60_000;

interface FaultRecord {
  step: FaultStep;
  /** ms after the load started: when the fault began and ended. */
  startedMs: number;
  endedMs: number;
  /** From the fault's end until every replica of every shard held what the leaders had committed then; null: not within the wait. */
  convergedMs: number | null;
  note: string;
}

export interface ChaosSummary {
  seed: number;
  seconds: number;
  shards: number;
  acks: 'quorum' | 'leader';
  faults: Array<{ kind: FaultKind; target: string; atMs: number; holdMs: number; convergedMs: number | null; note: string }>;
  faultsByKind: Record<string, { injected: number; survived: number }>;
  failovers: number;
  longestUnavailableMs: Array<{ shard: number; ms: number; endedAtMs: number }>;
  finalConvergedMs: number | null;
  /** Calls whose outcome is unknown, by the error code that ended them. */
  unknownByCode: Record<string, number>;
  report: HistoryReport;
}

export async function runChaos(options: ChaosOptions): Promise<ExitCodeValue> {
  const out = (text = ''): void => void process.stdout.write(`${text}\n`);
  if (findNatsServer() === null) {
    out(`tidelog chaos: nats-server is not on PATH. ${NATS_INSTALL_HINT}`);
    return ExitCode.failed;
  }
  const isTempDir = options.dir === undefined;
  const dir = options.dir === undefined ? await mkdtemp(join(tmpdir(), 'tidelog-chaos-')) : resolve(options.dir);
  const cleanups: Array<() => Promise<void>> = [];
  const nodeIds = Array.from({ length: NODES }, (_, index) => `node-${index + 1}`);
  const children: NodeChild[] = [];
  const configPaths: string[] = [];
  const faultPaths: string[] = [];
  let exitCode: ExitCodeValue = ExitCode.failed;
  let keepDir = options.keep === true;
  const abort = new AbortController();
  const onSigint = (): void => abort.abort();
  process.once('SIGINT', onSigint);
  const durationMs = options.seconds * 1000;
  const acks = options.acks ?? 'quorum';
  try {
    const nats = await startNatsCluster(3, 'tidelog-chaos', [0, 1, 2].map((index) => join(dir, `nats-${index + 1}`)), { faultProxies: true });
    cleanups.push(() => nats.stop());
    for (const [index, nodeId] of nodeIds.entries()) {
      const faultPath = join(dir, `${nodeId}-faults.json`);
      writeFileSync(faultPath, NO_DISK_FAULTS);
      faultPaths.push(faultPath);
      const { child, configPath } = localNodeChild({
        dir,
        nodeId,
        namespace: NAMESPACE,
        natsUrl: nats.urls[index],
        router: { strategy: 'hash', shards: options.shards },
        cluster: { nodes: nodeIds, replicationFactor: NODES, epochBucketReplicas: 3, acks },
        env: { TIDELOG_FAULT_FILE: faultPath },
      });
      configPaths.push(configPath);
      children.push(child);
    }
    const leaderTimeoutMs = loadConfig({ file: configPaths[0], env: {} }).cluster.leaderTimeoutMs;
    cleanups.push(async () => {
      for (const child of children) await child.stop();
    });
    await Promise.all(children.map((child) => child.start()));
    const schedule = faultSchedule({ seed: options.seed, durationMs, targets: NODES, kinds: options.kinds, leaderTimeoutMs });
    out(`tidelog chaos: seed ${options.seed}, ${options.seconds} s, ${options.shards} shards, 3 nats-servers behind fault proxies, ${NODES} nodes (R = 3, acks ${acks}); ${schedule.length} faults scheduled; data and logs in ${dir}`);

    // One client connection per nats-server: a producer and a status view on each side of a split.
    const transports: NatsTransport[] = [];
    for (const [index, url] of nats.urls.entries()) {
      const transport = await NatsTransport.connect({ servers: [url], name: `tidelog-chaos-${index + 1}` });
      transports.push(transport);
      cleanups.push(() => transport.close());
    }
    const cluster = new ClusterView(transports, options.shards);
    await cluster.waitForLeaders(90_000);

    const history = new History();
    const producers: Array<{ name: string; producer: Producer }> = [];
    for (const [index, transport] of transports.entries()) {
      const producer = await createProducer({ transport, namespace: NAMESPACE, producerId: `chaos-p${index + 1}`, sendTimeoutMs: SEND_TIMEOUT_MS });
      producers.push({ name: `p${index + 1}`, producer });
    }
    const consumer = await createConsumer({ transport: transports[0], namespace: NAMESPACE });
    const tails = startTails(consumer, options.shards, history);

    const load = new ChaosLoad(history, { shards: options.shards, batch: options.batch, ratePerSecond: options.rate, entitiesPerShard: 2_000 });
    const startedMs = performance.now();
    const sinceStart = (): number => Math.round(performance.now() - startedMs);
    load.start(producers);
    const status = new StatusLine(process.stdout, { plainIntervalMs: 5_000 });
    let faultLine = 'warming up';
    const poller = setInterval(() => {
      cluster
        .poll()
        .then(() => {
          const ops = history.counts();
          status.update(
            `${(sinceStart() / 1000).toFixed(0)}/${options.seconds} s  ops ${formatCount(ops.invoked)} ok ${formatCount(ops.ok)} unknown ${formatCount(ops.unknown)}  acked ${formatCount(ops.ackedEvents)} events  failovers ${cluster.failovers}  ${faultLine}  ${cluster.leadersLine()}`,
          );
        })
        .catch(() => undefined);
    }, 500);
    cleanups.push(() => Promise.resolve(clearInterval(poller)));

    const faults: FaultRecord[] = [];
    const injector = new FaultInjector(nats, children, faultPaths);
    for (const step of schedule) {
      if (abort.signal.aborted) break;
      await sleepUntil(startedMs + step.atMs, abort.signal);
      if (abort.signal.aborted) break;
      faultLine = `fault: ${describeStep(step, nodeIds)}`;
      const faultStartedMs = sinceStart();
      await injector.begin(step);
      await sleepUntil(performance.now() + step.holdMs, abort.signal);
      await injector.endAll();
      const endedMs = sinceStart();
      faultLine = `healed: ${step.kind}; converging`;
      const convergedMs = await cluster.convergeTime(CONVERGE_WAIT_MS, abort.signal);
      faultLine = `last fault ${step.kind}: converged ${convergedMs === null ? 'NOT within 120 s' : formatMs(convergedMs)}`;
      faults.push({ step, startedMs: faultStartedMs, endedMs, convergedMs, note: injector.note });
      status.clear();
      out(`${(faultStartedMs / 1000).toFixed(1)} s: ${describeStep(step, nodeIds)} → converged ${convergedMs === null ? 'NOT within 120 s' : formatMs(convergedMs)} after it ended`);
    }
    await sleepUntil(startedMs + durationMs, abort.signal);
    await injector.endAll();
    const availability = load.shardAvailability();
    faultLine = 'load stopping';
    await load.stop();
    for (const { producer } of producers) await producer.close();
    const finalConvergedMs = await cluster.convergeTime(CONVERGE_WAIT_MS, abort.signal, true);
    // The tails get the last events, then stop.
    await tails.settle(cluster.commitPoints(), 30_000);
    await tails.stop();
    await consumer.close();
    clearInterval(poller);
    status.clear();
    out();
    out(`tidelog chaos: load stopped after ${formatMs(sinceStart())}; ${finalConvergedMs === null ? 'the replicas did NOT converge within 120 s' : `replicas converged ${formatMs(finalConvergedMs)} later`}; stopping the nodes to check their files`);
    for (const child of children) await child.stop();
    const opened = await openReplicas(
      nodeIds.map((nodeId, index) => ({ nodeId, configPath: configPaths[index] })),
      options.shards,
      (line) => out(`  ${line}`),
    );
    let report: HistoryReport;
    try {
      report = checkHistory(history, opened.shards, { acks });
    } finally {
      await opened.close();
    }
    const summary: ChaosSummary = {
      seed: options.seed,
      seconds: options.seconds,
      shards: options.shards,
      acks,
      faults: faults.map((fault) => ({ kind: fault.step.kind, target: nodeIds[fault.step.target], atMs: fault.startedMs, holdMs: fault.step.holdMs, convergedMs: fault.convergedMs, note: fault.note })),
      faultsByKind: faultsByKind(faults, report),
      failovers: cluster.failovers,
      longestUnavailableMs: availability.map((entry) => ({ shard: entry.shard, ms: Math.round(entry.longestGapMs), endedAtMs: Math.round(entry.longestGapEndMs) })),
      finalConvergedMs,
      unknownByCode: unknownByCode(history),
      report,
    };
    out(renderSummary(summary));
    if (options.json === true) out(JSON.stringify(summary));
    const isClean = report.ok && finalConvergedMs !== null && faults.every((fault) => fault.convergedMs !== null);
    exitCode = isClean ? ExitCode.ok : ExitCode.failed;
    out(isClean ? `PASS: nothing acknowledged lost, nothing twice, replicas equal (replay the faults: --seed ${options.seed})` : `FAIL (replay the faults: --seed ${options.seed}; data kept in ${dir})`);
    if (!isClean) keepDir = true;
  } catch (error) {
    process.stderr.write(`tidelog chaos: FAILED: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  } finally {
    process.removeListener('SIGINT', onSigint);
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
    if (isTempDir && !keepDir) await rm(dir, { recursive: true, force: true });
  }
  return exitCode;
}

/** Starts and ends faults; remembers what it must undo, so the run can always heal everything. */
class FaultInjector {
  note = '';
  private readonly paused = new Set<number>();
  private readonly killed = new Set<number>();
  private readonly natsKilled = new Set<number>();
  private readonly diskFaulted = new Set<number>();
  private readonly clockJumped = new Set<number>();
  private isPartitioned = false;

  constructor(
    private readonly nats: NatsCluster,
    private readonly children: readonly NodeChild[],
    private readonly faultPaths: readonly string[],
  ) {}

  async begin(step: FaultStep): Promise<void> {
    const target = step.target;
    const others = this.nats.names.filter((_, index) => index !== target);
    this.note = '';
    switch (step.kind) {
      case 'kill':
        await this.children[target].kill();
        this.killed.add(target);
        break;
      case 'pause':
        this.children[target].pause();
        this.paused.add(target);
        break;
      case 'partition-cut':
      case 'partition-blackhole':
      case 'link-delay': {
        const mode = step.kind === 'partition-cut' ? { kind: 'cut' as const } : step.kind === 'partition-blackhole' ? { kind: 'blackhole' as const } : { kind: 'delay' as const, ms: step.delayMs ?? 50 };
        this.nats.partition([[this.nats.names[target]], others], mode);
        this.isPartitioned = true;
        break;
      }
      case 'nats-kill':
        await this.nats.servers[target].kill();
        this.natsKilled.add(target);
        break;
      case 'disk-eio':
      case 'disk-full': {
        const rule = step.kind === 'disk-eio' ? { op: 'datasync', path: 'wal-', code: 'EIO' } : { op: 'write', path: 'wal-', code: 'ENOSPC' };
        writeFileSync(this.faultPaths[target], `${JSON.stringify({ rules: [rule] })}\n`);
        await this.children[target].signal('SIGUSR2');
        this.diskFaulted.add(target);
        break;
      }
      case 'clock-jump':
        writeFileSync(this.faultPaths[target], `${JSON.stringify({ rules: [], clockOffsetMs: step.offsetMs ?? 0 })}\n`);
        await this.children[target].signal('SIGUSR2');
        this.clockJumped.add(target);
        break;
      case 'power-cut':
        writeFileSync(this.faultPaths[target], `${JSON.stringify({ rules: [], powerCut: true })}\n`);
        // The node cuts its unsynced bytes and kills itself; restarted at the end of the hold.
        await this.children[target].signal('SIGUSR2', true);
        writeFileSync(this.faultPaths[target], NO_DISK_FAULTS);
        this.killed.add(target);
        break;
    }
  }

  /** Undoes every fault still in force: heal links, resume, restart. */
  async endAll(): Promise<void> {
    if (this.isPartitioned) {
      this.nats.heal();
      this.isPartitioned = false;
    }
    for (const target of this.paused) this.children[target].resume();
    this.paused.clear();
    for (const target of this.natsKilled) {
      try {
        await this.nats.servers[target].restart();
      } catch (error) {
        this.note = `nats-server restart failed: ${error instanceof Error ? error.message : String(error)}`;
      }
    }
    this.natsKilled.clear();
    // The clock jumps back (a node killed meanwhile starts with the true clock anyway).
    for (const target of this.clockJumped) {
      writeFileSync(this.faultPaths[target], NO_DISK_FAULTS);
      if (!this.killed.has(target)) await this.children[target].signal('SIGUSR2');
    }
    this.clockJumped.clear();
    // A lane that failed stays failed until its node restarts: lift the fault, then restart.
    for (const target of this.diskFaulted) {
      writeFileSync(this.faultPaths[target], NO_DISK_FAULTS);
      await this.children[target].kill();
      this.killed.add(target);
    }
    this.diskFaulted.clear();
    for (const target of this.killed) await this.children[target].start();
    this.killed.clear();
  }
}

/** What the nodes say of themselves (`{ns}.status`), asked through every connection and merged. */
class ClusterView {
  failovers = 0;
  private latest = new Map<string, StatusReply>();
  private readonly leaders = new Map<number, { nodeId: string; epoch: number }>();

  constructor(
    private readonly transports: readonly NatsTransport[],
    private readonly shards: number,
  ) {}

  async poll(): Promise<StatusReply[]> {
    const merged = new Map<string, StatusReply>();
    await Promise.all(
      this.transports.map(async (transport) => {
        try {
          const replies = await transport.requestMany(`${NAMESPACE}.status`, encodeMessage({ v: 1, t: 'status' }), { timeoutMs: 400, maxReplies: NODES });
          for (const bytes of replies) {
            const reply = decodeReply(bytes, 'status');
            merged.set(reply.nodeId, reply);
          }
        } catch {
          // This side is cut off or its server is down: the others answer.
        }
      }),
    );
    this.latest = merged;
    for (let shard = 0; shard < this.shards; shard++) {
      const leader = this.leaderOf(shard);
      if (leader === null) continue;
      const known = this.leaders.get(shard);
      if (known !== undefined && leader.epoch > known.epoch) this.failovers++;
      if (known === undefined || leader.epoch > known.epoch) this.leaders.set(shard, leader);
    }
    return [...merged.values()];
  }

  async waitForLeaders(waitMs: number): Promise<void> {
    const deadlineMs = performance.now() + waitMs;
    for (;;) {
      await this.poll();
      if (Array.from({ length: this.shards }, (_, shard) => this.leaderOf(shard)).every((leader) => leader !== null)) return;
      if (performance.now() > deadlineMs) throw new Error(`no leader for every shard after ${waitMs} ms (see the node logs)`);
      await sleep(200);
    }
  }

  /** The serving leader of `shard` with the highest epoch in the latest answers. */
  private leaderOf(shard: number): { nodeId: string; epoch: number } | null {
    let best: { nodeId: string; epoch: number } | null = null;
    for (const reply of this.latest.values()) {
      const view = reply.shards.find((candidate) => candidate.shard === shard);
      if (view?.phase === 'serving' && (best === null || view.epoch > best.epoch)) best = { nodeId: reply.nodeId, epoch: view.epoch };
    }
    return best;
  }

  /** Per shard, the highest commit point any replica reported. */
  commitPoints(): number[] {
    return Array.from({ length: this.shards }, (_, shard) => Math.max(0, ...[...this.latest.values()].map((reply) => reply.shards.find((view) => view.shard === shard)?.hwm ?? 0)));
  }

  /**
   * Waits until every node answers, every shard has a serving leader, and every replica holds
   * (durable and committed) at least what the leaders had committed when the wait began — or,
   * with `exact`, the same commit point as its leader with nothing pending; in availability
   * mode also no orphan file waiting to be merged anywhere. The ms it took, or
   * null after `waitMs`.
   */
  async convergeTime(waitMs: number, signal: AbortSignal, exact = false): Promise<number | null> {
    const beganMs = performance.now();
    await this.poll();
    const targets = this.commitPoints();
    for (;;) {
      const replies = await this.poll();
      if (replies.length === NODES && this.isConverged(replies, targets, exact)) return Math.round(performance.now() - beganMs);
      if (performance.now() - beganMs > waitMs || signal.aborted) return null;
      await sleep(100);
    }
  }

  private isConverged(replies: readonly StatusReply[], targets: readonly number[], exact: boolean): boolean {
    for (let shard = 0; shard < this.shards; shard++) {
      const views = replies.map((reply) => reply.shards.find((view) => view.shard === shard));
      if (views.some((view) => view === undefined) || !views.some((view) => view?.phase === 'serving')) return false;
      if (views.some((view) => view!.hwm < targets[shard] || view!.lastSeq < targets[shard])) return false;
      if (exact && (new Set(views.map((view) => view!.hwm)).size !== 1 || views.some((view) => view!.lastSeq !== view!.hwm))) return false;
      // Availability mode: a cut-back replica's orphans are acknowledged events still on their
      // way into the leader's log; until merged the shard has not converged.
      if (views.some((view) => (view!.orphanFiles ?? 0) > 0)) return false;
    }
    return true;
  }

  leadersLine(): string {
    return Array.from({ length: this.shards }, (_, shard) => {
      const leader = this.leaderOf(shard);
      return leader === null ? `s${shard}:-` : `s${shard}:${leader.nodeId.replace('node-', 'n')}@e${leader.epoch}`;
    }).join(' ');
  }
}

/** A tail per shard from seq 1, every event it yields recorded; a tail that fails starts again where it was. */
function startTails(consumer: Consumer, shards: number, history: History): { settle(targets: readonly number[], waitMs: number): Promise<void>; stop(): Promise<void> } {
  let isStopping = false;
  const nextSeqs = new Array<number>(shards).fill(1);
  const running: Array<Promise<void>> = [];
  const stops: Array<() => Promise<unknown>> = [];
  for (let shard = 0; shard < shards; shard++) {
    running.push(
      (async () => {
        while (!isStopping) {
          const tail = consumer.tail({ shard, fromSeq: nextSeqs[shard] });
          stops[shard] = () => tail.return();
          try {
            for await (const { seq, event } of tail) {
              history.read(shard, seq, encodeEvents([event]));
              nextSeqs[shard] = seq + 1;
              if (isStopping) break;
            }
          } catch {
            // A cut-off or restarted server: read again from where this tail was.
          }
          if (!isStopping) await sleep(500);
        }
      })(),
    );
  }
  return {
    settle: async (targets, waitMs) => {
      const deadlineMs = performance.now() + waitMs;
      while (targets.some((target, shard) => nextSeqs[shard] <= target) && performance.now() < deadlineMs) await sleep(100);
    },
    stop: async () => {
      isStopping = true;
      await Promise.all(stops.map((stop) => stop().catch(() => undefined)));
      await Promise.all(running);
    },
  };
}

function faultsByKind(faults: readonly FaultRecord[], report: HistoryReport): Record<string, { injected: number; survived: number }> {
  const byKind: Record<string, { injected: number; survived: number }> = {};
  for (const fault of faults) {
    const entry = (byKind[fault.step.kind] ??= { injected: 0, survived: 0 });
    entry.injected++;
    // Survived: the cluster converged after it (the run's history is judged as a whole below).
    if (fault.convergedMs !== null && report.ok) entry.survived++;
  }
  return byKind;
}

function unknownByCode(history: History): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const op of history.ops()) {
    if (op.outcome !== 'unknown') continue;
    const code = (op.detail ?? 'unknown').split(':')[0];
    counts[code] = (counts[code] ?? 0) + 1;
  }
  return counts;
}

function describeStep(step: FaultStep, nodeIds: readonly string[]): string {
  const target = nodeIds[step.target];
  switch (step.kind) {
    case 'kill':
      return `kill -9 ${target}, restart after ${formatMs(step.holdMs)}`;
    case 'pause':
      return `SIGSTOP ${target} for ${formatMs(step.holdMs)}`;
    case 'partition-cut':
      return `nats-${step.target + 1} (${target}'s server) cut off for ${formatMs(step.holdMs)}`;
    case 'partition-blackhole':
      return `nats-${step.target + 1} (${target}'s server) blackholed for ${formatMs(step.holdMs)}`;
    case 'link-delay':
      return `nats-${step.target + 1}'s routes delayed ${step.delayMs} ms for ${formatMs(step.holdMs)}`;
    case 'nats-kill':
      return `kill -9 nats-${step.target + 1}, restart after ${formatMs(step.holdMs)}`;
    case 'disk-eio':
      return `${target}'s WAL fdatasync fails (EIO) for ${formatMs(step.holdMs)}, then it restarts`;
    case 'disk-full':
      return `${target}'s WAL writes fail (ENOSPC) for ${formatMs(step.holdMs)}, then it restarts`;
    case 'power-cut':
      return `power cut of ${target} (unsynced bytes lost), restart after ${formatMs(step.holdMs)}`;
    case 'clock-jump':
      return `${target}'s wall clock jumps ${(step.offsetMs ?? 0) > 0 ? '+' : '−'}${formatMs(Math.abs(step.offsetMs ?? 0))} for ${formatMs(step.holdMs)}`;
  }
}

function renderSummary(summary: ChaosSummary): string {
  const { report } = summary;
  const lines: string[] = [];
  lines.push('');
  lines.push(
    formatTable(
      ['kind', 'injected', 'survived', 'convergence after it ended (max)'],
      FAULT_KINDS.filter((kind) => summary.faultsByKind[kind] !== undefined).map((kind) => {
        const times = summary.faults.filter((fault) => fault.kind === kind).map((fault) => fault.convergedMs);
        const worst = times.some((time) => time === null) ? 'NOT converged' : formatMs(Math.max(...(times as number[])));
        return [kind, String(summary.faultsByKind[kind].injected), String(summary.faultsByKind[kind].survived), worst];
      }),
    ),
  );
  lines.push('');
  lines.push(formatTable(['shard', 'longest unavailability', 'ended at'], summary.longestUnavailableMs.map((entry) => [String(entry.shard), formatMs(entry.ms), `${(entry.endedAtMs / 1000).toFixed(1)} s`])));
  lines.push('');
  lines.push(
    `operations ${formatCount(report.ops.invoked)} (ok ${formatCount(report.ops.ok)}, failed ${formatCount(report.ops.fail)}, unknown ${formatCount(report.ops.unknown)}); ` +
      `acked events ${formatCount(report.events.acked)}; lost ${report.lost}; duplicated ${report.duplicated}; failovers ${summary.failovers}; acks ${summary.acks}; seed ${summary.seed}`,
  );
  const unknown = Object.entries(summary.unknownByCode);
  if (unknown.length > 0) lines.push(`unknown outcomes by code: ${unknown.map(([code, count]) => `${code} ${count}`).join(', ')}`);
  lines.push(formatReport(report));
  return lines.join('\n');
}

async function sleepUntil(atMs: number, signal: AbortSignal): Promise<void> {
  while (!signal.aborted && performance.now() < atMs) await sleep(Math.min(200, atMs - performance.now()));
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}

/** The kinds named on the command line ("all", or a comma-separated list). */
export function parseFaultKinds(text: string): FaultKind[] {
  if (text === 'all') return [...FAULT_KINDS];
  const kinds = text.split(',').map((kind) => kind.trim());
  for (const kind of kinds) {
    if (!(FAULT_KINDS as readonly string[]).includes(kind)) throw new Error(`unknown fault kind "${kind}" (kinds: ${FAULT_KINDS.join(', ')}, or all)`);
  }
  return kinds as FaultKind[];
}
