// `tidelog serve --config <file>`: runs one node until SIGINT/SIGTERM, then stops it cleanly
// (endpoints off, queued appends made durable, shards closed). Config comes from the file,
// then TIDELOG_* environment variables, then the flags given here (src/node/config.ts).

import pino from 'pino';
import { loadConfig, type ConfigOverrides } from '../node/config.ts';
import { startNode } from '../node/node.ts';
import { NatsTransport } from '../transport/nats.ts';
import { ExitCode, type ExitCodeValue } from './options.ts';

export interface ServeOptions {
  config?: string;
  nats?: string;
  namespace?: string;
  dataDir?: string;
  nodeId?: string;
  metricsPort?: number;
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
  const transport = await NatsTransport.connect({ servers: config.nats.servers, name: `tidelog-node-${config.nodeId}` });
  transport.onStatus((status) => {
    if (status.type === 'error') logger.error({ err: status.error }, 'transport error');
    else logger.info({ status: status.type }, 'transport');
  });
  let node;
  try {
    node = await startNode({ config, transport, logger });
  } catch (error) {
    await transport.close();
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
  process.stdout.write(`tidelog serve: node ${node.nodeId} ready (namespace ${config.namespace}, metrics ${node.metricsPort ?? 'off'})\n`);
  await stopped;
  try {
    await node.stop();
  } finally {
    await transport.close();
  }
  return ExitCode.ok;
}
