// The writer and flush-worker actors, observed through a WAL whose fdatasync we hold open:
// the machine's states and the groups it forms are the specification.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Wal } from '../../src/wal/index.ts';
import { nodeFileIo, type FileIo, type WalFile } from '../../src/wal/file-io.ts';
import { deferred, type Deferred } from '../../src/deferred.ts';
import { makeEvent, removeDir, tempDir } from '../support/wal-fixtures.ts';

/** A FileIo whose segment fdatasyncs wait until the test releases them, one at a time. */
class GatedFileIo implements FileIo {
  readonly waiting: Array<Deferred<void>> = [];
  private arrived = deferred<void>();
  readonly open = async (path: string, mode: Parameters<FileIo['open']>[1]): Promise<WalFile> => {
    const file = await nodeFileIo.open(path, mode);
    return Object.assign(Object.create(file) as WalFile, {
      datasync: async () => {
        const gate = deferred<void>();
        this.waiting.push(gate);
        this.arrived.resolve();
        await gate.promise;
        return file.datasync();
      },
      write: file.write.bind(file),
      read: file.read.bind(file),
      sync: file.sync.bind(file),
      truncate: file.truncate.bind(file),
      size: file.size.bind(file),
      close: file.close.bind(file),
    });
  };
  readonly readdir = nodeFileIo.readdir;
  readonly mkdirp = nodeFileIo.mkdirp;
  readonly rename = nodeFileIo.rename;
  readonly unlink = nodeFileIo.unlink;
  readonly syncDir = nodeFileIo.syncDir;
  readonly exists = nodeFileIo.exists;

  async nextSync(): Promise<void> {
    while (this.waiting.length === 0) {
      this.arrived = deferred<void>();
      await this.arrived.promise;
    }
  }

  release(): void {
    this.waiting.shift()?.resolve();
  }
}

const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

test('writer - lingers for company while idle, then flushes one group', async () => {
  const dir = tempDir();
  const io = new GatedFileIo();
  try {
    const { wal } = await Wal.open({ dir, io, batchLingerMs: 60_000, batchMaxEvents: 3 });
    assert.is(wal.stats().state, 'idle');
    const first = wal.append(makeEvent(1));
    await settle();
    assert.is(wal.stats().state, 'lingering', 'one event waits for company');
    const second = wal.append(makeEvent(2));
    const third = wal.append(makeEvent(3)); // batchMaxEvents reached: the group closes now
    await io.nextSync();
    assert.is(wal.stats().state, 'flushing');
    io.release();
    assert.equal(await Promise.all([first, second, third]), [1, 2, 3]);
    assert.is(wal.stats().flush.batches, 1);
    assert.is(wal.stats().flush.fsyncs, 1);
    await settle();
    assert.is(wal.stats().state, 'idle');
    await wal.close();
  } finally {
    removeDir(dir);
  }
});

test('writer - appends that arrive during a flush form the next group, which starts without lingering', async () => {
  const dir = tempDir();
  const io = new GatedFileIo();
  try {
    const { wal } = await Wal.open({ dir, io, batchLingerMs: 0, batchMaxEvents: 1000 });
    const first = wal.append(makeEvent(1));
    await io.nextSync(); // group 1 is in its fdatasync
    const during = Array.from({ length: 50 }, (_, index) => wal.append(makeEvent(100 + index)));
    let isFirstDurable = false;
    void first.then(() => (isFirstDurable = true));
    await settle();
    assert.not.ok(isFirstDurable, 'nothing resolves before its fdatasync returns');
    io.release();
    assert.is(await first, 1);
    await io.nextSync(); // group 2 started at once
    io.release();
    const seqs = await Promise.all(during);
    assert.equal(seqs, Array.from({ length: 50 }, (_, index) => index + 2));
    const flush = wal.stats().flush;
    assert.is(flush.batches, 2, 'the 50 appends made during the flush went as one group');
    assert.is(flush.fsyncs, 2);
    await wal.close();
  } finally {
    removeDir(dir);
  }
});

test('writer - batchLingerMs 0 flushes a lone event at once', async () => {
  const dir = tempDir();
  const io = new GatedFileIo();
  try {
    const { wal } = await Wal.open({ dir, io, batchLingerMs: 0 });
    const pending = wal.append(makeEvent(1));
    await io.nextSync();
    assert.is(wal.stats().state, 'flushing');
    io.release();
    assert.is(await pending, 1);
    await wal.close();
  } finally {
    removeDir(dir);
  }
});

test('writer - close flushes what is queued, then the machine stops', async () => {
  const dir = tempDir();
  try {
    const { wal } = await Wal.open({ dir, batchLingerMs: 60_000 });
    const pending = wal.appendMany([makeEvent(1), makeEvent(2)]);
    await wal.close();
    assert.equal(await pending, [1, 2]);
    assert.is(wal.stats().state, 'closed');
    const reopened = await Wal.open({ dir });
    assert.is(reopened.replayed.length, 2);
    await reopened.wal.close();
  } finally {
    removeDir(dir);
  }
});

test.run();
