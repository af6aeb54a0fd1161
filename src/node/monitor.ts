// The node's monitoring endpoint: one small HTTP server (loopback by default, like
// nats-server's 8222) serving
//   GET /metrics   Prometheus text (metrics.ts)
//   GET /healthz   200 {"ok":true} while the node serves and no shard failed, else 503 with why
//   GET /status    JSON: the node's status (the `{ns}.status` reply) and its timeline
//   GET /          a status page: per-shard leader, epoch, HWM and lag, and plots of ingest
//                  rate, ack latency and fsync latency over the last minutes
// The timeline is sampled once a second into a ring of fixed size (10 minutes), so serving it
// costs a copy of at most 600 points and recording an ack costs one array increment.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { TidelogError } from '../errors.ts';
import type { StatusReply } from '../transport/messages.ts';
import type { NodeMetrics } from './metrics.ts';

/** One second of the node's life, as the status page plots it. */
export interface TimelinePoint {
  /** Wall-clock ms at the end of the interval. */
  atMs: number;
  /** Events made durable in the interval, all shards. */
  events: number;
  /** Append requests answered in the interval, and their ack latency percentiles (ms; 0 when none). */
  acks: number;
  ackP50Ms: number;
  ackP99Ms: number;
  /** fdatasyncs in the interval, all shards, and their mean latency (ms; 0 when none). */
  fsyncs: number;
  fsyncMeanMs: number;
}

/** What the sampler reads each second: totals since start, all shards together. */
export interface TimelineTotals {
  events: number;
  fsyncs: number;
  fsyncTotalUs: number;
}

/** Latency buckets: 40 per decade from 10 µs to 100 s (a percentile is off by at most 6 %). */
const BUCKETS_PER_DECADE = 40;
const MIN_LATENCY_MS = 0.01;
const BUCKET_COUNT = 7 * BUCKETS_PER_DECADE;

/** Ack latencies of the current interval: a fixed log-scale histogram, emptied by take(). */
export class LatencyWindow {
  private readonly counts = new Uint32Array(BUCKET_COUNT);
  private total = 0;

  record(latencyMs: number): void {
    const bucket = latencyMs <= MIN_LATENCY_MS ? 0 : Math.min(BUCKET_COUNT - 1, Math.floor(Math.log10(latencyMs / MIN_LATENCY_MS) * BUCKETS_PER_DECADE));
    this.counts[bucket]++;
    this.total++;
  }

  /** The interval's count, p50 and p99 (each a bucket's upper bound), and a fresh interval. */
  take(): { count: number; p50Ms: number; p99Ms: number } {
    const count = this.total;
    const result = { count, p50Ms: this.percentile(0.5), p99Ms: this.percentile(0.99) };
    this.counts.fill(0);
    this.total = 0;
    return result;
  }

  private percentile(fraction: number): number {
    if (this.total === 0) return 0;
    const rank = Math.ceil(this.total * fraction);
    let seen = 0;
    for (let bucket = 0; bucket < BUCKET_COUNT; bucket++) {
      seen += this.counts[bucket];
      if (seen >= rank) return MIN_LATENCY_MS * 10 ** ((bucket + 1) / BUCKETS_PER_DECADE);
    }
    return MIN_LATENCY_MS * 10 ** (BUCKET_COUNT / BUCKETS_PER_DECADE);
  }
}

/** The last `capacity` seconds, oldest first. */
export class Timeline {
  private readonly ring: TimelinePoint[] = [];
  private next = 0;
  private previous: TimelineTotals | null = null;

  constructor(readonly capacity = 600) {}

  /** Closes an interval: totals now (differences to the previous call) and the acks window. */
  sample(atMs: number, totals: TimelineTotals, acks: LatencyWindow): void {
    const previous = this.previous ?? totals;
    this.previous = totals;
    const taken = acks.take();
    const fsyncs = Math.max(0, totals.fsyncs - previous.fsyncs);
    const point: TimelinePoint = {
      atMs,
      events: Math.max(0, totals.events - previous.events),
      acks: taken.count,
      ackP50Ms: round(taken.p50Ms),
      ackP99Ms: round(taken.p99Ms),
      fsyncs,
      // Counters start over when a shard's WAL is reopened (a snapshot install): never below 0.
      fsyncMeanMs: fsyncs === 0 ? 0 : round(Math.max(0, totals.fsyncTotalUs - previous.fsyncTotalUs) / fsyncs / 1000),
    };
    if (this.ring.length < this.capacity) this.ring.push(point);
    else this.ring[this.next] = point;
    this.next = (this.next + 1) % this.capacity;
  }

  points(): TimelinePoint[] {
    return this.ring.length < this.capacity ? this.ring.slice() : [...this.ring.slice(this.next), ...this.ring.slice(0, this.next)];
  }
}

function round(value: number): number {
  return Math.round(value * 1000) / 1000;
}

export interface Health {
  ok: boolean;
  /** Why not, one line each (empty when ok). */
  reasons: string[];
}

/** Healthy: the node serves and none of its shards failed or failed to open. */
export function healthOf(status: StatusReply): Health {
  const reasons: string[] = [];
  if (status.state !== 'serving') reasons.push(`node state is ${status.state}`);
  for (const shard of status.shards) {
    if (shard.failure !== undefined) reasons.push(`shard ${shard.shard} failed: ${shard.failure}${shard.failureMessage === undefined ? '' : ` (${shard.failureMessage})`}`);
  }
  return { ok: reasons.length === 0, reasons };
}

export interface MonitorSources {
  metrics: NodeMetrics;
  status: () => StatusReply;
  timeline: Timeline;
}

/** The HTTP server of /metrics, /healthz, /status and the status page. */
export class MonitorServer {
  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  /** Listens on host:port (0: a free port). IO_ERROR when it cannot (the port is taken). */
  static async listen(port: number, host: string, sources: MonitorSources): Promise<MonitorServer> {
    const server = createServer((request, response) => {
      serve(request, response, sources).catch((error: unknown) => {
        if (!response.headersSent) response.writeHead(500, { 'content-type': 'text/plain' });
        response.end(`${String(error)}\n`);
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (cause: NodeJS.ErrnoException) =>
        reject(new TidelogError('IO_ERROR', `monitoring: cannot listen on ${host}:${port} (${cause.code ?? cause.message})`, { cause, details: { errno: cause.code ?? null, port } })),
      );
      server.listen(port, host, () => resolve());
    });
    return new MonitorServer(server, (server.address() as AddressInfo).port);
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

async function serve(request: IncomingMessage, response: ServerResponse, sources: MonitorSources): Promise<void> {
  const path = (request.url ?? '/').split('?')[0];
  if (request.method !== 'GET' && request.method !== 'HEAD') {
    response.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('only GET\n');
    return;
  }
  switch (path) {
    case '/metrics': {
      const text = await sources.metrics.registry.metrics();
      response.writeHead(200, { 'content-type': sources.metrics.registry.contentType }).end(text);
      return;
    }
    case '/healthz': {
      const health = healthOf(sources.status());
      json(response, health.ok ? 200 : 503, health);
      return;
    }
    case '/status': {
      json(response, 200, { ...sources.status(), health: healthOf(sources.status()), timeline: { intervalMs: 1000, points: sources.timeline.points() } });
      return;
    }
    case '/':
    case '/index.html':
      response.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' }).end(STATUS_PAGE);
      return;
    default:
      response.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /, /status, /healthz or /metrics\n');
  }
}

function json(response: ServerResponse, code: number, body: unknown): void {
  response.writeHead(code, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(`${JSON.stringify(body)}\n`);
}

/**
 * The status page: no dependency, no build step. It fetches /status every 2 s and draws each
 * series on a canvas of its own (lines over what the timeline holds, up to its 10 minutes and
 * at least 10 s wide; the newest value in the title). Colours: ingest blue, ack p50 green and p99 orange, fsync purple.
 */
const STATUS_PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tidelog node</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #1d2433; background: #fafbfc; }
  h1 { font-size: 1.3rem; margin: 0 0 .2rem; } .sub { color: #5b6478; margin-bottom: 1rem; }
  .health { display: inline-block; padding: .1rem .5rem; border-radius: .8rem; font-weight: 600; }
  .ok { background: #d8f5dd; color: #176b2c; } .bad { background: #fde0e0; color: #9b1c1c; }
  table { border-collapse: collapse; margin: .5rem 0 1.2rem; background: #fff; }
  th, td { padding: .3rem .7rem; border-bottom: 1px solid #e3e6ec; text-align: right; }
  th { background: #f0f2f6; font-weight: 600; } td.l, th.l { text-align: left; }
  .plots { display: grid; grid-template-columns: repeat(auto-fill, minmax(420px, 1fr)); gap: 1rem; }
  figure { margin: 0; background: #fff; border: 1px solid #e3e6ec; border-radius: 6px; padding: .6rem; }
  figcaption { font-weight: 600; margin-bottom: .3rem; } canvas { width: 100%; height: 180px; display: block; }
  .key span { margin-right: 1rem; } .reasons { color: #9b1c1c; }
</style></head>
<body>
<h1>tidelog node <span id="node"></span> <span id="health" class="health"></span></h1>
<div class="sub" id="summary">loading…</div>
<div class="reasons" id="reasons"></div>
<table id="shards"><thead><tr><th>shard</th><th class="l">role</th><th class="l">leader</th><th>epoch</th><th>HWM</th><th>last seq</th><th>lag</th><th>pending</th><th>entities</th><th class="l">phase</th></tr></thead><tbody></tbody></table>
<div class="plots">
  <figure><figcaption id="t-ingest">ingest (events/s)</figcaption><canvas id="p-ingest" data-series="ingest"></canvas></figure>
  <figure><figcaption id="t-ack">ack latency (ms)</figcaption><canvas id="p-ack" data-series="ack"></canvas>
    <div class="key"><span style="color:#1a9850">p50</span><span style="color:#e66101">p99</span></div></figure>
  <figure><figcaption id="t-fsync">fsync latency, mean (ms)</figcaption><canvas id="p-fsync" data-series="fsync"></canvas></figure>
</div>
<script>
const COLORS = { events: '#2166ac', ackP50Ms: '#1a9850', ackP99Ms: '#e66101', fsyncMeanMs: '#7b3294' };
function text(id, value) { document.getElementById(id).textContent = value; }
function fmt(value) { return value >= 100 ? Math.round(value).toLocaleString() : value.toFixed(value >= 10 ? 1 : 2); }
// when(point): whether the series has a value there (a second without acks has no latency: the line breaks).
function plot(canvasId, points, keys, when) {
  const canvas = document.getElementById(canvasId);
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth * ratio, height = canvas.clientHeight * ratio;
  canvas.width = width; canvas.height = height;
  const g = canvas.getContext('2d');
  g.fillStyle = '#ffffff'; g.fillRect(0, 0, width, height);
  const left = 48 * ratio, bottom = 18 * ratio, top = 6 * ratio, right = 6 * ratio;
  // The window shown: what the timeline holds (up to its 10 minutes), at least 10 s.
  const endMs = points.length ? points[points.length - 1].atMs : Date.now();
  const spanMs = Math.max(10000, points.length ? endMs - points[0].atMs : 0);
  let max = 0;
  for (const p of points) for (const k of keys) max = Math.max(max, p[k]);
  max = max <= 0 ? 1 : max * 1.1;
  g.strokeStyle = '#e3e6ec'; g.fillStyle = '#5b6478'; g.lineWidth = 1; g.font = (11 * ratio) + 'px system-ui';
  for (let i = 0; i <= 4; i++) {
    const y = top + (height - top - bottom) * i / 4;
    g.beginPath(); g.moveTo(left, y); g.lineTo(width - right, y); g.stroke();
    g.fillText(fmt(max * (4 - i) / 4), 2 * ratio, y + 4 * ratio);
  }
  for (let i = 0; i <= 4; i++) {
    const agoS = spanMs / 1000 * (4 - i) / 4;
    const label = agoS === 0 ? 'now' : agoS >= 120 ? '-' + Math.round(agoS / 60) + 'm' : '-' + Math.round(agoS) + 's';
    g.fillText(label, left + (width - left - right) * i / 4 - (i === 4 ? 24 : 10) * ratio, height - 4 * ratio);
  }
  // Later series are drawn thinner on top, so a series equal to an earlier one still shows.
  keys.forEach((k, index) => {
    g.strokeStyle = COLORS[k]; g.lineWidth = (keys.length - index + 1) * 1.5 * ratio; g.beginPath();
    let started = false;
    for (const p of points) {
      const x = left + (width - left - right) * (1 - (endMs - p.atMs) / spanMs);
      const y = top + (height - top - bottom) * (1 - p[k] / max);
      if (x < left) continue;
      if (when && !when(p)) { started = false; continue; }
      if (started) g.lineTo(x, y); else { g.moveTo(x, y); started = true; }
    }
    g.stroke();
  });
}
async function refresh() {
  let status;
  try { status = await (await fetch('/status', { cache: 'no-store' })).json(); }
  catch (error) { text('summary', 'cannot reach the node: ' + error); return; }
  text('node', status.nodeId);
  const health = document.getElementById('health');
  health.textContent = status.health.ok ? 'healthy' : 'unhealthy';
  health.className = 'health ' + (status.health.ok ? 'ok' : 'bad');
  text('reasons', status.health.reasons.join('; '));
  text('summary', 'state ' + status.state + ' · pid ' + status.pid + ' · up ' + Math.round(status.uptimeMs / 1000) + ' s · ' + status.shards.length + ' shards · ' + status.sessions + ' producer sessions');
  const body = document.querySelector('#shards tbody');
  body.innerHTML = '';
  for (const s of status.shards) {
    const lag = s.followers && s.followers.length ? Math.max(...s.followers.map((f) => s.hwm - f.matchSeq)) : 0;
    const row = document.createElement('tr');
    for (const [value, left] of [[s.shard], [s.failure ? 'failed: ' + s.failure : s.role, true], [s.leader || (s.role === 'leader' ? status.nodeId : ''), true], [s.epoch], [s.hwm], [s.lastSeq], [lag], [s.pendingEvents], [s.entities], [s.phase || '', true]]) {
      const cell = document.createElement('td'); if (left) cell.className = 'l';
      cell.textContent = typeof value === 'number' ? value.toLocaleString() : value; row.appendChild(cell);
    }
    body.appendChild(row);
  }
  const points = status.timeline.points;
  const last = points[points.length - 1] || { events: 0, ackP50Ms: 0, ackP99Ms: 0, fsyncMeanMs: 0 };
  text('t-ingest', 'ingest: ' + fmt(last.events) + ' events/s');
  text('t-ack', 'ack latency: p50 ' + fmt(last.ackP50Ms) + ' ms, p99 ' + fmt(last.ackP99Ms) + ' ms');
  text('t-fsync', 'fsync latency, mean: ' + fmt(last.fsyncMeanMs) + ' ms');
  plot('p-ingest', points, ['events']);
  plot('p-ack', points, ['ackP99Ms', 'ackP50Ms'], (p) => p.acks > 0);
  plot('p-fsync', points, ['fsyncMeanMs'], (p) => p.fsyncs > 0);
  document.body.dataset.refreshed = String(Date.now());
}
refresh(); setInterval(refresh, 2000);
</script>
</body></html>
`;
