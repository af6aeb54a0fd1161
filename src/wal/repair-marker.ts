// The repair marker of a replicated shard (docs/REPLICATION.md, "Repair from peers"): a small
// file, `repair-SSSSS.json` in the WAL directory, written durably BEFORE a damaged log is cut
// back to its intact prefix, and removed only once the shard's leader has brought the log back
// past everything that may have been committed. While it exists the replica does not vote: it
// may have acknowledged batches it no longer holds, and a quorum counting it could elect a
// leader without a committed batch. A crash between the marker and the cut, or during the
// catch-up, leaves the marker: the next open is still a repair.
//
// Contents (JSON, for people; only the file's existence is read back): the damage that caused
// it — { code, message, atMs }.

import { join } from 'node:path';
import { pad } from './segment-name.ts';
import { writeFileAtomic, type FileIo } from './file-io.ts';

export function repairMarkerFileName(shard: number): string {
  return `repair-${pad(shard, 5)}.json`;
}

export async function markRepair(io: FileIo, dir: string, shard: number, reason: { code: string; message: string }): Promise<void> {
  await io.mkdirp(dir);
  const text = `${JSON.stringify({ ...reason, atMs: Date.now() })}\n`;
  await writeFileAtomic(io, dir, repairMarkerFileName(shard), new TextEncoder().encode(text));
}

export function isRepairMarked(io: FileIo, dir: string, shard: number): Promise<boolean> {
  return io.exists(join(dir, repairMarkerFileName(shard)));
}

/** Removes the marker durably: the replica votes again after this resolves. */
export async function clearRepair(io: FileIo, dir: string, shard: number): Promise<void> {
  try {
    await io.unlink(join(dir, repairMarkerFileName(shard)));
  } catch (error) {
    // Unlinked by an earlier call whose directory sync failed: sync again.
    if ((error as NodeJS.ErrnoException | undefined)?.code !== 'ENOENT') throw error;
  }
  await io.syncDir(dir);
}
