// The shard machine: one per (node, replicated shard). It decides when this replica follows,
// campaigns and leads; the work itself (elections, shipping, verbatim appends) is done by the
// services it is given (src/node/shard-replica.ts, over src/node/election.ts and
// replication.ts). Batches never pass through it: it sees one event per leader contact and
// one tick per heartbeat.
//
//            LEADER_CONTACT / PREPARED (restart the timer)
//               ┌──────┐
//               ▼      │        leaderTimeoutMs (+ jitter) without one, or CAMPAIGN_NOW
//   ┌─────────────────────┐ ─────────────────────────────────────► ┌──────────┐
//   │      following      │ ◄──── lost / failed / error ────────── │ electing │
//   └─────────────────────┘                                         └──────────┘
//        ▲        ▲                                                      │ won
//        │        │ STEP_DOWN (no quorum for leaderTimeoutMs,            ▼
//        │        │ fenced by a newer epoch)               ┌──────────────────────────────┐
//        │        └─────────────── stepping-down ◄──────── │ leading: preparing → serving │
//        │                                                  └──────────────────────────────┘
//        └── (the host's lane failed: failed, final; STOP from anywhere: stopped, final)
//
// `preparing`: this replica leads its epoch but the commit point has not yet reached the
// durable end it had when it began to lead; producers are served only in `serving`.

import { assign, fromCallback, fromPromise, setup, type ActorRefFrom } from 'xstate';

export type ShardPhase = 'following' | 'electing' | 'preparing' | 'serving' | 'failed' | 'stopped';

export type CampaignResult = { kind: 'won'; epoch: number } | { kind: 'lost'; epoch: number; holder: string | null } | { kind: 'failed'; epoch: number; reason: string };

/** One term of leadership, started when a campaign is won. */
export interface Leadership {
  /** Every heartbeatMs: ship (heartbeat), then say where leadership stands. */
  tick(): 'preparing' | 'serving' | 'step-down';
  /** Ends shipping for good. */
  stop(): void;
}

export interface ShardMachineServices {
  shard: number;
  nodeId: string;
  leaderTimeoutMs: number;
  heartbeatMs: number;
  /** Uniform in [0, 1): the jitter of the leader timeout (seeded in the simulation). */
  random(): number;
  /** preVote false: a stopping leader handed the shard over (Raft's TimeoutNow skips pre-vote). */
  campaign(options: { preVote: boolean }): Promise<CampaignResult>;
  startLeading(epoch: number): Leadership;
  /** Calls `tick` every `ms` until the returned function is called. */
  every(ms: number, tick: () => void): () => void;
  /** The phase, epoch or known leader changed. */
  onChange(change: { phase: ShardPhase; epoch: number; leaderId: string | null; reason?: string }): void;
}

export type ShardMachineEvent =
  | { type: 'LEADER_CONTACT'; epoch: number; leaderId: string }
  | { type: 'PREPARED'; epoch: number; candidateId: string }
  /** The leader of our epoch is stopping and chose this replica: campaign now, not after the timeout. */
  | { type: 'CAMPAIGN_NOW'; epoch: number; leaderId: string }
  | { type: 'SERVING' }
  | { type: 'STEP_DOWN'; reason: string }
  | { type: 'FAILED'; error: Error }
  | { type: 'STOP' };

interface ShardMachineContext {
  services: ShardMachineServices;
  epoch: number;
  leaderId: string | null;
  /** Why the last term or campaign ended (status and logs). */
  reason: string;
  /** The campaign under way was asked for by the stopping leader (no pre-vote). */
  isHandoff: boolean;
}

export function createShardMachine() {
  return setup({
    types: {
      context: {} as ShardMachineContext,
      events: {} as ShardMachineEvent,
      input: {} as { services: ShardMachineServices; epoch: number },
    },
    delays: {
      // Randomised so that replicas that lost the same leader do not all campaign at once.
      leaderTimeout: ({ context }) => Math.round(context.services.leaderTimeoutMs * (1 + context.services.random())),
    },
    actors: {
      campaign: fromPromise<CampaignResult, { services: ShardMachineServices; isHandoff: boolean }>(({ input }) => input.services.campaign({ preVote: !input.isHandoff })),
      leadership: fromCallback<ShardMachineEvent, { services: ShardMachineServices; epoch: number }>(({ input, sendBack }) => {
        const leadership = input.services.startLeading(input.epoch);
        let last: 'preparing' | 'serving' | 'step-down' = 'preparing';
        const check = (): void => {
          if (last === 'step-down') return;
          const now = leadership.tick();
          if (now === last) return;
          last = now;
          sendBack(now === 'serving' ? { type: 'SERVING' } : { type: 'STEP_DOWN', reason: now === 'step-down' ? 'no quorum or a newer epoch' : 'unexpected' });
        };
        const cancel = input.services.every(input.services.heartbeatMs, check);
        check();
        return () => {
          cancel();
          leadership.stop();
        };
      }),
    },
    actions: {
      report: ({ context }, params: { phase: ShardPhase }) =>
        context.services.onChange({ phase: params.phase, epoch: context.epoch, leaderId: context.leaderId, reason: context.reason }),
      noteContact: assign(({ context, event }) => {
        if (event.type === 'LEADER_CONTACT') return { epoch: Math.max(context.epoch, event.epoch), leaderId: event.leaderId };
        if (event.type === 'PREPARED') return { epoch: Math.max(context.epoch, event.epoch), leaderId: null };
        return {};
      }),
    },
    guards: {
      isNewContact: ({ context, event }) =>
        (event.type === 'LEADER_CONTACT' && (event.epoch !== context.epoch || event.leaderId !== context.leaderId)) ||
        (event.type === 'PREPARED' && event.epoch !== context.epoch),
    },
  }).createMachine({
    id: 'shard',
    context: ({ input }) => ({ services: input.services, epoch: input.epoch, leaderId: null, reason: 'opened', isHandoff: false }),
    initial: 'following',
    on: {
      FAILED: { target: '.failed', actions: assign({ reason: ({ event }) => event.error.message }) },
      STOP: '.stopped',
    },
    states: {
      following: {
        entry: { type: 'report', params: { phase: 'following' } },
        initial: 'waiting',
        states: {
          // A contact re-enters `waiting` (not `following`), which restarts the timer only.
          waiting: {
            after: { leaderTimeout: { target: '#shard.electing', actions: assign({ isHandoff: false }) } },
            on: {
              LEADER_CONTACT: [
                { guard: 'isNewContact', target: 'waiting', reenter: true, actions: ['noteContact', { type: 'report', params: { phase: 'following' } }] },
                { target: 'waiting', reenter: true },
              ],
              PREPARED: { target: 'waiting', reenter: true, actions: 'noteContact' },
              CAMPAIGN_NOW: {
                // Only from the leader this replica follows (or, knowing none, for its epoch).
                guard: ({ context, event }) => event.epoch === context.epoch && (context.leaderId === null || event.leaderId === context.leaderId),
                target: '#shard.electing',
                actions: assign({ isHandoff: true, reason: ({ event }) => `${event.leaderId} handed off epoch ${event.epoch}` }),
              },
            },
          },
        },
      },
      electing: {
        entry: [assign({ leaderId: null }), { type: 'report', params: { phase: 'electing' } }],
        invoke: {
          src: 'campaign',
          input: ({ context }) => ({ services: context.services, isHandoff: context.isHandoff }),
          onDone: [
            {
              guard: ({ event }) => event.output.kind === 'won',
              target: 'leading',
              actions: assign(({ context, event }) => ({ epoch: event.output.epoch, leaderId: context.services.nodeId, reason: 'won' })),
            },
            {
              target: 'following',
              actions: assign(({ context, event }) => ({
                epoch: Math.max(context.epoch, event.output.epoch - (event.output.kind === 'lost' ? 0 : 1)),
                leaderId: event.output.kind === 'lost' ? event.output.holder : null,
                reason: event.output.kind === 'failed' ? event.output.reason : `epoch ${event.output.epoch} went to ${event.output.kind === 'lost' ? (event.output.holder ?? 'a newer candidate') : 'nobody'}`,
              })),
            },
          ],
          onError: { target: 'following', actions: assign({ reason: ({ event }) => `campaign failed: ${String((event.error as Error)?.message ?? event.error)}` }) },
        },
        // A leader or candidate of a newer epoch reached us meanwhile: the campaign sees the
        // newer epoch and gives up; its outcome takes us back to following.
      },
      leading: {
        invoke: {
          src: 'leadership',
          input: ({ context }) => ({ services: context.services, epoch: context.epoch }),
          // Starting or ticking the term failed (the log no longer leads, a bug): stop leading,
          // never take the process down with it.
          onError: { target: 'following', actions: assign({ leaderId: null, reason: ({ event }) => `leadership failed: ${String((event.error as Error)?.message ?? event.error)}` }) },
        },
        initial: 'preparing',
        on: {
          STEP_DOWN: { target: 'following', actions: assign({ leaderId: null, reason: ({ event }) => event.reason }) },
        },
        states: {
          preparing: {
            entry: { type: 'report', params: { phase: 'preparing' } },
            on: { SERVING: 'serving' },
          },
          serving: {
            entry: { type: 'report', params: { phase: 'serving' } },
          },
        },
      },
      failed: {
        type: 'final',
        entry: { type: 'report', params: { phase: 'failed' } },
      },
      stopped: {
        type: 'final',
        entry: { type: 'report', params: { phase: 'stopped' } },
      },
    },
  });
}

export type ShardMachine = ReturnType<typeof createShardMachine>;
export type ShardActor = ActorRefFrom<ShardMachine>;
