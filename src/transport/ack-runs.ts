// Ack runs and the route: how an AppendReply says which seq each request event got without
// one number per event. Invariant: a reply that passes checkRuns/decodeRoute names exactly
// one seq (or 0, "duplicate") for every event of the request, in request order.
//
// Runs: [seq, length, seq, length, …] over one part's events in their order. A run with
// seq s > 0 stands for s, s+1, …, s+length-1; a run with seq 0 for `length` duplicates (not
// written again). Non-zero runs increase and never overlap; lengths are ≥ 1.
//
//   seqs   [7, 8, 9, 0, 0, 10, 12]   →   runs [7, 3,  0, 2,  10, 1,  12, 1]
//
// Route: one u16 little-endian per request event, the index into `parts` of the part that
// holds it; events of one part keep their request order inside that part.
//
//   offset  size  field
//   ------  ----  ----------------------------------------------
//      2i     2   part index of request event i (u16 LE)

import { TidelogError, invariant } from '../errors.ts';
import type { AckPart } from './messages.ts';

const U16_MAX = 0xffff;

/** Seqs in event order (as Wal.appendMany returns them) → runs. */
export function seqsToRuns(seqs: readonly number[]): number[] {
  const runs: number[] = [];
  let runSeq = -1;
  let runLength = 0;
  for (const seq of seqs) {
    const continues = runLength > 0 && (runSeq === 0 ? seq === 0 : seq === runSeq + runLength);
    if (continues) {
      runLength++;
      continue;
    }
    if (runLength > 0) runs.push(runSeq, runLength);
    runSeq = seq;
    runLength = 1;
  }
  if (runLength > 0) runs.push(runSeq, runLength);
  return runs;
}

/**
 * Validates runs that came off the wire and returns how many events they cover. Checks the
 * totals before anyone expands them, so a hostile `[1, 2^50]` costs nothing.
 */
export function checkRuns(runs: readonly unknown[]): number {
  if (runs.length % 2 !== 0) throw runFault('runs must be [seq, length] pairs', { length: runs.length });
  let total = 0;
  let nextFreeSeq = 1;
  for (let index = 0; index < runs.length; index += 2) {
    const seq = runs[index];
    const length = runs[index + 1];
    if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 0) {
      throw runFault('a run seq must be an integer ≥ 0', { index });
    }
    if (typeof length !== 'number' || !Number.isSafeInteger(length) || length < 1) {
      throw runFault('a run length must be an integer ≥ 1', { index: index + 1 });
    }
    total += length;
    if (!Number.isSafeInteger(total)) throw runFault('runs cover more events than a u53 counts', { index });
    if (seq === 0) continue;
    // Compared as a difference: seq + length - 1 rounds back into range near 2^53.
    if (seq > Number.MAX_SAFE_INTEGER - (length - 1)) throw runFault('a run passes the largest u53 seq', { index });
    const lastSeq = seq + length - 1;
    if (seq < nextFreeSeq) throw runFault('non-zero runs must increase without overlapping', { index, seq });
    nextFreeSeq = lastSeq + 1;
  }
  return total;
}

/** Runs → one seq per event (0 for a duplicate); DECODE_FAILED unless they cover expectedCount. */
export function runsToSeqs(runs: readonly number[], expectedCount: number): number[] {
  const total = checkRuns(runs);
  if (total !== expectedCount) throw runFault(`runs cover ${total} events, expected ${expectedCount}`, { total, expectedCount });
  const seqs = new Array<number>(total);
  let at = 0;
  for (let index = 0; index < runs.length; index += 2) {
    const seq = runs[index];
    const end = at + runs[index + 1];
    if (seq === 0) seqs.fill(0, at, end);
    else for (let offset = 0; at < end; offset++) seqs[at++] = seq + offset;
    at = end;
  }
  return seqs;
}

/** Part index per request event → the route bytes (u16 LE each). */
export function routeOf(partIndexPerEvent: ArrayLike<number>): Uint8Array {
  const route = new Uint8Array(partIndexPerEvent.length * 2);
  for (let event = 0; event < partIndexPerEvent.length; event++) {
    const part = partIndexPerEvent[event];
    invariant(Number.isInteger(part) && part >= 0 && part <= U16_MAX, `route: part index ${part} is not a u16`);
    route[2 * event] = part & 0xff;
    route[2 * event + 1] = part >>> 8;
  }
  return route;
}

/** Route bytes → part index per event; DECODE_FAILED on an odd length or an index ≥ partCount. */
export function decodeRoute(route: Uint8Array, partCount: number): Uint16Array {
  if (route.byteLength % 2 !== 0) throw runFault('route must be u16 per event', { byteLength: route.byteLength });
  const parts = new Uint16Array(route.byteLength / 2);
  for (let event = 0; event < parts.length; event++) {
    const part = route[2 * event] | (route[2 * event + 1] << 8);
    if (part >= partCount) throw runFault(`route names part ${part} of ${partCount}`, { event, part, partCount });
    parts[event] = part;
  }
  return parts;
}

/**
 * Per request event, in request order: its seq (0: duplicate) and the index of its part in
 * `parts`. Without a route every event belongs to the only part.
 */
export function acksInEventOrder(
  parts: readonly AckPart[],
  route: Uint8Array | undefined,
  eventCount: number,
): { seqs: number[]; partIndexes: Uint16Array } {
  if (route === undefined) {
    if (parts.length > 1) throw runFault(`a reply with ${parts.length} parts needs a route`, { parts: parts.length });
    const seqs = parts.length === 0 ? runsToSeqs([], eventCount) : runsToSeqs(parts[0].runs, eventCount);
    return { seqs, partIndexes: new Uint16Array(eventCount) };
  }
  const partIndexes = decodeRoute(route, parts.length);
  if (partIndexes.length !== eventCount) {
    throw runFault(`route covers ${partIndexes.length} events, expected ${eventCount}`, { routed: partIndexes.length, eventCount });
  }
  const counts = eventsPerPart(partIndexes, parts.length);
  const perPart = parts.map((part, index) => runsToSeqs(part.runs, counts[index]));
  const nextInPart = new Array<number>(parts.length).fill(0);
  const seqs = new Array<number>(eventCount);
  for (let event = 0; event < eventCount; event++) {
    const part = partIndexes[event];
    seqs[event] = perPart[part][nextInPart[part]++];
  }
  return { seqs, partIndexes };
}

/** How many route entries name each part (one pass). */
export function eventsPerPart(partIndexes: Uint16Array, partCount: number): number[] {
  const counts = new Array<number>(partCount).fill(0);
  for (const part of partIndexes) counts[part]++;
  return counts;
}

function runFault(message: string, details: Record<string, unknown>): TidelogError {
  return new TidelogError('DECODE_FAILED', message, { details });
}
