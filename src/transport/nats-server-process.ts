// Starts a nats-server child process on a loopback port: the embedded mode's broker and the
// integration tests' harness. Invariants: the server binds 127.0.0.1 only (never reachable
// from off the machine); start() resolves only once the server said it is ready; a child
// never outlives this process when it exits normally or dies of SIGINT/SIGTERM/SIGHUP (an
// exit hook kills every child and removes the store dirs we created). Only a SIGKILL of this
// process can orphan a child: Node has no parent-death signal.

import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { deferred } from '../deferred.ts';
import { TidelogError } from '../errors.ts';

export const NATS_INSTALL_HINT =
  'nats-server was not found on PATH (nor in /usr/sbin, /usr/local/bin). Install it: ' +
  '`sudo apt-get install -y nats-server` on Debian/Ubuntu, or a release binary from ' +
  'https://github.com/nats-io/nats-server/releases; or pass its path as `binary`.';

export interface NatsServerOptions {
  /** 0 (default): a free loopback port picked now, kept across restarts. */
  port?: number;
  /** Run with -js (default true). */
  jetStream?: boolean;
  /** JetStream store; default a new temp dir, removed by stop(). */
  storeDir?: string;
  /** Path of the nats-server binary; default findNatsServer(). */
  binary?: string;
  /** Extra command-line arguments (routes, a config file…). */
  args?: readonly string[];
  /** How long to wait for "Server is ready" (default 10 000). */
  startTimeoutMs?: number;
  /** How long stop() waits after SIGTERM before it sends SIGKILL (default 5 000). */
  stopTimeoutMs?: number;
}

export interface NatsServerProcess {
  /** nats://127.0.0.1:<port> */
  readonly url: string;
  readonly port: number;
  /** Pid of the running child; null while stopped. */
  readonly pid: number | null;
  /** JetStream store dir; null without JetStream. */
  readonly storeDir: string | null;
  readonly isRunning: boolean;
  /** SIGTERM, wait for exit, remove the temp store dir if we created it. Idempotent. */
  stop(): Promise<void>;
  /** SIGKILL and wait for exit; keeps the store dir, so restart() finds it. */
  kill(): Promise<void>;
  /**
   * Stops the child if running, then starts a new one on the same port and store dir and
   * waits until it is ready. After stop() the temp store dir starts empty again.
   */
  restart(): Promise<void>;
}

const SEARCH_DIRS_BEYOND_PATH = ['/usr/sbin', '/usr/local/sbin', '/usr/local/bin', '/usr/bin'];
/** Bytes of the server's log kept to explain a failure. */
const LOG_TAIL_BYTES = 16 << 10;
const READY_LINE = 'Server is ready';
/** How often restart() retries a port that a dying predecessor may still hold. */
const RESTART_BIND_ATTEMPTS = 20;
const RESTART_BIND_RETRY_MS = 100;

/** The nats-server binary on PATH (then the usual sbin dirs Debian uses); null if none. */
export function findNatsServer(): string | null {
  const dirs = [...(process.env.PATH ?? '').split(delimiter).filter((dir) => dir !== ''), ...SEARCH_DIRS_BEYOND_PATH];
  for (const dir of dirs) {
    const candidate = join(dir, 'nats-server');
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return null;
}

/** A port nobody listened on a moment ago (another process may take it before we do). */
export async function pickFreePort(): Promise<number> {
  const server = createServer();
  const listening = deferred<number>();
  server.once('error', listening.reject);
  server.listen(0, '127.0.0.1', () => {
    const address = server.address();
    listening.resolve(typeof address === 'object' && address !== null ? address.port : 0);
  });
  const port = await listening.promise;
  await new Promise<void>((resolveClose) => server.close(() => resolveClose()));
  return port;
}

export async function startNatsServer(options: NatsServerOptions = {}): Promise<NatsServerProcess> {
  const binary = options.binary ?? findNatsServer();
  if (binary === null) throw new TidelogError('IO_ERROR', NATS_INSTALL_HINT, { details: { binary: 'nats-server' } });
  const requestedPort = options.port ?? 0;
  if (!Number.isInteger(requestedPort) || requestedPort < 0 || requestedPort > 65_535) {
    throw new TidelogError('BAD_REQUEST', `port must be an integer in 0..65535, got ${requestedPort}`, { details: { port: requestedPort } });
  }
  const jetStream = options.jetStream ?? true;
  const ownsStoreDir = jetStream && options.storeDir === undefined;
  const storeDir = !jetStream ? null : (options.storeDir ?? mkdtempSync(join(tmpdir(), 'tidelog-nats-')));
  if (ownsStoreDir && storeDir !== null) ownedDirs.add(storeDir);
  // A picked port may be taken between picking and binding: pick again once.
  for (let attempt = 1; ; attempt++) {
    const port = requestedPort === 0 ? await pickFreePort() : requestedPort;
    const server = new NatsServer(binary, port, storeDir, ownsStoreDir, options);
    try {
      await server.start();
      return server;
    } catch (error) {
      const mayRetry = requestedPort === 0 && attempt === 1 && error instanceof TidelogError && error.context.isAddressInUse === true;
      if (!mayRetry) {
        if (ownsStoreDir && storeDir !== null) removeOwnedDir(storeDir);
        throw error;
      }
    }
  }
}

class NatsServer implements NatsServerProcess {
  readonly url: string;
  private child: ChildProcess | null = null;
  private exited: Promise<void> = Promise.resolve();
  private logTail = '';

  constructor(
    private readonly binary: string,
    readonly port: number,
    readonly storeDir: string | null,
    private readonly ownsStoreDir: boolean,
    private readonly options: NatsServerOptions,
  ) {
    this.url = `nats://127.0.0.1:${port}`;
  }

  get pid(): number | null {
    return this.child?.pid ?? null;
  }

  get isRunning(): boolean {
    return this.child !== null;
  }

  async start(): Promise<void> {
    const args = ['-a', '127.0.0.1', '-p', String(this.port), ...(this.storeDir === null ? [] : ['-js', '-sd', this.storeDir]), ...(this.options.args ?? [])];
    this.logTail = '';
    const child = spawn(this.binary, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    this.child = child;
    liveChildren.add(child);
    installExitHooks();
    const ready = deferred<void>();
    const exited = deferred<void>();
    this.exited = exited.promise;
    let isReady = false;
    child.stderr?.setEncoding('utf8');
    // Keep reading after "ready": a full pipe would block the server's logging.
    child.stderr?.on('data', (chunk: string) => {
      this.logTail = (this.logTail + chunk).slice(-LOG_TAIL_BYTES);
      if (!isReady && this.logTail.includes(READY_LINE)) {
        isReady = true;
        ready.resolve();
      }
    });
    child.once('error', (error) => {
      // spawn failed (ENOENT, EACCES): no 'exit' follows.
      liveChildren.delete(child);
      if (this.child === child) this.child = null;
      exited.resolve();
      ready.reject(new TidelogError('IO_ERROR', `cannot run ${this.binary}: ${error.message}. ${NATS_INSTALL_HINT}`, { cause: error, details: { binary: this.binary } }));
    });
    child.once('exit', (code, signal) => {
      liveChildren.delete(child);
      if (this.child === child) this.child = null;
      exited.resolve();
      if (!isReady) {
        const isAddressInUse = this.logTail.includes('address already in use');
        ready.reject(new TidelogError('IO_ERROR', `nats-server exited before it was ready (code ${code}, signal ${signal}):\n${this.logTail}`, {
          details: { binary: this.binary, port: this.port, exitCode: code, signal, isAddressInUse, log: this.logTail },
        }));
      }
    });
    const startTimeoutMs = this.options.startTimeoutMs ?? 10_000;
    const timer = setTimeout(() => {
      ready.reject(new TidelogError('TIMEOUT', `nats-server was not ready within ${startTimeoutMs} ms:\n${this.logTail}`, {
        details: { binary: this.binary, port: this.port, pid: child.pid, startTimeoutMs, log: this.logTail },
      }));
    }, startTimeoutMs);
    try {
      await ready.promise;
    } catch (error) {
      await this.signalAndWait('SIGKILL');
      throw error;
    } finally {
      clearTimeout(timer);
    }
    // Ready: the child must not keep this process alive on its own; the exit hook ends it.
    child.unref();
    (child.stderr as { unref?: () => void } | null)?.unref?.();
  }

  async stop(): Promise<void> {
    await this.terminate();
    if (this.ownsStoreDir && this.storeDir !== null) removeOwnedDir(this.storeDir);
  }

  async kill(): Promise<void> {
    await this.signalAndWait('SIGKILL');
  }

  async restart(): Promise<void> {
    await this.terminate();
    if (this.ownsStoreDir && this.storeDir !== null && !existsSync(this.storeDir)) {
      mkdirSync(this.storeDir, { recursive: true });
      ownedDirs.add(this.storeDir);
    }
    // The old listener is gone once the child exited, but retry a little in case another
    // process grabbed the port meanwhile and lets go of it.
    for (let attempt = 1; ; attempt++) {
      try {
        await this.start();
        return;
      } catch (error) {
        const isAddressInUse = error instanceof TidelogError && error.context.isAddressInUse === true;
        if (!isAddressInUse || attempt >= RESTART_BIND_ATTEMPTS) throw error;
        await new Promise((resolveWait) => setTimeout(resolveWait, RESTART_BIND_RETRY_MS));
      }
    }
  }

  /** SIGTERM; SIGKILL if it has not exited within stopTimeoutMs. */
  private async terminate(): Promise<void> {
    if (this.child === null) return;
    const stopTimeoutMs = this.options.stopTimeoutMs ?? 5_000;
    const timer = setTimeout(() => this.child?.kill('SIGKILL'), stopTimeoutMs);
    try {
      await this.signalAndWait('SIGTERM');
    } finally {
      clearTimeout(timer);
    }
  }

  private async signalAndWait(signal: NodeJS.Signals): Promise<void> {
    const child = this.child;
    if (child === null) return this.exited;
    // A ref'd timer keeps this process alive while we wait for an unref'd child to exit.
    const keepAlive = setInterval(() => undefined, 1_000);
    try {
      child.kill(signal);
      await this.exited;
    } finally {
      clearInterval(keepAlive);
    }
  }
}

// ── children never outlive us ───────────────────────────────────────────────────────────

const liveChildren = new Set<ChildProcess>();
const ownedDirs = new Set<string>();
let areExitHooksInstalled = false;

function removeOwnedDir(dir: string): void {
  ownedDirs.delete(dir);
  rmSync(dir, { recursive: true, force: true });
}

function killAllChildren(): void {
  for (const child of liveChildren) {
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
  liveChildren.clear();
  for (const dir of ownedDirs) {
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch {
      // best effort while exiting
    }
  }
  ownedDirs.clear();
}

function installExitHooks(): void {
  if (areExitHooksInstalled) return;
  areExitHooksInstalled = true;
  process.on('exit', killAllChildren);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      // Another listener means the application handles this signal (and stops its servers);
      // alone, we stand in for Node's default: clean up, then die of the same signal.
      if (process.listenerCount(signal) > 1) return;
      killAllChildren();
      process.removeListener(signal, onSignal);
      process.kill(process.pid, signal);
    };
    process.on(signal, onSignal);
  }
}
