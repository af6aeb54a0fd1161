// `tidelog dev` (npm start) end to end, short: its own nats-server, a node, the demo producer,
// the read-back check; and the same on the in-process transport.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { runCli } from './harness.ts';

const test = suite('cli dev');

test('dev - runs a node on its own nats-server, sends, reads every acknowledged event back, exits 0', () => {
  const result = runCli(['dev', '--seconds', '1', '--shards', '2', '--senders', '2', '--batch', '100']);
  assert.is(result.status, 0, result.stderr);
  assert.match(result.stdout, /nats-server nats:\/\/127\.0\.0\.1:\d+/);
  assert.match(result.stdout, /read back [\d,]+ events .*: 0 missing, 0 different/);
  assert.match(result.stdout, /PASS/);
});

test('dev - --in-process runs the same without a nats-server', () => {
  const result = runCli(['dev', '--seconds', '1', '--shards', '1', '--senders', '2', '--batch', '50', '--in-process']);
  assert.is(result.status, 0, result.stderr);
  assert.match(result.stdout, /in-process transport/);
  assert.match(result.stdout, /PASS/);
});

test('dev --nodes 3 --chaos - a local cluster: leaders killed and restarted under the demo load, every acked event read back once', () => {
  const result = runCli(['dev', '--nodes', '3', '--chaos', '--chaos-every', '2', '--seconds', '7', '--shards', '2', '--senders', '4', '--batch', '200'], { timeoutMs: 300_000 });
  assert.is(result.status, 0, `${result.stdout}\n${result.stderr}`);
  assert.match(result.stdout, /NATS cluster of 3 servers: nats:\/\/127\.0\.0\.1:\d+/);
  assert.match(result.stdout, /chaos: [\d.]+ s: killed node-\d \(leader of shard \d\)/);
  assert.match(result.stdout, /durable on a quorum/);
  assert.match(result.stdout, /read back [\d,]+ events .*: 0 missing, 0 different/);
  assert.match(result.stdout, /PASS/);
});

test.run();
