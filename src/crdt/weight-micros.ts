// Fixed-point weights: every f32 event weight is counted as an integer number of micro-units,
// so weight sums are exact, associative and bit-identical on every replica (a float sum would
// depend on the order of additions and drift between replicas).
// Rule: micros(w) = round(|w| × 10^6) (half away from zero, computed in float64 on the exact
// f32 value, so every replica gets the same integer); w ≥ 0 goes to the P side of the weight
// PN-counter, w < 0 to the N side. Resolution 1e-6; |w| ≤ MAX_ABS_WEIGHT (1e9) so one event is
// at most 1e15 micros. Sums are kept in two float64 limbs (hi × 2^48 + lo), each an exact
// integer, so a sum of up to 2^53 maximal events stays exact without a bigint per event.

import { TidelogError } from '../errors.ts';

export const MICROS_PER_UNIT = 1_000_000;
export const MAX_ABS_WEIGHT = 1e9;
/** The low limb of a wide sum stays below this; carries go to the high limb. */
export const LIMB = 2 ** 48;
const LIMB_BIGINT = 2n ** 48n;

/** Micro-units of |weight|, validated: finite and within ±MAX_ABS_WEIGHT. */
export function weightToMicros(weight: number): number {
  checkWeight(weight);
  return Math.round(Math.abs(weight) * MICROS_PER_UNIT);
}

export function checkWeight(weight: number): void {
  if (typeof weight !== 'number' || !Number.isFinite(weight)) {
    throw new TidelogError('BAD_REQUEST', `weight must be finite, got ${String(weight)}`);
  }
  if (Math.abs(weight) > MAX_ABS_WEIGHT) {
    throw new TidelogError('BAD_REQUEST', `|weight| must be at most ${MAX_ABS_WEIGHT}, got ${weight}`);
  }
}

/** hi × 2^48 + lo as an exact bigint. */
export function wideToBigInt(hi: number, lo: number): bigint {
  return BigInt(hi) * LIMB_BIGINT + BigInt(lo);
}

/** Splits an exact non-negative bigint into (hi, lo) limbs. */
export function bigIntToWide(value: bigint): [number, number] {
  return [Number(value / LIMB_BIGINT), Number(value % LIMB_BIGINT)];
}

/** Micro-units to units as the nearest float64 (for display and scoring, never for merging). */
export function microsToUnits(micros: bigint): number {
  return Number(micros) / MICROS_PER_UNIT;
}
