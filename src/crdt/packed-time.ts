// Exact arithmetic on u64 nanosecond timestamps held as two u32 halves (hi, lo), so the hot path
// reads times straight from packed events without allocating a bigint per event.
// Invariant: every function here is exact (no float rounding) for all u64 inputs, so the
// same event yields the same bucket and the same decay exponent on every replica.

export const TWO_POW_32 = 4294967296;
const NS_PER_SECOND = 1e9;

/** hi·2^32 + lo − (hi2·2^32 + lo2), exact whenever |difference| < 2^53 ns (~104 days). */
export function deltaNs(hi: number, lo: number, hi2: number, lo2: number): number {
  return (hi - hi2) * TWO_POW_32 + (lo - lo2);
}

/**
 * floor((hi·2^32 + lo) / 1e9) by long division over 16-bit limbs: every intermediate stays
 * below 2^46, so float64 division is exact (a plain hi·2^32 + lo loses up to 256 ns).
 */
export function secondsOf(hi: number, lo: number): number {
  const q1 = Math.floor(hi / NS_PER_SECOND);
  let rest = hi - q1 * NS_PER_SECOND;
  let current = rest * 65536 + (lo >>> 16);
  const q2 = Math.floor(current / NS_PER_SECOND);
  rest = current - q2 * NS_PER_SECOND;
  current = rest * 65536 + (lo & 0xffff);
  const q3 = Math.floor(current / NS_PER_SECOND);
  return q1 * TWO_POW_32 + q2 * 65536 + q3;
}

export function splitNs(ns: bigint): [hi: number, lo: number] {
  return [Number(ns >> 32n), Number(ns & 0xffff_ffffn)];
}

export function joinNs(hi: number, lo: number): bigint {
  return (BigInt(hi) << 32n) | BigInt(lo);
}
