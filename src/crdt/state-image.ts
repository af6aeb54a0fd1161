// A state's binary image: the typed arrays of state-arrays.ts dumped raw, plus the origin logs,
// so a shard with millions of entities is snapshotted at memory speed, in pieces, while the
// node keeps folding into the same state on the same thread. Read back by image-loader.ts.
// A section is its records end to end, whatever pages (pages.ts) hold them in memory.
// Invariant: the image describes the state exactly as it was at beginImage(): scalars are
// taken then, origin logs copied then (O(origins + buffered events), bounded by
// maxPendingEvents), and the arrays are read through copy-on-write (copy-on-write.ts). So
// begin is O(small), each next(maxBytes) O(maxBytes), and the same operations from the same
// state give the same bytes. Little-endian throughout (the arrays are dumped as the host holds
// them; every supported host is little-endian, and the loader checks the marker).
//
//   image = header · origins · sections, each section starting 8-aligned (zero padding)
//
//   header (HEADER_BYTES + 16·C + 16·S bytes)
//   offset  size  field            meaning
//   ------  ----  ---------------  ---------------------------------------------------------
//        0     8  magic            ASCII "TLCRDTIM"
//        8     4  version          u32, 1
//       12     4  headerBytes      u32, 128 + 16·C + 16·S
//       16     8  totalBytes       u64, the whole image
//       24    32  schema           ASCII, SignalSchema.fingerprint
//       56     4  bucketsPerWindow u32, B
//       60     4  columnCount      u32, C: the schema's score signals
//       64     4  flagCount        u32, F: the schema's flags
//       68     4  strideBytes      u32, bytes per contribution record (contribution-pool.ts)
//       72     4  sectionCount     u32, S = 10 + C
//       76     4  originCount      u32, origin logs
//       80     8  originsBytes     u64, bytes of the origins part
//       88     8  pendingEvents    u64, events in all reorder buffers
//       96     8  droppedPending   u64, droppedPendingEvents
//      104     4  narrowFree       u32, head of the free narrow rings + 1 (0: none)
//      108     4  wideFree         u32, head of the free wide rings + 1
//      112     4  byteOrder        u32 0x01020304 as written by the host (little-endian)
//      116    12  reserved         zero
//      128  16·C  columns          per score signal, ascending id: signalId u32,
//                                  windowCount u32, conflicts u64 (operational counter)
//        …  16·S  sections         per section, in id order: id u32, elementBytes u32, count u64
//
//   origins (originsBytes), per origin log in the state's order, then its buffered events
//   offset  size  field
//        0     4  origin           u32
//        4     4  pendingCount     u32
//        8     8  appliedSeq       u64 (< 2^53)
//       16    16  lastHlc          HLC, 16-byte form (hlc-timestamp.ts); zero when absent
//       32     4  hasLastHlc       u32, 0 or 1
//       36     4  conflicts        u32, operational counter
//   per buffered event, ascending seq (48 bytes):
//        0     8  seq              u64
//        8    16  hlc              HLC, 16-byte form
//       24    21  event            packed event (src/event.ts)
//       45     3  zero
//
//   sections (id, record, count; an absent lazy array has count 0)
//    id  section         record                          count
//   ---  --------------  ------------------------------  -----------------------------------
//     0  entityKeys      u32 hi, u32 lo                  entities
//     1  contributions   strideBytes (contribution-pool)  contributions
//     2  negativeLo      f64                             contributions or 0
//     3  positiveHi      f64                             contributions or 0
//     4  negativeHi      f64                             contributions or 0
//     5  eventCountHi    u32                             contributions or 0
//     6  narrowRings     B × u32 (window-rings.ts)       narrow rings, free ones included
//     7  wideRings       B × f64                         wide rings, free ones included
//     8  flagRefs        u32 (flag-table.ts)             entities or 0
//     9  flagRecords     F × 5 × u32                     flag records
//  10+c  heads of c      u32 (score-column.ts)           entities or 0

import { TidelogError } from '../errors.ts';
import { SectionCopies, type TrackedSection } from './copy-on-write.ts';
import { EVENT_BYTES } from '../event.ts';
import { HLC_TIMESTAMP_BYTES, HlcTimestamp } from './hlc-timestamp.ts';
import type { OriginLog, PendingEvent } from './origin-log.ts';
import type { SignalSchema } from './signal-schema.ts';
import type { StateArrays } from './state-arrays.ts';

export const IMAGE_MAGIC = 'TLCRDTIM';
export const IMAGE_VERSION = 1;
export const HEADER_BYTES = 128;
export const COLUMN_ENTRY_BYTES = 16;
export const SECTION_ENTRY_BYTES = 16;
export const ORIGIN_ROW_BYTES = 40;
export const PENDING_ROW_BYTES = 48;
export const BYTE_ORDER_MARK = 0x01020304;
export const MIN_PIECE_BYTES = 64 * 1024;

export interface ImageStream {
  /**
   * The next piece of the image, at most maxBytes (≥ 64 KiB) long; null once the image is
   * complete. The bytes are a view valid only until the next call. Each call costs O(maxBytes).
   */
  next(maxBytes: number): Uint8Array | null;
  /** Total image bytes (known at begin). */
  readonly totalBytes: number;
  /** Stop early and drop the copy-on-write bookkeeping. */
  cancel(): void;
}

/** An origin log as it was at begin: its buffered events in seq order. */
interface OriginAtBegin {
  log: OriginLog;
  appliedSeq: number;
  lastHlc: HlcTimestamp | undefined;
  conflicts: number;
  seqs: number[];
  events: PendingEvent[];
}

/** One stretch of the image, read front to back. */
interface Part {
  byteLength: number;
  read(from: number, to: number, out: Uint8Array, outAt: number): void;
}

export function align8(bytes: number): number {
  return Math.ceil(bytes / 8) * 8;
}

export class StateImageStream implements ImageStream {
  readonly totalBytes: number;
  private readonly arrays: StateArrays;
  private readonly copies: SectionCopies;
  private readonly parts: Part[];
  private readonly onEnd: () => void;
  private partIndex = 0;
  private partAt = 0;
  private emitted = 0;
  private out = new Uint8Array(0);
  private isCancelled = false;

  constructor(schema: SignalSchema, arrays: StateArrays, logs: ReadonlyMap<number, OriginLog>, droppedCount: number, onEnd: () => void) {
    this.arrays = arrays;
    this.onEnd = onEnd;
    const origins: OriginAtBegin[] = [];
    let pendingEvents = 0;
    for (const log of logs.values()) {
      const seqs = log.pendingSeqs();
      origins.push({
        log,
        appliedSeq: log.appliedSeq,
        lastHlc: log.lastHlc,
        conflicts: log.conflicts,
        seqs,
        events: seqs.map((seq) => log.pending.get(seq) as PendingEvent),
      });
      pendingEvents += seqs.length;
    }
    this.copies = new SectionCopies(arrays.sections(), arrays.meter);
    arrays.barrier.copies = this.copies;
    const originsBytes = origins.length * ORIGIN_ROW_BYTES + pendingEvents * PENDING_ROW_BYTES;
    const sections = this.copies.sections;
    const headerBytes = HEADER_BYTES + COLUMN_ENTRY_BYTES * arrays.columnList.length + SECTION_ENTRY_BYTES * sections.length;
    let totalBytes = headerBytes + originsBytes;
    for (const section of sections) totalBytes += align8(section.byteLength);
    this.totalBytes = totalBytes;
    const header = encodeHeader(schema, arrays, sections, {
      headerBytes,
      totalBytes,
      originCount: origins.length,
      originsBytes,
      pendingEvents,
      droppedCount,
    });
    this.parts = [bytesPart(header), originsPart(origins, originsBytes), ...sections.map((section) => sectionPart(section))];
  }

  next(maxBytes: number): Uint8Array | null {
    if (this.isCancelled) throw new TidelogError('CLOSED', 'the image was cancelled or superseded by a newer beginImage');
    if (!Number.isSafeInteger(maxBytes) || maxBytes < MIN_PIECE_BYTES) {
      throw new TidelogError('BAD_REQUEST', `maxBytes must be an integer ≥ ${MIN_PIECE_BYTES}, got ${String(maxBytes)}`);
    }
    if (this.emitted === this.totalBytes) {
      this.end();
      return null;
    }
    const length = Math.min(maxBytes, this.totalBytes - this.emitted);
    if (this.out.byteLength < length) this.out = new Uint8Array(length);
    const out = this.out;
    let filled = 0;
    while (filled < length) {
      const part = this.parts[this.partIndex];
      const take = Math.min(length - filled, part.byteLength - this.partAt);
      part.read(this.partAt, this.partAt + take, out, filled);
      filled += take;
      this.partAt += take;
      if (this.partAt === part.byteLength) {
        this.partIndex++;
        this.partAt = 0;
      }
    }
    this.emitted += length;
    if (this.emitted === this.totalBytes) this.end();
    return out.subarray(0, length);
  }

  cancel(): void {
    if (this.isCancelled) return;
    this.end();
    this.isCancelled = true;
  }

  /** Bytes copied aside by copy-on-write so far (tests, benchmarks). */
  get copiedBytes(): number {
    return this.copies.copiedBytes;
  }

  /** Drops the bookkeeping: writes stop copying, the state forgets this image. */
  private end(): void {
    if (this.arrays.barrier.copies === this.copies) this.arrays.barrier.copies = null;
    this.onEnd();
  }
}

interface HeaderCounts {
  headerBytes: number;
  totalBytes: number;
  originCount: number;
  originsBytes: number;
  pendingEvents: number;
  droppedCount: number;
}

function encodeHeader(schema: SignalSchema, arrays: StateArrays, sections: readonly TrackedSection[], counts: HeaderCounts): Uint8Array {
  const bytes = new Uint8Array(counts.headerBytes);
  const view = new DataView(bytes.buffer);
  for (let at = 0; at < IMAGE_MAGIC.length; at++) bytes[at] = IMAGE_MAGIC.charCodeAt(at);
  view.setUint32(8, IMAGE_VERSION, true);
  view.setUint32(12, counts.headerBytes, true);
  setU64(view, 16, counts.totalBytes);
  for (let at = 0; at < 32; at++) bytes[24 + at] = at < schema.fingerprint.length ? schema.fingerprint.charCodeAt(at) : 0;
  view.setUint32(56, schema.bucketsPerWindow, true);
  view.setUint32(60, arrays.columnList.length, true);
  view.setUint32(64, schema.flags.length, true);
  view.setUint32(68, arrays.pool.strideWords * 4, true);
  view.setUint32(72, sections.length, true);
  view.setUint32(76, counts.originCount, true);
  setU64(view, 80, counts.originsBytes);
  setU64(view, 88, counts.pendingEvents);
  setU64(view, 96, counts.droppedCount);
  view.setUint32(104, arrays.rings.narrowFree, true);
  view.setUint32(108, arrays.rings.wideFree, true);
  new Uint32Array(bytes.buffer, 112, 1)[0] = BYTE_ORDER_MARK;
  let at = HEADER_BYTES;
  for (const column of arrays.columnList) {
    view.setUint32(at, column.signal.id, true);
    view.setUint32(at + 4, column.windowCount, true);
    setU64(view, at + 8, column.conflicts);
    at += COLUMN_ENTRY_BYTES;
  }
  for (const section of sections) {
    view.setUint32(at, section.id, true);
    view.setUint32(at + 4, section.elementBytes, true);
    setU64(view, at + 8, section.count);
    at += SECTION_ENTRY_BYTES;
  }
  return bytes;
}

function bytesPart(bytes: Uint8Array): Part {
  return {
    byteLength: bytes.byteLength,
    read: (from, to, out, outAt) => out.set(bytes.subarray(from, to), outAt),
  };
}

/** A section's begin-time bytes, then zeros to the next multiple of 8. */
function sectionPart(section: TrackedSection): Part {
  const dataBytes = section.byteLength;
  return {
    byteLength: align8(dataBytes),
    read: (from, to, out, outAt) => {
      const dataEnd = Math.min(to, dataBytes);
      if (from < dataEnd) section.read(from, dataEnd, out, outAt);
      if (to > Math.max(from, dataBytes)) out.fill(0, outAt + Math.max(from, dataBytes) - from, outAt + to - from);
    },
  };
}

/** The origin logs as they were at begin, encoded record by record as they are read. */
function originsPart(origins: OriginAtBegin[], byteLength: number): Part {
  const record = new Uint8Array(PENDING_ROW_BYTES);
  const view = new DataView(record.buffer);
  let row = 0;
  let pending = -1;
  let recordLength = 0;
  let recordAt = 0;
  const encodeNext = (): void => {
    const origin = origins[row];
    record.fill(0);
    if (pending < 0) {
      view.setUint32(0, origin.log.origin, true);
      view.setUint32(4, origin.seqs.length, true);
      setU64(view, 8, origin.appliedSeq);
      if (origin.lastHlc !== undefined) {
        record.set(origin.lastHlc.toBytes(), 16);
        view.setUint32(32, 1, true);
      }
      view.setUint32(36, Math.min(origin.conflicts, 0xffff_ffff), true);
      recordLength = ORIGIN_ROW_BYTES;
    } else {
      const event = origin.events[pending];
      setU64(view, 0, origin.seqs[pending]);
      record.set(new HlcTimestamp(event.wallNs, event.logical, event.nodeId).toBytes(), 8);
      record.set(event.bytes.subarray(0, EVENT_BYTES), 8 + HLC_TIMESTAMP_BYTES);
      recordLength = PENDING_ROW_BYTES;
    }
    recordAt = 0;
  };
  const advance = (): void => {
    pending++;
    if (pending >= origins[row].seqs.length) {
      row++;
      pending = -1;
    }
  };
  return {
    byteLength,
    read: (from, to, out, outAt) => {
      let at = from;
      while (at < to) {
        if (recordAt === recordLength) {
          if (recordLength > 0) advance();
          encodeNext();
        }
        const take = Math.min(to - at, recordLength - recordAt);
        out.set(record.subarray(recordAt, recordAt + take), outAt + at - from);
        recordAt += take;
        at += take;
      }
    },
  };
}

export function setU64(view: DataView, at: number, value: number): void {
  view.setUint32(at, value % 4294967296, true);
  view.setUint32(at + 4, Math.floor(value / 4294967296), true);
}

export function getU64(view: DataView, at: number): number {
  return view.getUint32(at + 4, true) * 4294967296 + view.getUint32(at, true);
}
