// `tidelog chaos`, the short fixed-seed version CI runs (the long one: `npm run chaos`, 10
// minutes): seed 1521 schedules a nats-server killed (SIGKILL) and restarted, a node whose WAL
// fdatasync fails (EIO: its lanes stop, its leaders step down, it is restarted), and a node's
// wall clock jumping, under load. The run must
// end with the checker's verdict on every replica's own files: nothing acknowledged lost or
// twice, equal logs and state, and every fault followed by convergence.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { ChaosSummary } from '../../src/cli/chaos.ts';
import { runCli } from './harness.ts';

const test = suite('cli chaos');

test('chaos - seed 1521, 30 s: a nats-server killed, an fsync EIO, a clock jump; nothing acknowledged lost or twice, every replica equal', () => {
  const result = runCli(['chaos', '--seconds', '30', '--seed', '1521', '--shards', '2', '--rate', '2000', '--json'], { timeoutMs: 400_000 });
  assert.is(result.status, 0, `${result.stdout}\n${result.stderr}`);
  const summary = JSON.parse(result.stdout.trim().split('\n').filter((line) => line.startsWith('{')).pop() ?? '{}') as ChaosSummary;
  assert.equal(
    summary.faults.map((fault) => fault.kind),
    ['nats-kill', 'disk-eio', 'clock-jump'],
    'the seed replays its schedule',
  );
  assert.ok(summary.faults.every((fault) => fault.convergedMs !== null), 'the replicas converged after every fault');
  const { report } = summary;
  assert.ok(report.ok, result.stdout);
  assert.is(report.lost, 0);
  assert.is(report.duplicated, 0);
  assert.ok(report.events.acked > 10_000, `acked ${report.events.acked}`);
  assert.ok(report.readsChecked > 10_000, `reads checked ${report.readsChecked}`);
  assert.ok(report.entitiesChecked > 0, 'CRDT state was compared');
  // Every node's replica of every shard was opened and read from its files.
  for (const node of ['node-1', 'node-2', 'node-3']) for (const shard of [0, 1]) assert.match(result.stdout, new RegExp(`${node} shard ${shard}: \\d+ committed events read`));
  assert.match(result.stdout, /PASS: nothing acknowledged lost/);
});

test('chaos - --acks takes quorum or leader; anything else is a usage error before any cluster starts', () => {
  const result = runCli(['chaos', '--seconds', '5', '--acks', 'all']);
  assert.is(result.status, 2, result.stderr);
  assert.match(result.stderr, /--acks <mode>.*Allowed choices are quorum, leader/s);
  assert.match(runCli(['chaos', '--help']).stdout, /--acks <mode>/);
});

test.run();
