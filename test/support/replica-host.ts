// A shard host set up as a replica for tests: shard 0, the default schema, commit 'external'
// (the test moves the commit point), batches flushed at once.
import { defaultSignalSchema } from '../../src/crdt/index.ts';
import { ShardHost } from '../../src/node/shard-host.ts';
import type { PersistedInfo } from '../../src/wal/index.ts';

export function openReplicaHost(dataDir: string, options: { fsync: 'full' | 'off'; onDurable?: (info: PersistedInfo) => void }): Promise<ShardHost> {
  return ShardHost.open({
    shard: 0,
    dataDir,
    wal: { fsync: options.fsync, batchLingerMs: 0 },
    epoch: 1,
    schema: defaultSignalSchema(),
    sessions: {},
    recentBytes: 1 << 20,
    publishFeed: () => undefined,
    commit: 'external',
    ...(options.onDurable === undefined ? {} : { onDurable: options.onDurable }),
  });
}
