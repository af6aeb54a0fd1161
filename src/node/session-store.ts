// Producer sessions of one shard: the idempotency store. A producer tags each per-shard append
// with (producerId, sessionEpoch, requestSeq); the store says whether to append it, answer a
// retry with the original seqs, or refuse it (a gap, a fenced epoch).
// Invariant: the durable part (sessions) changes only through applyNote, i.e. only from notes
// that are in the log, in log order; so every replica of the shard and every recovery of it
// holds the same sessions and encodes them to the same bytes. What is only in flight lives
// beside it (flights) and is never snapshotted.
//
// Per session, durable:
//   sessionEpoch   the newest epoch noted; a higher one resets the session (requestSeq 1)
//   hwm            the highest requestSeq noted
//   floor          requestSeqs ≤ floor were noted and forgotten: a retry is answered 'applied'
//                  (0 when a session starts: the store never claims what it has not seen)
//   recent         requestSeq → runs for the newest noted requests in (floor, hwm], at most
//                  maxRunsPerSession of them; the lowest requestSeq is forgotten first
//                  (floor rises to it), because retries are of recent requests.
//   digests        requestSeq → the digest of its events (session-note.ts), for those of
//                  `recent` whose note carried one: a retry with other events under a
//                  remembered number is REQUEST_MISMATCH, never answered with the first
//                  request's seqs (its events would be dropped without a word).
// A requestSeq in (floor, hwm] that `recent` lacks was never noted: it is a request whose
// append failed while later pipelined ones succeeded, so a retry of it is appended. That is
// why eviction goes by requestSeq, not by access, and why in-flight requests per session are
// bounded by maxRunsPerSession too: a failed request stays inside the window while the ones
// pipelined behind it land. Answering 'applied' for a request that never landed would lose
// it; appending a forgotten one again is the lesser failure, so every doubt goes that way.
//
// Sessions are kept in order of their last note and the least recently noted is forgotten
// past maxSessions; runs remembered across all sessions are bounded by maxRememberedRuns
// (the oldest request of the least recently noted session goes first). Once a session was
// forgotten, an unknown producer whose requestSeq is above 1 is accepted (it may be one we
// forgot): idempotency is then best-effort for producers idle long enough to be evicted — a
// retry of a request older than what is remembered may be appended twice, and an evicted
// producer's stale epoch is no longer fenced.

import { deferred, type Deferred } from '../deferred.ts';
import { TidelogError } from '../errors.ts';
import type { SessionTag } from '../transport/messages.ts';
import { checkSessionNumbers, decodeSessionNote, producerIdBytes, runsEventCount, type SessionNote } from './session-note.ts';
import { decodeSessionSnapshot, encodeSessionSnapshot, type SessionRecord } from './session-snapshot.ts';

export interface SessionLimits {
  /** Sessions remembered per shard (default 100 000); the least recently noted goes first. */
  maxSessions?: number;
  /** Requests whose runs one session remembers, and requests it may have in flight (default 64). */
  maxRunsPerSession?: number;
  /** Runs ([seq, length] pairs) remembered across all sessions (default 1 048 576). */
  maxRememberedRuns?: number;
  /** Retries that may wait on one in-flight request (default 16). */
  maxWaitersPerRequest?: number;
}

export const DEFAULT_MAX_SESSIONS = 100_000;
export const DEFAULT_MAX_RUNS_PER_SESSION = 64;
export const DEFAULT_MAX_REMEMBERED_RUNS = 1 << 20;
export const DEFAULT_MAX_WAITERS_PER_REQUEST = 16;

export type BeginResult =
  /** New: append it with a session note; the note's durability settles everything else. */
  | { kind: 'append' }
  /** A retry of a remembered request: answer with its original runs. */
  | { kind: 'replay'; runs: number[] }
  /** A retry of a request applied once but forgotten since. */
  | { kind: 'applied' }
  /** The same request is in flight: resolves with its runs once durable, rejects if it fails. */
  | { kind: 'pending'; promise: Promise<number[]> };

/** What a request carried, as far as the caller said: a retry must carry the same. */
interface RequestShape {
  eventCount: number | undefined;
  digest: number | undefined;
}

interface InFlightRequest extends RequestShape {
  waiters: Deferred<number[]>[];
}

/** A producer's requests being appended now (volatile: leader only, never snapshotted). */
interface Flight {
  epoch: number;
  requests: Map<number, InFlightRequest>;
  /**
   * Availability mode: requests answered once durable here, before their note is committed
   * (requestSeq → runs and shape): a retry is answered with them; they no longer count as in flight.
   */
  durable: Map<number, { runs: number[]; shape: RequestShape }>;
  highest: number;
}

export class SessionStore {
  readonly maxSessions: number;
  readonly maxRunsPerSession: number;
  readonly maxRememberedRuns: number;
  readonly maxWaitersPerRequest: number;
  /** Least recently noted first. */
  private readonly sessions = new Map<string, SessionRecord>();
  /** The sessions holding runs, in the same order (eviction under maxRememberedRuns). */
  private readonly withRuns = new Set<SessionRecord>();
  private readonly flights = new Map<string, Flight>();
  private rememberedRuns = 0;
  private evicted = 0;

  constructor(limits: SessionLimits = {}) {
    this.maxSessions = positive(limits.maxSessions ?? DEFAULT_MAX_SESSIONS, 'maxSessions');
    this.maxRunsPerSession = positive(limits.maxRunsPerSession ?? DEFAULT_MAX_RUNS_PER_SESSION, 'maxRunsPerSession');
    this.maxRememberedRuns = positive(limits.maxRememberedRuns ?? DEFAULT_MAX_REMEMBERED_RUNS, 'maxRememberedRuns');
    this.maxWaitersPerRequest = positive(limits.maxWaitersPerRequest ?? DEFAULT_MAX_WAITERS_PER_REQUEST, 'maxWaitersPerRequest');
  }

  /** Sessions remembered (for metrics). */
  get size(): number {
    return this.sessions.size;
  }

  /** Sessions forgotten so far to stay within the limits. */
  get evictedSessions(): number {
    return this.evicted;
  }

  /** Runs remembered across all sessions. */
  get runCount(): number {
    return this.rememberedRuns;
  }

  /** Requests being appended now, all producers together. */
  get inFlightRequests(): number {
    let total = 0;
    for (const flight of this.flights.values()) total += flight.requests.size;
    return total;
  }

  /**
   * Decides what to do with a tagged request of `eventCount` events whose events have
   * `options.digest` (session-note.ts's eventsDigest; when given, a retry whose event count or
   * digest differs from the original's is REQUEST_MISMATCH: a reused requestSeq).
   * Throws PRODUCER_FENCED for an epoch below the newest seen, SEQUENCE_GAP for a requestSeq
   * beyond the next one (or a new epoch not starting at 1), OVERLOADED past a bound.
   * After 'append' the caller appends with the note, and calls `abandon` if that fails.
   * `allowGap` (a merge re-appending a request acknowledged elsewhere): no SEQUENCE_GAP — the
   * requests before it that this store lacks stay appendable (the window's rule for a requestSeq
   * in (floor, hwm] never noted).
   */
  begin(tag: SessionTag, eventCount?: number, options: { allowGap?: boolean; digest?: number } = {}): BeginResult {
    const shape: RequestShape = { eventCount, digest: options.digest };
    producerIdBytes(tag.producerId);
    checkSessionNumbers(tag);
    const { producerId, sessionEpoch, requestSeq } = tag;
    const session = this.sessions.get(producerId);
    let flight = this.flights.get(producerId);
    const knownEpoch = Math.max(session?.epoch ?? -1, flight?.epoch ?? -1);
    if (sessionEpoch < knownEpoch) {
      throw new TidelogError('PRODUCER_FENCED', `producer ${producerId}: epoch ${sessionEpoch} is fenced by epoch ${knownEpoch}`, {
        details: { producerId, sessionEpoch, currentEpoch: knownEpoch },
      });
    }
    if (flight !== undefined && flight.epoch < sessionEpoch) {
      // A restarted producer: retries of the old instance's requests are fenced now. The
      // old appends themselves still land; their notes are older than the new epoch's.
      this.fenceFlight(producerId, flight, sessionEpoch);
      flight = undefined;
    }
    const answered = flight?.durable.get(requestSeq);
    if (answered !== undefined) {
      checkRetry(tag, { eventCount: runsEventCount(answered.runs), digest: answered.shape.digest }, shape);
      return { kind: 'replay', runs: answered.runs.slice() };
    }
    const inFlight = flight?.requests.get(requestSeq);
    if (inFlight !== undefined) {
      checkRetry(tag, inFlight, shape);
      if (inFlight.waiters.length >= this.maxWaitersPerRequest) {
        throw new TidelogError('OVERLOADED', `producer ${producerId}: ${inFlight.waiters.length} retries already wait for request ${requestSeq}`, {
          details: { producerId, requestSeq },
        });
      }
      const waiter = deferred<number[]>();
      inFlight.waiters.push(waiter);
      return { kind: 'pending', promise: waiter.promise };
    }
    const durable = session !== undefined && session.epoch === sessionEpoch ? session : undefined;
    if (durable !== undefined && requestSeq <= durable.hwm) {
      const runs = durable.recent.get(requestSeq);
      if (runs !== undefined) {
        checkRetry(tag, { eventCount: runsEventCount(runs), digest: durable.digests.get(requestSeq) }, shape);
        return { kind: 'replay', runs: runs.slice() };
      }
      // With requests landing out of order (availability mode) the floor may pass one noted
      // only on the other side of a split: it is in an orphan, merged later, so 'applied' holds
      // for a producer's retry (one never durable anywhere is still unacknowledged, and a
      // producer never has more requests in flight than the window). A merge asks the log.
      if (requestSeq <= durable.floor) return { kind: 'applied' };
      // Inside the window but never noted: its append failed; this retry appends it.
      return this.startAppend(producerId, sessionEpoch, requestSeq, shape, flight);
    }
    if (options.allowGap === true) {
      // Checked by nothing below: a merge's request may come before ones it follows.
    } else if (durable === undefined && flight === undefined) {
      // The epoch's first request as far as the store knows.
      const mayBeForgotten = session === undefined && this.evicted > 0;
      if (requestSeq !== 1 && !mayBeForgotten) throw gap(tag, 1);
    } else {
      const highest = Math.max(durable?.hwm ?? 0, flight?.highest ?? 0);
      if (requestSeq > highest + 1) throw gap(tag, highest + 1);
    }
    return this.startAppend(producerId, sessionEpoch, requestSeq, shape, flight);
  }

  /**
   * An 'append' whose WAL append failed: retries waiting on it reject with `error`, and the
   * requestSeq may be sent again. A no-op once its note was applied.
   */
  abandon(tag: SessionTag, error: Error): void {
    const flight = this.flights.get(tag.producerId);
    if (flight === undefined || flight.epoch !== tag.sessionEpoch) return;
    const request = flight.requests.get(tag.requestSeq);
    if (request === undefined) return;
    this.dropRequest(tag.producerId, flight, tag.requestSeq);
    for (const waiter of request.waiters) waiter.reject(error);
  }

  /** The lane failed or closes: every in-flight request is abandoned with `error`. */
  failInFlight(error: Error): void {
    const flights = [...this.flights.values()];
    this.flights.clear();
    for (const flight of flights) {
      for (const request of flight.requests.values()) for (const waiter of request.waiters) waiter.reject(error);
    }
  }

  /**
   * What the store knows of a request, without starting anything (a merge asks before it
   * decides): 'here' — noted and remembered, answered at durable, or in flight (its events
   * are in this log or will be); 'forgotten' — at or below the floor, which the store takes for
   * noted and forgotten but which, where requests land out of order (availability mode), may
   * never have been; 'fenced' — of an epoch older than the session's; 'unknown' — not noted.
   */
  classify(tag: SessionTag): 'here' | 'forgotten' | 'fenced' | 'unknown' {
    const session = this.sessions.get(tag.producerId);
    const flight = this.flights.get(tag.producerId);
    const knownEpoch = Math.max(session?.epoch ?? -1, flight?.epoch ?? -1);
    if (tag.sessionEpoch < knownEpoch) return 'fenced';
    if (flight !== undefined && flight.epoch === tag.sessionEpoch && (flight.requests.has(tag.requestSeq) || flight.durable.has(tag.requestSeq))) return 'here';
    if (session === undefined || session.epoch !== tag.sessionEpoch || tag.requestSeq > session.hwm) return 'unknown';
    if (session.recent.has(tag.requestSeq)) return 'here';
    return tag.requestSeq <= session.floor ? 'forgotten' : 'unknown';
  }

  /**
   * Availability mode: the request's append is durable here and was answered with `runs`
   * before its note is committed. Retries waiting on it are answered now, a later retry is
   * answered from memory, and it stops counting against maxRunsPerSession. Its note's commit
   * (or a cut: failInFlight) ends the record. A no-op once the note was applied.
   */
  markDurable(tag: SessionTag, runs: readonly number[]): void {
    const flight = this.flights.get(tag.producerId);
    if (flight === undefined || flight.epoch !== tag.sessionEpoch) return;
    const request = flight.requests.get(tag.requestSeq);
    if (request === undefined) return;
    flight.requests.delete(tag.requestSeq);
    flight.durable.set(tag.requestSeq, { runs: runs.slice(), shape: { eventCount: request.eventCount, digest: request.digest } });
    for (const waiter of request.waiters) waiter.resolve(runs.slice());
  }

  /**
   * Folds one durable note (live from the WAL, or replayed in recovery or on a follower):
   * advances the session and settles retries waiting on the request. Idempotent: a note
   * already folded changes nothing. DECODE_FAILED for bytes that are not a note.
   */
  applyNote(bytes: Uint8Array): void {
    this.applyDecodedNote(decodeSessionNote(bytes));
  }

  applyDecodedNote(note: SessionNote): void {
    this.recordNote(note);
    this.settleFlight(note);
  }

  /** The durable sessions as canonical bytes (layout: session-snapshot.ts). */
  encode(): Uint8Array {
    return encodeSessionSnapshot(this.evicted, this.sessions.values());
  }

  /**
   * Replaces the durable sessions with a snapshot (empty bytes: no sessions); requests in
   * flight are abandoned with CLOSED. DECODE_FAILED when the bytes are not a valid snapshot.
   * A snapshot holding more than this store's limits is cut to them as the limits would have.
   */
  restore(bytes: Uint8Array): void {
    const decoded = bytes.byteLength === 0 ? { evictedSessions: 0, sessions: [] } : decodeSessionSnapshot(bytes);
    this.failInFlight(new TidelogError('CLOSED', 'the session store was restored from a snapshot'));
    this.sessions.clear();
    this.withRuns.clear();
    this.rememberedRuns = 0;
    this.evicted = decoded.evictedSessions;
    for (const session of decoded.sessions) {
      this.sessions.set(session.producerId, session);
      if (session.runCount > 0) this.withRuns.add(session);
      this.rememberedRuns += session.runCount;
      this.trimSession(session);
    }
    this.enforceLimits();
  }

  // ---- durable state ----

  private recordNote(note: SessionNote): void {
    const { producerId, sessionEpoch, requestSeq } = note;
    let session = this.sessions.get(producerId);
    if (session !== undefined && sessionEpoch < session.epoch) return; // a fenced epoch's late note
    if (session === undefined || sessionEpoch > session.epoch) {
      if (session !== undefined) this.forgetSession(session);
      // Requests below the epoch's first noted one were never noted (their appends failed),
      // or were forgotten with an evicted session: a retry of one is appended, since answering
      // 'applied' for a request that never landed would lose it.
      session = {
        producerId,
        producerBytes: producerIdBytes(producerId),
        epoch: sessionEpoch,
        hwm: 0,
        floor: 0,
        recent: new Map(),
        digests: new Map(),
        recentSeqs: [],
        runCount: 0,
      };
    } else if (requestSeq <= session.floor || session.recent.has(requestSeq)) {
      return; // already folded
    } else {
      this.sessions.delete(producerId);
      this.withRuns.delete(session);
    }
    this.sessions.set(producerId, session);
    insertSorted(session.recentSeqs, requestSeq);
    session.recent.set(requestSeq, note.runs.slice());
    if (note.digest !== undefined) session.digests.set(requestSeq, note.digest);
    session.runCount += note.runs.length / 2;
    this.rememberedRuns += note.runs.length / 2;
    if (requestSeq > session.hwm) session.hwm = requestSeq;
    this.withRuns.add(session);
    this.trimSession(session);
    this.enforceLimits();
  }

  private trimSession(session: SessionRecord): void {
    while (session.recentSeqs.length > this.maxRunsPerSession) this.forgetOldest(session);
  }

  private enforceLimits(): void {
    while (this.sessions.size > this.maxSessions) {
      const oldest = this.sessions.values().next().value as SessionRecord;
      this.forgetSession(oldest);
      this.evicted++;
    }
    while (this.rememberedRuns > this.maxRememberedRuns) {
      const oldest = this.withRuns.values().next().value as SessionRecord;
      this.forgetOldest(oldest);
    }
  }

  /** Forgets the session's lowest remembered request; the floor rises to it. */
  private forgetOldest(session: SessionRecord): void {
    const requestSeq = session.recentSeqs.shift() as number;
    const runs = session.recent.get(requestSeq) as number[];
    session.recent.delete(requestSeq);
    session.digests.delete(requestSeq);
    session.runCount -= runs.length / 2;
    this.rememberedRuns -= runs.length / 2;
    if (requestSeq > session.floor) session.floor = requestSeq;
    if (session.recentSeqs.length === 0) this.withRuns.delete(session);
  }

  private forgetSession(session: SessionRecord): void {
    this.sessions.delete(session.producerId);
    this.withRuns.delete(session);
    this.rememberedRuns -= session.runCount;
  }

  // ---- in flight ----

  private startAppend(
    producerId: string,
    epoch: number,
    requestSeq: number,
    shape: RequestShape,
    existing: Flight | undefined,
  ): BeginResult {
    let flight = existing;
    if (flight === undefined) {
      if (this.flights.size >= this.maxSessions) {
        throw new TidelogError('OVERLOADED', `${this.flights.size} producers have appends in flight on this shard`, {
          details: { producerId },
        });
      }
      flight = { epoch, requests: new Map(), durable: new Map(), highest: 0 };
      this.flights.set(producerId, flight);
    } else if (flight.requests.size >= this.maxRunsPerSession) {
      throw new TidelogError('OVERLOADED', `producer ${producerId} has ${flight.requests.size} requests in flight`, {
        details: { producerId, requestSeq },
      });
    }
    flight.requests.set(requestSeq, { ...shape, waiters: [] });
    if (requestSeq > flight.highest) flight.highest = requestSeq;
    return { kind: 'append' };
  }

  private settleFlight(note: SessionNote): void {
    const flight = this.flights.get(note.producerId);
    if (flight === undefined || flight.epoch !== note.sessionEpoch) return;
    if (flight.durable.delete(note.requestSeq)) {
      this.dropRequest(note.producerId, flight, note.requestSeq);
      return;
    }
    const request = flight.requests.get(note.requestSeq);
    if (request === undefined) return;
    this.dropRequest(note.producerId, flight, note.requestSeq);
    for (const waiter of request.waiters) waiter.resolve(note.runs.slice());
  }

  private dropRequest(producerId: string, flight: Flight, requestSeq: number): void {
    flight.requests.delete(requestSeq);
    if (flight.requests.size === 0 && flight.durable.size === 0) {
      this.flights.delete(producerId);
    } else if (requestSeq === flight.highest) {
      flight.highest = 0;
      for (const seq of flight.requests.keys()) if (seq > flight.highest) flight.highest = seq;
      for (const seq of flight.durable.keys()) if (seq > flight.highest) flight.highest = seq;
    }
  }

  private fenceFlight(producerId: string, flight: Flight, newEpoch: number): void {
    this.flights.delete(producerId);
    const error = new TidelogError('PRODUCER_FENCED', `producer ${producerId}: epoch ${flight.epoch} is fenced by epoch ${newEpoch}`, {
      details: { producerId, sessionEpoch: flight.epoch, currentEpoch: newEpoch },
    });
    for (const request of flight.requests.values()) for (const waiter of request.waiters) waiter.reject(error);
  }
}

function gap(tag: SessionTag, expected: number): TidelogError {
  return new TidelogError(
    'SEQUENCE_GAP',
    `producer ${tag.producerId} epoch ${tag.sessionEpoch}: requestSeq ${tag.requestSeq} skips ahead; expected at most ${expected}`,
    { details: { producerId: tag.producerId, sessionEpoch: tag.sessionEpoch, requestSeq: tag.requestSeq, expected } },
  );
}

/**
 * REQUEST_MISMATCH unless a retry carries what the request first seen under its number
 * carried (what either side does not know is not compared: a version 1 note has no digest).
 */
function checkRetry(tag: SessionTag, original: RequestShape, retry: RequestShape): void {
  const countDiffers = original.eventCount !== undefined && retry.eventCount !== undefined && original.eventCount !== retry.eventCount;
  const digestDiffers = original.digest !== undefined && retry.digest !== undefined && original.digest !== retry.digest;
  if (!countDiffers && !digestDiffers) return;
  const what = countDiffers ? `${original.eventCount} events, this request has ${retry.eventCount}` : `${original.eventCount ?? 'its'} other events`;
  throw new TidelogError('REQUEST_MISMATCH', `producer ${tag.producerId} epoch ${tag.sessionEpoch}: requestSeq ${tag.requestSeq} was used for ${what}`, {
    details: { producerId: tag.producerId, sessionEpoch: tag.sessionEpoch, requestSeq: tag.requestSeq, originalEvents: original.eventCount ?? null, retryEvents: retry.eventCount ?? null },
  });
}

function positive(value: number, name: string): number {
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new TidelogError('BAD_REQUEST', `${name} must be a positive integer, got ${String(value)}`);
  }
  return value;
}

/** Inserts into an ascending array; appends in the common case (notes arrive in order). */
function insertSorted(values: number[], value: number): void {
  let index = values.length;
  while (index > 0 && values[index - 1] > value) index--;
  values.splice(index, 0, value);
}
