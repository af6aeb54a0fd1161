// `tidelog status`: asks every node of a namespace for its status (one request, every node
// answers) and prints one table row per shard per node, or JSON.

import { encodeMessage, decodeReply } from '../transport/codec.ts';
import { subjects, type StatusReply } from '../transport/messages.ts';
import { NatsTransport } from '../transport/nats.ts';
import { formatBytes, formatCount, formatMs, formatTable } from './format.ts';
import { ExitCode, cliNatsAuth, type ExitCodeValue, type NatsAuthFlags } from './options.ts';

/** Credentials: TIDELOG_NATS_* (docs/SECURITY.md), then the NatsAuthFlags. */
export interface StatusOptions extends NatsAuthFlags {
  nats: string;
  namespace: string;
  timeoutMs: number;
  /** Stop collecting once this many nodes answered. */
  nodes?: number;
  json?: boolean;
}

export async function runStatus(options: StatusOptions): Promise<ExitCodeValue> {
  const auth = cliNatsAuth(options);
  const transport = await NatsTransport.connect({ servers: options.nats.split(','), name: 'tidelog-status', ...(auth === undefined ? {} : { auth }) });
  let replies: StatusReply[];
  try {
    const raw = await transport.requestMany(subjects(options.namespace).status, encodeMessage({ v: 1, t: 'status' }), {
      timeoutMs: options.timeoutMs,
      ...(options.nodes === undefined ? {} : { maxReplies: options.nodes }),
    });
    replies = raw.map((bytes) => decodeReply(bytes, 'status'));
  } finally {
    await transport.close();
  }
  replies.sort((a, b) => a.nodeId.localeCompare(b.nodeId));
  if (options.json === true) {
    process.stdout.write(`${JSON.stringify(replies, (_key, value: unknown) => (typeof value === 'bigint' ? value.toString() : value), 2)}\n`);
    return replies.length > 0 ? ExitCode.ok : ExitCode.failed;
  }
  if (replies.length === 0) {
    process.stderr.write(`tidelog status: no node answered on ${subjects(options.namespace).status} within ${options.timeoutMs} ms\n`);
    return ExitCode.failed;
  }
  const rows = replies.flatMap((reply) =>
    reply.shards.map((shard) => [
      reply.nodeId,
      reply.pid === undefined ? '-' : String(reply.pid),
      shard.failure === undefined ? reply.state : `FAILED ${shard.failure}`,
      formatMs(reply.uptimeMs),
      String(shard.shard),
      shard.phase === undefined ? shard.role : `${shard.role} (${shard.phase})`,
      shard.leader ?? (shard.phase === undefined ? reply.nodeId : '-'),
      String(shard.epoch),
      formatCount(shard.lastSeq),
      formatCount(shard.hwm),
      followerLag(shard.hwm, shard.followers),
      formatCount(shard.pendingEvents),
      String(shard.segments),
      shard.logBytes === undefined ? '-' : formatBytes(shard.logBytes),
      shard.firstSeq === undefined ? '-' : formatCount(shard.firstSeq),
      shard.snapshotSeq === undefined || shard.snapshotSeq === 0 ? '-' : `${formatCount(shard.snapshotSeq)} (${formatBytes(shard.snapshotBytes ?? 0)})`,
      retentionText(shard.retentionMaxAgeMs, shard.retentionMaxBytes),
      formatCount(shard.entities),
      formatCount(reply.sessions),
    ]),
  );
  process.stdout.write(
    `${formatTable(
      ['node', 'pid', 'state', 'uptime', 'shard', 'role', 'leader', 'epoch', 'last seq', 'hwm', 'follower lag', 'pending', 'segments', 'log', 'first seq', 'snapshot', 'retention', 'entities', 'sessions'],
      rows,
    )}\n`,
  );
  const consumers = consumerRows(replies);
  if (consumers.length > 0) process.stdout.write(`\n${formatTable(['consumer', 'shard', 'position', 'lag'], consumers)}\n`);
  for (const reply of replies) {
    for (const shard of reply.shards) {
      if (shard.failure === undefined) continue;
      const where = shard.failureFile === undefined ? '' : ` (${shard.failureFile}${shard.failureOffset === undefined ? '' : ` at offset ${shard.failureOffset}`})`;
      process.stdout.write(`${reply.nodeId} shard ${shard.shard}: ${shard.failureMessage ?? shard.failure}${where}\n`);
    }
  }
  return ExitCode.ok;
}

/**
 * Durable consumers' positions (every node of a cluster lists the same ones; the highest seen
 * is shown) and their lag: events of the shard's HWM (the highest any replica reported) after
 * the position.
 */
function consumerRows(replies: readonly StatusReply[]): string[][] {
  const hwm = new Map<number, number>();
  for (const reply of replies) for (const shard of reply.shards) hwm.set(shard.shard, Math.max(hwm.get(shard.shard) ?? 0, shard.hwm));
  const positions = new Map<string, { consumer: string; shard: number; seq: number }>();
  for (const reply of replies) {
    for (const position of reply.consumers ?? []) {
      const key = `${position.consumer}\u0000${position.shard}`;
      if ((positions.get(key)?.seq ?? -1) < position.seq) positions.set(key, position);
    }
  }
  return [...positions.values()]
    .sort((a, b) => (a.consumer < b.consumer ? -1 : a.consumer > b.consumer ? 1 : a.shard - b.shard))
    .map((position) => {
      const shardHwm = hwm.get(position.shard);
      return [position.consumer, String(position.shard), formatCount(position.seq), shardHwm === undefined ? '-' : formatCount(Math.max(0, shardHwm - position.seq))];
    });
}

/** A leader's followers as "n2 0, n3 12" (events each lacks of the HWM); "-" elsewhere. */
function followerLag(hwm: number, followers: ReadonlyArray<{ nodeId: string; matchSeq: number }> | undefined): string {
  if (followers === undefined || followers.length === 0) return '-';
  return followers.map((follower) => `${follower.nodeId} ${formatCount(Math.max(0, hwm - follower.matchSeq))}`).join(', ');
}

/** "7d / 10 GiB", "off" when neither limit is set. */
function retentionText(maxAgeMs: number | undefined, maxBytes: number | undefined): string {
  const parts: string[] = [];
  if (maxAgeMs !== undefined && maxAgeMs > 0) parts.push(formatMs(maxAgeMs));
  if (maxBytes !== undefined && maxBytes > 0) parts.push(formatBytes(maxBytes));
  return parts.length === 0 ? (maxAgeMs === undefined ? '-' : 'off') : parts.join(' / ');
}
