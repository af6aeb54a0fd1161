// Shared by the CLI tests: run `tidelog` as a real child process, and make WALs to run it on.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Wal, initChecksum, nodeFileIo, recoverShard, type SignalEvent } from '../../src/wal/index.ts';

export const MAIN_PATH = resolve(import.meta.dirname, '../../src/cli/main.ts');
/** tsx as an absolute URL, so the CLI also starts from a cwd outside the repository. */
export const TSX_URL = import.meta.resolve('tsx');

export interface CliResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI to its end; timeoutMs (default 60 000) only bounds a hang: the child is killed then. */
export function runCli(args: readonly string[], options: { cwd?: string; timeoutMs?: number } = {}): CliResult {
  const result = spawnSync(process.execPath, ['--import', TSX_URL, MAIN_PATH, ...args], {
    encoding: 'utf8',
    cwd: options.cwd,
    timeout: options.timeoutMs ?? 60_000,
    maxBuffer: 64 << 20,
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

export function makeTempDir(label: string): { dir: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), `tidelog-cli-${label}-`));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface WrittenEvent {
  seq: number;
  event: SignalEvent;
}

/** `calls` sequential appendMany calls of `perCall` distinct events: one batch each. */
export async function writeWal(
  dir: string,
  options: { shard?: number; calls: number; perCall: number; segmentBytes?: number; checkpointSeq?: number },
): Promise<WrittenEvent[]> {
  const { wal } = await Wal.open({ dir, shard: options.shard ?? 0, fsync: 'off', segmentBytes: options.segmentBytes ?? 16 << 20 });
  const written: WrittenEvent[] = [];
  try {
    for (let call = 0; call < options.calls; call++) {
      const events = Array.from({ length: options.perCall }, (_, index): SignalEvent => {
        const n = call * options.perCall + index;
        return { entityId: 1_000_000_000_000n + BigInt(n), signalType: n % 7, weight: n % 3 === 0 ? 0.1 : -2.5, timestampNs: 1_700_000_000_000_000_000n + BigInt(n) };
      });
      const seqs = await wal.appendMany(events);
      seqs.forEach((seq, index) => written.push({ seq, event: events[index] }));
    }
    if (options.checkpointSeq !== undefined) await wal.checkpoint(options.checkpointSeq);
  } finally {
    await wal.close();
  }
  return written;
}

export interface BatchPosition {
  fileName: string;
  offset: number;
  firstSeq: number;
  count: number;
}

/** Where every batch of a shard sits, as the engine's own recovery sees it. */
export async function batchPositions(dir: string, shard = 0): Promise<BatchPosition[]> {
  await initChecksum();
  const positions: BatchPosition[] = [];
  await recoverShard({
    io: nodeFileIo,
    dir,
    shard,
    salvage: false,
    repair: false,
    onBatch: (_bytes, batch, segment) =>
      positions.push({ fileName: segment.fileName, offset: batch.offset, firstSeq: batch.header.firstSeq, count: batch.header.count }),
  });
  return positions;
}
