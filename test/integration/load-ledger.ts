// What a producer under load sent and what came back acknowledged, and the check that the
// log holds every acknowledged event exactly once. Every event's content is unique (its
// timestamp is a global counter), so "appended twice" is visible as the same bytes at two
// seqs, and a wrong event at an acked seq is visible as different bytes.

import * as assert from 'uvu/assert';
import type { Consumer, Producer } from '../../src/client/index.ts';
import { EVENT_BYTES, encodeEvents, type SignalEvent } from '../../src/event.ts';

export class LoadLedger {
  /**
   * `${shard}:${seq}` → the event's bytes as sent, for every acked non-duplicate; with
   * seqsMayMove (availability mode) the other way round: bytes → `${shard}:${seq}` as acked.
   */
  readonly acked = new Map<string, string>();
  /** seqsMayMove: events of sends answered TIMEOUT ("may or may not have been applied"): in the log at most once. */
  readonly unknown = new Set<string>();
  readonly shards = new Set<number>();
  sendErrors: Error[] = [];
  private counter = 0;
  private readonly perShard = new Map<number, number>();

  /** `firstCounter`: where this ledger's unique events start (two ledgers in one log must not overlap). */
  constructor(
    private readonly shardCount: number,
    firstCounter = 0,
    /** Availability mode: an acked event may be merged to another seq; verify finds it by content. */
    private readonly seqsMayMove = false,
  ) {
    this.counter = firstCounter;
    for (let shard = 0; shard < shardCount; shard++) this.shards.add(shard);
  }

  makeBatch(size: number): Uint8Array {
    const events: SignalEvent[] = [];
    for (let index = 0; index < size; index++) {
      const n = this.counter++;
      events.push({ entityId: BigInt(n % 50_000) + 1n, signalType: 1 + (n % 5), weight: 1, timestampNs: 1_800_000_000_000_000_000n + BigInt(n) });
    }
    return encodeEvents(events);
  }

  /** `senders` loops of producer.send until `shouldStop()` (each pausing `pauseMs` before a send); acks go into the ledger. */
  async run(producer: Producer, senders: number, batch: number, shouldStop: () => boolean, pauseMs = 0): Promise<void> {
    const sender = async (): Promise<void> => {
      while (!shouldStop()) {
        if (pauseMs > 0) await new Promise((resolve) => setTimeout(resolve, pauseMs));
        const packed = this.makeBatch(batch);
        try {
          const acks = await producer.send(packed);
          acks.forEach((ack, index) => {
            assert.ok(ack.seq > 0, 'unique events are never content duplicates');
            const key = `${ack.shard}:${ack.seq}`;
            const bytes = hex(packed.subarray(index * EVENT_BYTES, (index + 1) * EVENT_BYTES));
            if (this.seqsMayMove) this.acked.set(bytes, key);
            else {
              assert.not.ok(this.acked.has(key), `seq ${key} acknowledged twice`);
              this.acked.set(key, bytes);
            }
            this.perShard.set(ack.shard, (this.perShard.get(ack.shard) ?? 0) + 1);
          });
        } catch (error) {
          // Availability mode: a request whose earlier try is in doubt is answered TIMEOUT
          // ("maybe applied") when its session restarts; its events may be merged later.
          if (this.seqsMayMove && (error as { code?: string }).code === 'TIMEOUT') {
            for (let index = 0; index < packed.byteLength / EVENT_BYTES; index++) this.unknown.add(hex(packed.subarray(index * EVENT_BYTES, (index + 1) * EVENT_BYTES)));
            continue;
          }
          this.sendErrors.push(error as Error);
          return;
        }
      }
    };
    await Promise.all(Array.from({ length: senders }, () => sender()));
  }

  /** Whether `count` events are acknowledged; a failed send is thrown, so a wait on this ends at once. */
  hasAcked(count: number): boolean {
    if (this.sendErrors.length > 0) throw this.sendErrors[0];
    return this.acked.size >= count;
  }

  /** Acknowledged events of one shard so far. */
  ackedOn(shard: number): number {
    if (this.sendErrors.length > 0) throw this.sendErrors[0];
    return this.perShard.get(shard) ?? 0;
  }

  /**
   * Reads every shard back from `fromSeq` (retention may have deleted what came before): each
   * acked seq from there holds its bytes, and no event appears twice.
   */
  async verify(consumer: Consumer, fromSeq = 1): Promise<{ logEvents: number; moved: number }> {
    const seen = new Map<string, string>();
    let logEvents = 0;
    let matched = 0;
    for (const shard of this.shards) {
      let expectedSeq = fromSeq;
      for await (const { seq, event } of consumer.read({ shard, fromSeq })) {
        assert.is(seq, expectedSeq, `shard ${shard}: seqs are gapless`);
        expectedSeq++;
        logEvents++;
        const bytes = hex(encodeEvents([event]));
        assert.not.ok(seen.has(bytes), `shard ${shard} seq ${seq}: an event was appended twice`);
        seen.set(bytes, `${shard}:${seq}`);
        if (this.seqsMayMove) continue;
        const ackedBytes = this.acked.get(`${shard}:${seq}`);
        if (ackedBytes !== undefined) {
          assert.is(bytes, ackedBytes, `shard ${shard} seq ${seq} holds the acknowledged event`);
          matched++;
        }
      }
    }
    if (this.seqsMayMove) {
      let moved = 0;
      for (const [bytes, ackedAt] of this.acked) {
        const at = seen.get(bytes);
        assert.ok(at !== undefined, `the event acknowledged at ${ackedAt} is in the log`);
        if (at !== ackedAt) moved++;
      }
      return { logEvents, moved };
    }
    const expected = [...this.acked.keys()].filter((key) => Number(key.split(':')[1]) >= fromSeq).length;
    assert.is(matched, expected, 'every acknowledged event is in the log');
    return { logEvents, moved: 0 };
  }
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}
