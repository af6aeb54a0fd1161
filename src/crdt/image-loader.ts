// Reads a state image (state-image.ts, where the format is drawn) back into a CrdtSignalState.
// Bytes arrive in pieces split anywhere; each piece is copied straight into the pages (pages.ts)
// of the store it belongs to, so the loader holds the state being built and nothing more than
// one piece, and allocates only for bytes that arrived.
// Invariant: nothing the bytes say is trusted. The header must match the schema (another
// fingerprint: SCHEMA_INVALID) and add up (counts, lengths, totalBytes) before any array is
// allocated; buffered events are checked against the schema as they arrive; padding and
// reserved bytes must be zero; and finish() checks the whole structure (state-invariants.ts)
// and rebuilds the entity index (repeated ids are refused). Anything else is DECODE_FAILED,
// never a crash, a hang or a state that could read out of bounds later; a reorder buffer
// beyond maxPendingEvents is OVERLOADED, as for a msgpack snapshot.

import { TidelogError } from '../errors.ts';
import { Section } from './copy-on-write.ts';
import { EVENT_BYTES } from '../event.ts';
import { validatePacked } from './event-fold.ts';
import { HLC_TIMESTAMP_BYTES, HlcTimestamp } from './hlc-timestamp.ts';
import { OriginLog } from './origin-log.ts';
import type { SignalSchema } from './signal-schema.ts';
import { CrdtSignalState, DEFAULT_MAX_PENDING_EVENTS, type SignalStateOptions } from './signal-state.ts';
import { StateArrays } from './state-arrays.ts';
import {
  align8,
  BYTE_ORDER_MARK,
  COLUMN_ENTRY_BYTES,
  getU64,
  HEADER_BYTES,
  IMAGE_MAGIC,
  IMAGE_VERSION,
  ORIGIN_ROW_BYTES,
  PENDING_ROW_BYTES,
  SECTION_ENTRY_BYTES,
} from './state-image.ts';
import { checkStateArrays } from './state-invariants.ts';
import { writePages, type PageArray, type Pages } from './pages.ts';

/** Largest record count of any section: typed arrays (and ring and entity numbers) stay below it. */
const MAX_SECTION_COUNT = 2 ** 30;
const IS_LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

type Phase = 'header' | 'tables' | 'origins' | 'sections' | 'done' | 'failed' | 'finished';

interface Header {
  headerBytes: number;
  totalBytes: number;
  originCount: number;
  originsBytes: number;
  pendingEvents: number;
  droppedCount: number;
  narrowFree: number;
  wideFree: number;
}

/** A section's destination: the state's own pages, filled as the bytes arrive. */
interface Destination {
  pages: Pages<PageArray>;
  byteLength: number;
  paddedBytes: number;
}

export class ImageLoader {
  readonly schema: SignalSchema;
  private readonly options: SignalStateOptions;
  private readonly maxPendingEvents: number;
  private phase: Phase = 'header';
  private received = 0;
  private readonly fixed = new Uint8Array(HEADER_BYTES);
  private tables = new Uint8Array(0);
  private filled = 0;
  private header: Header | undefined = undefined;
  private readonly arrays: StateArrays;
  private readonly conflicts: number[] = [];
  private destinations: Destination[] = [];
  /** Records per section, from the header. */
  private counts: number[] = [];
  private sectionIndex = 0;
  // ---- origins ----
  private readonly record = new Uint8Array(PENDING_ROW_BYTES);
  private readonly recordView = new DataView(this.record.buffer);
  private recordFilled = 0;
  private readonly logs: OriginLog[] = [];
  private readonly origins = new Set<number>();
  private originsRead = 0;
  private pendingLeft = 0;
  private pendingRead = 0;
  private previousSeq = 0;

  constructor(schema: SignalSchema, options: SignalStateOptions = {}) {
    if (!IS_LITTLE_ENDIAN) throw new Error('invariant violated: state images need a little-endian host');
    this.schema = schema;
    this.options = options;
    this.maxPendingEvents = options.maxPendingEvents ?? DEFAULT_MAX_PENDING_EVENTS;
    if (!Number.isSafeInteger(this.maxPendingEvents) || this.maxPendingEvents < 0) {
      throw new TidelogError('BAD_REQUEST', `maxPendingEvents must be a non-negative integer, got ${this.maxPendingEvents}`);
    }
    this.arrays = new StateArrays(schema);
  }

  /** Takes the next bytes of the image, split anywhere (the bytes are copied, not kept). */
  push(bytes: Uint8Array): void {
    if (!(bytes instanceof Uint8Array)) throw new TidelogError('BAD_REQUEST', 'ImageLoader.push takes a Uint8Array');
    if (this.phase === 'failed') fail('$', 'the image failed to load already');
    if (this.phase === 'finished') throw new TidelogError('BAD_REQUEST', 'the image was loaded already');
    try {
      this.consume(bytes);
    } catch (error) {
      this.phase = 'failed';
      if (error instanceof TidelogError) throw error;
      if (error instanceof RangeError) throw new TidelogError('DECODE_FAILED', 'the image asks for more memory than can be allocated', { cause: error });
      throw error;
    }
  }

  /** The loaded state; DECODE_FAILED when the image is incomplete or not well formed. */
  finish(): CrdtSignalState {
    if (this.phase === 'finished') throw new TidelogError('BAD_REQUEST', 'the image was loaded already');
    if (this.phase !== 'done') {
      const phase = this.phase;
      this.phase = 'failed';
      fail('$', phase === 'failed' ? 'the image failed to load' : `the image ends early, after ${this.received} bytes`);
    }
    this.phase = 'failed';
    const header = this.header as Header;
    const arrays = this.arrays;
    const counts = this.counts;
    arrays.index.adopt(counts[Section.ENTITY_KEYS]);
    arrays.pool.adopt(counts[Section.CONTRIBUTIONS]);
    arrays.rings.adopt(counts[Section.NARROW_RINGS], header.narrowFree, counts[Section.WIDE_RINGS], header.wideFree);
    arrays.flags.adopt(counts[Section.FLAG_RECORDS]);
    for (const column of arrays.columnList) column.adopt(0, this.conflicts[column.ordinal]);
    const cellCounts = checkStateArrays(arrays);
    for (const column of arrays.columnList) column.cellCount = cellCounts[column.ordinal];
    this.phase = 'finished';
    return CrdtSignalState.fromImage(this.schema, this.options, arrays, this.logs, header.droppedCount);
  }

  private consume(bytes: Uint8Array): void {
    let at = 0;
    while (at < bytes.byteLength) {
      const available = bytes.byteLength - at;
      let taken: number;
      switch (this.phase) {
        case 'header':
          taken = Math.min(available, HEADER_BYTES - this.filled);
          this.fixed.set(bytes.subarray(at, at + taken), this.filled);
          this.filled += taken;
          if (this.filled === HEADER_BYTES) this.readFixedHeader();
          break;
        case 'tables':
          taken = Math.min(available, this.tables.byteLength - this.filled);
          this.tables.set(bytes.subarray(at, at + taken), this.filled);
          this.filled += taken;
          if (this.filled === this.tables.byteLength) this.readTables();
          break;
        case 'origins':
          taken = this.consumeOrigins(bytes, at);
          break;
        case 'sections':
          taken = this.consumeSection(bytes, at);
          break;
        default:
          fail('$', `bytes past the end of the image (${this.received + available} > ${this.header?.totalBytes})`);
      }
      at += taken;
      this.received += taken;
    }
  }

  // ---- header ----

  private readFixedHeader(): void {
    const bytes = this.fixed;
    const view = new DataView(bytes.buffer);
    for (let at = 0; at < IMAGE_MAGIC.length; at++) if (bytes[at] !== IMAGE_MAGIC.charCodeAt(at)) fail('$.magic', 'not a tidelog state image');
    if (view.getUint32(8, true) !== IMAGE_VERSION) fail('$.version', `unsupported image version ${view.getUint32(8, true)}`);
    let fingerprint = '';
    for (let at = 24; at < 56 && bytes[at] !== 0; at++) fingerprint += String.fromCharCode(bytes[at]);
    if (fingerprint !== this.schema.fingerprint) {
      throw new TidelogError('SCHEMA_INVALID', 'the image was written under a different signal schema', {
        details: { expected: this.schema.fingerprint, found: fingerprint },
      });
    }
    const columns = this.arrays.columnList.length;
    const sections = Section.HEADS + columns;
    expectEqual(view.getUint32(56, true), this.schema.bucketsPerWindow, '$.bucketsPerWindow');
    expectEqual(view.getUint32(60, true), columns, '$.columnCount');
    expectEqual(view.getUint32(64, true), this.schema.flags.length, '$.flagCount');
    expectEqual(view.getUint32(68, true), this.arrays.pool.strideWords * 4, '$.strideBytes');
    expectEqual(view.getUint32(72, true), sections, '$.sectionCount');
    const headerBytes = HEADER_BYTES + COLUMN_ENTRY_BYTES * columns + SECTION_ENTRY_BYTES * sections;
    expectEqual(view.getUint32(12, true), headerBytes, '$.headerBytes');
    expectEqual(view.getUint32(112, true), BYTE_ORDER_MARK, '$.byteOrder');
    for (let at = 116; at < HEADER_BYTES; at++) if (bytes[at] !== 0) fail('$.reserved', 'reserved bytes must be zero');
    this.header = {
      headerBytes,
      totalBytes: expectSafe(view, 16, '$.totalBytes'),
      originCount: view.getUint32(76, true),
      originsBytes: expectSafe(view, 80, '$.originsBytes'),
      pendingEvents: expectSafe(view, 88, '$.pendingEvents'),
      droppedCount: expectSafe(view, 96, '$.droppedPending'),
      narrowFree: view.getUint32(104, true),
      wideFree: view.getUint32(108, true),
    };
    const header = this.header;
    if (header.pendingEvents > this.maxPendingEvents) {
      throw new TidelogError('OVERLOADED', `the image buffers ${header.pendingEvents} events, more than maxPendingEvents ${this.maxPendingEvents}`, {
        details: { pendingEvents: header.pendingEvents, maxPendingEvents: this.maxPendingEvents },
      });
    }
    expectEqual(header.originsBytes, header.originCount * ORIGIN_ROW_BYTES + header.pendingEvents * PENDING_ROW_BYTES, '$.originsBytes');
    this.tables = new Uint8Array(headerBytes - HEADER_BYTES);
    this.filled = 0;
    this.phase = 'tables';
  }

  private readTables(): void {
    const header = this.header as Header;
    const view = new DataView(this.tables.buffer);
    const columns = this.arrays.columnList;
    columns.forEach((column, ordinal) => {
      const at = ordinal * COLUMN_ENTRY_BYTES;
      const path = `$.columns[${ordinal}]`;
      expectEqual(view.getUint32(at, true), column.signal.id, `${path}.signalId`);
      expectEqual(view.getUint32(at + 4, true), column.windowCount, `${path}.windowCount`);
      this.conflicts.push(expectSafe(view, at + 8, `${path}.conflicts`));
    });
    const expectedBytes = this.arrays.sections().map((section) => section.elementBytes);
    const counts: number[] = [];
    expectedBytes.forEach((elementBytes, id) => {
      const at = columns.length * COLUMN_ENTRY_BYTES + id * SECTION_ENTRY_BYTES;
      const path = `$.sections[${id}]`;
      expectEqual(view.getUint32(at, true), id, `${path}.id`);
      expectEqual(view.getUint32(at + 4, true), elementBytes, `${path}.elementBytes`);
      const count = expectSafe(view, at + 8, `${path}.count`);
      if (count > MAX_SECTION_COUNT) fail(`${path}.count`, `more than ${MAX_SECTION_COUNT} records`);
      counts.push(count);
    });
    const entities = counts[Section.ENTITY_KEYS];
    const contributions = counts[Section.CONTRIBUTIONS];
    const either = (id: number, full: number, what: string): void => {
      if (counts[id] !== 0 && counts[id] !== full) fail(`$.sections[${id}].count`, `must be 0 or the ${what} count ${full}`);
    };
    for (const id of [Section.NEGATIVE_LO, Section.POSITIVE_HI, Section.NEGATIVE_HI, Section.EVENT_COUNT_HI]) either(id, contributions, 'contribution');
    either(Section.FLAG_REFS, entities, 'entity');
    for (const column of columns) either(Section.HEADS + column.ordinal, entities, 'entity');
    if (counts[Section.FLAG_RECORDS] > entities) fail(`$.sections[${Section.FLAG_RECORDS}].count`, 'more flag records than entities');
    if (header.narrowFree > counts[Section.NARROW_RINGS]) fail('$.narrowFree', 'the free list starts past the pool');
    if (header.wideFree > counts[Section.WIDE_RINGS]) fail('$.wideFree', 'the free list starts past the pool');
    let totalBytes = header.headerBytes + header.originsBytes;
    counts.forEach((count, id) => {
      totalBytes += align8(count * expectedBytes[id]);
    });
    expectEqual(header.totalBytes, totalBytes, '$.totalBytes');
    this.allocate(counts, expectedBytes);
    this.filled = 0;
    this.phase = 'origins';
    this.settle();
  }

  /**
   * The pages each section fills: the loaded state's own stores. Pages are allocated as the bytes
   * arrive (writePages), so a header that promises more than comes allocates only what came.
   */
  private allocate(counts: number[], elementBytes: number[]): void {
    const arrays = this.arrays;
    const pool = arrays.pool;
    const stores: Pages<PageArray>[] = [
      arrays.index.keys,
      pool.words,
      pool.negativeLo,
      pool.positiveHi,
      pool.negativeHi,
      pool.eventCountHi,
      arrays.rings.narrow,
      arrays.rings.wide,
      arrays.flags.refs,
      arrays.flags.records,
      ...arrays.columnList.map((column) => column.heads),
    ];
    this.destinations = stores.map((pages, id) => {
      const byteLength = counts[id] * elementBytes[id];
      if (byteLength > 0 && pages.recordBytes !== elementBytes[id]) throw new Error(`invariant violated: section ${id} pages hold ${pages.recordBytes}-byte records`);
      return { pages, byteLength, paddedBytes: align8(byteLength) };
    });
    this.counts = counts;
  }

  /** Moves past parts that are complete or empty. */
  private settle(): void {
    const header = this.header as Header;
    if (this.phase === 'origins' && this.filled === header.originsBytes) {
      if (this.logs.length !== header.originCount || this.pendingRead !== header.pendingEvents || this.pendingLeft !== 0) {
        fail('$.origins', 'the origin rows do not add up to the header');
      }
      this.phase = 'sections';
      this.filled = 0;
      this.sectionIndex = 0;
    }
    if (this.phase === 'sections') {
      while (this.sectionIndex < this.destinations.length && this.filled === this.destinations[this.sectionIndex].paddedBytes) {
        this.sectionIndex++;
        this.filled = 0;
      }
      if (this.sectionIndex === this.destinations.length) this.phase = 'done';
    }
  }

  // ---- origins ----

  private consumeOrigins(bytes: Uint8Array, at: number): number {
    const recordBytes = this.pendingLeft > 0 ? PENDING_ROW_BYTES : ORIGIN_ROW_BYTES;
    const header = this.header as Header;
    const taken = Math.min(bytes.byteLength - at, recordBytes - this.recordFilled, header.originsBytes - this.filled);
    this.record.set(bytes.subarray(at, at + taken), this.recordFilled);
    this.recordFilled += taken;
    this.filled += taken;
    if (this.recordFilled === recordBytes) {
      this.recordFilled = 0;
      if (recordBytes === PENDING_ROW_BYTES) this.readPending();
      else this.readOriginRow();
    } else if (this.filled === header.originsBytes) {
      fail('$.origins', 'the origins part ends inside a record');
    }
    this.settle();
    return taken;
  }

  private readOriginRow(): void {
    const view = this.recordView;
    const header = this.header as Header;
    const path = `$.origins[${this.logs.length}]`;
    if (this.logs.length >= header.originCount) fail(path, 'more origin rows than the header announced');
    const log = new OriginLog(view.getUint32(0, true));
    if (this.origins.has(log.origin)) fail(path, `origin ${log.origin} appears twice`);
    this.origins.add(log.origin);
    this.pendingLeft = view.getUint32(4, true);
    if (this.pendingRead + this.pendingLeft > header.pendingEvents) fail(path, 'more buffered events than the header announced');
    log.appliedSeq = expectSafe(view, 8, `${path}.appliedSeq`);
    const hasLastHlc = view.getUint32(32, true);
    if (hasLastHlc > 1) fail(`${path}.hasLastHlc`, 'must be 0 or 1');
    if (hasLastHlc === 1) {
      if (log.appliedSeq === 0) fail(`${path}.lastHlc`, 'a lastHlc needs appliedSeq ≥ 1');
      log.lastHlc = HlcTimestamp.fromBytes(this.record, 16);
    } else {
      for (let at = 16; at < 32; at++) if (this.record[at] !== 0) fail(`${path}.lastHlc`, 'an absent lastHlc must be zero');
    }
    log.conflicts = view.getUint32(36, true);
    this.previousSeq = log.appliedSeq + 1;
    this.logs.push(log);
  }

  private readPending(): void {
    const view = this.recordView;
    const log = this.logs[this.logs.length - 1];
    const path = `$.origins[${this.logs.length - 1}].pending[${log.pending.size}]`;
    const seq = expectSafe(view, 0, `${path}.seq`);
    if (seq <= this.previousSeq) fail(`${path}.seq`, 'buffered seqs must ascend, beyond appliedSeq + 1');
    this.previousSeq = seq;
    const hlc = HlcTimestamp.fromBytes(this.record, 8);
    const eventAt = 8 + HLC_TIMESTAMP_BYTES;
    const event = this.record.slice(eventAt, eventAt + EVENT_BYTES);
    for (let at = eventAt + EVENT_BYTES; at < PENDING_ROW_BYTES; at++) if (this.record[at] !== 0) fail(path, 'padding must be zero');
    try {
      validatePacked(this.schema, event, 1);
    } catch (cause) {
      throw new TidelogError('DECODE_FAILED', `${path}: the buffered event is not valid under the schema`, {
        cause,
        details: { path, reason: (cause as TidelogError).code },
      });
    }
    log.pending.set(seq, { bytes: event, wallNs: hlc.wallNs, logical: hlc.logical, nodeId: hlc.nodeId });
    this.pendingLeft--;
    this.pendingRead++;
  }

  // ---- sections ----

  private consumeSection(bytes: Uint8Array, at: number): number {
    const destination = this.destinations[this.sectionIndex];
    const taken = Math.min(bytes.byteLength - at, destination.paddedBytes - this.filled);
    const dataEnd = Math.min(taken, Math.max(0, destination.byteLength - this.filled));
    if (dataEnd > 0) writePages(destination.pages, this.filled, bytes.subarray(at, at + dataEnd));
    for (let index = dataEnd; index < taken; index++) {
      if (bytes[at + index] !== 0) fail(`$.sections[${this.sectionIndex}]`, 'padding must be zero');
    }
    this.filled += taken;
    this.settle();
    return taken;
  }
}

/** Loads a whole image at once (ImageLoader for pieces). */
export function loadStateImage(bytes: Uint8Array, schema: SignalSchema, options: SignalStateOptions = {}): CrdtSignalState {
  const loader = new ImageLoader(schema, options);
  loader.push(bytes);
  return loader.finish();
}

function expectSafe(view: DataView, at: number, path: string): number {
  const hi = view.getUint32(at + 4, true);
  if (hi >= 0x20_0000) fail(path, 'must be below 2^53');
  return getU64(view, at);
}

function expectEqual(found: number, expected: number, path: string): void {
  if (found !== expected) fail(path, `expected ${expected}, found ${found}`);
}

function fail(path: string, message: string): never {
  throw new TidelogError('DECODE_FAILED', `${path}: ${message}`, { details: { path } });
}
