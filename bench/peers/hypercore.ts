// Peer: hypercore 10 on its default storage (random-access-file).
//
// Durability, read from node_modules: random-access-file 4.x writes with fs.write and never
// calls fsync/fdatasync (there is no sync in random-access-file or random-access-storage,
// and hypercore's oplog "flush" is a write, not a sync). An append resolves once its bytes
// are in the OS page cache: it survives a process crash, not a power loss or kernel crash.
// tidelog's numbers here are with fdatasync before every ack, so the comparison favours
// hypercore. Each append call also hashes its blocks into the Merkle tree and signs the new
// root (ed25519), and appends are serialised by a mutex.

import Hypercore from 'hypercore';
import { drive, type DriveResult } from './drive.ts';

export const HYPERCORE_DURABILITY =
  'hypercore 10 / random-access-file 4: fs.write only, no fsync or fdatasync anywhere on the append path ' +
  '(acked from the page cache: survives a process crash, not a power loss)';

const EVENT_BYTES = 21;

function blocks(count: number, seed: number): Uint8Array[] {
  const result: Uint8Array[] = [];
  for (let index = 0; index < count; index++) {
    const block = Buffer.alloc(EVENT_BYTES);
    block.writeUInt32LE((seed + index) >>> 0, 0);
    block.writeUInt32LE(Math.floor((seed + index) / 2 ** 32), 4);
    result.push(block);
  }
  return result;
}

async function withCore<T>(dir: string, run: (core: Hypercore) => Promise<T>): Promise<T> {
  const core = new Hypercore(dir);
  await core.ready();
  try {
    return await run(core);
  } finally {
    await core.close();
  }
}

/** append(array of `eventsPerCall` 21-byte blocks), one caller awaiting each call. */
export function hypercoreBatchAppend(dir: string, eventsPerCall: number, durationMs: number, warmupMs: number): Promise<DriveResult> {
  const batch = blocks(eventsPerCall, 1);
  return withCore(dir, async (core) => {
    const operation = async (): Promise<number> => {
      await core.append(batch);
      return eventsPerCall;
    };
    await drive({ callers: 1, durationMs: warmupMs, maxOperations: Number.MAX_SAFE_INTEGER, operation });
    return drive({ callers: 1, durationMs, maxOperations: Number.MAX_SAFE_INTEGER, operation });
  });
}

/** append(one 21-byte block) from `callers` concurrent callers. */
export function hypercorePerEventAppend(dir: string, callers: number, durationMs: number, warmupMs: number): Promise<DriveResult> {
  const pool = blocks(4096, 1 << 20);
  return withCore(dir, async (core) => {
    const operation = async (index: number): Promise<number> => {
      await core.append(pool[index % pool.length]);
      return 1;
    };
    await drive({ callers, durationMs: warmupMs, maxOperations: Number.MAX_SAFE_INTEGER, operation });
    return drive({ callers, durationMs, maxOperations: Number.MAX_SAFE_INTEGER, operation, isLatencyRecorded: true });
  });
}
