// The disk faults a chaos run injects into a real node process (src/wal/injected-faults.ts):
// a rule fails matching fdatasyncs with EIO and writes with ENOSPC until it is dropped; a
// power cut cuts every file the process wrote back to its last synced length and kills the
// process (checked in a child process, since it ends the process it runs in).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { systemClock } from '../../src/clock.ts';
import { InjectedFaultIo } from '../../src/wal/injected-faults.ts';
import { removeDir, tempDir } from '../support/wal-fixtures.ts';

test('injected faults - a rule fails matching fdatasyncs (EIO) and writes (ENOSPC) until the spec drops it', async () => {
  const dir = tempDir('injected-faults');
  try {
    const specPath = join(dir, 'faults.json');
    const io = new InjectedFaultIo();
    writeFileSync(specPath, JSON.stringify({ rules: [{ op: 'datasync', path: 'wal-', code: 'EIO' }, { op: 'write', path: 'full-', code: 'ENOSPC' }] }));
    io.load(specPath);
    const segment = await io.open(join(dir, 'wal-00000-1.seg'), 'create');
    assert.is(await segment.write(new Uint8Array([1, 2, 3]), 0), 3);
    const eio = await segment.datasync().then(() => null, (error: NodeJS.ErrnoException) => error.code);
    assert.is(eio, 'EIO');
    const other = await io.open(join(dir, 'full-1'), 'create');
    const enospc = await other.write(new Uint8Array([1]), 0).then(() => null, (error: NodeJS.ErrnoException) => error.code);
    assert.is(enospc, 'ENOSPC');
    assert.throws(() => other.writeSync?.(new Uint8Array([1]), 0), /ENOSPC/);
    writeFileSync(specPath, JSON.stringify({ rules: [] }));
    io.load(specPath);
    await segment.datasync();
    assert.is(await other.write(new Uint8Array([1]), 0), 1);
    await segment.close();
    await other.close();
  } finally {
    removeDir(dir);
  }
});

test('injected faults - a power cut keeps what was synced, loses the rest, and kills the process', () => {
  const dir = tempDir('injected-power');
  try {
    const script = join(dir, 'child.mts');
    const moduleUrl = resolve(import.meta.dirname, '../../src/wal/injected-faults.ts');
    writeFileSync(
      script,
      `import { writeFileSync } from 'node:fs';
import { InjectedFaultIo } from ${JSON.stringify(moduleUrl)};
const io = new InjectedFaultIo();
const file = await io.open(${JSON.stringify(join(dir, 'wal-a.seg'))}, 'create');
await file.write(new Uint8Array(1000).fill(7), 0);
await file.datasync();
await file.write(new Uint8Array(500).fill(9), 1000);
const never = await io.open(${JSON.stringify(join(dir, 'tmp-b'))}, 'create');
await never.write(new Uint8Array(300), 0);
// A segment as the WAL makes one: created as .tmp, its head synced, renamed, then appended and
// synced through the same handle; the bytes after the last sync are lost, not the synced ones.
const renamed = await io.open(${JSON.stringify(join(dir, 'wal-c.seg.tmp'))}, 'create');
await renamed.write(new Uint8Array(64).fill(1), 0);
await renamed.sync();
await io.rename(${JSON.stringify(join(dir, 'wal-c.seg.tmp'))}, ${JSON.stringify(join(dir, 'wal-c.seg'))});
await renamed.write(new Uint8Array(200).fill(2), 64);
await renamed.datasync();
await renamed.write(new Uint8Array(100).fill(3), 264);
// A cut below the synced length, then new bytes never synced: they are lost, the cut stays.
const cut = await io.open(${JSON.stringify(join(dir, 'wal-d.seg'))}, 'create');
await cut.write(new Uint8Array(500).fill(4), 0);
await cut.datasync();
await cut.truncate(200);
await cut.write(new Uint8Array(400).fill(5), 200);
writeFileSync(${JSON.stringify(join(dir, 'spec.json'))}, JSON.stringify({ rules: [], powerCut: true }));
io.load(${JSON.stringify(join(dir, 'spec.json'))});
console.log('still alive');
`,
    );
    const result = spawnSync(process.execPath, ['--import', import.meta.resolve('tsx'), script], { encoding: 'utf8', timeout: 60_000 });
    assert.is(result.signal, 'SIGKILL', `the process killed itself (status ${result.status}, ${result.stderr})`);
    assert.not.match(result.stdout, /still alive/);
    assert.is(statSync(join(dir, 'wal-a.seg')).size, 1000, 'the synced bytes stay, the 500 after them are lost');
    assert.ok(readFileSync(join(dir, 'wal-a.seg')).every((byte) => byte === 7));
    assert.is(statSync(join(dir, 'tmp-b')).size, 0, 'a file never synced is empty');
    assert.is(statSync(join(dir, 'wal-c.seg')).size, 264, 'what was synced through the handle after the rename stays');
    assert.ok(readFileSync(join(dir, 'wal-c.seg')).subarray(64).every((byte) => byte === 2));
    assert.is(statSync(join(dir, 'wal-d.seg')).size, 200, 'unsynced bytes written after a cut are lost');
  } finally {
    removeDir(dir);
  }
});

test('injected faults - clockOffsetMs moves the process\'s wall clock (forward, back) until a reload without it', () => {
  const dir = tempDir('injected-clock');
  try {
    const specPath = join(dir, 'faults.json');
    const io = new InjectedFaultIo();
    const skew = (): number => systemClock.nowMs() - Date.now();
    const skewNs = (): number => Number(systemClock.nowNs() / 1_000_000n) - Date.now();
    for (const offsetMs of [600_000, -300_000]) {
      writeFileSync(specPath, JSON.stringify({ rules: [], clockOffsetMs: offsetMs }));
      io.load(specPath);
      assert.ok(Math.abs(skew() - offsetMs) <= 5, `nowMs moved ${skew()} ms, asked ${offsetMs}`);
      assert.ok(Math.abs(skewNs() - offsetMs) <= 5, `nowNs moved ${skewNs()} ms, asked ${offsetMs}`);
    }
    writeFileSync(specPath, JSON.stringify({ rules: [] }));
    io.load(specPath);
    assert.ok(Math.abs(skew()) <= 5, `back to the true clock (${skew()} ms)`);
  } finally {
    removeDir(dir);
  }
});

test.run();
