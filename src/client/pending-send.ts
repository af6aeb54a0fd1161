// One send() call in flight: its events' outcomes gathered per shard part as the parts are
// acknowledged or rejected (in any order, in chunks), then put back in input order.
// Invariant: it settles once, when every event has an outcome — resolved with one Ack per
// event when all were acknowledged, else rejected with a SendError that says, per event,
// whether it was acknowledged, certainly not applied, or may have been applied. A send that
// spans shards is never rejected whole while some of its parts are durable: the caller
// resends only what was not applied (each resend takes new session numbers).

import { deferred, type Deferred } from '../deferred.ts';
import { TidelogError } from '../errors.ts';
import { EVENT_BYTES } from '../event.ts';

export interface Ack {
  shard: number;
  /** The event's seq in its shard; 0: a duplicate, or applied by an earlier request whose seqs were forgotten. */
  seq: number;
  /** Leader epoch of the shard when the event was acknowledged. */
  epoch: number;
}

/** One shard part's failure within a send: which events (input indexes) and why. */
export interface SendPartFailure {
  shard: number;
  /** Input indexes of the events this failure covers, ascending. */
  events: number[];
  error: TidelogError;
  /** A try may have been applied without an answer (a timeout, a lost reply): resending may write them twice. */
  maybeApplied: boolean;
}

/**
 * A send() of which some events were not acknowledged. Its code is the first failure's (so a
 * one-shard send rejects as before); `acks` holds the acknowledged events' Acks in input
 * order (null for the others). `notApplied` lists the events the node certainly did not
 * apply: resend those (`eventsAt(notApplied)`), not the whole call. `maybeApplied` lists the
 * events whose fate is unknown (a timeout): resending them may write them twice.
 */
export class SendError extends TidelogError {
  readonly acks: ReadonlyArray<Ack | null>;
  readonly failures: readonly SendPartFailure[];
  readonly notApplied: readonly number[];
  readonly maybeApplied: readonly number[];
  private readonly packed: Uint8Array;

  constructor(packed: Uint8Array, acks: Array<Ack | null>, failures: SendPartFailure[]) {
    const first = failures[0].error;
    const failed = failures.reduce((sum, failure) => sum + failure.events.length, 0);
    const byShard = failures.map((failure) => `shard ${failure.shard}: ${failure.events.length} ${failure.error.code}${failure.maybeApplied ? ' (maybe applied)' : ''}`).join(', ');
    const notApplied = failures.filter((failure) => !failure.maybeApplied).flatMap((failure) => failure.events).sort((a, b) => a - b);
    const maybeApplied = failures.filter((failure) => failure.maybeApplied).flatMap((failure) => failure.events).sort((a, b) => a - b);
    super(first.code, `${failed} of ${acks.length} events not acknowledged (${byShard}); ${acks.length - failed} acknowledged. ${first.message}`, {
      cause: first,
      details: { ...first.context, events: acks.length, acked: acks.length - failed, notApplied: notApplied.length, maybeApplied: maybeApplied.length },
    });
    this.packed = packed;
    this.acks = acks;
    this.failures = failures;
    this.notApplied = notApplied;
    this.maybeApplied = maybeApplied;
  }

  /** The events at `indexes` of the failed call, packed (send() takes them as they are). */
  eventsAt(indexes: readonly number[]): Uint8Array {
    const events = new Uint8Array(indexes.length * EVENT_BYTES);
    indexes.forEach((index, at) => events.set(this.packed.subarray(index * EVENT_BYTES, (index + 1) * EVENT_BYTES), at * EVENT_BYTES));
    return events;
  }
}

/** One send() call: its events' outcomes gathered per part, then put back in input order. */
export class PendingSend {
  readonly done: Deferred<Ack[]> = deferred<Ack[]>();
  private shards: number[] = [];
  private route: Uint16Array | null = null;
  private seqs: Float64Array[] = [];
  private epochs: Float64Array[] = [];
  /** Per part: the failures of its chunks (offset in the part, count). */
  private partFailures: Array<Array<{ at: number; count: number; error: TidelogError; maybeApplied: boolean }>> = [];
  private unsettledEvents: number;
  /** Events acked or rejected: the send leaves the producer's books when all are. */
  private settledEvents = 0;
  private isSettled = false;

  constructor(
    readonly packed: Uint8Array,
    readonly count: number,
  ) {
    this.unsettledEvents = count;
  }

  setParts(shards: number[], parts: Uint8Array[], route: Uint16Array | null): void {
    this.shards = shards;
    this.route = route;
    this.seqs = parts.map((part) => new Float64Array(part.byteLength / EVENT_BYTES));
    this.epochs = parts.map((part) => new Float64Array(part.byteLength / EVENT_BYTES));
    this.partFailures = parts.map(() => []);
  }

  acked(part: number, at: number, count: number, seqs: readonly number[], offset: number, epoch: number): void {
    const partSeqs = this.seqs[part];
    for (let index = 0; index < count; index++) partSeqs[at + index] = seqs[offset + index];
    this.epochs[part].fill(epoch, at, at + count);
    this.outcomes(count);
  }

  /** The chunk of `count` events at `at` in part `part` was rejected. */
  partFailed(part: number, at: number, count: number, error: TidelogError, maybeApplied: boolean): void {
    this.partFailures[part].push({ at, count, error, maybeApplied });
    this.outcomes(count);
  }

  /** Counts `count` more events settled; true once every event of the send is. */
  settle(count: number): boolean {
    this.settledEvents += count;
    return this.settledEvents === this.count;
  }

  /** The whole send failed before any part was handed to a shard (nothing of it applied). */
  failed(error: TidelogError): void {
    if (this.isSettled) return;
    this.isSettled = true;
    this.done.reject(error);
  }

  private outcomes(count: number): void {
    this.unsettledEvents -= count;
    if (this.unsettledEvents > 0 || this.isSettled) return;
    this.isSettled = true;
    if (this.partFailures.every((failures) => failures.length === 0)) this.done.resolve(this.acksInInputOrder());
    else this.done.reject(this.sendError());
  }

  /** Input index of each part's events, in part order. */
  private inputIndexes(): Uint32Array[] {
    const indexes = this.seqs.map((seqs) => new Uint32Array(seqs.length));
    const nextInPart = new Uint32Array(this.shards.length);
    for (let index = 0; index < this.count; index++) {
      const part = this.route === null ? 0 : this.route[index];
      indexes[part][nextInPart[part]++] = index;
    }
    return indexes;
  }

  private acksInInputOrder(inputIndexes = this.inputIndexes()): Ack[] {
    const acks = new Array<Ack>(this.count);
    inputIndexes.forEach((indexes, part) => {
      indexes.forEach((index, at) => (acks[index] = { shard: this.shards[part], seq: this.seqs[part][at], epoch: this.epochs[part][at] }));
    });
    return acks;
  }

  private sendError(): SendError {
    const indexes = this.inputIndexes();
    const acks: Array<Ack | null> = this.acksInInputOrder(indexes);
    const failures: SendPartFailure[] = [];
    this.partFailures.forEach((chunks, part) => {
      for (const chunk of chunks) {
        const events = Array.from(indexes[part].subarray(chunk.at, chunk.at + chunk.count));
        for (const index of events) acks[index] = null;
        failures.push({ shard: this.shards[part], events, error: chunk.error, maybeApplied: chunk.maybeApplied });
      }
    });
    return new SendError(this.packed, acks, failures);
  }
}
