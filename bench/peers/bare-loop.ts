// The ceiling: a plain Node loop that appends the bytes of one batch (64-byte header plus
// n × 21 bytes) with fs.write and then fs.fdatasync, one batch after another, straight on
// libuv callbacks: no checksum, no dedup, no promises, no actors. Whatever tidelog adds on
// top of this is its overhead; the disk's fdatasync cost is shared by both.
//
// The file stays open across runFor() calls so the benchmark can interleave slices of this
// loop with slices of tidelog on the same disk, and disk drift hits both sides alike.

import * as fs from 'node:fs';
import { percentile } from '../report.ts';

export const BARE_HEADER_BYTES = 64;
const EVENT_BYTES = 21;

export interface BareLoopResult {
  groupEvents: number;
  commits: number;
  events: number;
  elapsedMs: number;
  eventsPerSecond: number;
  commitsPerSecond: number;
  fsyncLatencyUsP50: number;
  fsyncLatencyUsP99: number;
}

export class BareLoop {
  private readonly bytes: Uint8Array;
  private readonly fd: number;
  private readonly fsyncLatenciesUs: number[] = [];
  private position = 0;
  private commits = 0;
  private elapsedMs = 0;

  /** Creates (truncates) the file at `path`; every commit appends `groupEvents` events. */
  constructor(
    path: string,
    readonly groupEvents: number,
  ) {
    this.bytes = new Uint8Array(BARE_HEADER_BYTES + groupEvents * EVENT_BYTES);
    for (let index = 0; index < this.bytes.byteLength; index++) this.bytes[index] = (index * 131 + 7) & 0xff;
    this.fd = fs.openSync(path, 'w+');
  }

  /** Commits batches back to back for `durationMs` (the last one may run past it). */
  runFor(durationMs: number): Promise<void> {
    const { bytes, fd } = this;
    const startMs = performance.now();
    const deadlineMs = startMs + durationMs;
    let written = 0;
    let syncStartMs = 0;
    return new Promise<void>((resolve, reject) => {
      const writeNext = (): void => {
        if (performance.now() >= deadlineMs) {
          this.elapsedMs += performance.now() - startMs;
          resolve();
          return;
        }
        written = 0;
        fs.write(fd, bytes, 0, bytes.byteLength, this.position, onWritten);
      };
      const onWritten = (error: NodeJS.ErrnoException | null, count: number): void => {
        if (error) return reject(error);
        written += count;
        if (written < bytes.byteLength) {
          fs.write(fd, bytes, written, bytes.byteLength - written, this.position + written, onWritten);
          return;
        }
        this.position += bytes.byteLength;
        syncStartMs = performance.now();
        fs.fdatasync(fd, onSynced);
      };
      const onSynced = (error: NodeJS.ErrnoException | null): void => {
        if (error) return reject(error);
        this.fsyncLatenciesUs.push((performance.now() - syncStartMs) * 1000);
        this.commits++;
        writeNext();
      };
      writeNext();
    });
  }

  result(): BareLoopResult {
    const seconds = this.elapsedMs / 1000;
    return {
      groupEvents: this.groupEvents,
      commits: this.commits,
      events: this.commits * this.groupEvents,
      elapsedMs: this.elapsedMs,
      eventsPerSecond: (this.commits * this.groupEvents) / seconds,
      commitsPerSecond: this.commits / seconds,
      fsyncLatencyUsP50: percentile(this.fsyncLatenciesUs, 50),
      fsyncLatencyUsP99: percentile(this.fsyncLatenciesUs, 99),
    };
  }

  close(): void {
    fs.closeSync(this.fd);
  }
}
