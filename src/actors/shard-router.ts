// The shard-router actor: one per node. It owns the node's view of the shard map — which
// shards exist (the ShardRouter from config), which of them this node serves, at which
// leader epoch, and which have failed — and changes it only through events, so every change
// to "who serves shard n" is a state transition that can be logged and, with replication,
// driven by leases.
//
//   ┌─────────┐ SHARD_SERVING (all open) ┌─────────┐  SHARD_FAILED  ┌──────────┐
//   │ waiting │ ───────────────────────► │ routing │ ─────────────► │ degraded │
//   └─────────┘                          └─────────┘                └──────────┘
//        └──────────────── STOP (from any state) ──────────────► stopped
//
// The data plane does not send one machine event per request: request handlers read the
// current map from the actor's snapshot (`lookup`) and split packed batches with the pure
// ShardRouter. Events reach this machine only when a shard opens, fails or closes.

import { assign, setup, type ActorRefFrom } from 'xstate';
import type { ShardRouter } from '../shard-map.ts';

export type ShardRole = 'leader' | 'follower';

export interface ShardEntry<Host> {
  shard: number;
  /** The node that leads the shard (this one standalone); null while no leader is known. */
  nodeId: string | null;
  epoch: number;
  role: ShardRole;
  /** The local host serving the shard; null when the shard is served elsewhere or not open. */
  host: Host | null;
  /** Set when the shard's lane failed: it takes no appends, its durable events are still read. */
  failure: Error | null;
}

export interface ShardRouterContext<Host> {
  nodeId: string;
  router: ShardRouter;
  shards: ReadonlyMap<number, ShardEntry<Host>>;
}

export type ShardRouterEvent<Host> =
  | { type: 'SHARD_SERVING'; shard: number; epoch: number; host: Host }
  | { type: 'SHARD_FAILED'; shard: number; error: Error }
  | { type: 'SHARD_CLOSED'; shard: number }
  /** A replicated shard's role changed: who leads it, at which epoch (the registry of leaders). */
  | { type: 'SHARD_ROLE'; shard: number; role: ShardRole; epoch: number; leaderId: string | null }
  | { type: 'STOP' };

export function createShardRouterMachine<Host>() {
  const withEntry = (
    shards: ReadonlyMap<number, ShardEntry<Host>>,
    shard: number,
    change: (entry: ShardEntry<Host>) => ShardEntry<Host>,
  ): ReadonlyMap<number, ShardEntry<Host>> => {
    const entry = shards.get(shard);
    // An event for a shard outside the map is a bug in the supervisor, not bad input.
    if (entry === undefined) throw new Error(`invariant violated: shard ${shard} is not in the shard map`);
    const next = new Map(shards);
    next.set(shard, change(entry));
    return next;
  };
  return setup({
    types: {
      context: {} as ShardRouterContext<Host>,
      events: {} as ShardRouterEvent<Host>,
      input: {} as { nodeId: string; router: ShardRouter; shards: readonly number[] },
    },
    guards: {
      isEveryShardServing: ({ context }) => [...context.shards.values()].every((entry) => entry.host !== null && entry.failure === null),
      hasFailedShard: ({ context }) => [...context.shards.values()].some((entry) => entry.failure !== null),
    },
    actions: {
      markServing: assign({
        shards: ({ context, event }) => {
          if (event.type !== 'SHARD_SERVING') return context.shards;
          return withEntry(context.shards, event.shard, (entry) => ({ ...entry, epoch: event.epoch, host: event.host, failure: null }));
        },
      }),
      markFailed: assign({
        shards: ({ context, event }) => {
          if (event.type !== 'SHARD_FAILED') return context.shards;
          // The host stays: a failed lane is read-only, and its durable events are still served.
          return withEntry(context.shards, event.shard, (entry) => ({ ...entry, failure: event.error }));
        },
      }),
      markRole: assign({
        shards: ({ context, event }) => {
          if (event.type !== 'SHARD_ROLE') return context.shards;
          return withEntry(context.shards, event.shard, (entry) => ({ ...entry, role: event.role, epoch: event.epoch, nodeId: event.leaderId }));
        },
      }),
      markClosed: assign({
        shards: ({ context, event }) => {
          if (event.type !== 'SHARD_CLOSED') return context.shards;
          return withEntry(context.shards, event.shard, (entry) => ({ ...entry, host: null }));
        },
      }),
    },
  }).createMachine({
    id: 'shardRouter',
    context: ({ input }) => ({
      nodeId: input.nodeId,
      router: input.router,
      shards: new Map(
        input.shards.map((shard): [number, ShardEntry<Host>] => [
          shard,
          { shard, nodeId: input.nodeId, epoch: 0, role: 'leader', host: null, failure: null },
        ]),
      ),
    }),
    initial: 'waiting',
    on: {
      SHARD_FAILED: { target: '.degraded', actions: 'markFailed' },
      SHARD_CLOSED: { actions: 'markClosed' },
      SHARD_ROLE: { actions: 'markRole' },
      STOP: '.stopped',
    },
    states: {
      waiting: {
        on: { SHARD_SERVING: { target: 'waiting', reenter: true, actions: 'markServing' } },
        always: [
          { guard: 'hasFailedShard', target: 'degraded' },
          { guard: 'isEveryShardServing', target: 'routing' },
        ],
      },
      routing: {
        on: { SHARD_SERVING: { actions: 'markServing' } },
      },
      degraded: {
        on: { SHARD_SERVING: { target: 'waiting', actions: 'markServing' } },
      },
      stopped: { type: 'final' },
    },
  });
}

export type ShardRouterMachine<Host> = ReturnType<typeof createShardRouterMachine<Host>>;
export type ShardRouterActor<Host> = ActorRefFrom<ShardRouterMachine<Host>>;

/** The entry for `shard` in the router's current map (undefined: not in the map). */
export function lookup<Host>(actor: ShardRouterActor<Host>, shard: number): ShardEntry<Host> | undefined {
  return actor.getSnapshot().context.shards.get(shard);
}
