// The shard map: which shard owns an entity. Pure and on the hot path (every appended event
// is routed once), so it reads entity ids from packed events as two u32 words and allocates
// no bigint. Invariant: a ShardRouter was built from a validated spec, so every u64 entity id
// maps to exactly one shard of `shards` (range: the ranges tile 0..2^64-1 with no gap or
// overlap), and the mapping of a spec never changes.
//
// Strategies (RouterSpec below; the shard map on the wire, docs/PROTOCOL.md):
//   single          every entity → shard 0
//   hash(n)         shard = murmur3_x86_32(entityId as 8 bytes little-endian, seed 0) mod n
//   range(ranges)   shard = the range with from ≤ entityId ≤ to (inclusive u64 bounds)
//
// The hash is part of the protocol (clients in other languages route with it), so it is
// frozen forever: the standard MurmurHash3_x86_32 of the 8 little-endian bytes of the entity
// id, seed 0, taken as an unsigned 32-bit integer, modulo n. As words (lo, hi = the low and
// high u32 of the id): h = mix(mix(0, lo), hi); h ^= 8; h = fmix32(h); shard = h mod n,
// where mix is murmur3's block round (c1 0xcc9e2d51, rotl 15, c2 0x1b873593, rotl 13,
// h·5 + 0xe6546b64) and fmix32 its finaliser (src/murmur.ts).

import { TidelogError } from './errors.ts';
import { EVENT_BYTES } from './event.ts';
import { finalMix, mixWord } from './murmur.ts';

/** Shard ids are u16 (the wire's route table is one u16 per event). */
export const MAX_SHARD_ID = 0xffff;
export const MAX_HASH_SHARDS = MAX_SHARD_ID + 1;
/** Bound on a range spec (each range costs a binary-search step, not memory per entity). */
export const MAX_RANGES = MAX_HASH_SHARDS;
const U64_MAX = 0xffff_ffff_ffff_ffffn;
const U64_DECIMAL = /^(0|[1-9][0-9]{0,19})$/;

export interface SplitResult {
  /** Shards that received events, ascending. */
  shards: number[];
  /** parts[i]: the packed events of shards[i], in request order. */
  parts: Uint8Array[];
  /** One entry per request event: its index into parts; null when there is one part. */
  route: Uint16Array | null;
}

/** The documented hash of an entity id given as its low and high u32 words. */
export function entityHash(lo: number, hi: number): number {
  return finalMix(mixWord(mixWord(0, lo), hi) ^ 8);
}

type Strategy = 'single' | 'hash' | 'range';

/** A router as config and the wire describe it (InfoReply.router). */
export type RouterSpec =
  | { strategy: 'single' }
  | { strategy: 'hash'; shards: number }
  | { strategy: 'range'; ranges: Array<{ shard: number; from: string; to: string }> };

export class ShardRouter {
  /** Shard ids, ascending, unique. */
  readonly shards: number[];
  private readonly strategy: Strategy;
  private readonly hashShards: number;
  /** Range starts as u32 words, ascending; rangeShard[i] owns [start i, start i+1). */
  private readonly startHi: Uint32Array;
  private readonly startLo: Uint32Array;
  private readonly rangeShard: Uint16Array;
  private readonly spec: RouterSpec;
  /** split() scratch: events per part (indexed by shard id) and part index per shard id. */
  private readonly counts: Uint32Array;
  private readonly partOf: Int32Array;

  private constructor(spec: RouterSpec, shards: number[], ranges: Array<{ shard: number; from: bigint }>) {
    this.spec = spec;
    this.strategy = spec.strategy;
    this.shards = shards;
    this.hashShards = spec.strategy === 'hash' ? spec.shards : 1;
    this.startHi = new Uint32Array(ranges.length);
    this.startLo = new Uint32Array(ranges.length);
    this.rangeShard = new Uint16Array(ranges.length);
    ranges.forEach((range, index) => {
      this.startHi[index] = Number(range.from >> 32n);
      this.startLo[index] = Number(range.from & 0xffff_ffffn);
      this.rangeShard[index] = range.shard;
    });
    const tableSize = shards[shards.length - 1] + 1;
    this.counts = new Uint32Array(tableSize);
    this.partOf = new Int32Array(tableSize);
  }

  /** Validates a spec; anything wrong is CONFIG_INVALID naming the field. */
  static fromSpec(spec: RouterSpec): ShardRouter {
    const record = spec as unknown as Record<string, unknown> | null;
    if (record === null || typeof record !== 'object') invalid('router', 'must be an object');
    switch (record.strategy) {
      case 'single':
        return new ShardRouter({ strategy: 'single' }, [0], []);
      case 'hash': {
        const count = record.shards;
        if (!Number.isInteger(count) || (count as number) < 1 || (count as number) > MAX_HASH_SHARDS) {
          invalid('router.shards', `must be an integer 1..${MAX_HASH_SHARDS}, got ${String(count)}`);
        }
        const shards = Array.from({ length: count as number }, (_, index) => index);
        return new ShardRouter({ strategy: 'hash', shards: count as number }, shards, []);
      }
      case 'range': {
        const { spec: normalised, shards, ranges } = parseRanges(record.ranges);
        return new ShardRouter(normalised, shards, ranges);
      }
      default:
        return invalid('router.strategy', `must be "single", "hash" or "range", got ${JSON.stringify(record.strategy)}`);
    }
  }

  /** The spec this router was built from (ranges ascending); a fresh copy. */
  toSpec(): RouterSpec {
    const spec = this.spec;
    if (spec.strategy !== 'range') return { ...spec };
    return { strategy: 'range', ranges: spec.ranges.map((range) => ({ ...range })) };
  }

  /** The shard of a u64 entity id (BAD_REQUEST outside u64). */
  shardOf(entityId: bigint): number {
    if (typeof entityId !== 'bigint' || entityId < 0n || entityId > U64_MAX) {
      throw new TidelogError('BAD_REQUEST', `entityId must be a u64 bigint, got ${String(entityId)}`);
    }
    return this.shardOfWords(Number(entityId & 0xffff_ffffn), Number(entityId >> 32n));
  }

  /** The shard of event `index` of packed events (n × 21 bytes); reads bytes, allocates nothing. */
  shardOfPacked(bytes: Uint8Array, index: number): number {
    if (this.strategy === 'single') return 0;
    const offset = index * EVENT_BYTES;
    const lo = (bytes[offset] | (bytes[offset + 1] << 8) | (bytes[offset + 2] << 16) | (bytes[offset + 3] << 24)) >>> 0;
    const hi = (bytes[offset + 4] | (bytes[offset + 5] << 8) | (bytes[offset + 6] << 16) | (bytes[offset + 7] << 24)) >>> 0;
    return this.shardOfWords(lo, hi);
  }

  /**
   * Splits packed events by shard: per shard its events in request order, and where an event
   * went. When every event goes to one shard, `parts[0]` is `packed` itself (no copy).
   */
  split(packed: Uint8Array): SplitResult {
    if (packed.byteLength % EVENT_BYTES !== 0) {
      throw new TidelogError('BAD_REQUEST', `packed events must be a multiple of ${EVENT_BYTES} bytes, got ${packed.byteLength}`);
    }
    const count = packed.byteLength / EVENT_BYTES;
    if (this.strategy === 'single' || count === 0) {
      return { shards: count === 0 ? [] : [0], parts: count === 0 ? [] : [packed], route: null };
    }
    // First pass: each event's shard (rewritten to part indexes below: it becomes the route).
    const eventShard = new Uint16Array(count);
    this.shardsOf(packed, count, eventShard);
    const counts = this.counts;
    const touched: number[] = [];
    for (let index = 0; index < count; index++) {
      const shard = eventShard[index];
      if (counts[shard]++ === 0) touched.push(shard);
    }
    if (touched.length === 1) {
      counts[touched[0]] = 0;
      return { shards: touched, parts: [packed], route: null };
    }
    touched.sort((a, b) => a - b);
    const parts: Uint8Array[] = [];
    const filled = new Uint32Array(touched.length);
    touched.forEach((shard, part) => {
      parts.push(new Uint8Array(counts[shard] * EVENT_BYTES));
      this.partOf[shard] = part;
      counts[shard] = 0;
    });
    // Second pass: copy each event into its part (a byte loop: a subarray per event would
    // cost more than the copy); eventShard becomes the route in place.
    for (let index = 0; index < count; index++) {
      const part = this.partOf[eventShard[index]];
      const target = parts[part];
      const from = index * EVENT_BYTES;
      const to = filled[part] * EVENT_BYTES;
      for (let byte = 0; byte < EVENT_BYTES; byte++) target[to + byte] = packed[from + byte];
      filled[part]++;
      eventShard[index] = part;
    }
    return { shards: touched, parts, route: eventShard };
  }

  /** The shard of each of `count` packed events into `out`: one tight loop per strategy. */
  private shardsOf(packed: Uint8Array, count: number, out: Uint16Array): void {
    const isHash = this.strategy === 'hash';
    const hashShards = this.hashShards;
    const rangeShard = this.rangeShard;
    for (let index = 0, offset = 0; index < count; index++, offset += EVENT_BYTES) {
      const lo = (packed[offset] | (packed[offset + 1] << 8) | (packed[offset + 2] << 16) | (packed[offset + 3] << 24)) >>> 0;
      const hi = (packed[offset + 4] | (packed[offset + 5] << 8) | (packed[offset + 6] << 16) | (packed[offset + 7] << 24)) >>> 0;
      out[index] = isHash ? entityHash(lo, hi) % hashShards : rangeShard[this.rangeIndex(lo, hi)];
    }
  }

  private shardOfWords(lo: number, hi: number): number {
    switch (this.strategy) {
      case 'single':
        return 0;
      case 'hash':
        return entityHash(lo, hi) % this.hashShards;
      case 'range':
        return this.rangeShard[this.rangeIndex(lo, hi)];
    }
  }

  /** Index of the last range whose start is ≤ (hi, lo); range 0 starts at 0. */
  private rangeIndex(lo: number, hi: number): number {
    const startHi = this.startHi;
    const startLo = this.startLo;
    let low = 0;
    let high = startHi.length - 1;
    while (low < high) {
      const middle = (low + high + 1) >>> 1;
      if (startHi[middle] < hi || (startHi[middle] === hi && startLo[middle] <= lo)) low = middle;
      else high = middle - 1;
    }
    return low;
  }
}

interface ParsedRanges {
  spec: RouterSpec;
  shards: number[];
  /** Ascending by `from`. */
  ranges: Array<{ shard: number; from: bigint; to: bigint }>;
}

function parseRanges(raw: unknown): ParsedRanges {
  if (!Array.isArray(raw) || raw.length === 0 || raw.length > MAX_RANGES) {
    invalid('router.ranges', `must be an array of 1..${MAX_RANGES} ranges`);
  }
  const parsed = (raw as unknown[]).map((value, index) => {
    const path = `router.ranges[${index}]`;
    const range = value as Record<string, unknown> | null;
    if (range === null || typeof range !== 'object') invalid(path, 'must be an object { shard, from, to }');
    for (const key of Object.keys(range)) {
      if (key !== 'shard' && key !== 'from' && key !== 'to') invalid(`${path}.${key}`, 'unknown field');
    }
    const shard = range.shard;
    if (!Number.isInteger(shard) || (shard as number) < 0 || (shard as number) > MAX_SHARD_ID) {
      invalid(`${path}.shard`, `must be a shard id 0..${MAX_SHARD_ID}, got ${String(shard)}`);
    }
    const from = parseU64(range.from, `${path}.from`);
    const to = parseU64(range.to, `${path}.to`);
    if (from > to) invalid(path, `from ${from} is greater than to ${to}`);
    return { shard: shard as number, from, to };
  });
  const sorted = [...parsed].sort((a, b) => (a.from < b.from ? -1 : a.from > b.from ? 1 : 0));
  let expected = 0n;
  for (const range of sorted) {
    if (range.from > expected) invalid('router.ranges', `entity ids ${expected}..${range.from - 1n} belong to no range`);
    if (range.from < expected) invalid('router.ranges', `entity id ${range.from} is in two ranges`);
    expected = range.to + 1n;
  }
  if (expected !== U64_MAX + 1n) invalid('router.ranges', `entity ids ${expected}..${U64_MAX} belong to no range`);
  const shards = [...new Set(sorted.map((range) => range.shard))].sort((a, b) => a - b);
  const spec: RouterSpec = {
    strategy: 'range',
    ranges: sorted.map((range) => ({ shard: range.shard, from: range.from.toString(), to: range.to.toString() })),
  };
  return { spec, shards, ranges: sorted };
}

function parseU64(value: unknown, path: string): bigint {
  if (typeof value !== 'string' || !U64_DECIMAL.test(value)) {
    invalid(path, `must be a u64 as a decimal string, got ${JSON.stringify(value)}`);
  }
  const parsed = BigInt(value as string);
  if (parsed > U64_MAX) invalid(path, `must be at most ${U64_MAX}, got ${String(value)}`);
  return parsed;
}

function invalid(path: string, message: string): never {
  throw new TidelogError('CONFIG_INVALID', `${path}: ${message}`, { details: { path } });
}
