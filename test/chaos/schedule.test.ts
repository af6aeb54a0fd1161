// The chaos run's fault schedule: a function of its seed (a printed seed replays the faults),
// one fault at a time with a quiet spell after each, inside the warm-up and cool-down, every
// kind drawn, pauses on both sides of the leader timeout.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { FAULT_KINDS, faultSchedule } from '../../src/chaos/schedule.ts';

const TEN_MINUTES_MS = 600_000;

test('schedule - the same seed gives the same faults, another seed others', () => {
  const options = { durationMs: TEN_MINUTES_MS, targets: 3, leaderTimeoutMs: 1500 };
  assert.equal(faultSchedule({ seed: 7, ...options }), faultSchedule({ seed: 7, ...options }));
  assert.not.equal(faultSchedule({ seed: 7, ...options }), faultSchedule({ seed: 8, ...options }));
});

test('schedule - one fault at a time, a quiet spell after each, inside warm-up and cool-down', () => {
  for (let seed = 1; seed <= 50; seed++) {
    const steps = faultSchedule({ seed, durationMs: TEN_MINUTES_MS, targets: 3, leaderTimeoutMs: 1500 });
    assert.ok(steps.length >= 20, `seed ${seed}: ${steps.length} faults in 10 minutes`);
    assert.ok(steps[0].atMs >= 5_000, 'nothing in the warm-up');
    for (const [index, step] of steps.entries()) {
      assert.ok(step.target >= 0 && step.target < 3);
      assert.ok(step.holdMs > 0);
      assert.ok(step.atMs + step.holdMs <= TEN_MINUTES_MS - 5_000, 'every fault ends before the cool-down');
      const next = steps[index + 1];
      if (next !== undefined) assert.ok(next.atMs >= step.atMs + step.holdMs + 4_000, `seed ${seed}: a quiet spell of at least 4 s after fault ${index}`);
      if (step.kind === 'link-delay') assert.ok(step.delayMs !== undefined && step.delayMs >= 20 && step.delayMs <= 200);
    }
  }
});

test('schedule - every kind is drawn; pauses are shorter and longer than the leader timeout; a kind list is kept to', () => {
  const steps = Array.from({ length: 20 }, (_, seed) => faultSchedule({ seed, durationMs: TEN_MINUTES_MS, targets: 3, leaderTimeoutMs: 1500 })).flat();
  for (const kind of FAULT_KINDS) assert.ok(steps.some((step) => step.kind === kind), `${kind} drawn`);
  const pauses = steps.filter((step) => step.kind === 'pause');
  assert.ok(pauses.some((step) => step.holdMs < 1500) && pauses.some((step) => step.holdMs > 1500), 'pauses on both sides of the leader timeout');
  const only = faultSchedule({ seed: 3, durationMs: TEN_MINUTES_MS, targets: 3, leaderTimeoutMs: 1500, kinds: ['kill'] });
  assert.ok(only.length > 0 && only.every((step) => step.kind === 'kill'));
  assert.equal(faultSchedule({ seed: 3, durationMs: 8_000, targets: 3, leaderTimeoutMs: 1500 }), [], 'no room between warm-up and cool-down: no fault');
});

test.run();
