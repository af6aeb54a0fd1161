// The fault schedule of a chaos run (`tidelog chaos`): a pure function of a seed and a
// duration, so a run's faults replay from the seed its summary prints. One fault at a time:
// it starts, holds, ends (heal, resume, restart), then the cluster gets a quiet spell in which
// the runner measures how long the replicas take to converge again.
//
//   0 ── warm-up ── [fault ── hold ── end] ── quiet ── [fault ── hold ── end] ── quiet … ── cool-down ── duration
//
// The kinds, each aimed at one of the three node/server pairs (node i is connected to
// nats-server i; the producers and consumers too, one per server):
//   kill            SIGKILL of node i, started again after the hold (a crash, lost page cache kept)
//   pause           SIGSTOP of node i for the hold, then SIGCONT (a long GC pause, a stalled VM);
//                   holds longer than the leader timeout are chosen half the time
//   partition-cut   nats-server i's route links closed and refused: node i, its producer and
//                   consumer are cut off from the other two
//   partition-blackhole  the same links held open and silent (found only by pings)
//   link-delay      nats-server i's route links delayed by 20–200 ms each way
//   nats-kill       SIGKILL of nats-server i (its JetStream store kept), started again after the hold
//   disk-eio        every fdatasync of node i's WAL fails with EIO (src/wal/injected-faults.ts):
//                   its shards' lanes stop (fail-stop), its leaders step down; after the hold the
//                   fault is lifted and the node restarted (a failed lane needs a restart)
//   disk-full       every WAL write of node i fails with ENOSPC; the same ending
//   power-cut       node i loses every byte it had not fsynced and dies (SIGKILL), started
//                   again after the hold
//   clock-jump      node i's wall clock jumps 5 s–10 min forward or back (its injected clock,
//                   src/clock.ts), and back after the hold: seal times, dedup windows and
//                   retention by age read it; timeouts are monotonic and do not

export const FAULT_KINDS = ['kill', 'pause', 'partition-cut', 'partition-blackhole', 'link-delay', 'nats-kill', 'disk-eio', 'disk-full', 'power-cut', 'clock-jump'] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

export interface FaultStep {
  /** When the fault starts, ms after the load started. */
  atMs: number;
  kind: FaultKind;
  /** The node / nats-server pair it hits (0-based). */
  target: number;
  /** How long the fault lasts before it ends. */
  holdMs: number;
  /** link-delay: the added delay each way. */
  delayMs?: number;
  /** clock-jump: how far the node's wall clock moves (negative: back). */
  offsetMs?: number;
}

export interface ScheduleOptions {
  seed: number;
  durationMs: number;
  /** Node/server pairs (3). */
  targets: number;
  kinds?: readonly FaultKind[];
  /** The leader timeout of the nodes: pauses are chosen on both sides of it. */
  leaderTimeoutMs: number;
  /** No fault in the first and the last this many ms (default 5 s each). */
  warmUpMs?: number;
  coolDownMs?: number;
}

/** Most steps one schedule holds (a bound on the loop: 10 minutes hold about 60). */
const MAX_STEPS = 10_000;

export function faultSchedule(options: ScheduleOptions): FaultStep[] {
  const kinds = options.kinds ?? FAULT_KINDS;
  if (kinds.length === 0) return [];
  const random = mulberry32(options.seed);
  const between = (low: number, high: number): number => Math.round(low + random() * (high - low));
  const steps: FaultStep[] = [];
  const endMs = options.durationMs - (options.coolDownMs ?? 5_000);
  let atMs = options.warmUpMs ?? 5_000;
  while (steps.length < MAX_STEPS) {
    const kind = kinds[Math.floor(random() * kinds.length)];
    const target = Math.floor(random() * options.targets);
    const step: FaultStep = { atMs, kind, target, holdMs: 0 };
    switch (kind) {
      case 'kill':
        step.holdMs = between(500, 4_000);
        break;
      case 'pause':
        step.holdMs = random() < 0.5 ? between(200, options.leaderTimeoutMs * 0.8) : between(options.leaderTimeoutMs * 1.5, options.leaderTimeoutMs * 5);
        break;
      case 'partition-cut':
      case 'partition-blackhole':
        step.holdMs = between(2_000, 12_000);
        break;
      case 'link-delay':
        step.holdMs = between(2_000, 8_000);
        step.delayMs = between(20, 200);
        break;
      case 'nats-kill':
        step.holdMs = between(1_000, 6_000);
        break;
      case 'disk-eio':
      case 'disk-full':
        step.holdMs = between(1_000, 6_000);
        break;
      case 'power-cut':
        step.holdMs = between(500, 4_000);
        break;
      case 'clock-jump':
        step.holdMs = between(2_000, 10_000);
        step.offsetMs = (random() < 0.5 ? -1 : 1) * between(5_000, 600_000);
        break;
    }
    if (atMs + step.holdMs > endMs) break;
    steps.push(step);
    // The quiet spell: long enough for an election (4–9 s when JetStream must elect first).
    atMs += step.holdMs + between(4_000, 10_000);
  }
  return steps;
}

/** A small seeded PRNG (mulberry32): uniform in [0, 1). */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
