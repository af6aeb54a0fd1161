// A contribution as plain values (decoded snapshot records, plans, tests), and the total order
// that settles a clash: two contributions of one (entity, signal, origin) with the same lastSeq
// but different contents, which happens only when one (origin, seq) named two events.
// Invariant: compareContributions is 0 exactly when the two would encode to identical snapshot
// records, so every join (state merge, plan, snapshot, reconciliation) that keeps the greater
// one picks the same winner on every replica.

/** A contribution as plain values (decoded records, tests). */
export interface ContributionValues {
  origin: number;
  lastSeq: number;
  eventCount: number;
  weightPositiveHi: number;
  weightPositiveLo: number;
  weightNegativeHi: number;
  weightNegativeLo: number;
  score: number;
  anchorHi: number;
  anchorLo: number;
  wallHi: number;
  wallLo: number;
  logical: number;
  nodeId: number;
  eventHi: number;
  eventLo: number;
  /** Per window, flat [bucket, count, …] ascending, non-zero counts only. */
  windows: number[][];
}

/**
 * A total order on the contents of two contributions of one (entity, signal, origin) with the
 * same lastSeq, in snapshot-record field order: eventCount, ΣP, ΣN, score (−0 before +0),
 * anchor, lastHlc, lastEvent, then the window rings. 0 exactly when the records are identical.
 */
export function compareContributions(a: ContributionValues, b: ContributionValues): number {
  const order =
    a.lastSeq - b.lastSeq ||
    a.eventCount - b.eventCount ||
    a.weightPositiveHi - b.weightPositiveHi ||
    a.weightPositiveLo - b.weightPositiveLo ||
    a.weightNegativeHi - b.weightNegativeHi ||
    a.weightNegativeLo - b.weightNegativeLo ||
    compareFloat(a.score, b.score) ||
    a.anchorHi - b.anchorHi ||
    a.anchorLo - b.anchorLo ||
    a.wallHi - b.wallHi ||
    a.wallLo - b.wallLo ||
    a.logical - b.logical ||
    a.nodeId - b.nodeId ||
    a.eventHi - b.eventHi ||
    a.eventLo - b.eventLo;
  if (order !== 0) return Math.sign(order);
  for (let window = 0; window < Math.min(a.windows.length, b.windows.length); window++) {
    const left = a.windows[window];
    const right = b.windows[window];
    for (let index = 0; index < Math.min(left.length, right.length); index++) {
      if (left[index] !== right[index]) return left[index] < right[index] ? -1 : 1;
    }
    if (left.length !== right.length) return left.length < right.length ? -1 : 1;
  }
  return Math.sign(a.windows.length - b.windows.length);
}

/** Orders finite floats, with −0 before +0 (states never hold NaN). */
function compareFloat(a: number, b: number): number {
  if (a !== b) return a < b ? -1 : 1;
  if (a !== 0 || Object.is(a, b)) return 0;
  return Object.is(a, -0) ? -1 : 1;
}
