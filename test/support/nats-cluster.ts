// A local NATS cluster for tests: `size` nats-servers on free loopback ports, each with a
// server name, JetStream (its own store dir) and routes to all the others, as a 3-server
// production cluster is set up (docs/OPERATIONS.md). JetStream needs a meta leader before it
// serves: waitForJetStream retries an operation until the cluster answers it.
import { pickFreePort, startNatsServer, type NatsServerProcess } from '../../src/transport/nats-server-process.ts';
import { WAIT_MS } from './waits.ts';

export interface NatsCluster {
  readonly servers: readonly NatsServerProcess[];
  /** Client URLs of every server. */
  readonly urls: string[];
  stop(): Promise<void>;
}

export async function startNatsCluster(size = 3, name = 'tidelog-test'): Promise<NatsCluster> {
  const routePorts = await Promise.all(Array.from({ length: size }, () => pickFreePort()));
  const servers: NatsServerProcess[] = [];
  try {
    // Started together: a clustered JetStream server waits for its peers before it is ready.
    const started = await Promise.all(
      routePorts.map((routePort, index) =>
        startNatsServer({
          jetStream: true,
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

/** Runs `operation` until it succeeds (JetStream elects its meta leader after the start). */
export async function waitForJetStream<T>(operation: () => Promise<T>, waitMs = WAIT_MS): Promise<T> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    try {
      return await operation();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
}
