// `tidelog wal load`: opens a shard's WAL and appends unique events from concurrent callers,
// printing one `ack` line per call only after its promise resolved (so every printed seq is
// acknowledged, durable under fsync 'full'), and a progress line on stderr every second.
// SIGINT/SIGTERM stop the callers, wait for what is in flight, and close the WAL.

import { once } from 'node:events';
import { TidelogError, isTidelogError } from '../errors.ts';
import { EVENT_BYTES, Wal, type FsyncMode } from '../wal/index.ts';
import { formatCount, formatLatencyUs, formatMs } from './format.ts';
import type { AckMessage, LoadMessage } from './load-messages.ts';
import { ExitCode, type ExitCodeValue } from './options.ts';

export interface LoadOptions {
  shard: number;
  callers: number;
  batch: number;
  durationMs?: number;
  fsync: FsyncMode;
  segmentBytes: number;
  json?: boolean;
}

const PROGRESS_INTERVAL_MS = 1000;
/** Latency samples kept per progress interval; past it samples are taken 1 in k. */
const MAX_LATENCY_SAMPLES = 1 << 16;

export async function runLoad(dir: string, options: LoadOptions): Promise<ExitCodeValue> {
  const isJson = options.json === true;
  const say = (message: LoadMessage, text: string): void => {
    process.stderr.write(isJson ? `${JSON.stringify(message)}\n` : `load: ${text}\n`);
  };
  const { wal, recovery } = await Wal.open({ dir, shard: options.shard, fsync: options.fsync, segmentBytes: options.segmentBytes });
  const startMs = performance.now();
  const deadlineMs = options.durationMs === undefined ? Number.POSITIVE_INFINITY : startMs + options.durationMs;
  say(
    {
      type: 'ready',
      pid: process.pid,
      shard: options.shard,
      lastSeq: wal.lastSeq,
      recoveryMs: recovery.durationMs,
      recoveredBytes: recovery.bytesScanned,
      tornTailBytes: recovery.truncatedTail?.bytesRemoved ?? 0,
    },
    `shard ${options.shard} open at seq ${wal.lastSeq} (recovered ${formatCount(recovery.events)} events in ${formatMs(recovery.durationMs)}); ` +
      `${options.callers} callers × ${options.batch} events, fsync ${options.fsync}`,
  );

  let isStopping = false;
  const stop = (): void => {
    isStopping = true;
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);

  const latency = new LatencyWindow();
  let acked = 0;
  let calls = 0;
  let ackedAtLastProgress = 0;
  let lastProgressMs = startMs;
  const progressTimer = setInterval(() => {
    const nowMs = performance.now();
    const eventsPerSecond = ((acked - ackedAtLastProgress) * 1000) / (nowMs - lastProgressMs);
    const p99Us = latency.takeP99Us();
    ackedAtLastProgress = acked;
    lastProgressMs = nowMs;
    say(
      { type: 'progress', elapsedMs: Math.round(nowMs - startMs), eventsPerSecond: Math.round(eventsPerSecond), acked, ackLatencyUsP99: Math.round(p99Us), lastSeq: wal.lastSeq },
      `${formatCount(eventsPerSecond)} events/s  acked ${formatCount(acked)}  p99 ack ${formatLatencyUs(p99Us)}  seq ${wal.lastSeq}`,
    );
  }, PROGRESS_INTERVAL_MS);

  let nextCounter = 1;
  let failure: unknown = null;
  const caller = async (): Promise<void> => {
    while (!isStopping && failure === null && performance.now() < deadlineMs) {
      const events = makeEvents(options.batch, nextCounter);
      nextCounter += options.batch;
      const calledMs = performance.now();
      let ack: AckMessage;
      try {
        ack = ackOf(await wal.appendMany(events));
      } catch (error) {
        failure ??= error;
        return;
      }
      latency.record((performance.now() - calledMs) * 1000);
      acked += ack.n;
      calls++;
      const line = isJson ? `${JSON.stringify(ack)}\n` : `ack ${ack.firstSeq} ${ack.lastSeq} ${ack.n}\n`;
      // stdout to a pipe buffers in the process when the reader lags; wait for it, so acks
      // are never far ahead of what the reader has seen (and a SIGKILL loses few of them).
      if (!process.stdout.write(line)) await once(process.stdout, 'drain');
    }
  };
  try {
    await Promise.all(Array.from({ length: options.callers }, caller));
  } finally {
    clearInterval(progressTimer);
    process.removeListener('SIGINT', stop);
    process.removeListener('SIGTERM', stop);
    await wal.close();
  }
  const elapsedMs = performance.now() - startMs;
  if (failure !== null) {
    const code = isTidelogError(failure) ? failure.code : 'ERROR';
    const message = failure instanceof Error ? failure.message : String(failure);
    say({ type: 'error', code, message }, `FAILED: ${message}`);
    return ExitCode.failed;
  }
  say(
    { type: 'done', acked, calls, lastSeq: wal.lastSeq, elapsedMs: Math.round(elapsedMs) },
    `done: acked ${formatCount(acked)} events in ${formatCount(calls)} calls over ${formatMs(elapsedMs)}; WAL closed at seq ${wal.lastSeq}`,
  );
  return ExitCode.ok;
}

/**
 * `count` packed events no other run produces: entityId = (pid << 32) | counter (low half
 * first, little-endian), signal type 1..4, weight 1, timestamp = now.
 */
function makeEvents(count: number, firstCounter: number): Uint8Array {
  const bytes = new Uint8Array(count * EVENT_BYTES);
  const view = new DataView(bytes.buffer);
  const nowNs = BigInt(Math.round((performance.timeOrigin + performance.now()) * 1_000_000));
  for (let index = 0; index < count; index++) {
    const offset = index * EVENT_BYTES;
    const counter = firstCounter + index;
    view.setUint32(offset, counter >>> 0, true);
    view.setUint32(offset + 4, process.pid, true);
    view.setUint8(offset + 8, 1 + (counter % 4));
    view.setFloat32(offset + 9, 1, true);
    view.setBigUint64(offset + 13, nowNs, true);
  }
  return bytes;
}

/** One call's seqs as a range; load's events are unique, so a duplicate (0) is a bug. */
function ackOf(seqs: readonly number[]): AckMessage {
  const firstSeq = seqs[0];
  const lastSeq = seqs[seqs.length - 1];
  if (seqs.includes(0) || lastSeq - firstSeq + 1 !== seqs.length) {
    throw new TidelogError('BAD_REQUEST', `appendMany returned non-contiguous seqs ${firstSeq}…${lastSeq} for ${seqs.length} unique events`);
  }
  return { type: 'ack', firstSeq, lastSeq, n: seqs.length };
}

/** Ack latencies of one progress interval, bounded by sampling. */
class LatencyWindow {
  private samplesUs: number[] = [];
  private seen = 0;

  record(latencyUs: number): void {
    this.seen++;
    if (this.samplesUs.length < MAX_LATENCY_SAMPLES) this.samplesUs.push(latencyUs);
    else {
      // Reservoir sampling keeps the window a fair sample however many acks arrive.
      const slot = Math.floor(Math.random() * this.seen);
      if (slot < MAX_LATENCY_SAMPLES) this.samplesUs[slot] = latencyUs;
    }
  }

  /** The interval's p99 in µs (0 when nothing was acknowledged), and a fresh window. */
  takeP99Us(): number {
    const samples = this.samplesUs.sort((a, b) => a - b);
    this.samplesUs = [];
    this.seen = 0;
    return samples.length === 0 ? 0 : samples[Math.min(samples.length - 1, Math.floor(samples.length * 0.99))];
  }
}
