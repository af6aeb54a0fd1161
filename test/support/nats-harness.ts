// Integration-test helpers on the nats-server launcher: a server on a free loopback port,
// NatsTransports with short reconnect waits (a restart is noticed in tens of ms), and waits
// for statuses and process exits that fail with a clear message instead of hanging a test
// (waits.ts: they end on the event, their deadline only bounds a hang).
// Run as a script it is also the child of the "children never outlive us" tests:
//   node --import tsx test/support/nats-harness.ts exit|sigterm
// starts a nats-server, prints "pid <n>", then exits normally or dies of SIGTERM.

import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Transport, TransportStatus } from '../../src/transport/transport.ts';
import { NatsTransport, type NatsTransportOptions } from '../../src/transport/nats.ts';
import {
  NATS_INSTALL_HINT,
  findNatsServer,
  startNatsServer,
  type NatsServerOptions,
  type NatsServerProcess,
} from '../../src/transport/nats-server-process.ts';
import { WAIT_MS, until, within } from './waits.ts';

const HARNESS_SCRIPT = fileURLToPath(import.meta.url);
const REPO_ROOT = resolve(import.meta.dirname, '..', '..');
/** A nats-server for a test; JetStream is off unless asked for (it starts faster). */
export async function startTestNats(options: NatsServerOptions = {}): Promise<NatsServerProcess> {
  if (options.binary === undefined && findNatsServer() === null) throw new Error(NATS_INSTALL_HINT);
  return startNatsServer({ jetStream: false, ...options });
}

/** Runs `run` against a fresh server and stops it afterwards, whatever happens. */
export async function withNatsServer<T>(run: (server: NatsServerProcess) => Promise<T>, options: NatsServerOptions = {}): Promise<T> {
  const server = await startTestNats(options);
  try {
    return await run(server);
  } finally {
    await server.stop();
  }
}

/** A NatsTransport that notices a restarted server within tens of milliseconds. */
export function connectTestTransport(server: NatsServerProcess, options: Partial<NatsTransportOptions> = {}): Promise<NatsTransport> {
  return NatsTransport.connect({ servers: server.url, reconnectTimeWaitMs: 50, reconnectJitterMs: 0, name: 'tidelog-test', ...options });
}

/** Every status a transport reports, in order, and a way to await the nth one of a type. */
export class StatusLog {
  readonly statuses: TransportStatus[] = [];
  readonly stop: () => void;
  private waiters: Array<{ type: TransportStatus['type']; count: number; resolve: () => void }> = [];

  constructor(transport: Transport) {
    this.stop = transport.onStatus((status) => {
      this.statuses.push(status);
      this.waiters = this.waiters.filter((waiter) => {
        const isMet = this.count(waiter.type) >= waiter.count;
        if (isMet) waiter.resolve();
        return !isMet;
      });
    });
  }

  types(): string[] {
    return this.statuses.map((status) => status.type);
  }

  count(type: TransportStatus['type']): number {
    return this.statuses.filter((status) => status.type === type).length;
  }

  /** Resolves once `count` statuses of `type` have been reported (fails after WAIT_MS). */
  waitFor(type: TransportStatus['type'], count = 1): Promise<void> {
    if (this.count(type) >= count) return Promise.resolve();
    return within(
      new Promise<void>((resolveWait) => this.waiters.push({ type, count, resolve: resolveWait })),
      `status ${type} #${count} (seen: ${this.types().join(', ') || 'none'})`,
    );
  }
}

/** Whether a process runs (a zombie counts as gone: it is dead, only not yet reaped). */
export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return true;
  }
}

/** Waits (bounded) until `pid` is gone; false if it still runs after WAIT_MS. */
export async function waitForExit(pid: number): Promise<boolean> {
  return until(() => !isProcessAlive(pid), `process ${pid} to exit`).then(
    () => true,
    () => false,
  );
}

/** Runs this file as a child in `mode`; resolves with the nats-server pid it printed and how it ended. */
export function runOrphanCheck(mode: 'exit' | 'sigterm'): Promise<{ natsPid: number; code: number | null; signal: NodeJS.Signals | null; stderr: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', HARNESS_SCRIPT, mode], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  return within(
    new Promise((resolveRun) => {
      child.once('close', (code, signal) => {
        const match = /pid (\d+)/.exec(stdout);
        resolveRun({ natsPid: match === null ? -1 : Number(match[1]), code, signal, stderr });
      });
    }),
    `the ${mode} child`,
    3 * WAIT_MS,
  );
}

// ── the child ─────────────────────────────────────────────────────────────────────────

if (process.argv[1] !== undefined && resolve(process.argv[1]) === HARNESS_SCRIPT) {
  const mode = process.argv[2];
  const server = await startTestNats({ jetStream: true });
  process.stdout.write(`pid ${server.pid}\n`, () => {
    // Neither path calls stop(): the launcher's exit hooks must end the server.
    if (mode === 'sigterm') process.kill(process.pid, 'SIGTERM');
    else process.exit(0);
  });
  setInterval(() => undefined, 60_000);
}
