// A node's configuration: one zod schema holds every field, bound and default, and everything
// else is derived from it — the NodeConfig type, config/default.json (the defaults) and
// config/node.schema.json (JSON Schema for editors; test/node/config.test.ts checks both files
// are in sync and rewrites them with TIDELOG_WRITE_CONFIG=1).
// Invariant: loadConfig returns a config that passed the schema, or throws CONFIG_INVALID
// naming the field and where its bad value came from.
//
// Layers, each over the one before: defaults ← file (JSON) ← environment ← overrides (CLI
// flags). Objects merge field by field; arrays, values and the `router` object replace.
// Paths (PATH_FIELDS) come out absolute: a relative one from the file is taken relative to
// the file's folder, one from the environment, a flag or the defaults to the working directory.
// Secrets (nats.auth.pass, token, nkeySeed) are never in an error message; redactConfig gives
// the config fit to log.

import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { z } from 'zod';
import { DEFAULT_SIGNAL_SCHEMA_PATH } from '../crdt/index.ts';
import { TidelogError } from '../errors.ts';
import { ShardRouter } from '../shard-map.ts';
import { DEFAULT_MAX_REQUEST_BYTES, DEFAULT_MAX_REQUEST_EVENTS } from '../transport/messages.ts';
import { natsAuthProblems, redactNatsAuth, redactServers } from '../transport/nats.ts';
import { DEFAULT_MAX_RUNS_PER_SESSION, DEFAULT_MAX_SESSIONS } from './session-store.ts';

const U64_DECIMAL = /^(0|[1-9][0-9]{0,19})$/;
const NAMESPACE = /^[A-Za-z0-9_-]{1,64}$/;
/** The value of `signals` that means the schema shipped with tidelog. */
export const DEFAULT_SIGNALS = 'config/signals.json';
/** The monitoring endpoint's default port (as nats-server's is 8222). */
export const DEFAULT_MONITOR_PORT = 8322;

const rangeSchema = z.strictObject({
  shard: z.int().min(0).max(65535),
  from: z.string().regex(U64_DECIMAL, 'must be a u64 as a decimal string'),
  to: z.string().regex(U64_DECIMAL, 'must be a u64 as a decimal string'),
});

const routerSchema = z
  .discriminatedUnion('strategy', [
    z.strictObject({ strategy: z.literal('single') }),
    z.strictObject({ strategy: z.literal('hash'), shards: z.int().min(1).max(65536) }),
    z.strictObject({ strategy: z.literal('range'), ranges: z.array(rangeSchema).min(1).max(65536) }),
  ])
  .describe('How entities map to shards (src/shard-map.ts); the same on every node of a namespace.')
  .superRefine((spec, context) => {
    // Coverage of the range strategy (no gap, no overlap) needs the router's own check.
    try {
      ShardRouter.fromSpec(spec);
    } catch (error) {
      context.addIssue({ code: 'custom', message: (error as Error).message.replace(/^CONFIG_INVALID: router[^:]*: /, '') });
    }
  });

const pathInFile = (what: string): z.ZodOptional<z.ZodString> => z.string().min(1).optional().describe(`${what}; relative: to the config file's folder.`);

const natsAuthSchema = z
  .strictObject({
    user: z.string().min(1).optional().describe('User name of the node\'s NATS user (with pass).'),
    pass: z.string().min(1).optional().describe('Password of user. Secret, never logged: better in TIDELOG_NATS_PASS than in a file.'),
    token: z.string().min(1).optional().describe('Authorization token (instead of a user). Secret, never logged: better in TIDELOG_NATS_TOKEN.'),
    nkeySeed: z.string().min(1).optional().describe('NKey user seed (SU…). Secret, never logged: better nkeySeedFile or TIDELOG_NATS_NKEY_SEED.'),
    nkeySeedFile: pathInFile('File holding the NKey user seed (what `nk -gen user` writes)'),
    credsFile: pathInFile('A .creds file (user JWT + NKey seed) of a server in operator mode (`nsc generate creds`)'),
    inboxPrefix: z
      .string()
      .min(1)
      .optional()
      .describe('Prefix of the node\'s reply inboxes (default _INBOX); a user whose permissions allow replies to a private prefix only needs it (docs/SECURITY.md).'),
    tls: z
      .strictObject({
        caFile: pathInFile('PEM file of the CA(s) that signed the NATS servers\' certificates (default: Node\'s bundled CAs)'),
        certFile: pathInFile('PEM certificate of this node, for servers that verify clients (with keyFile)'),
        keyFile: pathInFile('PEM private key of certFile'),
      })
      .optional()
      .describe('TLS towards NATS; given at all (even {}), TLS is required.'),
  })
  .prefault({})
  .describe('How the node authenticates to NATS (docs/SECURITY.md): at most one of user + pass, token, nkeySeed / nkeySeedFile, credsFile; TLS with any of them.')
  .superRefine((auth, context) => {
    for (const problem of natsAuthProblems(auth)) context.addIssue({ code: 'custom', path: problem.field.split('.'), message: problem.message });
  });

export const nodeConfigSchema = z.strictObject({
  $schema: z.string().optional().describe('Path or URL of this JSON Schema (for editors); ignored.'),
  nodeId: z
    .string()
    .regex(/^[A-Za-z0-9_.-]{0,64}$/, 'must be 0..64 of A-Z a-z 0-9 _ . -')
    .default('')
    .describe('Name of this node (status, metrics, logs; in a cluster its identity). Empty: generated once as <hostname>-<8 hex> and kept in <dataDir>/node-id.'),
  namespace: z
    .string()
    .regex(NAMESPACE, 'must be a NATS token: 1..64 of A-Z a-z 0-9 _ -')
    .default('tidelog')
    .describe('Subject prefix; nodes and clients of one cluster share it.'),
  nats: z
    .strictObject({
      servers: z
        .array(z.string().min(1))
        .min(1)
        .max(64)
        .default(['nats://127.0.0.1:4222'])
        .describe('NATS server urls (nats://host:port; tls://host:port requires TLS). Credentials go in nats.auth, not in a url.'),
      embedded: z.boolean().default(false).describe('Start a nats-server (from PATH) on a free loopback port (it has no auth: nats.auth is not used).'),
      auth: natsAuthSchema,
    })
    .prefault({}),
  dataDir: z.string().min(1).default('data').describe('Directory of the WAL segments and checkpoints; relative: to the config file\'s folder.'),
  router: routerSchema.default({ strategy: 'single' }),
  wal: z
    .strictObject({
      fsync: z.enum(['full', 'normal', 'off']).default('full').describe('full: ack after fdatasync; normal: sync every syncIntervalMs; off: never (tests).'),
      segmentBytes: z.int().min(1).max(1 << 30).default(16 << 20),
      batchMaxEvents: z.int().min(1).max(1 << 20).default(1000),
      // 0: a flush starts as soon as the flush worker is free, so appends that arrive during
      // a write+fdatasync form the next group anyway (group commit under load); a linger only
      // delays the first append after an idle spell, by ≥ 1 ms of timer.
      batchLingerMs: z
        .number()
        .min(0)
        .max(60_000)
        .default(0)
        .describe('How long an idle writer waits for company before a flush; 0: flush at once (groups still form while a flush runs).'),
      dedupWindowMs: z.number().min(0).max(86_400_000).default(60_000),
      dedupMaxEvents: z.int().min(1).max(1 << 26).default(1 << 20),
      syncIntervalMs: z.int().min(1).max(3_600_000).default(100),
      maxPendingEvents: z.int().min(1).max(1 << 28).default(1_000_000),
      snapshotLogRatio: z
        .number()
        .min(0)
        .max(1000)
        .default(1)
        .describe('A state snapshot once the log since the last one passes this × its size (snapshot writes ≤ 1/ratio of the log, replay after a restart ≤ ratio × state); 0: never.'),
      snapshotMinLogBytes: z.int().min(0).default(64 << 20).describe('…and at least this many bytes of log.'),
      snapshotMaxBytesPerSecond: z
        .int()
        .min(0)
        .default(64 << 20)
        .describe('Cap on the rate a snapshot is written at, so acks barely notice it (0: none).'),
    })
    .prefault({})
    .describe("The WAL's options (src/wal/wal.ts); the defaults are the WAL's."),
  retention: z
    .strictObject({
      maxAgeMs: z.int().min(0).default(0).describe('Per shard: delete whole segments whose newest event is older than this, once a snapshot covers them; 0: keep regardless of age.'),
      maxBytes: z.int().min(0).default(0).describe("Per shard: keep the log at most this large, by whole segments behind a snapshot; 0: no limit."),
    })
    .prefault({})
    .describe('How long the log is kept (the CRDT state keeps counting what retention deletes).'),
  limits: z
    .strictObject({
      maxRequestEvents: z.int().min(1).max(1 << 20).default(DEFAULT_MAX_REQUEST_EVENTS),
      maxRequestBytes: z.int().min(1024).max(64 << 20).default(DEFAULT_MAX_REQUEST_BYTES),
      maxSessions: z.int().min(1).max(10_000_000).default(DEFAULT_MAX_SESSIONS).describe('Producer sessions remembered per shard.'),
      maxRunsPerSession: z
        .int()
        .min(1)
        .max(65_536)
        .default(DEFAULT_MAX_RUNS_PER_SESSION)
        .describe('Requests per producer whose seqs a retry gets back (and requests it may pipeline).'),
    })
    .prefault({}),
  metrics: z
    .strictObject({
      enabled: z.boolean().default(true).describe('Serve the monitoring endpoint: /metrics, /healthz, /status and a status page at / (docs/OPERATIONS.md).'),
      port: z
        .int()
        .min(0)
        .max(65535)
        .default(DEFAULT_MONITOR_PORT)
        .describe(`Port of the monitoring endpoint; 0: a free port. The default (${DEFAULT_MONITOR_PORT}), when taken, falls back to a free port with a warning.`),
      host: z.string().min(1).default('127.0.0.1'),
    })
    .prefault({}),
  cluster: z
    .strictObject({
      nodes: z
        .array(z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'must be 1..64 of A-Z a-z 0-9 _ -'))
        .max(64)
        .default([])
        .describe('The node ids of the cluster (static membership); empty: one standalone node that leads every shard.'),
      replicationFactor: z.int().min(1).max(5).default(3).describe('Replicas of each shard (at most the number of nodes).'),
      acks: z
        .enum(['quorum', 'all', 'leader'])
        .default('quorum')
        .describe(
          "quorum: an append is acknowledged once fsynced on a majority of the shard's replicas; all: on every replica; leader (availability mode): on the leader's own disk — a leader cut off from the majority keeps acknowledging, and on heal what it wrote is merged into the majority's log at new seqs (docs/REPLICATION.md).",
        ),
      leaderTimeoutMs: z.int().min(50).max(600_000).default(1500).describe('A follower that hears nothing from its leader this long (its own monotonic clock) starts an election; a leader that hears from no quorum this long steps down.'),
      heartbeatMs: z.int().min(10).max(60_000).default(150).describe('How often a leader heartbeats its followers (and ships what they lack).'),
      requestTimeoutMs: z.int().min(50).max(600_000).default(1000).describe('How long a replication request waits for its answer.'),
      retentionWaitMs: z
        .int()
        .min(0)
        .max(7 * 24 * 3_600_000)
        .default(600_000)
        .describe(
          "How long retention keeps the segments a silent replica lacks: past it, the replica's share of the log may be deleted, and when it returns it is sent the newest snapshot instead.",
        ),
      epochBucketReplicas: z
        .int()
        .min(1)
        .max(5)
        .default(3)
        .describe('Replicas of the JetStream KV bucket that holds epoch claims: 3 on a 3-server NATS cluster (1 only on a single server, which then decides alone).'),
    })
    .prefault({})
    .describe('Replication (docs/REPLICATION.md). The same on every node of a namespace, but for nodeId.'),
  log: z
    .strictObject({
      level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    })
    .prefault({}),
  signals: z
    .string()
    .min(1)
    .default(DEFAULT_SIGNALS)
    .describe(`Path of the signal schema (relative: to the config file's folder); "${DEFAULT_SIGNALS}" is the one shipped with tidelog.`),
});

export type NodeConfig = z.output<typeof nodeConfigSchema>;
/** What a file, the environment or CLI overrides may give: every field optional. */
export type ConfigOverrides = z.input<typeof nodeConfigSchema>;

interface EnvVariable {
  path: string[];
  parse: (text: string) => unknown;
}

const asText = (text: string): unknown => text;
/** A number when the text is one, else the text (so the schema reports what is wrong). */
const asNumber = (text: string): unknown => (text.trim() !== '' && Number.isFinite(Number(text)) ? Number(text) : text);
const asBoolean = (text: string): unknown =>
  ['true', '1', 'yes'].includes(text.toLowerCase()) ? true : ['false', '0', 'no'].includes(text.toLowerCase()) ? false : text;
const asList = (text: string): unknown =>
  text
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item !== '');

/** The environment variables loadConfig reads, and the field each sets. */
export const CONFIG_ENV: Readonly<Record<string, EnvVariable>> = {
  TIDELOG_NODE_ID: { path: ['nodeId'], parse: asText },
  TIDELOG_NAMESPACE: { path: ['namespace'], parse: asText },
  TIDELOG_NATS_SERVERS: { path: ['nats', 'servers'], parse: asList },
  TIDELOG_NATS_EMBEDDED: { path: ['nats', 'embedded'], parse: asBoolean },
  TIDELOG_NATS_USER: { path: ['nats', 'auth', 'user'], parse: asText },
  TIDELOG_NATS_PASS: { path: ['nats', 'auth', 'pass'], parse: asText },
  TIDELOG_NATS_TOKEN: { path: ['nats', 'auth', 'token'], parse: asText },
  TIDELOG_NATS_NKEY_SEED: { path: ['nats', 'auth', 'nkeySeed'], parse: asText },
  TIDELOG_NATS_NKEY_SEED_FILE: { path: ['nats', 'auth', 'nkeySeedFile'], parse: asText },
  TIDELOG_NATS_CREDS: { path: ['nats', 'auth', 'credsFile'], parse: asText },
  TIDELOG_NATS_INBOX_PREFIX: { path: ['nats', 'auth', 'inboxPrefix'], parse: asText },
  TIDELOG_NATS_TLS_CA: { path: ['nats', 'auth', 'tls', 'caFile'], parse: asText },
  TIDELOG_NATS_TLS_CERT: { path: ['nats', 'auth', 'tls', 'certFile'], parse: asText },
  TIDELOG_NATS_TLS_KEY: { path: ['nats', 'auth', 'tls', 'keyFile'], parse: asText },
  TIDELOG_DATA_DIR: { path: ['dataDir'], parse: asText },
  TIDELOG_FSYNC: { path: ['wal', 'fsync'], parse: asText },
  TIDELOG_METRICS_ENABLED: { path: ['metrics', 'enabled'], parse: asBoolean },
  TIDELOG_METRICS_PORT: { path: ['metrics', 'port'], parse: asNumber },
  TIDELOG_METRICS_HOST: { path: ['metrics', 'host'], parse: asText },
  TIDELOG_LOG_LEVEL: { path: ['log', 'level'], parse: asText },
  TIDELOG_SIGNALS: { path: ['signals'], parse: asText },
};

/** Fields whose object value replaces the one below it instead of merging into it. */
const ATOMIC_PATHS = new Set(['router']);

export interface LoadConfigOptions {
  /** A JSON config file. */
  file?: string;
  env?: NodeJS.ProcessEnv;
  /** CLI flags, applied last. */
  overrides?: ConfigOverrides;
  /** What relative paths from the environment, flags and defaults are relative to (default: process.cwd()). */
  cwd?: string;
}

/** The fields that hold a path (PATH_FIELDS): made absolute by loadConfig. */
export const PATH_FIELDS: readonly (readonly string[])[] = [
  ['dataDir'],
  ['signals'],
  ['nats', 'auth', 'nkeySeedFile'],
  ['nats', 'auth', 'credsFile'],
  ['nats', 'auth', 'tls', 'caFile'],
  ['nats', 'auth', 'tls', 'certFile'],
  ['nats', 'auth', 'tls', 'keyFile'],
];

type Sources = Map<string, string>;

/**
 * The effective config: defaults ← file ← env ← overrides. The default `signals` resolves to
 * the schema shipped with tidelog. CONFIG_INVALID, naming field and source, when invalid.
 */
export function loadConfig(options: LoadConfigOptions = {}): NodeConfig {
  const { file, env = process.env, overrides = {}, cwd = process.cwd() } = options;
  const merged: Record<string, unknown> = {};
  const sources: Sources = new Map();
  if (file !== undefined) mergeLayer(merged, readConfigFile(resolve(cwd, file)), `file ${file}`, sources, []);
  for (const [name, variable] of Object.entries(CONFIG_ENV)) {
    const text = env[name];
    if (text === undefined) continue;
    mergeLayer(merged, nest(variable.path, variable.parse(text)), `env ${name}`, sources, []);
  }
  if (!isPlainObject(overrides)) throw new TidelogError('CONFIG_INVALID', 'overrides must be an object', { details: { source: 'flag' } });
  mergeLayer(merged, overrides, 'flag', sources, []);
  const result = nodeConfigSchema.safeParse(merged);
  if (!result.success) throw configError(result.error.issues, sources);
  const config = result.data;
  checkCluster(config, sources);
  // The value that names the shipped schema, wherever it came from (not a path to resolve).
  if (config.signals === DEFAULT_SIGNALS) config.signals = DEFAULT_SIGNAL_SCHEMA_PATH;
  resolvePaths(config, file === undefined ? null : { source: `file ${file}`, dir: dirname(resolve(cwd, file)) }, cwd, sources);
  return config;
}

/** Makes every PATH_FIELDS value absolute: against the config file's folder when the file set it, else against cwd. */
function resolvePaths(config: NodeConfig, file: { source: string; dir: string } | null, cwd: string, sources: Sources): void {
  for (const path of PATH_FIELDS) {
    let holder: unknown = config;
    for (const key of path.slice(0, -1)) holder = isPlainObject(holder) ? holder[key] : undefined;
    if (!isPlainObject(holder)) continue;
    const key = path[path.length - 1];
    const value = holder[key];
    if (typeof value !== 'string' || isAbsolute(value)) continue;
    holder[key] = resolve(file !== null && sourceOf(path, sources) === file.source ? file.dir : cwd, value);
  }
}

/** The config fit to log or print: nats.auth's pass, token and nkeySeed, and any secret in a server url, read [redacted]. */
export function redactConfig(config: NodeConfig): NodeConfig {
  return { ...config, nats: { ...config.nats, servers: redactServers(config.nats.servers), auth: redactNatsAuth(config.nats.auth) } };
}

/** A cluster config names this node among its members and keeps R within them. */
function checkCluster(config: NodeConfig, sources: Sources): void {
  const { nodes, replicationFactor } = config.cluster;
  if (nodes.length === 0) return;
  const fail = (path: string, message: string): never => {
    throw new TidelogError('CONFIG_INVALID', `${path}: ${message} (from ${sourceOf(path.split('.'), sources)})`, { details: { path, source: sourceOf(path.split('.'), sources) } });
  };
  if (new Set(nodes).size !== nodes.length) fail('cluster.nodes', 'lists a node id twice');
  if (replicationFactor > nodes.length) fail('cluster.replicationFactor', `is ${replicationFactor}, but the cluster has ${nodes.length} nodes`);
  if (config.nodeId === '') fail('nodeId', 'must be set in a cluster (one of cluster.nodes), and stay the same across restarts');
  if (!nodes.includes(config.nodeId)) fail('nodeId', `"${config.nodeId}" is not one of cluster.nodes (${nodes.join(', ')}): a node outside the membership is refused`);
  const { leaderTimeoutMs, heartbeatMs, requestTimeoutMs } = config.cluster;
  // A follower must hear several heartbeats per timeout, and a lost request must not hold a
  // follower's one in-flight slot for longer than the leader timeout.
  if (heartbeatMs * 3 > leaderTimeoutMs) fail('cluster.heartbeatMs', `is ${heartbeatMs}: at most a third of cluster.leaderTimeoutMs (${leaderTimeoutMs}), or idle shards re-elect`);
  if (requestTimeoutMs >= leaderTimeoutMs) fail('cluster.requestTimeoutMs', `is ${requestTimeoutMs}: must be below cluster.leaderTimeoutMs (${leaderTimeoutMs})`);
  // A batch travels whole in one replication message (≤ 1 MiB on NATS by default).
  if (config.wal.batchMaxEvents > 16_384) fail('wal.batchMaxEvents', `is ${config.wal.batchMaxEvents}: at most 16384 in a cluster (a batch travels whole in one replication message)`);
  // A merge re-appends an orphan batch with all of its session notes in one note, which must fit
  // MAX_NOTE_BYTES: at 4096 events (each its own request, 64-byte producer ids) it takes ~390 KiB.
  if (config.cluster.acks === 'leader' && config.wal.batchMaxEvents > 4_096) {
    fail('wal.batchMaxEvents', `is ${config.wal.batchMaxEvents}: at most 4096 with cluster.acks "leader" (a merged batch's notes must fit one note)`);
  }
  // A follower's acknowledgement is its fsync: with anything less an ack by a quorum is not
  // on a quorum's disks.
  if (config.wal.fsync !== 'full') fail('wal.fsync', `must be "full" in a cluster (a replica acknowledges a batch once it is fsynced), got "${config.wal.fsync}"`);
}

/** Every default (what config/default.json holds). */
export function defaultConfig(): NodeConfig {
  return nodeConfigSchema.parse({});
}

/** The JSON Schema of a config file (what config/node.schema.json holds). */
export function nodeConfigJsonSchema(): Record<string, unknown> {
  return z.toJSONSchema(nodeConfigSchema, { io: 'input' }) as Record<string, unknown>;
}

/** The generated files under config/, by path relative to the repository, as written. */
export function configArtifacts(): Record<string, string> {
  const defaults = { $schema: './node.schema.json', ...defaultConfig() };
  return {
    'config/default.json': `${JSON.stringify(defaults, null, 2)}\n`,
    'config/node.schema.json': `${JSON.stringify(nodeConfigJsonSchema(), null, 2)}\n`,
  };
}

export function readConfigFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (cause) {
    throw new TidelogError('CONFIG_INVALID', `cannot read config file ${file}`, { cause, details: { source: `file ${file}` } });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    throw new TidelogError('CONFIG_INVALID', `config file ${file} is not valid JSON`, { cause, details: { source: `file ${file}` } });
  }
  if (!isPlainObject(json)) {
    throw new TidelogError('CONFIG_INVALID', `config file ${file} must hold a JSON object`, { details: { source: `file ${file}` } });
  }
  return json;
}

// ---- layers ----

function mergeLayer(target: Record<string, unknown>, layer: Record<string, unknown>, source: string, sources: Sources, path: string[]): void {
  for (const [key, value] of Object.entries(layer)) {
    if (value === undefined) continue;
    const fieldPath = [...path, key];
    const name = fieldPath.join('.');
    if (key === '__proto__') {
      throw new TidelogError('CONFIG_INVALID', `${name}: unknown field (from ${source})`, { details: { path: name, source } });
    }
    const existing = target[key];
    if (isPlainObject(value) && !ATOMIC_PATHS.has(name)) {
      const child = isPlainObject(existing) ? existing : {};
      target[key] = child;
      if (!isPlainObject(existing)) sources.set(name, source);
      mergeLayer(child, value, source, sources, fieldPath);
    } else {
      target[key] = value;
      for (const known of [...sources.keys()]) if (known.startsWith(`${name}.`)) sources.delete(known);
      sources.set(name, source);
    }
  }
}

function nest(path: readonly string[], value: unknown): Record<string, unknown> {
  let result: unknown = value;
  for (let index = path.length - 1; index >= 0; index--) result = { [path[index]]: result };
  return result as Record<string, unknown>;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

// ---- errors ----

interface ConfigProblem {
  path: string;
  message: string;
  source: string;
}

function configError(issues: readonly z.core.$ZodIssue[], sources: Sources): TidelogError {
  const problems: ConfigProblem[] = [];
  for (const issue of issues) {
    const base = issue.path.map(String);
    const paths = issue.code === 'unrecognized_keys' ? issue.keys.map((key) => [...base, key]) : [base];
    for (const path of paths) {
      const name = path.length === 0 ? '(root)' : formatPath(path);
      problems.push({ path: name, message: describeIssue(issue), source: sourceOf(path, sources) });
    }
  }
  const text = problems.map((problem) => `${problem.path}: ${problem.message} (from ${problem.source})`).join('; ');
  return new TidelogError('CONFIG_INVALID', text, {
    details: { path: problems[0]?.path, source: problems[0]?.source, problems },
  });
}

function formatPath(path: readonly string[]): string {
  return path.map((part, index) => (/^\d+$/.test(part) ? `[${part}]` : index === 0 ? part : `.${part}`)).join('');
}

/** The layer that set the field (or the nearest enclosing one), else the defaults. */
function sourceOf(path: readonly string[], sources: Sources): string {
  for (let length = path.length; length > 0; length--) {
    const source = sources.get(path.slice(0, length).join('.'));
    if (source !== undefined) return source;
  }
  return 'defaults';
}

function describeIssue(issue: z.core.$ZodIssue): string {
  switch (issue.code) {
    case 'too_big':
      return bound(issue.origin, issue.inclusive === false ? '<' : '≤', issue.maximum);
    case 'too_small':
      return bound(issue.origin, issue.inclusive === false ? '>' : '≥', issue.minimum);
    case 'invalid_type':
      return issue.expected === 'int' ? 'must be an integer' : `must be ${issue.expected === 'array' ? 'an' : 'a'} ${issue.expected}`;
    case 'invalid_value':
      return `must be one of ${issue.values.map((value) => JSON.stringify(value)).join(', ')}`;
    case 'unrecognized_keys':
      return 'unknown field';
    case 'invalid_union':
      return issue.message.startsWith('Invalid discriminator') ? 'strategy must be "single", "hash" or "range"' : issue.message;
    default:
      return issue.message;
  }
}

function bound(origin: string, relation: string, limit: number | bigint): string {
  if (origin === 'array') return `must have ${relation} ${String(limit)} items`;
  if (origin === 'string') return `must have ${relation} ${String(limit)} characters`;
  return `must be ${relation} ${String(limit)}`;
}
