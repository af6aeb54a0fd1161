// The load of a chaos run: one producer per NATS server (each with its own session), and per
// producer one paced sender per shard, whose events all route to that shard — so a shard that
// cannot acknowledge shows as that shard's unavailability, not as every shard's. Every send is
// recorded in the History (invoke, then ok / fail / unknown); every event's content is unique
// (its timestamp is a global counter), which is how the checker finds it in the log.

import type { Producer } from '../client/index.ts';
import { isTidelogError } from '../errors.ts';
import { encodeEvents, type SignalEvent } from '../event.ts';
import { ShardRouter } from '../shard-map.ts';
import type { History } from './history.ts';

export interface ChaosLoadOptions {
  shards: number;
  /** Events per send. */
  batch: number;
  /** Target events/s over all senders (paced: on 2 cores a flat-out load starves the cluster). */
  ratePerSecond: number;
  /** Entities per shard the events spread over. */
  entitiesPerShard: number;
  nowMs?: () => number;
}

/** Codes that say the request was refused before anything was written (a definite failure). */
const DEFINITE_FAILURES = new Set(['BAD_REQUEST', 'DECODE_FAILED', 'WRONG_SHARD', 'UNKNOWN_SIGNAL_TYPE', 'UNSUPPORTED_VERSION']);

export interface ShardAvailability {
  shard: number;
  /** Events acknowledged on this shard. */
  acked: number;
  /** The longest time between two acknowledgements on this shard while the load ran, ms. */
  longestGapMs: number;
  /** When that gap ended, ms after the load started. */
  longestGapEndMs: number;
}

export class ChaosLoad {
  private readonly entities: bigint[][];
  private counter = 0;
  private isStopping = false;
  private readonly senders: Array<Promise<void>> = [];
  private readonly lastAckMs: number[];
  private readonly availability: ShardAvailability[];
  private startedMs = 0;
  private readonly nowMs: () => number;

  constructor(
    private readonly history: History,
    private readonly options: ChaosLoadOptions,
  ) {
    this.nowMs = options.nowMs ?? (() => performance.now());
    // Entity ids that route to each shard (the nodes hash the same way).
    const router = ShardRouter.fromSpec({ strategy: 'hash', shards: options.shards });
    this.entities = Array.from({ length: options.shards }, () => []);
    for (let id = 1n; this.entities.some((list) => list.length < options.entitiesPerShard); id++) {
      const list = this.entities[router.shardOf(id)];
      if (list.length < options.entitiesPerShard) list.push(id);
    }
    this.lastAckMs = new Array<number>(options.shards).fill(0);
    this.availability = Array.from({ length: options.shards }, (_, shard) => ({ shard, acked: 0, longestGapMs: 0, longestGapEndMs: 0 }));
  }

  /** Starts the senders of each producer (`name` names it in the history). */
  start(producers: ReadonlyArray<{ name: string; producer: Producer }>): void {
    this.startedMs = this.nowMs();
    this.lastAckMs.fill(this.startedMs);
    const senders = producers.length * this.options.shards;
    // Each sender waits this long between sends, so all of them together keep the rate.
    const intervalMs = (senders * this.options.batch * 1000) / this.options.ratePerSecond;
    for (const { name, producer } of producers) {
      for (let shard = 0; shard < this.options.shards; shard++) this.senders.push(this.sender(name, producer, shard, intervalMs));
    }
  }

  /** Stops sending; resolves when every send under way has an outcome. */
  async stop(): Promise<void> {
    this.isStopping = true;
    await Promise.all(this.senders);
  }

  shardAvailability(): ShardAvailability[] {
    // A shard silent since its last ack counts up to now too (it may never have come back).
    const nowMs = this.nowMs();
    return this.availability.map((entry, shard) => {
      const openGapMs = nowMs - this.lastAckMs[shard];
      return openGapMs > entry.longestGapMs && !this.isStopping ? { ...entry, longestGapMs: openGapMs, longestGapEndMs: nowMs - this.startedMs } : { ...entry };
    });
  }

  private async sender(name: string, producer: Producer, shard: number, intervalMs: number): Promise<void> {
    // Senders start spread over one interval, not all at once.
    await sleep(Math.random() * intervalMs);
    while (!this.isStopping) {
      const sentMs = this.nowMs();
      const events = this.makeBatch(shard);
      const id = this.history.invoke(name, events, sentMs);
      try {
        const acks = await producer.send(events);
        const ackedMs = this.nowMs();
        this.history.ok(id, acks, ackedMs);
        this.noteAck(shard, ackedMs, acks.length);
      } catch (error) {
        const code = isTidelogError(error) ? error.code : 'INTERNAL';
        if (DEFINITE_FAILURES.has(code)) this.history.fail(id, code, this.nowMs());
        else this.history.unknown(id, `${code}: ${error instanceof Error ? error.message : String(error)}`, this.nowMs());
        // The producer closed (the run ends): nothing more to send from here.
        if (code === 'CLOSED') return;
      }
      const waitMs = intervalMs - (this.nowMs() - sentMs);
      if (waitMs > 0) await sleep(waitMs);
    }
  }

  private noteAck(shard: number, ackedMs: number, events: number): void {
    const entry = this.availability[shard];
    const gapMs = ackedMs - this.lastAckMs[shard];
    if (gapMs > entry.longestGapMs) {
      entry.longestGapMs = gapMs;
      entry.longestGapEndMs = ackedMs - this.startedMs;
    }
    this.lastAckMs[shard] = Math.max(this.lastAckMs[shard], ackedMs);
    entry.acked += events;
  }

  private makeBatch(shard: number): Uint8Array {
    const list = this.entities[shard];
    const events: SignalEvent[] = [];
    for (let index = 0; index < this.options.batch; index++) {
      const n = this.counter++;
      events.push({ entityId: list[n % list.length], signalType: 1 + (n % 3), weight: 1 + (n % 4), timestampNs: 1_800_000_000_000_000_000n + BigInt(n) });
    }
    return encodeEvents(events);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
