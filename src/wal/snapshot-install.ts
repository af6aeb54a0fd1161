// Installing a leader's snapshot on a replica that is behind the leader's retention (its next
// seq was deleted there): the replica's log is replaced by "the committed state as of seq S",
// and replication carries on from S + 1. Invariant: a crash at any point leaves either the old
// log untouched or the install complete once the directory is opened again — never a mix.
//
//   receive chunks ─► install-SSSSS.tmp (written in order, fdatasync'ed, every checksum of the
//   snapshot file verified) ─► the leader's epoch table through S to
//   install-SSSSS-<S>-<E>.epochs (durably) ─► rename to install-SSSSS-<S>-<E>.snap,
//   fsync(dir)   ← committed
//   ─► completeInstall (here, and again on every open until done; idempotent):
//        delete the shard's segments and snapshot files (and a checkpoint past S),
//        write the replica file: committed S, the leader's epoch starts through S (or [(E, S)]
//        from a leader that sent none), recorded and confirmed epochs kept; rename the install
//        file to the snapshot name snap-SSSSS-<S>.snap; remove the .epochs file
//   ─► Wal.open restores the snapshot and opens the first segment at S + 1.
//
// E is the epoch of the leader's batch at S (the log-matching check at S + 1 needs it); the
// snapshot file itself is the leader's, byte for byte. The epoch table tells which epoch wrote
// each seq the snapshot holds: a replica that later leads must recognise a batch of an older
// epoch as one its log holds (availability mode's merge, src/node/orphan-merge.ts), and without
// the table it would know no epoch below S.

import { join } from 'node:path';
import { TidelogError, isTidelogError } from '../errors.ts';
import { readReplicaFile, readCheckpointFile, writeReplicaFile, type EpochStart } from './checkpoint-file.ts';
import { deleteGradually, writeFully, type FileIo, type WalFile } from './file-io.ts';
import { checkpointFileName, listShardSegments, listShardSnapshots, snapshotFileName } from './segment-name.ts';
import { readSnapshotFile } from './snapshot-file.ts';

const INSTALL_PATTERN = /^install-(\d{5})-(\d{20})-(\d{20})\.snap$/;

/** The staging file of an install under way (a leftover is removed on open). */
export function installStagingName(shard: number): string {
  return `install-${String(shard).padStart(5, '0')}.tmp`;
}

/** The name a received snapshot takes once it is complete and verified: the install's commit point. */
export function installFileName(shard: number, seq: number, epochAtSeq: number): string {
  return `install-${String(shard).padStart(5, '0')}-${String(seq).padStart(20, '0')}-${String(epochAtSeq).padStart(20, '0')}.snap`;
}

/** The leader's epoch table through S, kept beside the install until it completes. */
function installEpochsName(installName: string): string {
  return installName.replace(/\.snap$/, '.epochs');
}

/** Whether `name` is an install's epoch table (or its temporary file) of `shard`: a leftover once no install is pending. */
export function isInstallEpochsFile(name: string, shard: number): boolean {
  return name.startsWith(`install-${String(shard).padStart(5, '0')}-`) && (name.endsWith('.epochs') || name.endsWith('.epochs.tmp'));
}

export interface PendingInstall {
  fileName: string;
  seq: number;
  epochAtSeq: number;
}

/** The committed installs of `shard` in `fileNames`, lowest seq first. */
function listInstalls(fileNames: readonly string[], shard: number): PendingInstall[] {
  const found: PendingInstall[] = [];
  for (const fileName of fileNames) {
    const match = INSTALL_PATTERN.exec(fileName);
    if (match === null || Number(match[1]) !== shard) continue;
    const seq = Number(match[2]);
    const epochAtSeq = Number(match[3]);
    if (Number.isSafeInteger(seq) && Number.isSafeInteger(epochAtSeq) && seq >= 1) found.push({ fileName, seq, epochAtSeq });
  }
  return found.sort((a, b) => a.seq - b.seq);
}

/** One part of a snapshot file as a leader sends it. */
export interface SnapshotPart {
  /** The snapshot's seq (the state holds every batch through it). */
  seq: number;
  /** The epoch of the leader's batch at `seq`. */
  epochAtSeq: number;
  /**
   * The leader's epoch starts through `seq` (the last one holds `seq`, of `epochAtSeq`), sent
   * with the part at offset 0; a leader of an older version sends none.
   */
  epochStarts?: readonly EpochStart[];
  /** The whole file's length. */
  fileBytes: number;
  /** Where `bytes` go in the file. */
  offset: number;
  bytes: Uint8Array;
}

/** Largest snapshot file a replica accepts (a bound on what a peer can make it write). */
const MAX_SNAPSHOT_FILE_BYTES = 64 * 2 ** 30;

/**
 * Receives one snapshot file in order into the staging file. A part at offset 0 starts over
 * (a new transfer, or the leader's snapshot was replaced); a part elsewhere that is not the
 * next one is answered with the offset expected. One receiver per shard; calls are serial.
 */
export class SnapshotReceiver {
  private file: WalFile | null = null;
  private current: { seq: number; epochAtSeq: number; epochStarts: readonly EpochStart[]; fileBytes: number; nextOffset: number } | null = null;

  constructor(
    private readonly io: FileIo,
    private readonly dir: string,
    private readonly shard: number,
  ) {}

  /**
   * Writes `part` when it is the next one; returns the offset expected next (= fileBytes when
   * the file is complete: call commit()).
   */
  async receive(part: SnapshotPart): Promise<number> {
    checkPart(part);
    const current = this.current;
    const isSameTransfer = current !== null && current.seq === part.seq && current.fileBytes === part.fileBytes && current.epochAtSeq === part.epochAtSeq;
    if (part.offset === 0 && (!isSameTransfer || current.nextOffset !== 0)) await this.begin(part);
    else if (!isSameTransfer) return 0; // a part of a transfer this replica is not receiving: start over
    const receiving = this.current!;
    if (part.offset !== receiving.nextOffset) return receiving.nextOffset;
    if (part.offset + part.bytes.byteLength > receiving.fileBytes) {
      await this.abort();
      throw new TidelogError('BAD_REQUEST', `snapshot part at ${part.offset} (+${part.bytes.byteLength}) runs past the file's ${part.fileBytes} bytes`);
    }
    try {
      await writeFully(this.file!, part.bytes, part.offset);
    } catch (error) {
      await this.abort();
      throw error;
    }
    receiving.nextOffset += part.bytes.byteLength;
    return receiving.nextOffset;
  }

  /**
   * The file is complete: fdatasync it, verify every checksum (and that it is a snapshot of
   * this shard at the seq announced), and rename it to its install name (the commit point).
   * SNAPSHOT_DAMAGED when it does not verify (the staging file is dropped).
   */
  async commit(): Promise<PendingInstall> {
    const receiving = this.current;
    const file = this.file;
    if (receiving === null || file === null || receiving.nextOffset !== receiving.fileBytes) {
      throw new TidelogError('BAD_REQUEST', `snapshot install of shard ${this.shard}: the file is not complete`);
    }
    const staging = installStagingName(this.shard);
    try {
      await file.datasync();
      await file.close();
      this.file = null;
      // Every chunk's checksum, and that it is this shard's snapshot at the seq announced.
      await readSnapshotFile(this.io, this.dir, staging, { shard: this.shard, seq: receiving.seq }, () => undefined);
      const fileName = installFileName(this.shard, receiving.seq, receiving.epochAtSeq);
      if (receiving.epochStarts.length > 0) {
        // No time is read from this record; the replica file written from it gets the install's.
        const table = { epoch: receiving.epochAtSeq, committedSeq: receiving.seq, confirmedEpoch: 0, epochStarts: receiving.epochStarts };
        await writeReplicaFile(this.io, this.dir, this.shard, table, 0n, installEpochsName(fileName));
      }
      await this.io.rename(join(this.dir, staging), join(this.dir, fileName));
      this.current = null;
      try {
        await this.io.syncDir(this.dir);
      } catch (cause) {
        // The install may be committed (the rename may reach the disk): the old log must not
        // grow any more, or the next open would replace acknowledged batches past S with it.
        throw new TidelogError('IO_ERROR', `${join(this.dir, fileName)}: the install may have committed, its directory sync failed`, {
          cause,
          details: { file: join(this.dir, fileName), installMayHaveCommitted: 1 },
        });
      }
      return { fileName, seq: receiving.seq, epochAtSeq: receiving.epochAtSeq };
    } catch (error) {
      if (isTidelogError(error) && error.context.installMayHaveCommitted === 1) throw error;
      await this.abort();
      throw error;
    }
  }

  /** Drops the transfer under way (its staging file); never throws. */
  async abort(): Promise<void> {
    this.current = null;
    const file = this.file;
    this.file = null;
    await file?.close().catch(() => undefined);
    await this.io.unlink(join(this.dir, installStagingName(this.shard))).catch(() => undefined);
  }

  private async begin(part: SnapshotPart): Promise<void> {
    await this.abort();
    if (!(await this.io.exists(this.dir))) await this.io.mkdirp(this.dir);
    this.file = await this.io.open(join(this.dir, installStagingName(this.shard)), 'create');
    this.current = { seq: part.seq, epochAtSeq: part.epochAtSeq, epochStarts: part.epochStarts ?? [], fileBytes: part.fileBytes, nextOffset: 0 };
  }
}

function checkPart(part: SnapshotPart): void {
  const isSeq = (value: number): boolean => Number.isSafeInteger(value) && value >= 0;
  if (!isSeq(part.seq) || part.seq < 1 || !isSeq(part.epochAtSeq) || !isSeq(part.offset) || !isSeq(part.fileBytes) || part.bytes.byteLength > part.fileBytes) {
    throw new TidelogError('BAD_REQUEST', `snapshot part: seq, epoch, offset and length are u53s (seq ≥ 1)`);
  }
  if (part.fileBytes > MAX_SNAPSHOT_FILE_BYTES) throw new TidelogError('BAD_REQUEST', `snapshot part: a ${part.fileBytes}-byte file is larger than ${MAX_SNAPSHOT_FILE_BYTES}`);
  if (part.bytes.byteLength === 0 && part.offset < part.fileBytes) throw new TidelogError('BAD_REQUEST', 'snapshot part: empty');
  if (part.epochStarts !== undefined) checkEpochTable(part.epochStarts, part.seq, part.epochAtSeq);
}

/** BAD_REQUEST unless `starts` is an epoch table through `seq` whose last epoch is `epochAtSeq`. */
function checkEpochTable(starts: readonly EpochStart[], seq: number, epochAtSeq: number): void {
  if (starts.length === 0) return;
  const fail = (reason: string): never => {
    throw new TidelogError('BAD_REQUEST', `snapshot part: epoch starts ${reason}`);
  };
  starts.forEach((start, index) => {
    const previous = starts[index - 1];
    if (!Number.isSafeInteger(start.epoch) || !Number.isSafeInteger(start.firstSeq) || start.epoch < 0 || start.firstSeq < 1 || start.firstSeq > seq) {
      fail(`hold (${start.epoch}, ${start.firstSeq}), not an epoch with a first seq in 1..${seq}`);
    }
    if (previous !== undefined && (start.epoch <= previous.epoch || start.firstSeq < previous.firstSeq)) fail('are out of order');
  });
  if (starts[starts.length - 1].epoch !== epochAtSeq) fail(`end with epoch ${starts[starts.length - 1].epoch}, not ${epochAtSeq} (the epoch at ${seq})`);
}

/**
 * Finishes a committed install (see the top of the file); idempotent, so an open after a crash
 * anywhere in it completes it. Returns the install finished, or null when none was pending.
 */
export async function completeInstall(io: FileIo, dir: string, shard: number, timestampNs: bigint): Promise<PendingInstall | null> {
  const names = await io.readdir(dir);
  const installs = listInstalls(names, shard);
  const pending = installs.pop();
  if (pending === undefined) return null;
  // An older committed install a crash left behind is superseded by the newest.
  for (const older of installs) {
    await io.unlink(join(dir, older.fileName));
    await io.unlink(join(dir, installEpochsName(older.fileName))).catch(() => undefined);
  }
  for (const segment of listShardSegments(names, shard)) await deleteGradually(io, dir, segment.fileName);
  for (const snapshot of listShardSnapshots(names, shard)) await deleteGradually(io, dir, snapshot.fileName);
  // A checkpoint past S would make the new log start after it.
  const checkpoint = await readCheckpointFile(io, dir, shard).catch(() => null);
  if (checkpoint !== null && checkpoint.seq > pending.seq) await io.unlink(join(dir, checkpointFileName(shard)));
  await io.syncDir(dir);
  const replica = await readReplicaFile(io, dir, shard);
  const epochsName = installEpochsName(pending.fileName);
  const sent = await readReplicaFile(io, dir, shard, epochsName).catch(() => null);
  const epochStarts = sent !== null && isEpochTable(sent.epochStarts, pending.seq, pending.epochAtSeq) ? sent.epochStarts : [{ epoch: pending.epochAtSeq, firstSeq: pending.seq }];
  await writeReplicaFile(
    io,
    dir,
    shard,
    {
      epoch: Math.max(replica?.epoch ?? 0, pending.epochAtSeq),
      committedSeq: pending.seq,
      // The log is now the committed prefix through S, longer than the one confirmed before:
      // the confirmation stands (docs/REPLICATION.md, "Snapshot install").
      confirmedEpoch: replica?.confirmedEpoch ?? 0,
      epochStarts,
    },
    timestampNs,
  );
  await io.rename(join(dir, pending.fileName), join(dir, snapshotFileName(shard, pending.seq)));
  // The rename durable first: a cut that kept only the unlink would redo the install without the table.
  await io.syncDir(dir);
  await io.unlink(join(dir, epochsName)).catch(() => undefined);
  await io.syncDir(dir);
  return pending;
}

function isEpochTable(starts: readonly EpochStart[], seq: number, epochAtSeq: number): boolean {
  try {
    checkEpochTable(starts, seq, epochAtSeq);
    return starts.length > 0;
  } catch {
    return false;
  }
}
