// A local NATS cluster: `size` nats-servers on free loopback ports, each with a server name,
// JetStream (its own store dir) and routes to all the others, as a 3-server production
// cluster is set up (docs/OPERATIONS.md, "Running a cluster"). Used by `tidelog dev --nodes`,
// the cluster benchmark and the tests. JetStream elects its meta leader after the start:
// callers retry their first JetStream operation.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FaultProxy, type LinkMode } from './fault-proxy.ts';
import { pickFreePort, startNatsServer, type NatsServerProcess } from './nats-server-process.ts';

export interface NatsCluster {
  readonly servers: readonly NatsServerProcess[];
  /** Client URLs of every server. */
  readonly urls: string[];
  /** Server names, n1…nN, in the order of `servers`. */
  readonly names: string[];
  /** With faultProxies: the proxy in front of each server's route port (else empty). */
  readonly proxies: readonly FaultProxy[];
  /**
   * With faultProxies: only servers in the same group reach each other over routes (a link
   * between groups is `mode`: cut by default, or blackholed); servers in no group are cut
   * off from all. heal() restores every link.
   */
  partition(groups: ReadonlyArray<readonly string[]>, mode?: LinkMode): void;
  heal(): void;
  stop(): Promise<void>;
}

export interface NatsClusterOptions {
  /** Route every server-to-server link through a FaultProxy (partitions, blackholes, delays). */
  faultProxies?: boolean;
}

export async function startNatsCluster(size = 3, name = 'tidelog', storeDirs?: readonly string[], options: NatsClusterOptions = {}): Promise<NatsCluster> {
  const routePorts = await Promise.all(Array.from({ length: size }, () => pickFreePort()));
  const names = routePorts.map((_, index) => `n${index + 1}`);
  const proxies: FaultProxy[] = [];
  const servers: NatsServerProcess[] = [];
  let configDir: string | null = null;
  try {
    let extraArgs: readonly string[] = [];
    if (options.faultProxies === true) {
      for (const port of routePorts) proxies.push(await FaultProxy.start({ host: '127.0.0.1', port }));
      // Servers notice a silent (blackholed) peer in about a second and a half.
      configDir = mkdtempSync(join(tmpdir(), 'tidelog-nats-'));
      writeFileSync(join(configDir, 'faults.conf'), 'ping_interval: "500ms"\nping_max: 3\n');
      extraArgs = ['-c', join(configDir, 'faults.conf')];
    }
    // A server is reached at its proxy when there is one: it advertises the proxy and lists it
    // in its own routes too (JetStream refuses to start a cluster with no routes).
    const reachAt = (index: number): number => proxies[index]?.port ?? routePorts[index];
    // Started together: a clustered JetStream server waits for its peers before it is ready.
    const started = await Promise.all(
      routePorts.map((routePort, index) =>
        startNatsServer({
          jetStream: true,
          ...(storeDirs?.[index] === undefined ? {} : { storeDir: storeDirs[index] }),
          startTimeoutMs: 30_000,
          args: [
            ...extraArgs,
            '--server_name', names[index],
            '--cluster_name', name,
            '--cluster', `nats://127.0.0.1:${routePort}`,
            ...(proxies.length > 0 ? ['--cluster_advertise', `127.0.0.1:${reachAt(index)}`] : []),
            '--routes', routePorts.map((_, other) => other).filter((other) => other !== index || proxies.length > 0).map((other) => `nats://127.0.0.1:${reachAt(other)}`).join(','),
          ],
        }),
      ),
    );
    servers.push(...started);
  } catch (error) {
    await Promise.all(servers.map((server) => server.stop()));
    await Promise.all(proxies.map((proxy) => proxy.close()));
    if (configDir !== null) rmSync(configDir, { recursive: true, force: true });
    throw error;
  }
  return {
    servers,
    urls: servers.map((server) => server.url),
    names,
    proxies,
    partition: (groups, mode = { kind: 'cut' }) => {
      if (proxies.length === 0) throw new Error('partition: the cluster was started without faultProxies');
      proxies.forEach((proxy, index) => {
        const group = groups.find((members) => members.includes(names[index])) ?? [names[index]];
        proxy.heal();
        for (const peer of names) if (!group.includes(peer)) proxy.setMode(peer, mode);
      });
    },
    heal: () => {
      for (const proxy of proxies) proxy.heal();
    },
    stop: async () => {
      await Promise.all(servers.map((server) => server.stop()));
      await Promise.all(proxies.map((proxy) => proxy.close()));
      if (configDir !== null) rmSync(configDir, { recursive: true, force: true });
    },
  };
}

