// The node end to end on the in-process transport: every endpoint, sessions across a restart,
// and bad input answered with stable codes while accepted data stays intact.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { isTidelogError } from '../../src/errors.ts';
import { EVENT_BYTES, decodeEvents, encodeEvents, type SignalEvent } from '../../src/event.ts';
import { loadConfig, type ConfigOverrides } from '../../src/node/config.ts';
import { NODE_ID_FILE, startNode, type TidelogNode } from '../../src/node/node.ts';
import { ShardRouter } from '../../src/shard-map.ts';
import { decodeReply, decodeRoute, encodeMessage, runsToSeqs } from '../../src/transport/codec.ts';
import { InProcessBus, InProcessTransport } from '../../src/transport/in-process.ts';
import { subjects as subjectsOf, type AppendReply, type Message, type SessionTag } from '../../src/transport/messages.ts';
import type { FileIo } from '../../src/wal/index.ts';
import { FaultyFileIo } from '../support/faulty-file-io.ts';
import { rejection, tempDir, removeDir } from '../support/wal-fixtures.ts';
import { WAIT_MS } from '../support/waits.ts';

const NAMESPACE = 'nodetest';
const subjects = subjectsOf(NAMESPACE);
const ROUTER = { strategy: 'hash', shards: 4 } as const;

interface Harness {
  dir: string;
  bus: InProcessBus;
  node: TidelogNode;
  client: InProcessTransport;
  restart(): Promise<void>;
  close(): Promise<void>;
}

async function startHarness(overrides: ConfigOverrides = {}, io?: FileIo): Promise<Harness> {
  const dir = tempDir('node');
  const bus = new InProcessBus();
  const config = loadConfig({
    env: {},
    overrides: { namespace: NAMESPACE, dataDir: dir, router: ROUTER, wal: { fsync: 'off', batchLingerMs: 0 }, log: { level: 'silent' }, ...overrides },
  });
  const logger = pino({ level: process.env.TEST_LOG ?? 'silent' });
  let nodeTransport = new InProcessTransport({ bus });
  const harness: Harness = {
    dir,
    bus,
    node: await startNode({ config, transport: nodeTransport, logger, io }),
    client: new InProcessTransport({ bus }),
    async restart() {
      await harness.node.stop();
      await nodeTransport.close();
      nodeTransport = new InProcessTransport({ bus });
      harness.node = await startNode({ config, transport: nodeTransport, logger, io });
    },
    async close() {
      await harness.node.stop();
      await nodeTransport.close();
      await harness.client.close();
      removeDir(dir);
    },
  };
  return harness;
}

function event(index: number, signalType = 1 + (index % 5)): SignalEvent {
  return { entityId: BigInt(index * 7919 + 1), signalType, weight: 1 + (index % 3), timestampNs: 1_700_000_000_000_000_000n + BigInt(index) };
}

function packedEvents(from: number, count: number): Uint8Array {
  return encodeEvents(Array.from({ length: count }, (_, index) => event(from + index)));
}

async function call(harness: Harness, subject: string, message: Message | Uint8Array): Promise<Uint8Array> {
  const data = message instanceof Uint8Array ? message : encodeMessage(message);
  return harness.client.request(subject, data, { timeoutMs: WAIT_MS }); // only bounds a hang
}

async function expectErrorCode(harness: Harness, subject: string, message: Message | Uint8Array, expected: string, type: Parameters<typeof decodeReply>[1] = 'appended'): Promise<void> {
  const bytes = await call(harness, subject, message);
  const error = await rejection(async () => decodeReply(bytes, type));
  assert.ok(isTidelogError(error), String(error));
  assert.is(error.code, expected);
}

async function shardAppend(harness: Harness, shard: number, packed: Uint8Array, session?: SessionTag): Promise<AppendReply> {
  const message: Message = session === undefined ? { v: 1, t: 'append', shard, events: packed } : { v: 1, t: 'append', shard, session, events: packed };
  return decodeReply(await call(harness, subjects.shardAppend(shard), message), 'appended');
}

/** Every durable event of a shard, read page by page through the read endpoint. */
async function readShard(harness: Harness, shard: number, fromSeq = 1): Promise<Array<{ seq: number; bytes: Uint8Array }>> {
  const out: Array<{ seq: number; bytes: Uint8Array }> = [];
  let next = fromSeq;
  for (;;) {
    const reply = decodeReply(await call(harness, subjects.shardRead(shard), { v: 1, t: 'read', shard, fromSeq: next, maxEvents: 7 }), 'batches');
    for (const batch of reply.batches) {
      const count = batch.events.byteLength / EVENT_BYTES;
      for (let index = 0; index < count; index++) {
        assert.is(batch.firstSeq + index, next, 'pages continue each other without a gap or duplicate');
        out.push({ seq: next++, bytes: Uint8Array.from(batch.events.subarray(index * EVENT_BYTES, (index + 1) * EVENT_BYTES)) });
      }
    }
    if (next > reply.hwm) return out;
  }
}

/** The events of `packed` that route to `shard`, in order. */
function eventsOfShard(packed: Uint8Array, shard: number): Uint8Array {
  const split = ShardRouter.fromSpec(ROUTER).split(packed);
  const index = split.shards.indexOf(shard);
  return index < 0 ? new Uint8Array(0) : split.parts[index];
}

const test = suite('node');

test('node - the any-node append splits by shard, acks each event durably, and reads give them back', async () => {
  const harness = await startHarness();
  try {
    const packed = packedEvents(0, 500);
    const reply = decodeReply(await call(harness, subjects.append, { v: 1, t: 'append', events: packed }), 'appended');
    assert.is(reply.outcome, 'new');
    assert.is(reply.parts.length, 4, 'hash(4) spreads 500 events over every shard');
    const route = decodeRoute(reply.route!, reply.parts.length);
    assert.is(route.length, 500);
    const seqsPerPart = reply.parts.map((part) => runsToSeqs(part.runs, route.filter((p) => p === reply.parts.indexOf(part)).length));
    const router = ShardRouter.fromSpec(ROUTER);
    const seen = reply.parts.map(() => 0);
    for (let index = 0; index < 500; index++) {
      const part = route[index];
      assert.is(reply.parts[part].shard, router.shardOfPacked(packed, index), 'the route names the shard the event went to');
      assert.is(seqsPerPart[part][seen[part]++], seen[part], 'seqs per shard are 1, 2, 3 … in request order');
    }
    for (const part of reply.parts) {
      const stored = await readShard(harness, part.shard);
      const expected = eventsOfShard(packed, part.shard);
      assert.is(stored.length, expected.byteLength / EVENT_BYTES);
      stored.forEach(({ bytes }, index) => assert.equal(bytes, expected.subarray(index * EVENT_BYTES, (index + 1) * EVENT_BYTES)));
    }
  } finally {
    await harness.close();
  }
});

test('node - a session retry is answered with the original seqs, before and after a node restart; other events under the same number are REQUEST_MISMATCH', async () => {
  const harness = await startHarness();
  try {
    const shard = 2;
    const packed = eventsOfShard(packedEvents(0, 400), shard);
    const count = packed.byteLength / EVENT_BYTES;
    const session = { producerId: 'p-1', sessionEpoch: 7, requestSeq: 1 };
    const first = await shardAppend(harness, shard, packed, session);
    assert.is(first.outcome, 'new');
    assert.equal(runsToSeqs(first.parts[0].runs, count), Array.from({ length: count }, (_, i) => i + 1));
    const retry = await shardAppend(harness, shard, packed, session);
    assert.is(retry.outcome, 'replayed');
    assert.equal(retry.parts[0].runs, first.parts[0].runs);
    // The same count of other events under the same number: refused, never answered 'replayed'.
    const other = packed.slice();
    other[EVENT_BYTES * (count - 1) + 9] ^= 1; // the last event's signal type or weight
    const mismatch = async (): Promise<void> => {
      const error = await rejection(() => shardAppend(harness, shard, other, session));
      assert.ok(isTidelogError(error, 'REQUEST_MISMATCH'), String(error));
    };
    await mismatch();
    await harness.restart();
    const afterRestart = await shardAppend(harness, shard, packed, session);
    assert.is(afterRestart.outcome, 'replayed', 'the idempotency store came back from the WAL');
    assert.equal(afterRestart.parts[0].runs, first.parts[0].runs);
    await mismatch();
    assert.is((await readShard(harness, shard)).length, count, 'nothing was appended twice');
    // A session request of 0 events is a no-op that uses no number up (PROTOCOL.md).
    const empty = await shardAppend(harness, shard, new Uint8Array(0), { ...session, requestSeq: 2 });
    assert.is(empty.outcome, 'new');
    assert.equal(empty.parts[0]?.runs ?? [], []);
    const next = await shardAppend(harness, shard, eventsOfShard(packedEvents(1000, 200), shard), { ...session, requestSeq: 2 });
    assert.is(next.outcome, 'new');
    assert.is(runsToSeqs(next.parts[0].runs, next.parts[0].runs[1])[0], count + 1);
  } finally {
    await harness.close();
  }
});

test('node - without a configured nodeId a node generates one once and keeps it in its data dir across restarts', async () => {
  const harness = await startHarness();
  const first = harness.node.nodeId;
  try {
    assert.match(first, /^[A-Za-z0-9_.-]+-[0-9a-f]{8}$/);
    assert.is(readFileSync(join(harness.dir, NODE_ID_FILE), 'utf8').trim(), first);
    await harness.restart();
    assert.is(harness.node.nodeId, first, 'the same id after a restart');
    const status = decodeReply(await call(harness, subjects.status, { v: 1, t: 'status' }), 'status');
    assert.is(status.nodeId, first);
  } finally {
    await harness.close();
  }
  const other = await startHarness();
  try {
    assert.match(other.node.nodeId, /-[0-9a-f]{8}$/);
    assert.is.not(other.node.nodeId, first, 'another data dir, another generated id');
  } finally {
    await other.close();
  }
});

test('node - session gaps and stale epochs get SEQUENCE_GAP and PRODUCER_FENCED; the session carries on', async () => {
  const harness = await startHarness();
  try {
    const shard = 1;
    const packed = eventsOfShard(packedEvents(0, 100), shard);
    const make = (requestSeq: number, sessionEpoch = 5): Message => ({ v: 1, t: 'append', shard, session: { producerId: 'p-gap', sessionEpoch, requestSeq }, events: packed });
    await expectErrorCode(harness, subjects.shardAppend(shard), make(2), 'SEQUENCE_GAP');
    assert.is((await shardAppend(harness, shard, packed, { producerId: 'p-gap', sessionEpoch: 5, requestSeq: 1 })).outcome, 'new');
    await expectErrorCode(harness, subjects.shardAppend(shard), make(1, 4), 'PRODUCER_FENCED');
    const newEpoch = await shardAppend(harness, shard, eventsOfShard(packedEvents(500, 100), shard), { producerId: 'p-gap', sessionEpoch: 6, requestSeq: 1 });
    assert.is(newEpoch.outcome, 'new');
    await expectErrorCode(harness, subjects.shardAppend(shard), make(2, 5), 'PRODUCER_FENCED', 'appended');
  } finally {
    await harness.close();
  }
});

test('node - bad input gets stable codes and nothing accepted is lost', async () => {
  const harness = await startHarness({ limits: { maxRequestEvents: 1000, maxRequestBytes: 1 << 20 } });
  try {
    const shard = 0;
    const good = eventsOfShard(packedEvents(0, 200), shard);
    const goodCount = good.byteLength / EVENT_BYTES;
    await shardAppend(harness, shard, good);
    const target = subjects.shardAppend(shard);
    await expectErrorCode(harness, target, new Uint8Array([0xc1, 0xff, 0x00]), 'DECODE_FAILED');
    const wrongVersion = encodeMessage({ v: 1, t: 'append', shard, events: good });
    // msgpack map: the first key is `v` with fixint 1 right after it; flip it to 2.
    const versionAt = wrongVersion.indexOf(0x76) + 1;
    wrongVersion[versionAt] = 2;
    await expectErrorCode(harness, target, wrongVersion, 'UNSUPPORTED_VERSION');
    await expectErrorCode(harness, target, { v: 1, t: 'append', shard, events: eventsOfShard(packedEvents(0, 6000), shard) }, 'REQUEST_TOO_LARGE');
    const nanWeight = eventsOfShard(packedEvents(3000, 40), shard).slice();
    new DataView(nanWeight.buffer).setFloat32(9, Number.NaN, true);
    await expectErrorCode(harness, target, { v: 1, t: 'append', shard, events: nanWeight }, 'BAD_REQUEST');
    const unknownType = encodeEvents([{ ...decodeEvents(eventsOfShard(packedEvents(4000, 40), shard))[0], signalType: 99 }]);
    await expectErrorCode(harness, target, { v: 1, t: 'append', shard, events: unknownType }, 'UNKNOWN_SIGNAL_TYPE');
    await expectErrorCode(harness, target, { v: 1, t: 'append', shard, events: eventsOfShard(packedEvents(0, 50), 3) }, 'WRONG_SHARD');
    await expectErrorCode(harness, target, { v: 1, t: 'append', shard: 3, events: good }, 'WRONG_SHARD');
    await expectErrorCode(harness, subjects.shardRead(shard), { v: 1, t: 'read', shard, fromSeq: 10_000, maxEvents: 5 }, 'OUT_OF_RANGE', 'batches');
    // A read's maxEvents above the node's maxRequestEvents is an upper bound, served up to the limit, not refused.
    const wide = decodeReply(await call(harness, subjects.shardRead(shard), { v: 1, t: 'read', shard, fromSeq: 1, maxEvents: 50_000 }), 'batches');
    assert.is(wide.batches.reduce((sum, batch) => sum + batch.events.byteLength / EVENT_BYTES, 0), goodCount);
    const stored = await readShard(harness, shard);
    assert.is(stored.length, goodCount, 'only the good request was written');
    stored.forEach(({ bytes }, index) => assert.equal(bytes, good.subarray(index * EVENT_BYTES, (index + 1) * EVENT_BYTES)));
    assert.is((await shardAppend(harness, shard, eventsOfShard(packedEvents(9000, 50), shard))).outcome, 'new', 'still serving');
  } finally {
    await harness.close();
  }
});

test('node - fuzz: random bytes at every endpoint get an error reply with a documented code, and the node keeps serving', async () => {
  const harness = await startHarness();
  try {
    const allowed = new Set(['DECODE_FAILED', 'UNSUPPORTED_VERSION', 'BAD_REQUEST', 'REQUEST_TOO_LARGE', 'WRONG_SHARD', 'UNKNOWN_SIGNAL_TYPE', 'OUT_OF_RANGE', 'SEQUENCE_GAP']);
    const endpoints = [subjects.append, subjects.info, subjects.state, subjects.status, ...[0, 1, 2, 3].flatMap((s) => [subjects.shardAppend(s), subjects.shardRead(s), subjects.shardSeek(s)])];
    let seed = 12345;
    const random = (): number => {
      seed = (seed * 1_103_515_245 + 12_345) & 0x7fffffff;
      return seed / 0x7fffffff;
    };
    const valid = encodeMessage({ v: 1, t: 'append', shard: 0, events: eventsOfShard(packedEvents(0, 80), 0) });
    for (let round = 0; round < 400; round++) {
      const subject = endpoints[round % endpoints.length];
      let bytes: Uint8Array;
      if (round % 2 === 0) {
        bytes = new Uint8Array(Math.floor(random() * 64));
        for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(random() * 256);
      } else {
        bytes = valid.slice(0, Math.max(1, Math.floor(random() * valid.length)));
        bytes[Math.floor(random() * bytes.length)] ^= 1 << Math.floor(random() * 8);
      }
      const reply = await call(harness, subject, bytes);
      try {
        decodeReply(reply, 'appended');
      } catch (error) {
        assert.ok(isTidelogError(error), `a TidelogError from ${subject}`);
        // A reply of another type fails decodeReply with DECODE_FAILED too, which is fine here:
        // what matters is that the node answered with a well-formed message.
        assert.ok(allowed.has(error.code) || error.code === 'DECODE_FAILED', `${subject}: unexpected ${error.code}`);
      }
    }
    const info = decodeReply(await call(harness, subjects.info, { v: 1, t: 'info' }), 'info');
    assert.equal(info.shards, [0, 1, 2, 3], 'still serving');
  } finally {
    await harness.close();
  }
});

test('node - state, seek, info and status answer from durable data', async () => {
  const harness = await startHarness();
  try {
    const entityId = 424242n;
    const router = ShardRouter.fromSpec(ROUTER);
    const shard = router.shardOf(entityId);
    const before = BigInt(Date.now()) * 1_000_000n;
    const likes = encodeEvents(Array.from({ length: 5 }, (_, i) => ({ entityId, signalType: 3, weight: 2, timestampNs: before + BigInt(i) })));
    await shardAppend(harness, shard, likes);
    const state = decodeReply(await call(harness, subjects.state, { v: 1, t: 'state', entityId: String(entityId) }), 'entity');
    assert.is(state.shard, shard);
    assert.is(state.appliedSeq, 5);
    const like = state.signals.find((signal) => signal.signalType === 3);
    assert.ok(like !== undefined, 'the like signal is there');
    assert.is(like.count, 5);
    assert.is(like.total, 10);
    const sought = decodeReply(await call(harness, subjects.shardSeek(shard), { v: 1, t: 'seek', shard, timestampNs: before - 1_000_000_000n }), 'sought');
    assert.is(sought.seq, 1);
    const later = decodeReply(await call(harness, subjects.shardSeek(shard), { v: 1, t: 'seek', shard, timestampNs: BigInt(Date.now() + 60_000) * 1_000_000n }), 'sought');
    assert.is(later.seq, 6, 'after every batch: the next seq');
    const info = decodeReply(await call(harness, subjects.info, { v: 1, t: 'info' }), 'info');
    assert.equal(info.router, ROUTER);
    // The one node's answer ends the collection, however late it comes.
    const statusRequest = encodeMessage({ v: 1, t: 'status' });
    const statuses = (await harness.client.requestMany(subjects.status, statusRequest, { timeoutMs: WAIT_MS, maxReplies: 1 })).map((b) => decodeReply(b, 'status'));
    assert.is(statuses.length, 1);
    assert.is(statuses[0].state, 'serving');
    assert.is(statuses[0].shards.find((s) => s.shard === shard)?.hwm, 5);
  } finally {
    await harness.close();
  }
});

test('node - an fsync error stops only its shard: its appends get FSYNC_FAILED, its reads and the other shards go on', async () => {
  const io = new FaultyFileIo();
  const harness = await startHarness({ wal: { fsync: 'full', batchLingerMs: 0 } }, io);
  try {
    const before = eventsOfShard(packedEvents(0, 400), 1);
    const acked = await shardAppend(harness, 1, before);
    assert.is(acked.outcome, 'new');
    io.inject({ op: 'datasync', path: /wal-00001-/, code: 'EIO' });
    await expectErrorCode(harness, subjects.shardAppend(1), { v: 1, t: 'append', shard: 1, events: eventsOfShard(packedEvents(1000, 400), 1) }, 'FSYNC_FAILED');
    await expectErrorCode(harness, subjects.shardAppend(1), { v: 1, t: 'append', shard: 1, events: eventsOfShard(packedEvents(2000, 400), 1) }, 'FSYNC_FAILED');
    const stored = await readShard(harness, 1);
    assert.is(stored.length, before.byteLength / EVENT_BYTES, 'what was acknowledged before the fault is still read, nothing after it');
    for (const shard of [0, 2, 3]) {
      const reply = await shardAppend(harness, shard, eventsOfShard(packedEvents(3000, 400), shard));
      assert.is(reply.outcome, 'new', `shard ${shard} keeps serving`);
    }
    const status = decodeReply(await call(harness, subjects.status, { v: 1, t: 'status' }), 'status');
    assert.equal(status.shards.map((shard) => shard.failure ?? null), [null, 'FSYNC_FAILED', null, null], 'status names the failed lane');
  } finally {
    await harness.close().catch(() => undefined);
  }
});

test('node - a second standalone node on a served namespace is refused (it would split the shards\' logs), naming the one that serves', async () => {
  const harness = await startHarness();
  const otherDir = tempDir('node-second');
  const transport = new InProcessTransport({ bus: harness.bus });
  try {
    const config = loadConfig({ env: {}, overrides: { namespace: NAMESPACE, dataDir: otherDir, router: ROUTER, wal: { fsync: 'off' }, nodeId: 'second', log: { level: 'silent' } } });
    let refusal: unknown = null;
    try {
      const second = await startNode({ config, transport, logger: pino({ level: 'silent' }) });
      await second.stop();
    } catch (error) {
      refusal = error;
    }
    assert.ok(isTidelogError(refusal, 'CONFIG_INVALID'), `refused: ${String(refusal)}`);
    assert.match((refusal as Error).message, new RegExp(`already served by node ${harness.node.nodeId} \\(pid ${process.pid}\\)`));
    // The first node serves on, untouched.
    const reply = await shardAppend(harness, 0, eventsOfShard(packedEvents(0, 100), 0));
    assert.is(reply.outcome, 'new');
  } finally {
    await transport.close();
    await harness.close();
    removeDir(otherDir);
  }
});

test.run();
