// `tidelog serve --config <file>`: runs one node until SIGINT/SIGTERM, then stops it cleanly
// (endpoints off, queued appends made durable, shards closed). Config comes from the file,
// then TIDELOG_* environment variables, then the flags given here (src/node/config.ts).

import { join } from 'node:path';
import pino, { type Logger } from 'pino';
import { loadConfig, type ConfigOverrides } from '../node/config.ts';
import { startNode } from '../node/node.ts';
import { NatsTransport } from '../transport/nats.ts';
import { startNatsServer } from '../transport/nats-server-process.ts';
import { InjectedFaultIo } from '../wal/injected-faults.ts';
import { ExitCode, type ExitCodeValue } from './options.ts';

export interface ServeOptions {
  config?: string;
  nats?: string;
  namespace?: string;
  dataDir?: string;
  nodeId?: string;
  metricsPort?: number;
  /** Open damaged shards on their durable prefix instead of leaving them stopped. */
  salvage?: boolean;
}

export async function runServe(options: ServeOptions): Promise<ExitCodeValue> {
  const overrides: ConfigOverrides = {};
  if (options.nats !== undefined) overrides.nats = { servers: options.nats.split(',').map((url) => url.trim()) };
  if (options.namespace !== undefined) overrides.namespace = options.namespace;
  if (options.dataDir !== undefined) overrides.dataDir = options.dataDir;
  if (options.nodeId !== undefined) overrides.nodeId = options.nodeId;
  if (options.metricsPort !== undefined) overrides.metrics = { port: options.metricsPort };
  const config = loadConfig({ file: options.config, env: process.env, overrides });
  const logger = pino({ level: config.log.level }, pino.destination(2));
  // nats.embedded: this process runs its own nats-server (loopback, JetStream, store beside
  // the data) and connects to it instead of config.nats.servers.
  const embedded = config.nats.embedded ? await startNatsServer({ jetStream: true, storeDir: join(config.dataDir, 'nats') }) : null;
  if (embedded !== null) logger.info({ url: embedded.url, pid: embedded.pid }, 'embedded nats-server started');
  const servers = embedded === null ? config.nats.servers : [embedded.url];
  const transport = await NatsTransport.connect({ servers, name: `tidelog-node-${config.nodeId}` });
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
    `tidelog serve: node ${node.nodeId} ready (namespace ${config.namespace}, nats ${servers.join(',')}, metrics ${node.metricsPort ?? 'off'})\n`,
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
