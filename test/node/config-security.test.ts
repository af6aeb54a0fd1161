// The node config's security side: nats.auth (validated with the transport's rules, errors
// naming field and source but never a secret), paths made absolute (a config file's relative
// paths against its folder, the environment's and flags' against the working directory), and
// redactConfig, what `tidelog serve` logs.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DEFAULT_SIGNAL_SCHEMA_PATH } from '../../src/crdt/index.ts';
import { isTidelogError } from '../../src/errors.ts';
import { loadConfig, PATH_FIELDS, redactConfig, type LoadConfigOptions } from '../../src/node/config.ts';
import { REDACTED } from '../../src/transport/nats.ts';
import { removeDir, tempDir } from '../support/wal-fixtures.ts';

function failure(options: LoadConfigOptions): { message: string; path?: string; source?: string; context: string } {
  try {
    loadConfig(options);
  } catch (error) {
    assert.ok(isTidelogError(error, 'CONFIG_INVALID'), String(error));
    const context = error.context as { path?: string; source?: string };
    return { message: error.message, path: context.path, source: context.source, context: JSON.stringify(error.context) };
  }
  throw new Error('expected CONFIG_INVALID');
}

test('config security - relative paths in a config file are taken relative to its folder, absolute ones as they are', () => {
  const dir = tempDir('config-paths');
  try {
    const folder = join(dir, 'etc', 'tidelog');
    mkdirSync(folder, { recursive: true });
    const file = join(folder, 'node.json');
    writeFileSync(
      file,
      JSON.stringify({
        dataDir: 'data',
        signals: '../signals.json',
        nats: { auth: { credsFile: 'secrets/node.creds', tls: { caFile: './ca.pem', certFile: '/abs/node.pem', keyFile: 'node-key.pem' } } },
      }),
    );
    const elsewhere = join(dir, 'cwd');
    const config = loadConfig({ file, env: {}, cwd: elsewhere });
    assert.is(config.dataDir, join(folder, 'data'));
    assert.is(config.signals, join(dir, 'etc', 'signals.json'));
    assert.is(config.nats.auth.credsFile, join(folder, 'secrets', 'node.creds'));
    assert.equal(config.nats.auth.tls, { caFile: join(folder, 'ca.pem'), certFile: '/abs/node.pem', keyFile: join(folder, 'node-key.pem') });
    // A file given by a relative path: its folder still decides, relative to cwd.
    const relative = loadConfig({ file: join('etc', 'tidelog', 'node.json'), env: {}, cwd: dir });
    assert.is(relative.dataDir, join(folder, 'data'));
    writeFileSync(file, JSON.stringify({ nats: { auth: { nkeySeedFile: 'seed.nk' } } }));
    assert.is(loadConfig({ file, env: {}, cwd: elsewhere }).nats.auth.nkeySeedFile, join(folder, 'seed.nk'));
  } finally {
    removeDir(dir);
  }
});

test('config security - relative paths from the environment, flags and defaults are taken relative to the working directory', () => {
  const dir = tempDir('config-paths');
  try {
    const file = join(dir, 'conf', 'node.json');
    mkdirSync(join(dir, 'conf'));
    writeFileSync(file, JSON.stringify({ dataDir: 'from-file', nats: { auth: { tls: { caFile: 'ca.pem' } } } }));
    const cwd = join(dir, 'work');
    const env = { TIDELOG_DATA_DIR: 'from-env', TIDELOG_NATS_CREDS: 'node.creds', TIDELOG_NATS_TLS_CERT: 'c.pem', TIDELOG_NATS_TLS_KEY: 'k.pem' };
    const config = loadConfig({ file, env, overrides: { signals: 'my-signals.json', nats: { auth: { tls: { keyFile: 'flag-key.pem' } } } }, cwd });
    assert.is(config.dataDir, join(cwd, 'from-env'), 'env over the file, relative to cwd');
    assert.is(config.nats.auth.credsFile, join(cwd, 'node.creds'));
    assert.is(config.signals, join(cwd, 'my-signals.json'), 'a flag, relative to cwd');
    assert.equal(config.nats.auth.tls, { caFile: join(dir, 'conf', 'ca.pem'), certFile: join(cwd, 'c.pem'), keyFile: join(cwd, 'flag-key.pem') }, 'each field by its own source');
    assert.is(loadConfig({ env: {}, cwd }).dataDir, join(cwd, 'data'), 'the default dataDir, relative to cwd');
    assert.is(loadConfig({ env: { TIDELOG_DATA_DIR: 'rel' } }).dataDir, join(process.cwd(), 'rel'), 'cwd defaults to the process\'s');
    // Every field listed as a path exists in the schema's output.
    const full = loadConfig({ env: { TIDELOG_NATS_CREDS: 'x', TIDELOG_NATS_TLS_CA: 'a', TIDELOG_NATS_TLS_CERT: 'b', TIDELOG_NATS_TLS_KEY: 'c' }, cwd });
    const nkey = loadConfig({ env: { TIDELOG_NATS_NKEY_SEED_FILE: 'n' }, cwd });
    for (const path of PATH_FIELDS) {
      let value: unknown = path.includes('nkeySeedFile') ? nkey : full;
      for (const key of path) value = (value as Record<string, unknown>)[key];
      assert.type(value, 'string', path.join('.'));
      assert.ok((value as string).startsWith(cwd) || value === DEFAULT_SIGNAL_SCHEMA_PATH, `${path.join('.')} is absolute: ${String(value)}`);
    }
  } finally {
    removeDir(dir);
  }
});

test('config security - "config/signals.json" names the shipped schema from any layer, not a path', () => {
  const dir = tempDir('config-paths');
  try {
    const file = join(dir, 'node.json');
    writeFileSync(file, JSON.stringify({ signals: 'config/signals.json' }));
    assert.is(loadConfig({ file, env: {} }).signals, DEFAULT_SIGNAL_SCHEMA_PATH);
    assert.is(loadConfig({ env: { TIDELOG_SIGNALS: 'config/signals.json' }, cwd: dir }).signals, DEFAULT_SIGNAL_SCHEMA_PATH);
  } finally {
    removeDir(dir);
  }
});

test('config security - nats.auth: one way to authenticate, pairs complete; CONFIG_INVALID names field and source, never the secret', () => {
  const secret = 'pa55-w0rd-x';
  const both = failure({ env: { TIDELOG_NATS_TOKEN: secret }, overrides: { nats: { auth: { user: 'u', pass: secret } } } });
  assert.is(both.path, 'nats.auth.token');
  assert.is(both.source, 'env TIDELOG_NATS_TOKEN');
  assert.match(both.message, /give one way to authenticate/);
  assert.not.match(both.message + both.context, secret);
  const userOnly = failure({ env: { TIDELOG_NATS_USER: 'node' } });
  assert.is(userOnly.path, 'nats.auth.pass');
  assert.match(userOnly.message, /is required with user/);
  assert.is(failure({ env: { TIDELOG_NATS_TLS_CERT: '/c.pem' } }).path, 'nats.auth.tls.keyFile');
  const badSeed = failure({ env: { TIDELOG_NATS_NKEY_SEED: `SU${secret}` } });
  assert.is(badSeed.path, 'nats.auth.nkeySeed');
  assert.not.match(badSeed.message + badSeed.context, secret);
  assert.is(failure({ overrides: { nats: { auth: { colour: 'blue' } as never } }, env: {} }).path, 'nats.auth.colour');
  assert.is(failure({ env: { TIDELOG_NATS_PASS: '' , TIDELOG_NATS_USER: 'u' } }).path, 'nats.auth.pass');
  const ok = loadConfig({ env: { TIDELOG_NATS_USER: 'node', TIDELOG_NATS_PASS: secret, TIDELOG_NATS_INBOX_PREFIX: '_INBOX_node' } });
  assert.equal(ok.nats.auth, { user: 'node', pass: secret, inboxPrefix: '_INBOX_node' });
  assert.equal(loadConfig({ env: {} }).nats.auth, {}, 'no auth by default');
});

test('config security - redactConfig: no secret left, urls included; the config itself untouched', () => {
  const secrets = ['pa55-w0rd-x', 't0k3n-y', 'url-pass-z'];
  const withPass = loadConfig({ env: { TIDELOG_NATS_USER: 'node', TIDELOG_NATS_PASS: secrets[0], TIDELOG_NATS_SERVERS: `nats://a:4222,nats://u:${secrets[2]}@b:4222` } });
  const redacted = redactConfig(withPass);
  assert.is(redacted.nats.auth.pass, REDACTED);
  assert.is(redacted.nats.auth.user, 'node');
  assert.equal(redacted.nats.servers, ['nats://a:4222', `nats://u:${REDACTED}@b:4222`]);
  const text = JSON.stringify(redacted);
  for (const value of secrets) assert.not.ok(text.includes(value), `${value} is not in the redacted config`);
  assert.is(withPass.nats.auth.pass, secrets[0], 'the config keeps its secret');
  const withToken = redactConfig(loadConfig({ env: { TIDELOG_NATS_TOKEN: secrets[1] } }));
  assert.is(withToken.nats.auth.token, REDACTED);
  const seed = 'SUAMLK2ZNL35WSMW37E7UD4VZ7ELPKW7DHC3BWBSD2GCZ7IUQQXZIORRBU';
  const withSeed = redactConfig(loadConfig({ env: { TIDELOG_NATS_NKEY_SEED: seed } }));
  assert.is(withSeed.nats.auth.nkeySeed, REDACTED);
  assert.not.ok(JSON.stringify(withSeed).includes(seed));
});

test.run();
