// A local NATS cluster for tests (src/transport/nats-cluster.ts). JetStream needs a meta
// leader before it serves: waitForJetStream retries an operation until the cluster answers it.
import { WAIT_MS } from './waits.ts';

export { startNatsCluster, type NatsCluster } from '../../src/transport/nats-cluster.ts';

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
