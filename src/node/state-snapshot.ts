// The shard-state snapshot container: what a node shard's snapshot files (and, before them,
// its segment heads) hold — the CRDT signal state and the producer sessions as of one seq.
// Version 2 is produced and consumed as a stream, so a state of millions of entities is
// written in pieces between other work and restored without a second copy in memory.
// Invariant: a container decodes to exactly the state it was taken from, or DECODE_FAILED.
//
// Version 2 (all integers little-endian):
//
//   offset  size  field         notes
//   ------  ----  ------------  ---------------------------------------------------------
//        0     4  magic         ASCII "TLST"
//        4     2  version       u16 = 2
//        6     2  crdtFormat    u16: 2 = binary state image (src/crdt/state-image.ts), written;
//                               1 = canonical msgpack snapshot (src/crdt/snapshot-codec.ts), read
//        8     4  shard         u32
//       12     4  reserved      0
//       16     8  appliedSeq    u64, highest seq folded
//       24     8  crdtBytes     u64, C
//       32     8  sessionBytes  u64, S
//       40     C  crdt          the CRDT signal state in crdtFormat
//     40+C     S  sessions      session snapshot (session-snapshot.ts)
//   ------  ----
//   40 + C + S bytes
//
// Version 1 (written into segment heads before snapshot files existed; still read):
//
//        0     4  magic "TLST" │ 4  2 version = 1 │ 6  2 reserved │ 8  4 shard │ 12  8 appliedSeq
//       20     4  crdtBytes C  │ 24 4 sessionBytes S │ 28 C crdt (msgpack) │ 28+C S sessions

import { CrdtSignalState, ImageLoader, type SignalSchema, type SignalStateOptions } from '../crdt/index.ts';
import { TidelogError } from '../errors.ts';
import type { SnapshotSink, SnapshotStream } from '../wal/index.ts';

const STATE_MAGIC = 0x54534c54; // "TLST" read as u32 little-endian
const V1_HEAD_BYTES = 28;
const V2_HEAD_BYTES = 40;
export const CRDT_FORMAT_MSGPACK = 1;
export const CRDT_FORMAT_IMAGE = 2;
export const STATE_SNAPSHOT_VERSION = 2;

/** What a restored container holds. */
export interface RestoredState {
  signals: CrdtSignalState;
  sessions: Uint8Array;
}

export interface StateSnapshotParts {
  shard: number;
  appliedSeq: number;
  /** The CRDT state; its image is consistent as of this call while the state moves on. */
  signals: CrdtSignalState;
  /** The session snapshot as of the snapshot. */
  sessions: Uint8Array;
}

/**
 * A version-2 container as a stream: header, the CRDT state's image, session bytes. The
 * image is taken with copy-on-write (src/crdt/state-image.ts), so producing it costs
 * O(piece) per next() however large the state, and folding may go on between pieces.
 */
export function stateSnapshotStream(parts: StateSnapshotParts): SnapshotStream {
  const image = parts.signals.beginImage();
  const head = new Uint8Array(V2_HEAD_BYTES);
  const view = new DataView(head.buffer);
  view.setUint32(0, STATE_MAGIC, true);
  view.setUint16(4, STATE_SNAPSHOT_VERSION, true);
  view.setUint16(6, CRDT_FORMAT_IMAGE, true);
  view.setUint32(8, parts.shard, true);
  view.setBigUint64(16, BigInt(parts.appliedSeq), true);
  view.setBigUint64(24, BigInt(image.totalBytes), true);
  view.setBigUint64(32, BigInt(parts.sessions.byteLength), true);
  let stage: 'head' | 'image' | 'sessions' | 'done' = 'head';
  let offset = 0;
  const fromBytes = (bytes: Uint8Array, maxBytes: number): Uint8Array | null => {
    if (offset >= bytes.byteLength) return null;
    const piece = bytes.subarray(offset, Math.min(bytes.byteLength, offset + maxBytes));
    offset += piece.byteLength;
    return piece;
  };
  return {
    next(maxBytes) {
      for (;;) {
        if (stage === 'head') {
          const piece = fromBytes(head, maxBytes);
          if (piece !== null) return piece;
          stage = 'image';
        } else if (stage === 'image') {
          const piece = image.next(Math.max(64 << 10, maxBytes));
          if (piece !== null) return piece;
          stage = 'sessions';
          offset = 0;
        } else if (stage === 'sessions') {
          const piece = fromBytes(parts.sessions, maxBytes);
          if (piece !== null) return piece;
          stage = 'done';
        } else {
          return null;
        }
      }
    },
    cancel() {
      if (stage !== 'done') image.cancel();
      stage = 'done';
    },
  };
}

/**
 * Reads a container (either version) pushed in pieces; `finish()` hands the restored parts to
 * `onRestored`. Nothing reaches the caller before every byte was checked.
 */
export class StateSnapshotReader implements SnapshotSink {
  private head = new Uint8Array(V2_HEAD_BYTES);
  private headLength = 0;
  private version = 0;
  private crdt: Uint8Array | null = null;
  /** Format 2: the image goes straight into a loader, never held whole. */
  private loader: ImageLoader | null = null;
  private crdtTotal = 0;
  private sessions: Uint8Array | null = null;
  private crdtLength = 0;
  private sessionLength = 0;
  private isAborted = false;

  constructor(
    private readonly expected: { shard: number; appliedSeq: number; schema: SignalSchema; options: SignalStateOptions },
    private readonly onRestored: (state: RestoredState) => void,
  ) {}

  push(bytes: Uint8Array): void {
    let at = 0;
    while (at < bytes.byteLength) {
      if (this.crdt === null) {
        at += this.readHead(bytes, at);
        continue;
      }
      if (this.crdtLength < this.crdtTotal) {
        const take = Math.min(bytes.byteLength - at, this.crdtTotal - this.crdtLength);
        if (this.loader !== null) this.loader.push(bytes.subarray(at, at + take));
        else this.crdt.set(bytes.subarray(at, at + take), this.crdtLength);
        this.crdtLength += take;
        at += take;
        continue;
      }
      const sessions = this.sessions as Uint8Array;
      const take = Math.min(bytes.byteLength - at, sessions.byteLength - this.sessionLength);
      if (take === 0) this.fail('bytes after the end of the container');
      sessions.set(bytes.subarray(at, at + take), this.sessionLength);
      this.sessionLength += take;
      at += take;
    }
  }

  finish(): void {
    if (this.isAborted) throw new Error('invariant violated: finish after abort');
    if (this.crdt === null || this.sessions === null) this.fail('the container ends inside its header');
    const crdt = this.crdt as Uint8Array;
    const sessions = this.sessions as Uint8Array;
    if (this.crdtLength !== this.crdtTotal || this.sessionLength !== sessions.byteLength) this.fail('the container ends early');
    const signals = this.loader !== null ? this.loader.finish() : CrdtSignalState.decode(crdt, this.expected.schema, this.expected.options);
    this.onRestored({ signals, sessions });
  }

  abort(): void {
    this.isAborted = true;
    this.crdt = null;
    this.loader = null;
    this.sessions = null;
  }

  /** Consumes header bytes from `bytes[at…]`; allocates the sections once the header is whole. */
  private readHead(bytes: Uint8Array, at: number): number {
    const need = (this.headLength < 6 ? 6 : this.version === 1 ? V1_HEAD_BYTES : V2_HEAD_BYTES) - this.headLength;
    const take = Math.min(need, bytes.byteLength - at);
    this.head.set(bytes.subarray(at, at + take), this.headLength);
    this.headLength += take;
    const view = new DataView(this.head.buffer);
    if (this.headLength === 6) {
      if (view.getUint32(0, true) !== STATE_MAGIC) this.fail('bad magic');
      this.version = view.getUint16(4, true);
      if (this.version !== 1 && this.version !== STATE_SNAPSHOT_VERSION) this.fail(`unknown version ${this.version}`);
      return take;
    }
    const headBytes = this.version === 1 ? V1_HEAD_BYTES : V2_HEAD_BYTES;
    if (this.headLength < headBytes) return take;
    let shard: number;
    let appliedSeq: bigint;
    let crdtBytes: number;
    let sessionBytes: number;
    let format = CRDT_FORMAT_MSGPACK;
    if (this.version === 1) {
      if (view.getUint16(6, true) !== 0) this.fail('reserved bytes are not zero');
      shard = view.getUint32(8, true);
      appliedSeq = view.getBigUint64(12, true);
      crdtBytes = view.getUint32(20, true);
      sessionBytes = view.getUint32(24, true);
    } else {
      format = view.getUint16(6, true);
      if (format !== CRDT_FORMAT_MSGPACK && format !== CRDT_FORMAT_IMAGE) this.fail(`unknown CRDT format ${format}`);
      if (view.getUint32(12, true) !== 0) this.fail('reserved bytes are not zero');
      shard = view.getUint32(8, true);
      appliedSeq = view.getBigUint64(16, true);
      const crdt = view.getBigUint64(24, true);
      const session = view.getBigUint64(32, true);
      // An image streams into its loader; a msgpack section and the sessions are held whole
      // (msgpack decodes from one buffer): 2 GiB is their ceiling.
      if ((format === CRDT_FORMAT_MSGPACK && crdt > 0x7fff_ffffn) || crdt > BigInt(Number.MAX_SAFE_INTEGER) || session > 0x7fff_ffffn) {
        this.fail('a section too long to hold');
      }
      crdtBytes = Number(crdt);
      sessionBytes = Number(session);
    }
    if (shard !== this.expected.shard) this.fail(`it belongs to shard ${shard}`);
    if (appliedSeq !== BigInt(this.expected.appliedSeq)) this.fail(`it was taken at seq ${appliedSeq}, not ${this.expected.appliedSeq}`);
    this.crdtTotal = crdtBytes;
    if (format === CRDT_FORMAT_IMAGE) {
      this.loader = new ImageLoader(this.expected.schema, this.expected.options);
      this.crdt = new Uint8Array(0);
    } else {
      this.crdt = new Uint8Array(crdtBytes);
    }
    this.sessions = new Uint8Array(sessionBytes);
    return take;
  }

  private fail(reason: string): never {
    throw new TidelogError('DECODE_FAILED', `shard ${this.expected.shard} state snapshot: ${reason}`, { details: { shard: this.expected.shard } });
  }
}
