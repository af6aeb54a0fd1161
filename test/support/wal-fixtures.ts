// Shared helpers for WAL tests: temp dirs, deterministic events, collecting async iterables.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Wal, type SignalEvent, type WalOpenResult, type WalOptions } from '../../src/wal/index.ts';

export function tempDir(label = 'wal'): string {
  return mkdtempSync(join(tmpdir(), `tidelog-${label}-`));
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/** The seed suite's make_event: unique per id. */
export function makeEvent(id: number): SignalEvent {
  return { entityId: BigInt(id), signalType: 1, weight: 1, timestampNs: BigInt(id) * 1_000_000_000n };
}

/** The acceptance scenario's make_varied_event: varied fields, unique per index. */
export function makeVariedEvent(index: number): SignalEvent {
  return {
    entityId: BigInt(index * 7 + 13),
    signalType: index % 256,
    weight: Math.fround((index % 100) * 0.01 + 0.5),
    timestampNs: 1_000_000_000n + BigInt(index) * 1_000_000n,
  };
}

/** Runs `run` with a fresh temp dir and removes the dir afterwards, whatever happens. */
export async function withTempDir(run: (dir: string) => Promise<void>, label = 'wal'): Promise<void> {
  const dir = tempDir(label);
  try {
    await run(dir);
  } finally {
    removeDir(dir);
  }
}

export async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const items: T[] = [];
  for await (const item of iterable) items.push(item);
  return items;
}

/** Runs `run` and returns the error it rejects with (fails the test if it resolves). */
export async function rejection(run: () => Promise<unknown>): Promise<Error & { code?: string }> {
  try {
    await run();
  } catch (error) {
    return error as Error & { code?: string };
  }
  throw new Error('expected a rejection, but the call resolved');
}

/** Wal.open, then lead() at the epoch it opened with: an external-commit WAL that takes local appends. */
export async function openLeading(options: WalOptions): Promise<WalOpenResult> {
  const opened = await Wal.open(options);
  await opened.wal.lead(opened.wal.epoch);
  return opened;
}
