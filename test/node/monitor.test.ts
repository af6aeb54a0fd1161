// The monitoring endpoint (src/node/monitor.ts): the latency window's percentiles, the
// timeline's differences and ring, health, and a real node's HTTP endpoints — /healthz turning
// 503 when a shard's fsync fails, /status with a timeline that saw the traffic, /metrics, the
// page, and the default port falling back to a free one when taken.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { createProducer } from '../../src/client/index.ts';
import { DEFAULT_MONITOR_PORT, loadConfig, type ConfigOverrides } from '../../src/node/config.ts';
import { NodeMetrics } from '../../src/node/metrics.ts';
import { LatencyWindow, Timeline, healthOf } from '../../src/node/monitor.ts';
import { startNode, type TidelogNode } from '../../src/node/node.ts';
import { InProcessBus, InProcessTransport } from '../../src/transport/in-process.ts';
import type { StatusReply } from '../../src/transport/messages.ts';
import type { FileIo } from '../../src/wal/index.ts';
import { FaultyFileIo } from '../support/faulty-file-io.ts';
import { removeDir, tempDir } from '../support/wal-fixtures.ts';
import { untilAsync } from '../support/waits.ts';

test('monitor - the latency window gives p50 and p99 within a bucket (6 %) and starts over after take()', () => {
  const window = new LatencyWindow();
  assert.equal(window.take(), { count: 0, p50Ms: 0, p99Ms: 0 }, 'an empty interval');
  for (let index = 1; index <= 1000; index++) window.record(index / 100); // 0.01 .. 10 ms, uniform
  const taken = window.take();
  assert.is(taken.count, 1000);
  assert.ok(taken.p50Ms >= 5 && taken.p50Ms <= 5 * 1.06, `p50 ${taken.p50Ms} ≈ 5 ms`);
  assert.ok(taken.p99Ms >= 9.9 && taken.p99Ms <= 9.9 * 1.06, `p99 ${taken.p99Ms} ≈ 9.9 ms`);
  assert.equal(window.take(), { count: 0, p50Ms: 0, p99Ms: 0 }, 'the next interval starts empty');
  window.record(1e9); // beyond the last bucket: counted there, not lost
  assert.is(window.take().count, 1);
});

test('monitor - the timeline records differences per interval, keeps the newest `capacity` points, oldest first', () => {
  const timeline = new Timeline(3);
  const acks = new LatencyWindow();
  timeline.sample(1000, { events: 100, fsyncs: 10, fsyncTotalUs: 5_000 }, acks);
  assert.equal(timeline.points()[0], { atMs: 1000, events: 0, acks: 0, ackP50Ms: 0, ackP99Ms: 0, fsyncs: 0, fsyncMeanMs: 0 }, 'the first sample is the baseline');
  acks.record(2);
  timeline.sample(2000, { events: 350, fsyncs: 14, fsyncTotalUs: 13_000 }, acks);
  const second = timeline.points()[1];
  assert.is(second.events, 250);
  assert.is(second.fsyncs, 4);
  assert.is(second.fsyncMeanMs, 2, '8 ms over 4 fsyncs');
  assert.is(second.acks, 1);
  for (const atMs of [3000, 4000, 5000]) timeline.sample(atMs, { events: 350, fsyncs: 14, fsyncTotalUs: 13_000 }, acks);
  assert.equal(timeline.points().map((point) => point.atMs), [3000, 4000, 5000], 'the ring keeps the newest three, in order');
});

test('monitor - health: serving with no failed shard is ok; else one reason per problem', () => {
  const shard = (index: number, failure?: string): StatusReply['shards'][number] => ({
    shard: index,
    role: 'leader',
    epoch: 1,
    lastSeq: 0,
    hwm: 0,
    checkpointSeq: 0,
    pendingEvents: 0,
    segments: 1,
    appliedSeq: 0,
    entities: 0,
    ...(failure === undefined ? {} : { failure }),
  });
  const status: StatusReply = { v: 1, t: 'status', nodeId: 'n', uptimeMs: 1, state: 'serving', sessions: 0, shards: [shard(0), shard(1)] };
  assert.equal(healthOf(status), { ok: true, reasons: [] });
  const sick = healthOf({ ...status, state: 'stopping', shards: [shard(0), shard(1, 'FSYNC_FAILED')] });
  assert.is(sick.ok, false);
  assert.equal(sick.reasons, ['node state is stopping', 'shard 1 failed: FSYNC_FAILED']);
});

interface Running {
  node: TidelogNode;
  bus: InProcessBus;
  url: string;
  close(): Promise<void>;
}

async function startMonitored(metrics: ConfigOverrides['metrics'], io?: FileIo): Promise<Running> {
  const dir = tempDir('monitor');
  const bus = new InProcessBus();
  const config = loadConfig({
    env: {},
    overrides: { namespace: 'montest', dataDir: dir, router: { strategy: 'hash', shards: 2 }, wal: { fsync: 'full', batchLingerMs: 0 }, metrics, log: { level: 'silent' } },
  });
  const transport = new InProcessTransport({ bus });
  let node: TidelogNode;
  try {
    node = await startNode({ config, transport, logger: pino({ level: 'silent' }), io });
  } catch (error) {
    await transport.close();
    removeDir(dir);
    throw error;
  }
  return {
    node,
    bus,
    url: `http://127.0.0.1:${node.metricsPort}`,
    async close() {
      await node.stop().catch(() => undefined);
      await transport.close();
      removeDir(dir);
    },
  };
}

test('monitor - a node serves /healthz, /status with a timeline of its traffic, /metrics and the page; a failed fsync turns /healthz 503', async () => {
  const io = new FaultyFileIo();
  const running = await startMonitored({ port: 0 }, io);
  const client = new InProcessTransport({ bus: running.bus });
  try {
    assert.ok(running.node.metricsPort !== null && running.node.metricsPort > 0, 'a free port was bound');
    const health = await fetch(`${running.url}/healthz`);
    assert.is(health.status, 200);
    assert.equal(await health.json(), { ok: true, reasons: [] });
    const producer = await createProducer({ transport: client, namespace: 'montest', producerId: 'monitor-test' });
    const events = Array.from({ length: 200 }, (_, index) => ({ entityId: BigInt(index + 1), signalType: 1, weight: 1, timestampNs: BigInt(index) }));
    let sent = 0;
    // Traffic until a second of the timeline has seen events, acks and fsyncs.
    await untilAsync(async () => {
      await producer.send(events);
      sent += events.length;
      const status = (await (await fetch(`${running.url}/status`)).json()) as { timeline: { points: Array<{ events: number; acks: number; fsyncs: number; ackP99Ms: number; fsyncMeanMs: number }> } };
      return status.timeline.points.some((point) => point.events > 0 && point.acks > 0 && point.fsyncs > 0 && point.ackP99Ms > 0 && point.fsyncMeanMs > 0);
    }, 'a timeline point with events, acks and fsyncs');
    await producer.close();
    const status = (await (await fetch(`${running.url}/status`)).json()) as StatusReply & { health: { ok: boolean }; timeline: { intervalMs: number; points: Array<{ events: number }> } };
    assert.is(status.nodeId, running.node.nodeId);
    assert.is(status.shards.length, 2);
    assert.is(status.health.ok, true);
    assert.is(status.timeline.intervalMs, 1000);
    const plotted = status.timeline.points.reduce((sum, point) => sum + point.events, 0);
    assert.ok(plotted > 0 && plotted <= sent, `the timeline counts the events made durable (${plotted} of ${sent} sent)`);
    const metrics = await (await fetch(`${running.url}/metrics`)).text();
    assert.match(metrics, /tidelog_events_appended_total\{[^}]*shard="0"[^}]*\} \d+/);
    const page = await fetch(`${running.url}/`);
    assert.is(page.headers.get('content-type'), 'text/html; charset=utf-8');
    assert.match(await page.text(), /<canvas id="p-ingest"/);
    assert.is((await fetch(`${running.url}/nope`)).status, 404);
    assert.is((await fetch(`${running.url}/status`, { method: 'POST' })).status, 405);
    // A shard whose fsync fails: unhealthy, and why.
    io.inject({ op: 'datasync', path: /wal-00001-/, code: 'EIO' });
    const failing = await createProducer({ transport: client, namespace: 'montest', producerId: 'monitor-fail', sendTimeoutMs: 500 });
    await failing.send(events).catch(() => undefined);
    await failing.close().catch(() => undefined);
    const sick = await fetch(`${running.url}/healthz`);
    assert.is(sick.status, 503);
    const body = (await sick.json()) as { ok: boolean; reasons: string[] };
    assert.is(body.ok, false);
    assert.ok(body.reasons.some((reason) => reason.startsWith('shard 1 failed: FSYNC_FAILED')), body.reasons.join('; '));
  } finally {
    await client.close();
    await running.close();
  }
});

test('monitor - the default port, when taken, falls back to a free one; another port that is taken stops the start; enabled: false serves nothing', async () => {
  const holder = createServer();
  // Take the default port (if something else already has it, it is taken all the same).
  await new Promise<void>((resolve) => {
    holder.once('error', () => resolve());
    holder.listen(DEFAULT_MONITOR_PORT, '127.0.0.1', () => resolve());
  });
  try {
    const fallback = await startMonitored({ port: DEFAULT_MONITOR_PORT });
    try {
      assert.ok(fallback.node.metricsPort !== null && fallback.node.metricsPort !== DEFAULT_MONITOR_PORT, `serving on ${fallback.node.metricsPort}`);
      assert.is((await fetch(`${fallback.url}/healthz`)).status, 200);
      const taken = fallback.node.metricsPort!;
      const error = await startMonitored({ port: taken }).then(
        async (running) => {
          await running.close();
          return null;
        },
        (caught: unknown) => caught,
      );
      assert.ok(error instanceof Error && /cannot listen/.test(error.message), `a set port that is taken fails the start (${String(error)})`);
    } finally {
      await fallback.close();
    }
    const off = await startMonitored({ enabled: false });
    try {
      assert.is(off.node.metricsPort, null);
    } finally {
      await off.close();
    }
  } finally {
    await new Promise<void>((resolve) => holder.close(() => resolve()));
  }
});

test('monitor - every metric the Grafana dashboard (docs/grafana-dashboard.json) queries is one the node exports', async () => {
  const file = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'docs', 'grafana-dashboard.json');
  const dashboard = JSON.parse(readFileSync(file, 'utf8')) as { panels: Array<{ title: string; targets: Array<{ expr: string }> }> };
  const exported = new Set((await new NodeMetrics('n', () => []).registry.getMetricsAsJSON()).map((metric) => metric.name));
  const queried = new Set<string>();
  for (const panel of dashboard.panels) {
    assert.ok(panel.targets.length > 0, `panel ${panel.title} has a query`);
    for (const target of panel.targets) for (const [name] of target.expr.matchAll(/tidelog_[a-z0-9_]+/g)) queried.add(name);
  }
  assert.ok(queried.size >= 10, `the dashboard queries ${queried.size} metrics`);
  for (const name of queried) {
    const metric = name.replace(/_(bucket|sum|count)$/, '');
    assert.ok(exported.has(metric), `${name} (panel query) is exported by the node`);
  }
});

test.run();
