// Every single-bit flip of every segment file of a small WAL (two segments, a few batches
// each). Recovery must either fail with a damage error naming the flipped file and the
// damaged record's offset, or — only for the last record of the last segment, which is
// indistinguishable from a torn tail — return the events before that record. With salvage
// it must never throw and must return exactly the events before the damaged record. Never a
// wrong or extra record. recoverShard runs on an in-memory copy (no lock, no disk) for the
// ~26k exhaustive runs; a sample of flips also goes through Wal.open on a real directory.

import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TidelogError, type ErrorCode } from '../../src/errors.ts';
import { BATCH_HEADER_BYTES, readBatchHeader } from '../../src/wal/batch-format.ts';
import { initChecksum } from '../../src/wal/checksum.ts';
import { EVENT_BYTES, decodeEvent, type SignalEvent } from '../../src/event.ts';
import type { FileIo, OpenMode, WalFile } from '../../src/wal/file-io.ts';
import { Wal, recoverShard } from '../../src/wal/index.ts';

const DAMAGE_CODES: ErrorCode[] = ['CHECKSUM_MISMATCH', 'CORRUPT_SEGMENT', 'CHECKPOINT_DAMAGED', 'SEGMENT_GAP'];
/** Sizes of the appendMany calls that build the log; each is one batch. */
const CALL_SIZES = [3, 1, 4, 2, 4, 1, 3, 2, 4, 1, 2];
/** 6 or 7 batches fit in 1024 bytes, so the log has exactly two segments. */
const SEGMENT_BYTES = 1024;
/** Every Nth bit also goes through Wal.open on disk. */
const WAL_OPEN_EVERY_BITS = 101;

function eventAt(index: number): SignalEvent {
  return {
    entityId: 0x1234_5678_0000n + BigInt(index),
    signalType: index % 5,
    weight: index + 0.5,
    timestampNs: 1_700_000_000_000_000_000n + BigInt(index),
  };
}

function enoent(path: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`ENOENT: no such file or directory, open '${path}'`), { code: 'ENOENT', errno: -2, syscall: 'open', path });
}

/** A read-only FileIo over in-memory files: what recoverShard with repair false needs. */
class MemoryDirectory implements FileIo {
  constructor(
    readonly dir: string,
    readonly files: Map<string, Uint8Array>,
  ) {}

  async open(path: string, mode: OpenMode): Promise<WalFile> {
    const bytes = this.files.get(basename(path));
    if (mode !== 'read' || bytes === undefined) throw enoent(path);
    const readOnly = (): Promise<never> => Promise.reject(new Error(`read-only: ${path}`));
    return {
      path,
      fd: null,
      read: async (into, position) => {
        const count = Math.max(0, Math.min(into.byteLength, bytes.byteLength - position));
        into.set(bytes.subarray(position, position + count));
        return count;
      },
      size: async () => bytes.byteLength,
      close: async () => undefined,
      write: readOnly,
      datasync: readOnly,
      sync: readOnly,
      truncate: readOnly,
    };
  }
  readdir = async (): Promise<string[]> => [...this.files.keys()];
  exists = async (path: string): Promise<boolean> => this.files.has(basename(path));
  mkdirp = (): Promise<void> => Promise.reject(new Error('read-only'));
  rename = (): Promise<void> => Promise.reject(new Error('read-only'));
  unlink = (): Promise<void> => Promise.reject(new Error('read-only'));
  syncDir = (): Promise<void> => Promise.reject(new Error('read-only'));
}

/** One record of a segment file and how many events of the log precede it. */
interface RecordSpan {
  file: string;
  offset: number;
  end: number;
  eventsBefore: number;
  isLastOfLastSegment: boolean;
}

function recordSpans(segments: Array<{ name: string; bytes: Uint8Array }>): RecordSpan[] {
  const spans: RecordSpan[] = [];
  let eventsBefore = 0;
  for (const { name, bytes } of segments) {
    for (let offset = 0; offset < bytes.byteLength; ) {
      const parsed = readBatchHeader(bytes, offset);
      if (!parsed.ok) throw new Error(`the original ${name} does not parse at ${offset}`);
      const end = offset + BATCH_HEADER_BYTES + parsed.header.payloadBytes;
      spans.push({ file: name, offset, end, eventsBefore, isLastOfLastSegment: false });
      eventsBefore += parsed.header.count;
      offset = end;
    }
  }
  spans[spans.length - 1].isLastOfLastSegment = true;
  return spans;
}

function sameEvents(actual: readonly SignalEvent[], expected: readonly SignalEvent[]): boolean {
  if (actual.length !== expected.length) return false;
  for (let index = 0; index < actual.length; index++) {
    const a = actual[index];
    const b = expected[index];
    if (a.entityId !== b.entityId || a.signalType !== b.signalType || a.weight !== b.weight || a.timestampNs !== b.timestampNs) {
      return false;
    }
  }
  return true;
}

/** Replays through recoverShard (repair false); the events in seq order, or the error. */
async function replay(io: MemoryDirectory, salvage: boolean): Promise<{ events: SignalEvent[]; error: unknown }> {
  const events: SignalEvent[] = [];
  try {
    await recoverShard({
      io,
      dir: io.dir,
      shard: 0,
      salvage,
      repair: false,
      onBatch: (bytes, batch) => {
        if (batch.header.firstSeq !== events.length + 1) throw new Error(`batch at seq ${batch.header.firstSeq} after ${events.length}`);
        for (let index = 0; index < batch.header.count; index++) {
          events.push(decodeEvent(bytes, batch.offset + BATCH_HEADER_BYTES + index * EVENT_BYTES));
        }
      },
    });
    return { events, error: null };
  } catch (error) {
    return { events, error };
  }
}

async function buildLog(dir: string): Promise<SignalEvent[]> {
  const events: SignalEvent[] = [];
  const { wal } = await Wal.open({ dir, segmentBytes: SEGMENT_BYTES, batchMaxEvents: 4, batchLingerMs: 0 });
  for (const size of CALL_SIZES) {
    const call = Array.from({ length: size }, (_, index) => eventAt(events.length + index));
    await wal.appendMany(call);
    events.push(...call);
  }
  await wal.close();
  return events;
}

/** Opens the flipped copy with the real engine: the same verdicts, and the log goes on. */
async function checkWithWalOpen(original: Map<string, Uint8Array>, file: string, byte: number, bit: number, expected: SignalEvent[], label: string): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'tidelog-bitflip-open-'));
  try {
    for (const [name, bytes] of original) {
      const copy = Uint8Array.from(bytes);
      if (name === file) copy[byte] ^= 1 << bit;
      await writeFile(join(dir, name), copy);
    }
    try {
      const { wal, replayed } = await Wal.open({ dir, salvage: false, fsync: 'off' });
      await wal.close();
      assert.ok(sameEvents(replayed, expected), `${label}: Wal.open without salvage returned a wrong log`);
    } catch (error) {
      if (!(error instanceof TidelogError) || !DAMAGE_CODES.includes(error.code)) throw error;
    }
    // Salvage in the same directory (so the failed open must have released the lock).
    const salvaged = await Wal.open({ dir, salvage: true, fsync: 'off' });
    assert.ok(sameEvents(salvaged.replayed, expected), `${label}: Wal.open with salvage returned a wrong log`);
    const next = eventAt(1_000);
    assert.is(await salvaged.wal.append(next), expected.length + 1, `${label}: appending after salvage continues`);
    await salvaged.wal.close();
    const reopened = await Wal.open({ dir, fsync: 'off' });
    assert.ok(sameEvents(reopened.replayed, [...expected, next]), `${label}: the salvaged log reopens cleanly`);
    await reopened.wal.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test('bitflip - every single-bit flip of a segment is reported as damage naming file and record, never misread or cut', async () => {
  await initChecksum();
  const source = await mkdtemp(join(tmpdir(), 'tidelog-bitflip-'));
  try {
    const events = await buildLog(source);
    const names = (await readdir(source)).filter((name) => name.endsWith('.seg')).sort();
    assert.is(names.length, 2, 'the log has two segments');
    const segments = await Promise.all(names.map(async (name) => ({ name, bytes: new Uint8Array(await readFile(join(source, name))) })));
    for (const { name, bytes } of segments) assert.ok(bytes.byteLength < 1536, `${name} is small (${bytes.byteLength} bytes)`);
    const spans = recordSpans(segments);
    const memory = new MemoryDirectory(source, new Map(segments.map(({ name, bytes }) => [name, Uint8Array.from(bytes)])));

    const intact = await replay(memory, false);
    assert.is(intact.error, null);
    assert.ok(sameEvents(intact.events, events), 'the unflipped log replays whole');

    let flips = 0;
    let tornTails = 0;
    let bitIndex = 0;
    for (const span of spans) {
      const bytes = memory.files.get(span.file);
      if (bytes === undefined) throw new Error(`no ${span.file}`);
      const expected = events.slice(0, span.eventsBefore);
      for (let byte = span.offset; byte < span.end; byte++) {
        for (let bit = 0; bit < 8; bit++, bitIndex++) {
          const label = `${span.file} byte ${byte} bit ${bit}`;
          bytes[byte] ^= 1 << bit;
          try {
            const strict = await replay(memory, false);
            if (strict.error === null) {
              // A complete record that fails is damage even at the tail: it may have been
              // acknowledged, so it is never silently cut as a torn write.
              tornTails++;
              assert.unreachable(`${label}: the flip was not reported (span last of last segment: ${span.isLastOfLastSegment})`);
            } else {
              const error = strict.error;
              if (!(error instanceof TidelogError)) throw error;
              assert.ok(DAMAGE_CODES.includes(error.code), `${label}: unexpected ${error.code}`);
              assert.is(error.context.file, join(source, span.file), `${label}: the error names the file`);
              assert.is(error.context.offset, span.offset, `${label}: the error names the damaged record`);
            }
            const salvaged = await replay(memory, true);
            if (salvaged.error !== null) throw salvaged.error;
            assert.ok(sameEvents(salvaged.events, expected), `${label}: salvage did not return the prefix before the damage`);
          } finally {
            bytes[byte] ^= 1 << bit;
          }
          flips++;
          if (bitIndex % WAL_OPEN_EVERY_BITS === 0) await checkWithWalOpen(memory.files, span.file, byte, bit, expected, label);
        }
      }
    }
    const totalBits = segments.reduce((sum, { bytes }) => sum + bytes.byteLength * 8, 0);
    assert.is(flips, totalBits, 'every bit was flipped');
    assert.is(tornTails, 0, 'no flip passes as a torn tail');
  } finally {
    await rm(source, { recursive: true, force: true });
  }
});

test.run();
