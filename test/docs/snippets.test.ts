// Every ```ts snippet in README.md and docs/*.md runs, as a user would paste it into an ESM
// file of their project: imports of 'tidelog', 'tidelog/wal' and 'tidelog/crdt' resolve to the
// sources (the package's entry points, test/package checks the built ones), the NATS url
// `nats://127.0.0.1:4222` reaches a nats-server this test starts with a node serving the
// default namespace, and the path `/var/lib/tidelog` becomes a fresh temp dir. A snippet must
// exit 0 on its own (clients closed, nothing left waiting) within 30 s. A block meant as a
// fragment, not a program, takes another language tag (```text).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import pino from 'pino';
import { loadConfig } from '../../src/node/config.ts';
import { startNode } from '../../src/node/node.ts';
import { startTestNats } from '../support/nats-harness.ts';
import { connectTestTransport } from '../support/nats-harness.ts';

const ROOT = resolve(import.meta.dirname, '..', '..');
const TSX_URL = import.meta.resolve('tsx');
const ENTRY_POINTS: Record<string, string> = {
  tidelog: 'src/client/index.ts',
  'tidelog/wal': 'src/wal/index.ts',
  'tidelog/crdt': 'src/crdt/index.ts',
};

interface Snippet {
  where: string;
  code: string;
}

function snippetsOf(file: string): Snippet[] {
  const lines = readFileSync(file, 'utf8').split('\n');
  const found: Snippet[] = [];
  for (let at = 0; at < lines.length; at++) {
    if (lines[at].trim() !== '```ts') continue;
    const start = at + 1;
    let end = start;
    while (end < lines.length && lines[end].trim() !== '```') end++;
    found.push({ where: `${relative(ROOT, file)}:${start}`, code: lines.slice(start, end).join('\n') });
    at = end;
  }
  return found;
}

const docs = [join(ROOT, 'README.md'), ...readdirSync(join(ROOT, 'docs')).filter((name) => name.endsWith('.md')).sort().map((name) => join(ROOT, 'docs', name))];
const snippets = docs.flatMap(snippetsOf);

function runScript(file: string, cwd: string): Promise<{ status: number | null; signal: NodeJS.Signals | null; stderr: string }> {
  return new Promise((done) => {
    const child = spawn(process.execPath, ['--import', TSX_URL, file], { cwd, stdio: ['ignore', 'ignore', 'pipe'], timeout: 30_000 });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));
    child.on('close', (status, signal) => done({ status, signal, stderr }));
  });
}

test('snippets - the docs hold ts snippets, and each one runs to a clean exit', async () => {
  assert.ok(snippets.length >= 4, `found ${snippets.length} snippets`);
  const nats = await startTestNats();
  const dataDir = mkdtempSync(join(tmpdir(), 'tidelog-snippets-node-'));
  const work = mkdtempSync(join(tmpdir(), 'tidelog-snippets-'));
  const transport = await connectTestTransport(nats);
  const config = loadConfig({ env: {}, overrides: { dataDir, metrics: { port: 0 }, log: { level: 'silent' } } });
  const node = await startNode({ config, transport, logger: pino({ level: 'silent' }) });
  try {
    for (const [index, snippet] of snippets.entries()) {
      let code = snippet.code;
      for (const [name, path] of Object.entries(ENTRY_POINTS)) code = code.replaceAll(`from '${name}'`, `from '${pathToFileURL(join(ROOT, path)).href}'`);
      code = code.replaceAll('nats://127.0.0.1:4222', nats.url).replaceAll('/var/lib/tidelog', join(work, `data-${index}`));
      const file = join(work, `snippet-${index}.mts`);
      writeFileSync(file, code);
      // Not spawnSync: the node serving the snippet runs in this process's event loop.
      const run = await runScript(file, work);
      assert.is(run.status, 0, `${snippet.where} exits 0 (status ${run.status}, signal ${run.signal}):\n${run.stderr}`);
      assert.not.match(run.stderr, /Error/, `${snippet.where} prints no error:\n${run.stderr}`);
    }
  } finally {
    await node.stop();
    await transport.close();
    await nats.stop();
    rmSync(dataDir, { recursive: true, force: true });
    rmSync(work, { recursive: true, force: true });
  }
});

test.run();
