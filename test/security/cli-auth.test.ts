// The CLI's NATS credential flags (src/cli/options.ts): the flags commander parses, and how a
// client command (status, wal verify --repair-from) merges a config's nats.auth, TIDELOG_NATS_*
// and flags. Secrets have no flag. The end-to-end run of `tidelog status` with credentials from
// the environment is in nats-permissions.test.ts.
import { Command } from 'commander';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { addNatsAuthOptions, cliNatsAuth, natsAuthFromFlags, type NatsAuthFlags } from '../../src/cli/options.ts';

const test = suite('cli nats auth');

function parse(args: string[]): NatsAuthFlags {
  let parsed: NatsAuthFlags = {};
  const quiet = new Command('status').exitOverride().configureOutput({ writeErr: () => undefined });
  const command = addNatsAuthOptions(quiet).action((options: NatsAuthFlags) => {
    parsed = options;
  });
  command.parse(args, { from: 'user' });
  return parsed;
}

test('the flags: files and names, no secret', () => {
  const flags = parse([
    '--nats-user', 'consumer',
    '--nats-creds', 'c.creds',
    '--nats-nkey', 'u.nk',
    '--nats-inbox-prefix', '_INBOX_consumer',
    '--nats-tls-ca', 'ca.pem',
    '--nats-tls-cert', 'me.pem',
    '--nats-tls-key', 'me-key.pem',
  ]);
  assert.equal(flags, { natsUser: 'consumer', natsCreds: 'c.creds', natsNkey: 'u.nk', natsInboxPrefix: '_INBOX_consumer', natsTlsCa: 'ca.pem', natsTlsCert: 'me.pem', natsTlsKey: 'me-key.pem' });
  assert.equal(natsAuthFromFlags(flags), {
    user: 'consumer',
    credsFile: 'c.creds',
    nkeySeedFile: 'u.nk',
    inboxPrefix: '_INBOX_consumer',
    tls: { caFile: 'ca.pem', certFile: 'me.pem', keyFile: 'me-key.pem' },
  });
  const help = addNatsAuthOptions(new Command('status')).helpInformation();
  assert.not.match(help, /--nats-pass|--nats-token|--nats-nkey-seed/, 'secrets are never flags');
  for (const command of [['--nats-pass', 'x'], ['--nats-token', 'x']]) {
    assert.throws(() => parse(command), /unknown option/);
  }
});

test('merging: config nats.auth ← TIDELOG_NATS_* ← flags, field by field; paths from env and flags against cwd', () => {
  assert.is(cliNatsAuth({}, { env: {} }), undefined, 'nothing given: no auth');
  const env = { TIDELOG_NATS_USER: 'consumer', TIDELOG_NATS_PASS: 'pw', TIDELOG_NATS_TLS_CA: 'ca.pem', TIDELOG_FSYNC: 'not-read-here' };
  assert.equal(cliNatsAuth({ natsInboxPrefix: '_INBOX_consumer', natsTlsCert: 'c.pem', natsTlsKey: '/k.pem' }, { env, cwd: '/work' }), {
    user: 'consumer',
    pass: 'pw',
    inboxPrefix: '_INBOX_consumer',
    tls: { caFile: '/work/ca.pem', certFile: '/work/c.pem', keyFile: '/k.pem' },
  });
  const base = { user: 'node', pass: 'from-file', tls: { caFile: '/etc/tidelog/ca.pem' } };
  assert.equal(cliNatsAuth({ natsUser: 'repair' }, { base, env: { TIDELOG_NATS_PASS: 'from-env' }, cwd: '/work' }), {
    user: 'repair',
    pass: 'from-env',
    tls: { caFile: '/etc/tidelog/ca.pem' },
  });
  assert.equal(cliNatsAuth({ natsCreds: 'node.creds' }, { env: {}, cwd: '/srv' }), { credsFile: '/srv/node.creds' });
});

test.run();
