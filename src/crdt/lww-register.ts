// Last-writer-wins register: a value and the HLC timestamp of the write that set it.
// Invariant: the register holds the maximum of every (timestamp, value) pair it has seen under
// one total order, so set and merge are commutative, associative and idempotent:
//   1. the greater HLC wins ((wallNs, logical, nodeId): the node id breaks wall/logical ties);
//   2. two writes with the very same timestamp (one node's clock cannot issue it twice, but a
//      replayed or forged write can) are ordered by `tieBreak(a, b)`, greater wins. The default
//      compares the values' msgpack encodings byte by byte, and where those are equal orders −0
//      below +0 (msgpack writes both as the integer 0, at any depth), so it is a total order on
//      every value that msgpack can tell apart or that differs only in the sign of a zero; flags
//      use `trueWinsTies`, so a hide beats an unhide stamped identically (hard negatives err on
//      the side of hiding).
// A tieBreak must be a total order (0 only for values the register may treat as the same):
// two values it calls equal are kept in arrival order, and replicas may then disagree.

import { Packr } from 'msgpackr';
import { TidelogError } from '../errors.ts';
import { HlcTimestamp, type HlcTimestampJson } from './hlc-timestamp.ts';

export type TieBreak<T> = (a: T, b: T) => number;

export interface LWWRegisterOptions<T> {
  /** Orders two different values written at an identical timestamp; the greater wins. */
  tieBreak?: TieBreak<T>;
}

export interface LWWRegisterJson<T> {
  value: T;
  ts: HlcTimestampJson;
}

const canonicalPackr = new Packr({ useRecords: false });

/** Default tie-break: the byte order of the values' msgpack encodings, then −0 before +0. */
export function compareEncoded<T>(a: T, b: T): number {
  return Buffer.compare(canonicalPackr.pack(a), canonicalPackr.pack(b)) || compareSignedZeros(a, b);
}

/**
 * For two values whose encodings are equal (so they have the same shape): −0 orders before +0
 * at the first place where they differ in a zero's sign, walking arrays, plain objects, Maps
 * and Sets in their (identical) iteration order.
 */
function compareSignedZeros(a: unknown, b: unknown): number {
  if (typeof a === 'number' && typeof b === 'number') {
    if (a !== 0 || b !== 0 || Object.is(a, b)) return 0;
    return Object.is(a, -0) ? -1 : 1;
  }
  if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object') return 0;
  let left: unknown[];
  let right: unknown[];
  if (Array.isArray(a) && Array.isArray(b)) [left, right] = [a, b];
  else if (a instanceof Map && b instanceof Map) [left, right] = [[...a.entries()].flat(), [...b.entries()].flat()];
  else if (a instanceof Set && b instanceof Set) [left, right] = [[...a], [...b]];
  else if (Object.getPrototypeOf(a) === Object.prototype && Object.getPrototypeOf(b) === Object.prototype) {
    [left, right] = [Object.values(a), Object.values(b)];
  } else return 0;
  for (let index = 0; index < Math.min(left.length, right.length); index++) {
    const order = compareSignedZeros(left[index], right[index]);
    if (order !== 0) return order;
  }
  return 0;
}

/** Tie-break for flags: true beats false (a hide beats an unhide with the same timestamp). */
export const trueWinsTies: TieBreak<boolean> = (a, b) => Number(a) - Number(b);

export class LWWRegister<T> {
  private current: T | undefined = undefined;
  private stamp: HlcTimestamp | undefined = undefined;
  private readonly tieBreak: TieBreak<T>;

  constructor(options: LWWRegisterOptions<T> = {}) {
    this.tieBreak = options.tieBreak ?? compareEncoded;
  }

  /** Writes `value` if (ts, value) beats the held pair; returns whether it did. */
  set(value: T, ts: HlcTimestamp): boolean {
    if (!(ts instanceof HlcTimestamp)) throw new TidelogError('BAD_REQUEST', 'LWWRegister.set needs an HlcTimestamp');
    if (this.stamp !== undefined) {
      const order = HlcTimestamp.compare(ts, this.stamp);
      if (order < 0) return false;
      if (order === 0 && this.tieBreak(value, this.current as T) <= 0) return false;
    }
    this.current = value;
    this.stamp = ts;
    return true;
  }

  get(): T | undefined {
    return this.current;
  }

  /** The timestamp of the held value, undefined while the register was never written. */
  get timestamp(): HlcTimestamp | undefined {
    return this.stamp;
  }

  get isSet(): boolean {
    return this.stamp !== undefined;
  }

  merge(other: LWWRegister<T>): this {
    if (other.stamp !== undefined) this.set(other.current as T, other.stamp);
    return this;
  }

  clone(): LWWRegister<T> {
    const copy = new LWWRegister<T>({ tieBreak: this.tieBreak });
    copy.current = this.current;
    copy.stamp = this.stamp;
    return copy;
  }

  equals(other: LWWRegister<T>): boolean {
    if (this.stamp === undefined || other.stamp === undefined) return this.stamp === other.stamp;
    return this.stamp.equals(other.stamp) && this.tieBreak(this.current as T, other.current as T) === 0;
  }

  /** null for a register never written; the value must itself be JSON-serialisable. */
  toJSON(): LWWRegisterJson<T> | null {
    if (this.stamp === undefined) return null;
    return { value: this.current as T, ts: this.stamp.toJSON() };
  }

  static fromJSON<T>(json: unknown, options: LWWRegisterOptions<T> = {}): LWWRegister<T> {
    const register = new LWWRegister<T>(options);
    if (json === null) return register;
    const record = json as Partial<LWWRegisterJson<T>>;
    if (typeof record !== 'object' || !('value' in record) || record.ts === undefined) {
      throw new TidelogError('DECODE_FAILED', 'LWW-register JSON needs value and ts (or null)');
    }
    register.set(record.value as T, HlcTimestamp.fromJSON(record.ts));
    return register;
  }
}
