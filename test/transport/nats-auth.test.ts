// NatsAuthOptions without a server: what natsConnectSecurity hands the NATS client for each way
// to authenticate, the combinations it refuses (BAD_REQUEST naming the option, never a secret),
// files read at connect and again at each reconnect, credentials in urls, and redaction.
// The real-server side is test/security/nats-permissions.test.ts.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { nkeys } from '@nats-io/transport-node';
import { isTidelogError, type TidelogError } from '../../src/errors.ts';
import { natsAuthProblems, natsConnectSecurity, redactNatsAuth, redactServerUrl, REDACTED, type NatsAuthOptions } from '../../src/transport/nats.ts';
import { removeDir, tempDir } from '../support/wal-fixtures.ts';

const test = suite('nats auth options');

const SEED = new TextDecoder().decode(nkeys.createUser().getSeed());
const PUBLIC_KEY = nkeys.fromSeed(new TextEncoder().encode(SEED)).getPublicKey();

function refusal(run: () => unknown): TidelogError {
  try {
    run();
  } catch (error) {
    assert.ok(isTidelogError(error, 'BAD_REQUEST'), String(error));
    return error;
  }
  throw new Error('expected BAD_REQUEST');
}

/** A creds file as `nsc generate creds` writes it (the JWT need not verify here). */
function credsText(seed: string): string {
  const jwt = 'eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.eyJzdWIiOiJVIn0.c2ln';
  return `-----BEGIN NATS USER JWT-----\n${jwt}\n------END NATS USER JWT------\n\n***** IMPORTANT *****\n\n-----BEGIN USER NKEY SEED-----\n${seed}\n------END USER NKEY SEED------\n`;
}

test('user + pass and token go to the client as they are; no TLS unless asked', () => {
  assert.equal(natsConnectSecurity('nats://h:4222', { user: 'u', pass: 'p' }), { servers: ['nats://h:4222'], security: { user: 'u', pass: 'p' } });
  assert.equal(natsConnectSecurity(['nats://a:1', 'nats://b:2'], { token: 't' }), { servers: ['nats://a:1', 'nats://b:2'], security: { token: 't' } });
  assert.equal(natsConnectSecurity('nats://h:4222'), { servers: ['nats://h:4222'], security: {} });
});

test('an NKey seed (text or file) signs the server nonce with the seed\'s key', () => {
  const dir = tempDir('nats-auth');
  try {
    const file = join(dir, 'user.nk');
    writeFileSync(file, `${SEED}\n`);
    for (const auth of [{ nkeySeed: SEED }, { nkeySeedFile: file }] as NatsAuthOptions[]) {
      const { security } = natsConnectSecurity('nats://h:4222', auth);
      const authenticator = security.authenticator as (nonce?: string) => { nkey: string; sig: string };
      const answer = authenticator('nonce-1');
      assert.is(answer.nkey, PUBLIC_KEY);
      assert.ok(nkeys.fromPublic(PUBLIC_KEY).verify(new TextEncoder().encode('nonce-1'), nkeys.decode(answer.sig)), 'the signature verifies with the public key');
    }
  } finally {
    removeDir(dir);
  }
});

test('a creds file is read at connect and again at each (re)connect; a bad rewrite keeps the last good one', () => {
  const dir = tempDir('nats-auth');
  try {
    const file = join(dir, 'user.creds');
    writeFileSync(file, credsText(SEED));
    const { security } = natsConnectSecurity('nats://h:4222', { credsFile: file });
    const authenticator = security.authenticator as (nonce?: string) => { jwt: string; nkey: string };
    assert.is(authenticator('n').nkey, PUBLIC_KEY);
    const rotated = new TextDecoder().decode(nkeys.createUser().getSeed());
    writeFileSync(file, credsText(rotated));
    assert.is(authenticator('n').nkey, nkeys.fromSeed(new TextEncoder().encode(rotated)).getPublicKey(), 'rotated creds take effect at the next connect');
    writeFileSync(file, 'half-written');
    assert.is(authenticator('n').nkey, nkeys.fromSeed(new TextEncoder().encode(rotated)).getPublicKey(), 'a broken file keeps the last good creds');
  } finally {
    removeDir(dir);
  }
});

test('missing or malformed files fail at once, naming the option and the path, never the content', () => {
  const dir = tempDir('nats-auth');
  try {
    const missing = join(dir, 'nope.creds');
    const error = refusal(() => natsConnectSecurity('nats://h:4222', { credsFile: missing }));
    assert.match(error.message, /credsFile: cannot read .*nope\.creds \(ENOENT\)/);
    const notCreds = join(dir, 'seed.creds');
    writeFileSync(notCreds, `${SEED}\n`);
    const malformed = refusal(() => natsConnectSecurity('nats://h:4222', { credsFile: notCreds }));
    assert.match(malformed.message, /credsFile: .* is not a creds file/);
    assert.not.match(malformed.message, new RegExp(SEED));
    const notSeed = join(dir, 'bad.nk');
    writeFileSync(notSeed, 'SUNOTASEED\n');
    assert.match(refusal(() => natsConnectSecurity('nats://h:4222', { nkeySeedFile: notSeed })).message, /nkeySeedFile: .* is not an NKey seed/);
    assert.match(refusal(() => natsConnectSecurity('nats://h:4222', { tls: { caFile: join(dir, 'ca.pem') } })).message, /tls\.caFile: cannot read/);
  } finally {
    removeDir(dir);
  }
});

test('refused combinations: one way to authenticate, user with pass, cert with key; values never quoted', () => {
  const secret = 'hunter2-secret';
  const fields = (auth: NatsAuthOptions): string[] => natsAuthProblems(auth).map((problem) => problem.field);
  assert.equal(fields({ user: 'u' }), ['pass']);
  assert.equal(fields({ pass: secret }), ['user']);
  assert.equal(fields({ user: 'u', pass: secret, token: secret }), ['token']);
  assert.equal(fields({ token: secret, credsFile: '/c' }), ['credsFile']);
  assert.equal(fields({ nkeySeed: SEED, nkeySeedFile: '/s' }), ['nkeySeedFile']);
  assert.equal(fields({ nkeySeed: secret }), ['nkeySeed'], 'not a seed');
  const accountSeed = new TextDecoder().decode(nkeys.createAccount().getSeed());
  assert.match(natsAuthProblems({ nkeySeed: accountSeed })[0].message, /not a user's/);
  assert.equal(fields({ tls: { certFile: '/c' } }), ['tls.keyFile']);
  assert.equal(fields({ tls: { keyFile: '/k' } }), ['tls.certFile']);
  assert.equal(fields({ inboxPrefix: '_INBOX.*' }), ['inboxPrefix']);
  assert.equal(fields({ token: '' }), ['token']);
  assert.equal(fields({ user: 'u', pass: secret, inboxPrefix: '_INBOX_producer', tls: {} }), []);
  const error = refusal(() => natsConnectSecurity('nats://h:4222', { user: 'u', pass: secret, token: secret }));
  assert.not.match(error.message, new RegExp(secret));
  assert.not.match(JSON.stringify(error.context), new RegExp(secret));
});

test('TLS: tls (even {}) or a tls:// url requires it; the files go to the client by path', () => {
  const dir = tempDir('nats-auth');
  try {
    for (const name of ['ca.pem', 'c.pem', 'k.pem']) writeFileSync(join(dir, name), '-----BEGIN CERTIFICATE-----\n');
    const files = { caFile: join(dir, 'ca.pem'), certFile: join(dir, 'c.pem'), keyFile: join(dir, 'k.pem') };
    assert.equal(natsConnectSecurity('nats://h:4222', { tls: files }).security, { tls: files });
    assert.equal(natsConnectSecurity('nats://h:4222', { tls: {} }).security, { tls: {} });
    assert.equal(natsConnectSecurity('tls://h:4222').security, { tls: {} }, 'a tls:// url alone requires TLS');
  } finally {
    removeDir(dir);
  }
});

test('credentials in server urls: used as NATS clients do, taken out of the url, refused beside auth or when urls disagree', () => {
  assert.equal(natsConnectSecurity(['nats://u:p%40ss@a:1', 'nats://u:p%40ss@b:2']), { servers: ['nats://a:1', 'nats://b:2'], security: { user: 'u', pass: 'p@ss' } });
  assert.equal(natsConnectSecurity('nats://s3cr3t@a:1'), { servers: ['nats://a:1'], security: { token: 's3cr3t' } });
  assert.match(refusal(() => natsConnectSecurity('nats://u:p@a:1', { token: 't' })).message, /give them in one place/);
  assert.match(refusal(() => natsConnectSecurity(['nats://u:p@a:1', 'nats://v:q@b:2'])).message, /different credentials/);
});

test('redaction: pass, token and nkeySeed, and secrets in urls; user, paths and TLS stay', () => {
  const auth: NatsAuthOptions = { user: 'u', pass: 'p', token: 't', nkeySeed: SEED, credsFile: '/c', inboxPrefix: '_INBOX_x', tls: { caFile: '/ca' } };
  const redacted = redactNatsAuth(auth);
  assert.equal(redacted, { user: 'u', pass: REDACTED, token: REDACTED, nkeySeed: REDACTED, credsFile: '/c', inboxPrefix: '_INBOX_x', tls: { caFile: '/ca' } });
  assert.is(auth.pass, 'p', 'the original is untouched');
  assert.is(redactNatsAuth(undefined), undefined);
  assert.is(redactServerUrl('nats://u:p@h:4222'), `nats://u:${REDACTED}@h:4222`);
  assert.is(redactServerUrl('nats://tok@h:4222'), `nats://${REDACTED}@h:4222`);
  assert.is(redactServerUrl('nats://h:4222'), 'nats://h:4222');
  // Secrets pasted raw: userinfo runs to the last '@' (a review found these leaking).
  assert.is(redactServerUrl('nats://tok/abc+def=@h:4222'), `nats://${REDACTED}@h:4222`);
  assert.is(redactServerUrl('nats://u:se/cr#et@h:4222'), `nats://u:${REDACTED}@h:4222`);
  assert.is(redactServerUrl('nats://u:p@ss@h:4222'), `nats://u:${REDACTED}@h:4222`);
});

test.run();
