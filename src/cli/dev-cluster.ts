// `tidelog dev --nodes 3` (= `npm start -- --nodes 3`): a local cluster. It starts a 3-server
// NATS cluster (routes, JetStream, free loopback ports), `--nodes` tidelog nodes as child
// processes (`tidelog serve`, R = min(3, nodes)), and the demo producer with sessions, with a
// live line of every shard's leader, epoch, HWM and follower lag. `--chaos` kills the leader
// of a random shard with SIGKILL every few seconds and starts it again. At the end it waits
// for every replica to hold the same commit point, reads every shard back and checks that
// every acknowledged event is there exactly once. `--seconds 0` runs until Ctrl-C.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createProducer } from '../client/index.ts';
import { decodeReply, encodeMessage } from '../transport/codec.ts';
import type { StatusReply } from '../transport/messages.ts';
import { NatsTransport } from '../transport/nats.ts';
import { startNatsCluster } from '../transport/nats-cluster.ts';
import { findNatsServer, NATS_INSTALL_HINT } from '../transport/nats-server-process.ts';
import { readBack, runLoad } from './dev.ts';
import { formatCount, formatLatencyUs, formatMs, formatTable } from './format.ts';
import { localNodeChild, type NodeChild } from './node-child.ts';
import { ExitCode, type ExitCodeValue } from './options.ts';

export interface DevClusterOptions {
  nodes: number;
  seconds: number;
  shards: number;
  senders: number;
  batch: number;
  chaos: boolean;
  /** Seconds between chaos kills. */
  chaosEverySeconds: number;
  dir?: string;
  keep?: boolean;
}

const NAMESPACE = 'tidelog';
export async function runDevCluster(options: DevClusterOptions): Promise<ExitCodeValue> {
  const out = (text = ''): void => void process.stdout.write(`${text}\n`);
  if (findNatsServer() === null) {
    out(`tidelog dev --nodes: nats-server is not on PATH. ${NATS_INSTALL_HINT}`);
    return ExitCode.failed;
  }
  const isTempDir = options.dir === undefined;
  const dir = options.dir === undefined ? await mkdtemp(join(tmpdir(), 'tidelog-cluster-')) : resolve(options.dir);
  const cleanups: Array<() => Promise<void>> = [];
  const nodeIds = Array.from({ length: options.nodes }, (_, index) => `node-${index + 1}`);
  const children = new Map<string, NodeChild>();
  let exitCode: ExitCodeValue = ExitCode.failed;
  const abort = new AbortController();
  const onSigint = (): void => abort.abort();
  process.once('SIGINT', onSigint);
  try {
    const nats = await startNatsCluster(3, 'tidelog-dev', [0, 1, 2].map((index) => join(dir, `nats-${index + 1}`)));
    cleanups.push(() => nats.stop());
    out(`tidelog dev: NATS cluster of 3 servers: ${nats.urls.join(', ')} (JetStream on)`);
    for (const [index, nodeId] of nodeIds.entries()) {
      const { child } = localNodeChild({
        dir,
        nodeId,
        namespace: NAMESPACE,
        natsUrl: nats.urls[index % nats.urls.length],
        router: options.shards === 1 ? { strategy: 'single' } : { strategy: 'hash', shards: options.shards },
        cluster: { nodes: nodeIds, replicationFactor: Math.min(3, options.nodes), epochBucketReplicas: 3 },
      });
      children.set(nodeId, child);
    }
    cleanups.push(async () => {
      for (const child of children.values()) await child.stop();
    });
    await Promise.all([...children.values()].map((child) => child.start()));
    out(`tidelog dev: ${options.nodes} nodes (${nodeIds.join(', ')}), R = ${Math.min(3, options.nodes)}, ${options.shards} shard(s); data and node logs in ${dir}`);
    const transport = await NatsTransport.connect({ servers: nats.urls, name: 'tidelog-dev-producer' });
    cleanups.push(() => transport.close());
    const status = async (): Promise<StatusReply[]> => {
      const replies = await transport.requestMany(`${NAMESPACE}.status`, encodeMessage({ v: 1, t: 'status' }), { timeoutMs: 300, maxReplies: options.nodes });
      return replies.map((bytes) => decodeReply(bytes, 'status'));
    };
    // Wait for a leader of every shard before the producer starts.
    const startedMs = performance.now();
    for (;;) {
      const statuses = await status();
      const led = new Set(statuses.flatMap((reply) => reply.shards.filter((shard) => shard.phase === 'serving').map((shard) => shard.shard)));
      if (led.size === options.shards) break;
      if (performance.now() - startedMs > 60_000) throw new Error('no leader for every shard after 60 s (see the node logs)');
      await new Promise((done) => setTimeout(done, 100));
    }
    out(`tidelog dev: every shard has a leader after ${formatMs(performance.now() - startedMs)}${options.chaos ? `; chaos: a leader killed every ${options.chaosEverySeconds} s` : ''}`);
    out();

    let shardsLine = '';
    const refresh = setInterval(() => {
      status()
        .then((statuses) => (shardsLine = leadersLine(statuses, options.shards)))
        .catch(() => undefined);
    }, 500);
    cleanups.push(() => Promise.resolve(clearInterval(refresh)));

    const chaosLog: string[] = [];
    let isLoadDone = false;
    const chaos = options.chaos
      ? (async () => {
          while (!isLoadDone && !abort.signal.aborted) {
            await new Promise((done) => setTimeout(done, options.chaosEverySeconds * 1000));
            if (isLoadDone || abort.signal.aborted) break;
            const statuses = await status().catch(() => []);
            const shard = Math.floor(Math.random() * options.shards);
            const leader = statuses.find((reply) => reply.shards.some((view) => view.shard === shard && view.phase === 'serving'));
            if (leader === undefined) continue;
            const child = children.get(leader.nodeId);
            if (child === undefined) continue;
            await child.kill();
            chaosLog.push(`${((performance.now() - startedMs) / 1000).toFixed(1)} s: killed ${leader.nodeId} (leader of shard ${shard})`);
            await new Promise((done) => setTimeout(done, 1500));
            await child.start();
          }
        })()
      : Promise.resolve();

    const producer = await createProducer({ transport, namespace: NAMESPACE, producerId: 'dev-demo', sendTimeoutMs: 300_000 });
    const seconds = options.seconds === 0 ? 1e9 : options.seconds;
    const load = await runLoad(producer, () => shardsLine, { seconds, senders: options.senders, batch: options.batch, abortSignal: abort.signal });
    isLoadDone = true;
    await chaos;
    await producer.close();
    out();
    for (const line of chaosLog) out(`chaos: ${line}`);
    // Every replica at one commit point before the read-back (reads may go to any replica).
    const convergedMs = performance.now();
    let final: StatusReply[] = [];
    for (;;) {
      final = await status();
      if (final.length === options.nodes && isConverged(final, options.shards)) break;
      if (performance.now() - convergedMs > 60_000) throw new Error(`replicas did not converge in 60 s: ${leadersLine(final, options.shards)}`);
      await new Promise((done) => setTimeout(done, 100));
    }
    const check = await readBack(transport, load, NAMESPACE);
    out(renderClusterSummary(final, options.shards));
    out();
    const rate = (load.acked * 1000) / Math.max(1, load.elapsedMs);
    out(
      `acked ${formatCount(load.acked)} events in ${formatMs(load.elapsedMs)} = ${formatCount(rate)} events/s durable on a quorum; ` +
        `ack latency p50 ${formatLatencyUs(load.latencyUsP50)} p99 ${formatLatencyUs(load.latencyUsP99)}${options.chaos ? `; ${chaosLog.length} leader kills` : ''}`,
    );
    out(
      `read back ${formatCount(check.readEvents)} events in ${formatMs(check.elapsedMs)}: ${check.missing} missing, ${check.different} different of ${load.samples.size} compared byte for byte` +
        (check.countMismatch.length > 0 ? `; ${check.countMismatch.join('; ')}` : ''),
    );
    exitCode = check.missing === 0 && check.different === 0 && check.countMismatch.length === 0 ? ExitCode.ok : ExitCode.failed;
    out(exitCode === ExitCode.ok ? 'PASS: every acknowledged event was read back, exactly once.' : 'FAIL: acknowledged events are missing, different or twice.');
  } catch (error) {
    process.stderr.write(`tidelog dev --nodes: FAILED: ${error instanceof Error ? error.message : String(error)}\n`);
  } finally {
    process.removeListener('SIGINT', onSigint);
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
    if (isTempDir && options.keep !== true) await rm(dir, { recursive: true, force: true });
  }
  return exitCode;
}

/** Per shard: leader@epoch, HWM, and the largest follower lag the leader reports. */
function leadersLine(statuses: readonly StatusReply[], shards: number): string {
  const parts: string[] = [];
  for (let shard = 0; shard < shards; shard++) {
    const leader = statuses.find((reply) => reply.shards.some((view) => view.shard === shard && view.phase === 'serving'));
    const view = leader?.shards.find((candidate) => candidate.shard === shard);
    if (leader === undefined || view === undefined) {
      parts.push(`s${shard}: electing`);
      continue;
    }
    const lag = Math.max(0, ...(view.followers ?? []).map((follower) => view.hwm - follower.matchSeq));
    parts.push(`s${shard}: ${leader.nodeId}@e${view.epoch} hwm ${formatCount(view.hwm)} lag ${formatCount(lag)}`);
  }
  return parts.join(' | ');
}

function isConverged(statuses: readonly StatusReply[], shards: number): boolean {
  for (let shard = 0; shard < shards; shard++) {
    const views = statuses.flatMap((reply) => reply.shards.filter((view) => view.shard === shard));
    if (!views.some((view) => view.phase === 'serving')) return false;
    if (new Set(views.map((view) => view.hwm)).size !== 1 || views.some((view) => view.lastSeq !== view.hwm)) return false;
  }
  return true;
}

function renderClusterSummary(statuses: readonly StatusReply[], shards: number): string {
  const rows: string[][] = [];
  for (let shard = 0; shard < shards; shard++) {
    for (const reply of [...statuses].sort((a, b) => a.nodeId.localeCompare(b.nodeId))) {
      const view = reply.shards.find((candidate) => candidate.shard === shard);
      if (view === undefined) continue;
      rows.push([String(shard), reply.nodeId, String(reply.pid ?? '-'), view.phase ?? view.role, String(view.epoch), formatCount(view.hwm), formatCount(view.entities)]);
    }
  }
  return formatTable(['shard', 'node', 'pid', 'phase', 'epoch', 'hwm', 'entities'], rows);
}
