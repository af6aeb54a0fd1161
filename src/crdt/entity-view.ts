// What a query returns: an entity's signals and flags at a point in time, summed over origins
// in ascending origin order (a fixed order, so equal states give bit-identical answers).
// Invariant: reading never changes the state.

import type { FlagTable } from './flag-table.ts';
import { HlcTimestamp } from './hlc-timestamp.ts';
import { joinNs, secondsOf, splitNs } from './packed-time.ts';
import { PNCounter } from './pn-counter.ts';
import type { ContributionValues } from './contribution-values.ts';
import type { ScoreColumn } from './score-column.ts';
import type { SignalSchema } from './signal-schema.ts';
import { microsToUnits, wideToBigInt } from './weight-micros.ts';

export interface SignalScore {
  signalType: number;
  name: string;
  /** Σ over origins of the decayed score at the query time. */
  score: number;
  /** Events per window name (bucket-granular, see score-column.ts). */
  counts: Record<string, number>;
  eventCount: number;
  /** Σ weights (exact in micro-units, then converted). */
  weightSum: number;
  weightSumMicros: bigint;
  /** The greatest event HLC over origins, and that event's timestamp ("last signal seen"). */
  lastHlc: HlcTimestamp | null;
  lastEventNs: bigint | null;
  /** How many origins contributed. */
  originCount: number;
}

export interface EntityView {
  entityId: bigint;
  atNs: bigint;
  /** Every score signal of the schema, by name (zeros when the entity has none). */
  signals: Record<string, SignalScore>;
  /** Every flag of the schema, by name (false when never set). */
  flags: Record<string, boolean>;
}

/** The view of `entityId` (entity number `entity`, −1 when absent) at `atNs` (decay and windows evaluated then). */
export function viewEntity(
  schema: SignalSchema,
  columns: readonly ScoreColumn[],
  flags: FlagTable,
  entity: number,
  entityId: bigint,
  atNs: bigint,
): EntityView {
  const [atHi, atLo] = splitNs(atNs);
  const atSeconds = secondsOf(atHi, atLo);
  const signals: Record<string, SignalScore> = {};
  for (const column of columns) {
    const signal = column.signal;
    const view: SignalScore = {
      signalType: signal.id,
      name: signal.name,
      score: 0,
      counts: Object.fromEntries(signal.windows.map((window) => [window.name, 0])),
      eventCount: 0,
      weightSum: 0,
      weightSumMicros: 0n,
      lastHlc: null,
      lastEventNs: null,
      originCount: 0,
    };
    let best: ContributionValues | undefined;
    const chain = column.chain(entity);
    for (const slot of chain) {
      const values = column.values(slot);
      view.score += column.scoreAt(slot, atHi, atLo);
      view.eventCount += values.eventCount;
      view.weightSumMicros +=
        wideToBigInt(values.weightPositiveHi, values.weightPositiveLo) -
        wideToBigInt(values.weightNegativeHi, values.weightNegativeLo);
      signal.windows.forEach((window, index) => {
        view.counts[window.name] += column.countAt(slot, index, atSeconds);
      });
      const order =
        best === undefined
          ? 1
          : values.wallHi - best.wallHi || values.wallLo - best.wallLo || values.logical - best.logical || values.nodeId - best.nodeId;
      if (order > 0) best = values;
    }
    if (best !== undefined) {
      view.lastHlc = new HlcTimestamp(joinNs(best.wallHi, best.wallLo), best.logical, best.nodeId);
      view.lastEventNs = joinNs(best.eventHi, best.eventLo);
    }
    view.weightSum = microsToUnits(view.weightSumMicros);
    view.originCount = chain.length;
    signals[signal.name] = view;
  }
  const flagValues: Record<string, boolean> = {};
  schema.flags.forEach((name, index) => {
    flagValues[name] = entity >= 0 && flags.valueOf(entity, index);
  });
  return { entityId, atNs, signals, flags: flagValues };
}

/**
 * The cell's event count and weight sum as PN-counters keyed by origin (PN-counters hold
 * micro-units: `events.value` is the event count, `weightMicros.micros` the weight sum in
 * micro-units).
 */
export function countersOf(column: ScoreColumn | undefined, entity: number): { events: PNCounter; weightMicros: PNCounter } {
  const events = new PNCounter();
  const weightMicros = new PNCounter();
  for (const slot of column?.chain(entity) ?? []) {
    const values = (column as ScoreColumn).values(slot);
    events.increment(values.origin, values.eventCount);
    weightMicros.raise(
      values.origin,
      wideToBigInt(values.weightPositiveHi, values.weightPositiveLo),
      wideToBigInt(values.weightNegativeHi, values.weightNegativeLo),
    );
  }
  return { events, weightMicros };
}
