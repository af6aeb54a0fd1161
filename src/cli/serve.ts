// `tidelog serve --config <file>`: runs one node until SIGINT/SIGTERM, then stops it cleanly
// (endpoints off, queued appends made durable, shards closed). Config comes from the file,
// then TIDELOG_* environment variables, then the flags given here (src/node/config.ts).
// The effective config is logged at start with its secrets redacted (redactConfig).

import { join } from 'node:path';
import pino, { type Logger } from 'pino';
import { loadConfig, redactConfig, type ConfigOverrides, type NodeConfig } from '../node/config.ts';
import { startNode } from '../node/node.ts';
import { NatsTransport, redactServers } from '../transport/nats.ts';
import { startNatsServer } from '../transport/nats-server-process.ts';
import { InjectedFaultIo } from '../wal/injected-faults.ts';
import type { FsyncMode } from '../wal/index.ts';
import { ExitCode, natsAuthFromFlags, type ExitCodeValue, type NatsAuthFlags } from './options.ts';

export interface ServeOptions extends NatsAuthFlags {
  config?: string;
  nats?: string;
  namespace?: string;
  dataDir?: string;
  nodeId?: string;
  metricsPort?: number;
  /** false (--no-metrics): no monitoring endpoint. */
  metrics?: boolean;
  fsync?: FsyncMode;
  /** Hash the entity ids over this many shards (router strategy hash). */
  shards?: number;
  logLevel?: string;
  /** Open damaged shards on their durable prefix instead of leaving them stopped. */
  salvage?: boolean;
}

/** The config the serve flags set (they win over the file and the environment). */
export function serveOverrides(options: ServeOptions): ConfigOverrides {
  const overrides: ConfigOverrides = {};
  if (options.nats !== undefined) overrides.nats = { servers: options.nats.split(',').map((url) => url.trim()) };
  const authFlags = natsAuthFromFlags(options);
  if (Object.keys(authFlags).length > 0) overrides.nats = { ...overrides.nats, auth: authFlags };
  if (options.namespace !== undefined) overrides.namespace = options.namespace;
  if (options.dataDir !== undefined) overrides.dataDir = options.dataDir;
  if (options.nodeId !== undefined) overrides.nodeId = options.nodeId;
  if (options.metricsPort !== undefined) overrides.metrics = { port: options.metricsPort };
  if (options.metrics === false) overrides.metrics = { ...overrides.metrics, enabled: false };
  if (options.fsync !== undefined) overrides.wal = { fsync: options.fsync };
  if (options.shards !== undefined) overrides.router = { strategy: 'hash', shards: options.shards };
  if (options.logLevel !== undefined) overrides.log = { level: options.logLevel as NodeConfig['log']['level'] };
  return overrides;
}

export async function runServe(options: ServeOptions): Promise<ExitCodeValue> {
  const overrides = serveOverrides(options);
  const config = loadConfig({ file: options.config, env: process.env, overrides });
  const logger = pino({ level: config.log.level }, pino.destination(2));
  logger.info({ config: redactConfig(config) }, 'config');
  // nats.embedded: this process runs its own nats-server (loopback, JetStream, store beside
  // the data) and connects to it instead of config.nats.servers.
  const embedded = config.nats.embedded ? await startNatsServer({ jetStream: true, storeDir: join(config.dataDir, 'nats') }) : null;
  if (embedded !== null) logger.info({ url: embedded.url, pid: embedded.pid }, 'embedded nats-server started');
  const servers = embedded === null ? config.nats.servers : [embedded.url];
  const hasAuth = Object.keys(config.nats.auth).length > 0;
  if (embedded !== null && hasAuth) logger.warn('nats.auth is not used: the embedded nats-server (loopback only) has no auth');
  const transport = await NatsTransport.connect({ servers, name: `tidelog-node-${config.nodeId}`, ...(embedded === null && hasAuth ? { auth: config.nats.auth } : {}) });
  transport.onStatus((status) => {
    if (status.type === 'error') logger.error({ err: status.error }, 'transport error');
    else logger.info({ status: status.type }, 'transport');
  });
  const faults = injectedFaults(logger);
  let node;
  try {
    node = await startNode({ config, transport, logger, salvage: options.salvage === true, ...(faults === null ? {} : { io: faults }) });
  } catch (error) {
    await transport.close();
    await embedded?.stop();
    throw error;
  }
  const stopped = new Promise<void>((resolve) => {
    const stop = (signal: string): void => {
      logger.info({ signal }, 'stopping');
      resolve();
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
  // Tests and supervisors wait for this line on stdout before sending traffic.
  process.stdout.write(
    `tidelog serve: node ${node.nodeId} ready (namespace ${config.namespace}, nats ${redactServers(servers).join(',')}, metrics ${node.metricsPort ?? 'off'})\n`,
  );
  await stopped;
  try {
    await node.stop();
  } finally {
    await transport.close();
    await embedded?.stop();
  }
  return ExitCode.ok;
}

/**
 * TIDELOG_FAULT_FILE names a JSON file of disk faults to inject (src/wal/injected-faults.ts),
 * read now and on every SIGUSR2: for `tidelog chaos`, never set in production.
 */
function injectedFaults(logger: Logger): InjectedFaultIo | null {
  const specPath = process.env.TIDELOG_FAULT_FILE;
  if (specPath === undefined || specPath === '') return null;
  const io = new InjectedFaultIo();
  const load = (): void => {
    try {
      io.load(specPath);
      logger.warn({ specPath }, 'disk faults loaded (TIDELOG_FAULT_FILE)');
    } catch (error) {
      logger.error({ err: error, specPath }, 'disk faults not loaded');
    }
  };
  load();
  process.on('SIGUSR2', load);
  return io;
}
