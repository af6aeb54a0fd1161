// The status page (GET / of the monitoring endpoint, src/node/monitor.ts) in a real browser:
// headless Chromium (Debian's `chromium`, which .ci/run installs) driven by playwright-core
// loads the page of a node under load; the test checks the health badge and the shard table,
// and decodes screenshots of the plots to check that each line was drawn in its colour.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { chromium, type Browser } from 'playwright-core';
import { PNG } from 'pngjs';
import { createProducer } from '../../src/client/index.ts';
import { loadConfig } from '../../src/node/config.ts';
import { startNode } from '../../src/node/node.ts';
import { InProcessBus, InProcessTransport } from '../../src/transport/in-process.ts';
import { removeDir, tempDir } from '../support/wal-fixtures.ts';
import { untilAsync } from '../support/waits.ts';

const CHROMIUM_PATHS = [process.env.TIDELOG_CHROMIUM ?? '', '/usr/bin/chromium', '/usr/bin/chromium-browser'];

/** Pixels of `png` within a small distance of the colour `hex` (anti-aliasing blends the edges). */
function pixelsOf(png: PNG, hex: string): number {
  const [r, g, b] = [1, 3, 5].map((at) => parseInt(hex.slice(at, at + 2), 16));
  let count = 0;
  for (let at = 0; at < png.data.length; at += 4) {
    if (Math.abs(png.data[at] - r) + Math.abs(png.data[at + 1] - g) + Math.abs(png.data[at + 2] - b) < 40) count++;
  }
  return count;
}

test('status page - draws the shard table and the ingest, ack latency and fsync plots of a node under load', async () => {
  const executablePath = CHROMIUM_PATHS.find((path) => path !== '' && existsSync(path));
  assert.ok(executablePath !== undefined, 'chromium is installed (apt-get install -y chromium; .ci/run does it)');
  const dir = tempDir('status-page');
  const bus = new InProcessBus();
  const transport = new InProcessTransport({ bus });
  const client = new InProcessTransport({ bus });
  const config = loadConfig({
    env: {},
    overrides: { namespace: 'pagetest', dataDir: dir, router: { strategy: 'hash', shards: 3 }, wal: { fsync: 'full', batchLingerMs: 0 }, metrics: { port: 0 }, log: { level: 'silent' } },
  });
  const node = await startNode({ config, transport, logger: pino({ level: 'silent' }) });
  const shots = mkdtempSync(join(tmpdir(), 'tidelog-status-page-'));
  let browser: Browser | null = null;
  try {
    const url = `http://127.0.0.1:${node.metricsPort}/`;
    const producer = await createProducer({ transport: client, namespace: 'pagetest', producerId: 'page-test' });
    let round = 0;
    // Load until the timeline holds three seconds with traffic: each plot has a line to draw.
    await untilAsync(async () => {
      const events = Array.from({ length: 300 }, (_, index) => ({ entityId: BigInt(round * 300 + index + 1), signalType: 1, weight: 1, timestampNs: BigInt(index) }));
      round++;
      await producer.send(events);
      return node.timeline().filter((point) => point.events > 0 && point.acks > 0 && point.fsyncs > 0).length >= 3;
    }, 'three timeline points with traffic', 30_000);
    await producer.close();
    browser = await chromium.launch({ executablePath, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
    const page = await browser.newPage({ viewport: { width: 1300, height: 900 }, deviceScaleFactor: 1 });
    const errors: string[] = [];
    page.on('pageerror', (error) => errors.push(String(error)));
    await page.goto(url);
    await page.waitForFunction('document.body.dataset.refreshed !== undefined', undefined, { timeout: 10_000 });
    assert.equal(errors, [], 'the page runs without script errors');
    assert.is(await page.textContent('#health'), 'healthy');
    assert.is(await page.textContent('#node'), node.nodeId);
    const rows = await page.$$eval('#shards tbody tr', (trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent)));
    assert.is(rows.length, 3, 'a row per shard');
    assert.equal(rows.map((row) => row[0]), ['0', '1', '2']);
    const status = node.status();
    rows.forEach((row, index) => assert.is(row[4], status.shards[index].hwm.toLocaleString('en-US'), `shard ${index}: its HWM`));
    writeFileSync(join(shots, 'page.png'), await page.screenshot({ fullPage: true }));
    const plots: Array<[string, string[]]> = [
      ['#p-ingest', ['#2166ac']],
      ['#p-ack', ['#1a9850', '#e66101']],
      ['#p-fsync', ['#7b3294']],
    ];
    for (const [selector, colours] of plots) {
      const png = PNG.sync.read(await page.locator(selector).screenshot());
      assert.ok(png.width > 300 && png.height > 100, `${selector} has a size (${png.width}×${png.height})`);
      for (const colour of colours) {
        const drawn = pixelsOf(png, colour);
        assert.ok(drawn > 30, `${selector}: a line of ${colour} was drawn (${drawn} pixels; screenshots in ${shots})`);
      }
    }
    assert.match((await page.textContent('#t-ingest')) ?? '', /^ingest: [\d,.]+ events\/s$/);
  } finally {
    await browser?.close();
    await node.stop();
    await transport.close();
    await client.close();
    removeDir(dir);
    rmSync(shots, { recursive: true, force: true });
  }
});

test.run();
