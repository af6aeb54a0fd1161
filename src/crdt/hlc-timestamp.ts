// A hybrid-logical-clock timestamp: (wallNs, logical, nodeId), totally ordered in that order.
// Invariant: a timestamp is immutable and always in range (u64 wall, u32 logical, u32 node), so
// comparison, encoding and the LWW tie-break never meet a value they cannot order.
//
// Binary form: 16 bytes, big-endian, so byte order is timestamp order (sortable keys, and a
// memcmp of two encodings agrees with `compare`):
//
//   offset  size  field     type
//   ------  ----  --------  ------------------------------
//        0     8  wallNs    u64 big-endian, ns since the Unix epoch
//        8     4  logical   u32 big-endian
//       12     4  nodeId    u32 big-endian
//   ------  ----
//       16 bytes
//
// msgpackr: `registerHlcExtension()` maps HlcTimestamp instances to msgpack ext type 0x48 ('H')
// whose payload is the 16 bytes above, so timestamps ride inside any msgpackr message.

import { addExtension } from 'msgpackr';
import { TidelogError } from '../errors.ts';

export const HLC_TIMESTAMP_BYTES = 16;
export const HLC_MSGPACK_EXTENSION_TYPE = 0x48;
export const U32_MAX = 0xffff_ffff;
export const U64_MAX = 0xffff_ffff_ffff_ffffn;

export interface HlcTimestampJson {
  wallNs: string;
  logical: number;
  nodeId: number;
}

export class HlcTimestamp {
  readonly wallNs: bigint;
  readonly logical: number;
  readonly nodeId: number;

  constructor(wallNs: bigint, logical: number, nodeId: number) {
    if (typeof wallNs !== 'bigint' || wallNs < 0n || wallNs > U64_MAX) {
      throw new TidelogError('BAD_REQUEST', `hlc wallNs must be a u64 bigint, got ${String(wallNs)}`);
    }
    checkU32(logical, 'hlc logical');
    checkU32(nodeId, 'hlc nodeId');
    this.wallNs = wallNs;
    this.logical = logical;
    this.nodeId = nodeId;
  }

  static readonly ZERO = new HlcTimestamp(0n, 0, 0);

  /** Negative, zero or positive as `a` orders before, equal to or after `b`. */
  static compare(a: HlcTimestamp, b: HlcTimestamp): number {
    return compareHlcParts(a.wallNs, a.logical, a.nodeId, b.wallNs, b.logical, b.nodeId);
  }

  compare(other: HlcTimestamp): number {
    return HlcTimestamp.compare(this, other);
  }

  isAfter(other: HlcTimestamp): boolean {
    return HlcTimestamp.compare(this, other) > 0;
  }

  equals(other: HlcTimestamp): boolean {
    return this.wallNs === other.wallNs && this.logical === other.logical && this.nodeId === other.nodeId;
  }

  toBytes(): Uint8Array {
    const bytes = new Uint8Array(HLC_TIMESTAMP_BYTES);
    this.writeTo(bytes, 0);
    return bytes;
  }

  writeTo(bytes: Uint8Array, offset: number): void {
    writeHlcParts(bytes, offset, Number(this.wallNs >> 32n), Number(this.wallNs & 0xffff_ffffn), this.logical, this.nodeId);
  }

  static fromBytes(bytes: Uint8Array, offset = 0): HlcTimestamp {
    if (!(bytes instanceof Uint8Array) || offset < 0 || bytes.byteLength - offset < HLC_TIMESTAMP_BYTES) {
      throw new TidelogError('DECODE_FAILED', `an hlc timestamp needs ${HLC_TIMESTAMP_BYTES} bytes`);
    }
    const wallNs = (BigInt(readU32BigEndian(bytes, offset)) << 32n) | BigInt(readU32BigEndian(bytes, offset + 4));
    return new HlcTimestamp(wallNs, readU32BigEndian(bytes, offset + 8), readU32BigEndian(bytes, offset + 12));
  }

  toJSON(): HlcTimestampJson {
    return { wallNs: this.wallNs.toString(), logical: this.logical, nodeId: this.nodeId };
  }

  static fromJSON(json: unknown): HlcTimestamp {
    const record = json as Partial<HlcTimestampJson> | null;
    if (
      record === null ||
      typeof record !== 'object' ||
      typeof record.wallNs !== 'string' ||
      !/^\d{1,20}$/.test(record.wallNs)
    ) {
      throw new TidelogError('DECODE_FAILED', 'hlc timestamp JSON needs a decimal wallNs string');
    }
    try {
      return new HlcTimestamp(BigInt(record.wallNs), record.logical as number, record.nodeId as number);
    } catch (cause) {
      throw new TidelogError('DECODE_FAILED', 'hlc timestamp JSON is out of range', { cause });
    }
  }

  toString(): string {
    return `${this.wallNs}.${this.logical}@${this.nodeId}`;
  }
}

/** The comparison on unpacked parts, for hot paths that keep timestamps as fields. */
export function compareHlcParts(
  wallA: bigint,
  logicalA: number,
  nodeA: number,
  wallB: bigint,
  logicalB: number,
  nodeB: number,
): number {
  if (wallA !== wallB) return wallA < wallB ? -1 : 1;
  if (logicalA !== logicalB) return logicalA - logicalB;
  return nodeA - nodeB;
}

/**
 * Writes the 16-byte form from unpacked parts. Byte by byte on purpose: a DataView over a small
 * typed array forces V8 to move its buffer off-heap, which costs more than the write.
 */
export function writeHlcParts(
  bytes: Uint8Array,
  offset: number,
  wallHi: number,
  wallLo: number,
  logical: number,
  nodeId: number,
): void {
  writeU32BigEndian(bytes, offset, wallHi);
  writeU32BigEndian(bytes, offset + 4, wallLo);
  writeU32BigEndian(bytes, offset + 8, logical);
  writeU32BigEndian(bytes, offset + 12, nodeId);
}

function writeU32BigEndian(bytes: Uint8Array, offset: number, value: number): void {
  bytes[offset] = value >>> 24;
  bytes[offset + 1] = (value >>> 16) & 0xff;
  bytes[offset + 2] = (value >>> 8) & 0xff;
  bytes[offset + 3] = value & 0xff;
}

export function readU32BigEndian(bytes: Uint8Array, offset: number): number {
  return ((bytes[offset] << 24) | (bytes[offset + 1] << 16) | (bytes[offset + 2] << 8) | bytes[offset + 3]) >>> 0;
}

let isExtensionRegistered = false;

/**
 * Teaches msgpackr (process-wide) to carry HlcTimestamp instances as ext 0x48. Idempotent. It is
 * opt-in rather than an import side effect because msgpackr's extension table is global.
 */
export function registerHlcExtension(): void {
  if (isExtensionRegistered) return;
  isExtensionRegistered = true;
  addExtension({
    Class: HlcTimestamp,
    type: HLC_MSGPACK_EXTENSION_TYPE,
    pack: (timestamp: HlcTimestamp) => timestamp.toBytes(),
    unpack: (bytes: Uint8Array) => HlcTimestamp.fromBytes(bytes),
  });
}

function checkU32(value: number, what: string): void {
  if (!Number.isInteger(value) || value < 0 || value > U32_MAX) {
    throw new TidelogError('BAD_REQUEST', `${what} must be a u32, got ${String(value)}`);
  }
}
