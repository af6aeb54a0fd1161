import fc from 'fast-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { EVENT_BYTES, encodeEvents, type SignalEvent } from '../src/event.ts';
import { ShardRouter, entityHash } from '../src/shard-map.ts';
import type { RouterSpec } from '../src/transport/messages.ts';
import { expectCode } from './support/expect-code.ts';

const U64_MAX = 0xffff_ffff_ffff_ffffn;

/** MurmurHash3_x86_32 over bytes, written from the algorithm's description (not src/murmur.ts). */
function referenceMurmur3(bytes: Uint8Array, seed: number): number {
  const rotl = (value: number, by: number): number => ((value << by) | (value >>> (32 - by))) >>> 0;
  const multiply = (a: number, b: number): number => Number((BigInt(a) * BigInt(b)) & 0xffff_ffffn);
  let hash = seed >>> 0;
  const blocks = Math.floor(bytes.length / 4);
  for (let block = 0; block < blocks; block++) {
    const at = block * 4;
    let k = (bytes[at] | (bytes[at + 1] << 8) | (bytes[at + 2] << 16) | (bytes[at + 3] << 24)) >>> 0;
    k = multiply(rotl(multiply(k, 0xcc9e2d51), 15), 0x1b873593);
    hash = rotl((hash ^ k) >>> 0, 13);
    hash = (multiply(hash, 5) + 0xe6546b64) % 2 ** 32;
  }
  let tail = 0;
  const rest = bytes.length & 3;
  for (let index = rest - 1; index >= 0; index--) tail = ((tail << 8) | bytes[blocks * 4 + index]) >>> 0;
  if (rest > 0) hash = (hash ^ multiply(rotl(multiply(tail, 0xcc9e2d51), 15), 0x1b873593)) >>> 0;
  hash = (hash ^ bytes.length) >>> 0;
  hash = multiply(hash ^ (hash >>> 16), 0x85ebca6b);
  hash = multiply(hash ^ (hash >>> 13), 0xc2b2ae35);
  return (hash ^ (hash >>> 16)) >>> 0;
}

function le64(value: bigint): Uint8Array {
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setBigUint64(0, value, true);
  return bytes;
}

function referenceShard(entityId: bigint, shards: number): number {
  return referenceMurmur3(le64(entityId), 0) % shards;
}

function events(ids: readonly bigint[]): Uint8Array {
  return encodeEvents(ids.map((entityId, index): SignalEvent => ({ entityId, signalType: 1, weight: index, timestampNs: BigInt(index) })));
}

const entityId = fc.oneof(
  fc.bigInt({ min: 0n, max: U64_MAX }),
  fc.bigInt({ min: 0n, max: 1000n }),
  fc.constantFrom(0n, U64_MAX, 2n ** 32n - 1n, 2n ** 32n, 2n ** 53n),
);

/** A range spec from sorted distinct cut points: [0, c1-1], [c1, c2-1], …, [cn, max]. */
const rangeSpec = fc
  .record({
    cuts: fc.uniqueArray(fc.bigInt({ min: 1n, max: U64_MAX }), { maxLength: 12 }),
    shards: fc.array(fc.integer({ min: 0, max: 65535 }), { minLength: 13, maxLength: 13 }),
    order: fc.integer({ min: 0, max: 1000 }),
  })
  .map(({ cuts, shards, order }) => {
    const starts = [0n, ...cuts.sort((a, b) => (a < b ? -1 : 1))];
    const ranges = starts.map((from, index) => ({
      shard: shards[index],
      from: from.toString(),
      to: (index + 1 < starts.length ? starts[index + 1] - 1n : U64_MAX).toString(),
    }));
    // The spec may list ranges in any order.
    const rotated = [...ranges.slice(order % ranges.length), ...ranges.slice(0, order % ranges.length)];
    return { spec: { strategy: 'range', ranges: rotated } as RouterSpec, ranges };
  });

function naiveRangeShard(ranges: Array<{ shard: number; from: string; to: string }>, id: bigint): number {
  const owners = ranges.filter((range) => BigInt(range.from) <= id && id <= BigInt(range.to));
  assert.is(owners.length, 1);
  return owners[0].shard;
}

test('shard-map - the reference murmur3 matches published vectors', () => {
  const text = (value: string): Uint8Array => new TextEncoder().encode(value);
  assert.is(referenceMurmur3(text(''), 0), 0);
  assert.is(referenceMurmur3(text('test'), 0), 0xba6bd213);
  assert.is(referenceMurmur3(text('The quick brown fox jumps over the lazy dog'), 0), 0x2e4ff723);
  assert.is(referenceMurmur3(text('Hello, world!'), 1234), 0xfaf6cdb3);
});

test('shard-map - entityHash is murmur3_x86_32 of the id as 8 little-endian bytes, seed 0', () => {
  fc.assert(
    fc.property(entityId, (id) => {
      assert.is(entityHash(Number(id & 0xffff_ffffn), Number(id >> 32n)), referenceMurmur3(le64(id), 0));
    }),
    { seed: 11, numRuns: 500 },
  );
});

test('shard-map - hash routing is pinned (clients in other languages reproduce it)', () => {
  const router = ShardRouter.fromSpec({ strategy: 'hash', shards: 16 });
  const ids = [0n, 1n, 42n, 2n ** 32n, 2n ** 53n + 7n, U64_MAX];
  // Golden values: changing them breaks every client; they must never change.
  assert.equal(
    ids.map((id) => router.shardOf(id)),
    ids.map((id) => referenceShard(id, 16)),
  );
  assert.equal(
    ids.map((id) => router.shardOf(id)),
    [12, 4, 14, 8, 11, 8],
  );
  assert.equal(
    ids.map((id) => entityHash(Number(id & 0xffff_ffffn), Number(id >> 32n))),
    [0x63852afc, 0x53075d44, 0x6f8f913e, 0x3ad85688, 0x6ae4fe0b, 0x627564e8],
  );
});

test('shard-map - shardOf and shardOfPacked agree with the reference for hash(n)', () => {
  fc.assert(
    fc.property(fc.array(entityId, { minLength: 1, maxLength: 20 }), fc.integer({ min: 1, max: 65536 }), (ids, shards) => {
      const router = ShardRouter.fromSpec({ strategy: 'hash', shards });
      const packed = events(ids);
      ids.forEach((id, index) => {
        const expected = referenceShard(id, shards);
        assert.is(router.shardOf(id), expected);
        assert.is(router.shardOfPacked(packed, index), expected);
      });
    }),
    { seed: 12, numRuns: 200 },
  );
});

test('shard-map - single routes everything to shard 0', () => {
  const router = ShardRouter.fromSpec({ strategy: 'single' });
  assert.equal(router.shards, [0]);
  assert.is(router.shardOf(U64_MAX), 0);
  assert.is(router.shardOfPacked(events([5n]), 0), 0);
  assert.equal(router.toSpec(), { strategy: 'single' });
});

test('shard-map - range routing finds the one range holding the id', () => {
  fc.assert(
    fc.property(rangeSpec, fc.array(entityId, { minLength: 1, maxLength: 30 }), ({ spec, ranges }, ids) => {
      const router = ShardRouter.fromSpec(spec);
      // Bounds are where an off-by-one would show.
      const probes = [...ids, ...ranges.flatMap((range) => [BigInt(range.from), BigInt(range.to)])];
      const packed = events(probes);
      probes.forEach((id, index) => {
        const expected = naiveRangeShard(ranges, id);
        assert.is(router.shardOf(id), expected);
        assert.is(router.shardOfPacked(packed, index), expected);
      });
      assert.equal(router.shards, [...new Set(ranges.map((range) => range.shard))].sort((a, b) => a - b));
      assert.equal(router.toSpec(), { strategy: 'range', ranges });
    }),
    { seed: 13, numRuns: 200 },
  );
});

test('shard-map - range specs with a gap, an overlap or a short end are CONFIG_INVALID', () => {
  const max = U64_MAX.toString();
  const bad: unknown[] = [
    { strategy: 'range', ranges: [] },
    { strategy: 'range', ranges: [{ shard: 0, from: '1', to: max }] },
    { strategy: 'range', ranges: [{ shard: 0, from: '0', to: '9' }, { shard: 1, from: '11', to: max }] },
    { strategy: 'range', ranges: [{ shard: 0, from: '0', to: '10' }, { shard: 1, from: '10', to: max }] },
    { strategy: 'range', ranges: [{ shard: 0, from: '0', to: '18446744073709551614' }] },
    { strategy: 'range', ranges: [{ shard: 0, from: '0', to: '18446744073709551616' }] },
    { strategy: 'range', ranges: [{ shard: 0, from: '5', to: '4' }, { shard: 0, from: '0', to: max }] },
    { strategy: 'range', ranges: [{ shard: 0, from: '00', to: max }] },
    { strategy: 'range', ranges: [{ shard: 0, from: '-1', to: max }] },
    { strategy: 'range', ranges: [{ shard: 0, from: 0, to: max }] },
    { strategy: 'range', ranges: [{ shard: 65536, from: '0', to: max }] },
    { strategy: 'range', ranges: [{ shard: 1.5, from: '0', to: max }] },
    { strategy: 'range', ranges: [{ shard: 0, from: '0', to: max, extra: 1 }] },
    { strategy: 'hash', shards: 0 },
    { strategy: 'hash', shards: 65537 },
    { strategy: 'hash', shards: 2.5 },
    { strategy: 'modulo' },
    null,
  ];
  for (const spec of bad) expectCode(() => ShardRouter.fromSpec(spec as RouterSpec), 'CONFIG_INVALID');
  // The edges themselves are fine.
  assert.is(ShardRouter.fromSpec({ strategy: 'hash', shards: 65536 }).shards.length, 65536);
  assert.equal(ShardRouter.fromSpec({ strategy: 'range', ranges: [{ shard: 65535, from: '0', to: max }] }).shards, [65535]);
});

test('shard-map - shardOf rejects ids outside u64 and split rejects a torn buffer with BAD_REQUEST', () => {
  const router = ShardRouter.fromSpec({ strategy: 'hash', shards: 4 });
  expectCode(() => router.shardOf(-1n), 'BAD_REQUEST');
  expectCode(() => router.shardOf(U64_MAX + 1n), 'BAD_REQUEST');
  expectCode(() => router.split(new Uint8Array(EVENT_BYTES + 1)), 'BAD_REQUEST');
});

function checkSplit(router: ShardRouter, ids: readonly bigint[]): void {
  const packed = events(ids);
  const { shards, parts, route } = router.split(packed);
  assert.is(parts.length, shards.length);
  assert.equal(shards, [...shards].sort((a, b) => a - b));
  assert.is(new Set(shards).size, shards.length);
  if (ids.length === 0) {
    assert.is(parts.length, 0);
    return;
  }
  if (parts.length === 1) {
    assert.is(route, null);
    assert.ok(parts[0] === packed, 'one part is the request itself, not a copy');
    for (let index = 0; index < ids.length; index++) assert.is(router.shardOfPacked(packed, index), shards[0]);
    return;
  }
  assert.ok(route !== null);
  assert.is(route.length, ids.length);
  // Reconstruct the request from the parts through the route.
  const cursor = new Array<number>(parts.length).fill(0);
  for (let index = 0; index < ids.length; index++) {
    const part = route[index];
    const event = parts[part].subarray(cursor[part] * EVENT_BYTES, (cursor[part] + 1) * EVENT_BYTES);
    assert.equal(event, packed.subarray(index * EVENT_BYTES, (index + 1) * EVENT_BYTES));
    assert.is(router.shardOf(ids[index]), shards[part]);
    cursor[part]++;
  }
  parts.forEach((part, index) => assert.is(part.byteLength, cursor[index] * EVENT_BYTES));
}

test('shard-map - split keeps request order per shard and the route rebuilds the request (hash)', () => {
  fc.assert(
    fc.property(fc.array(entityId, { maxLength: 60 }), fc.integer({ min: 1, max: 9 }), (ids, shards) => {
      checkSplit(ShardRouter.fromSpec({ strategy: 'hash', shards }), ids);
    }),
    { seed: 14, numRuns: 300 },
  );
});

test('shard-map - split keeps request order per shard and the route rebuilds the request (range)', () => {
  fc.assert(
    fc.property(rangeSpec, fc.array(entityId, { maxLength: 60 }), ({ spec }, ids) => {
      const router = ShardRouter.fromSpec(spec);
      checkSplit(router, ids);
      // Twice in a row: the router's scratch tables are left clean.
      checkSplit(router, ids);
    }),
    { seed: 15, numRuns: 300 },
  );
});

test('shard-map - split with a single router or one target shard returns the request uncopied', () => {
  const packed = events([1n, 2n, 3n]);
  const single = ShardRouter.fromSpec({ strategy: 'single' }).split(packed);
  assert.equal(single.shards, [0]);
  assert.ok(single.parts[0] === packed);
  assert.is(single.route, null);
  const max = U64_MAX.toString();
  const ranged = ShardRouter.fromSpec({ strategy: 'range', ranges: [{ shard: 3, from: '0', to: '100' }, { shard: 9, from: '101', to: max }] });
  const oneShard = ranged.split(packed);
  assert.equal(oneShard.shards, [3]);
  assert.ok(oneShard.parts[0] === packed);
  const twoShards = ranged.split(events([200n, 1n, 300n, 2n]));
  assert.equal(twoShards.shards, [3, 9]);
  assert.equal([...(twoShards.route as Uint16Array)], [1, 0, 1, 0]);
});

test('shard-map - toSpec round-trips through fromSpec to the same routing', () => {
  const router = ShardRouter.fromSpec({ strategy: 'hash', shards: 7 });
  const copy = ShardRouter.fromSpec(router.toSpec());
  for (let id = 0n; id < 200n; id++) assert.is(copy.shardOf(id * 7919n), router.shardOf(id * 7919n));
  const spec = router.toSpec() as { strategy: 'hash'; shards: number };
  spec.shards = 3;
  assert.equal(router.toSpec(), { strategy: 'hash', shards: 7 }, 'toSpec returns a copy');
});

test.run();
