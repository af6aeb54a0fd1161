// Time enters tidelog through one Clock so tests can move it by hand.

export interface Clock {
  /** Wall-clock milliseconds since the Unix epoch. */
  nowMs(): number;
  /** Wall-clock nanoseconds since the Unix epoch (u64). */
  nowNs(): bigint;
}

const startNs = BigInt(Date.now()) * 1_000_000n - process.hrtime.bigint();

export const systemClock: Clock = {
  nowMs: () => Date.now(),
  // hrtime is monotonic; anchoring it to Date.now() once keeps nanosecond resolution.
  nowNs: () => startNs + process.hrtime.bigint(),
};

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
