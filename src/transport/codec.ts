// The wire codec: every message of messages.ts to and from msgpack bytes (docs/PROTOCOL.md).
// Invariant: a decoder returns a message whose every field has its documented type and range,
// or throws a TidelogError with a stable code; it never trusts its input and never copies the
// event bytes (they come back as a view of the input).
//
// Encoding writes plain msgpack maps: no msgpackr records or extensions, so any language's
// msgpack library reads them. msgpackr writes a JS number above u32 as float64, so integers
// beyond i32/u32 go out as bigints (msgpack int 64 / uint 64) and stay integers on the wire;
// bigints below 2^32 go out as small integers.
// Decoding reads 64-bit integers within ±2^53 as numbers and beyond as bigints
// (int64AsType 'auto'), so seqs decode as numbers and u64 fields accept either.
//
// Faults, in the order they are checked:
//   request larger than maxRequestBytes              REQUEST_TOO_LARGE (before decoding)
//   not msgpack, trailing bytes, not a map            DECODE_FAILED
//   `v` missing or not an integer                     DECODE_FAILED
//   `v` ≠ 1                                           UNSUPPORTED_VERSION
//   `t` missing, not a string, not the expected type  DECODE_FAILED
//   a field missing or of the wrong msgpack type      DECODE_FAILED
//   a field of the right type with a bad value        BAD_REQUEST (requests) / DECODE_FAILED
//   more events than maxRequestEvents                 REQUEST_TOO_LARGE
// Unknown fields are ignored (forward compatibility); nil counts as absent for optional fields.

import { Packr, Unpackr, addExtension } from 'msgpackr';
import { ErrorCodes, TidelogError, invariant, isTidelogError, type ErrorCode } from '../errors.ts';
import { EVENT_BYTES, checkPackedLength, validatePacked } from '../event.ts';
import { checkRuns, decodeRoute, eventsPerPart } from './ack-runs.ts';
import {
  DEFAULT_MAX_REQUEST_BYTES,
  DEFAULT_MAX_REQUEST_EVENTS,
  MAX_PRODUCER_ID_BYTES,
  PROTOCOL_VERSION,
  isValidNamespace,
  type AckPart,
  type AppendReply,
  type AppendRequest,
  type ErrorReply,
  type FeedMessage,
  type InfoReply,
  type Message,
  type ReadBatch,
  type ReadReply,
  type Reply,
  type Request,
  type RouterSpec,
  type SessionTag,
  type ShardStatus,
  type SignalStateView,
  type StateReply,
  type StateRequest,
  type StatusReply,
} from './messages.ts';

export { acksInEventOrder, checkRuns, decodeRoute, routeOf, runsToSeqs, seqsToRuns } from './ack-runs.ts';

export interface DecodeLimits {
  /** Most events one request may carry (append) or ask for (read maxEvents). */
  maxRequestEvents?: number;
  /** Most bytes one encoded request may have; checked before decoding. */
  maxRequestBytes?: number;
}

export type RequestOf<T extends Request['t']> = Extract<Request, { t: T }>;
export type ReplyType = Exclude<Reply['t'], 'error'>;
export type ReplyOf<T extends ReplyType> = Extract<Reply, { t: T }>;

const U16_MAX = 0xffff;
const U32_MAX = 0xffff_ffff;
const U64_MAX = 0xffff_ffff_ffff_ffffn;
const U53_MAX = Number.MAX_SAFE_INTEGER;
const ENTITY_ID_PATTERN = /^(0|[1-9][0-9]{0,19})$/;
/** With the u flag a paired surrogate is one code point, so only a lone half matches. */
const NOT_UTF8 = /[\uD800-\uDFFF\uFFFD]/u;
const MAX_SIGNAL_TYPES = 256;
const MAX_DETAIL_KEYS = 32;
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

// ---------------------------------------------------------------------------------------
// Encoding

/** Any message of messages.ts → msgpack bytes. The result shares memory with later ones: never change it. */
export function encodeMessage(message: Message): Uint8Array {
  return packr.pack(toWire(message, 'message'));
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

/**
 * The ErrorReply a node sends for `error`. A TidelogError keeps its code, message and
 * context (flattened to wire-safe values). Anything else is a node fault the client cannot
 * fix or judge: it goes out as IO_ERROR ("failed inside the node; may or may not have been
 * applied"), the closest code errors.ts has, with the error's name in details.
 */
export function errorReply(error: unknown): ErrorReply {
  if (isTidelogError(error)) {
    const prefix = `${error.code}: `;
    const message = error.message.startsWith(prefix) ? error.message.slice(prefix.length) : error.message;
    const reply: ErrorReply = { v: PROTOCOL_VERSION, t: 'error', code: error.code, message: clip(message) };
    const keys = Object.keys(error.context).slice(0, MAX_DETAIL_KEYS);
    if (keys.length > 0) reply.details = Object.fromEntries(keys.map((key) => [key, wireDetail(error.context[key])]));
    return reply;
  }
  const name = error instanceof Error ? error.name : describe(error);
  const message = error instanceof Error ? error.message : String(error);
  return { v: PROTOCOL_VERSION, t: 'error', code: 'IO_ERROR', message: clip(`internal error: ${message}`), details: { error: name } };
}

/** A context value as something every decoder can read: scalars, short scalar lists, else text. */
function wireDetail(value: unknown): unknown {
  if (typeof value === 'string') return clip(value);
  if (typeof value === 'boolean' || value === null) return value;
  if (typeof value === 'number') return Number.isFinite(value) ? value : String(value);
  if (typeof value === 'bigint') return value >= -(1n << 63n) && value <= U64_MAX ? value : value.toString();
  if (Array.isArray(value) && value.length <= 64 && value.every((item) => typeof item !== 'object' || item === null)) {
    return value.map(wireDetail);
  }
  return clip(String(value));
}

function clip(text: string): string {
  return text.length <= MAX_DETAIL_STRING ? text : `${text.slice(0, MAX_DETAIL_STRING - 1)}…`;
}

// ---------------------------------------------------------------------------------------
// Decoding: requests (bad values are the sender's fault: BAD_REQUEST)

/** Bytes a node received → the request of `expectedType`, validated; throws TidelogError. */
export function decodeRequest<T extends Request['t']>(bytes: Uint8Array, expectedType: T, limits: DecodeLimits = {}): RequestOf<T> {
  const maxRequestBytes = limits.maxRequestBytes ?? DEFAULT_MAX_REQUEST_BYTES;
  const maxRequestEvents = limits.maxRequestEvents ?? DEFAULT_MAX_REQUEST_EVENTS;
  if (bytes instanceof Uint8Array && bytes.byteLength > maxRequestBytes) {
    throw new TidelogError('REQUEST_TOO_LARGE', `request has ${bytes.byteLength} bytes, limit ${maxRequestBytes}`, {
      details: { byteLength: bytes.byteLength, maxRequestBytes },
    });
  }
  const root = openMessage(bytes, expectedType, 'BAD_REQUEST');
  const read = requestReaders[expectedType];
  invariant(read !== undefined, `decodeRequest: unknown request type ${expectedType}`);
  return read(root, maxRequestEvents) as RequestOf<T>;
}

const requestReaders: { [T in Request['t']]: (root: Fields, maxRequestEvents: number) => RequestOf<T> } = {
  append(root, maxRequestEvents) {
    const request: AppendRequest = { v: PROTOCOL_VERSION, t: 'append', events: requestEvents(root, maxRequestEvents) };
    if (root.has('shard')) request.shard = root.integer('shard', 0, U16_MAX);
    if (root.has('session')) request.session = sessionTag(root.map('session'));
    return request;
  },
  read: (root, maxRequestEvents) => ({
    v: PROTOCOL_VERSION,
    t: 'read',
    shard: root.integer('shard', 0, U16_MAX),
    fromSeq: root.integer('fromSeq', 1, U53_MAX),
    maxEvents: root.integer('maxEvents', 1, maxRequestEvents),
  }),
  seek: (root) => ({ v: PROTOCOL_VERSION, t: 'seek', shard: root.integer('shard', 0, U16_MAX), timestampNs: root.u64('timestampNs') }),
  state(root) {
    const request: StateRequest = { v: PROTOCOL_VERSION, t: 'state', entityId: root.entityId('entityId') };
    if (root.has('signalTypes')) {
      request.signalTypes = root.array('signalTypes', MAX_SIGNAL_TYPES).map((item, index) => root.at('signalTypes', index, item).integer(0, 255));
    }
    return request;
  },
  info: () => ({ v: PROTOCOL_VERSION, t: 'info' }),
  status: () => ({ v: PROTOCOL_VERSION, t: 'status' }),
};

/** The append path's only per-event work: validatePacked (finite weights). */
function requestEvents(root: Fields, maxRequestEvents: number): Uint8Array {
  const events = root.get('events');
  if (!root.isBin(events)) throw new TidelogError('BAD_REQUEST', 'events must be a msgpack bin of packed events', { details: { field: 'events' } });
  const count = checkPackedLength(events);
  if (count > maxRequestEvents) {
    throw new TidelogError('REQUEST_TOO_LARGE', `request has ${count} events, limit ${maxRequestEvents}`, {
      details: { events: count, maxRequestEvents },
    });
  }
  validatePacked(events);
  return events;
}

function sessionTag(session: Fields): SessionTag {
  const producerId = session.string('producerId');
  const producerIdBytes = Buffer.byteLength(producerId, 'utf8');
  if (producerIdBytes < 1 || producerIdBytes > MAX_PRODUCER_ID_BYTES) {
    throw session.valueFault('producerId', `must be 1..${MAX_PRODUCER_ID_BYTES} bytes of UTF-8, got ${producerIdBytes}`);
  }
  // msgpackr turns invalid UTF-8 into U+FFFD, so two different malformed ids would become
  // one producer: refuse the replacement character (and lone surrogates, which have no UTF-8).
  if (NOT_UTF8.test(producerId)) throw session.valueFault('producerId', 'must be well-formed UTF-8 without U+FFFD');
  return {
    producerId,
    // A u32: nodes note the epoch in 4 bytes of the WAL (src/node/session-note.ts).
    sessionEpoch: session.integer('sessionEpoch', 1, U32_MAX),
    requestSeq: session.integer('requestSeq', 1, U53_MAX),
  };
}

// ---------------------------------------------------------------------------------------
// Decoding: replies and the feed (a bad value is the node's fault, not the caller's: DECODE_FAILED)

/**
 * Bytes a client received → the reply of `expectedType`, validated. An ErrorReply is thrown
 * as TidelogError(reply.code, reply.message, { details: reply.details }); a code this client
 * does not know is thrown as DECODE_FAILED with `remoteCode` in its context.
 */
export function decodeReply<T extends ReplyType>(bytes: Uint8Array, expectedType: T): ReplyOf<T> {
  const root = openMessage(bytes, expectedType, 'DECODE_FAILED', 'error');
  if (root.get('t') === 'error') throw remoteError(root);
  const read = replyReaders[expectedType];
  invariant(read !== undefined, `decodeReply: unknown reply type ${expectedType}`);
  return read(root) as ReplyOf<T>;
}

/** Bytes published on `{ns}.shard.{n}.feed` → the FeedMessage, validated. */
export function decodeFeed(bytes: Uint8Array): FeedMessage {
  const root = openMessage(bytes, 'feed', 'DECODE_FAILED');
  return {
    v: PROTOCOL_VERSION,
    t: 'feed',
    shard: root.integer('shard', 0, U16_MAX),
    ...seqBatch(root),
    hwm: root.integer('hwm', 0, U53_MAX),
  };
}

function remoteError(root: Fields): TidelogError {
  const code = root.string('code');
  const message = root.string('message');
  const details = root.has('details') ? root.map('details').record : {};
  if ((ErrorCodes as readonly string[]).includes(code)) return new TidelogError(code as ErrorCode, message, { details: { ...details } });
  return new TidelogError('DECODE_FAILED', `node answered with unknown error code ${code}: ${message}`, {
    details: { ...details, remoteCode: code, remoteMessage: message },
  });
}

const replyReaders: { [T in ReplyType]: (root: Fields) => ReplyOf<T> } = {
  appended(root) {
    const parts = root.array('parts').map((item, index): AckPart => {
      const part = root.at('parts', index, item).asMap();
      return { shard: part.integer('shard', 0, U16_MAX), epoch: part.integer('epoch', 0, U53_MAX), runs: part.array('runs') as number[] };
    });
    const counts = parts.map((part) => checkRuns(part.runs));
    const reply: AppendReply = { v: PROTOCOL_VERSION, t: 'appended', parts, outcome: root.oneOf('outcome', ['new', 'replayed', 'applied']) };
    if (root.has('route')) {
      reply.route = root.bin('route');
      const routed = eventsPerPart(decodeRoute(reply.route, parts.length), parts.length);
      const index = routed.findIndex((count, part) => count !== counts[part]);
      if (index >= 0) throw root.valueFault(`parts[${index}].runs`, `cover ${counts[index]} events, the route ${routed[index]}`);
    } else if (parts.length > 1) {
      throw root.valueFault('route', `is required with ${parts.length} parts`);
    }
    return reply;
  },
  batches(root) {
    let nextSeq = 1;
    const batches = root.array('batches').map((item, index): ReadBatch => {
      const batch = seqBatch(root.at('batches', index, item).asMap());
      if (batch.firstSeq < nextSeq) throw root.valueFault(`batches[${index}].firstSeq`, 'overlaps the batch before it');
      nextSeq = batch.firstSeq + batch.events.byteLength / EVENT_BYTES;
      return batch;
    });
    return {
      v: PROTOCOL_VERSION,
      t: 'batches',
      shard: root.integer('shard', 0, U16_MAX),
      batches,
      hwm: root.integer('hwm', 0, U53_MAX),
      firstSeq: root.integer('firstSeq', 0, U53_MAX),
    } satisfies ReadReply;
  },
  sought: (root) => ({ v: PROTOCOL_VERSION, t: 'sought', shard: root.integer('shard', 0, U16_MAX), seq: root.integer('seq', 1, U53_MAX) }),
  entity: (root) =>
    ({
      v: PROTOCOL_VERSION,
      t: 'entity',
      entityId: root.entityId('entityId'),
      shard: root.integer('shard', 0, U16_MAX),
      appliedSeq: root.integer('appliedSeq', 0, U53_MAX),
      signals: root.array('signals').map((item, index) => signalView(root.at('signals', index, item).asMap())),
    }) satisfies StateReply,
  info: (root) =>
    ({
      v: PROTOCOL_VERSION,
      t: 'info',
      namespace: root.namespace('namespace'),
      router: routerSpec(root.map('router')),
      shards: root.array('shards').map((item, index) => root.at('shards', index, item).integer(0, U16_MAX)),
      maxRequestEvents: root.integer('maxRequestEvents', 1, U53_MAX),
      maxRequestBytes: root.integer('maxRequestBytes', 1, U53_MAX),
    }) satisfies InfoReply,
  status: (root) =>
    ({
      v: PROTOCOL_VERSION,
      t: 'status',
      nodeId: root.string('nodeId'),
      uptimeMs: root.finite('uptimeMs', 0),
      state: root.string('state'),
      sessions: root.integer('sessions', 0, U53_MAX),
      shards: root.array('shards').map((item, index) => shardStatus(root.at('shards', index, item).asMap())),
    }) satisfies StatusReply,
};

/** firstSeq, epoch, timestampNs and events of a feed message or read batch. */
function seqBatch(fields: Fields): ReadBatch {
  const firstSeq = fields.integer('firstSeq', 1, U53_MAX);
  const timestampNs = fields.u64('timestampNs');
  const events = fields.bin('events');
  if (events.byteLength % EVENT_BYTES !== 0) throw fields.valueFault('events', `must be n × ${EVENT_BYTES} bytes, got ${events.byteLength}`);
  const count = events.byteLength / EVENT_BYTES;
  if (count > 0 && firstSeq > U53_MAX - (count - 1)) throw fields.valueFault('events', 'pass the largest u53 seq');
  return { firstSeq, epoch: fields.integer('epoch', 0, U53_MAX), timestampNs, events };
}

function signalView(fields: Fields): SignalStateView {
  return {
    signalType: fields.integer('signalType', 0, 255),
    name: fields.string('name'),
    score: fields.finite('score'),
    count: fields.integer('count', 0, U53_MAX),
    total: fields.finite('total'),
    isHidden: fields.boolean('isHidden'),
    lastUpdateNs: fields.u64('lastUpdateNs'),
  };
}

function shardStatus(fields: Fields): ShardStatus {
  const count = (name: string) => fields.integer(name, 0, U53_MAX);
  return {
    shard: fields.integer('shard', 0, U16_MAX),
    role: fields.oneOf('role', ['leader', 'follower']),
    epoch: count('epoch'),
    lastSeq: count('lastSeq'),
    hwm: count('hwm'),
    checkpointSeq: count('checkpointSeq'),
    pendingEvents: count('pendingEvents'),
    segments: count('segments'),
    appliedSeq: count('appliedSeq'),
    entities: count('entities'),
  };
}

function routerSpec(fields: Fields): RouterSpec {
  const strategy = fields.oneOf('strategy', ['single', 'hash', 'range']);
  if (strategy === 'single') return { strategy };
  if (strategy === 'hash') return { strategy, shards: fields.integer('shards', 1, U16_MAX + 1) };
  const ranges = fields.array('ranges').map((item, index) => {
    const range = fields.at('ranges', index, item).asMap();
    const from = range.entityId('from');
    const to = range.entityId('to');
    if (BigInt(from) > BigInt(to)) throw range.valueFault('from', 'must not be above to');
    return { shard: range.integer('shard', 0, U16_MAX), from, to };
  });
  return { strategy, ranges };
}

// ---------------------------------------------------------------------------------------
// Reading fields off decoded maps

type ValueFaultCode = 'BAD_REQUEST' | 'DECODE_FAILED';

/** Unpacks one message and checks `v` and `t`; returns its fields. */
function openMessage(bytes: Uint8Array, expectedType: string, valueFaultCode: ValueFaultCode, alsoAllowedType?: string): Fields {
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
class Fields {
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

function describe(value: unknown): string {
  if (value === null) return 'nil';
  if (Array.isArray(value)) return 'an array';
  if (value instanceof Uint8Array) return 'a bin';
  if (typeof value === 'object') return `a ${value.constructor?.name ?? 'object'}`;
  return `a ${typeof value}`;
}
