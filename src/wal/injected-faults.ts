// Disk faults for a real node process (`tidelog chaos`): a FileIo over the real file system
// whose faults come from a JSON file named by TIDELOG_FAULT_FILE, read at start and again on
// every SIGUSR2 (src/cli/serve.ts wires it; without the variable nothing of this runs).
//
//   { "rules": [ { "op": "datasync" | "write", "path": "<substring>", "code": "EIO" | "ENOSPC" } ],
//     "powerCut": false, "clockOffsetMs": 0 }
//
// - a rule makes every matching call fail with a Node-shaped error (EIO on fdatasync: the
//   lane is fail-stop; ENOSPC on write: the disk is full), until a reload drops it;
// - `powerCut: true` models losing what was never synced: every file this process wrote is cut
//   back to its length at its last successful fdatasync/fsync (a file created and never synced
//   to zero), then the process kills itself with SIGKILL. Not modelled: directory entries
//   never synced (a created or renamed file stays), overwrites inside synced bytes (the WAL
//   only appends).
// - `clockOffsetMs` moves the process's wall clock (systemClock) that far from the true one — a
//   clock jump (an NTP step, an operator's date) — until a reload sets another (absent: 0).
//   Monotonic timers (leader timeouts, heartbeats) do not move: they never read the wall.
// The same model as test/support/faulty-file-io.ts, reduced to what a separate process can do.

import * as fs from 'node:fs';
import { setWallClockOffsetMs } from '../clock.ts';
import { nodeFileIo, type FileIo, type OpenMode, type WalFile } from './file-io.ts';

export interface InjectedFaultRule {
  op: 'datasync' | 'write';
  /** The rule applies to files whose path contains this. */
  path: string;
  code: 'EIO' | 'ENOSPC';
}

export interface InjectedFaultSpec {
  rules: InjectedFaultRule[];
  powerCut?: boolean;
  clockOffsetMs?: number;
}

/**
 * What the model knows of one file this process opened to write. A rename moves it to its new
 * path, and the handles opened before keep pointing at it: a segment is created under a .tmp
 * name, renamed once its head is durable, and then written and synced through the same handle.
 */
interface FileState {
  path: string;
  /** Bytes known to be on the platter. */
  syncedBytes: number;
}

export class InjectedFaultIo implements FileIo {
  private rules: InjectedFaultRule[] = [];
  /** path → the file's state, for every file this process opened to write. */
  private readonly files = new Map<string, FileState>();

  /** Reads the spec file; a power cut does not return. */
  load(specPath: string): void {
    const spec = JSON.parse(fs.readFileSync(specPath, 'utf8')) as InjectedFaultSpec;
    this.rules = (spec.rules ?? []).filter((rule) => (rule.op === 'datasync' || rule.op === 'write') && (rule.code === 'EIO' || rule.code === 'ENOSPC') && typeof rule.path === 'string');
    setWallClockOffsetMs(Number.isSafeInteger(spec.clockOffsetMs) ? (spec.clockOffsetMs as number) : 0);
    if (spec.powerCut === true) this.powerCut();
  }

  /** Cuts every written file back to its synced bytes, then SIGKILL: the process is gone. */
  powerCut(): never {
    for (const { path, syncedBytes } of this.files.values()) {
      try {
        if (fs.statSync(path).size > syncedBytes) fs.truncateSync(path, syncedBytes);
      } catch {
        // Gone (renamed or deleted since): nothing of it to lose.
      }
    }
    process.kill(process.pid, 'SIGKILL');
    // SIGKILL is not deliverable later than now, but the type system does not know that.
    throw new Error('unreachable: SIGKILL sent');
  }

  fault(op: InjectedFaultRule['op'], path: string): NodeJS.ErrnoException | null {
    const rule = this.rules.find((candidate) => candidate.op === op && path.includes(candidate.path));
    if (rule === undefined) return null;
    return Object.assign(new Error(`${rule.code}: injected ${op} fault on ${path}`), { code: rule.code, errno: rule.code === 'EIO' ? -5 : -28, syscall: op, path });
  }

  /** The bytes `path` is known to hold on the platter (undefined: never opened to write here). */
  syncedBytesOf(path: string): number | undefined {
    return this.files.get(path)?.syncedBytes;
  }

  async open(path: string, mode: OpenMode): Promise<WalFile> {
    const file = await nodeFileIo.open(path, mode);
    if (mode === 'read') return file;
    // A file that was there before this process opened it is taken as on the platter. A
    // 'create' of a path already known truncates that same file: handles opened before share
    // its state.
    let state = this.files.get(path);
    if (state === undefined) {
      state = { path, syncedBytes: mode === 'create' ? 0 : await file.size() };
      this.files.set(path, state);
    } else if (mode === 'create') state.syncedBytes = 0;
    return new InjectedFaultFile(file, this, state);
  }

  readdir(dir: string): Promise<string[]> {
    return nodeFileIo.readdir(dir);
  }

  mkdirp(dir: string): Promise<void> {
    return nodeFileIo.mkdirp(dir);
  }

  async rename(from: string, to: string): Promise<void> {
    await nodeFileIo.rename(from, to);
    const state = this.files.get(from);
    this.files.delete(from);
    this.files.delete(to);
    if (state !== undefined) {
      state.path = to;
      this.files.set(to, state);
    }
  }

  async unlink(path: string): Promise<void> {
    await nodeFileIo.unlink(path);
    this.files.delete(path);
  }

  syncDir(dir: string): Promise<void> {
    return nodeFileIo.syncDir(dir);
  }

  exists(path: string): Promise<boolean> {
    return nodeFileIo.exists(path);
  }
}

class InjectedFaultFile implements WalFile {
  readonly writeSync?: (bytes: Uint8Array, position: number) => number;

  constructor(
    private readonly file: WalFile,
    private readonly io: InjectedFaultIo,
    /** Follows renames: the faults and the synced length go by the file's current path. */
    private readonly state: FileState,
  ) {
    const writeSync = file.writeSync;
    if (writeSync !== undefined) {
      this.writeSync = (bytes, position) => {
        const fault = io.fault('write', state.path);
        if (fault !== null) throw fault;
        return writeSync(bytes, position);
      };
    }
  }

  get path(): string {
    return this.file.path;
  }

  get fd(): number | null {
    return this.file.fd;
  }

  write(bytes: Uint8Array, position: number): Promise<number> {
    const fault = this.io.fault('write', this.state.path);
    return fault === null ? this.file.write(bytes, position) : Promise.reject(fault);
  }

  read(into: Uint8Array, position: number): Promise<number> {
    return this.file.read(into, position);
  }

  datasync(): Promise<void> {
    return this.synced(() => this.file.datasync());
  }

  sync(): Promise<void> {
    return this.synced(() => this.file.sync());
  }

  async truncate(length: number): Promise<void> {
    await this.file.truncate(length);
    // Bytes past the cut are gone whatever was synced; what is written there next is not synced yet.
    this.state.syncedBytes = Math.min(this.state.syncedBytes, length);
  }

  size(): Promise<number> {
    return this.file.size();
  }

  close(): Promise<void> {
    return this.file.close();
  }

  private async synced(sync: () => Promise<void>): Promise<void> {
    const fault = this.io.fault('datasync', this.state.path);
    if (fault !== null) throw fault;
    // The size before the call: what was written by then is what this sync makes durable.
    const bytes = await this.file.size();
    await sync();
    this.state.syncedBytes = bytes;
  }
}
