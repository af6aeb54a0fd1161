// Counters and latency histograms of one lane's flush worker. Histograms are Node's HDR
// histograms (perf_hooks), recorded in microseconds, so percentiles cost nothing to keep.

import { createHistogram, type RecordableHistogram } from 'node:perf_hooks';

export interface LatencySummary {
  count: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

export interface FlushMetricsSnapshot {
  batches: number;
  events: number;
  bytes: number;
  fsyncs: number;
  /** Time spent in fdatasync since start, µs (a monitor's mean latency per interval: its differences). */
  fsyncTotalUs: number;
  rotations: number;
  /** Bytes written to the open segment and bytes known durable there. */
  writtenOffset: number;
  syncedOffset: number;
  fsyncLatencyUs: LatencySummary;
  /** From a group's seal to the start of its write. */
  queueWaitUs: LatencySummary;
  /** From a group's seal to its PERSISTED. */
  commitLatencyUs: LatencySummary;
}

export class FlushMetrics {
  batches = 0;
  events = 0;
  bytes = 0;
  fsyncs = 0;
  fsyncTotalUs = 0;
  rotations = 0;
  writtenOffset = 0;
  syncedOffset = 0;
  readonly fsyncLatency: RecordableHistogram = createHistogram();
  readonly queueWait: RecordableHistogram = createHistogram();
  readonly commitLatency: RecordableHistogram = createHistogram();

  snapshot(): FlushMetricsSnapshot {
    return {
      batches: this.batches,
      events: this.events,
      bytes: this.bytes,
      fsyncs: this.fsyncs,
      fsyncTotalUs: this.fsyncTotalUs,
      rotations: this.rotations,
      writtenOffset: this.writtenOffset,
      syncedOffset: this.syncedOffset,
      fsyncLatencyUs: summarize(this.fsyncLatency),
      queueWaitUs: summarize(this.queueWait),
      commitLatencyUs: summarize(this.commitLatency),
    };
  }
}

export function recordUs(histogram: RecordableHistogram, fromNs: bigint, toNs: bigint): void {
  // HDR histograms take integers >= 1.
  histogram.record(Math.max(1, Number((toNs - fromNs) / 1000n)));
}

function summarize(histogram: RecordableHistogram): LatencySummary {
  if (histogram.count === 0) return { count: 0, p50: 0, p90: 0, p99: 0, max: 0 };
  return {
    count: histogram.count,
    p50: histogram.percentile(50),
    p90: histogram.percentile(90),
    p99: histogram.percentile(99),
    max: histogram.max,
  };
}
