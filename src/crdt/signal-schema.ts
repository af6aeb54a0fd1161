// The signal schema: which u8 signal types exist, what each means to the CRDT state, and how it
// decays and is counted. Invariant: a SignalSchema value has passed `parseSignalSchema`, so
// ids and names are unique, half-lives within [1 ms, 100 years] (so λ = ln 2 / half-life is a
// finite positive float64 and decay never meets ∞ or 0·∞), windows strictly ascending and
// divisible into whole-second buckets; the state code relies on that and does not re-check.
//
// Config file (config/signals.json):
//   { "version": 1, "bucketsPerWindow": 60, "signals": [
//       { "id": 1, "name": "view", "kind": "score", "halfLifeSeconds": 86400, "windows": ["1h", "24h", "7d"] },
//       { "id": 200, "name": "hide", "kind": "flag", "flag": "hidden", "value": true } ] }
// A score signal feeds decayed scores, windowed counts and weight sums; a flag signal sets a
// last-writer-wins boolean on the entity (hide/unhide) and is not counted.

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { TidelogError } from '../errors.ts';

export interface SignalWindow {
  /** As written in the config, e.g. "24h". */
  name: string;
  seconds: number;
  /** The granularity of the window's bucket ring: seconds / bucketCount. */
  bucketSeconds: number;
  bucketCount: number;
}

export interface ScoreSignal {
  kind: 'score';
  id: number;
  name: string;
  halfLifeSeconds: number;
  /** λ = ln 2 / half-life, per nanosecond. */
  decayPerNs: number;
  windows: readonly SignalWindow[];
}

export interface FlagSignal {
  kind: 'flag';
  id: number;
  name: string;
  flag: string;
  /** Index of `flag` in SignalSchema.flags. */
  flagIndex: number;
  value: boolean;
}

export type SignalType = ScoreSignal | FlagSignal;

export interface SignalSchema {
  version: 1;
  bucketsPerWindow: number;
  /** Ascending by id. */
  signals: readonly SignalType[];
  /** 256 slots indexed by the u8 signal type. */
  byId: readonly (SignalType | undefined)[];
  byName: ReadonlyMap<string, SignalType>;
  /** Flag names, sorted; a flag's index is its position here. */
  flags: readonly string[];
  /** Hex digest of the normalised schema; states built on different schemas never merge. */
  fingerprint: string;
  /** The config form (round-trips through parseSignalSchema). */
  source: SignalSchemaConfig;
}

export interface SignalSchemaConfig {
  version: 1;
  bucketsPerWindow?: number;
  signals: (
    | { id: number; name: string; kind: 'score'; halfLifeSeconds: number; windows: string[] }
    | { id: number; name: string; kind: 'flag'; flag: string; value: boolean }
  )[];
}

export const DEFAULT_SIGNAL_SCHEMA_PATH = fileURLToPath(new URL('../../config/signals.json', import.meta.url));
export const DEFAULT_BUCKETS_PER_WINDOW = 24;
const MAX_WINDOWS = 8;
/** Shorter half-lives decay to nothing within microseconds; λ would approach float overflow. */
export const MIN_HALF_LIFE_SECONDS = 0.001;
/** Longer ones hardly decay at all; λ would approach float underflow. */
export const MAX_HALF_LIFE_SECONDS = 100 * 366 * 86400;
const MAX_WINDOW_SECONDS = 366 * 86400;
const NAME_PATTERN = /^[a-z][a-z0-9_]{0,31}$/;
const DURATION_PATTERN = /^([1-9]\d{0,6})(s|m|h|d)$/;
const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };

export function loadSignalSchema(path: string = DEFAULT_SIGNAL_SCHEMA_PATH): SignalSchema {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (cause) {
    throw new TidelogError('IO_ERROR', `cannot read signal schema ${path}`, { cause, details: { path } });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    throw new TidelogError('SCHEMA_INVALID', `signal schema ${path} is not valid JSON`, { cause, details: { path } });
  }
  return parseSignalSchema(json);
}

/** The schema in config/signals.json. */
export function defaultSignalSchema(): SignalSchema {
  return loadSignalSchema(DEFAULT_SIGNAL_SCHEMA_PATH);
}

/** Validates a schema config; every problem is SCHEMA_INVALID with `details.path`. */
export function parseSignalSchema(json: unknown): SignalSchema {
  const root = expectObject(json, '$', ['version', 'bucketsPerWindow', 'signals']);
  if (root.version !== 1) fail('$.version', 'version must be 1');
  const bucketsPerWindow = root.bucketsPerWindow ?? DEFAULT_BUCKETS_PER_WINDOW;
  if (!Number.isInteger(bucketsPerWindow) || (bucketsPerWindow as number) < 1 || (bucketsPerWindow as number) > 3600) {
    fail('$.bucketsPerWindow', 'bucketsPerWindow must be an integer 1..3600');
  }
  const buckets = bucketsPerWindow as number;
  if (!Array.isArray(root.signals) || root.signals.length === 0 || root.signals.length > 256) {
    fail('$.signals', 'signals must be an array of 1..256 signal types');
  }
  const rawSignals = root.signals as unknown[];
  const seenIds = new Set<number>();
  const seenNames = new Set<string>();
  const parsed: (Omit<FlagSignal, 'flagIndex'> | ScoreSignal)[] = [];
  rawSignals.forEach((raw, index) => {
    const path = `$.signals[${index}]`;
    const kind = (raw as { kind?: unknown } | null)?.kind;
    const fields =
      kind === 'flag' ? ['id', 'name', 'kind', 'flag', 'value'] : ['id', 'name', 'kind', 'halfLifeSeconds', 'windows'];
    const signal = expectObject(raw, path, fields);
    if (kind !== 'score' && kind !== 'flag') fail(`${path}.kind`, 'kind must be "score" or "flag"');
    const id = signal.id;
    if (!Number.isInteger(id) || (id as number) < 0 || (id as number) > 255) fail(`${path}.id`, 'id must be a u8');
    if (seenIds.has(id as number)) fail(`${path}.id`, `duplicate signal id ${String(id)}`);
    seenIds.add(id as number);
    const name = signal.name;
    if (typeof name !== 'string' || !NAME_PATTERN.test(name)) {
      fail(`${path}.name`, 'name must match /^[a-z][a-z0-9_]{0,31}$/');
    }
    if (seenNames.has(name as string)) fail(`${path}.name`, `duplicate signal name "${String(name)}"`);
    seenNames.add(name as string);
    if (kind === 'flag') {
      if (typeof signal.flag !== 'string' || !NAME_PATTERN.test(signal.flag)) {
        fail(`${path}.flag`, 'flag must match /^[a-z][a-z0-9_]{0,31}$/');
      }
      if (typeof signal.value !== 'boolean') fail(`${path}.value`, 'value must be a boolean');
      parsed.push({ kind, id: id as number, name: name as string, flag: signal.flag as string, value: signal.value as boolean });
      return;
    }
    const halfLifeSeconds = signal.halfLifeSeconds;
    // The negated form also rejects NaN.
    if (
      typeof halfLifeSeconds !== 'number' ||
      !(halfLifeSeconds >= MIN_HALF_LIFE_SECONDS && halfLifeSeconds <= MAX_HALF_LIFE_SECONDS)
    ) {
      fail(`${path}.halfLifeSeconds`, `halfLifeSeconds must be a number from ${MIN_HALF_LIFE_SECONDS} to ${MAX_HALF_LIFE_SECONDS}`);
    }
    const decayPerNs = Math.LN2 / (halfLifeSeconds * 1e9);
    if (!(Number.isFinite(decayPerNs) && decayPerNs > 0)) {
      fail(`${path}.halfLifeSeconds`, 'the decay rate ln 2 / halfLife must be finite and positive');
    }
    parsed.push({
      kind,
      id: id as number,
      name: name as string,
      halfLifeSeconds,
      decayPerNs,
      windows: parseWindows(signal.windows, `${path}.windows`, buckets),
    });
  });

  const flags = [...new Set(parsed.flatMap((signal) => (signal.kind === 'flag' ? [signal.flag] : [])))].sort();
  const signals: SignalType[] = parsed
    .map((signal): SignalType => (signal.kind === 'flag' ? { ...signal, flagIndex: flags.indexOf(signal.flag) } : signal))
    .sort((a, b) => a.id - b.id);
  const byId = new Array<SignalType | undefined>(256).fill(undefined);
  for (const signal of signals) byId[signal.id] = signal;
  const source: SignalSchemaConfig = {
    version: 1,
    bucketsPerWindow: buckets,
    signals: signals.map((signal) =>
      signal.kind === 'flag'
        ? { id: signal.id, name: signal.name, kind: 'flag', flag: signal.flag, value: signal.value }
        : {
            id: signal.id,
            name: signal.name,
            kind: 'score',
            halfLifeSeconds: signal.halfLifeSeconds,
            windows: signal.windows.map((window) => window.name),
          },
    ),
  };
  const fingerprint = createHash('sha256').update(JSON.stringify(source)).digest('hex').slice(0, 32);
  return {
    version: 1,
    bucketsPerWindow: buckets,
    signals,
    byId,
    byName: new Map(signals.map((signal) => [signal.name, signal])),
    flags,
    fingerprint,
    source,
  };
}

function parseWindows(raw: unknown, path: string, bucketsPerWindow: number): SignalWindow[] {
  if (!Array.isArray(raw) || raw.length > MAX_WINDOWS) fail(path, `windows must be an array of at most ${MAX_WINDOWS}`);
  const windows: SignalWindow[] = [];
  (raw as unknown[]).forEach((name, index) => {
    const match = typeof name === 'string' ? DURATION_PATTERN.exec(name) : null;
    if (!match) fail(`${path}[${index}]`, 'a window is a duration like "90s", "15m", "1h" or "7d"');
    const seconds = Number(match[1]) * UNIT_SECONDS[match[2]];
    if (seconds > MAX_WINDOW_SECONDS) fail(`${path}[${index}]`, 'a window is at most 366d');
    if (seconds % bucketsPerWindow !== 0) {
      fail(`${path}[${index}]`, `a window must divide into ${bucketsPerWindow} whole-second buckets`);
    }
    const previous = windows[windows.length - 1];
    if (previous && seconds <= previous.seconds) {
      fail(`${path}[${index}]`, `windows must be strictly ascending and unique (${previous.name} then ${name as string})`);
    }
    windows.push({ name: name as string, seconds, bucketSeconds: seconds / bucketsPerWindow, bucketCount: bucketsPerWindow });
  });
  return windows;
}

function expectObject(value: unknown, path: string, allowed: string[]): Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) fail(path, 'must be an object');
  for (const key of Object.keys(value as object)) {
    if (!allowed.includes(key)) fail(`${path}.${key}`, `unknown field "${key}"`);
  }
  return value as Record<string, unknown>;
}

function fail(path: string, message: string): never {
  throw new TidelogError('SCHEMA_INVALID', `${path}: ${message}`, { details: { path } });
}
