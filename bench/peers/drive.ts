// Time-bounded load: `callers` concurrent loops, each awaiting one operation at a time, until
// the deadline or `maxOperations`. Shared by the WAL benchmark and its peers so every
// system is driven the same way.

export interface DriveOptions {
  callers: number;
  durationMs: number;
  /** Upper bound on operations (e.g. the size of a pre-built input pool). */
  maxOperations: number;
  /** Keep each operation's latency (µs); off for batch phases to keep the loop lean. */
  isLatencyRecorded?: boolean;
  /** Runs operation number `index`; resolves with the events it carried. */
  operation: (index: number) => Promise<number>;
}

export interface DriveResult {
  operations: number;
  events: number;
  /** From the first call to the last settled one (in-flight calls at the deadline count). */
  elapsedMs: number;
  eventsPerSecond: number;
  latenciesUs: number[];
  /** True when the input pool ran out before the deadline. */
  isPoolExhausted: boolean;
}

export async function drive(options: DriveOptions): Promise<DriveResult> {
  const { callers, durationMs, maxOperations, operation } = options;
  const isLatencyRecorded = options.isLatencyRecorded ?? false;
  const latenciesUs: number[] = [];
  let next = 0;
  let events = 0;
  const startMs = performance.now();
  const deadlineMs = startMs + durationMs;
  const loop = async (): Promise<void> => {
    while (next < maxOperations && performance.now() < deadlineMs) {
      const index = next++;
      const callStartMs = isLatencyRecorded ? performance.now() : 0;
      // Not `events += await …`: that reads `events` before the await and loses other callers' counts.
      const carried = await operation(index);
      events += carried;
      if (isLatencyRecorded) latenciesUs.push((performance.now() - callStartMs) * 1000);
    }
  };
  await Promise.all(Array.from({ length: callers }, loop));
  const elapsedMs = performance.now() - startMs;
  return {
    operations: next,
    events,
    elapsedMs,
    eventsPerSecond: events / (elapsedMs / 1000),
    latenciesUs,
    isPoolExhausted: next >= maxOperations && performance.now() < deadlineMs,
  };
}
