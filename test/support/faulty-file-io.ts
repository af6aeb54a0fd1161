// A FileIo for tests: the real file system (nodeFileIo) plus injected faults and a model of
// what a power loss keeps. One FaultyFileIo stands for one machine: several WAL sessions may
// use it in turn, and it remembers across them what reached the disk.
//
// Faults (see FaultRule): any call of an operation may fail with a Node-shaped error (EIO,
// ENOSPC…), a failing write may first land some bytes (a torn write), a call may stall
// forever (the process is "killed" while it waits), and writes may be short (maxWriteBytes).
//
// The power-loss model tracks, per file, its length and the length known synced: a
// datasync/sync makes everything written before the call durable. crash() then
//   1. waits for the calls already inside the kernel to return (they fail: power is off),
//   2. cuts every tracked file back to its synced length (unsynced appends are lost; the
//      model is length-only, which fits a WAL: it appends and never overwrites),
//   3. undoes, newest first, the creates and renames whose directory was never synced.
// A datasync that fails drops the unsynced bytes right away, as Linux may (fsyncgate: the
// dirty pages are marked clean, the disk never got them). kill() models a process crash
// instead: every open descriptor is closed, but written data stays (it is in the page cache).
// Not modelled: overwrites inside synced data, unlinks that a crash undoes, mkdir. After
// crash() the instance stays powered off; reopen the WAL with nodeFileIo to look at the disk.

import * as fs from 'node:fs';
import { dirname } from 'node:path';
import { nodeFileIo, type FileIo, type OpenMode, type WalFile } from '../../src/wal/file-io.ts';

export type FaultOp =
  | 'open'
  | 'write'
  | 'read'
  | 'datasync'
  | 'sync'
  | 'truncate'
  | 'rename'
  | 'unlink'
  | 'syncDir'
  | 'readdir';

export type FaultCode = 'EIO' | 'ENOSPC' | 'EACCES';

export interface FaultRule {
  op: FaultOp;
  /** The error to raise (default EIO). */
  code?: FaultCode;
  /** Only calls on a matching path (rename: either side; syncDir/readdir: the directory). */
  path?: RegExp;
  /** Let this many matching calls through first (default 0): "fail the Nth" is skip N-1. */
  skip?: number;
  /** Then fail this many matching calls (default: all of them). */
  times?: number;
  /** write only: land this many bytes of the buffer (at most all but one) before failing: a torn write. */
  tornBytes?: number;
  /** Never settle instead of failing: the caller waits until the test kills the "process". */
  stall?: boolean;
  /** Called each time the rule fires (a test can await the fault instead of polling). */
  onFire?: () => void;
}

const errnoOf: Record<FaultCode | 'EBADF', number> = { EIO: -5, ENOSPC: -28, EACCES: -13, EBADF: -9 };
const syscallOf: Record<FaultOp, string> = {
  open: 'open',
  write: 'write',
  read: 'read',
  datasync: 'fdatasync',
  sync: 'fsync',
  truncate: 'ftruncate',
  rename: 'rename',
  unlink: 'unlink',
  syncDir: 'fsync',
  readdir: 'scandir',
};

/** An error shaped like the ones Node's fs raises. */
export function ioError(code: FaultCode | 'EBADF', op: FaultOp, path: string): NodeJS.ErrnoException {
  const message = { EIO: 'i/o error', ENOSPC: 'no space left on device', EACCES: 'permission denied', EBADF: 'bad file descriptor' }[code];
  return Object.assign(new Error(`${code}: ${message}, ${syscallOf[op]} '${path}'`), {
    code,
    errno: errnoOf[code],
    syscall: syscallOf[op],
    path,
  });
}

/** What the model knows of one file; renames move it to its new path. */
interface FileState {
  path: string;
  sizeBytes: number;
  syncedBytes: number;
}

/** A create or rename that is durable only once its directory is synced. */
type DirectoryChange =
  | { kind: 'create'; path: string }
  | { kind: 'rename'; from: string; to: string; replaced: { bytes: Buffer; state: FileState | undefined } | null };

interface Rule extends FaultRule {
  seen: number;
  fired: number;
}

export class FaultyFileIo implements FileIo {
  /** Writes land at most this many bytes a call (the engine must loop). */
  maxWriteBytes = Number.POSITIVE_INFINITY;
  /** Every call, in order: op and path. */
  readonly calls: Array<{ op: FaultOp; path: string }> = [];
  private rules: Rule[] = [];
  private readonly files = new Map<string, FileState>();
  private directoryChanges: DirectoryChange[] = [];
  private readonly openHandles = new Set<FaultyWalFile>();
  private readonly inFlight = new Set<Promise<unknown>>();
  private isPoweredOff = false;

  constructor(private readonly inner: FileIo = nodeFileIo) {}

  /** Adds a fault; returns a function that removes it. */
  inject(rule: FaultRule): () => void {
    const added: Rule = { ...rule, seen: 0, fired: 0 };
    this.rules.push(added);
    return () => {
      this.rules = this.rules.filter((r) => r !== added);
    };
  }

  clearFaults(): void {
    this.rules = [];
  }

  /** How many calls of `op` (on a path matching `path`) were made so far. */
  count(op: FaultOp, path?: RegExp): number {
    return this.calls.filter((call) => call.op === op && (path === undefined || path.test(call.path))).length;
  }

  /** Bytes of `path` the model holds durable (undefined for a file it never saw). */
  syncedBytes(path: string): number | undefined {
    return this.files.get(path)?.syncedBytes;
  }

  /** Power loss: see the header. Afterwards every call fails with EIO except close(). */
  async crash(): Promise<void> {
    this.isPoweredOff = true;
    await this.settleInFlight();
    for (const [path, state] of this.files) {
      if (state.sizeBytes > state.syncedBytes && fs.existsSync(path)) fs.truncateSync(path, state.syncedBytes);
      state.sizeBytes = state.syncedBytes;
    }
    for (const change of this.directoryChanges.reverse()) {
      if (change.kind === 'create') {
        fs.rmSync(change.path, { force: true });
        this.files.delete(change.path);
      } else {
        const state = this.files.get(change.to);
        if (fs.existsSync(change.to)) fs.renameSync(change.to, change.from);
        this.files.delete(change.to);
        if (state) {
          state.path = change.from;
          this.files.set(change.from, state);
        }
        if (change.replaced !== null) {
          fs.writeFileSync(change.to, change.replaced.bytes);
          if (change.replaced.state) this.files.set(change.to, change.replaced.state);
        }
      }
    }
    this.directoryChanges = [];
  }

  /** Process crash: every descriptor closes (locks drop), written data stays; stalled calls never return. */
  async kill(): Promise<void> {
    await this.settleInFlight();
    for (const handle of this.openHandles) handle.kill();
    this.openHandles.clear();
  }

  // ── FileIo ──────────────────────────────────────────────────────────────────────────

  async open(path: string, mode: OpenMode): Promise<WalFile> {
    const existed = fs.existsSync(path);
    const file = await this.call('open', path, () => this.inner.open(path, mode));
    let state = this.files.get(path);
    if (mode === 'create') {
      // 'create' truncates; whatever the file held before is gone from the model too.
      state ??= { path, sizeBytes: 0, syncedBytes: 0 };
      state.sizeBytes = 0;
      state.syncedBytes = 0;
      if (!existed) this.directoryChanges.push({ kind: 'create', path });
    } else if (state === undefined) {
      // First sight of a file that was on disk already: all of it counts as durable.
      const sizeBytes = await file.size();
      state = { path, sizeBytes, syncedBytes: sizeBytes };
    }
    this.files.set(path, state);
    const handle = new FaultyWalFile(this, file, state);
    this.openHandles.add(handle);
    return handle;
  }

  readdir(dir: string): Promise<string[]> {
    return this.call('readdir', dir, () => this.inner.readdir(dir));
  }

  mkdirp(dir: string): Promise<void> {
    return this.inner.mkdirp(dir);
  }

  async rename(from: string, to: string): Promise<void> {
    const replaced = fs.existsSync(to) ? { bytes: fs.readFileSync(to), state: this.files.get(to) } : null;
    await this.call('rename', `${from} -> ${to}`, () => this.inner.rename(from, to));
    const state = this.files.get(from);
    this.files.delete(from);
    if (state) {
      state.path = to;
      this.files.set(to, state);
    } else {
      this.files.delete(to);
    }
    this.directoryChanges.push({ kind: 'rename', from, to, replaced });
  }

  async unlink(path: string): Promise<void> {
    await this.call('unlink', path, () => this.inner.unlink(path));
    this.files.delete(path);
  }

  async syncDir(dir: string): Promise<void> {
    await this.call('syncDir', dir, () => this.inner.syncDir(dir));
    this.directoryChanges = this.directoryChanges.filter(
      (change) => dirname(change.kind === 'create' ? change.path : change.to) !== dir,
    );
  }

  exists(path: string): Promise<boolean> {
    return this.inner.exists(path);
  }

  // ── internals, shared with FaultyWalFile ────────────────────────────────────────────

  /** Runs one call: record it, fire a matching fault, else run it and track it in flight. */
  async call<T>(op: FaultOp, path: string, run: () => Promise<T>, onTorn?: (tornBytes: number) => Promise<unknown>): Promise<T> {
    this.calls.push({ op, path });
    if (this.isPoweredOff) throw ioError('EIO', op, path);
    const rule = this.firingRule(op, path);
    rule?.onFire?.();
    if (rule?.stall) return new Promise<T>(() => undefined);
    if (rule) {
      if (rule.tornBytes !== undefined && onTorn) await this.track(onTorn(rule.tornBytes));
      throw ioError(rule.code ?? 'EIO', op, path);
    }
    const result = await this.track(run());
    // A call that returns after the power went off did not happen as far as anyone knows.
    if (this.isPoweredOff) throw ioError('EIO', op, path);
    return result;
  }

  /**
   * call(), synchronously (for WalFile.writeSync): the same record, rules and power-loss
   * check. A stall cannot block a synchronous call, so files offer writeSync only while no
   * stall rule could fire on it (see FaultyWalFile.writeSync).
   */
  callSync<T>(op: FaultOp, path: string, run: () => T, onTorn?: (tornBytes: number) => unknown): T {
    this.calls.push({ op, path });
    if (this.isPoweredOff) throw ioError('EIO', op, path);
    const rule = this.firingRule(op, path);
    rule?.onFire?.();
    if (rule?.stall) throw new Error('invariant violated: a stall rule fired on a synchronous call');
    if (rule) {
      if (rule.tornBytes !== undefined && onTorn) onTorn(rule.tornBytes);
      throw ioError(rule.code ?? 'EIO', op, path);
    }
    return run();
  }

  /** Whether a stall rule is registered for `op` (it may still fire). */
  hasStallRule(op: FaultOp): boolean {
    return this.rules.some((rule) => rule.op === op && rule.stall === true && rule.fired < (rule.times ?? Number.POSITIVE_INFINITY));
  }

  get poweredOff(): boolean {
    return this.isPoweredOff;
  }

  forget(handle: FaultyWalFile): void {
    this.openHandles.delete(handle);
  }

  private firingRule(op: FaultOp, path: string): Rule | undefined {
    for (const rule of this.rules) {
      if (rule.op !== op || (rule.path !== undefined && !rule.path.test(path))) continue;
      rule.seen++;
      if (rule.seen > (rule.skip ?? 0) && rule.fired < (rule.times ?? Number.POSITIVE_INFINITY)) {
        rule.fired++;
        return rule;
      }
    }
    return undefined;
  }

  private track<T>(promise: Promise<T>): Promise<T> {
    this.inFlight.add(promise);
    const forget = (): void => {
      this.inFlight.delete(promise);
    };
    promise.then(forget, forget);
    return promise;
  }

  private async settleInFlight(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
  }
}

class FaultyWalFile implements WalFile {
  private isDead = false;

  constructor(
    private readonly io: FaultyFileIo,
    private readonly inner: WalFile,
    private readonly state: FileState,
  ) {}

  /** Where the file is now: a segment written through its .tmp name keeps this handle after the rename. */
  get path(): string {
    return this.state.path;
  }

  get fd(): number | null {
    return this.inner.fd;
  }

  async write(bytes: Uint8Array, position: number): Promise<number> {
    this.checkAlive('write');
    const chunk = bytes.byteLength > this.io.maxWriteBytes ? bytes.subarray(0, this.io.maxWriteBytes) : bytes;
    const landed = (written: number): void => {
      this.state.sizeBytes = Math.max(this.state.sizeBytes, position + written);
    };
    const written = await this.io.call(
      'write',
      this.path,
      () => this.inner.write(chunk, position),
      async (tornBytes) => landed(await this.inner.write(bytes.subarray(0, Math.min(tornBytes, bytes.byteLength - 1)), position)),
    );
    landed(written);
    return written;
  }

  /** The synchronous write, offered while no stall rule could fire on it (a stall needs the async path). */
  get writeSync(): ((bytes: Uint8Array, position: number) => number) | undefined {
    const innerWriteSync = this.inner.writeSync;
    if (innerWriteSync === undefined || this.io.hasStallRule('write')) return undefined;
    return (bytes, position) => {
      this.checkAlive('write');
      const chunk = bytes.byteLength > this.io.maxWriteBytes ? bytes.subarray(0, this.io.maxWriteBytes) : bytes;
      const landed = (written: number): void => {
        this.state.sizeBytes = Math.max(this.state.sizeBytes, position + written);
      };
      const written = this.io.callSync(
        'write',
        this.path,
        () => innerWriteSync(chunk, position),
        (tornBytes) => landed(innerWriteSync(bytes.subarray(0, Math.min(tornBytes, bytes.byteLength - 1)), position)),
      );
      landed(written);
      return written;
    };
  }

  async read(into: Uint8Array, position: number): Promise<number> {
    this.checkAlive('read');
    return this.io.call('read', this.path, () => this.inner.read(into, position));
  }

  datasync(): Promise<void> {
    return this.syncWith('datasync', () => this.inner.datasync());
  }

  sync(): Promise<void> {
    return this.syncWith('sync', () => this.inner.sync());
  }

  async truncate(length: number): Promise<void> {
    this.checkAlive('truncate');
    await this.io.call('truncate', this.path, () => this.inner.truncate(length));
    this.state.sizeBytes = length;
    this.state.syncedBytes = Math.min(this.state.syncedBytes, length);
  }

  async size(): Promise<number> {
    this.checkAlive('read');
    return this.inner.size();
  }

  async close(): Promise<void> {
    this.io.forget(this);
    if (this.isDead) return;
    this.isDead = true;
    await this.inner.close();
  }

  /** The owning process died: the kernel closes the descriptor (and drops its locks). */
  kill(): void {
    if (this.isDead) return;
    this.isDead = true;
    if (this.inner.fd !== null) fs.closeSync(this.inner.fd);
  }

  private async syncWith(op: 'datasync' | 'sync', run: () => Promise<void>): Promise<void> {
    this.checkAlive(op);
    // Everything written before the call is what a successful sync makes durable.
    const targetBytes = this.state.sizeBytes;
    try {
      await this.io.call(op, this.path, run);
    } catch (error) {
      if (!this.io.poweredOff) this.dropUnsynced();
      throw error;
    }
    this.state.syncedBytes = Math.max(this.state.syncedBytes, targetBytes);
  }

  /** After a failed sync the kernel may have thrown the dirty pages away: assume it did. */
  private dropUnsynced(): void {
    if (this.state.sizeBytes > this.state.syncedBytes && this.inner.fd !== null) {
      fs.ftruncateSync(this.inner.fd, this.state.syncedBytes);
      this.state.sizeBytes = this.state.syncedBytes;
    }
  }

  private checkAlive(op: FaultOp): void {
    if (this.isDead) throw ioError('EBADF', op, this.path);
  }
}
