// Time enters tidelog through one Clock so tests can move it by hand.

export interface Clock {
  /** Wall-clock milliseconds since the Unix epoch. */
  nowMs(): number;
  /** Wall-clock nanoseconds since the Unix epoch (u64). */
  nowNs(): bigint;
}

const startNs = BigInt(Date.now()) * 1_000_000n - process.hrtime.bigint();

/** A jump of this process's wall clock (fault injection only: `tidelog chaos` clock jumps). */
let offsetMs = 0;
let offsetNs = 0n;

export const systemClock: Clock = {
  nowMs: () => Date.now() + offsetMs,
  // hrtime is monotonic; anchoring it to Date.now() once keeps nanosecond resolution.
  nowNs: () => startNs + process.hrtime.bigint() + offsetNs,
};

/**
 * Moves systemClock by `ms` from the true wall clock (0: back to it), as a clock that an NTP
 * step or an operator moved would. Only the fault injection of a node process calls it
 * (src/wal/injected-faults.ts, TIDELOG_FAULT_FILE); monotonic timers are not affected.
 */
export function setWallClockOffsetMs(ms: number): void {
  if (!Number.isSafeInteger(ms)) throw new RangeError(`clock offset must be an integer of ms, got ${ms}`);
  offsetMs = ms;
  offsetNs = BigInt(ms) * 1_000_000n;
}

/** A clock that moves only when told to; for tests. */
export class ManualClock implements Clock {
  private currentNs: bigint;
  constructor(startMs = 1_700_000_000_000) {
    this.currentNs = BigInt(startMs) * 1_000_000n;
  }
  nowMs(): number {
    return Number(this.currentNs / 1_000_000n);
  }
  nowNs(): bigint {
    return this.currentNs;
  }
  advanceMs(ms: number): void {
    this.currentNs += BigInt(Math.round(ms * 1_000_000));
  }
}
