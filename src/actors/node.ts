// The node supervisor actor: one per `tidelog serve` process. It opens every shard of the
// shard map (each shard host runs its own writer and flush-worker actors inside its WAL),
// starts the shard-router actor, serves the endpoints once every shard is open, and closes
// shards in order on STOP. Invariant: endpoints are subscribed only while the node is in
// `serving`, so no request is ever answered by a half-open or closing node.
//
//   ┌─────────┐ all shards open ┌─────────┐  STOP  ┌──────────┐ closed ┌─────────┐
//   │ opening │ ──────────────► │ serving │ ─────► │ stopping │ ─────► │ stopped │
//   └─────────┘                 └─────────┘        └──────────┘        └─────────┘
//        │ a shard cannot open and that is fatal (its lock is held)         ▲
//        └──────────► closing what opened ──────────► failed ───────────────┘ (final)
//
// A shard that cannot open because its files are damaged is reported to the router
// (SHARD_FAILED, no host) and the node serves the others; so is a shard whose lane fails
// while serving (fsync error: fail-stop). Either way the router turns `degraded`.

import { assign, fromCallback, fromPromise, sendTo, setup, type ActorRefFrom } from 'xstate';
import type { ShardRouter } from '../shard-map.ts';
import { createShardRouterMachine, type ShardRouterActor } from './shard-router.ts';

/** What the supervisor needs from the world; the node facade (src/node/node.ts) provides it. */
export interface NodeServices<Host> {
  nodeId: string;
  router: ShardRouter;
  /** The shards this node holds (all of the map standalone; its replica sets in a cluster). */
  shards: readonly number[];
  openShard(shard: number): Promise<Host>;
  /**
   * A shard could not open: true when the node should serve the others without it (damage in
   * that shard alone), false when the error is fatal for the node (e.g. its lock is held).
   */
  isShardOpenErrorContained(shard: number, error: Error): boolean;
  closeShard(host: Host): Promise<void>;
  /** Subscribes the endpoints; returns the function that unsubscribes them. */
  serve(routerActor: ShardRouterActor<Host>): () => void;
  onError(error: Error): void;
}

export type NodeEvent<Host> =
  | { type: 'SHARD_OPENED'; shard: number; epoch: number; host: Host }
  | { type: 'SHARD_FAILED'; shard: number; error: Error }
  | { type: 'STOP' };

export function createNodeMachine<Host>() {
  const shardRouter = createShardRouterMachine<Host>();
  return setup({
    types: {
      context: {} as { services: NodeServices<Host>; opened: Host[]; error: Error | null; isStopRequested: boolean },
      events: {} as NodeEvent<Host>,
      input: {} as NodeServices<Host>,
    },
    actors: {
      shardRouter,
      openShards: fromPromise<void, { services: NodeServices<Host>; report: (event: NodeEvent<Host>) => void }>(
        async ({ input }) => {
          // One at a time: recovery scans are disk-bound and a 2-core machine gains nothing
          // from interleaving them, while their progress reads better in order.
          for (const shard of input.services.shards) {
            let host: Host;
            try {
              host = await input.services.openShard(shard);
            } catch (caught) {
              const error = caught instanceof Error ? caught : new Error(String(caught));
              if (!input.services.isShardOpenErrorContained(shard, error)) throw error;
              input.report({ type: 'SHARD_FAILED', shard, error });
              continue;
            }
            input.report({ type: 'SHARD_OPENED', shard, epoch: 0, host });
          }
        },
      ),
      closeShards: fromPromise<void, { services: NodeServices<Host>; hosts: Host[] }>(async ({ input }) => {
        const errors: unknown[] = [];
        for (const host of [...input.hosts].reverse()) {
          try {
            await input.services.closeShard(host);
          } catch (error) {
            errors.push(error);
          }
        }
        if (errors.length > 0) throw errors[0];
      }),
      endpoints: fromCallback<{ type: 'NONE' }, { services: NodeServices<Host>; router: ShardRouterActor<Host> }>(({ input }) =>
        input.services.serve(input.router),
      ),
    },
    actions: {
      rememberHost: assign({
        opened: ({ context, event }) => (event.type === 'SHARD_OPENED' ? [...context.opened, event.host] : context.opened),
      }),
      tellRouterServing: sendTo('router', ({ event }) => {
        if (event.type !== 'SHARD_OPENED') throw new Error('invariant violated: tellRouterServing without SHARD_OPENED');
        return { type: 'SHARD_SERVING' as const, shard: event.shard, epoch: event.epoch, host: event.host };
      }),
      tellRouterFailed: sendTo('router', ({ event }) => {
        if (event.type !== 'SHARD_FAILED') throw new Error('invariant violated: tellRouterFailed without SHARD_FAILED');
        return { type: 'SHARD_FAILED' as const, shard: event.shard, error: event.error };
      }),
      keepError: assign({ error: ({ event }) => (event as unknown as { error: Error }).error }),
      reportError: ({ context, event }) => {
        const error = (event as unknown as { error: unknown }).error;
        context.services.onError(error instanceof Error ? error : new Error(String(error)));
      },
      stopRouter: sendTo('router', { type: 'STOP' as const }),
    },
  }).createMachine({
    id: 'node',
    context: ({ input }) => ({ services: input, opened: [], error: null, isStopRequested: false }),
    invoke: {
      id: 'router',
      systemId: 'router',
      src: 'shardRouter',
      input: ({ context }) => ({ nodeId: context.services.nodeId, router: context.services.router, shards: context.services.shards }),
    },
    on: {
      SHARD_OPENED: { actions: ['rememberHost', 'tellRouterServing'] },
      SHARD_FAILED: { actions: ['tellRouterFailed', 'reportError'] },
    },
    initial: 'opening',
    states: {
      opening: {
        invoke: {
          src: 'openShards',
          input: ({ context, self }) => ({ services: context.services, report: (event: NodeEvent<Host>) => self.send(event) }),
          // A STOP while shards open waits for the opening to finish, so no host is left open.
          onDone: [{ guard: ({ context }) => context.isStopRequested, target: 'stopping' }, { target: 'serving' }],
          onError: { target: 'abandoning', actions: ['keepError', 'reportError'] },
        },
        on: { STOP: { actions: assign({ isStopRequested: true }) } },
      },
      serving: {
        invoke: {
          src: 'endpoints',
          input: ({ context, self }) => ({
            services: context.services,
            router: self.system.get('router') as ShardRouterActor<Host>,
          }),
        },
        on: { STOP: 'stopping' },
      },
      stopping: {
        entry: 'stopRouter',
        invoke: {
          src: 'closeShards',
          input: ({ context }) => ({ services: context.services, hosts: context.opened }),
          onDone: 'stopped',
          onError: { target: 'stopped', actions: ['keepError', 'reportError'] },
        },
      },
      abandoning: {
        invoke: {
          src: 'closeShards',
          input: ({ context }) => ({ services: context.services, hosts: context.opened }),
          onDone: 'failed',
          onError: { target: 'failed', actions: 'reportError' },
        },
      },
      stopped: { type: 'final' },
      failed: { type: 'final' },
    },
  });
}

export type NodeMachine<Host> = ReturnType<typeof createNodeMachine<Host>>;
export type NodeActor<Host> = ActorRefFrom<NodeMachine<Host>>;
