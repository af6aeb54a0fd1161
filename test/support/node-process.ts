// `tidelog serve` as a real child process, for integration tests and the ingest benchmark:
// writes a config file, spawns the node, waits for its "ready" line, and can stop it with
// SIGTERM or kill it with SIGKILL mid-load. Children never outlive the parent process.

import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';

const REPO_ROOT = resolve(import.meta.dirname, '..', '..');
const CLI = join(REPO_ROOT, 'src', 'cli', 'main.ts');
const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

export interface NodeProcessOptions {
  /** Written as JSON to `<dir>/node.json`; dataDir defaults to `<dir>/data`. */
  config: Record<string, unknown>;
  dir: string;
  readyTimeoutMs?: number;
  /** Extra environment (e.g. TIDELOG_LOG_LEVEL). */
  env?: Record<string, string>;
  /** Extra node flags before the CLI (e.g. --cpu-prof for profiling a benchmark's node). */
  execArgv?: string[];
}

export class NodeProcess {
  private exited: Promise<number | null>;
  stderr = '';

  private constructor(
    private readonly child: ChildProcess,
    readonly options: NodeProcessOptions,
  ) {
    this.exited = new Promise((resolveExit) => child.once('exit', (code) => resolveExit(code)));
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  static async start(options: NodeProcessOptions): Promise<NodeProcess> {
    const configPath = join(options.dir, 'node.json');
    await writeFile(configPath, JSON.stringify({ dataDir: join(options.dir, 'data'), ...options.config }, null, 2));
    const child = spawn(process.execPath, [...(options.execArgv ?? []), '--import', 'tsx', CLI, 'serve', '--config', configPath], {
      cwd: REPO_ROOT,
      env: { ...process.env, TIDELOG_LOG_LEVEL: process.env.TIDELOG_TEST_LOG_LEVEL ?? 'warn', ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    live.add(child);
    const node = new NodeProcess(child, options);
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      const logDir = process.env.TIDELOG_TEST_LOG_DIR;
      if (logDir !== undefined && logDir !== '') appendFileSync(join(logDir, `${basename(options.dir)}.log`), chunk);
      // Keep the tail only: enough to explain a failure, bounded for long runs.
      node.stderr = (node.stderr + chunk).slice(-16_384);
    });
    void node.exited.then(() => live.delete(child));
    await new Promise<void>((resolveReady, rejectReady) => {
      let stdout = '';
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        rejectReady(new Error(`tidelog serve did not become ready in ${options.readyTimeoutMs ?? 30_000} ms:\n${node.stderr}`));
      }, options.readyTimeoutMs ?? 30_000);
      child.stdout?.setEncoding('utf8');
      // TIDELOG_TEST_LOG_DIR: every node's log lines kept in <dir>/<node dir name>.log (debugging a run).
      const logDir = process.env.TIDELOG_TEST_LOG_DIR;
      child.stdout?.on('data', (chunk: string) => {
        if (logDir !== undefined && logDir !== '') appendFileSync(join(logDir, `${basename(options.dir)}.log`), chunk);
        stdout += chunk;
        if (stdout.includes(' ready ')) {
          clearTimeout(timer);
          resolveReady();
        }
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        rejectReady(new Error(`tidelog serve exited with ${code} before it was ready:\n${node.stderr}`));
      });
    });
    return node;
  }

  /** SIGTERM and wait: the node stops serving, flushes and closes its shards. */
  async stop(): Promise<number | null> {
    this.child.kill('SIGTERM');
    return this.exited;
  }

  /** SIGKILL and wait: no cleanup at all, as in a crash. */
  async kill(): Promise<void> {
    this.child.kill('SIGKILL');
    await this.exited;
  }

  /** SIGSTOP: the process is frozen (no timers, no sockets served) until resume(). */
  pause(): void {
    this.child.kill('SIGSTOP');
  }

  resume(): void {
    this.child.kill('SIGCONT');
  }

  /** A new process on the same config and data directory. */
  restart(): Promise<NodeProcess> {
    return NodeProcess.start(this.options);
  }
}
