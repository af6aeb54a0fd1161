// What consumer.state() returns: one entity's CRDT state as typed values, converted here (and
// only here) from the decoded wire reply (StateReply, docs/PROTOCOL.md). The wire spells the
// entity id as a decimal string and repeats the entity's hide flag on every signal; this view
// gives the id as a bigint, the flag once, and the signals by name or type.
//
// Exactness: entityId and lastUpdateNs are u64 on the wire and bigints here; count is a u53
// (exact as a number); score and total are floats on the wire and stay numbers. The wire does
// not say a signal's kind (score or flag): a flag signal (e.g. "hide") reports score, count and
// total 0, and lastUpdateNs the time its flag was last set.

import type { SignalStateView, StateReply } from '../transport/messages.ts';

/** One signal of an entity, as the node's schema names it. */
export interface SignalState {
  /** The u8 signal type (SignalEvent.signalType). */
  readonly signalType: number;
  /** The signal's name in the node's schema, e.g. "view". */
  readonly name: string;
  /** Decayed score: Σ of the weights, each decayed by the signal's half-life, as of the node's answer. */
  readonly score: number;
  /** Events counted (exact: at most 2^53). */
  readonly count: number;
  /** Sum of the weights, in units (the node sums exact micro-units and sends the nearest float64). */
  readonly total: number;
  /** Timestamp (ns) of the newest event folded in (a flag signal: when its flag was last set); 0n if none. */
  readonly lastUpdateNs: bigint;
}

/** One entity's CRDT state, from the node serving its shard. */
export interface EntityState {
  readonly entityId: bigint;
  /** The shard that owns the entity. */
  readonly shard: number;
  /** Highest seq of that shard folded into the state. */
  readonly appliedSeq: number;
  /**
   * The entity's "hidden" flag (last writer wins among hide/unhide events); false when the
   * schema has no such flag; null when the reply holds no signal to carry it (signalTypes []).
   */
  readonly isHidden: boolean | null;
  /** One per signal of the schema (or of the signalTypes asked), ascending by signal type. */
  readonly signals: readonly SignalState[];
  /** The signal named `name` (e.g. 'view'), or with signal type `signalType`; undefined if the reply lacks it. */
  signal(nameOrType: string | number): SignalState | undefined;
}

class EntityStateView implements EntityState {
  readonly entityId: bigint;
  readonly shard: number;
  readonly appliedSeq: number;
  readonly isHidden: boolean | null;
  readonly signals: readonly SignalState[];
  readonly #byName = new Map<string, SignalState>();
  readonly #byType = new Map<number, SignalState>();

  constructor(reply: StateReply) {
    // The codec accepted entityId only as a canonical decimal u64, so BigInt() is exact.
    this.entityId = BigInt(reply.entityId);
    this.shard = reply.shard;
    this.appliedSeq = reply.appliedSeq;
    this.isHidden = reply.signals.length === 0 ? null : reply.signals.some((view) => view.isHidden);
    this.signals = Object.freeze(reply.signals.map(signalState));
    for (const signal of this.signals) {
      if (!this.#byName.has(signal.name)) this.#byName.set(signal.name, signal);
      if (!this.#byType.has(signal.signalType)) this.#byType.set(signal.signalType, signal);
    }
  }

  signal(nameOrType: string | number): SignalState | undefined {
    return typeof nameOrType === 'number' ? this.#byType.get(nameOrType) : this.#byName.get(nameOrType);
  }
}

/** The typed view of a decoded StateReply. */
export function entityStateOf(reply: StateReply): EntityState {
  return new EntityStateView(reply);
}

function signalState(view: SignalStateView): SignalState {
  return Object.freeze({
    signalType: view.signalType,
    name: view.name,
    score: view.score,
    count: view.count,
    total: view.total,
    lastUpdateNs: view.lastUpdateNs,
  });
}
