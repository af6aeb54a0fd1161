// A shard host set up as a replica for tests: shard 0, the default schema, commit 'external'
// (the test moves the commit point), batches flushed at once.
import { defaultSignalSchema } from '../../src/crdt/index.ts';
import { ShardHost, type WalSettings } from '../../src/node/shard-host.ts';
import type { FileIo, PersistedInfo } from '../../src/wal/index.ts';

export interface ReplicaHostOptions {
  fsync: 'full' | 'off';
  onDurable?: (info: PersistedInfo) => void;
  /** Default 0: a batch is flushed at once. */
  batchLingerMs?: number;
  segmentBytes?: number;
  /** Leader epoch the shard opens with (default 1; null: the one it recorded). */
  epoch?: number | null;
  /** The file system (tests inject faults here). */
  io?: FileIo;
  /** More WAL settings (retention, snapshots). */
  wal?: Partial<WalSettings>;
  /** Damage before the tail is repaired from the peers, as a clustered node does. */
  repairFromPeers?: boolean;
  /** Availability mode: acks at durable, cut batches kept as orphan files. */
  availability?: boolean;
}

export function openReplicaHost(dataDir: string, options: ReplicaHostOptions): Promise<ShardHost> {
  return ShardHost.open({
    shard: 0,
    dataDir,
    wal: { fsync: options.fsync, batchLingerMs: options.batchLingerMs ?? 0, ...(options.segmentBytes === undefined ? {} : { segmentBytes: options.segmentBytes }), ...options.wal },
    ...(options.epoch === null ? {} : { epoch: options.epoch ?? 1 }),
    schema: defaultSignalSchema(),
    sessions: {},
    recentBytes: 1 << 20,
    publishFeed: () => undefined,
    commit: 'external',
    ...(options.onDurable === undefined ? {} : { onDurable: options.onDurable }),
    ...(options.io === undefined ? {} : { io: options.io }),
    ...(options.repairFromPeers === undefined ? {} : { repairFromPeers: options.repairFromPeers }),
    ...(options.availability === undefined ? {} : { availability: options.availability }),
  });
}
