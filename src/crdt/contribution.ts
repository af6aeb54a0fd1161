// One origin's contribution to one (entity, score signal): everything that origin's events for
// that key have added, folded in the origin's own seq order.
// Invariant: a contribution is a pure function of the origin's events for the key with
// seq ≤ lastSeq, folded in seq order. Since an origin's seq space names each event once, two
// contributions of the same (entity, signal, origin) are prefixes of one history, and the one
// with the greater lastSeq contains the other: merge keeps it whole and never adds floats from
// different paths. Same events in the same order ⇒ same bits, on every replica.
//
// Decayed score, anchored: the contribution holds score s at anchor time a (the newest event
// time folded). Folding (t, w): if t ≥ a: s ← s·e^(−λ(t−a)) + w, a ← t; else (an older event
// reaching the origin late) s ← s + w·e^(−λ(a−t)). Query at T: s·e^(−λ(T−a)), the closed form
// Σ wᵢ·e^(−λ(T−tᵢ)) up to float rounding (≈ n·2⁻⁵³ relative).
//
// Windowed counts: per window a sparse ring of (bucket, count) pairs, bucket = ⌊t_s / g⌋ with
// g = window / bucketsPerWindow (60 by default: 1 min for 1h, 24 min for 24h, 168 min for 7d).
// A window counts the buckets (b_T − B, b_T], B = bucketsPerWindow: it covers between
// window − g and window of history, so it may miss events in the oldest partial bucket (at
// most 1/B of the window's span). The ring keeps the newest B buckets the origin has seen;
// an event older than that is counted in totals and score but not in windows.

import { compareHlcParts } from './hlc-timestamp.ts';
import { deltaNs } from './packed-time.ts';
import type { ScoreSignal } from './signal-schema.ts';
import { LIMB } from './weight-micros.ts';

export class Contribution {
  readonly origin: number;
  /** The highest origin seq folded in: the version merge compares. */
  lastSeq = 0;
  eventCount = 0;
  /** ΣP and ΣN of the weight PN-counter in micro-units, each as hi × 2^48 + lo. */
  weightPositiveHi = 0;
  weightPositiveLo = 0;
  weightNegativeHi = 0;
  weightNegativeLo = 0;
  /** Decayed score at the anchor time (anchorHi·2^32 + anchorLo ns). */
  score = 0;
  anchorHi = 0;
  anchorLo = 0;
  /** The greatest HLC among folded events and that event's timestamp. */
  lastWallNs = 0n;
  lastLogical = 0;
  lastNodeId = 0;
  lastEventHi = 0;
  lastEventLo = 0;
  /** Per window of the signal: flat [bucket, count, bucket, count, …], buckets ascending. */
  windows: number[][];

  constructor(origin: number, windowCount: number) {
    this.origin = origin;
    this.windows = [];
    for (let index = 0; index < windowCount; index++) this.windows.push([]);
  }

  clone(): Contribution {
    const copy = new Contribution(this.origin, 0);
    copy.lastSeq = this.lastSeq;
    copy.eventCount = this.eventCount;
    copy.weightPositiveHi = this.weightPositiveHi;
    copy.weightPositiveLo = this.weightPositiveLo;
    copy.weightNegativeHi = this.weightNegativeHi;
    copy.weightNegativeLo = this.weightNegativeLo;
    copy.score = this.score;
    copy.anchorHi = this.anchorHi;
    copy.anchorLo = this.anchorLo;
    copy.lastWallNs = this.lastWallNs;
    copy.lastLogical = this.lastLogical;
    copy.lastNodeId = this.lastNodeId;
    copy.lastEventHi = this.lastEventHi;
    copy.lastEventLo = this.lastEventLo;
    copy.windows = this.windows.map((ring) => ring.slice());
    return copy;
  }

  /** Exact equality, floats compared by value (the state never holds NaN or −0). */
  equals(other: Contribution): boolean {
    if (
      this.origin !== other.origin ||
      this.lastSeq !== other.lastSeq ||
      this.eventCount !== other.eventCount ||
      this.weightPositiveHi !== other.weightPositiveHi ||
      this.weightPositiveLo !== other.weightPositiveLo ||
      this.weightNegativeHi !== other.weightNegativeHi ||
      this.weightNegativeLo !== other.weightNegativeLo ||
      this.score !== other.score ||
      this.anchorHi !== other.anchorHi ||
      this.anchorLo !== other.anchorLo ||
      this.lastWallNs !== other.lastWallNs ||
      this.lastLogical !== other.lastLogical ||
      this.lastNodeId !== other.lastNodeId ||
      this.lastEventHi !== other.lastEventHi ||
      this.lastEventLo !== other.lastEventLo ||
      this.windows.length !== other.windows.length
    ) {
      return false;
    }
    for (let index = 0; index < this.windows.length; index++) {
      const a = this.windows[index];
      const b = other.windows[index];
      if (a.length !== b.length) return false;
      for (let at = 0; at < a.length; at++) if (a[at] !== b[at]) return false;
    }
    return true;
  }
}

/**
 * Folds one score event. `weight` is the f32 value (−0 already normalised to +0), `micros` its
 * |weight| in micro-units, `seconds` ⌊timestampNs / 1e9⌋; the caller has checked seq > lastSeq.
 */
export function foldScoreEvent(
  contribution: Contribution,
  signal: ScoreSignal,
  seq: number,
  timeHi: number,
  timeLo: number,
  seconds: number,
  weight: number,
  micros: number,
  wallNs: bigint,
  logical: number,
  nodeId: number,
): void {
  contribution.lastSeq = seq;
  if (contribution.eventCount === 0) {
    contribution.anchorHi = timeHi;
    contribution.anchorLo = timeLo;
  }
  contribution.eventCount++;
  if (weight >= 0) {
    const lo = contribution.weightPositiveLo + micros;
    if (lo >= LIMB) {
      contribution.weightPositiveHi += Math.floor(lo / LIMB);
      contribution.weightPositiveLo = lo % LIMB;
    } else contribution.weightPositiveLo = lo;
  } else {
    const lo = contribution.weightNegativeLo + micros;
    if (lo >= LIMB) {
      contribution.weightNegativeHi += Math.floor(lo / LIMB);
      contribution.weightNegativeLo = lo % LIMB;
    } else contribution.weightNegativeLo = lo;
  }

  const sinceAnchorNs = deltaNs(timeHi, timeLo, contribution.anchorHi, contribution.anchorLo);
  if (sinceAnchorNs >= 0) {
    contribution.score = contribution.score * Math.exp(-signal.decayPerNs * sinceAnchorNs) + weight;
    contribution.anchorHi = timeHi;
    contribution.anchorLo = timeLo;
  } else {
    contribution.score += weight * Math.exp(signal.decayPerNs * sinceAnchorNs);
  }

  if (
    compareHlcParts(wallNs, logical, nodeId, contribution.lastWallNs, contribution.lastLogical, contribution.lastNodeId) >
    0
  ) {
    contribution.lastWallNs = wallNs;
    contribution.lastLogical = logical;
    contribution.lastNodeId = nodeId;
    contribution.lastEventHi = timeHi;
    contribution.lastEventLo = timeLo;
  }

  const windows = signal.windows;
  for (let index = 0; index < windows.length; index++) {
    const window = windows[index];
    countInRing(contribution.windows[index], Math.floor(seconds / window.bucketSeconds), window.bucketCount);
  }
}

/** Adds one event to a sparse bucket ring (see the header for what is kept). */
export function countInRing(ring: number[], bucket: number, bucketCount: number): void {
  const length = ring.length;
  if (length === 0 || bucket > ring[length - 2]) {
    ring.push(bucket, 1);
    const oldestKept = bucket - bucketCount;
    let drop = 0;
    while (ring[drop] <= oldestKept) drop += 2;
    if (drop > 0) ring.splice(0, drop);
    return;
  }
  if (bucket === ring[length - 2]) {
    ring[length - 1]++;
    return;
  }
  if (bucket <= ring[length - 2] - bucketCount) return;
  let at = length - 4;
  while (at >= 0 && ring[at] > bucket) at -= 2;
  if (at >= 0 && ring[at] === bucket) ring[at + 1]++;
  else ring.splice(at + 2, 0, bucket, 1);
}

/** Events in buckets (queryBucket − bucketCount, queryBucket]. */
export function countInWindow(ring: readonly number[], queryBucket: number, bucketCount: number): number {
  let total = 0;
  const oldest = queryBucket - bucketCount;
  for (let at = ring.length - 2; at >= 0; at -= 2) {
    const bucket = ring[at];
    if (bucket <= oldest) break;
    if (bucket <= queryBucket) total += ring[at + 1];
  }
  return total;
}

/** The contribution's score decayed (or, for a time before the anchor, grown) to the query time. */
export function scoreAt(contribution: Contribution, signal: ScoreSignal, atHi: number, atLo: number): number {
  const elapsedNs = deltaNs(atHi, atLo, contribution.anchorHi, contribution.anchorLo);
  return contribution.score * Math.exp(-signal.decayPerNs * elapsedNs);
}
