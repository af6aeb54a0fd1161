// One side of the reconciliation protocol (the engine and the protocol's outline: reconcile.ts).
// Messages are bytes, so any transport works, and each is at most maxMessageBytes: whatever a
// side has to say (its origin table, digests, wants, entity records) waits in an outbox and
// leaves in budgeted messages, so even a full transfer of millions of entities to a fresh
// replica is a sequence of bounded messages.
// Invariant: a side ends (isFinal) only when its outbox is empty and the peer announced nothing
// more (hasMore = false), so when both sessions are done each has received everything the
// other had to send; `plan()` only then carries the peer's origin rows (watermarks are raised
// after the entities they cover, never before).
//
// Message (msgpack array):
//   index  field     type                 meaning
//   -----  --------  -------------------  ---------------------------------------------------
//       0  version   uint                 2
//       1  schema    str                  SignalSchema.fingerprint
//       2  isFinal   bool                 the sender is done: nothing queued, none expected
//       3  origins   array<OriginRow>     parts of the sender's origin table (a row whose
//                                         reorder buffer is large comes in several parts)
//       4  digests   array<uint>          flat [level, index, hashHi, hashLo, count] × n
//       5  wants     array<uint>          flat [level, index] × n: send me your entities there
//       6  entities  array<Entity>        sender's entities (snapshot-codec.ts Entity)
//       7  hasMore   bool                 the sender has more queued: answer, even if empty

import { TidelogError } from '../errors.ts';
import { DigestTree, FANOUT, MAX_LEVEL } from './digest-tree.ts';
import { compareEntityKeys, entityIdOf, type EntityKey } from './entity-key.ts';
import {
  dominance,
  RECONCILE_VERSION,
  splitOriginRow,
  type EntityDifference,
  type MergePlan,
  type PlanEntity,
  type PlanOrigin,
} from './merge-plan.ts';
import { comparePendingEvents, OriginLog } from './origin-log.ts';
import type { CrdtSignalState } from './signal-state.ts';
import {
  ChunkWriter,
  decodedToRecord,
  decodeEntityRecord,
  decodeOriginRows,
  expectArray,
  expectU32,
  originToRow,
  statePackr,
  unpackOrFail,
  type DecodedEntity,
} from './snapshot-codec.ts';

/** What a session needs from its engine. */
export interface SessionHost {
  readonly leafEntities: number;
  readonly maxMessageBytes: number;
  tree(state: CrdtSignalState): DigestTree;
}

const DIGEST_FIELDS = 5;
/** Upper bounds of the packed sizes: a digest tuple (level ≤ 8, four u32s), a want, the envelope. */
const DIGEST_TUPLE_BYTES = 1 + 4 * 5;
const WANT_TUPLE_BYTES = 1 + 5;
const ENVELOPE_BYTES = 128;
/**
 * Rounds in which neither side had anything queued beyond its message: each goes one tree level
 * deeper or answers one, so a correct exchange needs at most about 2 · (depth + 2). More means
 * the peer does not converge.
 */
export const MAX_QUIET_ROUNDS = 2 * (MAX_LEVEL + 2) + 4;

interface DecodedMessage {
  isFinal: boolean;
  hasMore: boolean;
  origins: OriginLog[];
  digests: number[];
  wants: number[];
  entities: DecodedEntity[];
}

interface OriginPart {
  origin: number;
  bytes: Uint8Array;
}

export class ReconcileSession {
  private readonly host: SessionHost;
  private readonly state: CrdtSignalState;
  private readonly tree: DigestTree;
  private readonly basis: [number, number][];
  private readonly budget: number;
  // ---- what the peer told us ----
  private readonly remoteOrigins = new Map<number, OriginLog>();
  /** Entities received and not yet handed out by takePlan(). */
  private readonly received = new Map<EntityKey, DecodedEntity>();
  private entitiesReceived = 0;
  private conflictsTaken = 0;
  private isPeerAhead = false;
  private hasStarted = false;
  private areOriginsTaken = false;
  // ---- the outbox ----
  private readonly originParts: OriginPart[] = [];
  private originAt = 0;
  private digests: number[] = [];
  private digestAt = 0;
  private wants: number[] = [];
  private wantAt = 0;
  /** Flat [start, end) ranges of tree.keys still to send; `rangeAt` is the next position. */
  private ranges: number[] = [];
  private rangeIndex = 0;
  private rangeAt = -1;
  /** A packed record that did not fit the previous message. */
  private carry: Uint8Array | undefined = undefined;
  private didSendMore = false;
  private quietRounds = 0;
  private differingNodes = 0;
  private entitiesSent = 0;
  isDone = false;

  constructor(host: SessionHost, state: CrdtSignalState) {
    this.host = host;
    this.state = state;
    this.tree = host.tree(state);
    this.budget = host.maxMessageBytes - ENVELOPE_BYTES;
    this.basis = state.originLogs().map((log) => [log.origin, log.appliedSeq]);
    for (const log of state.originLogs()) {
      for (const row of splitOriginRow(originToRow(log), this.budget)) {
        this.originParts.push({ origin: log.origin, bytes: copyOf(statePackr.pack(row)) });
      }
    }
  }

  /** The first message (the initiator's hello: its root digest and origin table). */
  start(): Uint8Array {
    if (this.hasStarted) throw new TidelogError('BAD_REQUEST', 'the reconciliation session has started already');
    this.hasStarted = true;
    const root = this.tree.node(0, 0);
    this.digests.push(0, 0, root.hashHi, root.hashLo, root.count);
    return this.send();
  }

  /** Handles the peer's message; returns the reply, or null once the exchange is over. */
  receive(bytes: Uint8Array): Uint8Array | null {
    if (this.isDone) throw new TidelogError('BAD_REQUEST', 'the reconciliation session is finished');
    if (!(bytes instanceof Uint8Array) || bytes.byteLength > this.host.maxMessageBytes) {
      throw new TidelogError('BAD_REQUEST', `a reconciliation message of ${String(bytes?.byteLength)} bytes is too large`, {
        details: { byteLength: bytes?.byteLength, maxMessageBytes: this.host.maxMessageBytes },
      });
    }
    this.hasStarted = true;
    const message = this.decode(bytes);
    for (const row of message.origins) this.uniteRemoteOrigin(row);
    for (const entity of message.entities) {
      this.received.set(entity.key, entity);
      this.entitiesReceived++;
    }
    if (message.isFinal) {
      this.isDone = true;
      return null;
    }
    this.isPeerAhead = message.hasMore;
    if (!message.hasMore && !this.didSendMore && ++this.quietRounds > MAX_QUIET_ROUNDS) {
      throw new TidelogError('BAD_REQUEST', `the reconciliation did not converge within ${MAX_QUIET_ROUNDS} rounds`, {
        details: { rounds: this.quietRounds },
      });
    }
    this.answerDigests(message.digests);
    for (let at = 0; at < message.wants.length; at += 2) this.queueEntities(message.wants[at], message.wants[at + 1]);
    return this.send();
  }

  /**
   * What this side must join to reach the union with the peer: the entities received and not
   * yet taken, minus what is already here, plus, once the session is done, the peer's origin
   * rows that differ. Does not consume anything (see takePlan).
   */
  plan(): MergePlan {
    const entities: PlanEntity[] = [];
    let conflicts = 0;
    for (const key of [...this.received.keys()].sort(compareEntityKeys)) {
      const remote = this.received.get(key) as DecodedEntity;
      const localRecord = this.state.entityRecord(key);
      let how: EntityDifference = 'missing-local';
      if (localRecord !== undefined) {
        const order = dominance(decodeEntityRecord(localRecord, this.state.schema, 'local'), remote);
        if (order.conflicts > 0) conflicts++;
        if (!order.isRemoteAhead) continue; // nothing to learn here; the peer's plan carries it
        how = order.conflicts > 0 ? 'conflict' : order.isLocalAhead ? 'concurrent' : 'remote-newer';
      }
      entities.push({ entityId: entityIdOf(key), how, record: decodedToRecord(remote) });
    }
    return {
      version: RECONCILE_VERSION,
      schema: this.state.schema.fingerprint,
      basis: this.basis,
      origins: this.isDone && !this.areOriginsTaken ? this.planOrigins() : [],
      entities,
      stats: {
        messages: 0,
        bytesExchanged: 0,
        differingNodes: this.differingNodes,
        entitiesSent: this.entitiesSent,
        entitiesReceived: this.entitiesReceived,
        conflicts: this.conflictsTaken + conflicts,
      },
    };
  }

  /**
   * plan(), and forgets what it handed out: a driver that applies each taken plan as messages
   * arrive holds at most one message's entities at a time. The origin rows come in the first
   * plan taken after the session is done, after every entity.
   */
  takePlan(): MergePlan {
    const plan = this.plan();
    this.received.clear();
    this.conflictsTaken = plan.stats.conflicts;
    if (this.isDone) this.areOriginsTaken = true;
    return plan;
  }

  // ---- protocol ----

  private answerDigests(digests: number[]): void {
    const tree = this.tree;
    for (let at = 0; at < digests.length; at += DIGEST_FIELDS) {
      const level = digests[at];
      const index = digests[at + 1];
      const theirCount = digests[at + 4];
      const mine = tree.node(level, index);
      if (mine.hashHi === digests[at + 2] && mine.hashLo === digests[at + 3] && mine.count === theirCount) continue;
      this.differingNodes++;
      if (theirCount === 0) this.queueEntities(level, index);
      else if (mine.count === 0) this.wants.push(level, index);
      else if (level === MAX_LEVEL || Math.max(mine.count, theirCount) <= this.host.leafEntities) {
        this.queueEntities(level, index);
        this.wants.push(level, index);
      } else {
        for (let child = 0; child < FANOUT; child++) {
          const childIndex = index * FANOUT + child;
          const node = tree.node(level + 1, childIndex);
          this.digests.push(level + 1, childIndex, node.hashHi, node.hashLo, node.count);
        }
      }
    }
  }

  private queueEntities(level: number, index: number): void {
    const [start, end] = this.tree.range(level, index);
    if (end > start) this.ranges.push(start, end);
  }

  private uniteRemoteOrigin(row: OriginLog): void {
    const held = this.remoteOrigins.get(row.origin);
    if (held === undefined) {
      this.remoteOrigins.set(row.origin, row);
      return;
    }
    // Parts of one row: the same appliedSeq and lastHlc, disjoint parts of the buffer.
    held.appliedSeq = Math.max(held.appliedSeq, row.appliedSeq);
    held.raiseLastHlc(row.lastHlc);
    for (const [seq, event] of row.pending) held.pending.set(seq, event);
  }

  /** The peer's origin rows this state lacks something of, ascending by origin. */
  private planOrigins(): PlanOrigin[] {
    const origins: PlanOrigin[] = [];
    for (const remote of [...this.remoteOrigins.values()].sort((a, b) => a.origin - b.origin)) {
      const local = this.state.originLog(remote.origin);
      const localSeq = local?.appliedSeq ?? 0;
      const localHlc = local?.lastHlc;
      const isHlcAhead = remote.lastHlc !== undefined && (localHlc === undefined || remote.lastHlc.isAfter(localHlc));
      const hasNewPending = [...remote.pending].some(([seq, event]) => {
        if (seq <= localSeq) return false;
        const mine = local?.pending.get(seq);
        return mine === undefined || comparePendingEvents(event, mine) > 0;
      });
      if (remote.appliedSeq > localSeq || isHlcAhead || hasNewPending) {
        origins.push({ origin: remote.origin, localSeq, remoteSeq: remote.appliedSeq, row: originToRow(remote) });
      }
    }
    return origins;
  }

  // ---- the outbox and the wire ----

  /** Takes what fits the budget from the outbox into one message. */
  private send(): Uint8Array {
    const budget = this.budget;
    let used = 0;
    const origins: OriginPart[] = [];
    while (this.originAt < this.originParts.length) {
      const part = this.originParts[this.originAt];
      // One part per origin and message: decodeOriginRows wants origins strictly ascending.
      if (origins.length > 0 && (used + part.bytes.byteLength > budget || origins[origins.length - 1].origin === part.origin)) break;
      origins.push(part);
      used += part.bytes.byteLength;
      this.originAt++;
    }
    const wantCount = Math.min((this.wants.length - this.wantAt) / 2, Math.floor((budget - used) / WANT_TUPLE_BYTES));
    const wants = this.wants.slice(this.wantAt, this.wantAt + 2 * wantCount);
    this.wantAt += wants.length;
    used += wantCount * WANT_TUPLE_BYTES;
    const digestCount = Math.min(
      (this.digests.length - this.digestAt) / DIGEST_FIELDS,
      Math.floor((budget - used) / DIGEST_TUPLE_BYTES),
    );
    const digests = this.digests.slice(this.digestAt, this.digestAt + DIGEST_FIELDS * digestCount);
    this.digestAt += digests.length;
    used += digestCount * DIGEST_TUPLE_BYTES;
    const entities = new ChunkWriter();
    let entityCount = 0;
    for (;;) {
      const packed = this.carry ?? this.nextRecord();
      if (packed === undefined) break;
      if (packed.byteLength > budget) {
        throw new TidelogError('BAD_REQUEST', `an entity record of ${packed.byteLength} bytes does not fit maxMessageBytes`, {
          details: { recordBytes: packed.byteLength, maxMessageBytes: this.host.maxMessageBytes },
        });
      }
      if (used + packed.byteLength > budget) {
        this.carry = this.carry ?? copyOf(packed);
        break;
      }
      this.carry = undefined;
      entities.write(packed);
      used += packed.byteLength;
      entityCount++;
    }
    this.entitiesSent += entityCount;
    this.compactOutbox();
    const hasMore = this.hasQueued();
    const isEmpty = origins.length === 0 && wants.length === 0 && digests.length === 0 && entityCount === 0;
    const isFinal = isEmpty && !hasMore && !this.isPeerAhead;
    if (isFinal) this.isDone = true;
    this.didSendMore = hasMore;

    const message = new ChunkWriter();
    message.writeArrayHeader(8);
    message.write(statePackr.pack(RECONCILE_VERSION));
    message.write(statePackr.pack(this.state.schema.fingerprint));
    message.write(statePackr.pack(isFinal));
    message.writeArrayHeader(origins.length);
    for (const part of origins) message.write(part.bytes);
    message.write(statePackr.pack(digests));
    message.write(statePackr.pack(wants));
    message.writeArrayHeader(entityCount);
    message.write(entities.finish());
    message.write(statePackr.pack(hasMore));
    return message.finish();
  }

  /** The next queued entity's packed record (a view into msgpackr's buffer), or undefined. */
  private nextRecord(): Uint8Array | undefined {
    while (this.rangeIndex < this.ranges.length) {
      if (this.rangeAt < 0) this.rangeAt = this.ranges[this.rangeIndex];
      if (this.rangeAt >= this.ranges[this.rangeIndex + 1]) {
        this.rangeIndex += 2;
        this.rangeAt = -1;
        continue;
      }
      const record = this.state.entityRecord(this.tree.keys[this.rangeAt++]);
      if (record !== undefined) return statePackr.pack(record);
    }
    return undefined;
  }

  private hasQueued(): boolean {
    return (
      this.originAt < this.originParts.length ||
      this.wantAt < this.wants.length ||
      this.digestAt < this.digests.length ||
      this.rangeIndex < this.ranges.length ||
      this.carry !== undefined
    );
  }

  private compactOutbox(): void {
    if (this.wantAt === this.wants.length) [this.wants, this.wantAt] = [[], 0];
    if (this.digestAt === this.digests.length) [this.digests, this.digestAt] = [[], 0];
    if (this.rangeIndex === this.ranges.length) [this.ranges, this.rangeIndex] = [[], 0];
  }

  private decode(bytes: Uint8Array): DecodedMessage {
    const top = expectArray(unpackOrFail(bytes, 'reconciliation message'), '$', 8);
    if (top[0] !== RECONCILE_VERSION) throw new TidelogError('DECODE_FAILED', `unsupported reconciliation version ${String(top[0])}`);
    if (top[1] !== this.state.schema.fingerprint) {
      throw new TidelogError('SCHEMA_INVALID', 'the peer reconciles under a different signal schema');
    }
    if (typeof top[2] !== 'boolean' || typeof top[7] !== 'boolean') {
      throw new TidelogError('DECODE_FAILED', '$[2], $[7]: isFinal and hasMore are booleans');
    }
    const origins = decodeOriginRows(top[3], '$[3]', this.state.schema);
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
    const entities = expectArray(top[6], '$[6]').map((raw, at) => decodeEntityRecord(raw, this.state.schema, `$[6][${at}]`));
    const isEmpty = origins.length === 0 && digests.length === 0 && wants.length === 0 && entities.length === 0;
    if (top[7] && (top[2] || isEmpty)) throw new TidelogError('DECODE_FAILED', 'hasMore needs a non-final message with content');
    if (top[2] && !isEmpty) throw new TidelogError('DECODE_FAILED', 'a final message carries nothing');
    return { isFinal: top[2], hasMore: top[7], origins, digests, wants, entities };
  }
}

/** A private copy of a packed chunk (msgpackr reuses the buffer behind its results). */
function copyOf(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(bytes);
}
