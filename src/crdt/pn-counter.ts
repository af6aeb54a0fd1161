// PN-counter (Shapiro et al. 2011): a grow-only map of increments and one of decrements per
// node; merge takes the per-node maximum, value = ΣP − ΣN.
// Invariant: every entry is a positive bigint (zero entries are never stored), so two counters
// that mean the same thing have the same maps and `equals`/`toJSON` agree with the meaning.
//
// Units: a counter holds exact fixed-point **micro-units** (10⁻⁶ of a unit), so fractional
// amounts (f32 signal weights) accumulate without drift: every replica turns an amount into
// the same integer and adds integers, whatever the order of increments and merges.
//   increment(node, 0.5)       a number is in units, non-negative and finite; it becomes
//                              micros = round(amount × 10⁶) with the rule of weight-micros.ts
//                              (the one CrdtSignalState uses for event weights); a fractional
//                              amount is at most MAX_ABS_WEIGHT (1e9) units, an integer one any
//                              safe integer (converted exactly)
//   increment(node, 500_000n)  a bigint is already in micro-units, exact and unbounded
//   value                      ΣP − ΣN in units, the nearest float64 (DESIGN's contract)
//   micros, positiveMicros,    bigint micro-units, exact (what merging and checks use)
//   negativeMicros

import { TidelogError } from '../errors.ts';
import { U32_MAX } from './hlc-timestamp.ts';
import { MICROS_PER_UNIT, microsToUnits, weightToMicros } from './weight-micros.ts';

const MICROS_PER_UNIT_BIGINT = BigInt(MICROS_PER_UNIT);

export interface PNCounterJson {
  /** [nodeId, decimal micro-units] pairs, ascending by nodeId. */
  p: [number, string][];
  n: [number, string][];
}

export class PNCounter {
  private readonly increments = new Map<number, bigint>();
  private readonly decrements = new Map<number, bigint>();

  /** Adds `amount` to the node's increments: a number in units, a bigint in micro-units. */
  increment(node: number, amount: number | bigint = 1): this {
    add(this.increments, node, amount);
    return this;
  }

  /** Adds `amount` to the node's decrements: a number in units, a bigint in micro-units. */
  decrement(node: number, amount: number | bigint = 1): this {
    add(this.decrements, node, amount);
    return this;
  }

  /** ΣP − ΣN in units, the nearest float64 (for display and scoring; exact: `micros`). */
  get value(): number {
    return microsToUnits(this.micros);
  }

  /** ΣP − ΣN in micro-units, exact. */
  get micros(): bigint {
    return sum(this.increments) - sum(this.decrements);
  }

  /** ΣP alone in micro-units (what the counter has ever added). */
  get positiveMicros(): bigint {
    return sum(this.increments);
  }

  /** ΣN alone in micro-units (what the counter has ever subtracted). */
  get negativeMicros(): bigint {
    return sum(this.decrements);
  }

  /** Per-node totals in micro-units, ascending by node. */
  entries(): { node: number; p: bigint; n: bigint }[] {
    const nodes = [...new Set([...this.increments.keys(), ...this.decrements.keys()])].sort((a, b) => a - b);
    return nodes.map((node) => ({
      node,
      p: this.increments.get(node) ?? 0n,
      n: this.decrements.get(node) ?? 0n,
    }));
  }

  /** Sets a node's totals to at least p and n micro-units (a merge of one node's entry). */
  raise(node: number, p: bigint, n: bigint): this {
    checkNode(node);
    for (const [name, amount] of [['p', p], ['n', n]] as const) {
      if (typeof amount !== 'bigint' || amount < 0n) {
        throw new TidelogError('BAD_REQUEST', `PN-counter raise needs ${name} as a non-negative bigint, got ${String(amount)}`, {
          details: { node, [name]: String(amount) },
        });
      }
    }
    raiseEntry(this.increments, node, p);
    raiseEntry(this.decrements, node, n);
    return this;
  }

  merge(other: PNCounter): this {
    for (const [node, amount] of other.increments) raiseEntry(this.increments, node, amount);
    for (const [node, amount] of other.decrements) raiseEntry(this.decrements, node, amount);
    return this;
  }

  clone(): PNCounter {
    return new PNCounter().merge(this);
  }

  equals(other: PNCounter): boolean {
    return sameEntries(this.increments, other.increments) && sameEntries(this.decrements, other.decrements);
  }

  toJSON(): PNCounterJson {
    const encode = (map: Map<number, bigint>): [number, string][] =>
      [...map.entries()].sort((a, b) => a[0] - b[0]).map(([node, amount]) => [node, amount.toString()]);
    return { p: encode(this.increments), n: encode(this.decrements) };
  }

  static fromJSON(json: unknown): PNCounter {
    const record = json as Partial<PNCounterJson> | null;
    if (record === null || typeof record !== 'object' || !Array.isArray(record.p) || !Array.isArray(record.n)) {
      throw new TidelogError('DECODE_FAILED', 'PN-counter JSON needs arrays p and n');
    }
    const counter = new PNCounter();
    for (const [side, entries] of [
      [counter.increments, record.p],
      [counter.decrements, record.n],
    ] as const) {
      for (const entry of entries as unknown[]) {
        if (!Array.isArray(entry) || entry.length !== 2 || typeof entry[1] !== 'string' || !/^\d+$/.test(entry[1])) {
          throw new TidelogError('DECODE_FAILED', 'PN-counter JSON entries are [node, "decimal"] pairs');
        }
        const node = entry[0] as number;
        if (!isNode(node) || side.has(node)) {
          throw new TidelogError('DECODE_FAILED', `PN-counter JSON has a bad or repeated node ${String(node)}`);
        }
        const amount = BigInt(entry[1]);
        if (amount > 0n) side.set(node, amount);
      }
    }
    return counter;
  }
}

function add(map: Map<number, bigint>, node: number, amount: number | bigint): void {
  checkNode(node);
  const micros = toMicros(amount);
  if (micros === 0n) return;
  map.set(node, (map.get(node) ?? 0n) + micros);
}

/** An amount (number: units, bigint: micro-units) as exact non-negative micro-units. */
function toMicros(amount: number | bigint): bigint {
  if (typeof amount === 'bigint') {
    if (amount < 0n) throw new TidelogError('BAD_REQUEST', `a PN-counter amount must be non-negative, got ${amount}`);
    return amount;
  }
  // The negated form also rejects NaN; −0 is a zero like any other.
  if (typeof amount !== 'number' || !(amount >= 0)) {
    throw new TidelogError('BAD_REQUEST', `a PN-counter amount must be a non-negative number or bigint, got ${String(amount)}`);
  }
  if (Number.isSafeInteger(amount)) return BigInt(amount) * MICROS_PER_UNIT_BIGINT;
  // Fractional (or a huge float): the event-weight rule, which also bounds it (BAD_REQUEST).
  return BigInt(weightToMicros(amount));
}

function raiseEntry(map: Map<number, bigint>, node: number, amount: bigint): void {
  if (amount > (map.get(node) ?? 0n)) map.set(node, amount);
}

function sum(map: Map<number, bigint>): bigint {
  let total = 0n;
  for (const amount of map.values()) total += amount;
  return total;
}

function sameEntries(a: Map<number, bigint>, b: Map<number, bigint>): boolean {
  if (a.size !== b.size) return false;
  for (const [node, amount] of a) if (b.get(node) !== amount) return false;
  return true;
}

function isNode(node: unknown): node is number {
  return typeof node === 'number' && Number.isInteger(node) && node >= 0 && node <= U32_MAX;
}

function checkNode(node: number): void {
  if (!isNode(node)) throw new TidelogError('BAD_REQUEST', `a node id must be a u32, got ${String(node)}`);
}
