// Last-writer-wins register: a value and the HLC timestamp of the write that set it.
// Invariant: the register holds the maximum of every (timestamp, value) pair it has seen under
// one total order, so set and merge are commutative, associative and idempotent:
//   1. the greater HLC wins ((wallNs, logical, nodeId): the node id breaks wall/logical ties);
//   2. two writes with the very same timestamp (one node's clock cannot issue it twice, but a
//      replayed or forged write can) are ordered by `tieBreak(a, b)`, greater wins. The default
//      compares the values' msgpack encodings byte by byte; flags use `trueWinsTies`, so a hide
//      beats an unhide stamped identically (hard negatives err on the side of hiding).

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

/** Default tie-break: the byte order of the values' msgpack encodings. */
export function compareEncoded<T>(a: T, b: T): number {
  return Buffer.compare(canonicalPackr.pack(a), canonicalPackr.pack(b));
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
