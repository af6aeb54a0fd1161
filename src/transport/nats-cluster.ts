// A local NATS cluster: `size` nats-servers on free loopback ports, each with a server name,
// JetStream (its own store dir) and routes to all the others, as a 3-server production
// cluster is set up (docs/OPERATIONS.md, "Running a cluster"). Used by `tidelog dev --nodes`,
// the cluster benchmark and the tests. JetStream elects its meta leader after the start:
// callers retry their first JetStream operation.
import { pickFreePort, startNatsServer, type NatsServerProcess } from './nats-server-process.ts';

export interface NatsCluster {
  readonly servers: readonly NatsServerProcess[];
  /** Client URLs of every server. */
  readonly urls: string[];
  stop(): Promise<void>;
}

export async function startNatsCluster(size = 3, name = 'tidelog', storeDirs?: readonly string[]): Promise<NatsCluster> {
  const routePorts = await Promise.all(Array.from({ length: size }, () => pickFreePort()));
  const servers: NatsServerProcess[] = [];
  try {
    // Started together: a clustered JetStream server waits for its peers before it is ready.
    const started = await Promise.all(
      routePorts.map((routePort, index) =>
        startNatsServer({
          jetStream: true,
          ...(storeDirs?.[index] === undefined ? {} : { storeDir: storeDirs[index] }),
          startTimeoutMs: 30_000,
          args: [
            '--server_name', `n${index + 1}`,
            '--cluster_name', name,
            '--cluster', `nats://127.0.0.1:${routePort}`,
            '--routes', routePorts.filter((_, other) => other !== index).map((port) => `nats://127.0.0.1:${port}`).join(','),
          ],
        }),
      ),
    );
    servers.push(...started);
  } catch (error) {
    await Promise.all(servers.map((server) => server.stop()));
    throw error;
  }
  return {
    servers,
    urls: servers.map((server) => server.url),
    stop: async () => {
      await Promise.all(servers.map((server) => server.stop()));
    },
  };
}

