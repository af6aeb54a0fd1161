// One send() call in flight: its events' seqs gathered per shard part as the parts are
// acknowledged (in any order, in chunks), then put back in input order. Invariant: it
// settles once — resolved when every event has its ack, or rejected at the first failure —
// and it knows when its last event left the producer's books either way.

import { deferred, type Deferred } from '../deferred.ts';
import type { TidelogError } from '../errors.ts';
import { EVENT_BYTES } from '../event.ts';

export interface Ack {
  shard: number;
  /** The event's seq in its shard; 0: a duplicate, or applied by an earlier request whose seqs were forgotten. */
  seq: number;
  /** Leader epoch of the shard when the event was acknowledged. */
  epoch: number;
}

/** One send() call: its events' seqs gathered per part, then put back in input order. */
export class PendingSend {
  readonly done: Deferred<Ack[]> = deferred<Ack[]>();
  private shards: number[] = [];
  private route: Uint16Array | null = null;
  private seqs: Float64Array[] = [];
  private epochs: Float64Array[] = [];
  private unacked: number;
  /** Events acked or rejected: the send leaves the producer's books when all are. */
  private settledEvents = 0;
  private isSettled = false;

  constructor(
    readonly packed: Uint8Array,
    readonly count: number,
  ) {
    this.unacked = count;
  }

  setParts(shards: number[], parts: Uint8Array[], route: Uint16Array | null): void {
    this.shards = shards;
    this.route = route;
    this.seqs = parts.map((part) => new Float64Array(part.byteLength / EVENT_BYTES));
    this.epochs = parts.map((part) => new Float64Array(part.byteLength / EVENT_BYTES));
  }

  acked(part: number, at: number, count: number, seqs: readonly number[], offset: number, epoch: number): void {
    const partSeqs = this.seqs[part];
    for (let index = 0; index < count; index++) partSeqs[at + index] = seqs[offset + index];
    this.epochs[part].fill(epoch, at, at + count);
    this.unacked -= count;
    if (this.unacked === 0 && !this.isSettled) {
      this.isSettled = true;
      this.done.resolve(this.acksInInputOrder());
    }
  }

  /** Counts `count` more events settled; true once every event of the send is. */
  settle(count: number): boolean {
    this.settledEvents += count;
    return this.settledEvents === this.count;
  }

  failed(error: TidelogError): void {
    if (this.isSettled) return;
    this.isSettled = true;
    this.done.reject(error);
  }

  private acksInInputOrder(): Ack[] {
    const acks = new Array<Ack>(this.count);
    const nextInPart = new Uint32Array(this.shards.length);
    for (let index = 0; index < this.count; index++) {
      const part = this.route === null ? 0 : this.route[index];
      const at = nextInPart[part]++;
      acks[index] = { shard: this.shards[part], seq: this.seqs[part][at], epoch: this.epochs[part][at] };
    }
    return acks;
  }
}
