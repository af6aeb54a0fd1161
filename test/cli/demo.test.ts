import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { createInterface } from 'node:readline';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Wal } from '../../src/wal/index.ts';
import { within } from '../support/waits.ts';
import { MAIN_PATH, TSX_URL, makeTempDir, runCli } from './harness.ts';

test('demo - a short run from another cwd exits 0 and reports lost 0', () => {
  const result = runCli(['demo', '--seconds', '2', '--rounds', '1'], { cwd: tmpdir() });
  assert.is(result.status, 0, `${result.stdout}\n${result.stderr}`);
  assert.match(result.stdout, /round 1\/1: load pid \d+/);
  assert.match(result.stdout, /lost 0 of [\d,]+ acknowledged/);
  assert.match(result.stdout, /gapless/);
  assert.match(result.stdout, /PASS: 1 SIGKILL\(s\), [\d,]+ acknowledged events, lost 0/);
  const acked = Number(/acked\s+([\d,]+) events/.exec(result.stdout)?.[1].replaceAll(',', ''));
  assert.ok(acked > 0, 'the child acknowledged something before the kill');
});

test('load - prints gapless acks and closes the WAL cleanly on SIGTERM', async () => {
  const { dir, remove } = makeTempDir('load');
  try {
    const child = spawn(process.execPath, ['--import', TSX_URL, MAIN_PATH, 'wal', 'load', dir, '--callers', '4', '--batch', '50'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const acks: Array<[number, number, number]> = [];
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const lines = createInterface({ input: child.stdout });
    lines.on('line', (line) => {
      const [word, first, last, n] = line.split(' ');
      assert.is(word, 'ack');
      acks.push([Number(first), Number(last), Number(n)]);
      if (acks.length === 20) child.kill('SIGTERM');
    });
    // Bounded: a child that never acks (or ignores SIGTERM) fails the test instead of hanging it.
    const closed = once(child, 'close') as Promise<[number | null]>;
    const [code] = await within(closed, 'the load child to ack 20 times and stop on SIGTERM').catch((error: unknown) => {
      child.kill('SIGKILL');
      throw new Error(`${(error as Error).message} (acks: ${acks.length}; stderr: ${stderr})`);
    });
    assert.is(code, 0, stderr);
    assert.match(stderr, /done: acked/);

    const seqs = acks.flatMap(([first, last, n]) => {
      assert.is(last - first + 1, n);
      return Array.from({ length: n }, (_, index) => first + index);
    });
    seqs.sort((a, b) => a - b);
    assert.equal(seqs, Array.from({ length: seqs.length }, (_, index) => index + 1), 'acks cover 1..N without gaps');

    const { wal } = await Wal.open({ dir }); // the lock was released
    assert.is(wal.lastSeq, seqs.length, 'nothing unacknowledged was left behind by a clean stop');
    await wal.close();
  } finally {
    remove();
  }
});

test.run();
