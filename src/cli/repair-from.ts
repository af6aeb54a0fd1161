// `tidelog wal verify <dataDir>/wal --repair-from <nats url>`: what a replica does when it opens
// on a damaged log (docs/REPLICATION.md, "Repair from peers"), done offline with the node
// stopped. For each damaged shard (a checksum mismatch, a broken structure or a seq gap before
// the tail):
//   1. the repair marker is made durable and the log opened on its intact prefix (ShardHost's
//      repair open: the damaged segment and every later one set aside as `.damaged`);
//   2. what the prefix holds past its own commit point is cut (never compared with the
//      cluster's log offline; kept as an orphan file in availability mode);
//   3. the committed batches after it are fetched from a replica that serves the shard (its
//      leader, else the one committed furthest: `fetch` with committedOnly, which records
//      nothing there), verified and appended verbatim, then committed.
// The marker stays: the node, once started, does not vote until its leader has proved the log
// equal to its own past the commit point (what it may have acknowledged before the damage).
// The node must be stopped (the shard's lock is taken).

import { basename, dirname } from 'node:path';
import { defaultSignalSchema, loadSignalSchema } from '../crdt/index.ts';
import { isTidelogError } from '../errors.ts';
import { loadConfig, type NodeConfig } from '../node/config.ts';
import { ShardHost } from '../node/shard-host.ts';
import { decodeReply, encodeMessage } from '../transport/codec.ts';
import { subjects, type StatusReply } from '../transport/messages.ts';
import { NatsTransport } from '../transport/nats.ts';
import { decodeFetchReply, encodeFetch, replicationSubject } from '../transport/replication-codec.ts';
import { readBatchHeader } from '../wal/batch-format.ts';
import { initChecksum } from '../wal/index.ts';
import { formatCount } from './format.ts';
import { ExitCode, cliNatsAuth, type ExitCodeValue, type NatsAuthFlags } from './options.ts';
import { verifyShard } from './verify.ts';
import { checkWalDirectory, shardsIn } from './wal-dir.ts';

/** Credentials: the config's nats.auth, then TIDELOG_NATS_* (docs/SECURITY.md), then the NatsAuthFlags. */
export interface RepairFromOptions extends NatsAuthFlags {
  /** NATS server URL(s), comma-separated. */
  nats: string;
  namespace: string;
  shard?: number;
  /** The node's config file (signal schema, WAL settings, session limits, acks); default: the defaults. */
  config?: string;
  timeoutMs?: number;
}

/** Damage a replica repairs from its peers (ShardHost's REPAIRABLE_DAMAGE). */
const REPAIRABLE = new Set(['CHECKSUM_MISMATCH', 'CORRUPT_SEGMENT', 'SEGMENT_GAP']);
const FETCH_BYTES = 512 << 10;

export async function runRepairFrom(walDir: string, options: RepairFromOptions): Promise<ExitCodeValue> {
  if (basename(walDir) !== 'wal') {
    process.stderr.write(`tidelog wal verify --repair-from: give the WAL directory of a node's data dir (<dataDir>/wal), got ${walDir}\n`);
    return ExitCode.usage;
  }
  const fileNames = await checkWalDirectory(walDir);
  const shards = options.shard === undefined ? shardsIn(fileNames) : [options.shard];
  await initChecksum();
  const config: NodeConfig | null = options.config === undefined ? null : loadConfig({ file: options.config, env: {} });
  const damaged: number[] = [];
  for (const shard of shards) {
    const verified = await verifyShard(walDir, shard, false);
    if (verified.writerPid !== null) {
      process.stderr.write(`shard ${shard}: process ${verified.writerPid} holds the log (stop the node first)\n`);
      return ExitCode.failed;
    }
    if (verified.damage === null) continue;
    if (!REPAIRABLE.has(verified.damage.code)) {
      process.stderr.write(`shard ${shard}: ${verified.damage.code} in ${verified.damage.file} is not repaired from peers (docs/OPERATIONS.md, "A damaged shard")\n`);
      return ExitCode.failed;
    }
    process.stdout.write(`shard ${shard}: ${verified.damage.code} in ${verified.damage.file} at offset ${verified.damage.offset}: repairing from a peer\n`);
    damaged.push(shard);
  }
  if (damaged.length === 0) {
    process.stdout.write('nothing to repair: every shard verifies\n');
    return ExitCode.ok;
  }
  const auth = cliNatsAuth(options, config === null ? {} : { base: config.nats.auth });
  const transport = await NatsTransport.connect({ servers: options.nats.split(','), name: 'tidelog-repair', maxReconnectAttempts: 0, ...(auth === undefined ? {} : { auth }) });
  try {
    for (const shard of damaged) await repairShard(transport, walDir, shard, config, options);
  } catch (error) {
    process.stderr.write(`repair failed: ${isTidelogError(error) ? `${error.code}: ` : ''}${(error as Error).message}\n`);
    return ExitCode.failed;
  } finally {
    await transport.close();
  }
  let isIntact = true;
  for (const shard of damaged) {
    const verified = await verifyShard(walDir, shard, false);
    if (verified.damage !== null) isIntact = false;
    process.stdout.write(`shard ${shard}: ${verified.damage === null ? 'verifies' : `still damaged (${verified.damage.code})`}: seqs ${formatCount(verified.firstSeq)}..${formatCount(verified.lastSeq)}\n`);
  }
  return isIntact ? ExitCode.ok : ExitCode.failed;
}

/** The replica to copy from: the shard's serving leader, else the one committed furthest. */
async function choosePeer(transport: NatsTransport, namespace: string, shard: number, timeoutMs: number): Promise<{ nodeId: string; hwm: number }> {
  const raw = await transport.requestMany(subjects(namespace).status, encodeMessage({ v: 1, t: 'status' }), { timeoutMs });
  const holders = raw
    .map((bytes) => decodeReply(bytes, 'status') as StatusReply)
    .flatMap((reply) => reply.shards.filter((view) => view.shard === shard && view.failure === undefined).map((view) => ({ nodeId: reply.nodeId, hwm: view.hwm, isServing: view.phase === 'serving' })));
  holders.sort((a, b) => Number(b.isServing) - Number(a.isServing) || b.hwm - a.hwm);
  const peer = holders[0];
  if (peer === undefined) throw new Error(`no node of namespace ${namespace} answered for shard ${shard} within ${timeoutMs} ms`);
  return peer;
}

async function repairShard(transport: NatsTransport, walDir: string, shard: number, config: NodeConfig | null, options: RepairFromOptions): Promise<void> {
  const timeoutMs = options.timeoutMs ?? 5_000;
  const peer = await choosePeer(transport, options.namespace, shard, Math.min(timeoutMs, 2_000));
  const host = await ShardHost.open({
    shard,
    dataDir: dirname(walDir),
    wal: config === null ? {} : { ...config.wal, retention: config.retention },
    schema: config === null ? defaultSignalSchema() : loadSignalSchema(config.signals),
    sessions: config === null ? {} : { maxSessions: config.limits.maxSessions, maxRunsPerSession: config.limits.maxRunsPerSession },
    recentBytes: 0,
    publishFeed: () => undefined,
    commit: 'external',
    repairFromPeers: true,
    ...(config?.cluster.acks === 'leader' ? { availability: true } : {}),
  });
  try {
    if (!host.isRepairing) {
      throw new Error(
        `shard ${shard}: its open did not meet the damage (a segment wholly below the newest snapshot is not read when a log opens), so it is not repaired from peers; not built yet (docs/REPLICATION.md, "Repair from peers")`,
      );
    }
    // The prefix past its own commit point was never compared with the cluster's log.
    if (host.durableSeq > host.committedSeq) await host.truncateAfter(host.committedSeq);
    const fromSeq = host.durableSeq + 1;
    let fetched = 0;
    let batches = 0;
    for (;;) {
      const next = host.durableSeq + 1;
      const bytes = await transport.request(replicationSubject(options.namespace, shard, peer.nodeId, 'fetch'), encodeFetch({ shard, epoch: 0, fromSeq: next, maxBytes: FETCH_BYTES, committedOnly: true }), { timeoutMs });
      const reply = decodeFetchReply(bytes);
      if (reply.kind !== 'ok') throw new Error(`${peer.nodeId} refused the fetch (epoch ${reply.epoch})`);
      if (next === fromSeq && reply.prevEpoch !== host.epochAt(next - 1)) {
        throw new Error(`${peer.nodeId} holds epoch ${reply.prevEpoch} at seq ${next - 1}, this log ${host.epochAt(next - 1)}: the committed prefixes differ (not a log of this shard's cluster?)`);
      }
      let isProgress = false;
      for (const batch of reply.batches) {
        const parsed = readBatchHeader(batch, 0);
        if (!parsed.ok) throw new Error(`${peer.nodeId} sent something that is not a batch (${parsed.problem})`);
        const { header } = parsed;
        if (header.firstSeq + header.count - 1 < host.durableSeq + 1) continue;
        if (header.leaderEpoch > host.epoch) await host.setEpoch(header.leaderEpoch);
        await host.appendSealed(batch);
        fetched += header.count;
        batches++;
        isProgress = true;
      }
      if (!isProgress || host.durableSeq >= reply.committedSeq) break;
      process.stderr.write(`\rshard ${shard}: ${formatCount(fetched)} events fetched from ${peer.nodeId}`);
    }
    await host.commitTo(host.durableSeq);
    process.stdout.write(
      `shard ${shard}: ${formatCount(fetched)} events in ${formatCount(batches)} batches (seqs ${formatCount(fromSeq)}..${formatCount(host.durableSeq)}) fetched from ${peer.nodeId}; the repair marker stays until the node's leader has confirmed the log\n`,
    );
  } finally {
    await host.close();
  }
}
