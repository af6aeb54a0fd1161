// Reconciliation: two replicas find where their CRDT states differ and exchange only that, so
// the traffic grows with the divergence (k differing entities → O(k · depth) digests plus the
// k entities' states), not with the state size.
// Invariant: applying a plan is a join (per-origin max, LWW), so it is idempotent and commutes
// with every other merge; a plan only ever adds knowledge to the state it was planned for.
//
// Protocol (each side runs a ReconcileSession; messages are bytes, so any transport works):
//   A → B  hello:   A's root digest, A's origin table
//   X → Y  round:   for each node digest it received, Y compares with its own node:
//                     equal                         → done with that subtree
//                     one side has no entities      → the other sends its entities there
//                     ≤ leafEntities on both sides,
//                     or the deepest level          → Y sends its entities, asks for X's
//                     otherwise                     → Y sends its 16 child digests
//                   plus the entities the peer asked for, and Y's origin table once
//   …      until a side has nothing to send and the peer announced nothing more: it sends a
//          final empty message and both stop.
// Depth ≤ 9 levels, so ≤ ~11 messages while everything fits one message each. Each session
// then holds the peer's differing entities and origin table: `plan()` turns them into a
// MergePlan for its own state.
//
// Bounded: no message is larger than maxMessageBytes. What does not fit waits in the sender's
// outbox and goes in the next message (`hasMore` makes the peer answer even with nothing to
// say), so a fresh replica receives a peer's millions of entities as a stream of bounded
// messages; a driver can apply them as they arrive (session.takePlan(), as `sync` does), and
// `plans()` cuts a plan into pieces of at most maxMessageBytes each.
//
// The message layout and the session: reconcile-session.ts. The plan and its encoding:
// merge-plan.ts.

import { TidelogError } from '../errors.ts';
import { DigestTree } from './digest-tree.ts';
import { RECONCILE_VERSION, splitPlan, type MergePlan, type ReconcileStats } from './merge-plan.ts';
import { ReconcileSession, type SessionHost } from './reconcile-session.ts';
import type { CrdtSignalState } from './signal-state.ts';
import { decodeEntityRecord, decodeOriginRows } from './snapshot-codec.ts';

export { ReconcileSession } from './reconcile-session.ts';

export interface ReconcileOptions {
  /** Below this many entities on both sides a differing node is exchanged, not split. */
  leafEntities?: number;
  /**
   * No message a session sends is larger, and a larger received one is rejected (BAD_REQUEST);
   * `plans()` cuts plans to this size too. Default 256 MiB, at least MIN_MESSAGE_BYTES.
   */
  maxMessageBytes?: number;
}

export interface ApplyResult {
  entitiesChanged: number;
  originsRaised: number;
}

/** The smallest maxMessageBytes: room for the envelope and a few entity records. */
export const MIN_MESSAGE_BYTES = 4096;

export class ReconciliationEngine implements SessionHost {
  readonly leafEntities: number;
  readonly maxMessageBytes: number;
  private readonly trees = new WeakMap<CrdtSignalState, { version: number; tree: DigestTree }>();

  constructor(options: ReconcileOptions = {}) {
    this.leafEntities = options.leafEntities ?? 8;
    this.maxMessageBytes = options.maxMessageBytes ?? 256 << 20;
    if (!Number.isInteger(this.leafEntities) || this.leafEntities < 1) {
      throw new TidelogError('BAD_REQUEST', `leafEntities must be a positive integer, got ${this.leafEntities}`);
    }
    if (!Number.isSafeInteger(this.maxMessageBytes) || this.maxMessageBytes < MIN_MESSAGE_BYTES) {
      throw new TidelogError('BAD_REQUEST', `maxMessageBytes must be an integer ≥ ${MIN_MESSAGE_BYTES}, got ${this.maxMessageBytes}`);
    }
  }

  /** The digest tree of the state's current version (cached until the state changes). */
  tree(state: CrdtSignalState): DigestTree {
    const cached = this.trees.get(state);
    if (cached !== undefined && cached.version === state.version) return cached.tree;
    const tree = new DigestTree(state);
    this.trees.set(state, { version: state.version, tree });
    return tree;
  }

  /** One side of the protocol, for a transport to drive. */
  session(state: CrdtSignalState): ReconcileSession {
    return new ReconcileSession(this, state);
  }

  /**
   * Runs the protocol in-process over encoded messages and returns the plan that brings `local`
   * up to the join with `remote` (with `plan(remote, local)` the other way round). The stats
   * count every byte both sides sent.
   */
  plan(local: CrdtSignalState, remote: CrdtSignalState): MergePlan {
    return this.exchange(local, remote).local;
  }

  /**
   * plan(local, remote) cut into pieces whose encodings are each at most maxMessageBytes
   * (merge-plan.ts splitPlan): apply them in order.
   */
  plans(local: CrdtSignalState, remote: CrdtSignalState): MergePlan[] {
    return splitPlan(this.plan(local, remote), this.maxMessageBytes);
  }

  /** Runs the protocol once and returns both sides' plans. */
  exchange(local: CrdtSignalState, remote: CrdtSignalState): { local: MergePlan; remote: MergePlan } {
    const { localSession, remoteSession, stats } = this.run(local, remote, () => {});
    const withStats = (plan: MergePlan): MergePlan => ({ ...plan, stats: { ...plan.stats, ...stats } });
    return { local: withStats(localSession.plan()), remote: withStats(remoteSession.plan()) };
  }

  /**
   * Joins the plan into `state`; applying it again changes nothing. Everything is validated
   * before anything changes: version and schema, the basis (BAD_REQUEST when the state is
   * behind the state the plan was made for), every entity record and origin row (DECODE_FAILED,
   * including buffered events the schema rejects).
   */
  apply(state: CrdtSignalState, plan: MergePlan): ApplyResult {
    if (plan.version !== RECONCILE_VERSION) throw new TidelogError('BAD_REQUEST', `unsupported plan version ${String(plan.version)}`);
    if (plan.schema !== state.schema.fingerprint) {
      throw new TidelogError('SCHEMA_INVALID', 'the plan was made under a different signal schema');
    }
    // Raising an origin's appliedSeq is only sound on the state the plan was made for (or a
    // later one): the plan carries just the entities that differed from it.
    for (const [origin, seq] of plan.basis) {
      if (state.appliedSeq(origin) < seq) {
        throw new TidelogError('BAD_REQUEST', `the plan was made for a state further along origin ${origin}`, {
          details: { origin, planned: seq, actual: state.appliedSeq(origin) },
        });
      }
    }
    const entities = plan.entities.map((entry, index) => decodeEntityRecord(entry.record, state.schema, `plan.entities[${index}]`));
    const rows = decodeOriginRows(
      plan.origins.map((entry) => entry.row),
      'plan.origins',
      state.schema,
    );
    let entitiesChanged = 0;
    for (const entity of entities) if (state.joinEntity(entity)) entitiesChanged++;
    // Watermarks last: they only hold once the entities they cover are in.
    let originsRaised = 0;
    for (const row of rows) {
      const before = state.appliedSeq(row.origin);
      state.joinOrigin(row);
      if (state.appliedSeq(row.origin) > before) originsRaised++;
    }
    return { entitiesChanged, originsRaised };
  }

  /**
   * Runs the protocol and brings both states to their join: afterwards a.equals(b) (unless a
   * reorder buffer overflowed, see CrdtSignalState.droppedPendingEvents). Each side applies
   * what it received after every message, so neither holds more than a message's entities
   * beyond its own state. Returns the exchange's stats as `a` saw them.
   */
  sync(a: CrdtSignalState, b: CrdtSignalState): ReconcileStats {
    const { localSession, remoteSession, stats } = this.run(a, b, (session, state) => this.applyTaken(state, session));
    this.applyTaken(a, localSession);
    this.applyTaken(b, remoteSession);
    return { ...localSession.plan().stats, ...stats };
  }

  /**
   * Drives two sessions over encoded messages until both are done, calling `onReceived` after
   * each message a session received.
   */
  private run(
    local: CrdtSignalState,
    remote: CrdtSignalState,
    onReceived: (session: ReconcileSession, state: CrdtSignalState) => void,
  ): { localSession: ReconcileSession; remoteSession: ReconcileSession; stats: { messages: number; bytesExchanged: number } } {
    local.checkSameSchema(remote.schema);
    const localSession = this.session(local);
    const remoteSession = this.session(remote);
    let message: Uint8Array | null = localSession.start();
    let isToRemote = true;
    let messages = 0;
    let bytesExchanged = 0;
    while (message !== null) {
      messages++;
      bytesExchanged += message.byteLength;
      const [session, state] = isToRemote ? [remoteSession, remote] : [localSession, local];
      message = session.receive(message);
      onReceived(session, state);
      isToRemote = !isToRemote;
    }
    return { localSession, remoteSession, stats: { messages, bytesExchanged } };
  }

  private applyTaken(state: CrdtSignalState, session: ReconcileSession): void {
    const plan = session.takePlan();
    if (plan.entities.length > 0 || plan.origins.length > 0) this.apply(state, plan);
  }
}
