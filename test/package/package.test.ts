// The npm package as another project sees it: `npm pack` (its prepack builds dist/ with
// tsconfig.build.json), the tarball installed into a fresh project, and everything run there
// with plain node, no tsx: the three entry points ('tidelog', 'tidelog/wal', 'tidelog/crdt')
// and their type declarations, `tidelog --version`, a node started from the installed bin with
// a producer → consumer round trip against it, and `tidelog demo`, whose load child is the
// built CLI. The tarball holds no TypeScript source, so nothing here can fall back to src/.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { startTestNats } from '../support/nats-harness.ts';

const test = suite('package');

const REPO_ROOT = resolve(import.meta.dirname, '..', '..');
const VERSION = (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
/** Bounds a hung command; a passing run is far below (the build takes ~12 s on 2 cores). */
const COMMAND_TIMEOUT_MS = 180_000;

/**
 * The environment of every command: the node running this test first on PATH (the bin's
 * `#!/usr/bin/env node` finds it), and no NODE_OPTIONS, so no loader (tsx) rides along.
 */
function plainEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, PATH: `${dirname(process.execPath)}${delimiter}${process.env.PATH ?? ''}` };
  delete env.NODE_OPTIONS;
  return env;
}

interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to its end (asynchronously: the node and nats-server pipes keep being read). */
function run(command: string, args: readonly string[], options: { cwd: string; timeoutMs?: number }): Promise<RunResult> {
  return new Promise((resolveRun, rejectRun) => {
    const child = spawn(command, args, { cwd: options.cwd, env: plainEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? COMMAND_TIMEOUT_MS);
    child.once('error', (error) => {
      clearTimeout(timer);
      rejectRun(error);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolveRun({ code, signal, stdout, stderr });
    });
  });
}

function describe(what: string, result: RunResult): string {
  return `${what}: exit ${result.code ?? result.signal}\n--- stdout\n${result.stdout.slice(-4000)}\n--- stderr\n${result.stderr.slice(-4000)}`;
}

interface Packed {
  /** The temp dir holding the tarball and the project. */
  dir: string;
  /** Paths inside the tarball (package/ stripped). */
  files: string[];
  /** The consuming project, the tarball installed. */
  appDir: string;
  /** node_modules/.bin/tidelog of the project. */
  bin: string;
}

let packing: Promise<Packed> | null = null;

/** Packs and installs once; every test awaits the same result. */
function packed(): Promise<Packed> {
  packing ??= packAndInstall();
  return packing;
}

async function packAndInstall(): Promise<Packed> {
  const dir = mkdtempSync(join(tmpdir(), 'tidelog-package-'));
  const pack = await run('npm', ['pack', '--json', '--pack-destination', dir], { cwd: REPO_ROOT });
  assert.is(pack.code, 0, describe('npm pack (prepack: clean + build)', pack));
  // npm prints the lifecycle scripts' output on stderr with --json; stdout is the JSON alone.
  const [report] = JSON.parse(pack.stdout) as Array<{ filename: string; files: Array<{ path: string }> }>;
  const tarball = join(dir, report.filename);
  const appDir = join(dir, 'app');
  mkdirSync(appDir);
  writeFileSync(join(appDir, 'package.json'), `${JSON.stringify({ name: 'tidelog-package-test', private: true, type: 'module' }, null, 2)}\n`);
  const install = await run('npm', ['install', tarball, '--prefer-offline', '--no-audit', '--no-fund'], { cwd: appDir });
  assert.is(install.code, 0, describe('npm install <tarball>', install));
  return { dir, files: report.files.map((file) => file.path), appDir, bin: join(appDir, 'node_modules', '.bin', 'tidelog') };
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile())
    .map((entry) => join(entry.parentPath, entry.name));
}

test.after(async () => {
  const done = await packing?.catch(() => null);
  if (done) rmSync(done.dir, { recursive: true, force: true });
});

test('the tarball holds the build with declarations, the config and the docs, and no TypeScript source', async () => {
  const { files, appDir } = await packed();
  for (const expected of [
    'package.json',
    'README.md',
    'dist/client/index.js',
    'dist/client/index.d.ts',
    'dist/wal/index.js',
    'dist/wal/index.d.ts',
    'dist/crdt/index.js',
    'dist/crdt/index.d.ts',
    'bin/tidelog.js',
    'dist/cli/main.js',
    'dist/cli/node-child.js',
    'config/signals.json',
    'config/default.json',
    'docs/OPERATIONS.md',
  ]) {
    assert.ok(files.includes(expected), `${expected} is in the tarball`);
  }
  const sources = files.filter((file) => file.endsWith('.ts') && !file.endsWith('.d.ts'));
  assert.equal(sources, [], 'no .ts source is packed');
  assert.equal(files.filter((file) => /^(src|test|bench|scratch)\//.test(file)), [], 'no src/, test/, bench/ or scratch/');

  // The emitted imports were rewritten to .js: plain node could not load a '.ts' specifier.
  const installed = join(appDir, 'node_modules', 'tidelog', 'dist');
  const tsImports = filesUnder(installed)
    .filter((file) => file.endsWith('.js'))
    .filter((file) => /(?:from\s*|import\s*\(\s*)['"]\.{1,2}\/[^'"]*\.ts['"]/.test(readFileSync(file, 'utf8')));
  assert.equal(tsImports, [], 'no built module imports a .ts file');
});

test('tidelog --version from the installed bin prints the package version', async () => {
  const { appDir, bin } = await packed();
  const result = await run(bin, ['--version'], { cwd: appDir, timeoutMs: 30_000 });
  assert.is(result.code, 0, describe('tidelog --version', result));
  assert.is(result.stdout.trim(), VERSION);
  assert.match(VERSION, /^\d+\.\d+\.\d+/);
});

test('the declarations type-check a consumer of the three entry points', async () => {
  const { appDir } = await packed();
  writeFileSync(
    join(appDir, 'uses-types.ts'),
    `import { createProducer, createConsumer, type Ack, type ConsumedEvent } from 'tidelog';
import { Wal, type FsyncMode, type SignalEvent } from 'tidelog/wal';
import { PNCounter, defaultSignalSchema, type SignalSchema } from 'tidelog/crdt';

export const mode: FsyncMode = 'full';
export const event: SignalEvent = { entityId: 1n, signalType: 1, weight: 1, timestampNs: 1n };
export type Seen = [Ack, ConsumedEvent, SignalSchema];
export const factories = [createProducer, createConsumer, Wal.open, defaultSignalSchema] as const;
export const total: bigint = new PNCounter().increment(1, 2).micros;
// Each line below is an error only if the declarations were found (an unresolved import is any).
// @ts-expect-error createProducer is a function
export const notANumber: number = createProducer;
// @ts-expect-error the fsync modes are a closed set
export const notAMode: FsyncMode = 'sometimes';
// @ts-expect-error value is a number
export const notAString: string = new PNCounter().value;
`,
  );
  writeFileSync(
    join(appDir, 'tsconfig.json'),
    `${JSON.stringify({
      compilerOptions: {
        target: 'ES2022',
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        strict: true,
        noEmit: true,
        skipLibCheck: false,
        types: ['node'],
        typeRoots: [join(REPO_ROOT, 'node_modules', '@types')],
      },
      files: ['uses-types.ts'],
    }, null, 2)}\n`,
  );
  const tsc = join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  const result = await run(process.execPath, [tsc, '-p', appDir], { cwd: appDir, timeoutMs: 60_000 });
  assert.is(result.code, 0, describe('tsc on a consumer of the package', result));
});

test('a node from the installed bin, and a producer → consumer round trip from the installed package', async () => {
  const { appDir, bin } = await packed();
  const workDir = mkdtempSync(join(tmpdir(), 'tidelog-package-node-'));
  const server = await startTestNats();
  let node: ChildProcess | null = null;
  try {
    const namespace = 'pkgtest';
    const configPath = join(workDir, 'node.json');
    writeFileSync(configPath, JSON.stringify({
      nodeId: 'package-test',
      namespace,
      nats: { servers: [server.url] },
      dataDir: join(workDir, 'data'),
      router: { strategy: 'hash', shards: 3 },
      metrics: { enabled: false },
    }));
    const child = spawn(bin, ['serve', '--config', configPath], {
      cwd: appDir,
      env: { ...plainEnv(), TIDELOG_LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    node = child;
    let nodeStderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (nodeStderr = (nodeStderr + chunk).slice(-16_384)));
    const exited = new Promise<number | null>((resolveExit) => child.once('exit', (code) => resolveExit(code)));
    await new Promise<void>((resolveReady, rejectReady) => {
      let stdout = '';
      const timer = setTimeout(() => rejectReady(new Error(`the installed tidelog serve was not ready in 30 s:\n${nodeStderr}`)), 30_000);
      child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
        stdout += chunk;
        if (stdout.includes(' ready ')) {
          clearTimeout(timer);
          resolveReady();
        }
      });
      void exited.then((code) => {
        clearTimeout(timer);
        rejectReady(new Error(`the installed tidelog serve exited with ${code} before it was ready:\n${nodeStderr}`));
      });
    });

    writeFileSync(join(appDir, 'round-trip.mjs'), ROUND_TRIP_SCRIPT);
    const count = 500;
    const result = await run(process.execPath, ['round-trip.mjs', server.url, namespace, String(count)], { cwd: appDir, timeoutMs: 60_000 });
    assert.is(result.code, 0, describe('round-trip.mjs', result));
    const report = JSON.parse(result.stdout) as RoundTripReport;

    assert.is(report.sent.length, count);
    assert.is(report.acks.length, count, 'one ack per event');
    assert.equal([...new Set(report.acks.map((ack) => ack.shard))].sort(), [0, 1, 2], 'the hash router spread the events over the 3 shards');
    // Every acknowledged event is read back at its (shard, seq), unchanged, and nothing else is there.
    const readAt = new Map(report.read.map((event) => [`${event.shard}/${event.seq}`, event.event]));
    assert.is(report.read.length, count, 'the shards hold exactly what was sent');
    report.acks.forEach((ack, index) => {
      assert.equal(readAt.get(`${ack.shard}/${ack.seq}`), report.sent[index], `event ${index} read back at shard ${ack.shard} seq ${ack.seq}`);
    });
    for (const shard of [0, 1, 2]) {
      const seqs = report.read.filter((event) => event.shard === shard).map((event) => event.seq);
      assert.equal(seqs, seqs.map((_, index) => index + 1), `shard ${shard}: seqs 1..n without gaps`);
    }
    assert.equal(report.wal.seqs, [1, 2, 3], 'tidelog/wal: the three appends got seqs 1..3');
    assert.equal(report.wal.read, report.sent.slice(0, 3), 'tidelog/wal: read back what was appended');
    assert.equal(report.crdt.signals, ['view', 'click', 'like', 'share', 'dwell', 'hide', 'unhide'], 'tidelog/crdt: the shipped signal schema (config/signals.json in the package)');
    assert.is(report.crdt.counter, 1.5, 'tidelog/crdt: 2 − 0.5');

    child.kill('SIGTERM');
    assert.is(await exited, 0, `SIGTERM: the installed node stops cleanly\n${nodeStderr}`);
    node = null;
  } finally {
    if (node !== null && node.exitCode === null && node.signalCode === null) {
      const killed = new Promise((done) => node?.once('exit', done));
      node.kill('SIGKILL');
      await killed;
    }
    await server.stop();
    rmSync(workDir, { recursive: true, force: true });
  }
});

test('tidelog demo from the installed bin: its load child is the built CLI, run by plain node', async () => {
  const { appDir, bin } = await packed();
  const result = await run(bin, ['demo', '--seconds', '0.3', '--rounds', '1'], { cwd: appDir, timeoutMs: 120_000 });
  assert.is(result.code, 0, describe('tidelog demo', result));
  assert.match(result.stdout, /PASS: 1 SIGKILL\(s\), [\d,]+ acknowledged events, lost 0/);
});

interface ReportedEvent {
  entityId: string;
  signalType: number;
  weight: number;
  timestampNs: string;
}

interface RoundTripReport {
  sent: ReportedEvent[];
  acks: Array<{ shard: number; seq: number }>;
  read: Array<{ shard: number; seq: number; event: ReportedEvent }>;
  wal: { seqs: number[]; read: ReportedEvent[] };
  crdt: { signals: string[]; counter: number };
}

/** Run in the project with plain node: argv servers namespace count; one JSON line on stdout. */
const ROUND_TRIP_SCRIPT = `// Imports the installed package's three entry points, sends events to a node, reads them back.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createProducer, createConsumer } from 'tidelog';
import { Wal } from 'tidelog/wal';
import { PNCounter, defaultSignalSchema } from 'tidelog/crdt';

const [servers, namespace, countText] = process.argv.slice(2);
const report = (event) => ({ entityId: String(event.entityId), signalType: event.signalType, weight: event.weight, timestampNs: String(event.timestampNs) });
const events = Array.from({ length: Number(countText) }, (_, i) => ({
  entityId: BigInt(1_000_000 + i * 7919),
  signalType: 1 + (i % 5),
  weight: 1 + (i % 4) / 2,
  timestampNs: 1_700_000_000_000_000_000n + BigInt(i),
}));

const producer = await createProducer({ servers, namespace });
const acks = await producer.send(events);
await producer.close();

const consumer = await createConsumer({ servers, namespace });
const { shards } = await consumer.info();
const read = [];
for (const shard of shards) {
  for await (const consumed of consumer.read({ shard })) read.push({ shard: consumed.shard, seq: consumed.seq, event: report(consumed.event) });
}
await consumer.close();

const dir = mkdtempSync(join(tmpdir(), 'tidelog-package-wal-'));
const { wal } = await Wal.open({ dir, fsync: 'off' });
const walSeqs = [];
for (const event of events.slice(0, 3)) walSeqs.push(await wal.append(event));
const walRead = [];
for await (const { event } of wal.read({ fromSeq: 1 })) walRead.push(report(event));
await wal.close();
rmSync(dir, { recursive: true, force: true });

const schema = defaultSignalSchema();
const counter = new PNCounter().increment(1, 2).decrement(2, 0.5);

process.stdout.write(JSON.stringify({
  sent: events.map(report),
  acks: acks.map(({ shard, seq }) => ({ shard, seq })),
  read,
  wal: { seqs: walSeqs, read: walRead },
  crdt: { signals: schema.signals.map((signal) => signal.name), counter: counter.value },
}) + '\\n');
`;

test.run();
