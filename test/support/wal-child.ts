// A WAL in a child process, for the lock and crash tests; also the parent's side of it
// (spawnWalChild, the deterministic events). Run as
//   node --import tsx test/support/wal-child.ts <mode> <dir> <arg>
//   hold <dir> <shard>    open the shard, print "locked", then wait to be killed
//   try <dir> <shard>     try to open the shard; print "opened" or "failed <code>"; exit
//   append <dir> <round>  open (fsync 'full', 64 KiB segments), print "open <lastSeq>", then
//                         CALLERS concurrent callers append until killed; after each call
//                         resolves, one line "ack <seq> <entityId>" per event of it
// Every event is a function of (round, caller, counter), so the parent can tell exactly what
// a child may have submitted, and an event that was never submitted cannot pass as one.

import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { writeSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isTidelogError } from '../../src/errors.ts';
import { Wal, encodeEvents, type SignalEvent } from '../../src/wal/index.ts';

const CHILD_SCRIPT = fileURLToPath(import.meta.url);
const REPO_ROOT = resolve(import.meta.dirname, '..', '..');

/** Concurrent appenders in an `append` child. */
export const CALLERS = 4;
/** The caller id the parent uses for the one event it appends after each recovery. */
export const PARENT_CALLER = 255;
export const CHILD_WAL_OPTIONS = { fsync: 'full', segmentBytes: 64 << 10, batchLingerMs: 1, batchMaxEvents: 256 } as const;

/** The event `counter` of `caller` in `round`: unique, exactly representable, checkable. */
export function eventFor(round: number, caller: number, counter: number): SignalEvent {
  return {
    entityId: (BigInt(round) << 40n) | (BigInt(caller) << 32n) | BigInt(counter),
    signalType: (caller * 31 + counter) & 0xff,
    weight: (counter % 1009) + 0.5,
    timestampNs: 1_700_000_000_000_000_000n + BigInt(round) * 1_000_000_000_000n + BigInt(caller) * 1_000_000_000n + BigInt(counter),
  };
}

export function entityParts(entityId: bigint): { round: number; caller: number; counter: number } {
  return {
    round: Number(entityId >> 40n),
    caller: Number((entityId >> 32n) & 0xffn),
    counter: Number(entityId & 0xffff_ffffn),
  };
}

/** Events in call `call` of `caller`: mostly small, sometimes more than batchMaxEvents. */
export function callSize(round: number, caller: number, call: number): number {
  let x = Math.imul(round * 7919 + caller * 104_729 + call * 1_299_709, 0x9e37_79b1) >>> 0;
  x ^= x >>> 15;
  const pick = x % 100;
  if (pick < 30) return 1;
  if (pick < 90) return 2 + (x % 60);
  return 200 + (x % 200);
}

/** Spawns this script with tsx's loader from the repository root. */
export function spawnWalChild(args: string[]): ChildProcessWithoutNullStreams {
  return spawn(process.execPath, ['--import', 'tsx', CHILD_SCRIPT, ...args], { cwd: REPO_ROOT, stdio: 'pipe' });
}

/** Calls `onLine` for every complete line; a partial line left at exit (a kill mid-write) is dropped. */
export function onLines(child: ChildProcessWithoutNullStreams, onLine: (line: string) => void): void {
  let pending = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk: string) => {
    pending += chunk;
    let end = pending.indexOf('\n');
    while (end >= 0) {
      onLine(pending.slice(0, end));
      pending = pending.slice(end + 1);
      end = pending.indexOf('\n');
    }
  });
}

/** Resolves when the child has exited and its output streams are drained. */
export function childExit(child: ChildProcessWithoutNullStreams): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  return new Promise((resolveExit) => child.once('close', (code, signal) => resolveExit({ code, signal })));
}

// ── the child ─────────────────────────────────────────────────────────────────────────

/**
 * Writes `text` to fd 1 before returning. process.stdout to a pipe is asynchronous on Linux:
 * under load it buffered hundreds of KiB of ack lines in the child while the callers went on
 * appending, and a SIGKILL then lost lines for calls long finished (CI saw a caller 8 events
 * past the limit the parent derives from the acks it heard). fd 1 is left blocking by spawn
 * as long as process.stdout is never touched, so this blocks while the parent is behind.
 */
function emit(text: string): void {
  const bytes = Buffer.from(text);
  for (let offset = 0; offset < bytes.length; ) {
    try {
      offset += writeSync(1, bytes, offset);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EAGAIN') throw error;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
    }
  }
}

async function hold(dir: string, shard: number): Promise<void> {
  await Wal.open({ dir, shard });
  emit('locked\n');
  setInterval(() => undefined, 60_000); // keep the process (and the lock) alive until killed
}

async function tryOpen(dir: string, shard: number): Promise<void> {
  try {
    const { wal } = await Wal.open({ dir, shard });
    await wal.close();
    emit('opened\n');
  } catch (error) {
    emit(`failed ${isTidelogError(error) ? error.code : String(error)}\n`);
  }
}

async function appendForever(dir: string, round: number): Promise<void> {
  const { wal } = await Wal.open({ dir, ...CHILD_WAL_OPTIONS });
  emit(`open ${wal.lastSeq}\n`);
  const caller = async (id: number): Promise<void> => {
    for (let call = 0, counter = 0; ; call++) {
      const events = Array.from({ length: callSize(round, id, call) }, (_, index) => eventFor(round, id, counter + index));
      let seqs: number[];
      if (events.length === 1 && call % 2 === 0) seqs = [await wal.append(events[0])];
      else if (call % 3 === 0) seqs = await wal.appendMany(encodeEvents(events));
      else seqs = await wal.appendMany(events);
      // Only now, after the promise resolved, may the parent hear of these events.
      emit(seqs.map((seq, index) => `ack ${seq} ${events[index].entityId}\n`).join(''));
      counter += events.length;
    }
  };
  await Promise.all(Array.from({ length: CALLERS }, (_, id) => caller(id)));
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === CHILD_SCRIPT) {
  const [mode, dir, arg] = process.argv.slice(2);
  const run = mode === 'hold' ? hold : mode === 'try' ? tryOpen : mode === 'append' ? appendForever : null;
  if (run === null || dir === undefined || arg === undefined) {
    process.stderr.write(`usage: wal-child.ts hold|try|append <dir> <shard|round>\n`);
    process.exit(2);
  }
  run(dir, Number(arg)).catch((error: unknown) => {
    process.stderr.write(`wal-child ${mode}: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  });
}
