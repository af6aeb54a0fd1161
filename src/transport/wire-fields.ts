// Low-level wire handling under codec.ts: msgpackr setup, JS values to wire values, typed field reads.
// Invariant: a field read returns a value of the asked type and range or throws a TidelogError
// (DECODE_FAILED for a missing field or wrong msgpack type, the message's value-fault code for
// a bad value); a bin is always a view of the input, never a copy or an extension posing as one.
//
// Encoding writes plain msgpack maps: no msgpackr records or extensions, so any language's
// msgpack library reads them. msgpackr writes a JS number above u32 as float64, so integers
// beyond i32/u32 go out as bigints (msgpack int 64 / uint 64) and stay integers on the wire;
// bigints below 2^32 go out as small integers.
// Decoding reads 64-bit integers within ±2^53 as numbers and beyond as bigints
// (int64AsType 'auto'), so seqs decode as numbers and u64 fields accept either.

import { Packr, Unpackr, addExtension } from 'msgpackr';
import { TidelogError } from '../errors.ts';
import { PROTOCOL_VERSION, isValidNamespace } from './messages.ts';

export const U16_MAX = 0xffff;
export const U32_MAX = 0xffff_ffff;
export const U64_MAX = 0xffff_ffff_ffff_ffffn;
export const U53_MAX = Number.MAX_SAFE_INTEGER;
const ENTITY_ID_PATTERN = /^(0|[1-9][0-9]{0,19})$/;
/** Longest text an error's message or details carry; longer text is clipped. */
const MAX_DETAIL_STRING = 1024;

const packr = new Packr({ useRecords: false, variableMapSize: true });
const unpackr = new Unpackr({
  useRecords: false,
  mapsAsObjects: true,
  structuredClone: false,
  copyBuffers: false,
  // msgpackr 2.1 implements 'auto' (±2^53 → number, else bigint); its .d.ts lists it not.
  int64AsType: 'auto' as 'bigint',
});

// msgpackr decodes its bigint extension (ext 0x42, for integers beyond 64 bits) in time
// that grows faster than its length: one 4 MiB request held the event loop for 13 s. The
// table is process-wide, so this narrows it for every msgpackr user here: the same values up
// to 512 bits (tidelog writes none), anything longer is a decode error, not a stall.
const MAX_BIGINT_EXTENSION_BYTES = 64;
addExtension({
  type: 0x42,
  unpack(data: Uint8Array): bigint {
    if (data.byteLength === 0 || data.byteLength > MAX_BIGINT_EXTENSION_BYTES) {
      throw new Error(`bigint extension of ${data.byteLength} bytes refused`);
    }
    // Big-endian two's complement, as msgpackr writes it.
    let value = 0n;
    for (const byte of data) value = (value << 8n) | BigInt(byte);
    return (data[0] & 0x80) === 0 ? value : value - (1n << BigInt(8 * data.byteLength));
  },
});

/** `value` (a message) as msgpack bytes. The result shares memory with later ones: never change it. */
export function packWire(value: unknown, path: string): Uint8Array {
  return packr.pack(toWire(value, path));
}

/** The message as msgpackr must see it: no undefined, integers that stay integers. */
function toWire(value: unknown, path: string): unknown {
  switch (typeof value) {
    case 'number':
      if (!Number.isFinite(value)) throw new TidelogError('BAD_REQUEST', `${path}: ${value} cannot go on the wire`, { details: { field: path } });
      if (!Number.isSafeInteger(value) || (value >= -0x8000_0000 && value <= 0xffff_ffff)) return value;
      return BigInt(value);
    case 'bigint':
      if (value >= 0n && value <= 0xffff_ffffn) return Number(value);
      if (value < -(1n << 63n) || value > U64_MAX) {
        throw new TidelogError('BAD_REQUEST', `${path}: ${value} does not fit in 64 bits`, { details: { field: path } });
      }
      return value;
    case 'string':
    case 'boolean':
      return value;
    case 'object':
      if (value === null || value instanceof Uint8Array) return value;
      if (Array.isArray(value)) return value.map((item, index) => toWire(item, `${path}[${index}]`));
      if (isPlainObject(value)) {
        const wire: Record<string, unknown> = {};
        for (const [key, item] of Object.entries(value)) if (item !== undefined) wire[key] = toWire(item, `${path}.${key}`);
        return wire;
      }
  }
  throw new TidelogError('BAD_REQUEST', `${path}: a ${describe(value)} cannot go on the wire`, { details: { field: path } });
}

export function clip(text: string): string {
  return text.length <= MAX_DETAIL_STRING ? text : `${text.slice(0, MAX_DETAIL_STRING - 1)}…`;
}

// ---------------------------------------------------------------------------------------
// Reading fields off decoded maps

export type ValueFaultCode = 'BAD_REQUEST' | 'DECODE_FAILED';

/** Unpacks one message and checks `v` and `t`; returns its fields. */
export function openMessage(bytes: Uint8Array, expectedType: string, valueFaultCode: ValueFaultCode, alsoAllowedType?: string): Fields {
  if (!(bytes instanceof Uint8Array)) throw new TidelogError('DECODE_FAILED', `a message must be bytes, got ${describe(bytes)}`);
  let value: unknown;
  let end = -1;
  try {
    // unpackMultiple stopped after the first value, not unpack: on trailing bytes unpack
    // JSON-stringifies the whole value for its message (~0.8 s for a 4 MiB bin).
    unpackr.unpackMultiple(bytes, (first: unknown, _start?: number, firstEnd?: number) => {
      value = first;
      end = firstEnd ?? -1;
      return false;
    });
  } catch (cause) {
    throw new TidelogError('DECODE_FAILED', 'not a msgpack value', { cause, details: { byteLength: bytes.byteLength } });
  }
  if (end !== bytes.byteLength) throw new TidelogError('DECODE_FAILED', 'bytes follow the message', { details: { end, byteLength: bytes.byteLength } });
  if (!isMap(value)) throw new TidelogError('DECODE_FAILED', `a message must be a msgpack map, got ${describe(value)}`);
  const root = new Fields(value, '', valueFaultCode, bytes.buffer);
  const version = root.get('v');
  if (typeof version !== 'number' && typeof version !== 'bigint') throw root.typeFault('v', 'an integer', version);
  if (version !== PROTOCOL_VERSION) {
    throw new TidelogError('UNSUPPORTED_VERSION', `protocol version ${version} is not spoken here`, {
      details: { version: typeof version === 'bigint' ? version.toString() : version, supportedVersions: [PROTOCOL_VERSION] },
    });
  }
  const type = root.string('t');
  if (type !== expectedType && type !== alsoAllowedType) {
    throw new TidelogError('DECODE_FAILED', `expected a '${expectedType}' message, got '${clip(type)}'`, {
      details: { expected: expectedType, type: clip(type) },
    });
  }
  return root;
}

/** The typed fields of one decoded map; `path` names the map in error details ("parts[2]"). */
export class Fields {
  constructor(
    readonly record: Record<string, unknown>,
    private readonly path: string,
    private readonly valueFaultCode: ValueFaultCode,
    /** The input's buffer: a bin is a view of it, anything else is an extension posing as one. */
    private readonly source: ArrayBufferLike,
  ) {}

  has(name: string): boolean {
    const value = this.record[name];
    return value !== undefined && value !== null;
  }

  get(name: string): unknown {
    const value = this.record[name];
    if (value === undefined || value === null) {
      throw new TidelogError('DECODE_FAILED', `${this.field(name)} is missing`, { details: { field: this.field(name) } });
    }
    return value;
  }

  /** An integer in min..max; a number or an int 64 beyond ±2^53 (then it is out of range). */
  integer(name: string, min: number, max: number): number {
    return this.checkInteger(name, this.get(name), min, max);
  }

  /** A u64: a number ≤ 2^53 (exact as msgpackr decodes it) or a bigint; handed out as bigint. */
  u64(name: string): bigint {
    const value = this.get(name);
    if (typeof value === 'bigint') {
      if (value < 0n || value > U64_MAX) throw this.valueFault(name, 'must be a u64');
      return value;
    }
    if (typeof value !== 'number') throw this.typeFault(name, 'an integer', value);
    if (!Number.isInteger(value) || value < 0 || value > 2 ** 53) throw this.valueFault(name, `must be a u64, got ${value}`);
    return BigInt(value);
  }

  finite(name: string, min = -Infinity): number {
    const value = this.get(name);
    if (typeof value === 'bigint') return this.checkFinite(name, Number(value), min);
    if (typeof value !== 'number') throw this.typeFault(name, 'a number', value);
    return this.checkFinite(name, value, min);
  }

  string(name: string): string {
    const value = this.get(name);
    if (typeof value !== 'string') throw this.typeFault(name, 'a string', value);
    return value;
  }

  boolean(name: string): boolean {
    const value = this.get(name);
    if (typeof value !== 'boolean') throw this.typeFault(name, 'a boolean', value);
    return value;
  }

  bin(name: string): Uint8Array {
    const value = this.get(name);
    if (!this.isBin(value)) throw this.typeFault(name, 'a bin', value);
    return value;
  }

  isBin(value: unknown): value is Uint8Array {
    return value instanceof Uint8Array && value.buffer === this.source;
  }

  array(name: string, maxLength = Infinity): unknown[] {
    const value = this.get(name);
    if (!Array.isArray(value)) throw this.typeFault(name, 'an array', value);
    if (value.length > maxLength) throw this.valueFault(name, `has ${value.length} items, limit ${maxLength}`);
    return value;
  }

  map(name: string): Fields {
    return this.wrap(name, this.get(name));
  }

  oneOf<T extends string>(name: string, allowed: readonly T[]): T {
    const value = this.string(name);
    if (!(allowed as readonly string[]).includes(value)) throw this.valueFault(name, `must be one of ${allowed.join(', ')}`);
    return value as T;
  }

  /** A u64 as canonical decimal text (no sign, no leading zeros). */
  entityId(name: string): string {
    const value = this.string(name);
    if (!ENTITY_ID_PATTERN.test(value) || BigInt(value) > U64_MAX) throw this.valueFault(name, 'must be a u64 in decimal');
    return value;
  }

  namespace(name: string): string {
    const value = this.string(name);
    if (!isValidNamespace(value)) throw this.valueFault(name, 'must be 1..64 of A-Z a-z 0-9 _ -');
    return value;
  }

  /** Item `index` of array `name`, to read as a map or a scalar. */
  at(name: string, index: number, item: unknown): Item {
    return new Item(this, `${name}[${index}]`, item);
  }

  checkInteger(name: string, value: unknown, min: number, max: number): number {
    if (typeof value === 'number') {
      if (Number.isSafeInteger(value) && value >= min && value <= max) return value;
    } else if (typeof value !== 'bigint') {
      throw this.typeFault(name, 'an integer', value);
    }
    throw this.valueFault(name, `must be an integer in ${min}..${max}, got ${value}`);
  }

  wrap(name: string, value: unknown): Fields {
    if (!isMap(value)) throw this.typeFault(name, 'a map', value);
    return new Fields(value, this.field(name), this.valueFaultCode, this.source);
  }

  typeFault(name: string, expected: string, value: unknown): TidelogError {
    return new TidelogError('DECODE_FAILED', `${this.field(name)} must be ${expected}, got ${describe(value)}`, {
      details: { field: this.field(name) },
    });
  }

  valueFault(name: string, what: string): TidelogError {
    return new TidelogError(this.valueFaultCode, `${this.field(name)} ${what}`, { details: { field: this.field(name) } });
  }

  private checkFinite(name: string, value: number, min: number): number {
    if (!Number.isFinite(value) || value < min) throw this.valueFault(name, `must be a finite number ≥ ${min}`);
    return value;
  }

  private field(name: string): string {
    return this.path === '' ? name : `${this.path}.${name}`;
  }
}

/** One array item: read as a map or checked as an integer, with its index in errors. */
class Item {
  constructor(
    private readonly parent: Fields,
    private readonly name: string,
    private readonly value: unknown,
  ) {}

  asMap(): Fields {
    return this.parent.wrap(this.name, this.value);
  }

  integer(min: number, max: number): number {
    return this.parent.checkInteger(this.name, this.value, min, max);
  }
}

/** A plain object (with or without a prototype): what msgpack maps decode to. */
function isMap(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && isPlainObject(value);
}

function isPlainObject(value: object): boolean {
  const prototype: unknown = Object.getPrototypeOf(value);
  return prototype === Object.prototype || prototype === null;
}

export function describe(value: unknown): string {
  if (value === null) return 'nil';
  if (Array.isArray(value)) return 'an array';
  if (value instanceof Uint8Array) return 'a bin';
  if (typeof value === 'object') return `a ${value.constructor?.name ?? 'object'}`;
  return `a ${typeof value}`;
}
