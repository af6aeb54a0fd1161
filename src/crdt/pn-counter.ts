// PN-counter (Shapiro et al. 2011): a grow-only map of increments and one of decrements per
// node; merge takes the per-node maximum, value = ΣP − ΣN.
// Invariant: every entry is a positive bigint (zero entries are never stored), so two counters
// that mean the same thing have the same maps and `equals`/`toJSON` agree with the meaning.
// Amounts are exact integers (bigint): fractional quantities are counted in fixed-point units
// by the caller (signal weights in micro-units, see weight-micros.ts), never as floats, so sums
// are identical on every replica whatever the order of merges.

import { TidelogError } from '../errors.ts';
import { U32_MAX } from './hlc-timestamp.ts';

export interface PNCounterJson {
  /** [nodeId, decimal amount] pairs, ascending by nodeId. */
  p: [number, string][];
  n: [number, string][];
}

export class PNCounter {
  private readonly increments = new Map<number, bigint>();
  private readonly decrements = new Map<number, bigint>();

  increment(node: number, amount: number | bigint = 1): this {
    add(this.increments, node, amount);
    return this;
  }

  decrement(node: number, amount: number | bigint = 1): this {
    add(this.decrements, node, amount);
    return this;
  }

  get value(): bigint {
    return sum(this.increments) - sum(this.decrements);
  }

  /** ΣP alone (what the counter has ever added). */
  get positive(): bigint {
    return sum(this.increments);
  }

  /** ΣN alone (what the counter has ever subtracted). */
  get negative(): bigint {
    return sum(this.decrements);
  }

  /** Per-node totals, ascending by node. */
  entries(): { node: number; p: bigint; n: bigint }[] {
    const nodes = [...new Set([...this.increments.keys(), ...this.decrements.keys()])].sort((a, b) => a - b);
    return nodes.map((node) => ({
      node,
      p: this.increments.get(node) ?? 0n,
      n: this.decrements.get(node) ?? 0n,
    }));
  }

  /** Sets a node's totals to at least p and n (a merge of one node's entry). */
  raise(node: number, p: bigint, n: bigint): this {
    checkNode(node);
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
  let exact: bigint;
  if (typeof amount === 'bigint') exact = amount;
  else if (Number.isSafeInteger(amount)) exact = BigInt(amount);
  else {
    throw new TidelogError('BAD_REQUEST', `a PN-counter amount must be a safe integer or bigint, got ${amount}`);
  }
  if (exact < 0n) {
    throw new TidelogError('BAD_REQUEST', `a PN-counter amount must be non-negative, got ${exact}`);
  }
  if (exact === 0n) return;
  map.set(node, (map.get(node) ?? 0n) + exact);
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
