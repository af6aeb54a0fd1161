// The wire codec: every message of messages.ts to and from msgpack bytes (docs/PROTOCOL.md).
// Invariant: a decoder returns a message whose every field has its documented type and range,
// or throws a TidelogError with a stable code; it never trusts its input and never copies the
// event bytes (they come back as a view of the input).
// The msgpackr setup, integer handling and typed field reads live in wire-fields.ts.
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

import { ErrorCodes, TidelogError, invariant, isTidelogError, type ErrorCode } from '../errors.ts';
import { EVENT_BYTES, checkPackedLength, validatePacked } from '../event.ts';
import { checkRuns, decodeRoute, eventsPerPart } from './ack-runs.ts';
import {
  isValidConsumerName,
  DEFAULT_MAX_REQUEST_BYTES,
  DEFAULT_MAX_REQUEST_EVENTS,
  MAX_PRODUCER_ID_BYTES,
  PROTOCOL_VERSION,
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
import { Fields, U16_MAX, U32_MAX, U53_MAX, U64_MAX, clip, describe, openMessage, packWire } from './wire-fields.ts';

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

/** With the u flag a paired surrogate is one code point, so only a lone half matches. */
const NOT_UTF8 = /[\uD800-\uDFFF\uFFFD]/u;
const MAX_SIGNAL_TYPES = 256;
const MAX_DETAIL_KEYS = 32;

// ---------------------------------------------------------------------------------------
// Encoding

/** Any message of messages.ts → msgpack bytes. The result shares memory with later ones: never change it. */
export function encodeMessage(message: Message): Uint8Array {
  return packWire(message, 'message');
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
    // An upper bound, not a demand: a node whose maxRequestEvents is lower (a rolling restart
    // lowered it since the client asked {ns}.info) serves fewer, and the client reads on.
    maxEvents: Math.min(root.integer('maxEvents', 1, U53_MAX), maxRequestEvents),
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
  tail: (root) => ({ v: PROTOCOL_VERSION, t: 'tail', shard: root.integer('shard', 0, U16_MAX) }),
  commit: (root) => ({ v: PROTOCOL_VERSION, t: 'commit', consumer: consumerName(root), shard: root.integer('shard', 0, U16_MAX), seq: root.integer('seq', 0, U53_MAX) }),
  position: (root) => ({ v: PROTOCOL_VERSION, t: 'position', consumer: consumerName(root), shard: root.integer('shard', 0, U16_MAX) }),
};

/** A durable consumer's name: a token of a subject and a KV key alike. */
function consumerName(root: Fields): string {
  const name = root.string('consumer');
  if (!isValidConsumerName(name)) throw root.valueFault('consumer', 'must be 1..64 of A-Z a-z 0-9 _ -');
  return name;
}

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

export function remoteError(root: Fields): TidelogError {
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
  committed: (root) => ({ v: PROTOCOL_VERSION, t: 'committed', consumer: consumerName(root), shard: root.integer('shard', 0, U16_MAX), seq: root.integer('seq', 0, U53_MAX) }),
  positioned: (root) => ({ v: PROTOCOL_VERSION, t: 'positioned', consumer: consumerName(root), shard: root.integer('shard', 0, U16_MAX), seq: root.integer('seq', 0, U53_MAX) }),
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
      ...(root.has('pid') ? { pid: root.integer('pid', 0, U53_MAX) } : {}),
      uptimeMs: root.finite('uptimeMs', 0),
      state: root.string('state'),
      sessions: root.integer('sessions', 0, U53_MAX),
      shards: root.array('shards').map((item, index) => shardStatus(root.at('shards', index, item).asMap())),
      ...(root.has('consumers')
        ? {
            consumers: root.array('consumers').map((item, index) => {
              const position = root.at('consumers', index, item).asMap();
              return { consumer: consumerName(position), shard: position.integer('shard', 0, U16_MAX), seq: position.integer('seq', 0, U53_MAX) };
            }),
          }
        : {}),
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
    ...optionalCounts(fields, ['firstSeq', 'logBytes', 'snapshotSeq', 'snapshotBytes', 'retentionMaxAgeMs', 'retentionMaxBytes', 'failureOffset']),
    ...(fields.has('failure') ? { failure: fields.string('failure') } : {}),
    ...(fields.has('failureMessage') ? { failureMessage: fields.string('failureMessage') } : {}),
    ...(fields.has('failureFile') ? { failureFile: fields.string('failureFile') } : {}),
    ...(fields.has('phase') ? { phase: fields.string('phase') } : {}),
    ...(fields.has('leader') ? { leader: fields.string('leader') } : {}),
    ...(fields.has('repairing') ? { repairing: fields.boolean('repairing') } : {}),
    ...(fields.has('orphanFiles') ? { orphanFiles: fields.integer('orphanFiles', 0, 1 << 30) } : {}),
    ...(fields.has('orphanBytesSent') ? { orphanBytesSent: fields.integer('orphanBytesSent', 0, Number.MAX_SAFE_INTEGER) } : {}),
    ...(fields.has('orphanEventsMerged') ? { orphanEventsMerged: fields.integer('orphanEventsMerged', 0, Number.MAX_SAFE_INTEGER) } : {}),
    ...(fields.has('followers')
      ? {
          followers: fields.array('followers', 16).map((item, index) => {
            const follower = fields.at('followers', index, item).asMap();
            return { nodeId: follower.string('nodeId'), matchSeq: follower.integer('matchSeq', 0, U53_MAX) };
          }),
        }
      : {}),
  };
}

/** The named non-negative integer fields that are present (newer nodes send more of them). */
function optionalCounts<Name extends string>(fields: Fields, names: readonly Name[]): Partial<Record<Name, number>> {
  const found: Partial<Record<Name, number>> = {};
  for (const name of names) if (fields.has(name)) found[name] = fields.integer(name, 0, U53_MAX);
  return found;
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
