// deleteGradually: a large file goes in steps (renamed aside first, cut from the end, then
// unlinked); a failure midway leaves only the renamed file, which a retry or the next open removes.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DELETING_SUFFIX, deleteGradually, nodeFileIo } from '../../src/wal/file-io.ts';
import { Wal } from '../../src/wal/index.ts';
import { FaultyFileIo } from '../support/faulty-file-io.ts';
import { makeEvent, rejection, withTempDir } from '../support/wal-fixtures.ts';

test('file-io - deleteGradually renames the file aside, cuts it from the end in steps, then unlinks it', async () => {
  await withTempDir(async (dir) => {
    const name = 'snap-00000-00000000000000000001.snap';
    writeFileSync(join(dir, name), new Uint8Array(10 << 20).fill(3));
    const io = new FaultyFileIo(nodeFileIo);
    await deleteGradually(io, dir, name);
    assert.equal(readdirSync(dir), []);
    const ops = io.calls.map((call) => call.op);
    assert.is(ops[0], 'rename', 'first out of its real name');
    assert.is(ops.filter((op) => op === 'truncate').length, 2, '10 MiB: cut to 6, then 2 MiB, then unlinked');
    assert.is(ops[ops.length - 1], 'unlink');
    await deleteGradually(io, dir, name); // already gone: nothing to do
  });
});

test('file-io - a deleteGradually that fails midway leaves only the renamed file; a retry finishes it', async () => {
  await withTempDir(async (dir) => {
    const name = 'wal-00000-00000000000000000001.seg';
    writeFileSync(join(dir, name), new Uint8Array(9 << 20).fill(1));
    const io = new FaultyFileIo(nodeFileIo);
    io.inject({ op: 'truncate', skip: 1, times: 1 });
    assert.is((await rejection(() => deleteGradually(io, dir, name))).code, 'EIO');
    assert.equal(readdirSync(dir), [`${name}${DELETING_SUFFIX}`]);
    await deleteGradually(io, dir, name);
    assert.equal(readdirSync(dir), []);
  });
});

test('file-io - the open removes a file left halfway through deleteGradually', async () => {
  await withTempDir(async (dir) => {
    const { wal } = await Wal.open({ dir, batchLingerMs: 0 });
    await wal.append(makeEvent(1));
    await wal.close();
    const leftover = join(dir, `wal-00000-00000000000000000000.seg${DELETING_SUFFIX}`);
    writeFileSync(leftover, new Uint8Array(1000).fill(9));
    const reopened = await Wal.open({ dir, batchLingerMs: 0 });
    assert.not.ok(existsSync(leftover));
    assert.is(reopened.wal.lastSeq, 1);
    await reopened.wal.close();
  });
});

test.run();
