// Orphan files of a replicated shard in availability mode (docs/REPLICATION.md, "Availability
// mode"): before a replica cuts durable batches from its log — a deposed leader's suffix that
// it acknowledged on its own fsync while cut off from the majority — it writes them here,
// durably (tmp, fsync, rename, fsync of the directory), and only then cuts. The node sends them
// to the shard's leader, which re-appends what its log lacks (src/node/orphan-merge.ts); the
// file is removed once the leader answered. A crash anywhere leaves the file: the merge is sent
// again, and the leader's merge identities make that harmless.
//
// Layout: `orphans-SSSSS-TTTTTTTTTTTTT-RRRRRRRR.tlb` in the WAL directory (S: shard, T: wall ms
// when written, for order; R: random, for uniqueness), holding the sealed batches verbatim, one
// after another (each verifies on its own checksum).

import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { TidelogError } from '../errors.ts';
import { BATCH_HEADER_BYTES, BatchKind, readBatchHeader, verifyBatch } from './batch-format.ts';
import { readWhole, writeFileAtomic, type FileIo } from './file-io.ts';
import { pad } from './segment-name.ts';

const PATTERN = /^orphans-(\d{5})-(\d{13})-([0-9a-f]{8})\.tlb$/;

/** Writes `batches` (sealed, verbatim) as one orphan file, durably; resolves with its name. */
export async function saveOrphans(io: FileIo, dir: string, shard: number, batches: readonly Uint8Array[], nowMs = Date.now()): Promise<string> {
  let total = 0;
  for (const batch of batches) total += batch.byteLength;
  const bytes = new Uint8Array(total);
  let offset = 0;
  for (const batch of batches) {
    bytes.set(batch, offset);
    offset += batch.byteLength;
  }
  const name = `orphans-${pad(shard, 5)}-${String(Math.max(0, Math.floor(nowMs))).padStart(13, '0')}-${randomBytes(4).toString('hex')}.tlb`;
  await io.mkdirp(dir);
  await writeFileAtomic(io, dir, name, bytes);
  return name;
}

/** The shard's orphan files, oldest first. */
export async function listOrphans(io: FileIo, dir: string, shard: number): Promise<string[]> {
  let names: string[];
  try {
    names = await io.readdir(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') return [];
    throw error;
  }
  return names.filter((name) => PATTERN.exec(name)?.[1] === pad(shard, 5)).sort();
}

/** The batches of an orphan file; CORRUPT_SEGMENT when any fails to parse or verify (the file is kept). */
export async function readOrphans(io: FileIo, dir: string, name: string): Promise<Uint8Array[]> {
  const bytes = await readWhole(io, join(dir, name));
  const batches: Uint8Array[] = [];
  let offset = 0;
  while (offset < bytes.byteLength) {
    const parsed = readBatchHeader(bytes, offset);
    const bad = (problem: string): never => {
      throw new TidelogError('CORRUPT_SEGMENT', `orphan file ${name}: ${problem} at byte ${offset}`, { details: { file: name, offset } });
    };
    if (!parsed.ok) return bad(parsed.problem);
    const end = offset + BATCH_HEADER_BYTES + parsed.header.payloadBytes;
    if (end > bytes.byteLength) return bad('a batch runs past the end');
    if (parsed.header.kind !== BatchKind.Events) return bad('not an events batch');
    if (!verifyBatch(bytes, offset, parsed.header.payloadBytes)) return bad('a batch fails its checksum');
    batches.push(bytes.subarray(offset, end));
    offset = end;
  }
  return batches;
}

/** Removes an orphan file durably (the leader holds its batches now). */
export async function removeOrphans(io: FileIo, dir: string, name: string): Promise<void> {
  try {
    await io.unlink(join(dir, name));
  } catch (error) {
    if ((error as NodeJS.ErrnoException | undefined)?.code !== 'ENOENT') throw error;
  }
  await io.syncDir(dir);
}

/** Removes what a crash while writing an orphan file left (`….tlb.tmp`: never renamed, so never relied on). */
export async function removeOrphanLeftovers(io: FileIo, dir: string, shard: number): Promise<number> {
  let names: string[];
  try {
    names = await io.readdir(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') return 0;
    throw error;
  }
  const leftovers = names.filter((name) => name.endsWith('.tlb.tmp') && PATTERN.exec(name.slice(0, -'.tmp'.length))?.[1] === pad(shard, 5));
  for (const name of leftovers) await io.unlink(join(dir, name));
  if (leftovers.length > 0) await io.syncDir(dir);
  return leftovers.length;
}
