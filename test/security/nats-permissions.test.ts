// docs/SECURITY.md against a real nats-server (Debian's 2.9.10 works):
// - the roles' accounts block (NKey users), read verbatim from the doc: `tidelog serve` (a
//   child process) runs with the node's credential (its seed from TIDELOG_NATS_NKEY_SEED) and
//   logs its config without the seed; the producer appends and gets acks through its
//   private inbox, and is refused (permission violations, asserted as the transport reports
//   them) on replication and epoch subjects, on reads and feeds, and when it tries to answer a
//   node's requests or read other clients' replies; the consumer reads, seeks, tails, asks
//   state, info and status, and cannot append; the node's credential opens the epoch bucket;
//   `tidelog status` connects with credentials from TIDELOG_NATS_*;
// - user + password, a token, and TLS (a throwaway CA, server and client certificate made with
//   openssl) with an NKey user, each connect, and the wrong ones are refused; refused logins on
//   reconnect are retried;
// - operator mode: an in-process node and a producer connect with `.creds` files whose user
//   JWTs carry the node's and the producer's permissions (JWTs signed here, as nsc would).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import pino from 'pino';
import { jetstream } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { nkeys } from '@nats-io/transport-node';
import { isDefinitiveRejection } from '../../src/client/append-batch.ts';
import { openClientTransport } from '../../src/client/client-transport.ts';
import { SendError, createProducer } from '../../src/client/producer.ts';
import { KvEpochStore, epochBucketName } from '../../src/cluster/kv-epoch-store.ts';
import { TidelogError, isTidelogError } from '../../src/errors.ts';
import { encodeEvents, type SignalEvent } from '../../src/event.ts';
import { loadConfig } from '../../src/node/config.ts';
import { startNode, type TidelogNode } from '../../src/node/node.ts';
import { ShardRouter } from '../../src/shard-map.ts';
import { decodeFeed, decodeReply, encodeMessage } from '../../src/transport/codec.ts';
import { subjects as subjectsOf, type FeedMessage } from '../../src/transport/messages.ts';
import { NatsTransport, type NatsAuthOptions } from '../../src/transport/nats.ts';
import type { NatsServerProcess } from '../../src/transport/nats-server-process.ts';
import { replicationSubject } from '../../src/transport/replication-codec.ts';
import type { Transport } from '../../src/transport/transport.ts';
import { startTestNats } from '../support/nats-harness.ts';
import { until, within } from '../support/waits.ts';
import { removeDir, tempDir } from '../support/wal-fixtures.ts';

const test = suite('security: nats permissions');

const REPO = resolve(import.meta.dirname, '..', '..');
const MAIN = join(REPO, 'src', 'cli', 'main.ts');
const NS = 'tidelog';
const subjects = subjectsOf(NS);
const ROUTER = { strategy: 'hash' as const, shards: 2 };
const router = ShardRouter.fromSpec(ROUTER);
const NODE_ID = 'secure-node';
const BUCKET = epochBucketName(NS);

const secret = (): string => `s${randomBytes(12).toString('hex')}`;
const seedOf = (pair: ReturnType<typeof nkeys.createUser>): string => new TextDecoder().decode(pair.getSeed());
const USERS = { node: nkeys.createUser(), producer: nkeys.createUser(), consumer: nkeys.createUser() };
const SEEDS = { node: seedOf(USERS.node), producer: seedOf(USERS.producer), consumer: seedOf(USERS.consumer) };
const PRODUCER: NatsAuthOptions = { nkeySeed: SEEDS.producer, inboxPrefix: '_INBOX_producer' };
const CONSUMER: NatsAuthOptions = { nkeySeed: SEEDS.consumer, inboxPrefix: '_INBOX_consumer' };

const dir = tempDir('security');
let server: NatsServerProcess | null = null;
let serve: ServeChild | null = null;
const transports: NatsTransport[] = [];

// ── helpers ───────────────────────────────────────────────────────────────────────────

/** The nats-server config block docs/SECURITY.md marks as tested. */
function documentedAccounts(): string {
  const doc = readFileSync(join(REPO, 'docs', 'SECURITY.md'), 'utf8');
  const at = doc.indexOf('<!-- tested: test/security/nats-permissions.test.ts');
  assert.ok(at >= 0, 'docs/SECURITY.md marks its tested config block');
  const block = /```conf\n([\s\S]*?)```/.exec(doc.slice(at));
  assert.ok(block !== null, 'a conf block follows the marker');
  return block[1];
}

/** A nats-server on `conf`; `env` is the environment its config reads ($VAR). */
async function startServer(name: string, conf: string, options: { jetStream?: boolean; env?: Record<string, string> } = {}): Promise<NatsServerProcess> {
  const path = join(dir, `${name}.conf`);
  writeFileSync(path, conf);
  const saved = new Map<string, string | undefined>();
  for (const [key, value] of Object.entries(options.env ?? {})) {
    saved.set(key, process.env[key]);
    process.env[key] = value;
  }
  try {
    return await startTestNats({ jetStream: options.jetStream ?? false, args: ['-c', path] });
  } finally {
    for (const [key, value] of saved) {
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
    }
  }
}

async function connectAs(url: string, auth: NatsAuthOptions, name = 'security-test'): Promise<NatsTransport> {
  const transport = await NatsTransport.connect({ servers: url, auth, name, maxReconnectAttempts: 0 });
  transports.push(transport);
  return transport;
}

/** Every error status a transport reports, and a wait for a permission violation. */
class Errors {
  readonly seen: TidelogError[] = [];
  constructor(transport: Transport) {
    transport.onStatus((status) => {
      if (status.type === 'error' && isTidelogError(status.error)) this.seen.push(status.error);
    });
  }

  /** The first permission violation reported for `operation` on `subject` (and `queue`). */
  async violation(operation: 'publish' | 'subscription', subject: string, queue?: string): Promise<TidelogError> {
    const matches = (error: TidelogError): boolean => {
      const permission = error.context.permission as { operation: string; subject: string; queue?: string } | undefined;
      return permission !== undefined && permission.operation === operation && permission.subject === subject && permission.queue === queue;
    };
    await until(() => this.seen.some(matches), () => `a ${operation} violation on ${subject} (seen: ${this.seen.map((error) => error.message).join(' | ') || 'none'})`);
    const found = this.seen.find(matches) as TidelogError;
    assert.is(found.code, 'PERMISSION_DENIED');
    assert.match(found.message, operation === 'publish' ? `Permissions Violation for Publish to "${subject}"` : `Permissions Violation for Subscription to "${subject}"`);
    return found;
  }
}

/** A rejection of `promise` that is a permission violation of a publish on `subject` (the request's own). */
async function expectPublishRefused(promise: Promise<unknown>, subject: string): Promise<void> {
  const startedMs = performance.now();
  try {
    await promise;
  } catch (error) {
    assert.ok(isTidelogError(error, 'PERMISSION_DENIED'), String(error));
    assert.equal(error.context.permission, { operation: 'publish', subject }, error.message);
    assert.match(error.message, `Permissions Violation for Publish to "${subject}"`);
    assert.ok(performance.now() - startedMs < 4_000, 'refused at once, not after the request timeout');
    return;
  }
  assert.unreachable(`a request on ${subject} should be refused`);
}

function eventsOfShard(shard: number, count: number, offset = 0): SignalEvent[] {
  const events: SignalEvent[] = [];
  for (let id = 1n + BigInt(offset); events.length < count; id++) {
    if (router.shardOf(id) === shard) events.push({ entityId: id, signalType: 2, weight: 1, timestampNs: 1_700_000_000_000_000_000n + id });
  }
  return events;
}

async function appendTo(transport: Transport, shard: number, events: SignalEvent[]): Promise<number[]> {
  const bytes = await transport.request(subjects.shardAppend(shard), encodeMessage({ v: 1, t: 'append', shard, events: encodeEvents(events) }), { timeoutMs: 10_000 });
  const reply = decodeReply(bytes, 'appended');
  assert.is(reply.parts.length, 1);
  assert.is(reply.parts[0].shard, shard);
  return reply.parts[0].runs;
}

/** `tidelog serve` as a child: every line it writes kept, resolves once it is ready. */
class ServeChild {
  stdout = '';
  stderr = '';
  private readonly exited: Promise<number | null>;

  private constructor(private readonly child: ChildProcess) {
    this.exited = new Promise((resolveExit) => child.once('exit', (code) => resolveExit(code)));
  }

  static async start(configPath: string, env: Record<string, string>): Promise<ServeChild> {
    // cwd is not the config's folder: its relative dataDir must still land beside it.
    const child = spawn(process.execPath, ['--import', 'tsx', MAIN, 'serve', '--config', configPath], {
      cwd: REPO,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const serveChild = new ServeChild(child);
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (serveChild.stdout += chunk));
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (serveChild.stderr += chunk));
    const exitedEarly = serveChild.exited.then((code) => {
      throw new Error(`tidelog serve exited with ${code} before it was ready:\n${serveChild.stderr}`);
    });
    await within(Promise.race([until(() => serveChild.stdout.includes(' ready '), 'the ready line'), exitedEarly]), 'tidelog serve to be ready');
    return serveChild;
  }

  async stop(): Promise<number | null> {
    this.child.kill('SIGTERM');
    return within(this.exited, 'tidelog serve to stop');
  }

  kill(): void {
    this.child.kill('SIGKILL');
  }
}

// ── the roles, from docs/SECURITY.md ──────────────────────────────────────────────────────

test('node: `tidelog serve` connects with the node credential (seed from TIDELOG_NATS_NKEY_SEED), its relative dataDir beside its config file', async () => {
  server = await startServer('roles', documentedAccounts(), {
    jetStream: true,
    env: { TIDELOG_NODE_NKEY: USERS.node.getPublicKey(), TIDELOG_PRODUCER_NKEY: USERS.producer.getPublicKey(), TIDELOG_CONSUMER_NKEY: USERS.consumer.getPublicKey() },
  });
  const configDir = join(dir, 'node-config');
  mkdirSync(configDir);
  const configPath = join(configDir, 'node.json');
  const config = {
    nodeId: NODE_ID,
    namespace: NS,
    dataDir: 'data',
    nats: { servers: [server.url] },
    router: ROUTER,
    wal: { fsync: 'off' },
    metrics: { enabled: false },
  };
  writeFileSync(configPath, JSON.stringify(config));
  serve = await ServeChild.start(configPath, { TIDELOG_NATS_NKEY_SEED: SEEDS.node, TIDELOG_LOG_LEVEL: 'info' });
  assert.match(serve.stdout, `tidelog serve: node ${NODE_ID} ready`);
  assert.ok(existsSync(join(configDir, 'data')), 'dataDir "data" was taken relative to the config file, not to the working directory');
});

test('producer: appends on {ns}.shard.*.append and {ns}.append, gets acks through its private inbox, may ask info', async () => {
  const { transport } = await openClientTransport({ servers: server?.url, auth: PRODUCER, namespace: NS, name: 'producer' });
  transports.push(transport as NatsTransport);
  for (const shard of [0, 1]) {
    const runs = await appendTo(transport, shard, eventsOfShard(shard, 5));
    assert.equal(runs, [1, 5], `shard ${shard}: seqs 1..5`);
  }
  const anyNode = decodeReply(
    await transport.request(subjects.append, encodeMessage({ v: 1, t: 'append', events: encodeEvents([...eventsOfShard(0, 2, 1000), ...eventsOfShard(1, 2, 1000)]) }), { timeoutMs: 10_000 }),
    'appended',
  );
  assert.equal(anyNode.parts.map((part) => part.shard).sort(), [0, 1]);
  const info = decodeReply(await transport.request(subjects.info, encodeMessage({ v: 1, t: 'info' }), { timeoutMs: 10_000 }), 'info');
  assert.equal(info.router, ROUTER);
});

test('producer: may not publish on replication or epoch subjects: async permission errors, requests refused at once', async () => {
  const producer = await connectAs(server?.url ?? '', PRODUCER);
  const errors = new Errors(producer);
  const replicate = replicationSubject(NS, 0, NODE_ID, 'append');
  producer.publish(replicate, new Uint8Array([0x80]));
  await errors.violation('publish', replicate);
  const epochKey = `$KV.${BUCKET}.s.0.e.99`;
  producer.publish(epochKey, new TextEncoder().encode('{}'));
  await errors.violation('publish', epochKey);
  await expectPublishRefused(producer.request(replicationSubject(NS, 1, NODE_ID, 'prepare'), new Uint8Array([0x80]), { timeoutMs: 10_000 }), replicationSubject(NS, 1, NODE_ID, 'prepare'));
  await expectPublishRefused(producer.request(`$JS.API.STREAM.INFO.KV_${BUCKET}`, new Uint8Array(), { timeoutMs: 10_000 }), `$JS.API.STREAM.INFO.KV_${BUCKET}`);
  try {
    await KvEpochStore.open(producer.connection, { namespace: NS, bucketReplicas: 1, timeoutMs: 5_000 });
    assert.unreachable('the producer may not open the epoch bucket');
  } catch (error) {
    assert.ok(isTidelogError(error, 'DISCONNECTED'), String(error));
    assert.match(error.message, /Permissions Violation for Publish to "\$JS\.API\.INFO"/);
  }
});

test('producer: may not read, seek, tail, see feeds, ask state or status, move consumer positions', async () => {
  const producer = await connectAs(server?.url ?? '', PRODUCER);
  const errors = new Errors(producer);
  await expectPublishRefused(producer.request(subjects.shardRead(0), encodeMessage({ v: 1, t: 'read', shard: 0, fromSeq: 1, maxEvents: 10 }), { timeoutMs: 10_000 }), subjects.shardRead(0));
  await expectPublishRefused(producer.request(subjects.shardSeek(1), encodeMessage({ v: 1, t: 'seek', shard: 1, timestampNs: 0n }), { timeoutMs: 10_000 }), subjects.shardSeek(1));
  await expectPublishRefused(producer.request(subjects.state, encodeMessage({ v: 1, t: 'state', entityId: '1' }), { timeoutMs: 10_000 }), subjects.state);
  producer.subscribe(subjects.shardFeed(0), () => assert.unreachable('no feed for a producer'));
  await errors.violation('subscription', subjects.shardFeed(0));
  producer.publish(subjects.shardTail(0), encodeMessage({ v: 1, t: 'tail', shard: 0 }));
  await errors.violation('publish', subjects.shardTail(0));
  producer.publish(`${NS}.consumer.commit`, new Uint8Array([0x80]));
  await errors.violation('publish', `${NS}.consumer.commit`);
  // requestMany publishes on its own inbox subscription: the refusal arrives as a status, and no reply.
  assert.equal(await producer.requestMany(subjects.status, encodeMessage({ v: 1, t: 'status' }), { timeoutMs: 500 }), []);
  await errors.violation('publish', subjects.status);
});

test('producer: may not answer a node\'s requests, read other clients\' replies or forge them; appends still reach the node', async () => {
  const producer = await connectAs(server?.url ?? '', PRODUCER);
  const errors = new Errors(producer);
  const impostor = (): void => assert.unreachable('a producer must never receive a request');
  producer.subscribe(subjects.shardAppend(0), impostor, { queue: subjects.shardQueue(0) });
  await errors.violation('subscription', subjects.shardAppend(0), subjects.shardQueue(0));
  producer.subscribe(subjects.append, impostor, { queue: subjects.nodesQueue });
  await errors.violation('subscription', subjects.append, subjects.nodesQueue);
  producer.subscribe(replicationSubject(NS, 0, NODE_ID, 'append'), impostor);
  await errors.violation('subscription', replicationSubject(NS, 0, NODE_ID, 'append'));
  producer.subscribe('_INBOX.>', impostor);
  await errors.violation('subscription', '_INBOX.>');
  producer.subscribe('_INBOX_consumer.>', impostor);
  await errors.violation('subscription', '_INBOX_consumer.>');
  producer.publish('_INBOX_consumer.forged', encodeMessage({ v: 1, t: 'appended', parts: [], outcome: 'new' }));
  await errors.violation('publish', '_INBOX_consumer.forged');
  // The node still answers: the impostor's subscriptions never existed.
  assert.equal(await appendTo(producer, 0, eventsOfShard(0, 3, 2000)), [8, 3]);
});

test('producer without its inbox prefix: requests are refused with a hint to set it', async () => {
  const producer = await connectAs(server?.url ?? '', { nkeySeed: SEEDS.producer });
  try {
    await producer.request(subjects.info, encodeMessage({ v: 1, t: 'info' }), { timeoutMs: 10_000 });
    assert.unreachable('the default _INBOX is not the producer\'s');
  } catch (error) {
    assert.ok(isTidelogError(error, 'PERMISSION_DENIED'), String(error));
    assert.is((error.context.permission as { operation: string }).operation, 'subscription');
    assert.match(error.message, /set auth\.inboxPrefix/);
  }
});

test('consumer: reads, seeks, tails the feed, asks state, info and status; may not append', async () => {
  const { transport: consumer } = await openClientTransport({ servers: server?.url, auth: CONSUMER, namespace: NS, name: 'consumer' });
  transports.push(consumer as NatsTransport);
  const read = decodeReply(await consumer.request(subjects.shardRead(0), encodeMessage({ v: 1, t: 'read', shard: 0, fromSeq: 1, maxEvents: 100 }), { timeoutMs: 10_000 }), 'batches');
  assert.is(read.hwm, 10, 'shard 0 holds the 5 + 2 + 3 events appended above');
  assert.is(read.batches.reduce((sum, batch) => sum + batch.events.length / 21, 0), 10);
  const sought = decodeReply(await consumer.request(subjects.shardSeek(1), encodeMessage({ v: 1, t: 'seek', shard: 1, timestampNs: 0n }), { timeoutMs: 10_000 }), 'sought');
  assert.is(sought.seq, 1);
  const state = decodeReply(await consumer.request(subjects.state, encodeMessage({ v: 1, t: 'state', entityId: eventsOfShard(0, 1)[0].entityId.toString() }), { timeoutMs: 10_000 }), 'entity');
  assert.ok(state.signals.some((signal) => signal.count >= 1), 'the entity counted its event');
  decodeReply(await consumer.request(subjects.info, encodeMessage({ v: 1, t: 'info' }), { timeoutMs: 10_000 }), 'info');
  const statuses = await consumer.requestMany(subjects.status, encodeMessage({ v: 1, t: 'status' }), { timeoutMs: 10_000, maxReplies: 1 });
  assert.is(decodeReply(statuses[0], 'status').nodeId, NODE_ID);

  // Tail: subscribe to the feed, announce the tail, and see a batch a producer appends.
  const feed: FeedMessage[] = [];
  consumer.subscribe(subjects.shardFeed(1), (message) => feed.push(decodeFeed(message.data)));
  await consumer.flush();
  consumer.publish(subjects.shardTail(1), encodeMessage({ v: 1, t: 'tail', shard: 1 }));
  await consumer.flush();
  const producer = await connectAs(server?.url ?? '', PRODUCER);
  await appendTo(producer, 1, eventsOfShard(1, 4, 3000));
  await until(() => feed.some((message) => message.events.length === 4 * 21), 'the appended batch on the feed');

  // Durable consumers' positions: the consumer may publish there (what the node answers is its own tests' business).
  const consumerErrors = new Errors(consumer);
  consumer.publish(`${NS}.consumer.commit`, new Uint8Array([0x80]));
  consumer.publish(`${NS}.consumer.position`, new Uint8Array([0x80]));
  await consumer.flush();
  assert.equal(consumerErrors.seen.filter((error) => error.context.permission !== undefined).map((error) => error.message), []);

  await expectPublishRefused(consumer.request(subjects.shardAppend(0), encodeMessage({ v: 1, t: 'append', shard: 0, events: encodeEvents(eventsOfShard(0, 1)) }), { timeoutMs: 10_000 }), subjects.shardAppend(0));
  await expectPublishRefused(consumer.request(subjects.append, encodeMessage({ v: 1, t: 'append', events: encodeEvents(eventsOfShard(0, 1)) }), { timeoutMs: 10_000 }), subjects.append);
});

test('a producer client with credentials that may not append: send rejects PERMISSION_DENIED at once, not retried, its events maybe applied', async () => {
  const producer = await createProducer({ servers: server?.url, auth: CONSUMER, namespace: NS, producerId: 'no-append-rights', sessionEpoch: 7, sendTimeoutMs: 20_000 });
  const startedMs = performance.now();
  try {
    await producer.send([...eventsOfShard(0, 2, 5000), ...eventsOfShard(1, 1, 5000)]);
    assert.unreachable('the consumer credential may not append');
  } catch (error) {
    if (!(error instanceof SendError)) throw error;
    assert.is(error.code, 'PERMISSION_DENIED', error.message);
    // The client pins a refused publish on the oldest request pending on the subject, which
    // may be another, applied one: no proof of "not applied" for this one.
    assert.equal(error.maybeApplied, [0, 1, 2]);
    assert.equal(error.notApplied, []);
    assert.is((error.context.permission as { operation: string }).operation, 'publish');
    assert.ok(performance.now() - startedMs < 10_000, 'not retried until sendTimeoutMs');
  } finally {
    await producer.close();
  }
});

test('a permission refused by the NATS server is no proof that a request was not applied; a node\'s refusal is', () => {
  const refused = (operation: string): TidelogError => new TidelogError('PERMISSION_DENIED', 'refused', { details: { permission: { operation, subject: 'x' } } });
  assert.not.ok(isDefinitiveRejection(refused('publish')));
  assert.not.ok(isDefinitiveRejection(refused('subscription')));
  assert.ok(isDefinitiveRejection(new TidelogError('BAD_REQUEST', 'bad')));
  assert.not.ok(isDefinitiveRejection(new TidelogError('TIMEOUT', 'late')));
});

test('node credential: opens the epoch bucket, claims and reads epochs; opens, writes, reads and watches the consumer-position bucket', async () => {
  const node = await connectAs(server?.url ?? '', { nkeySeed: SEEDS.node });
  const errors = new Errors(node);
  const store = await KvEpochStore.open(node.connection, { namespace: NS, bucketReplicas: 1 });
  const claim = await store.claim(0, 1, NODE_ID);
  assert.is(claim.kind, 'won');
  assert.is((await store.get(0, 1))?.nodeId, NODE_ID);
  assert.is((await store.latest(0))?.epoch, 1);
  assert.is((await store.claim(0, 1, 'another')).kind, 'lost');
  // What src/cluster/consumer-store.ts does with its bucket: create, put, get, watch every key.
  const positions = await new Kvm(jetstream(node.connection, { timeout: 5_000 })).create(`tidelog_${NS}_consumers`, { replicas: 1, history: 1 });
  const watched = new Map<string, string>();
  const watch = await positions.watch();
  void (async () => {
    for await (const entry of watch) watched.set(entry.key, entry.string());
  })();
  await positions.put('reader.0', '7');
  await positions.put('reader.1', '9');
  assert.is((await positions.get('reader.0'))?.string(), '7');
  await until(() => watched.get('reader.1') === '9', 'the watch to see both positions');
  watch.stop();
  await node.flush();
  assert.equal(errors.seen.map((error) => error.message), [], 'no permission refused on the way');
});

test('tidelog status: credentials from TIDELOG_NATS_NKEY_SEED / _INBOX_PREFIX', async () => {
  const result = await runCli(['status', '--nats', server?.url ?? '', '--namespace', NS, '--json', '--nodes', '1', '--timeout-ms', '20000'], {
    TIDELOG_NATS_NKEY_SEED: SEEDS.consumer,
    TIDELOG_NATS_INBOX_PREFIX: '_INBOX_consumer',
  });
  assert.is(result.status, 0, result.stderr);
  assert.is((JSON.parse(result.stdout) as Array<{ nodeId: string }>)[0].nodeId, NODE_ID);
  const stranger = seedOf(nkeys.createUser());
  const refused = await runCli(['status', '--nats', server?.url ?? '', '--namespace', NS, '--timeout-ms', '200'], { TIDELOG_NATS_NKEY_SEED: stranger });
  assert.is(refused.status, 1);
  assert.match(refused.stderr, /Authorization Violation/);
  assert.not.ok(refused.stderr.includes(stranger), 'the seed is not quoted');
});

test('node: stops cleanly, and neither its log (config included) nor its stdout holds a secret', async () => {
  assert.is(await serve?.stop(), 0);
  const output = `${serve?.stdout ?? ''}${serve?.stderr ?? ''}`;
  serve = null;
  const configLine = output.split('\n').find((line) => line.includes('"msg":"config"'));
  assert.ok(configLine !== undefined, `the node logs its config at start:\n${output.slice(0, 2000)}`);
  const logged = JSON.parse(configLine) as { config: { nats: { auth: { nkeySeed: string } }; dataDir: string } };
  assert.is(logged.config.nats.auth.nkeySeed, '[redacted]');
  assert.is(logged.config.dataDir, join(dir, 'node-config', 'data'));
  for (const seed of Object.values(SEEDS)) assert.not.ok(output.includes(seed), 'no seed anywhere in what the node wrote');
});

// ── user + password, token, TLS + NKey ──────────────────────────────────────────────────

test('user/password: the right password connects and round-trips, a wrong one is refused and not quoted', async () => {
  const password = secret();
  const passwordServer = await startServer('password', `authorization { users = [ { user: tidelog, password: "${password}" } ] }\n`);
  try {
    const transport = await connectAs(passwordServer.url, { user: 'tidelog', pass: password });
    transport.subscribe('echo', (message) => transport.publish(message.reply ?? '', message.data));
    assert.equal([...(await transport.request('echo', new Uint8Array([5]), { timeoutMs: 5_000 }))], [5]);
    await transport.close();
    try {
      await connectAs(passwordServer.url, { user: 'tidelog', pass: 'not-the-password' });
      assert.unreachable('a wrong password must not connect');
    } catch (error) {
      assert.ok(isTidelogError(error, 'DISCONNECTED'), String(error));
      assert.match(error.message, /Authorization Violation/);
      assert.not.match(`${error.message} ${JSON.stringify(error.context)}`, /not-the-password/);
    }
  } finally {
    await passwordServer.stop();
  }
});

test('token: the right token connects and round-trips, a wrong one is refused; refused logins on reconnect are retried, not given up', async () => {
  const token = secret();
  const tokenServer = await startServer('token', `authorization { token: "${token}" }\n`);
  try {
    // The transport a node uses: reconnect never gives up, refused logins included.
    const transport = await NatsTransport.connect({ servers: tokenServer.url, auth: { token }, reconnectTimeWaitMs: 50, reconnectJitterMs: 0 });
    transports.push(transport);
    const errors = new Errors(transport);
    let reconnects = 0;
    transport.onStatus((status) => void (status.type === 'reconnected' && reconnects++));
    transport.subscribe('echo', (message) => transport.publish(message.reply ?? '', message.data));
    assert.equal([...(await transport.request('echo', new Uint8Array([1, 2]), { timeoutMs: 5_000 }))], [1, 2]);
    // The server comes back with another token: logins are refused, again and again...
    writeFileSync(join(dir, 'token.conf'), `authorization { token: "${secret()}" }\n`);
    await tokenServer.restart();
    await until(() => errors.seen.filter((error) => /Authorization Violation/.test(error.message)).length >= 3, 'three refused logins');
    assert.not.ok(errors.seen.some((error) => error.message.includes(token)), 'the token is in no error');
    // ...until it takes ours again: the transport is back, its subscription with it.
    writeFileSync(join(dir, 'token.conf'), `authorization { token: "${token}" }\n`);
    await tokenServer.restart();
    await until(() => reconnects >= 1, 'the reconnect');
    assert.equal([...(await transport.request('echo', new Uint8Array([3]), { timeoutMs: 5_000 }))], [3]);
    assert.is(reconnects, 1, 'one reconnect reported for the outage');
    await transport.close();
    try {
      await connectAs(tokenServer.url, { token: 'wrong-token' });
      assert.unreachable('a wrong token must not connect');
    } catch (error) {
      assert.ok(isTidelogError(error, 'DISCONNECTED'), String(error));
      assert.match(error.message, /Authorization Violation/);
    }
  } finally {
    await tokenServer.stop();
  }
});

test('TLS with a CA and a client certificate, as an NKey user (seed as text, and from a file; nats:// and tls:// urls)', async () => {
  if (spawnSync('openssl', ['version']).status !== 0) throw new Error('openssl is not installed: the TLS test cannot make its certificates');
  const certs = makeCertificates(join(dir, 'tls'));
  const user = nkeys.createUser();
  const seed = new TextDecoder().decode(user.getSeed());
  const seedFile = join(dir, 'tls', 'user.nk');
  writeFileSync(seedFile, `${seed}\n`);
  const tlsServer = await startServer(
    'tls',
    `tls {\n  cert_file: "${certs.serverCert}"\n  key_file: "${certs.serverKey}"\n  ca_file: "${certs.ca}"\n  verify: true\n}\nauthorization { users = [ { nkey: "${user.getPublicKey()}" } ] }\n`,
  );
  try {
    const tls = { caFile: certs.ca, certFile: certs.clientCert, keyFile: certs.clientKey };
    for (const [url, auth] of [
      [tlsServer.url, { nkeySeed: seed, tls }],
      [tlsServer.url.replace('nats://', 'tls://'), { nkeySeedFile: seedFile, tls }],
    ] as Array<[string, NatsAuthOptions]>) {
      const transport = await connectAs(url, auth);
      transport.subscribe('echo', (message) => transport.publish(message.reply ?? '', message.data));
      assert.equal([...(await transport.request('echo', new Uint8Array([7]), { timeoutMs: 5_000 }))], [7], url);
      await transport.close();
    }
    const refusedWith = async (auth: NatsAuthOptions, why: RegExp, what: string): Promise<void> => {
      try {
        // A refused client certificate shows as a handshake that never completes: a short connect timeout.
        const transport = await NatsTransport.connect({ servers: tlsServer.url, auth, maxReconnectAttempts: 0, connectTimeoutMs: 1_500 });
        transports.push(transport);
        assert.unreachable(what);
      } catch (error) {
        assert.ok(isTidelogError(error, 'DISCONNECTED'), String(error));
        assert.match(error.message, why, what);
      }
    };
    await refusedWith({ nkeySeed: seed, tls: { caFile: certs.ca } }, /timeout|certificate/, 'no client certificate (the server ends the handshake)');
    await refusedWith({ nkeySeed: seed, tls: { certFile: certs.clientCert, keyFile: certs.clientKey } }, /unable to verify the first certificate/, 'no caFile: the server\'s CA is unknown');
    await refusedWith({ nkeySeed: new TextDecoder().decode(nkeys.createUser().getSeed()), tls }, /Authorization Violation/, 'another NKey');
    // Without tls options the client still upgrades (the server requires TLS), and cannot verify the server.
    await refusedWith({ nkeySeed: seed }, /unable to verify the first certificate/, 'no TLS options');
  } finally {
    await tlsServer.stop();
  }
});

// ── operator mode: .creds files ─────────────────────────────────────────────────────────

test('creds files (operator mode): a node and a producer whose user JWTs carry the documented permissions', async () => {
  const operator = nkeys.createOperator();
  const account = nkeys.createAccount();
  const nodeUser = nkeys.createUser();
  const producerUser = nkeys.createUser();
  const opJwtPath = join(dir, 'operator.jwt');
  writeFileSync(opJwtPath, signJwt(operator, operator.getPublicKey(), { type: 'operator' }));
  const accountJwt = signJwt(operator, account.getPublicKey(), { type: 'account', limits: { subs: -1, data: -1, payload: -1, imports: -1, exports: -1, wildcards: true, conn: -1, leaf: -1 } });
  const credsServer = await startServer('operator', `operator: "${opJwtPath}"\nresolver: MEMORY\nresolver_preload: {\n  ${account.getPublicKey()}: "${accountJwt}"\n}\n`);
  let node: TidelogNode | null = null;
  try {
    const nodePermissions = { pub: { allow: [`${NS}.>`] }, sub: { allow: [`${NS}.>`, '_INBOX.>'] }, resp: { max: 1, ttl: 60_000_000_000 } };
    const producerPermissions = { pub: { allow: [`${NS}.append`, `${NS}.shard.*.append`, `${NS}.info`] }, sub: { allow: ['_INBOX_producer.>'] } };
    const nodeCreds = writeCreds('node', account, nodeUser, nodePermissions);
    const producerCreds = writeCreds('producer', account, producerUser, producerPermissions);

    const nodeTransport = await connectAs(credsServer.url, { credsFile: nodeCreds }, 'creds-node');
    const config = loadConfig({
      env: {},
      overrides: { nodeId: 'creds-node', namespace: NS, dataDir: join(dir, 'creds-node'), router: ROUTER, wal: { fsync: 'off' }, metrics: { enabled: false }, log: { level: 'silent' } },
    });
    node = await startNode({ config, transport: nodeTransport, logger: pino({ level: 'silent' }) });

    const producer = await connectAs(credsServer.url, { credsFile: producerCreds, inboxPrefix: '_INBOX_producer' });
    const errors = new Errors(producer);
    assert.equal(await appendTo(producer, 1, eventsOfShard(1, 6)), [1, 6]);
    producer.publish(replicationSubject(NS, 1, 'creds-node', 'append'), new Uint8Array([0x80]));
    await errors.violation('publish', replicationSubject(NS, 1, 'creds-node', 'append'));
    producer.subscribe(subjects.shardAppend(1), () => assert.unreachable('no requests for a producer'), { queue: subjects.shardQueue(1) });
    await errors.violation('subscription', subjects.shardAppend(1), subjects.shardQueue(1));
  } finally {
    await node?.stop();
    await credsServer.stop();
  }
});

test.after(async () => {
  serve?.kill();
  for (const transport of transports) await transport.close().catch(() => undefined);
  await server?.stop();
  removeDir(dir);
});

// ── certificates, JWTs, the CLI ─────────────────────────────────────────────────────────

/** A throwaway CA, a server certificate for 127.0.0.1 and a client certificate, all signed by it. */
function makeCertificates(into: string): { ca: string; serverCert: string; serverKey: string; clientCert: string; clientKey: string } {
  mkdirSync(into, { recursive: true });
  const path = (name: string): string => join(into, name);
  const openssl = (args: string[]): void => {
    const result = spawnSync('openssl', args, { encoding: 'utf8' });
    assert.is(result.status, 0, `openssl ${args.join(' ')}:\n${result.stderr}`);
  };
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl(['req', '-x509', ...ec, '-keyout', path('ca-key.pem'), '-out', path('ca.pem'), '-days', '1', '-subj', '/CN=tidelog test CA']);
  for (const [name, extensions] of [
    ['server', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n'],
    ['client', 'extendedKeyUsage=clientAuth\n'],
  ] as const) {
    writeFileSync(path(`${name}.ext`), extensions);
    openssl(['req', ...ec, '-keyout', path(`${name}-key.pem`), '-out', path(`${name}.csr`), '-subj', `/CN=tidelog test ${name}`]);
    openssl(['x509', '-req', '-in', path(`${name}.csr`), '-CA', path('ca.pem'), '-CAkey', path('ca-key.pem'), '-CAcreateserial', '-out', path(`${name}.pem`), '-days', '1', '-extfile', path(`${name}.ext`)]);
  }
  return { ca: path('ca.pem'), serverCert: path('server.pem'), serverKey: path('server-key.pem'), clientCert: path('client.pem'), clientKey: path('client-key.pem') };
}

/** A NATS JWT (v2 claims) signed by `issuer`, as nsc makes them. */
function signJwt(issuer: ReturnType<typeof nkeys.createOperator>, subject: string, nats: Record<string, unknown>): string {
  const encode = (value: unknown): string => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');
  const claims: Record<string, unknown> = { iat: Math.floor(Date.now() / 1000), iss: issuer.getPublicKey(), name: subject.slice(0, 8), sub: subject, nats: { ...nats, version: 2 } };
  claims.jti = createHash('sha256').update(JSON.stringify(claims)).digest('base64url').toUpperCase();
  const signed = `${encode({ typ: 'JWT', alg: 'ed25519-nkey' })}.${encode(claims)}`;
  return `${signed}.${Buffer.from(issuer.sign(new TextEncoder().encode(signed))).toString('base64url')}`;
}

/** A .creds file for `user` of `account` with `permissions` (pub, sub, resp), as `nsc generate creds` writes it. */
function writeCreds(name: string, account: ReturnType<typeof nkeys.createAccount>, user: ReturnType<typeof nkeys.createUser>, permissions: Record<string, unknown>): string {
  const jwt = signJwt(account, user.getPublicKey(), { type: 'user', ...permissions, subs: -1, data: -1, payload: -1 });
  const seed = new TextDecoder().decode(user.getSeed());
  const path = join(dir, `${name}.creds`);
  writeFileSync(path, `-----BEGIN NATS USER JWT-----\n${jwt}\n------END NATS USER JWT------\n\n************************* IMPORTANT *************************\nNKEY Seed printed below can be used to sign and prove identity.\n\n-----BEGIN USER NKEY SEED-----\n${seed}\n------END USER NKEY SEED------\n`);
  return path;
}

/** The CLI as a child (not spawnSync: the serve child's pipes must keep draining meanwhile). */
function runCli(args: string[], env: Record<string, string>): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', MAIN, ...args], { cwd: REPO, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  return within(new Promise((resolveRun) => child.once('close', (status) => resolveRun({ status, stdout, stderr }))), `tidelog ${args[0]}`);
}

test.run();
