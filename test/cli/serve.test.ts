// `tidelog serve` as a real process on a real nats-server: `tidelog status` sees it, /metrics
// serves Prometheus text, a bad config is refused with CONFIG_INVALID, SIGTERM stops it cleanly.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createProducer } from '../../src/client/index.ts';
import { pickFreePort } from '../../src/transport/nats-server-process.ts';
import { startTestNats, connectTestTransport } from '../support/nats-harness.ts';
import { NodeProcess } from '../support/node-process.ts';
import { removeDir, tempDir } from '../support/wal-fixtures.ts';
import { runCli } from './harness.ts';
import { serveOverrides } from '../../src/cli/serve.ts';
import { loadConfig } from '../../src/node/config.ts';

const test = suite('cli serve');

test('serve - status sees the node, /metrics serves its counters, SIGTERM exits 0', async () => {
  const dir = tempDir('serve');
  const server = await startTestNats();
  const transport = await connectTestTransport(server);
  let node: NodeProcess | null = null;
  try {
    const metricsPort = await pickFreePort();
    node = await NodeProcess.start({
      dir,
      config: { nodeId: 'serve-test', namespace: 'servetest', nats: { servers: [server.url] }, router: { strategy: 'hash', shards: 3 }, metrics: { port: metricsPort } },
    });
    const producer = await createProducer({ transport, namespace: 'servetest' });
    const acks = await producer.send(Array.from({ length: 300 }, (_, i) => ({ entityId: BigInt(i + 1), signalType: 2, weight: 1, timestampNs: BigInt(i) })));
    assert.is(acks.length, 300);
    await producer.close();

    // One node: stop at its answer; the long timeout only bounds a hang, never the test's pace.
    const status = runCli(['status', '--nats', server.url, '--namespace', 'servetest', '--json', '--nodes', '1', '--timeout-ms', '30000']);
    assert.is(status.status, 0, status.stderr);
    const replies = JSON.parse(status.stdout) as Array<{ nodeId: string; state: string; shards: Array<{ shard: number; hwm: number }> }>;
    assert.is(replies.length, 1);
    assert.is(replies[0].nodeId, 'serve-test');
    assert.is(replies[0].state, 'serving');
    assert.equal(replies[0].shards.map((s) => s.shard), [0, 1, 2]);
    assert.is(replies[0].shards.reduce((sum, s) => sum + s.hwm, 0), 300, 'every acked event is counted in some shard');
    const table = runCli(['status', '--nats', server.url, '--namespace', 'servetest', '--nodes', '1', '--timeout-ms', '30000']);
    assert.is(table.status, 0);
    assert.match(table.stdout, /serve-test/);

    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    assert.match(metrics, /tidelog_events_appended_total\{[^}]*shard="\d"[^}]*\} \d+/);
    const appended = [...metrics.matchAll(/^tidelog_events_appended_total\{[^}]*\} (\d+)$/gm)].reduce((sum, m) => sum + Number(m[1]), 0);
    assert.is(appended, 300);
    assert.match(metrics, /tidelog_shard_durable_seq\{/);
    assert.match(metrics, /^tidelog_shard_leader\{[^}]*\} 1$/m, 'a standalone node leads its shards');
    const hwms = [...metrics.matchAll(/^tidelog_shard_hwm\{[^}]*\} (\d+)$/gm)].reduce((sum, m) => sum + Number(m[1]), 0);
    assert.is(hwms, 300, 'the shards\' HWMs add up to what was appended');

    const noNode = runCli(['status', '--nats', server.url, '--namespace', 'nobody-here', '--timeout-ms', '100']);
    assert.is(noNode.status, 1, 'no node answered: exit 1');
    assert.is(await node.stop(), 0, 'SIGTERM: clean stop, exit 0');
    node = null;
  } finally {
    await node?.kill();
    await transport.close();
    await server.stop();
    removeDir(dir);
  }
});

test('serve - the common settings have flags, and the flags win over the environment', () => {
  const config = loadConfig({
    env: { TIDELOG_FSYNC: 'off', TIDELOG_LOG_LEVEL: 'debug' },
    overrides: serveOverrides({ shards: 8, fsync: 'normal', metricsPort: 0, logLevel: 'warn', nodeId: 'n-9', dataDir: '/tmp/tl', namespace: 'flags', nats: 'nats://a:1, nats://b:2' }),
  });
  assert.equal(config.router, { strategy: 'hash', shards: 8 });
  assert.is(config.wal.fsync, 'normal');
  assert.is(config.log.level, 'warn');
  assert.equal(config.metrics, { enabled: true, port: 0, host: '127.0.0.1' });
  assert.equal([config.nodeId, config.dataDir, config.namespace], ['n-9', '/tmp/tl', 'flags']);
  assert.equal(config.nats.servers, ['nats://a:1', 'nats://b:2']);
  assert.is(loadConfig({ env: {}, overrides: serveOverrides({ metrics: false }) }).metrics.enabled, false, '--no-metrics');
  const help = runCli(['serve', '--help']);
  for (const flag of ['--shards', '--fsync', '--metrics-port', '--no-metrics', '--log-level', '--salvage', '--nats-creds', '--nats-tls-ca']) assert.match(help.stdout, flag);
});

test('serve - a bad config file is refused with CONFIG_INVALID naming the field, exit 2 (a usage error)', () => {
  const dir = tempDir('serve-bad');
  try {
    const path = join(dir, 'bad.json');
    writeFileSync(path, JSON.stringify({ wal: { batchMaxEvents: 0 } }));
    const result = runCli(['serve', '--config', path]);
    assert.is(result.status, 2);
    assert.match(result.stderr, /CONFIG_INVALID/);
    assert.match(result.stderr, /wal\.batchMaxEvents/);
  } finally {
    removeDir(dir);
  }
});

test.run();
