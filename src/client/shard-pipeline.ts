// One shard's side of a producer: gathers events into batches (size or linger), numbers
// them in the producer's session (session-numbers.ts), keeps at most maxInFlightRequests
// on the wire, retries, and settles every item exactly once. Invariants:
// - requests go on the wire in requestSeq order, retries too: a batch is (re)sent only when
//   every earlier unsettled batch is on the wire already;
// - after SEQUENCE_GAP a batch is resent only behind a newer try of every earlier batch
//   still on the wire (or once those settled), so it never races the request it waits for;
// - a batch keeps its (sessionEpoch, requestSeq) across retries, so the node answers a
//   retry of something it applied with the original seqs ('replayed'), never writes twice;
// - numbers change only while nothing of this shard is on the wire.
//
//   add(item) ─► open batch ─(maxBatchEvents | lingerMs)─► queue ─► on the wire (≤ maxInFlight)
//                                                            ▲            │ retryable failure
//                                                            └────────────┘
//                                                 ack ─► items settled, batch gone

import { TidelogError, invariant } from '../errors.ts';
import { runsToSeqs } from '../transport/ack-runs.ts';
import type { AppendReply, SessionTag } from '../transport/messages.ts';
import { AppendBatch, NOT_APPLIED, isDefinitiveRejection, type BatchItem } from './append-batch.ts';
import { asTidelogError, backoffMs, isLocalClosed, isRetryable, type BackoffOptions, type ClientLogger } from './retry.ts';
import { SessionNumbers } from './session-numbers.ts';

export type { BatchItem } from './append-batch.ts';

/** Numbers a session may run ahead of its oldest unacknowledged request: half the node's default window (64). */
export const SESSION_WINDOW = 32;

export type SendAppend = (shard: number, session: SessionTag, events: Uint8Array) => Promise<AppendReply>;

export interface ShardPipelineOptions extends BackoffOptions {
  shard: number;
  producerId: string;
  sessionEpoch: number;
  maxBatchEvents: number;
  lingerMs: number;
  maxInFlightRequests: number;
  /** A batch not acknowledged this long after it closed is rejected with TIMEOUT. */
  sendTimeoutMs: number;
  sendAppend: SendAppend;
  nowMs: () => number;
  /** PRODUCER_FENCED: a newer instance of this producer exists; the producer stops. */
  onFenced: (error: TidelogError) => void;
  logger?: ClientLogger;
}

/** What a pipeline counts; the producer's stats are these summed over its shards. */
export interface PipelineCounters {
  /** Events in batches not on the wire (open, queued, waiting to retry). */
  queuedEvents: number;
  inFlightRequests: number;
  inFlightEvents: number;
  /** Requests put on the wire, retries included. */
  sentRequests: number;
  retries: number;
  ackedRequests: number;
  ackedEvents: number;
  rejectedEvents: number;
}

export interface ShardPipelineStats extends PipelineCounters {
  sessionEpoch: number;
  nextRequestSeq: number;
}

export function zeroCounters(): PipelineCounters {
  return { queuedEvents: 0, inFlightRequests: 0, inFlightEvents: 0, sentRequests: 0, retries: 0, ackedRequests: 0, ackedEvents: 0, rejectedEvents: 0 };
}

type LingerTimer = { kind: 'timeout'; handle: NodeJS.Timeout } | { kind: 'immediate'; handle: NodeJS.Immediate };

/**
 * Closes the open batch after lingerMs. Node's timers never fire sooner than 1 ms (a 0 or
 * 0.3 ms setTimeout waits ~1 ms, often more), so a linger under 1 ms waits for the end of
 * the current turn of the event loop instead: a caller's sends in one synchronous run (and
 * the sends its resolved acks trigger) still travel together, without a timer's delay.
 */
function startLinger(close: () => void, lingerMs: number): LingerTimer {
  if (lingerMs < 1) return { kind: 'immediate', handle: setImmediate(close) };
  return { kind: 'timeout', handle: setTimeout(close, lingerMs) };
}

function stopLinger(timer: LingerTimer): void {
  if (timer.kind === 'immediate') clearImmediate(timer.handle);
  else clearTimeout(timer.handle);
}

export class ShardPipeline {
  private readonly options: ShardPipelineOptions;
  private open: AppendBatch | null = null;
  private lingerTimer: LingerTimer | null = null;
  /** Closed, unsettled batches in requestSeq order (unnumbered ones last). */
  private readonly batches: AppendBatch[] = [];
  private readonly numbers: SessionNumbers;
  private lastAttemptId = 0;
  private retryTimer: NodeJS.Timeout | null = null;
  private retryTimerAtMs = Number.POSITIVE_INFINITY;
  private isPumping = false;
  private mustPumpAgain = false;
  /** Sends wait until this time after a session restart (see pumpOnce). */
  private epochUsableAtMs = 0;
  private closedError: TidelogError | null = null;
  private readonly idleWaiters: Array<() => void> = [];
  private readonly counters = zeroCounters();

  constructor(options: ShardPipelineOptions) {
    this.options = options;
    this.numbers = new SessionNumbers(options.sessionEpoch);
  }

  get shard(): number {
    return this.options.shard;
  }

  /** Adds an item to the open batch; closes the batch first when the item would not fit. */
  add(item: BatchItem): void {
    if (this.closedError !== null) {
      item.failed(this.closedError, false);
      return;
    }
    const { maxBatchEvents, lingerMs } = this.options;
    invariant(item.count >= 1 && item.count <= maxBatchEvents, `item of ${item.count} events, limit ${maxBatchEvents}`);
    // A send() is not split across requests unless it must be: close rather than straddle.
    if (this.open !== null && this.open.eventCount + item.count > maxBatchEvents) this.closeOpenBatch();
    this.open ??= new AppendBatch();
    this.open.add(item);
    this.counters.queuedEvents += item.count;
    if (this.open.eventCount >= maxBatchEvents) {
      this.closeOpenBatch();
    } else if (this.lingerTimer === null) {
      this.lingerTimer = startLinger(() => this.closeOpenBatch(), lingerMs);
    }
  }

  /** Sends the open batch now instead of at its linger deadline. */
  closeOpenBatch(): void {
    if (this.lingerTimer !== null) {
      stopLinger(this.lingerTimer);
      this.lingerTimer = null;
    }
    const batch = this.open;
    if (batch === null) return;
    this.open = null;
    batch.close(this.options.nowMs() + this.options.sendTimeoutMs);
    this.batches.push(batch);
    this.pump();
  }

  /** Resolves once nothing is open, queued or in flight (call closeOpenBatch first). */
  whenIdle(): Promise<void> {
    if (this.isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Rejects everything unsettled with `error` and accepts nothing more. Idempotent. */
  close(error: TidelogError): void {
    if (this.closedError !== null) return;
    this.closedError = error;
    if (this.lingerTimer !== null) stopLinger(this.lingerTimer);
    this.lingerTimer = null;
    this.clearRetryTimer();
    const open = this.open;
    this.open = null;
    if (open !== null) this.rejectItems(open, error);
    for (const batch of this.batches.splice(0)) {
      const isInFlight = batch.state === 'in-flight';
      if (isInFlight) {
        this.counters.inFlightRequests--;
        this.counters.inFlightEvents -= batch.eventCount;
        this.counters.queuedEvents += batch.eventCount; // rejectItems takes them off again
      }
      batch.state = 'done';
      this.rejectItems(batch, error, batch.isAmbiguous || isInFlight);
    }
    this.notifyIfIdle();
  }

  stats(): ShardPipelineStats {
    return { ...this.counters, sessionEpoch: this.numbers.sessionEpoch, nextRequestSeq: this.numbers.nextRequestSeq };
  }

  // ── dispatch ──────────────────────────────────────────────────────────────────────

  /** Puts eligible batches on the wire; re-entrant calls fold into the running one. */
  private pump(): void {
    if (this.isPumping) {
      this.mustPumpAgain = true;
      return;
    }
    this.isPumping = true;
    try {
      do {
        this.mustPumpAgain = false;
        this.pumpOnce();
      } while (this.mustPumpAgain);
    } finally {
      this.isPumping = false;
    }
    this.notifyIfIdle();
  }

  private pumpOnce(): void {
    if (this.closedError !== null) return;
    const nowMs = this.options.nowMs();
    this.rejectExpired(nowMs);
    if (this.numbers.needsRenumbering) {
      if (this.counters.inFlightRequests > 0) return; // their replies still name the old numbers
      this.renumber(nowMs);
    }
    // A restarted session epoch is used only once its second has passed: a new instance of
    // this producerId created from now on starts at a later second, so it cannot take the
    // same epoch and be answered with our requests' acks (the producer's first epoch waits
    // the same way, in producer.ts).
    if (this.epochUsableAtMs > nowMs) {
      this.scheduleRetry(this.epochUsableAtMs, nowMs);
      return;
    }
    let oldestInFlightAttemptId = Number.POSITIVE_INFINITY;
    let nextWakeMs = Number.POSITIVE_INFINITY;
    for (const batch of this.batches) {
      if (batch.state === 'in-flight') {
        oldestInFlightAttemptId = Math.min(oldestInFlightAttemptId, batch.attemptId);
        continue;
      }
      if (this.counters.inFlightRequests >= this.options.maxInFlightRequests) break;
      if (batch.retryAtMs > nowMs) {
        nextWakeMs = batch.retryAtMs;
        break; // in order: nothing after it may overtake it
      }
      // A gap: the number it waits for was on the wire when the gap was seen; send after
      // that try settles, or after it was sent again (then it travels ahead of this one).
      if (batch.gapSeenAtAttemptId > 0 && oldestInFlightAttemptId <= batch.gapSeenAtAttemptId) break;
      // The node remembers a session's newest requests only (maxRunsPerSession, 64 by default):
      // an unacknowledged request must stay inside that window, or once enough later ones land
      // a retry of it is answered 'applied' though it never was. New numbers wait meanwhile.
      const oldest = this.batches[0];
      if (batch.requestSeq === 0 && oldest !== undefined && oldest.requestSeq > 0 && this.numbers.nextRequestSeq - oldest.requestSeq >= SESSION_WINDOW) break;
      this.transmit(batch);
      oldestInFlightAttemptId = Math.min(oldestInFlightAttemptId, batch.attemptId);
    }
    this.scheduleRetry(nextWakeMs, nowMs);
  }

  private transmit(batch: AppendBatch): void {
    this.numbers.assign(batch);
    if (batch.attempts > 0) this.counters.retries++;
    batch.attempts++;
    batch.state = 'in-flight';
    batch.attemptId = ++this.lastAttemptId;
    this.counters.queuedEvents -= batch.eventCount;
    this.counters.inFlightEvents += batch.eventCount;
    this.counters.inFlightRequests++;
    this.counters.sentRequests++;
    const session: SessionTag = { producerId: this.options.producerId, sessionEpoch: this.numbers.sessionEpoch, requestSeq: batch.requestSeq };
    const attemptId = batch.attemptId;
    let reply: Promise<AppendReply>;
    try {
      reply = this.options.sendAppend(this.options.shard, session, batch.events as Uint8Array);
    } catch (error) {
      reply = Promise.reject(error as Error);
    }
    reply.then(
      (answer) => this.settleAttempt(batch, attemptId, answer, null),
      (error: unknown) => this.settleAttempt(batch, attemptId, null, asTidelogError(error)),
    );
  }

  private settleAttempt(batch: AppendBatch, attemptId: number, reply: AppendReply | null, failure: TidelogError | null): void {
    if (batch.state !== 'in-flight' || batch.attemptId !== attemptId) return; // closed meanwhile
    this.counters.inFlightRequests--;
    this.counters.inFlightEvents -= batch.eventCount;
    this.counters.queuedEvents += batch.eventCount;
    batch.state = 'waiting';
    let error = failure;
    if (reply !== null) {
      try {
        this.acknowledge(batch, reply);
      } catch (caught) {
        error = asTidelogError(caught); // an answer we cannot read: its fate is unknown
        batch.isAmbiguous = true;
      }
    }
    if (error !== null) this.failAttempt(batch, error);
    this.pump();
  }

  private acknowledge(batch: AppendBatch, reply: AppendReply): void {
    const part = reply.parts.length === 1 ? reply.parts[0] : undefined;
    if (part === undefined || part.shard !== this.options.shard) {
      throw new TidelogError('DECODE_FAILED', `an append reply for shard ${this.options.shard} must hold exactly that shard's part`, {
        details: { shard: this.options.shard, parts: reply.parts.map((candidate) => candidate.shard) },
      });
    }
    const seqs = runsToSeqs(part.runs, batch.eventCount);
    this.remove(batch);
    this.numbers.acked(batch);
    this.counters.queuedEvents -= batch.eventCount;
    this.counters.ackedRequests++;
    this.counters.ackedEvents += batch.eventCount;
    let offset = 0;
    for (const item of batch.items) {
      item.acked(seqs, offset, part.epoch);
      offset += item.count;
    }
  }

  private failAttempt(batch: AppendBatch, error: TidelogError): void {
    batch.lastError = error;
    if (error.code === 'PRODUCER_FENCED') {
      this.options.onFenced(error);
      this.close(error);
      return;
    }
    if (isLocalClosed(error)) {
      // Our transport is gone: nothing will get through any more. The request may have been
      // published before it closed, and applied.
      batch.isAmbiguous = true;
      this.close(error);
      return;
    }
    if (!isRetryable(error)) {
      if (!isDefinitiveRejection(error)) batch.isAmbiguous = true;
      this.options.logger?.warn({ shard: this.options.shard, code: error.code, requestSeq: batch.requestSeq }, 'append rejected');
      this.reject(batch, error);
      return;
    }
    if (error.code === 'SEQUENCE_GAP') {
      // Proof that the node never applied this number, nor any try of it — but in availability
      // mode a try may have reached the other side of a split and be merged later.
      const maybeElsewhere = error.context.maybeAppliedElsewhere === true;
      if (!maybeElsewhere) batch.isAmbiguous = false;
      if (this.batches[0] === batch && this.numbers.gapAtOldest(batch, maybeElsewhere)) {
        this.options.logger?.warn({ shard: this.options.shard, requestSeq: batch.requestSeq }, 'node lost the session; restarting it');
        return;
      }
      batch.gapSeenAtAttemptId = this.lastAttemptId;
      batch.retryAtMs = 0;
      return;
    }
    batch.gapSeenAtAttemptId = 0;
    if (!NOT_APPLIED.has(error.code) || error.context.maybeApplied === true) batch.isAmbiguous = true;
    // A timeout already waited a whole request; anything else backs off.
    const waitMs = error.code === 'TIMEOUT' ? 0 : backoffMs(batch.attempts, this.options);
    batch.retryAtMs = Math.min(this.options.nowMs() + waitMs, batch.deadlineMs);
    this.options.logger?.debug({ shard: this.options.shard, code: error.code, requestSeq: batch.requestSeq, attempt: batch.attempts }, 'append will be retried');
  }

  /** Batches not on the wire whose deadline passed leave with TIMEOUT (or their last error). */
  private rejectExpired(nowMs: number): void {
    for (const batch of [...this.batches]) {
      if (batch.state !== 'waiting' || batch.deadlineMs > nowMs) continue;
      const last = batch.lastError;
      const error = new TidelogError('TIMEOUT', `shard ${this.options.shard}: not acknowledged within sendTimeoutMs ${this.options.sendTimeoutMs}`, {
        cause: last ?? undefined,
        details: { shard: this.options.shard, sendTimeoutMs: this.options.sendTimeoutMs, attempts: batch.attempts, lastCode: last?.code ?? null },
      });
      this.reject(batch, error);
    }
  }

  /** Removes an unacked batch, rejects its items and records the hole its number leaves. */
  private reject(batch: AppendBatch, error: TidelogError): void {
    this.remove(batch);
    batch.state = 'done';
    this.numbers.left(batch);
    this.rejectItems(batch, error);
  }

  /** Runs only with nothing in flight (session-numbers.ts explains the cases). */
  private renumber(nowMs: number): void {
    const previousEpoch = this.numbers.sessionEpoch;
    const doomed = this.numbers.renumber(this.batches, nowMs);
    for (const batch of doomed) {
      this.remove(batch);
      batch.state = 'done';
      const error = new TidelogError('TIMEOUT', `shard ${this.options.shard}: the session restarted after a request timed out; this one may or may not have been applied`, {
        cause: batch.lastError ?? undefined,
        details: { shard: this.options.shard, requestSeq: batch.requestSeq, sessionEpoch: previousEpoch },
      });
      this.rejectItems(batch, error, true);
    }
    if (this.numbers.sessionEpoch !== previousEpoch) {
      this.epochUsableAtMs = (this.numbers.sessionEpoch + 1) * 1000;
      this.options.logger?.warn({ shard: this.options.shard, previousEpoch, sessionEpoch: this.numbers.sessionEpoch }, 'producer session restarted');
    }
  }

  // ── bookkeeping ───────────────────────────────────────────────────────────────────

  private remove(batch: AppendBatch): void {
    const index = this.batches.indexOf(batch);
    invariant(index >= 0, 'settling a batch that is not queued');
    this.batches.splice(index, 1);
  }

  private rejectItems(batch: AppendBatch, error: TidelogError, maybeApplied = batch.isAmbiguous): void {
    this.counters.queuedEvents -= batch.eventCount;
    this.counters.rejectedEvents += batch.eventCount;
    for (const item of batch.items) item.failed(error, maybeApplied);
  }

  private scheduleRetry(atMs: number, nowMs: number): void {
    if (atMs === Number.POSITIVE_INFINITY) return;
    if (this.retryTimer !== null && this.retryTimerAtMs <= atMs) return;
    this.clearRetryTimer();
    this.retryTimerAtMs = atMs;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.retryTimerAtMs = Number.POSITIVE_INFINITY;
      this.pump();
    }, Math.max(0, atMs - nowMs));
  }

  private clearRetryTimer(): void {
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.retryTimerAtMs = Number.POSITIVE_INFINITY;
  }

  private isIdle(): boolean {
    return this.open === null && this.batches.length === 0;
  }

  private notifyIfIdle(): void {
    if (!this.isIdle() || this.idleWaiters.length === 0) return;
    for (const resolve of this.idleWaiters.splice(0)) resolve();
  }
}
