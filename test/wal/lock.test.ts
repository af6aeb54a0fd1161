// One owner per WAL shard: a second open — in this process or another — fails with
// WAL_LOCKED, other shards of the directory are free, and a lock left by a SIGKILLed
// process is taken over (test/support/wal-child.ts holds or probes the lock).

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { FaultyFileIo } from '../support/faulty-file-io.ts';
import { rejection, withTempDir } from '../support/wal-fixtures.ts';
import { TidelogError } from '../../src/errors.ts';
import { Wal, type SignalEvent } from '../../src/wal/index.ts';
import { childExit, onLines, spawnWalChild } from '../support/wal-child.ts';

function eventAt(index: number): SignalEvent {
  return { entityId: BigInt(index), signalType: 1, weight: 1, timestampNs: 1_700_000_000_000_000_000n + BigInt(index) };
}


async function openError(dir: string, shard = 0): Promise<TidelogError> {
  try {
    const { wal } = await Wal.open({ dir, shard });
    await wal.close();
  } catch (error) {
    assert.instance(error, TidelogError);
    return error as TidelogError;
  }
  assert.unreachable('the second open succeeded');
  throw new Error('unreachable');
}

/** Runs a child that tries to open the shard and returns its one line of output. */
async function childTry(dir: string, shard = 0): Promise<string> {
  const child = spawnWalChild(['try', dir, String(shard)]);
  const lines: string[] = [];
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  onLines(child, (line) => lines.push(line));
  const exit = await childExit(child);
  assert.is(exit.code, 0, `child exited with ${exit.code}: ${stderr}`);
  return lines.join('\n');
}

test('lock - a second open of the same shard in this process fails with WAL_LOCKED', async () => {
  await withTempDir(async (dir) => {
    const { wal } = await Wal.open({ dir });
    assert.is((await openError(dir)).code, 'WAL_LOCKED');
    // The failed attempt closed its own descriptor without dropping the owner's lock.
    assert.is((await openError(dir)).code, 'WAL_LOCKED');
    assert.is(await childTry(dir), 'failed WAL_LOCKED');
    assert.is(await wal.append(eventAt(1)), 1, 'the owner is unaffected');
    await wal.close();
  });
});

test('lock - another shard in the same directory opens', async () => {
  await withTempDir(async (dir) => {
    const zero = await Wal.open({ dir, shard: 0 });
    const one = await Wal.open({ dir, shard: 1 });
    assert.is(await zero.wal.append(eventAt(1)), 1);
    assert.is(await one.wal.append(eventAt(2)), 1);
    await zero.wal.close();
    await one.wal.close();
  });
});

test('lock - close releases the lock', async () => {
  await withTempDir(async (dir) => {
    const first = await Wal.open({ dir });
    await first.wal.append(eventAt(1));
    await first.wal.close();
    const second = await Wal.open({ dir });
    assert.is(second.wal.lastSeq, 1);
    await second.wal.close();
  });
});

test('lock - a second process fails with WAL_LOCKED while this one holds the shard', async () => {
  await withTempDir(async (dir) => {
    const { wal } = await Wal.open({ dir });
    assert.is(await childTry(dir), 'failed WAL_LOCKED');
    assert.is(await childTry(dir, 1), 'opened', 'another shard is free');
    await wal.close();
    assert.is(await childTry(dir), 'opened', 'free once closed');
  });
});

test('lock - a lock held by a SIGKILLed process is taken over', async () => {
  await withTempDir(async (dir) => {
    const child = spawnWalChild(['hold', dir, '0']);
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = childExit(child);
    const locked = new Promise<void>((resolve, reject) => {
      onLines(child, (line) => (line === 'locked' ? resolve() : undefined));
      void exited.then(() => reject(new Error(`child exited before locking: ${stderr}`)));
    });
    await locked;
    try {
      assert.is((await openError(dir)).code, 'WAL_LOCKED');
    } finally {
      child.kill('SIGKILL');
    }
    assert.is((await exited).signal, 'SIGKILL');
    const { wal } = await Wal.open({ dir });
    assert.is(await wal.append(eventAt(1)), 1);
    await wal.close();
  });
});

test('lock - a failure writing the lock note does not leave the shard locked', async () => {
  await withTempDir(async (dir) => {
    const io = new FaultyFileIo();
    io.inject({ op: 'write', path: /\.lock$/, code: 'ENOSPC', times: 1 });
    assert.is((await rejection(() => Wal.open({ dir, io }))).code, 'IO_ERROR');
    const { wal } = await Wal.open({ dir, io });
    await wal.close();
  });
});

test.run();
