import fc from 'fast-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { acksInEventOrder, checkRuns, decodeRoute, routeOf, runsToSeqs, seqsToRuns } from '../../src/transport/ack-runs.ts';
import { isTidelogError } from '../../src/errors.ts';
import { expectCode } from '../support/expect-code.ts';

/** The code `run` throws with ('none' when it returns), so a table of cases names the failing one. */
function codeOf(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    return isTidelogError(error) ? error.code : `not a TidelogError: ${String(error)}`;
  }
  return 'none';
}

/** Seqs as a shard assigns them: increasing, gaps allowed, 0 for duplicates anywhere. */
function seqsOfLength(length: number): fc.Arbitrary<number[]> {
  return fc
    .tuple(
      fc.oneof(fc.integer({ min: 1, max: 100 }), fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER - 10 * length - 10 })),
      fc.array(fc.record({ isDuplicate: fc.boolean(), gap: fc.nat(3) }), { minLength: length, maxLength: length }),
    )
    .map(([start, steps]) => {
      let next = start;
      return steps.map(({ isDuplicate, gap }) => {
        if (isDuplicate) return 0;
        const seq = next + gap;
        next = seq + 1;
        return seq;
      });
    });
}

const arbitrarySeqs = fc.nat(40).chain(seqsOfLength);

test('ack-runs - seqsToRuns writes the documented example', () => {
  assert.equal(seqsToRuns([7, 8, 9, 0, 0, 10, 12]), [7, 3, 0, 2, 10, 1, 12, 1]);
  assert.equal(seqsToRuns([]), []);
  assert.equal(seqsToRuns([0, 0, 0]), [0, 3]);
});

test('ack-runs - runs round-trip any seqs, zero runs included (property)', () => {
  fc.assert(
    fc.property(arbitrarySeqs, (seqs) => {
      const runs = seqsToRuns(seqs);
      assert.equal(runsToSeqs(runs, seqs.length), seqs);
      assert.is(checkRuns(runs), seqs.length);
      // Canonical: adjacent runs never continue each other.
      for (let index = 2; index < runs.length; index += 2) {
        const [seq, length, next] = [runs[index - 2], runs[index - 1], runs[index]];
        assert.ok(seq === 0 ? next !== 0 : next !== seq + length);
      }
    }),
    { seed: 4, numRuns: 500 },
  );
});

test('ack-runs - runsToSeqs accepts runs that are not merged', () => {
  assert.equal(runsToSeqs([5, 1, 6, 1, 0, 1, 0, 1], 4), [5, 6, 0, 0]);
});

test('ack-runs - malformed runs are DECODE_FAILED', () => {
  const bad: Array<[string, number[], number]> = [
    ['odd length', [1, 2, 3], 2],
    ['zero length', [1, 0], 0],
    ['negative length', [1, -1], 0],
    ['negative seq', [-1, 1], 1],
    ['fractional seq', [1.5, 1], 1],
    ['fractional length', [1, 1.5], 1],
    ['overlap', [5, 3, 7, 1], 4],
    ['decrease', [5, 1, 3, 1], 2],
    ['repeat', [5, 1, 5, 1], 2],
    ['past u53', [Number.MAX_SAFE_INTEGER, 2], 2],
    ['total below expected', [1, 2], 3],
    ['total above expected', [1, 2, 0, 2], 3],
    ['total not a u53', [0, Number.MAX_SAFE_INTEGER, 0, 2], 2],
  ];
  for (const [name, runs, expected] of bad) assert.is(codeOf(() => runsToSeqs(runs, expected)), 'DECODE_FAILED', name);
  expectCode(() => checkRuns(['1', 1]), 'DECODE_FAILED');
  expectCode(() => checkRuns([1, null]), 'DECODE_FAILED');
});

test('ack-runs - a huge claimed run is rejected by its total before anything is expanded', () => {
  expectCode(() => runsToSeqs([1, 2 ** 50], 3), 'DECODE_FAILED');
  expectCode(() => runsToSeqs([0, 2 ** 52], 3), 'DECODE_FAILED');
});

test('ack-runs - route round-trips part indexes as u16 little-endian (property)', () => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 0, max: 0xffff }), { maxLength: 50 }), (indexes) => {
      const route = routeOf(indexes);
      assert.is(route.byteLength, indexes.length * 2);
      assert.equal([...decodeRoute(route, 0x10000)], indexes);
    }),
    { seed: 5, numRuns: 300 },
  );
  assert.equal([...routeOf([1, 0x0302])], [1, 0, 2, 3]);
});

test('ack-runs - decodeRoute rejects an odd length and an index past the parts with DECODE_FAILED', () => {
  expectCode(() => decodeRoute(new Uint8Array(3), 1), 'DECODE_FAILED');
  expectCode(() => decodeRoute(routeOf([0, 2]), 2), 'DECODE_FAILED');
  expectCode(() => decodeRoute(routeOf([0]), 0), 'DECODE_FAILED');
});

test('ack-runs - routeOf crashes on a part index that is not a u16 (a node bug, not input)', () => {
  assert.throws(() => routeOf([0x10000]), /invariant/);
  assert.throws(() => routeOf([-1]), /invariant/);
});

test('ack-runs - acksInEventOrder puts every part back in request order', () => {
  // Events e0..e4: e0, e2, e3 went to part 0 (seqs 10, dup, 11); e1, e4 to part 1 (seqs 4, 5).
  const parts = [
    { shard: 3, epoch: 1, runs: [10, 1, 0, 1, 11, 1] },
    { shard: 7, epoch: 1, runs: [4, 2] },
  ];
  const acks = acksInEventOrder(parts, routeOf([0, 1, 0, 0, 1]), 5);
  assert.equal(acks.seqs, [10, 4, 0, 11, 5]);
  assert.equal([...acks.partIndexes], [0, 1, 0, 0, 1]);
  assert.equal(acksInEventOrder([parts[1]], undefined, 2).seqs, [4, 5]);
  assert.equal(acksInEventOrder([], undefined, 0).seqs, []);
});

test('ack-runs - the worked example of docs/PROTOCOL.md section 5 holds', () => {
  const parts = [
    { shard: 0, epoch: 0, runs: seqsToRuns([77, 78]) },
    { shard: 1, epoch: 0, runs: seqsToRuns([500, 0, 0, 501, 502]) },
  ];
  assert.equal(parts[1].runs, [500, 1, 0, 2, 501, 2]);
  const route = routeOf([1, 0, 1, 1, 0, 1, 1]);
  assert.is(Buffer.from(route).toString('hex'), '0100000001000100000001000100');
  assert.equal(acksInEventOrder(parts, route, 7).seqs, [500, 77, 0, 0, 78, 501, 502]);
});

test('ack-runs - acksInEventOrder rejects replies that do not cover the request with DECODE_FAILED', () => {
  const parts = [
    { shard: 3, epoch: 1, runs: [10, 2] },
    { shard: 7, epoch: 1, runs: [4, 2] },
  ];
  expectCode(() => acksInEventOrder(parts, undefined, 4), 'DECODE_FAILED');
  expectCode(() => acksInEventOrder(parts, routeOf([0, 1, 1]), 4), 'DECODE_FAILED');
  expectCode(() => acksInEventOrder(parts, routeOf([0, 1, 1, 1]), 4), 'DECODE_FAILED');
  expectCode(() => acksInEventOrder([parts[0]], undefined, 3), 'DECODE_FAILED');
});

test.run();
