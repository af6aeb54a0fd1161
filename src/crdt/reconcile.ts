// Reconciliation: two replicas find where their CRDT states differ and exchange only that, so
// the traffic grows with the divergence (k differing entities → O(k · depth) digests plus the
// k entities' states), not with the state size.
// Invariant: applying a plan is a join (per-origin max, LWW), so it is idempotent and commutes
// with every other merge; a plan only ever adds knowledge to the state it was planned for.
//
// Protocol (each side runs a ReconcileSession; messages are bytes, so any transport works):
//   A → B  hello:   A's origin table, A's root digest
//   X → Y  round:   for each node digest it received, Y compares with its own node:
//                     equal                         → done with that subtree
//                     one side has no entities      → the other sends its entities there
//                     ≤ leafEntities on both sides,
//                     or the deepest level          → Y sends its entities, asks for X's
//                     otherwise                     → Y sends its 16 child digests
//                   plus the entities the peer asked for, and Y's origin table once
//   …      until a side has nothing to send: it sends a final empty message and both stop.
// Depth ≤ 9 levels, so ≤ ~11 messages. Each session then holds the peer's differing entities
// and origin table: `plan()` turns them into a MergePlan for its own state.
//
// Message (msgpack array):
//   index  field     type                 meaning
//   -----  --------  -------------------  ---------------------------------------------------
//       0  version   uint                 1
//       1  schema    str                  SignalSchema.fingerprint
//       2  isFinal   bool                 the sender has nothing more to say
//       3  origins   array<OriginRow>|nil sender's origin table (its first message only)
//       4  digests   array<uint>          flat [level, index, hashHi, hashLo, count] × n
//       5  wants     array<uint>          flat [level, index] × n: send me your entities there
//       6  entities  array<Entity>        sender's entities (snapshot-codec.ts Entity)
//
// The plan itself and its encoding: merge-plan.ts.

import { TidelogError } from '../errors.ts';
import { DigestTree, FANOUT, MAX_LEVEL } from './digest-tree.ts';
import { compareEntityKeys, entityIdOf, type EntityKey } from './entity-key.ts';
import type { OriginLog } from './origin-log.ts';
import {
  dominance,
  RECONCILE_VERSION,
  type EntityDifference,
  type MergePlan,
  type PlanEntity,
  type PlanOrigin,
  type ReconcileStats,
} from './merge-plan.ts';
import type { CrdtSignalState } from './signal-state.ts';
import {
  decodedToRecord,
  decodeEntityRecord,
  decodeOriginRows,
  expectArray,
  expectU32,
  originToRow,
  statePackr,
  unpackOrFail,
  type DecodedEntity,
  type EntityRecord,
  type OriginRow,
} from './snapshot-codec.ts';


export interface ReconcileOptions {
  /** Below this many entities on both sides a differing node is exchanged, not split. */
  leafEntities?: number;
  /** A received message larger than this is rejected (BAD_REQUEST). */
  maxMessageBytes?: number;
}

export interface ApplyResult {
  entitiesChanged: number;
  originsRaised: number;
}

interface ReceivedEntity {
  record: EntityRecord;
  decoded: DecodedEntity;
}

interface DecodedMessage {
  isFinal: boolean;
  origins: OriginLog[] | null;
  digests: number[];
  wants: number[];
  entities: ReceivedEntity[];
}

const DIGEST_FIELDS = 5;
const MAX_ROUNDS = 2 * (MAX_LEVEL + 2) + 4;

export class ReconciliationEngine {
  readonly leafEntities: number;
  readonly maxMessageBytes: number;
  private readonly trees = new WeakMap<CrdtSignalState, { version: number; tree: DigestTree }>();

  constructor(options: ReconcileOptions = {}) {
    this.leafEntities = options.leafEntities ?? 8;
    this.maxMessageBytes = options.maxMessageBytes ?? 256 << 20;
    if (!Number.isInteger(this.leafEntities) || this.leafEntities < 1) {
      throw new TidelogError('BAD_REQUEST', `leafEntities must be a positive integer, got ${this.leafEntities}`);
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

  /** Runs the protocol once and returns both sides' plans. */
  exchange(local: CrdtSignalState, remote: CrdtSignalState): { local: MergePlan; remote: MergePlan } {
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
      if (messages > MAX_ROUNDS) throw new Error('invariant violated: reconciliation did not converge');
      message = (isToRemote ? remoteSession : localSession).receive(message);
      isToRemote = !isToRemote;
    }
    const withStats = (plan: MergePlan): MergePlan => ({ ...plan, stats: { ...plan.stats, messages, bytesExchanged } });
    return { local: withStats(localSession.plan()), remote: withStats(remoteSession.plan()) };
  }

  /** Joins the plan into `state`; applying it again changes nothing. */
  apply(state: CrdtSignalState, plan: MergePlan): ApplyResult {
    if (plan.version !== RECONCILE_VERSION) throw new TidelogError('BAD_REQUEST', `unsupported plan version ${plan.version}`);
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
    let entitiesChanged = 0;
    plan.entities.forEach((entry, index) => {
      const entity = decodeEntityRecord(entry.record, state.schema, `plan.entities[${index}]`);
      if (state.joinEntity(entity)) entitiesChanged++;
    });
    let originsRaised = 0;
    const rows = decodeOriginRows(
      plan.origins.map((entry) => entry.row),
      'plan.origins',
    );
    for (const row of rows) {
      const before = state.appliedSeq(row.origin);
      state.joinOrigin(row);
      if (state.appliedSeq(row.origin) > before) originsRaised++;
    }
    return { entitiesChanged, originsRaised };
  }

  /** Runs the protocol and applies both plans: afterwards a.equals(b). */
  sync(a: CrdtSignalState, b: CrdtSignalState): ReconcileStats {
    const { local, remote } = this.exchange(a, b);
    this.apply(a, local);
    this.apply(b, remote);
    return local.stats;
  }
}

export class ReconcileSession {
  private readonly engine: ReconciliationEngine;
  private readonly state: CrdtSignalState;
  private readonly tree: DigestTree;
  private readonly basis: [number, number][];
  private remoteOrigins: OriginLog[] = [];
  private readonly received = new Map<EntityKey, ReceivedEntity>();
  private hasSentOrigins = false;
  private differingNodes = 0;
  private entitiesSent = 0;
  isDone = false;

  constructor(engine: ReconciliationEngine, state: CrdtSignalState) {
    this.engine = engine;
    this.state = state;
    this.tree = engine.tree(state);
    this.basis = state.originLogs().map((log) => [log.origin, log.appliedSeq]);
  }

  /** The first message (the initiator's hello). */
  start(): Uint8Array {
    const root = this.tree.node(0, 0);
    return this.send(false, [0, 0, root.hashHi, root.hashLo, root.count], [], []);
  }

  /** Handles the peer's message; returns the reply, or null once the exchange is over. */
  receive(bytes: Uint8Array): Uint8Array | null {
    if (this.isDone) throw new TidelogError('BAD_REQUEST', 'the reconciliation session is finished');
    if (bytes.byteLength > this.engine.maxMessageBytes) {
      throw new TidelogError('BAD_REQUEST', `a reconciliation message of ${bytes.byteLength} bytes is too large`);
    }
    const message = this.decode(bytes);
    if (message.origins !== null) this.remoteOrigins = message.origins;
    for (const entity of message.entities) this.received.set(entity.decoded.key, entity);
    if (message.isFinal) {
      this.isDone = true;
      return null;
    }
    const digests: number[] = [];
    const wants: number[] = [];
    const entities: EntityKey[] = [];
    const tree = this.tree;
    for (let at = 0; at < message.digests.length; at += DIGEST_FIELDS) {
      const level = message.digests[at];
      const index = message.digests[at + 1];
      const theirCount = message.digests[at + 4];
      const mine = tree.node(level, index);
      if (mine.hashHi === message.digests[at + 2] && mine.hashLo === message.digests[at + 3] && mine.count === theirCount) {
        continue;
      }
      this.differingNodes++;
      if (theirCount === 0) entities.push(...tree.keysIn(level, index));
      else if (mine.count === 0) wants.push(level, index);
      else if (level === MAX_LEVEL || Math.max(mine.count, theirCount) <= this.engine.leafEntities) {
        entities.push(...tree.keysIn(level, index));
        wants.push(level, index);
      } else {
        for (let child = 0; child < FANOUT; child++) {
          const childIndex = index * FANOUT + child;
          const node = tree.node(level + 1, childIndex);
          digests.push(level + 1, childIndex, node.hashHi, node.hashLo, node.count);
        }
      }
    }
    for (let at = 0; at < message.wants.length; at += 2) {
      entities.push(...tree.keysIn(message.wants[at], message.wants[at + 1]));
    }
    const isFinal = digests.length === 0 && wants.length === 0 && entities.length === 0 && this.hasSentOrigins;
    return this.send(isFinal, digests, wants, entities);
  }

  /** What this side must join to reach the union with the peer: what the peer sent, minus what is already here. */
  plan(): MergePlan {
    const entities: PlanEntity[] = [];
    const keys = [...this.received.keys()].sort(compareEntityKeys);
    for (const key of keys) {
      const remote = this.received.get(key) as ReceivedEntity;
      const localRecord = this.state.entityRecord(key);
      let how: EntityDifference;
      if (localRecord === undefined) how = 'missing-local';
      else {
        if (Buffer.compare(statePackr.pack(localRecord), statePackr.pack(remote.record)) === 0) continue;
        const local = decodeEntityRecord(localRecord, this.state.schema, 'local');
        const order = dominance(local, remote.decoded);
        if (order === 'local') continue; // nothing to learn here; the peer's plan carries it
        how = order === 'remote' ? 'remote-newer' : 'concurrent';
      }
      entities.push({ entityId: entityIdOf(key), how, record: remote.record });
    }
    const origins: PlanOrigin[] = [];
    for (const remote of this.remoteOrigins) {
      const localSeq = this.state.appliedSeq(remote.origin);
      const hasNewPending = [...remote.pending.keys()].some((seq) => seq > localSeq);
      if (remote.appliedSeq > localSeq || hasNewPending) {
        origins.push({ origin: remote.origin, localSeq, remoteSeq: remote.appliedSeq, row: originToRow(remote) });
      }
    }
    return {
      version: RECONCILE_VERSION,
      schema: this.state.schema.fingerprint,
      basis: this.basis,
      origins,
      entities,
      stats: {
        messages: 0,
        bytesExchanged: 0,
        differingNodes: this.differingNodes,
        entitiesSent: this.entitiesSent,
        entitiesReceived: this.received.size,
      },
    };
  }

  private send(isFinal: boolean, digests: number[], wants: number[], keys: EntityKey[]): Uint8Array {
    let origins: OriginRow[] | null = null;
    if (!this.hasSentOrigins) {
      origins = this.state.originLogs().map(originToRow);
      this.hasSentOrigins = true;
    }
    const records: EntityRecord[] = [];
    for (const key of keys) {
      const record = this.state.entityRecord(key);
      if (record !== undefined) records.push(record);
    }
    this.entitiesSent += records.length;
    if (isFinal) this.isDone = true;
    return statePackr.pack([RECONCILE_VERSION, this.state.schema.fingerprint, isFinal, origins, digests, wants, records]);
  }

  private decode(bytes: Uint8Array): DecodedMessage {
    const top = expectArray(unpackOrFail(bytes, 'reconciliation message'), '$', 7);
    if (top[0] !== RECONCILE_VERSION) throw new TidelogError('DECODE_FAILED', `unsupported reconciliation version ${String(top[0])}`);
    if (top[1] !== this.state.schema.fingerprint) {
      throw new TidelogError('SCHEMA_INVALID', 'the peer reconciles under a different signal schema');
    }
    if (typeof top[2] !== 'boolean') throw new TidelogError('DECODE_FAILED', '$[2]: isFinal is a boolean');
    const origins = top[3] === null ? null : decodeOriginRows(top[3], '$[3]');
    const digests = expectArray(top[4], '$[4]').map((value, at) => expectU32(value, `$[4][${at}]`));
    const wants = expectArray(top[5], '$[5]').map((value, at) => expectU32(value, `$[5][${at}]`));
    if (digests.length % DIGEST_FIELDS !== 0 || wants.length % 2 !== 0) {
      throw new TidelogError('DECODE_FAILED', 'digests and wants must be whole tuples');
    }
    const checkNode = (level: number, index: number): void => {
      if (level > MAX_LEVEL || index >= 16 ** level) throw new TidelogError('DECODE_FAILED', `no tree node (${level}, ${index})`);
    };
    for (let at = 0; at < digests.length; at += DIGEST_FIELDS) checkNode(digests[at], digests[at + 1]);
    for (let at = 0; at < wants.length; at += 2) checkNode(wants[at], wants[at + 1]);
    const entities = expectArray(top[6], '$[6]').map((raw, at): ReceivedEntity => {
      const decoded = decodeEntityRecord(raw, this.state.schema, `$[6][${at}]`);
      return { record: decodedToRecord(decoded), decoded };
    });
    return { isFinal: top[2], origins, digests, wants, entities };
  }
}
