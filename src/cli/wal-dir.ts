// What a WAL directory holds, found without opening a Wal (so without its lock): the shards
// present, each shard's segment files with their sizes, and the pid recorded in its lock file.

import { readFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { TidelogError } from '../errors.ts';
import { listShardSegments, parseSegmentFileName } from '../wal/index.ts';
import { parseSnapshotFileName } from '../wal/segment-name.ts';
import { lockFileName, segmentFileName } from '../wal/segment-name.ts';

const CHECKPOINT_PATTERN = /^checkpoint-(\d{5})\.bin$/;

export interface SegmentFile {
  fileName: string;
  firstSeq: number;
  bytes: number;
}

/** Throws BAD_REQUEST (a usage error) unless `dir` is a readable directory. */
export async function checkWalDirectory(dir: string): Promise<string[]> {
  try {
    if (!(await stat(dir)).isDirectory()) throw new TidelogError('BAD_REQUEST', `${dir} is not a directory`);
    return await readdir(dir);
  } catch (error) {
    if (error instanceof TidelogError) throw error;
    throw new TidelogError('BAD_REQUEST', `cannot read WAL directory ${dir}: ${(error as Error).message}`, { cause: error });
  }
}

/**
 * The WAL directory a user named: a WAL directory itself, or a node's data dir (its `wal/`
 * holds the shards) — whichever holds shard files; BAD_REQUEST when neither is readable.
 */
export async function findWalDirectory(path: string): Promise<{ dir: string; fileNames: string[] }> {
  const fileNames = await checkWalDirectory(path);
  if (shardsIn(fileNames).length > 0 || !fileNames.includes('wal')) return { dir: path, fileNames };
  const nested = join(path, 'wal');
  const nestedNames = await checkWalDirectory(nested);
  return shardsIn(nestedNames).length > 0 ? { dir: nested, fileNames: nestedNames } : { dir: path, fileNames };
}

/** BAD_REQUEST unless `shard` has files in `dir` (a typo must not read as an empty, intact shard). */
export function checkShardPresent(dir: string, fileNames: readonly string[], shard: number): void {
  const shards = shardsIn(fileNames);
  if (shards.includes(shard)) return;
  throw new TidelogError('BAD_REQUEST', `${dir} holds no files of shard ${shard} (shards present: ${shards.length === 0 ? 'none' : shards.join(', ')})`, {
    details: { dir, shard, shards },
  });
}

/** Shard ids with a segment, snapshot or checkpoint file in `fileNames`, ascending. */
export function shardsIn(fileNames: readonly string[]): number[] {
  const shards = new Set<number>();
  for (const name of fileNames) {
    const segment = parseSegmentFileName(name) ?? parseSnapshotFileName(name);
    if (segment !== null) shards.add(segment.shard);
    const checkpoint = CHECKPOINT_PATTERN.exec(name);
    if (checkpoint !== null) shards.add(Number(checkpoint[1]));
  }
  return [...shards].sort((a, b) => a - b);
}

/** The shard to read when the user named none: the only one present, else a usage error. */
export function pickShard(dir: string, fileNames: readonly string[], shard: number | undefined): number {
  if (shard !== undefined) {
    checkShardPresent(dir, fileNames, shard);
    return shard;
  }
  const shards = shardsIn(fileNames);
  if (shards.length === 1) return shards[0];
  if (shards.length === 0) throw new TidelogError('BAD_REQUEST', `${dir} holds no WAL segments`);
  throw new TidelogError('BAD_REQUEST', `${dir} holds shards ${shards.join(', ')}; pick one with --shard`);
}

export async function segmentFiles(dir: string, fileNames: readonly string[], shard: number): Promise<SegmentFile[]> {
  const files: SegmentFile[] = [];
  for (const name of listShardSegments(fileNames, shard)) {
    // A segment removed since readdir (truncateBefore by a live writer) simply drops out.
    const bytes = await stat(join(dir, name.fileName)).then((stats) => stats.size, () => null);
    if (bytes !== null) files.push({ fileName: name.fileName, firstSeq: name.firstSeq, bytes });
  }
  return files;
}

/** Files an earlier salvage set aside for this shard (`<segment>.damaged`). */
export function setAsideFiles(fileNames: readonly string[], shard: number): string[] {
  const prefix = segmentFileName(shard, 1).slice(0, 'wal-SSSSS-'.length);
  return fileNames.filter((name) => name.startsWith(prefix) && name.endsWith('.seg.damaged')).sort();
}

/**
 * The pid written in the shard's lock file when that process is still alive, else null.
 * Informative only (pids are reused); the lock itself is never touched, so a running writer
 * is not disturbed.
 */
export async function liveWriterPid(dir: string, shard: number): Promise<number | null> {
  const text = await readFile(join(dir, lockFileName(shard)), 'utf8').catch(() => '');
  const match = /^pid (\d+)/.exec(text);
  if (match === null) return null;
  const pid = Number(match[1]);
  if (pid === process.pid) return pid;
  try {
    process.kill(pid, 0);
    return pid;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM' ? pid : null;
  }
}
