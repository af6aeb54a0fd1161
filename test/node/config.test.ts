// Also keeps config/default.json and config/node.schema.json in step with the zod schema:
// `TIDELOG_WRITE_CONFIG=1 npx tsx test/run.ts node/config` rewrites them.
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { nkeys } from '@nats-io/transport-node';
import { DEFAULT_SIGNAL_SCHEMA_PATH } from '../../src/crdt/index.ts';
import { isTidelogError } from '../../src/errors.ts';
import { CONFIG_ENV, configArtifacts, defaultConfig, loadConfig, nodeConfigJsonSchema, nodeConfigSchema, type LoadConfigOptions } from '../../src/node/config.ts';
import { withTempDir } from '../support/wal-fixtures.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const NKEY_SEED = new TextDecoder().decode(nkeys.createUser().getSeed());

/** The CONFIG_INVALID a load throws, with its context. */
function configFailure(options: LoadConfigOptions): { path?: string; source?: string; problems: Array<{ path: string; source: string }> } {
  try {
    loadConfig(options);
  } catch (error) {
    assert.ok(isTidelogError(error, 'CONFIG_INVALID'), String(error));
    return error.context as { path?: string; source?: string; problems: Array<{ path: string; source: string }> };
  }
  throw new Error('expected CONFIG_INVALID');
}

async function withConfigFile(content: string, run: (file: string) => void): Promise<void> {
  await withTempDir(async (dir) => {
    const file = join(dir, 'node.json');
    writeFileSync(file, content);
    run(file);
  }, 'config');
}

test('config - config/default.json and config/node.schema.json are generated from the schema', () => {
  for (const [path, content] of Object.entries(configArtifacts())) {
    const file = join(ROOT, path);
    if (process.env.TIDELOG_WRITE_CONFIG === '1') writeFileSync(file, content);
    assert.is(readFileSync(file, 'utf8'), content, `${path} is stale: run TIDELOG_WRITE_CONFIG=1 npx tsx test/run.ts node/config`);
  }
});

test('config - config/default.json loads as a config file to the defaults (its relative dataDir taken relative to config/)', () => {
  const fromFile = loadConfig({ file: join(ROOT, 'config', 'default.json'), env: {} });
  const expected = { ...defaultConfig(), $schema: undefined, dataDir: join(ROOT, 'config', 'data'), signals: DEFAULT_SIGNAL_SCHEMA_PATH };
  assert.equal({ ...fromFile, $schema: undefined }, expected);
});

test('config - defaults: a single router, namespace tidelog, the WAL defaults, the shipped signal schema', () => {
  const config = loadConfig({ env: {} });
  assert.is(config.namespace, 'tidelog');
  assert.equal(config.router, { strategy: 'single' });
  assert.equal(config.wal, {
    fsync: 'full',
    segmentBytes: 16 << 20,
    batchMaxEvents: 1000,
    batchLingerMs: 0,
    dedupWindowMs: 60_000,
    dedupMaxEvents: 1 << 20,
    syncIntervalMs: 100,
    maxPendingEvents: 1_000_000,
    snapshotLogRatio: 1,
    snapshotMinLogBytes: 64 << 20,
    snapshotMaxBytesPerSecond: 64 << 20,
  });
  assert.equal(config.retention, { maxAgeMs: 0, maxBytes: 0 }, 'retention is off unless configured');
  assert.equal(config.limits, { maxRequestEvents: 32_768, maxRequestBytes: 1 << 20, maxSessions: 100_000, maxRunsPerSession: 64 });
  assert.equal(config.metrics, { enabled: true, port: 8322, host: '127.0.0.1' }, 'monitoring is on by default, at 8322');
  assert.is(config.signals, DEFAULT_SIGNAL_SCHEMA_PATH);
  assert.is(config.nodeId, '');
});

test('config - layers: file over defaults, env over file, overrides over env', async () => {
  await withConfigFile(
    JSON.stringify({ namespace: 'from-file', wal: { batchMaxEvents: 500 }, metrics: { port: 9100 }, router: { strategy: 'hash', shards: 4 } }),
    (file) => {
      const fileOnly = loadConfig({ file, env: {} });
      assert.is(fileOnly.namespace, 'from-file');
      assert.is(fileOnly.wal.batchMaxEvents, 500);
      assert.is(fileOnly.wal.segmentBytes, 16 << 20, 'the rest of wal keeps its defaults');
      assert.equal(fileOnly.router, { strategy: 'hash', shards: 4 });
      const env = { TIDELOG_NAMESPACE: 'from-env', TIDELOG_METRICS_PORT: '9200', TIDELOG_NATS_SERVERS: ' nats://a:4222, nats://b:4222 ,', TIDELOG_FSYNC: 'off' };
      const withEnv = loadConfig({ file, env });
      assert.is(withEnv.namespace, 'from-env');
      assert.is(withEnv.metrics.port, 9200);
      assert.equal(withEnv.nats.servers, ['nats://a:4222', 'nats://b:4222']);
      assert.is(withEnv.wal.fsync, 'off');
      assert.is(withEnv.wal.batchMaxEvents, 500);
      const withFlags = loadConfig({ file, env, overrides: { namespace: 'from-flag', router: { strategy: 'single' }, wal: { batchLingerMs: 2 } } });
      assert.is(withFlags.namespace, 'from-flag');
      assert.equal(withFlags.router, { strategy: 'single' }, 'a router replaces the one below it whole');
      assert.is(withFlags.wal.batchLingerMs, 2);
      assert.is(withFlags.wal.batchMaxEvents, 500);
    },
  );
});

test('config - every documented environment variable sets its field', () => {
  const values: Record<string, [string, unknown]> = {
    TIDELOG_NODE_ID: ['node-7', 'node-7'],
    TIDELOG_NAMESPACE: ['ns_1', 'ns_1'],
    TIDELOG_NATS_SERVERS: ['nats://x:1', ['nats://x:1']],
    TIDELOG_NATS_EMBEDDED: ['true', true],
    TIDELOG_DATA_DIR: ['/var/lib/tidelog', '/var/lib/tidelog'],
    TIDELOG_FSYNC: ['normal', 'normal'],
    TIDELOG_METRICS_ENABLED: ['false', false],
    TIDELOG_METRICS_PORT: ['9464', 9464],
    TIDELOG_METRICS_HOST: ['0.0.0.0', '0.0.0.0'],
    TIDELOG_LOG_LEVEL: ['debug', 'debug'],
    TIDELOG_SIGNALS: ['/etc/tidelog/signals.json', '/etc/tidelog/signals.json'],
    TIDELOG_NATS_USER: ['tidelog-node', 'tidelog-node'],
    TIDELOG_NATS_PASS: ['s3cret', 's3cret'],
    TIDELOG_NATS_TOKEN: ['t0ken', 't0ken'],
    TIDELOG_NATS_NKEY_SEED: [NKEY_SEED, NKEY_SEED],
    TIDELOG_NATS_NKEY_SEED_FILE: ['/etc/tidelog/node.nk', '/etc/tidelog/node.nk'],
    TIDELOG_NATS_CREDS: ['/etc/tidelog/node.creds', '/etc/tidelog/node.creds'],
    TIDELOG_NATS_INBOX_PREFIX: ['_INBOX_node', '_INBOX_node'],
    TIDELOG_NATS_TLS_CA: ['/etc/tidelog/ca.pem', '/etc/tidelog/ca.pem'],
    TIDELOG_NATS_TLS_CERT: ['/etc/tidelog/node.pem', '/etc/tidelog/node.pem'],
    TIDELOG_NATS_TLS_KEY: ['/etc/tidelog/node-key.pem', '/etc/tidelog/node-key.pem'],
  };
  // Variables valid only in pairs get their partner.
  const partners: Record<string, Record<string, string>> = {
    TIDELOG_NATS_USER: { TIDELOG_NATS_PASS: 'p' },
    TIDELOG_NATS_PASS: { TIDELOG_NATS_USER: 'u' },
    TIDELOG_NATS_TLS_CERT: { TIDELOG_NATS_TLS_KEY: '/k.pem' },
    TIDELOG_NATS_TLS_KEY: { TIDELOG_NATS_TLS_CERT: '/c.pem' },
  };
  assert.equal(Object.keys(values).sort(), Object.keys(CONFIG_ENV).sort());
  for (const [name, [text, expected]] of Object.entries(values)) {
    let field: unknown = loadConfig({ env: { ...partners[name], [name]: text } });
    for (const part of CONFIG_ENV[name].path) field = (field as Record<string, unknown>)[part];
    assert.equal(field, expected, name);
  }
});

test('config - an out-of-range value is CONFIG_INVALID naming the field and the file', async () => {
  await withConfigFile(JSON.stringify({ wal: { batchMaxEvents: 2_000_000 } }), (file) => {
    const failure = configFailure({ file, env: {} });
    assert.is(failure.path, 'wal.batchMaxEvents');
    assert.is(failure.source, `file ${file}`);
  });
});

test('config - a bad environment value is CONFIG_INVALID naming the variable', () => {
  const failure = configFailure({ env: { TIDELOG_METRICS_PORT: 'nine' } });
  assert.is(failure.path, 'metrics.port');
  assert.is(failure.source, 'env TIDELOG_METRICS_PORT');
  assert.is(configFailure({ env: { TIDELOG_FSYNC: 'sometimes' } }).source, 'env TIDELOG_FSYNC');
  assert.is(configFailure({ env: { TIDELOG_NAMESPACE: 'a.b' } }).path, 'namespace');
  assert.is(configFailure({ env: { TIDELOG_NATS_EMBEDDED: 'maybe' } }).path, 'nats.embedded');
  assert.is(configFailure({ env: { TIDELOG_NATS_SERVERS: ' , ' } }).path, 'nats.servers');
});

test('config - a bad flag is CONFIG_INVALID naming the flag layer', () => {
  const failure = configFailure({ env: {}, overrides: { limits: { maxSessions: 0 } } });
  assert.is(failure.path, 'limits.maxSessions');
  assert.is(failure.source, 'flag');
});

test('config - unknown fields are CONFIG_INVALID, each named', async () => {
  await withConfigFile(JSON.stringify({ wal: { batchMaxEvent: 5 }, colour: 'blue' }), (file) => {
    const failure = configFailure({ file, env: {} });
    assert.equal(failure.problems.map((problem) => problem.path).sort(), ['colour', 'wal.batchMaxEvent']);
    assert.ok(failure.problems.every((problem) => problem.source === `file ${file}`));
  });
  await withConfigFile('{"__proto__": {"namespace": "x"}}', (file) => {
    assert.is(configFailure({ file, env: {} }).path, '__proto__');
  });
});

test('config - router specs are checked by the router: gaps and overlaps are CONFIG_INVALID', () => {
  const max = (2n ** 64n - 1n).toString();
  const gap = { strategy: 'range' as const, ranges: [{ shard: 0, from: '0', to: '9' }, { shard: 1, from: '11', to: max }] };
  assert.is(configFailure({ env: {}, overrides: { router: gap } }).path, 'router');
  assert.is(configFailure({ env: {}, overrides: { router: { strategy: 'hash', shards: 0 } } }).path, 'router.shards');
  const failure = configFailure({ env: {}, overrides: { router: { strategy: 'modulo' } as never } });
  assert.is(failure.path, 'router.strategy');
  const good = { strategy: 'range' as const, ranges: [{ shard: 1, from: '10', to: max }, { shard: 0, from: '0', to: '9' }] };
  assert.equal(loadConfig({ env: {}, overrides: { router: good } }).router, good);
});

test('config - an unreadable, non-JSON or non-object file is CONFIG_INVALID', async () => {
  configFailure({ file: join(ROOT, 'config', 'no-such-file.json'), env: {} });
  await withConfigFile('{ not json', (file) => void configFailure({ file, env: {} }));
  await withConfigFile('[1, 2]', (file) => void configFailure({ file, env: {} }));
});

test('config - the JSON Schema describes every field, and files may name it in $schema', () => {
  const schema = nodeConfigJsonSchema() as { properties: Record<string, { properties?: Record<string, unknown> }>; additionalProperties: boolean };
  assert.equal(Object.keys(schema.properties).sort(), Object.keys(nodeConfigSchema.shape).sort());
  assert.equal(Object.keys(schema.properties.wal.properties ?? {}).sort(), Object.keys(defaultConfig().wal).sort());
  assert.is(schema.additionalProperties, false);
  assert.is(loadConfig({ env: {}, overrides: { $schema: './node.schema.json' } }).namespace, 'tidelog');
});

test('config - the cluster example (config/cluster) loads, each node in the membership; a node outside it, a missing node id and R > nodes are CONFIG_INVALID', () => {
  for (const index of [1, 2, 3]) {
    const config = loadConfig({ file: join(ROOT, 'config', 'cluster', `node-${index}.json`), env: {} });
    assert.is(config.nodeId, `node-${index}`);
    assert.equal(config.cluster.nodes, ['node-1', 'node-2', 'node-3']);
    assert.is(config.cluster.replicationFactor, 3);
  }
  const cluster = { nodes: ['a', 'b', 'c'] };
  const codeOf = (overrides: LoadConfigOptions['overrides']): string => {
    try {
      loadConfig({ env: {}, overrides });
    } catch (error) {
      if (isTidelogError(error)) return `${error.code} ${error.message}`;
      throw error;
    }
    return 'ok';
  };
  assert.match(codeOf({ nodeId: 'd', cluster }), /^CONFIG_INVALID .*nodeId: "d" is not one of cluster.nodes/);
  assert.match(codeOf({ cluster }), /^CONFIG_INVALID .*nodeId: must be set in a cluster/);
  assert.match(codeOf({ nodeId: 'a', cluster: { nodes: ['a', 'b'], replicationFactor: 3 } }), /^CONFIG_INVALID .*cluster.replicationFactor: is 3, but the cluster has 2 nodes/);
  assert.match(codeOf({ nodeId: 'a', cluster: { nodes: ['a', 'a', 'b'] } }), /^CONFIG_INVALID .*cluster.nodes: lists a node id twice/);
  assert.match(codeOf({ nodeId: 'a', cluster, wal: { fsync: 'normal' } }), /^CONFIG_INVALID .*wal.fsync: must be "full" in a cluster/);
  assert.match(codeOf({ nodeId: 'a', cluster: { ...cluster, heartbeatMs: 400, leaderTimeoutMs: 1000 } }), /^CONFIG_INVALID .*cluster.heartbeatMs: is 400: at most a third/);
  assert.match(codeOf({ nodeId: 'a', cluster: { ...cluster, requestTimeoutMs: 2000 } }), /^CONFIG_INVALID .*cluster.requestTimeoutMs: is 2000: must be below/);
  assert.match(codeOf({ nodeId: 'a', cluster, wal: { batchMaxEvents: 100_000 } }), /^CONFIG_INVALID .*wal.batchMaxEvents: is 100000: at most 16384 in a cluster/);
  assert.is(codeOf({ nodeId: 'b', cluster }), 'ok');
});

test('config - the example nats-server config of a cluster is valid (nats-server -t)', () => {
  const result = spawnSync('nats-server', ['-t', '-c', join(ROOT, 'config', 'cluster', 'nats-server-1.conf')], { encoding: 'utf8' });
  assert.is(result.status, 0, `${result.stdout}${result.stderr}`);
  assert.match(`${result.stdout}${result.stderr}`, /is valid/);
});

test.run();
