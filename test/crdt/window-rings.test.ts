import fc from 'fast-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CrdtSignalState, defaultSignalSchema, encodeEvents, HlcTimestamp, loadStateImage } from '../../src/crdt/index.ts';
import { WriteBarrier } from '../../src/crdt/copy-on-write.ts';
import { statePackr } from '../../src/crdt/snapshot-codec.ts';
import { RING_FLAG, RingPool, TWO_FLAG } from '../../src/crdt/window-rings.ts';
import { WordHash } from '../../src/crdt/word-hash.ts';
import { START_NS } from './replica-simulation.ts';

const BUCKETS = 24;

/** The documented meaning of a window: the counts of the buckets (newest − B, newest]. */
class ReferenceWindow {
  counts = new Map<number, number>();
  newest = -1;

  fold(bucket: number): void {
    if (this.newest < 0 || bucket > this.newest) {
      this.newest = bucket;
      for (const held of [...this.counts.keys()]) if (held <= bucket - BUCKETS) this.counts.delete(held);
    } else if (bucket <= this.newest - BUCKETS) return;
    this.counts.set(bucket, (this.counts.get(bucket) ?? 0) + 1);
  }
}

function hashOf(pool: RingPool, word: number, newest: number): [number, number] {
  const hash = new WordHash().reset();
  pool.hashWindow(word, newest, 2, hash);
  hash.finish();
  return [hash.hi, hash.lo];
}

// 400 runs × up to 200 events: the sparse word (one bucket, two buckets, narrow ring) always
// holds exactly the reference counts, and its digest and equality do not depend on its form.
test('window-rings - a window in any form holds the reference counts (property)', () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 10_000 }), fc.array(fc.integer({ min: -30, max: 30 }), { minLength: 1, maxLength: 200 }), (start, steps) => {
      const pool = new RingPool(BUCKETS, new WriteBarrier());
      const reference = new ReferenceWindow();
      let word = 1;
      let bucket = start;
      reference.fold(bucket);
      for (const step of steps) {
        bucket = Math.max(0, bucket + step);
        const newest = reference.newest;
        word = newest === bucket && word < TWO_FLAG - 1 ? word + 1 : pool.fold(word, newest, bucket);
        reference.fold(bucket);
      }
      const newest = reference.newest;
      for (let at = newest - BUCKETS - 2; at <= newest + 2; at++) {
        assert.is(pool.countOf(word, newest, at), at > newest - BUCKETS ? (reference.counts.get(at) ?? 0) : 0, `bucket ${at}`);
      }
      const pairs = pool.pairsOf(word, newest);
      const expected = [...reference.counts.entries()].filter(([, count]) => count > 0).sort((a, b) => a[0] - b[0]).flat();
      assert.equal(pairs, expected);
      // The same counts rebuilt from pairs (inline where they fit) and forced into a ring.
      const other = new RingPool(BUCKETS, new WriteBarrier());
      const rebuilt = other.fromPairs(pairs, 0);
      const ring = forceRing(other, pairs);
      for (const candidate of [rebuilt, ring]) {
        assert.ok(pool.equalWindows(word, other, candidate, newest));
        assert.equal(hashOf(other, candidate, newest), hashOf(pool, word, newest));
      }
    }),
    { seed: 301, numRuns: 400 },
  );
});

/** A narrow ring holding `pairs` even where they would fit inline (a ring never demotes). */
function forceRing(pool: RingPool, pairs: number[]): number {
  const newest = pairs[pairs.length - 2];
  const word = pool.fold(pool.fold(1, newest, newest - 1), newest, newest - 2);
  assert.ok(word >= RING_FLAG);
  const counts = pool.countsOf(false, word & 0x3fff_ffff);
  const base = pool.baseOf(false, word & 0x3fff_ffff);
  counts.fill(0, base, base + BUCKETS);
  for (let at = 0; at < pairs.length; at += 2) counts[base + (pairs[at] % BUCKETS)] = pairs[at + 1];
  return word;
}

test('window-rings - counts past their bits move to wider forms and stay exact', () => {
  const pool = new RingPool(BUCKETS, new WriteBarrier());
  const newest = 1000;
  // One bucket at the inline limit: the next event moves it to a narrow ring.
  let word = pool.fromPairs([newest, TWO_FLAG - 1], 0);
  assert.ok(word < TWO_FLAG);
  word = pool.fold(word, newest, newest);
  assert.ok(word >= RING_FLAG);
  assert.is(pool.countOf(word, newest, newest), TWO_FLAG);
  // A narrow count at u32 max: the next event moves the ring to float64 counts.
  word = pool.fromPairs([newest - 3, 5, newest, 0xffff_ffff], word);
  assert.ok(word >= RING_FLAG);
  word = pool.fold(word, newest, newest);
  assert.is(pool.countOf(word, newest, newest), 2 ** 32);
  assert.is(pool.countOf(word, newest, newest - 3), 5);
  assert.equal(pool.pairsOf(word, newest), [newest - 3, 5, newest, 2 ** 32]);
  // Two buckets whose counts outgrow the two-bucket form.
  let two = pool.fromPairs([newest - 1, 4095, newest, 8191], 0);
  assert.ok(two >= TWO_FLAG && two < RING_FLAG);
  two = pool.fold(two, newest, newest - 1);
  assert.ok(two >= RING_FLAG);
  assert.equal(pool.pairsOf(two, newest), [newest - 1, 4096, newest, 8191]);
  // A window a whole ring ahead gives its ring back.
  const freeBefore = pool.narrowFree;
  assert.is(pool.fold(two, newest, newest + BUCKETS), 1);
  assert.not.equal(pool.narrowFree, freeBefore);
});

// A contribution whose event count, window count and weight sum sit at the edges of their
// stored widths (built through a msgpack snapshot, as 2^32 events cannot be folded in a test):
// one more event widens each, exactly, and every form of the state agrees.
test('window-rings - event counts past 2^32 and weight sums past 2^53 micro-units stay exact', () => {
  const schema = defaultSignalSchema();
  const state = new CrdtSignalState(schema);
  const event = { entityId: 9n, signalType: 1, weight: 1000, timestampNs: START_NS };
  state.apply(event, 1, new HlcTimestamp(START_NS, 0, 1), 1);
  const values: unknown[] = statePackr.unpackMultiple(state.encode()) as unknown[];
  const entity = values[1] as [number, [number, unknown[][]][], unknown[]];
  const contribution = entity[1][0][1][0];
  contribution[2] = 2 ** 32 - 1; // eventCount
  contribution[3] = [2 ** 5, 2 ** 48 - 1]; // ΣP: 2^53 + 2^48 − 1 micro-units
  contribution[9] = (contribution[9] as number[][]).map(([bucket]) => [bucket, 2 ** 32 - 1]);
  const edge = CrdtSignalState.decode(Buffer.concat(values.map((value) => statePackr.pack(value))), schema);
  edge.applyPacked(encodeEvents([event]), 1, 2, new HlcTimestamp(START_NS, 1, 1));
  const check = (candidate: CrdtSignalState): void => {
    const view = candidate.query(9n, START_NS).signals.view;
    assert.is(view.eventCount, 2 ** 32);
    assert.equal(view.counts, { '1h': 2 ** 32, '24h': 2 ** 32, '7d': 2 ** 32 });
    assert.is(view.weightSumMicros, 2n ** 53n + 2n ** 48n - 1n + 1_000_000_000n);
    candidate.checkInvariants();
  };
  check(edge);
  check(CrdtSignalState.decode(edge.encode(), schema));
  check(loadStateImage(drainAll(edge), schema));
  check(edge.clone().merge(new CrdtSignalState(schema)));
  assert.ok(new CrdtSignalState(schema).merge(edge).equals(edge));
});

function drainAll(state: CrdtSignalState): Uint8Array {
  const stream = state.beginImage();
  const pieces: Uint8Array[] = [];
  for (let piece = stream.next(1 << 20); piece !== null; piece = stream.next(1 << 20)) pieces.push(piece.slice());
  return Buffer.concat(pieces);
}

test.run();
