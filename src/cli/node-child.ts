// A `tidelog serve` child process of a local cluster (`tidelog dev --nodes`, `tidelog chaos`):
// started and awaited until it says it is ready, its log appended to a file, and stopped the
// ways a node stops in production — SIGTERM (hands its shards off), SIGKILL (a crash),
// SIGSTOP/SIGCONT (a pause).

import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cliArgs } from './cli-process.ts';

export class NodeChild {
  private child: ChildProcess | null = null;
  constructor(
    readonly nodeId: string,
    private readonly configPath: string,
    private readonly logPath: string,
    /** More environment for the process (TIDELOG_FAULT_FILE for chaos's disk faults). */
    private readonly env: Record<string, string> = {},
  ) {}

  get pid(): number | null {
    return this.child?.pid ?? null;
  }

  async start(): Promise<void> {
    const child = spawn(process.execPath, cliArgs(['serve', '--config', this.configPath]), {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, TIDELOG_LOG_LEVEL: 'info', ...this.env },
    });
    this.child = child;
    const log = createWriteStream(this.logPath, { flags: 'a' });
    child.stderr?.pipe(log);
    await new Promise<void>((resolveReady, rejectReady) => {
      let stdout = '';
      const timer = setTimeout(() => rejectReady(new Error(`node ${this.nodeId} was not ready in 90 s (log: ${this.logPath})`)), 90_000);
      child.stdout?.setEncoding('utf8');
      child.stdout?.on('data', (chunk: string) => {
        stdout += chunk;
        if (stdout.includes(' ready ')) {
          clearTimeout(timer);
          resolveReady();
        }
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        rejectReady(new Error(`node ${this.nodeId} exited with ${code} before it was ready (log: ${this.logPath})`));
      });
    });
  }

  /** SIGKILL: no cleanup, as in a crash. */
  kill(): Promise<void> {
    return this.signalAndWait('SIGKILL');
  }

  get isRunning(): boolean {
    return this.child !== null && this.child.exitCode === null;
  }

  /** Sends `signal` (SIGUSR2: reload the disk faults); resolves when the process exited, if `awaitExit`. */
  async signal(signal: NodeJS.Signals, awaitExit = false): Promise<void> {
    const child = this.child;
    if (child === null || child.exitCode !== null || child.signalCode !== null) return;
    const exited = awaitExit ? new Promise((done) => child.once('exit', done)) : null;
    child.kill(signal);
    if (exited !== null) {
      // A process that does not exit as asked (its fault file unreadable) is killed after 10 s.
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
      this.child = null;
    }
  }

  /** SIGSTOP: the process stops where it is (a long GC pause, a stalled VM); resume() goes on. */
  pause(): void {
    this.child?.kill('SIGSTOP');
  }

  resume(): void {
    this.child?.kill('SIGCONT');
  }

  /** SIGTERM: the node hands its shards off and closes them. */
  stop(): Promise<void> {
    return this.signalAndWait('SIGTERM');
  }

  private async signalAndWait(signal: NodeJS.Signals): Promise<void> {
    const child = this.child;
    if (child === null || child.exitCode !== null) return;
    const exited = new Promise((done) => child.once('exit', done));
    // A paused process takes SIGTERM only once it runs again.
    if (signal !== 'SIGKILL') child.kill('SIGCONT');
    child.kill(signal);
    await exited;
    this.child = null;
  }
}

export interface LocalNodeSpec {
  /** The cluster's directory: the node gets `<dir>/<nodeId>/` (node.json, node.log, data/). */
  dir: string;
  nodeId: string;
  namespace: string;
  /** The one nats-server this node connects to. */
  natsUrl: string;
  router: Record<string, unknown>;
  cluster: Record<string, unknown>;
  env?: Record<string, string>;
}

/** A node of a local cluster (`tidelog dev --nodes`, `tidelog chaos`): its config written, its child made (not started). */
export function localNodeChild(spec: LocalNodeSpec): { child: NodeChild; nodeDir: string; configPath: string } {
  const nodeDir = join(spec.dir, spec.nodeId);
  mkdirSync(nodeDir, { recursive: true });
  const configPath = join(nodeDir, 'node.json');
  const config = {
    nodeId: spec.nodeId,
    namespace: spec.namespace,
    dataDir: join(nodeDir, 'data'),
    nats: { servers: [spec.natsUrl] },
    router: spec.router,
    cluster: spec.cluster,
  };
  writeFileSync(configPath, `${JSON.stringify(config, null, 2)}\n`);
  return { child: new NodeChild(spec.nodeId, configPath, join(nodeDir, 'node.log'), spec.env), nodeDir, configPath };
}
