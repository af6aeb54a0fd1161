import fc from 'fast-check';
import { Packr, unpack } from 'msgpackr';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ErrorCodes, TidelogError, isTidelogError } from '../../src/errors.ts';
import { encodeEvents, type SignalEvent } from '../../src/event.ts';
import { decodeFeed, decodeReply, decodeRequest, encodeMessage, errorReply, routeOf, seqsToRuns } from '../../src/transport/codec.ts';
import { DEFAULT_MAX_REQUEST_BYTES, DEFAULT_MAX_REQUEST_EVENTS, type AppendReply, type Message, type ReadBatch, type RouterSpec, type SessionTag } from '../../src/transport/messages.ts';
import { expectCode } from '../support/expect-code.ts';

const U64_MAX = (1n << 64n) - 1n;
const MAX_SEQ = Number.MAX_SAFE_INTEGER;

/** msgpack without the codec's care: for messages encodeMessage would refuse to write. */
const rawPackr = new Packr({ useRecords: false });
const raw = (value: unknown): Uint8Array => Uint8Array.from(rawPackr.pack(value));

/** A decoded copy on a plain Uint8Array, so bins compare equal to the Uint8Arrays we sent. */
const wire = (message: Message): Uint8Array => Uint8Array.from(encodeMessage(message));

// ---------------------------------------------------------------------------------------
// Arbitraries: one per message type, covering the edges of every range

const u16 = fc.integer({ min: 0, max: 0xffff });
const u53 = fc.oneof(fc.nat(1000), fc.maxSafeNat());
const positiveU53 = fc.oneof(fc.integer({ min: 1, max: 1000 }), fc.integer({ min: 1, max: MAX_SEQ }));
const u64 = fc.oneof(fc.bigInt({ min: 0n, max: 1000n }), fc.bigInt({ min: 0n, max: U64_MAX }));
const finite = fc.double({ noNaN: true, noDefaultInfinity: true });
const entityId = u64.map(String);
const signalEvent: fc.Arbitrary<SignalEvent> = fc.record({
  entityId: fc.bigInt({ min: 0n, max: U64_MAX }),
  signalType: fc.integer({ min: 0, max: 255 }),
  weight: fc.float({ noNaN: true, noDefaultInfinity: true }),
  timestampNs: fc.bigInt({ min: 0n, max: U64_MAX }),
});
const packed = fc.array(signalEvent, { maxLength: 6 }).map(encodeEvents);
const producerId = fc
  .string({ minLength: 1, maxLength: 64, unit: 'grapheme' })
  .filter((id) => Buffer.byteLength(id) >= 1 && Buffer.byteLength(id) <= 64);
const sessionTag: fc.Arbitrary<SessionTag> = fc.record({
  producerId,
  sessionEpoch: fc.oneof(fc.integer({ min: 1, max: 1000 }), fc.integer({ min: 1, max: 0xffff_ffff })),
  requestSeq: positiveU53,
});

const appendRequest = fc.record(
  { v: fc.constant(1 as const), t: fc.constant('append' as const), shard: u16, session: sessionTag, events: packed },
  { requiredKeys: ['v', 't', 'events'] },
);
const readRequest = fc.record({
  v: fc.constant(1 as const),
  t: fc.constant('read' as const),
  shard: u16,
  fromSeq: positiveU53,
  maxEvents: fc.integer({ min: 1, max: DEFAULT_MAX_REQUEST_EVENTS }),
});
const seekRequest = fc.record({ v: fc.constant(1 as const), t: fc.constant('seek' as const), shard: u16, timestampNs: u64 });
const stateRequest = fc.record(
  {
    v: fc.constant(1 as const),
    t: fc.constant('state' as const),
    entityId,
    signalTypes: fc.array(fc.integer({ min: 0, max: 255 }), { maxLength: 5 }),
  },
  { requiredKeys: ['v', 't', 'entityId'] },
);
const infoRequest = fc.constant({ v: 1 as const, t: 'info' as const });
const statusRequest = fc.constant({ v: 1 as const, t: 'status' as const });

/** Seqs of one part: increasing with gaps, zeros (duplicates) anywhere. */
const partSeqs = (length: number) =>
  fc
    .tuple(
      fc.integer({ min: 1, max: MAX_SEQ - 10 * length - 10 }),
      fc.array(fc.record({ isDuplicate: fc.boolean(), gap: fc.nat(3) }), { minLength: length, maxLength: length }),
    )
    .map(([start, steps]) => {
      let next = start;
      return steps.map(({ isDuplicate, gap }) => (isDuplicate ? 0 : ((next += gap + 1), next - 1)));
    });

const appendReply: fc.Arbitrary<AppendReply> = fc.integer({ min: 1, max: 4 }).chain((partCount) =>
  fc.array(fc.nat(partCount - 1), { maxLength: 30 }).chain((route) => {
    const counts = Array.from({ length: partCount }, (_, part) => route.filter((index) => index === part).length);
    return fc
      .record({
        parts: fc.tuple(...counts.map((count) => fc.record({ shard: u16, epoch: u53, runs: partSeqs(count).map(seqsToRuns) }))),
        outcome: fc.constantFrom('new' as const, 'replayed' as const, 'applied' as const),
        hasRoute: fc.boolean(),
      })
      .map(({ parts, outcome, hasRoute }) => {
        const reply: AppendReply = { v: 1, t: 'appended', parts, outcome };
        if (partCount > 1 || hasRoute) reply.route = routeOf(route);
        return reply;
      });
  }),
);

const readReply = fc
  .record({
    shard: u16,
    start: fc.integer({ min: 1, max: MAX_SEQ - 1000 }),
    steps: fc.array(fc.record({ gap: fc.nat(5), epoch: u53, timestampNs: u64, events: packed }), { maxLength: 4 }),
    hwm: u53,
    firstSeq: u53,
  })
  .map(({ shard, start, steps, hwm, firstSeq }) => {
    let next = start;
    const batches = steps.map(({ gap, epoch, timestampNs, events }): ReadBatch => {
      const batch = { firstSeq: next + gap, epoch, timestampNs, events };
      next = batch.firstSeq + events.byteLength / 21;
      return batch;
    });
    return { v: 1 as const, t: 'batches' as const, shard, batches, hwm, firstSeq };
  });
const seekReply = fc.record({ v: fc.constant(1 as const), t: fc.constant('sought' as const), shard: u16, seq: positiveU53 });
const stateReply = fc.record({
  v: fc.constant(1 as const),
  t: fc.constant('entity' as const),
  entityId,
  shard: u16,
  appliedSeq: u53,
  signals: fc.array(
    fc.record({
      signalType: fc.integer({ min: 0, max: 255 }),
      name: fc.string(),
      score: finite,
      count: u53,
      total: finite,
      isHidden: fc.boolean(),
      lastUpdateNs: u64,
    }),
    { maxLength: 4 },
  ),
});
const routerSpec: fc.Arbitrary<RouterSpec> = fc.oneof(
  fc.constant({ strategy: 'single' as const }),
  fc.record({ strategy: fc.constant('hash' as const), shards: fc.integer({ min: 1, max: 0x10000 }) }),
  fc.record({
    strategy: fc.constant('range' as const),
    ranges: fc.array(
      fc.tuple(u16, u64, u64).map(([shard, a, b]) => ({ shard, from: String(a < b ? a : b), to: String(a < b ? b : a) })),
      { maxLength: 4 },
    ),
  }),
);
const infoReply = fc.record({
  v: fc.constant(1 as const),
  t: fc.constant('info' as const),
  namespace: fc.stringMatching(/^[A-Za-z0-9_-]{1,64}$/),
  router: routerSpec,
  shards: fc.array(u16, { maxLength: 8 }),
  maxRequestEvents: positiveU53,
  maxRequestBytes: positiveU53,
});
const statusReply = fc.record({
  v: fc.constant(1 as const),
  t: fc.constant('status' as const),
  nodeId: fc.string(),
  uptimeMs: fc.oneof(u53, fc.double({ min: 0, noNaN: true, noDefaultInfinity: true })),
  state: fc.string(),
  sessions: u53,
  shards: fc.array(
    fc.record({
      shard: u16,
      role: fc.constantFrom('leader' as const, 'follower' as const),
      epoch: u53,
      lastSeq: u53,
      hwm: u53,
      checkpointSeq: u53,
      pendingEvents: u53,
      segments: u53,
      appliedSeq: u53,
      entities: u53,
    }),
    { maxLength: 3 },
  ),
});
const feedMessage = fc
  .record({ shard: u16, epoch: u53, firstSeq: fc.integer({ min: 1, max: MAX_SEQ - 10 }), timestampNs: u64, events: packed, hwm: u53 })
  .map((fields) => ({ v: 1 as const, t: 'feed' as const, ...fields }));

const requestCodes = ['DECODE_FAILED', 'BAD_REQUEST', 'UNSUPPORTED_VERSION', 'REQUEST_TOO_LARGE'];
const replyCodes: readonly string[] = ErrorCodes; // an ErrorReply may carry any code
const feedCodes = ['DECODE_FAILED', 'UNSUPPORTED_VERSION'];

/** Every message type with the decoder its receiver uses and the codes that decoder may throw. */
const kinds: Array<{ name: string; arbitrary: fc.Arbitrary<Message>; decode: (bytes: Uint8Array) => unknown; codes: readonly string[] }> = [
  { name: 'append request', arbitrary: appendRequest, decode: (bytes) => decodeRequest(bytes, 'append'), codes: requestCodes },
  { name: 'read request', arbitrary: readRequest, decode: (bytes) => decodeRequest(bytes, 'read'), codes: requestCodes },
  { name: 'seek request', arbitrary: seekRequest, decode: (bytes) => decodeRequest(bytes, 'seek'), codes: requestCodes },
  { name: 'state request', arbitrary: stateRequest, decode: (bytes) => decodeRequest(bytes, 'state'), codes: requestCodes },
  { name: 'info request', arbitrary: infoRequest, decode: (bytes) => decodeRequest(bytes, 'info'), codes: requestCodes },
  { name: 'status request', arbitrary: statusRequest, decode: (bytes) => decodeRequest(bytes, 'status'), codes: requestCodes },
  { name: 'append reply', arbitrary: appendReply, decode: (bytes) => decodeReply(bytes, 'appended'), codes: replyCodes },
  { name: 'read reply', arbitrary: readReply, decode: (bytes) => decodeReply(bytes, 'batches'), codes: replyCodes },
  { name: 'seek reply', arbitrary: seekReply, decode: (bytes) => decodeReply(bytes, 'sought'), codes: replyCodes },
  { name: 'state reply', arbitrary: stateReply, decode: (bytes) => decodeReply(bytes, 'entity'), codes: replyCodes },
  { name: 'info reply', arbitrary: infoReply, decode: (bytes) => decodeReply(bytes, 'info'), codes: replyCodes },
  { name: 'status reply', arbitrary: statusReply, decode: (bytes) => decodeReply(bytes, 'status'), codes: replyCodes },
  { name: 'feed', arbitrary: feedMessage, decode: decodeFeed, codes: feedCodes },
];

// ---------------------------------------------------------------------------------------
// Round trips

for (const kind of kinds) {
  test(`codec - ${kind.name} round-trips encode → decode (property)`, () => {
    fc.assert(
      fc.property(kind.arbitrary, (message) => {
        // structuredClone: fast-check's records have no prototype, decoded maps do.
        assert.equal(kind.decode(wire(message)), structuredClone(message));
      }),
      { seed: 1, numRuns: 200 },
    );
  });
}

test('codec - writes plain msgpack maps a reader in any language understands (golden bytes)', () => {
  // {"v": 1, "t": "info"}: fixmap(2), fixstr "v", 1, fixstr "t", fixstr "info"
  assert.is(Buffer.from(encodeMessage({ v: 1, t: 'info' })).toString('hex'), '82a17601a174a4696e666f');
  // The PROTOCOL.md example: an append of one event with a session.
  const events = encodeEvents([{ entityId: 42n, signalType: 1, weight: 1, timestampNs: 1_700_000_000_000_000_000n }]);
  const append = encodeMessage({ v: 1, t: 'append', shard: 0, session: { producerId: 'p1', sessionEpoch: 1, requestSeq: 7 }, events });
  assert.is(
    Buffer.from(append).toString('hex'),
    [
      '85', // fixmap, 5 entries (in the order of the message's fields)
      'a176', '01', // "v": 1
      'a174', 'a6617070656e64', // "t": "append"
      'a5736861726400', // "shard": 0
      'a773657373696f6e', '83', // "session": fixmap, 3 entries
      'aa70726f64756365724964', 'a27031', // "producerId": "p1"
      'ac73657373696f6e45706f6368', '01', // "sessionEpoch": 1
      'aa72657175657374536571', '07', // "requestSeq": 7
      'a66576656e7473', 'c415', // "events": bin 8, 21 bytes
      '2a00000000000000', '01', '0000803f', '00002a36fe9c9717', // entityId 42, type 1, 1.0f, 1.7e18 ns
    ].join(''));
});

test('codec - integers above u32 go out as msgpack int 64 / uint 64, never as floats', () => {
  const bytes = encodeMessage({ v: 1, t: 'sought', shard: 1, seq: 2 ** 40 });
  const hex = Buffer.from(bytes).toString('hex');
  assert.ok(hex.includes('a3736571d30000010000000000'), hex); // "seq": int 64 2^40
  assert.not.ok(hex.includes('cb'), hex);
  const feed = encodeMessage({ v: 1, t: 'feed', shard: 0, epoch: 0, firstSeq: 1, timestampNs: 2n ** 63n, events: new Uint8Array(0), hwm: 0 });
  assert.ok(Buffer.from(feed).toString('hex').includes('cf8000000000000000')); // uint 64
});

test('codec - leaves optional fields out instead of writing undefined', () => {
  const bytes = encodeMessage({ v: 1, t: 'append', shard: undefined, session: undefined, events: new Uint8Array(0) });
  assert.equal(Object.keys(decodeRequest(bytes, 'append')), ['v', 't', 'events']);
  assert.is(bytes[0], 0x83);
});

test('codec - nil stands for an absent optional field', () => {
  const decoded = decodeRequest(raw({ v: 1, t: 'append', shard: null, session: null, events: new Uint8Array(21) }), 'append');
  assert.equal(Object.keys(decoded), ['v', 't', 'events']);
});

test('codec - the event bin comes back as a view of the input, not a copy', () => {
  const events = encodeEvents([{ entityId: 1n, signalType: 2, weight: 3, timestampNs: 4n }]);
  const bytes = wire({ v: 1, t: 'append', events });
  const decoded = decodeRequest(bytes, 'append');
  assert.is(decoded.events.buffer, bytes.buffer);
  assert.equal([...decoded.events], [...events]);
  const feed = wire({ v: 1, t: 'feed', shard: 0, epoch: 0, firstSeq: 1, timestampNs: 0n, events, hwm: 1 });
  assert.is(decodeFeed(feed).events.buffer, feed.buffer);
});

test('codec - u64 fields accept any msgpack integer and hand out bigints', () => {
  // (the raw packer writes 2^40 as a float64: an integral float is accepted too)
  for (const timestampNs of [0, 5, 2 ** 40, 5n, 2n ** 63n, U64_MAX]) {
    const decoded = decodeRequest(raw({ v: 1, t: 'seek', shard: 0, timestampNs }), 'seek');
    assert.is(decoded.timestampNs, BigInt(timestampNs));
  }
});

test('codec - unknown fields are ignored and not handed on', () => {
  const decoded = decodeRequest(raw({ v: 1, t: 'read', shard: 2, fromSeq: 1, maxEvents: 10, future: { x: 1 } }), 'read');
  assert.equal(decoded, { v: 1, t: 'read', shard: 2, fromSeq: 1, maxEvents: 10 });
});

// ---------------------------------------------------------------------------------------
// Error codes

test('codec - bytes that are not one msgpack map are DECODE_FAILED', () => {
  const info = encodeMessage({ v: 1, t: 'info' });
  expectCode(() => decodeRequest(new Uint8Array(0), 'info'), 'DECODE_FAILED');
  expectCode(() => decodeRequest(info.subarray(0, info.byteLength - 1), 'info'), 'DECODE_FAILED'); // truncated
  expectCode(() => decodeRequest(Uint8Array.from([...info, 0]), 'info'), 'DECODE_FAILED'); // trailing byte
  expectCode(() => decodeRequest(raw([1, 'info']), 'info'), 'DECODE_FAILED');
  expectCode(() => decodeRequest(raw('info'), 'info'), 'DECODE_FAILED');
  expectCode(() => decodeRequest(Uint8Array.of(0xc1), 'info'), 'DECODE_FAILED');
  expectCode(() => decodeRequest('not bytes' as unknown as Uint8Array, 'info'), 'DECODE_FAILED');
  expectCode(() => decodeReply(raw(null), 'sought'), 'DECODE_FAILED');
  expectCode(() => decodeFeed(raw(7)), 'DECODE_FAILED');
});

test('codec - trailing bytes after a large message are DECODE_FAILED', () => {
  const big = encodeMessage({ v: 1, t: 'append', events: new Uint8Array(21 * 100_000) });
  expectCode(() => decodeRequest(Uint8Array.from([...big, 0xc0]), 'append', { maxRequestBytes: 8 << 20, maxRequestEvents: 200_000 }), 'DECODE_FAILED');
});

test('codec - a version other than 1 is UNSUPPORTED_VERSION, checked before the type and fields', () => {
  expectCode(() => decodeRequest(raw({ v: 2, t: 'info' }), 'info'), 'UNSUPPORTED_VERSION');
  expectCode(() => decodeRequest(raw({ v: 0, t: 'info' }), 'info'), 'UNSUPPORTED_VERSION');
  expectCode(() => decodeRequest(raw({ v: 2, t: 'something-else' }), 'read'), 'UNSUPPORTED_VERSION');
  expectCode(() => decodeRequest(raw({ v: 2n ** 60n }), 'read'), 'UNSUPPORTED_VERSION');
  expectCode(() => decodeReply(raw({ v: 3, t: 'sought' }), 'sought'), 'UNSUPPORTED_VERSION');
  expectCode(() => decodeFeed(raw({ v: 2, t: 'feed' })), 'UNSUPPORTED_VERSION');
  try {
    decodeRequest(raw({ v: 2, t: 'info' }), 'info');
  } catch (error) {
    assert.equal((error as TidelogError).context, { version: 2, supportedVersions: [1] });
  }
  // A missing or non-integer version is not a version at all.
  expectCode(() => decodeRequest(raw({ t: 'info' }), 'info'), 'DECODE_FAILED');
  expectCode(() => decodeRequest(raw({ v: '1', t: 'info' }), 'info'), 'DECODE_FAILED');
});

test('codec - a missing, non-string or unexpected type is DECODE_FAILED', () => {
  expectCode(() => decodeRequest(raw({ v: 1 }), 'info'), 'DECODE_FAILED');
  expectCode(() => decodeRequest(raw({ v: 1, t: 5 }), 'info'), 'DECODE_FAILED');
  expectCode(() => decodeRequest(raw({ v: 1, t: 'status' }), 'info'), 'DECODE_FAILED');
  expectCode(() => decodeReply(encodeMessage({ v: 1, t: 'sought', shard: 0, seq: 1 }), 'appended'), 'DECODE_FAILED');
  expectCode(() => decodeFeed(raw({ v: 1, t: 'append' })), 'DECODE_FAILED');
});

test('codec - a missing or wrongly typed field is DECODE_FAILED', () => {
  const read = { v: 1, t: 'read', shard: 0, fromSeq: 1, maxEvents: 1 };
  expectCode(() => decodeRequest(raw({ ...read, fromSeq: undefined }), 'read'), 'DECODE_FAILED');
  expectCode(() => decodeRequest(raw({ ...read, shard: '0' }), 'read'), 'DECODE_FAILED');
  expectCode(() => decodeRequest(raw({ ...read, maxEvents: [1] }), 'read'), 'DECODE_FAILED');
  expectCode(() => decodeRequest(raw({ ...read, fromSeq: true }), 'read'), 'DECODE_FAILED');
  expectCode(() => decodeRequest(raw({ v: 1, t: 'append' }), 'append'), 'DECODE_FAILED'); // no events
  expectCode(() => decodeRequest(raw({ v: 1, t: 'append', events: new Uint8Array(0), session: 'p' }), 'append'), 'DECODE_FAILED');
  const session = { producerId: 'p', sessionEpoch: 1, requestSeq: 1 };
  expectCode(() => decodeRequest(raw({ v: 1, t: 'append', events: new Uint8Array(0), session: { ...session, producerId: 7 } }), 'append'), 'DECODE_FAILED');
  expectCode(() => decodeRequest(raw({ v: 1, t: 'state', entityId: 42 }), 'state'), 'DECODE_FAILED');
  expectCode(() => decodeRequest(raw({ v: 1, t: 'state', entityId: '42', signalTypes: 3 }), 'state'), 'DECODE_FAILED');
  expectCode(() => decodeRequest(raw({ v: 1, t: 'state', entityId: '42', signalTypes: ['3'] }), 'state'), 'DECODE_FAILED');
  expectCode(() => decodeRequest(raw({ v: 1, t: 'seek', shard: 0, timestampNs: '5' }), 'seek'), 'DECODE_FAILED');
});

test('codec - a request field of the right type with a bad value is BAD_REQUEST', () => {
  const events = new Uint8Array(21);
  const read = { v: 1, t: 'read', shard: 0, fromSeq: 1, maxEvents: 1 };
  const session = { producerId: 'p', sessionEpoch: 1, requestSeq: 1 };
  const bad: Array<[string, Record<string, unknown>, 'append' | 'read' | 'seek' | 'state']> = [
    ['negative seq', { ...read, fromSeq: -1 }, 'read'],
    ['fromSeq 0', { ...read, fromSeq: 0 }, 'read'],
    ['fromSeq fractional', { ...read, fromSeq: 1.5 }, 'read'],
    ['fromSeq beyond u53', { ...read, fromSeq: 2n ** 60n }, 'read'],
    ['maxEvents 0', { ...read, maxEvents: 0 }, 'read'],
    ['maxEvents beyond u53', { ...read, maxEvents: 2n ** 60n }, 'read'],
    ['shard 65536', { ...read, shard: 0x10000 }, 'read'],
    ['shard -1', { ...read, shard: -1 }, 'read'],
    ['append shard not a u16', { v: 1, t: 'append', shard: 70_000, events }, 'append'],
    ['producerId empty', { v: 1, t: 'append', events, session: { ...session, producerId: '' } }, 'append'],
    ['producerId 65 bytes', { v: 1, t: 'append', events, session: { ...session, producerId: 'x'.repeat(65) } }, 'append'],
    ['producerId 22 chars, 66 bytes', { v: 1, t: 'append', events, session: { ...session, producerId: '€'.repeat(22) } }, 'append'],
    ['producerId with a lone surrogate', { v: 1, t: 'append', events, session: { ...session, producerId: 'a\uD800b' } }, 'append'],
    ['producerId with U+FFFD', { v: 1, t: 'append', events, session: { ...session, producerId: 'a\uFFFDb' } }, 'append'],
    ['sessionEpoch 0', { v: 1, t: 'append', events, session: { ...session, sessionEpoch: 0 } }, 'append'],
    ['sessionEpoch beyond u32', { v: 1, t: 'append', events, session: { ...session, sessionEpoch: 2 ** 32 } }, 'append'],
    ['requestSeq 0', { v: 1, t: 'append', events, session: { ...session, requestSeq: 0 } }, 'append'],
    ['requestSeq beyond u53', { v: 1, t: 'append', events, session: { ...session, requestSeq: 2n ** 53n + 1n } }, 'append'],
    ['events not a bin', { v: 1, t: 'append', events: [1, 2, 3] }, 'append'],
    ['events a string', { v: 1, t: 'append', events: 'abc' }, 'append'],
    ['events 20 bytes', { v: 1, t: 'append', events: new Uint8Array(20) }, 'append'],
    ['events 43 bytes', { v: 1, t: 'append', events: new Uint8Array(43) }, 'append'],
    ['NaN weight', { v: 1, t: 'append', events: withWeight(Number.NaN) }, 'append'],
    ['infinite weight', { v: 1, t: 'append', events: withWeight(Number.NEGATIVE_INFINITY) }, 'append'],
    ['entityId negative', { v: 1, t: 'state', entityId: '-1' }, 'state'],
    ['entityId leading zero', { v: 1, t: 'state', entityId: '042' }, 'state'],
    ['entityId not decimal', { v: 1, t: 'state', entityId: '0x2a' }, 'state'],
    ['entityId empty', { v: 1, t: 'state', entityId: '' }, 'state'],
    ['entityId 2^64', { v: 1, t: 'state', entityId: String(1n << 64n) }, 'state'],
    ['signal type 256', { v: 1, t: 'state', entityId: '1', signalTypes: [1, 256] }, 'state'],
    ['too many signal types', { v: 1, t: 'state', entityId: '1', signalTypes: new Array(257).fill(1) }, 'state'],
    ['timestampNs negative', { v: 1, t: 'seek', shard: 0, timestampNs: -1 }, 'seek'],
    ['timestampNs fractional', { v: 1, t: 'seek', shard: 0, timestampNs: 1.5 }, 'seek'],
    ['timestampNs negative int 64', { v: 1, t: 'seek', shard: 0, timestampNs: -(2n ** 62n) }, 'seek'],
  ];
  for (const [name, message, type] of bad) assert.is(codeOf(() => decodeRequest(raw(message), type)), 'BAD_REQUEST', name);
  // A producerId of invalid UTF-8 (ff) would decode to "a\uFFFDb": refused, not merged with other ids.
  const invalidUtf8 = Buffer.from(raw({ v: 1, t: 'append', events, session: { ...session, producerId: 'aXb' } }));
  invalidUtf8[invalidUtf8.indexOf('aXb') + 1] = 0xff;
  expectCode(() => decodeRequest(invalidUtf8, 'append'), 'BAD_REQUEST');
});

test('codec - the edges of every request range are accepted', () => {
  const session = { producerId: '€'.repeat(21) + 'x', sessionEpoch: 0xffff_ffff, requestSeq: MAX_SEQ };
  const append = decodeRequest(raw({ v: 1, t: 'append', shard: 0xffff, session, events: new Uint8Array(0) }), 'append');
  assert.equal(append.session, session);
  assert.is(decodeRequest(raw({ v: 1, t: 'read', shard: 0, fromSeq: MAX_SEQ, maxEvents: DEFAULT_MAX_REQUEST_EVENTS }), 'read').fromSeq, MAX_SEQ);
  assert.is(decodeRequest(raw({ v: 1, t: 'state', entityId: String(U64_MAX) }), 'state').entityId, String(U64_MAX));
  assert.is(decodeRequest(raw({ v: 1, t: 'state', entityId: '0' }), 'state').entityId, '0');
});

test('codec - a request over maxRequestBytes is REQUEST_TOO_LARGE before it is decoded', () => {
  const limits = { maxRequestBytes: 64 };
  expectCode(() => decodeRequest(new Uint8Array(65).fill(0xc1), 'append', limits), 'REQUEST_TOO_LARGE');
  expectCode(() => decodeRequest(raw({ v: 1, t: 'append', events: new Uint8Array(63) }), 'append', limits), 'REQUEST_TOO_LARGE');
  decodeRequest(raw({ v: 1, t: 'append', events: new Uint8Array(21) }), 'append', limits);
  expectCode(() => decodeRequest(new Uint8Array(DEFAULT_MAX_REQUEST_BYTES + 1), 'info'), 'REQUEST_TOO_LARGE'); // the default limit
});

test('codec - more events than maxRequestEvents is REQUEST_TOO_LARGE', () => {
  const events = encodeEvents(Array.from({ length: 3 }, (_, index) => ({ entityId: BigInt(index), signalType: 1, weight: 1, timestampNs: 1n })));
  const bytes = encodeMessage({ v: 1, t: 'append', events });
  expectCode(() => decodeRequest(bytes, 'append', { maxRequestEvents: 2 }), 'REQUEST_TOO_LARGE');
  assert.is(decodeRequest(bytes, 'append', { maxRequestEvents: 3 }).events.byteLength, 63);
  // read's maxEvents is an upper bound: the node serves at most its own limit (a client that
  // asked info before a rolling restart lowered it reads on instead of failing)
  assert.is(decodeRequest(raw({ v: 1, t: 'read', shard: 0, fromSeq: 1, maxEvents: 3 }), 'read', { maxRequestEvents: 2 }).maxEvents, 2);
  assert.is(decodeRequest(raw({ v: 1, t: 'read', shard: 0, fromSeq: 1, maxEvents: 65_537 }), 'read').maxEvents, DEFAULT_MAX_REQUEST_EVENTS);
  assert.is(decodeRequest(raw({ v: 1, t: 'read', shard: 0, fromSeq: 1, maxEvents: 2 }), 'read', { maxRequestEvents: 2 }).maxEvents, 2);
});

test('codec - bad values in replies and the feed are DECODE_FAILED, never BAD_REQUEST', () => {
  const events = new Uint8Array(21);
  const cases: Array<[string, () => unknown]> = [
    ['seek reply shard 70000', () => decodeReply(raw({ v: 1, t: 'sought', shard: 70_000, seq: 1 }), 'sought')],
    ['seek reply seq 0', () => decodeReply(raw({ v: 1, t: 'sought', shard: 0, seq: 0 }), 'sought')],
    ['feed firstSeq 0', () => decodeFeed(raw({ v: 1, t: 'feed', shard: 0, epoch: 0, firstSeq: 0, timestampNs: 0, events, hwm: 0 }))],
    ['feed events 20 bytes', () => decodeFeed(raw({ v: 1, t: 'feed', shard: 0, epoch: 0, firstSeq: 1, timestampNs: 0, events: events.subarray(1), hwm: 0 }))],
    ['feed events not a bin', () => decodeFeed(raw({ v: 1, t: 'feed', shard: 0, epoch: 0, firstSeq: 1, timestampNs: 0, events: [0], hwm: 0 }))],
    ['feed seqs past u53', () => decodeFeed(raw({ v: 1, t: 'feed', shard: 0, epoch: 0, firstSeq: MAX_SEQ, timestampNs: 0, events: new Uint8Array(42), hwm: 0 }))],
    ['append reply odd runs', () => decodeReply(raw(appended([{ shard: 0, epoch: 0, runs: [1, 2, 3] }])), 'appended')],
    ['append reply overlapping runs', () => decodeReply(raw(appended([{ shard: 0, epoch: 0, runs: [5, 3, 6, 1] }])), 'appended')],
    ['append reply zero-length run', () => decodeReply(raw(appended([{ shard: 0, epoch: 0, runs: [5, 0] }])), 'appended')],
    ['append reply two parts, no route', () => decodeReply(raw(appended([{ shard: 0, epoch: 0, runs: [5, 1] }, { shard: 1, epoch: 0, runs: [5, 1] }])), 'appended')],
    ['append reply route names a missing part', () => decodeReply(raw(appended([{ shard: 0, epoch: 0, runs: [5, 1] }], routeOf([1]))), 'appended')],
    ['append reply route disagrees with runs', () => decodeReply(raw(appended([{ shard: 0, epoch: 0, runs: [5, 2] }], routeOf([0]))), 'appended')],
    ['append reply odd route', () => decodeReply(raw(appended([{ shard: 0, epoch: 0, runs: [5, 1] }], new Uint8Array(3))), 'appended')],
    ['append reply unknown outcome', () => decodeReply(raw({ ...appended([]), outcome: 'maybe' }), 'appended')],
    ['read reply overlapping batches', () => decodeReply(raw(batches([[5, 2], [6, 1]])), 'batches')],
    ['read reply batches going back', () => decodeReply(raw(batches([[5, 1], [4, 1]])), 'batches')],
    ['state reply NaN score', () => decodeReply(raw(entity({ score: Number.NaN })), 'entity')],
    ['state reply entity id not decimal', () => decodeReply(raw({ ...entity({}), entityId: 'x' }), 'entity')],
    ['info reply bad namespace', () => decodeReply(raw(info({ namespace: 'a.b' })), 'info')],
    ['info reply range from above to', () => decodeReply(raw(info({ router: { strategy: 'range', ranges: [{ shard: 0, from: '9', to: '1' }] } })), 'info')],
    ['info reply hash of 0 shards', () => decodeReply(raw(info({ router: { strategy: 'hash', shards: 0 } })), 'info')],
    ['info reply unknown strategy', () => decodeReply(raw(info({ router: { strategy: 'random' } })), 'info')],
    ['status reply negative uptime', () => decodeReply(raw(status({ uptimeMs: -1 })), 'status')],
    ['status reply unknown role', () => decodeReply(raw(status({ role: 'observer' })), 'status')],
  ];
  for (const [name, run] of cases) assert.is(codeOf(run), 'DECODE_FAILED', name);
});

test('codec - decodeReply throws an ErrorReply as a TidelogError with its code and details', () => {
  const sent = new TidelogError('SEQUENCE_GAP', 'requestSeq 9 skips 8', { details: { shard: 2, hwm: 7, at: 2n ** 62n } });
  const reply = errorReply(sent);
  assert.equal(reply, { v: 1, t: 'error', code: 'SEQUENCE_GAP', message: 'requestSeq 9 skips 8', details: { shard: 2, hwm: 7, at: 2n ** 62n } });
  try {
    decodeReply(encodeMessage(reply), 'appended');
    assert.unreachable('an error reply must throw');
  } catch (error) {
    assert.ok(isTidelogError(error, 'SEQUENCE_GAP'), String(error));
    assert.is(error.message, sent.message);
    assert.equal(error.context, sent.context);
  }
});

test('codec - an error code this client does not know is DECODE_FAILED with the remote code in context', () => {
  try {
    decodeReply(raw({ v: 1, t: 'error', code: 'FROM_THE_FUTURE', message: 'new', details: { x: 1 } }), 'sought');
    assert.unreachable('an error reply must throw');
  } catch (error) {
    assert.ok(isTidelogError(error, 'DECODE_FAILED'), String(error));
    assert.equal(error.context, { x: 1, remoteCode: 'FROM_THE_FUTURE', remoteMessage: 'new' });
  }
  expectCode(() => decodeReply(raw({ v: 1, t: 'error', message: 'no code' }), 'sought'), 'DECODE_FAILED');
  expectCode(() => decodeReply(raw({ v: 1, t: 'error', code: 'OVERLOADED', message: 'x', details: [1] }), 'sought'), 'DECODE_FAILED');
});

test('codec - errorReply turns anything that is not a TidelogError into IO_ERROR', () => {
  const fromError = errorReply(new RangeError('index out of range'));
  assert.is(fromError.code, 'IO_ERROR');
  assert.equal(fromError.details, { error: 'RangeError' });
  assert.ok(fromError.message.includes('index out of range'));
  assert.is(errorReply('a string').code, 'IO_ERROR');
  assert.is(errorReply(undefined).code, 'IO_ERROR');
  expectCode(() => decodeReply(encodeMessage(errorReply(new Error('x'))), 'info'), 'IO_ERROR');
});

test('codec - errorReply flattens context into values every decoder can read', () => {
  const context = {
    file: 'wal-00001.seg',
    offset: 4096,
    ratio: Number.NaN,
    big: 1n << 70n,
    list: [1, 'two', null],
    nested: { deep: true },
    cause: new Error('inner'),
    long: 'x'.repeat(5000),
  };
  const reply = errorReply(new TidelogError('IO_ERROR', 'read failed', { details: context }));
  const details = reply.details as Record<string, unknown>;
  assert.is(details.file, 'wal-00001.seg');
  assert.is(details.offset, 4096);
  assert.is(details.ratio, 'NaN');
  assert.is(details.big, String(1n << 70n));
  assert.equal(details.list, [1, 'two', null]);
  assert.is(details.nested, '[object Object]');
  assert.is(details.cause, 'Error: inner');
  assert.is((details.long as string).length, 1024);
  expectCode(() => decodeReply(encodeMessage(reply), 'sought'), 'IO_ERROR');
});

test('codec - encodeMessage refuses values that would not survive the wire with BAD_REQUEST', () => {
  expectCode(() => encodeMessage({ v: 1, t: 'seek', shard: 0, timestampNs: 1n << 64n }), 'BAD_REQUEST');
  expectCode(() => encodeMessage({ v: 1, t: 'sought', shard: 0, seq: Number.NaN }), 'BAD_REQUEST');
  expectCode(() => encodeMessage({ v: 1, t: 'error', code: 'X', message: 'y', details: { when: new Date(0) } }), 'BAD_REQUEST');
});

test('codec - a bigint extension longer than 64 bytes is DECODE_FAILED (msgpackr decodes long ones in quadratic time)', () => {
  // { "v": ext 8 type 0x42, 65 bytes }: before the guard this decoded to a bigint (and a 4 MiB one took 13 s).
  const bytes = Uint8Array.of(0x81, 0xa1, 0x76, 0xc7, 65, 0x42, ...new Uint8Array(65).fill(0x7f));
  expectCode(() => decodeRequest(bytes, 'info'), 'DECODE_FAILED');
  // Shorter ones still decode exactly as msgpackr wrote them, for every other msgpackr user.
  const wide = new Packr({ useRecords: false, moreTypes: true });
  for (const value of [1n << 64n, -(1n << 64n) - 3n, (1n << 511n) - 1n, -(1n << 511n)]) assert.is(unpack(wide.pack(value)), value);
});

// ---------------------------------------------------------------------------------------
// Fuzz: nothing but documented TidelogErrors, whatever arrives

/** Runs every decoder on `bytes`: each returns, or throws a TidelogError with a documented code. */
function decodeAnyway(bytes: Uint8Array): void {
  for (const decoder of kinds) {
    let decoded: unknown;
    try {
      decoded = decoder.decode(bytes);
    } catch (error) {
      assert.ok(isTidelogError(error), `${decoder.name} threw ${String(error)}`);
      assert.ok(decoder.codes.includes(error.code), `${decoder.name} threw ${error.code}`);
      continue;
    }
    // Whatever a decoder accepts is well-formed enough to be written and read again unchanged.
    assert.equal(decoder.decode(Uint8Array.from(encodeMessage(decoded as Message))), decoded, decoder.name);
  }
}

test('codec - random bytes never make a decoder throw anything but a documented TidelogError (fuzz)', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 120 }), (bytes) => decodeAnyway(bytes)),
    { seed: 7, numRuns: 1500 },
  );
  // Bytes that start like a map make the decoders look further.
  fc.assert(
    fc.property(fc.integer({ min: 0x80, max: 0x8f }), fc.uint8Array({ maxLength: 120 }), (head, tail) => decodeAnyway(Uint8Array.of(head, ...tail))),
    { seed: 8, numRuns: 1500 },
  );
});

const anyMessage = fc.oneof(...kinds.map((kind) => kind.arbitrary));
const mutation = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bits: fc.integer({ min: 1, max: 255 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 9 }) }),
  fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), length: fc.integer({ min: 1, max: 9 }) }),
);

test('codec - byte mutations of valid messages never make a decoder throw anything but a documented TidelogError (fuzz)', () => {
  fc.assert(
    fc.property(anyMessage, fc.array(mutation, { minLength: 1, maxLength: 4 }), (message, mutations) => {
      let bytes = [...encodeMessage(message)];
      for (const change of mutations) {
        const at = bytes.length === 0 ? 0 : change.at % bytes.length;
        if (change.kind === 'flip' && bytes.length > 0) bytes[at] ^= change.bits;
        if (change.kind === 'truncate') bytes = bytes.slice(0, at);
        if (change.kind === 'insert') bytes.splice(at, 0, ...change.bytes);
        if (change.kind === 'delete') bytes.splice(at, change.length);
      }
      decodeAnyway(Uint8Array.from(bytes));
    }),
    { seed: 9, numRuns: 1500 },
  );
});

const anyValue = fc.oneof(
  fc.integer(),
  fc.constantFrom(-1, 0, 1, 0x10000, 2 ** 53, MAX_SEQ, -(2 ** 63)),
  fc.bigInt({ min: -(1n << 63n), max: U64_MAX }),
  fc.double(),
  fc.string({ maxLength: 8 }),
  fc.boolean(),
  fc.constant(null),
  fc.uint8Array({ maxLength: 44 }),
  fc.array(fc.integer(), { maxLength: 4 }),
  fc.dictionary(fc.string({ maxLength: 3 }), fc.integer(), { maxKeys: 3 }),
);

/** Replaces one field, anywhere in the message tree, with `value`. */
function replaceField(message: unknown, pick: number, value: unknown): unknown {
  const paths: Array<Array<string | number>> = [];
  const walk = (node: unknown, path: Array<string | number>): void => {
    if (node === null || typeof node !== 'object' || node instanceof Uint8Array) return;
    for (const [key, child] of Object.entries(node)) {
      const at = [...path, Array.isArray(node) ? Number(key) : key];
      paths.push(at);
      walk(child, at);
    }
  };
  walk(message, []);
  const copy = structuredClone(message) as Record<string | number, unknown>;
  const path = paths[pick % paths.length];
  let parent: Record<string | number, unknown> = copy;
  for (const key of path.slice(0, -1)) parent = parent[key] as Record<string | number, unknown>;
  parent[path[path.length - 1]] = value;
  return copy;
}

test('codec - field mutations of valid messages never make a decoder throw anything but a documented TidelogError (fuzz)', () => {
  fc.assert(
    fc.property(anyMessage, fc.nat(), anyValue, (message, pick, value) => {
      decodeAnyway(raw(replaceField(message, pick, value)));
    }),
    { seed: 10, numRuns: 1500 },
  );
});

// ---------------------------------------------------------------------------------------
// Helpers for hand-made messages

function codeOf(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    return isTidelogError(error) ? error.code : `not a TidelogError: ${String(error)}`;
  }
  return 'none';
}

function withWeight(weight: number): Uint8Array {
  const events = encodeEvents([{ entityId: 1n, signalType: 1, weight: 1, timestampNs: 1n }]);
  new DataView(events.buffer).setFloat32(9, weight, true);
  return events;
}

function appended(parts: Array<{ shard: number; epoch: number; runs: number[] }>, route?: Uint8Array) {
  return { v: 1, t: 'appended', parts, outcome: 'new', ...(route === undefined ? {} : { route }) };
}

function batches(spans: Array<[firstSeq: number, count: number]>) {
  const list = spans.map(([firstSeq, count]) => ({ firstSeq, epoch: 0, timestampNs: 0, events: new Uint8Array(21 * count) }));
  return { v: 1, t: 'batches', shard: 0, batches: list, hwm: 100, firstSeq: 1 };
}

function entity(signal: Record<string, unknown>) {
  const base = { signalType: 1, name: 'view', score: 1, count: 1, total: 1, isHidden: false, lastUpdateNs: 5 };
  return { v: 1, t: 'entity', entityId: '42', shard: 0, appliedSeq: 3, signals: [{ ...base, ...signal }] };
}

function info(fields: Record<string, unknown>) {
  return { v: 1, t: 'info', namespace: 'tide', router: { strategy: 'single' }, shards: [0], maxRequestEvents: 10, maxRequestBytes: 100, ...fields };
}

function status(fields: Record<string, unknown>) {
  const shard = { shard: 0, role: 'leader', epoch: 0, lastSeq: 0, hwm: 0, checkpointSeq: 0, pendingEvents: 0, segments: 1, appliedSeq: 0, entities: 0 };
  const { uptimeMs = 5, ...shardFields } = fields;
  return { v: 1, t: 'status', nodeId: 'n1', uptimeMs, state: 'serving', sessions: 0, shards: [{ ...shard, ...shardFields }] };
}

test.run();
