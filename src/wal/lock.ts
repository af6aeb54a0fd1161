// One owner per shard directory. The lock is an open-file-description lock (Linux
// F_OFD_SETLK through fs-native-extensions) on wal-SSSSS.lock: a second open — from another
// process or from this one — fails with WAL_LOCKED, and the kernel drops the lock when its
// owner dies, so a lock left by a kill -9'd process is simply taken over. The file also
// records the owner's pid for the error message; the pid is informative, never trusted.

import { join } from 'node:path';
import { tryLock, unlock } from 'fs-native-extensions';
import { TidelogError } from '../errors.ts';
import { readWhole, writeFully, type FileIo, type WalFile } from './file-io.ts';
import { lockFileName } from './segment-name.ts';

export class DirectoryLock {
  private constructor(
    private readonly file: WalFile,
    readonly path: string,
  ) {}

  static async acquire(io: FileIo, dir: string, shard: number): Promise<DirectoryLock> {
    const path = join(dir, lockFileName(shard));
    const file = (await io.exists(path)) ? await io.open(path, 'readwrite') : await io.open(path, 'create');
    let isLocked: boolean;
    try {
      isLocked = file.fd === null ? true : tryLock(file.fd);
    } catch (cause) {
      await file.close();
      throw new TidelogError('IO_ERROR', `cannot lock ${path}`, { cause });
    }
    if (!isLocked) {
      await file.close();
      const owner = await readOwner(io, path);
      throw new TidelogError('WAL_LOCKED', `${path} is held by ${owner}; one process owns a WAL shard`, {
        details: { path, owner },
      });
    }
    try {
      const note = new TextEncoder().encode(`pid ${process.pid}\n`);
      await file.truncate(0);
      await writeFully(file, note, 0);
    } catch (cause) {
      // The note is informative; failing to write it must not leave the lock held.
      if (file.fd !== null) unlock(file.fd);
      await file.close().catch(() => undefined);
      throw new TidelogError('IO_ERROR', `cannot write ${path}`, { cause });
    }
    return new DirectoryLock(file, path);
  }

  async release(): Promise<void> {
    if (this.file.fd !== null) unlock(this.file.fd);
    await this.file.close();
  }
}

async function readOwner(io: FileIo, path: string): Promise<string> {
  try {
    const text = new TextDecoder().decode(await readWhole(io, path)).trim();
    return text === '' ? 'another handle' : text;
  } catch {
    return 'another handle';
  }
}
