// The shard machine (src/actors/shard.ts): a term that fails to start (or a tick that throws)
// takes the replica back to following, never the process down; it campaigns again.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createActor } from 'xstate';
import { createShardMachine, type ShardPhase } from '../../src/actors/shard.ts';
import { until } from '../support/waits.ts';

test('shard machine - startLeading throwing goes back to following, and the replica campaigns again', async () => {
  const phases: ShardPhase[] = [];
  let campaigns = 0;
  let throwOnce = true;
  const actor = createActor(createShardMachine(), {
    input: {
      epoch: 0,
      services: {
        shard: 0,
        nodeId: 'a',
        leaderTimeoutMs: 10,
        heartbeatMs: 5,
        random: () => 0,
        every: (ms, tick) => {
          const t = setInterval(tick, ms);
          return () => clearInterval(t);
        },
        campaign: async () => {
          campaigns++;
          return { kind: 'won', epoch: campaigns };
        },
        startLeading: () => {
          if (throwOnce) {
            throwOnce = false;
            throw new Error('shipper: the shard does not lead epoch 1 (lead() first)');
          }
          return { tick: () => 'step-down', stop: () => undefined };
        },
        onChange: (change) => phases.push(change.phase),
      },
    },
  });
  let actorError: unknown = null;
  actor.subscribe({ error: (error) => (actorError = error) });
  actor.start();
  await until(() => campaigns > 1 || actor.getSnapshot().status !== 'active', () => `a second campaign (phases ${phases.join(',')})`);
  const snapshot = actor.getSnapshot();
  actor.stop();
  assert.is(snapshot.status, 'active', `the machine survives a failed startLeading (error: ${String(actorError)})`);
  assert.ok(campaigns > 1, 'it campaigns again');
  assert.ok(phases.includes('following'), 'it went back to following');
});

test.run();
