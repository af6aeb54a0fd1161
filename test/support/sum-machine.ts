// A small WalStateMachine for tests: sums entity ids and counts events, and checks that
// batches arrive in seq order without gaps.
import * as assert from 'uvu/assert';
import { EVENT_BYTES } from '../../src/event.ts';
import type { StoredBatch, WalStateMachine } from '../../src/wal/index.ts';

/** Sums entity ids and counts events; its snapshot is "lastSeq,count,sum". */
export class SumMachine implements WalStateMachine {
  lastSeq = 0;
  count = 0;
  sum = 0n;
  restores: number[] = [];
  /** Batches applied since the last restore. */
  applied = 0;
  restore(snapshot: Uint8Array, lastSeq: number): void {
    this.restores.push(lastSeq);
    const text = new TextDecoder().decode(snapshot);
    // Empty bytes: the initial state, with the seqs up to lastSeq taken as gone.
    const [seq, count, sum] = text === '' ? [String(lastSeq), '0', '0'] : text.split(',');
    assert.is(Number(seq), lastSeq, 'a snapshot is restored at the seq it was taken');
    this.lastSeq = Number(seq);
    this.count = Number(count);
    this.sum = BigInt(sum);
    this.applied = 0;
  }
  apply(batch: StoredBatch): void {
    assert.is(batch.firstSeq, this.lastSeq + 1, 'batches arrive in seq order without gaps');
    const view = new DataView(batch.events.buffer, batch.events.byteOffset, batch.events.byteLength);
    for (let index = 0; index < batch.count; index++) this.sum += view.getBigUint64(index * EVENT_BYTES, true);
    this.count += batch.count;
    this.lastSeq = batch.firstSeq + batch.count - 1;
    this.applied++;
  }
  snapshot(): Uint8Array {
    return new TextEncoder().encode(`${this.lastSeq},${this.count},${this.sum}`);
  }
}

