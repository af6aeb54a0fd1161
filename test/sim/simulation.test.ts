// The deterministic simulation (cluster-sim.ts) over many seeds. SIM_SEEDS=<n> runs more
// (SIM_SEED_FROM=<first>); SIM_SEED=<seed> replays one seed with a trace of every step
// (SIM_ACKS=leader: in availability mode). SIM_AVAILABILITY_SEEDS=<n>: availability-mode seeds.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { runSimulation, type SimResult } from './cluster-sim.ts';

const single = process.env.SIM_SEED;
const count = Number(process.env.SIM_SEEDS ?? 300);
const availabilityCount = Number(process.env.SIM_AVAILABILITY_SEEDS ?? 100);
const singleAcks = process.env.SIM_ACKS === 'leader' ? 'leader' : 'quorum';
const from = Number(process.env.SIM_SEED_FROM ?? 1);

/** One seed in four runs five replicas (two may be down at once), the rest three. */
function nodesFor(seed: number): number {
  return seed % 4 === 0 ? 5 : 3;
}

/**
 * One seed in three keeps at most 8 KiB of log per replica: retention waits 250 ms for a
 * silent replica, so replicas that were away longer are sent a snapshot when they return.
 */
function retentionFor(seed: number): number {
  return seed % 3 === 2 ? 8 << 10 : 0;
}

if (single !== undefined) {
  test(`simulation - seed ${single} (traced)`, async () => {
    const result = await runSimulation({
      seed: Number(single),
      nodes: nodesFor(Number(single)),
      ...(singleAcks === 'leader' ? { acks: 'leader' as const } : { retentionMaxBytes: retentionFor(Number(single)) }),
      trace: (line) => process.stdout.write(`${line}\n`),
    });
    process.stdout.write(`${JSON.stringify(result)}\n`);
  });
} else {
  test(`simulation - ${count} seeds from ${from} (3 or 5 replicas): invariants hold after every step, the group converges`, async () => {
    const totals = { steps: 0, acked: 0, crashes: 0, partitions: 0, elections: 0, segmentsDeleted: 0, snapshotsInstalled: 0, repairs: 0 };
    const failures: string[] = [];
    for (let seed = from; seed < from + count; seed++) {
      let result: SimResult;
      try {
        result = await runSimulation({ seed, nodes: nodesFor(seed), retentionMaxBytes: retentionFor(seed) });
      } catch (error) {
        failures.push(`${(error as Error).message.split('\n')[0]} (replay: SIM_SEED=${seed} npx tsx test/sim/simulation.test.ts)`);
        if (failures.length >= 5) break;
        continue;
      }
      totals.steps += result.steps;
      totals.acked += result.acked;
      totals.crashes += result.crashes;
      totals.partitions += result.partitions;
      totals.elections += result.elections;
      totals.segmentsDeleted += result.segmentsDeleted;
      totals.snapshotsInstalled += result.snapshotsInstalled;
      totals.repairs += result.repairs;
    }
    process.stdout.write(`  ${JSON.stringify(totals)}\n`);
    assert.equal(failures, [], failures.join('\n'));
    // The runs did what they are for: load acked, faults injected, leaders changed.
    assert.ok(totals.acked > count * 50, `acked ${totals.acked}`);
    assert.ok(totals.crashes > count, `crashes ${totals.crashes}`);
    assert.ok(totals.elections > count * 2, `elections ${totals.elections}`);
    assert.ok(count < 3 || totals.segmentsDeleted > 0, 'retention deleted segments in the seeds that have it');
    assert.ok(count < 100 || totals.snapshotsInstalled > 0, 'replicas behind retention were sent snapshots');
    assert.ok(count < 100 || totals.repairs > 0, 'replicas with a rotted segment were repaired from their peers');
  });
}

if (single === undefined) {
  test(`simulation - availability mode, ${availabilityCount} seeds from ${from}: splits with a producer on each side; every acked event in the log exactly once, merged at new seqs`, async () => {
    const totals = { acked: 0, partitions: 0, elections: 0, movedAcks: 0, mergedBatches: 0 };
    const failures: string[] = [];
    for (let seed = from; seed < from + availabilityCount; seed++) {
      let result: SimResult;
      try {
        result = await runSimulation({ seed, nodes: nodesFor(seed), acks: 'leader' });
      } catch (error) {
        failures.push(`${(error as Error).message.split('\n')[0]} (replay: SIM_ACKS=leader SIM_SEED=${seed} npx tsx test/sim/simulation.test.ts)`);
        if (failures.length >= 5) break;
        continue;
      }
      for (const key of Object.keys(totals) as Array<keyof typeof totals>) totals[key] += result[key];
    }
    process.stdout.write(`  ${JSON.stringify(totals)}\n`);
    assert.equal(failures, [], failures.join('\n'));
    // Both sides of splits acknowledged, and merges moved acked events to new seqs.
    assert.ok(totals.acked > availabilityCount * 50, `acked ${totals.acked}`);
    assert.ok(availabilityCount < 50 || totals.movedAcks > 0, `acked events moved by merges: ${totals.movedAcks}`);
    assert.ok(availabilityCount < 50 || totals.mergedBatches > 0, `orphan batches merged: ${totals.mergedBatches}`);
  });
}

test.run();
