// After a chaos run, with every node stopped: each node's replica of each shard opened from
// its own data directory, as the node itself would open it (its config: WAL settings,
// retention, signal schema; commit 'external', so the commit point is the one the replica
// recorded), and its committed log read out with its CRDT state kept open for queries. This is
// what the history checker compares: the replicas' own files, not what a consumer was served.

import { loadSignalSchema } from '../crdt/index.ts';
import { EVENT_BYTES } from '../event.ts';
import { loadConfig } from '../node/config.ts';
import { ShardHost } from '../node/shard-host.ts';
import type { ReplicaLog, ShardReplicas } from './history.ts';

export interface OpenedReplicas {
  shards: ShardReplicas[];
  /** Closes every host opened. */
  close(): Promise<void>;
}

/** Events read per page (ShardHost.read caps a page anyway). */
const PAGE_EVENTS = 65_536;

export async function openReplicas(nodes: ReadonlyArray<{ nodeId: string; configPath: string }>, shards: number, onProgress?: (line: string) => void): Promise<OpenedReplicas> {
  const hosts: ShardHost[] = [];
  const result: ShardReplicas[] = Array.from({ length: shards }, (_, shard) => ({ shard, replicas: [] }));
  try {
    for (const { nodeId, configPath } of nodes) {
      const config = loadConfig({ file: configPath, env: {} });
      const schema = loadSignalSchema(config.signals);
      for (let shard = 0; shard < shards; shard++) {
        const host = await ShardHost.open({
          shard,
          dataDir: config.dataDir,
          wal: { ...config.wal, retention: config.retention },
          commit: 'external',
          schema,
          sessions: { maxSessions: config.limits.maxSessions, maxRunsPerSession: config.limits.maxRunsPerSession },
          recentBytes: 0,
          publishFeed: () => undefined,
        });
        hosts.push(host);
        const events = await readCommitted(host);
        onProgress?.(`${nodeId} shard ${shard}: ${events.count} committed events read (seqs ${events.firstSeq}–${events.firstSeq + events.count - 1})`);
        const replica: ReplicaLog = {
          nodeId,
          committedSeq: host.hwm,
          firstSeq: events.firstSeq,
          entries: entriesOf(events),
          query: (entityId, signalTypes, atNs) => host.state.query(entityId, signalTypes, atNs),
        };
        result[shard].replicas.push(replica);
      }
    }
  } catch (error) {
    await Promise.all(hosts.map((host) => host.close().catch(() => undefined)));
    throw error;
  }
  return {
    shards: result,
    close: async () => {
      await Promise.all(hosts.map((host) => host.close().catch(() => undefined)));
    },
  };
}

interface CommittedEvents {
  firstSeq: number;
  count: number;
  /** The packed events, seq firstSeq + i at i × EVENT_BYTES. */
  packed: Uint8Array;
  /** The leader epoch of the batch holding seq firstSeq + i. */
  epochs: Float64Array;
}

async function readCommitted(host: ShardHost): Promise<CommittedEvents> {
  const hwm = host.hwm;
  const firstSeq = Math.max(1, host.firstSeq);
  const total = Math.max(0, hwm - firstSeq + 1);
  const packed = new Uint8Array(total * EVENT_BYTES);
  const epochs = new Float64Array(total);
  let nextSeq = firstSeq;
  while (nextSeq <= hwm) {
    const page = await host.read(nextSeq, PAGE_EVENTS);
    if (page.batches.length === 0) throw new Error(`shard ${host.shard}: nothing read at seq ${nextSeq} below the commit point ${hwm}`);
    for (const batch of page.batches) {
      // A page must go on where the last ended: a gap here is a damaged log, which the
      // checker reports (as an order violation) from what it is given.
      if (batch.firstSeq !== nextSeq) throw new Error(`shard ${host.shard}: read seq ${batch.firstSeq} where ${nextSeq} was next`);
      packed.set(batch.events, (nextSeq - firstSeq) * EVENT_BYTES);
      const count = batch.events.byteLength / EVENT_BYTES;
      epochs.fill(batch.epoch, nextSeq - firstSeq, nextSeq - firstSeq + count);
      nextSeq += count;
    }
  }
  return { firstSeq, count: total, packed, epochs };
}

function* entriesOf(events: CommittedEvents): Generator<{ seq: number; event: Uint8Array; epoch: number }> {
  for (let index = 0; index < events.count; index++) {
    yield { seq: events.firstSeq + index, event: events.packed.subarray(index * EVENT_BYTES, (index + 1) * EVENT_BYTES), epoch: events.epochs[index] };
  }
}
