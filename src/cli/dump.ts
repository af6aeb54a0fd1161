// `tidelog wal dump`: prints a shard's committed events (or batch headers) from the segment
// files. It reads through recoverShard with repair: false, so it takes no lock and changes no
// file; every batch it prints has passed its checksum. Output is built in chunks: stdout to a
// pipe or file is synchronous on Linux, which is also the backpressure. Batch notes (opaque
// bytes written with the events, e.g. producer-session records) show only with --batches, in
// hex; a notes-only batch (count 0) prints no event line.

import { BATCH_HEADER_BYTES, EVENT_BYTES, decodeEvent, initChecksum, nodeFileIo, recoverShard, type SignalEvent } from '../wal/index.ts';
import { formatWeight } from './format.ts';
import { ExitCode, type ExitCodeValue } from './options.ts';
import { findWalDirectory, pickShard } from './wal-dir.ts';

export interface DumpOptions {
  shard?: number;
  fromSeq?: number;
  limit?: number;
  batches?: boolean;
  json?: boolean;
}

type OnBatch = NonNullable<Parameters<typeof recoverShard>[0]['onBatch']>;
type ScannedBatch = Parameters<OnBatch>[1];

/** Thrown from onBatch to stop the scan once --limit lines are out. */
class LimitReached extends Error {}

const CHUNK_CHARS = 1 << 16;

export async function runDump(path: string, options: DumpOptions): Promise<ExitCodeValue> {
  const { dir, fileNames } = await findWalDirectory(path);
  const shard = pickShard(dir, fileNames, options.shard);
  const fromSeq = options.fromSeq ?? 1;
  const limit = options.limit ?? Number.POSITIVE_INFINITY;
  const isJson = options.json === true;
  await initChecksum();

  let chunk = '';
  const emit = (line: string): void => {
    chunk += `${line}\n`;
    if (chunk.length >= CHUNK_CHARS) flush();
  };
  const flush = (): void => {
    if (chunk !== '') process.stdout.write(chunk);
    chunk = '';
  };

  let printed = 0;
  let oldestSeq: number | null = null;
  const onBatch: OnBatch = (bytes, batch, segment) => {
    oldestSeq ??= segment.firstSeq;
    const { header } = batch;
    const lastSeq = header.firstSeq + header.count - 1;
    // A notes-only batch sits before seq firstSeq: shown from there on, like readBatches does.
    if ((header.count === 0 ? header.firstSeq : lastSeq) < fromSeq) return;
    if (options.batches === true) {
      emit(formatBatch(batch, segment.fileName, isJson));
      if (++printed >= limit) throw new LimitReached();
      return;
    }
    const payloadStart = batch.offset + BATCH_HEADER_BYTES;
    for (let seq = Math.max(fromSeq, header.firstSeq); seq <= lastSeq; seq++) {
      const event = decodeEvent(bytes, payloadStart + (seq - header.firstSeq) * EVENT_BYTES);
      emit(formatEvent(seq, event, isJson));
      if (++printed >= limit) throw new LimitReached();
    }
  };

  let report: Awaited<ReturnType<typeof recoverShard>>['report'] | null = null;
  try {
    if (limit > 0) ({ report } = await recoverShard({ io: nodeFileIo, dir, shard, salvage: true, repair: false, onBatch }));
  } catch (error) {
    if (!(error instanceof LimitReached)) throw error;
  } finally {
    flush();
  }
  if (oldestSeq !== null && fromSeq < oldestSeq && fromSeq > 1) {
    process.stderr.write(`tidelog wal dump: seqs below ${oldestSeq} were truncated; started at ${oldestSeq}\n`);
  }
  if (report?.truncatedTail) {
    const { file, offset, bytesRemoved } = report.truncatedTail;
    process.stderr.write(`tidelog wal dump: warning: torn tail of ${bytesRemoved} bytes at offset ${offset} of ${file} (not printed)\n`);
  }
  if (report?.damage) {
    const { code, file, offset, reason } = report.damage;
    process.stderr.write(`tidelog wal dump: DAMAGE ${code} in ${file} at offset ${offset}: ${reason}; printed the intact prefix only\n`);
    return ExitCode.failed;
  }
  return ExitCode.ok;
}

/** `seq entityId signalType weight timestampNs`, or NDJSON with bigints as strings. */
export function formatEvent(seq: number, event: SignalEvent, isJson: boolean): string {
  const weight = formatWeight(event.weight);
  if (!isJson) return `${seq} ${event.entityId} ${event.signalType} ${weight} ${event.timestampNs}`;
  return `{"seq":${seq},"entityId":"${event.entityId}","signalType":${event.signalType},"weight":${weight},"timestampNs":"${event.timestampNs}"}`;
}

/** Header fields; notes as hex (JSON: always an array; text: a trailing `notes=hex,hex` when there are any). */
function formatBatch(batch: ScannedBatch, segment: string, isJson: boolean): string {
  const { header, offset } = batch;
  const bytes = BATCH_HEADER_BYTES + header.payloadBytes;
  const notes = batch.notes.map((note) => Buffer.from(note.buffer, note.byteOffset, note.byteLength).toString('hex'));
  if (isJson) {
    return JSON.stringify({
      firstSeq: header.firstSeq,
      count: header.count,
      epoch: header.leaderEpoch,
      timestampNs: String(header.timestampNs),
      bytes,
      segment,
      offset,
      notes,
    });
  }
  const iso = new Date(Number(header.timestampNs / 1_000_000n)).toISOString();
  const line = `${header.firstSeq} ${header.count} ${header.leaderEpoch} ${header.timestampNs} ${iso} ${bytes} ${segment} ${offset}`;
  return notes.length === 0 ? line : `${line} notes=${notes.join(',')}`;
}
