// A disk in memory for the deterministic simulation: a FileIo whose every operation settles
// as a microtask (no real I/O, so a run depends on its seed alone), with the power-loss model
// of faulty-file-io.ts: a datasync/sync makes a file's bytes durable, a syncDir makes the
// directory's entries durable (creates, renames, unlinks), and powerCut() keeps only what was
// durable. Handles and FileIos of the "process" that was running at the cut never settle
// again (that process is dead), so a WAL left behind cannot touch the disk after it.
import { basename, dirname } from 'node:path';
import type { FileIo, OpenMode, WalFile } from '../../src/wal/file-io.ts';

interface Inode {
  data: Uint8Array;
  length: number;
  /** Bytes known to be on the platter. */
  syncedLength: number;
}

function errno(code: string, path: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: ${path}`), { code, path });
}

export class MemoryDisk {
  /** dir → name → inode, as the running process sees it. */
  private entries = new Map<string, Map<string, Inode>>();
  /** dir → name → inode, as it would be after a power cut. */
  private durableEntries = new Map<string, Map<string, Inode>>();
  private generation = 0;
  /** Written bytes in all (for a sanity bound in tests). */
  bytesWritten = 0;

  /** The FileIo of a process started now; it goes dead at the next powerCut(). */
  mount(): FileIo {
    const generation = this.generation;
    const alive = (): boolean => generation === this.generation;
    const dead = <T>(): Promise<T> => new Promise<T>(() => undefined);
    const run = <T>(work: () => T): Promise<T> => {
      if (!alive()) return dead<T>();
      try {
        return Promise.resolve(work());
      } catch (error) {
        return Promise.reject(error as Error);
      }
    };
    return {
      open: (path, mode) => run(() => this.openFile(path, mode, alive)),
      readdir: (dir) => run(() => [...(this.entries.get(dir)?.keys() ?? [])].sort()),
      mkdirp: (dir) =>
        run(() => {
          for (let at = dir; at !== dirname(at); at = dirname(at)) {
            if (!this.entries.has(at)) this.entries.set(at, new Map());
            if (!this.durableEntries.has(at)) this.durableEntries.set(at, new Map());
          }
        }),
      rename: (from, to) =>
        run(() => {
          const inode = this.lookup(from);
          if (inode === undefined) throw errno('ENOENT', from);
          this.dirOf(from).delete(basename(from));
          this.dirOf(to).set(basename(to), inode);
        }),
      unlink: (path) =>
        run(() => {
          if (!this.dirOf(path).delete(basename(path))) throw errno('ENOENT', path);
        }),
      syncDir: (dir) =>
        run(() => {
          this.durableEntries.set(dir, new Map(this.entries.get(dir) ?? []));
        }),
      exists: (path) => run(() => this.lookup(path) !== undefined || this.entries.has(path)),
    };
  }

  /** Power is cut: unsynced bytes and undurable directory changes are lost; the running process is dead. */
  powerCut(): void {
    this.generation++;
    const kept = new Map<string, Map<string, Inode>>();
    for (const [dir, names] of this.durableEntries) {
      const copy = new Map<string, Inode>();
      for (const [name, inode] of names) {
        inode.length = Math.min(inode.length, inode.syncedLength);
        copy.set(name, inode);
      }
      kept.set(dir, copy);
    }
    // Inodes that only undurable entries named are gone; those still named keep synced bytes.
    for (const names of this.entries.values()) for (const inode of names.values()) inode.length = Math.min(inode.length, inode.syncedLength);
    this.entries = kept;
    this.durableEntries = new Map([...kept].map(([dir, names]) => [dir, new Map(names)]));
  }

  /**
   * Bit rot while the process is down: flips one byte in the middle of the durable bytes of the
   * newest file in `dir` whose name ends with `suffix` (the one a recovery reads to its end, so
   * the damage is found at the next open, with batches after it: not a torn tail). The name of
   * the file damaged, or null.
   */
  rotNewest(dir: string, suffix: string): string | null {
    const names = [...(this.entries.get(dir)?.keys() ?? [])].filter((name) => name.endsWith(suffix)).sort();
    const name = names[names.length - 1];
    if (name === undefined) return null;
    const inode = this.entries.get(dir)!.get(name)!;
    const durable = Math.min(inode.length, inode.syncedLength);
    if (durable < 2048) return null;
    inode.data[Math.floor(durable / 2)] ^= 0x5a;
    return name;
  }

  /** The process is killed (SIGKILL): open handles die, but the page cache keeps every write. */
  kill(): void {
    this.generation++;
  }

  private dirOf(path: string): Map<string, Inode> {
    const dir = this.entries.get(dirname(path));
    if (dir === undefined) throw errno('ENOENT', dirname(path));
    return dir;
  }

  private lookup(path: string): Inode | undefined {
    return this.entries.get(dirname(path))?.get(basename(path));
  }

  private openFile(path: string, mode: OpenMode, alive: () => boolean): WalFile {
    let inode = this.lookup(path);
    if (inode === undefined) {
      if (mode !== 'create') throw errno('ENOENT', path);
      inode = { data: new Uint8Array(1024), length: 0, syncedLength: 0 };
      this.dirOf(path).set(basename(path), inode);
    } else if (mode === 'create') {
      inode.length = 0;
      inode.syncedLength = 0;
    }
    const node = inode;
    const run = <T>(work: () => T): Promise<T> => (alive() ? Promise.resolve().then(work) : new Promise<T>(() => undefined));
    let isClosed = false;
    const open = (): void => {
      if (isClosed) throw errno('EBADF', path);
    };
    return {
      path,
      fd: null,
      write: (bytes, position) =>
        run(() => {
          open();
          const end = position + bytes.byteLength;
          if (end > node.data.byteLength) {
            const grown = new Uint8Array(Math.max(end, node.data.byteLength * 2));
            grown.set(node.data.subarray(0, node.length));
            node.data = grown;
          }
          if (position > node.length) node.data.fill(0, node.length, position);
          node.data.set(bytes, position);
          node.length = Math.max(node.length, end);
          // A rewrite below the synced length is not durable until the next sync.
          if (position < node.syncedLength) node.syncedLength = position;
          this.bytesWritten += bytes.byteLength;
          return bytes.byteLength;
        }),
      read: (into, position) =>
        run(() => {
          open();
          if (position >= node.length) return 0;
          const count = Math.min(into.byteLength, node.length - position);
          into.set(node.data.subarray(position, position + count));
          return count;
        }),
      datasync: () =>
        run(() => {
          open();
          node.syncedLength = node.length;
        }),
      sync: () =>
        run(() => {
          open();
          node.syncedLength = node.length;
        }),
      truncate: (length) =>
        run(() => {
          open();
          if (length < node.length) node.data.fill(0, length, node.length);
          node.length = length;
          if (node.syncedLength > length) node.syncedLength = length;
        }),
      size: () =>
        run(() => {
          open();
          return node.length;
        }),
      close: () =>
        run(() => {
          isClosed = true;
        }),
    };
  }
}
