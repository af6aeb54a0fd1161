// Which of a shard's oldest segments retention may delete. Retention works by whole segments,
// oldest first, and only behind a snapshot: a segment goes only when every batch in it is at
// or below `floorSeq` — the oldest snapshot file kept (so the fallback snapshot can still be
// continued by the log), or without a state machine the checkpoint — and never the open one.
// Within that: while the shard's log is larger than maxBytes, or the segment's newest batch
// is older than maxAgeMs.

import type { RetainedSegment } from './wal-open.ts';

export interface RetentionPolicy {
  /** Delete segments whose newest batch is older than this (0: keep regardless of age). */
  maxAgeMs: number;
  /** Keep the shard's log at most this large, by whole segments (0: no limit). */
  maxBytes: number;
}

const MAX_NS = (1n << 64n) - 1n;

/**
 * An upper bound on the seal time of the newest batch of segment `index`: exact when known;
 * else the next segment's opening time, valid when the next one opened with a marker (seal
 * times never go back since markers exist); else unknown (never old enough).
 */
export function newestBatchBoundNs(segments: readonly RetainedSegment[], index: number): bigint {
  const segment = segments[index];
  if (segment.isNewestKnown) return segment.newestBatchNs;
  const next = segments[index + 1];
  return next !== undefined && next.headKind === 'marker' ? next.openedAtNs : MAX_NS;
}

/** How many of the oldest segments retention releases now. */
export function segmentsToRelease(segments: readonly RetainedSegment[], floorSeq: number, policy: RetentionPolicy, nowNs: bigint): number {
  if (policy.maxAgeMs <= 0 && policy.maxBytes <= 0) return 0;
  let totalBytes = 0;
  for (const segment of segments) totalBytes += segment.bytes;
  const cutoffNs = nowNs - BigInt(Math.round(policy.maxAgeMs)) * 1_000_000n;
  let count = 0;
  // The last segment is the open one: never released.
  while (count < segments.length - 1) {
    const segment = segments[count];
    if (segment.lastSeq > floorSeq) break;
    const isTooLarge = policy.maxBytes > 0 && totalBytes > policy.maxBytes;
    const isTooOld = policy.maxAgeMs > 0 && newestBatchBoundNs(segments, count) < cutoffNs;
    if (!isTooLarge && !isTooOld) break;
    totalBytes -= segment.bytes;
    count++;
  }
  return count;
}
