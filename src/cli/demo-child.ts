// The demo's load generator: `tidelog wal load --json` as a real child process, read line by
// line (acks on stdout, ready/progress on stderr), then killed with SIGKILL mid-flight.
// Every ack line was written after its promise resolved, and a write to a pipe is synchronous
// and atomic below PIPE_BUF, so each line the parent reads is an acknowledgement.

import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { FsyncMode } from '../wal/index.ts';
import { cliArgs } from './cli-process.ts';
import { parseLoadMessage, type ProgressMessage, type ReadyMessage } from './load-messages.ts';

export interface AckedRange {
  firstSeq: number;
  lastSeq: number;
  /** The writer's pid, which load puts in the high half of every entityId. */
  pid: number;
}

export interface LoadChildOptions {
  dir: string;
  shard: number;
  loadMs: number;
  callers: number;
  batch: number;
  fsync: FsyncMode;
  segmentBytes: number;
  onStatus: (status: LoadStatus) => void;
}

export interface LoadStatus {
  elapsedMs: number;
  acked: number;
  /** From the child's last progress line; null until the first one (after a second). */
  eventsPerSecond: number | null;
  ackLatencyUsP99: number | null;
}

export interface LoadChildResult {
  pid: number;
  ready: ReadyMessage;
  acked: number;
  calls: number;
  ranges: AckedRange[];
  loadMs: number;
}

const READY_TIMEOUT_MS = 30_000;
/** After the load window, how long to wait for a first ack before giving up. */
const FIRST_ACK_TIMEOUT_MS = 60_000;
const STATUS_INTERVAL_MS = 250;
const STDERR_TAIL_LINES = 20;

/** The child currently running, so an interrupted demo can kill it on the way out. */
let activeChild: ChildProcess | null = null;

export function killActiveChild(): void {
  activeChild?.kill('SIGKILL');
}

export async function runLoadChildUntilKilled(options: LoadChildOptions): Promise<LoadChildResult> {
  const args = cliArgs([
    'wal', 'load', options.dir, '--json',
    '--shard', String(options.shard),
    '--callers', String(options.callers),
    '--batch', String(options.batch),
    '--fsync', options.fsync,
    '--segment-bytes', String(options.segmentBytes),
  ]);
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  activeChild = child;
  const pid = child.pid ?? 0;
  const ranges: AckedRange[] = [];
  let acked = 0;
  // Written by the line handlers; a holder keeps TypeScript from narrowing them to null.
  const seen: { ready: ReadyMessage | null; progress: ProgressMessage | null } = { ready: null, progress: null };
  const stderrTail: string[] = [];

  let markFirstAck: () => void = () => undefined;
  const hasAcked = new Promise<void>((resolve) => (markFirstAck = resolve));
  createInterface({ input: child.stdout! }).on('line', (line) => {
    const message = parseLoadMessage(line);
    if (message?.type !== 'ack') return;
    ranges.push({ firstSeq: message.firstSeq, lastSeq: message.lastSeq, pid });
    acked += message.n;
    markFirstAck();
  });
  let markReady: () => void = () => undefined;
  const isReady = new Promise<void>((resolve) => (markReady = resolve));
  createInterface({ input: child.stderr! }).on('line', (line) => {
    const message = parseLoadMessage(line);
    if (message?.type === 'ready') {
      seen.ready = message;
      markReady();
    } else if (message?.type === 'progress') {
      seen.progress = message;
    } else {
      stderrTail.push(line);
      if (stderrTail.length > STDERR_TAIL_LINES) stderrTail.shift();
    }
  });
  const closed = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, signal) => resolve({ code, signal }));
  });
  const failure = (what: string): Error =>
    new Error(`${what}\n  command: ${process.execPath} ${args.join(' ')}\n  child stderr:\n    ${stderrTail.join('\n    ') || '(empty)'}`);

  try {
    let readyTimer: NodeJS.Timeout | undefined;
    const outcome = await Promise.race([
      isReady.then(() => 'ready' as const),
      closed.then(() => 'exited' as const),
      new Promise<'timeout'>((resolve) => (readyTimer = setTimeout(() => resolve('timeout'), READY_TIMEOUT_MS))),
    ]);
    clearTimeout(readyTimer);
    const ready = seen.ready;
    if (outcome !== 'ready' || ready === null) {
      throw failure(outcome === 'timeout' ? `load child not ready after ${READY_TIMEOUT_MS} ms` : 'load child exited before it was ready');
    }
    const loadStartMs = performance.now();
    const ackedAtReady = acked;
    const statusTimer = setInterval(() => {
      const progress = seen.progress;
      options.onStatus({
        elapsedMs: performance.now() - loadStartMs,
        acked: acked - ackedAtReady,
        eventsPerSecond: progress?.eventsPerSecond ?? null,
        ackLatencyUsP99: progress?.ackLatencyUsP99 ?? null,
      });
    }, STATUS_INTERVAL_MS);
    // The load runs for loadMs, and at least until the first ack: a kill before anything was
    // acknowledged would check nothing (a busy machine can be that slow to start).
    let loadTimer: NodeJS.Timeout | undefined;
    const exitedEarly = await Promise.race([
      closed.then(() => true),
      Promise.all([hasAcked, new Promise<void>((resolve) => (loadTimer = setTimeout(resolve, options.loadMs)))]).then(() => false),
      new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), options.loadMs + FIRST_ACK_TIMEOUT_MS).unref()),
    ]);
    clearTimeout(loadTimer);
    if (exitedEarly === 'timeout') throw failure(`no ack within ${FIRST_ACK_TIMEOUT_MS} ms of load`);
    clearInterval(statusTimer);
    if (exitedEarly) throw failure('load child exited before it was killed');
    const loadMs = performance.now() - loadStartMs;
    child.kill('SIGKILL');
    const { signal } = await closed;
    if (signal !== 'SIGKILL') throw failure(`load child ended with ${signal ?? 'an exit code'}, not SIGKILL`);
    return { pid, ready, acked, calls: ranges.length, ranges, loadMs };
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    activeChild = null;
  }
}
