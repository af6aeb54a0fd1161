import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { isTidelogError, type TidelogError } from '../../src/errors.ts';
import {
  defaultSignalSchema,
  loadSignalSchema,
  MAX_HALF_LIFE_SECONDS,
  MIN_HALF_LIFE_SECONDS,
  parseSignalSchema,
} from '../../src/crdt/index.ts';

function expectInvalid(config: unknown, path: string): void {
  try {
    parseSignalSchema(config);
  } catch (error) {
    assert.ok(isTidelogError(error, 'SCHEMA_INVALID'), String(error));
    assert.is((error as TidelogError).context.path, path);
    return;
  }
  assert.unreachable(`expected SCHEMA_INVALID at ${path}`);
}

const view = { id: 1, name: 'view', kind: 'score', halfLifeSeconds: 3600, windows: ['1h', '24h'] };
const hide = { id: 9, name: 'hide', kind: 'flag', flag: 'hidden', value: true };

test('signal-schema - config/signals.json loads with scores and the hidden flag', () => {
  const schema = defaultSignalSchema();
  assert.is(schema.byName.get('view')?.id, 1);
  assert.is(schema.byId[200]?.name, 'hide');
  assert.equal(schema.flags, ['hidden']);
  const like = schema.byName.get('like');
  assert.ok(like?.kind === 'score');
  if (like?.kind === 'score') {
    assert.equal(
      like.windows.map((window) => [window.name, window.seconds, window.bucketSeconds]),
      [
        ['24h', 86400, 86400 / schema.bucketsPerWindow],
        ['7d', 604800, 604800 / schema.bucketsPerWindow],
      ],
    );
    assert.is(like.decayPerNs, Math.LN2 / (604800 * 1e9));
  }
});

test('signal-schema - the fingerprint follows the meaning, not the key order', () => {
  const a = parseSignalSchema({ version: 1, signals: [view, hide] });
  const b = parseSignalSchema({ version: 1, signals: [{ ...hide }, { windows: ['1h', '24h'], kind: 'score', name: 'view', id: 1, halfLifeSeconds: 3600 }] });
  const c = parseSignalSchema({ version: 1, signals: [{ ...view, halfLifeSeconds: 7200 }, hide] });
  assert.is(a.fingerprint, b.fingerprint);
  assert.is.not(a.fingerprint, c.fingerprint);
  assert.is(parseSignalSchema(a.source).fingerprint, a.fingerprint);
});

test('signal-schema - duplicate ids and names are errors', () => {
  expectInvalid({ version: 1, signals: [view, { ...hide, id: 1 }] }, '$.signals[1].id');
  expectInvalid({ version: 1, signals: [view, { ...hide, name: 'view' }] }, '$.signals[1].name');
});

test('signal-schema - non-positive half-lives are errors', () => {
  expectInvalid({ version: 1, signals: [{ ...view, halfLifeSeconds: 0 }] }, '$.signals[0].halfLifeSeconds');
  expectInvalid({ version: 1, signals: [{ ...view, halfLifeSeconds: -5 }] }, '$.signals[0].halfLifeSeconds');
  expectInvalid({ version: 1, signals: [{ ...view, halfLifeSeconds: Number.POSITIVE_INFINITY }] }, '$.signals[0].halfLifeSeconds');
});

// Regression: 1e-320 s passed as "positive and finite", but λ = ln 2 / half-life overflowed to
// ∞, scores became NaN and the state's own snapshot no longer decoded.
test('signal-schema - half-lives outside [1 ms, 100 years] are errors, so λ is finite and positive', () => {
  for (const halfLifeSeconds of [1e-320, 1e-300, 1e-9, 0.000_999, 100 * 366 * 86400 + 1, 1e300, Number.NaN]) {
    expectInvalid({ version: 1, signals: [{ ...view, halfLifeSeconds }] }, '$.signals[0].halfLifeSeconds');
  }
  for (const halfLifeSeconds of [MIN_HALF_LIFE_SECONDS, 1, MAX_HALF_LIFE_SECONDS]) {
    const signal = parseSignalSchema({ version: 1, signals: [{ ...view, halfLifeSeconds }] }).byId[1];
    assert.ok(signal?.kind === 'score' && Number.isFinite(signal.decayPerNs) && signal.decayPerNs > 0);
  }
});

test('signal-schema - unsorted, duplicate and malformed windows are errors', () => {
  expectInvalid({ version: 1, signals: [{ ...view, windows: ['24h', '1h'] }] }, '$.signals[0].windows[1]');
  expectInvalid({ version: 1, signals: [{ ...view, windows: ['1h', '60m'] }] }, '$.signals[0].windows[1]');
  expectInvalid({ version: 1, signals: [{ ...view, windows: ['1 hour'] }] }, '$.signals[0].windows[0]');
  expectInvalid({ version: 1, signals: [{ ...view, windows: ['0h'] }] }, '$.signals[0].windows[0]');
  expectInvalid({ version: 1, bucketsPerWindow: 7, signals: [{ ...view, windows: ['1h'] }] }, '$.signals[0].windows[0]');
  expectInvalid({ version: 1, signals: [{ ...view, windows: ['400d'] }] }, '$.signals[0].windows[0]');
});

test('signal-schema - structure errors name the offending path', () => {
  expectInvalid(null, '$');
  expectInvalid({ version: 2, signals: [view] }, '$.version');
  expectInvalid({ version: 1, signals: [] }, '$.signals');
  expectInvalid({ version: 1, signals: [view], extra: true }, '$.extra');
  expectInvalid({ version: 1, signals: [{ ...view, kind: 'gauge' }] }, '$.signals[0].kind');
  expectInvalid({ version: 1, signals: [{ ...view, id: 256 }] }, '$.signals[0].id');
  expectInvalid({ version: 1, signals: [{ ...view, name: 'View' }] }, '$.signals[0].name');
  expectInvalid({ version: 1, signals: [{ ...hide, value: 'yes' }] }, '$.signals[0].value');
  expectInvalid({ version: 1, signals: [{ ...hide, halfLifeSeconds: 3 }] }, '$.signals[0].halfLifeSeconds');
  expectInvalid({ version: 1, bucketsPerWindow: 0, signals: [view] }, '$.bucketsPerWindow');
});

test('signal-schema - loadSignalSchema reads a file; bad JSON is SCHEMA_INVALID, a missing file IO_ERROR', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tidelog-schema-'));
  try {
    const good = join(dir, 'good.json');
    writeFileSync(good, JSON.stringify({ version: 1, signals: [view, hide] }));
    assert.is(loadSignalSchema(good).signals.length, 2);
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, '{ "version": 1, ');
    assert.throws(() => loadSignalSchema(bad), (error: unknown) => isTidelogError(error, 'SCHEMA_INVALID'));
    assert.throws(() => loadSignalSchema(join(dir, 'missing.json')), (error: unknown) => isTidelogError(error, 'IO_ERROR'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
