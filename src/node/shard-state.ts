// The state one shard folds from its log: CRDT signal state (scores, counters, flags) and the
// producer sessions. It is the WAL's state machine, so it is rebuilt on open from the newest
// checkpoint plus the batches after it, and it is fed every durable batch live.
// Invariant: the state is a pure function of the batches applied (their events, notes, seqs,
// timestampNs and leaderEpoch), so every replica that applies the same log — however its
// batches were trimmed or split, and whether from a snapshot or from the start — holds
// identical state and encodes identical snapshot bytes.
//
// How events meet the CRDT (CrdtSignalState.applyPacked):
// - origin: every event of shard n is origin n (SHARD_ORIGIN_BASE + n; see shardOrigin), its
//   seq space is the shard's seq space, so every replica counts each event exactly once;
// - HLC of the event at seq s in a batch sealed at timestampNs T by leader epoch E:
//     (wallNs T, logical s mod 2^32, nodeId E mod 2^32)
//   i.e. applyPacked with firstHlc (T, firstSeq mod 2^32, E), the batch cut in two where the
//   logical counter would pass 2^32 − 1. Each event's stamp depends on that event's own seq and
//   batch only, never on where a batch boundary fell, so a trimmed batch (a read from fromSeq)
//   stamps its events exactly as the whole one did. Stamps follow log order while leaders seal
//   batches with non-decreasing timestampNs (the node should seal with an HLC so a new leader
//   never stamps below the old one); at equal T the seq orders them, and the epoch breaks the
//   tie between two leaders that wrote the same seq in a split.
//   A batch a merge re-appended (availability mode; its merge note) is stamped with the orphan
//   batch's seal time and epoch instead, so LWW orders its events by when they were written on
//   the cut-off side, not by when they were merged (the logical part is the new seq, as always).
// - an event the schema does not know (written before a schema change) or whose weight the
//   CRDT cannot hold is skipped and counted (skippedEvents); its seq is still consumed. apply
//   never throws on content: a WAL hook that throws stops the lane.
//
// Snapshots: the container (state-snapshot.ts) holds the CRDT state and the sessions; the WAL
// writes it to snapshot files as a stream (beginSnapshot) and restores it the same way
// (beginRestore); restore(bytes) also reads the version-1 containers of legacy segment heads.

import { decodeMergeNote, isMergeNote } from './merge-note.ts';
import { systemClock, type Clock } from '../clock.ts';
import { CrdtSignalState, HlcTimestamp, MAX_ABS_WEIGHT, type SignalSchema } from '../crdt/index.ts';
import { invariant, isTidelogError, TidelogError } from '../errors.ts';
import { EVENT_BYTES, checkPackedLength } from '../event.ts';
import type { SignalStateView } from '../transport/messages.ts';
import type { SnapshotSink, SnapshotStream, StoredBatch, WalStateMachine } from '../wal/index.ts';
import { StateSnapshotReader, stateSnapshotStream } from './state-snapshot.ts';
import { SessionStore, type SessionLimits } from './session-store.ts';

export interface ShardStateOptions {
  shard: number;
  schema: SignalSchema;
  sessions?: SessionLimits;
  /** Bound of the CRDT reorder buffer (it stays empty: the WAL applies batches in order). */
  maxPendingEvents?: number;
  /** Default time for query (decay and windows are evaluated at it). */
  clock?: Clock;
}

const TWO_POW_32 = 0x1_0000_0000;
const U32_MAX = 0xffff_ffff;
/** Origins of shard logs; fixed forever, since origins are part of every CRDT snapshot. */
export const SHARD_ORIGIN_BASE = 0;

/** The CRDT origin of shard `shard`'s log. */
export function shardOrigin(shard: number): number {
  return SHARD_ORIGIN_BASE + shard;
}

export class ShardState implements WalStateMachine {
  readonly shard: number;
  readonly origin: number;
  readonly schema: SignalSchema;
  readonly sessions: SessionStore;
  /** Called after each applied batch (live and in recovery); must be cheap and must not throw. */
  onBatch: ((batch: StoredBatch) => void) | undefined = undefined;
  private signals: CrdtSignalState;
  private lastSeq = 0;
  private skipped = 0;
  private badNotes = 0;
  private mergedBatchCount = 0;
  private readonly maxPendingEvents: number | undefined;
  private readonly clock: Clock;
  /** 1 where the schema knows the signal type (indexed by the u8 type). */
  private readonly isKnownType = new Uint8Array(256);
  private readonly hiddenFlag: string | undefined;

  constructor(options: ShardStateOptions) {
    if (!Number.isInteger(options.shard) || options.shard < 0 || options.shard > 0xffff) {
      throw new TidelogError('BAD_REQUEST', `shard must be 0..65535, got ${String(options.shard)}`);
    }
    this.shard = options.shard;
    this.origin = shardOrigin(options.shard);
    this.schema = options.schema;
    this.maxPendingEvents = options.maxPendingEvents;
    this.clock = options.clock ?? systemClock;
    this.signals = new CrdtSignalState(options.schema, { maxPendingEvents: options.maxPendingEvents });
    this.sessions = new SessionStore(options.sessions);
    for (const signal of options.schema.signals) this.isKnownType[signal.id] = 1;
    this.hiddenFlag = options.schema.flags.includes('hidden') ? 'hidden' : undefined;
  }

  /** Highest seq folded into the state. */
  get appliedSeq(): number {
    return this.lastSeq;
  }

  get entityCount(): number {
    return this.signals.entityCount;
  }

  /** Events skipped because the schema lacked their type or the CRDT could not hold their weight. */
  get skippedEvents(): number {
    return this.skipped;
  }

  /** Orphan batches re-appended into this log (merge notes folded) since it opened. */
  get mergedBatches(): number {
    return this.mergedBatchCount;
  }

  /** Notes that failed to decode (only a bug writes one; counted, never fatal). */
  get rejectedNotes(): number {
    return this.badNotes;
  }

  /** The CRDT state (for reconciliation and tests); replaced by restore. */
  get crdt(): CrdtSignalState {
    return this.signals;
  }

  /**
   * Rejects, before anything is appended, what the fold would have to skip: UNKNOWN_SIGNAL_TYPE
   * for a signal type the schema lacks, BAD_REQUEST for a weight that is not finite or beyond
   * ±MAX_ABS_WEIGHT; `details.index` names the first such event.
   */
  checkSignalTypes(packed: Uint8Array): void {
    const count = checkPackedLength(packed);
    const index = this.firstUnfoldable(packed, 0, count);
    if (index === count) return;
    const signalType = packed[index * EVENT_BYTES + 8];
    if (this.isKnownType[signalType] === 0) {
      throw new TidelogError('UNKNOWN_SIGNAL_TYPE', `event ${index}: signal type ${signalType} is not in the schema`, {
        details: { index, signalType },
      });
    }
    throw new TidelogError('BAD_REQUEST', `event ${index}: weight must be finite and |w| ≤ ${MAX_ABS_WEIGHT}`, {
      details: { index },
    });
  }

  apply(batch: StoredBatch): void {
    const { firstSeq, count } = batch;
    invariant(firstSeq <= this.lastSeq + 1, `shard ${this.shard}: batch at seq ${firstSeq} after applied seq ${this.lastSeq}`);
    // A notes-only batch (count 0) sits just before its firstSeq.
    const lastSeq = firstSeq + count - 1;
    const isNew = count > 0 ? lastSeq > this.lastSeq : lastSeq === this.lastSeq;
    if (count > 0 && isNew) {
      this.foldEvents(batch, this.lastSeq + 1 - firstSeq, stampOf(batch));
      this.lastSeq = lastSeq;
    }
    // A batch wholly at or below appliedSeq had its notes folded already. Notes are
    // idempotent anyway, except that one could bring back a session evicted since.
    if (isNew) {
      for (const note of batch.notes) {
        try {
          if (isMergeNote(note)) {
            // Re-appended orphan events (availability mode): the merge's identity session and
            // the moved producer sessions fold as if each had been written alone.
            for (const session of decodeMergeNote(note).sessions) this.sessions.applyDecodedNote(session);
            this.mergedBatchCount++;
          } else this.sessions.applyNote(note);
        } catch (error) {
          if (!isTidelogError(error, 'DECODE_FAILED')) throw error;
          this.badNotes++;
        }
      }
    }
    this.onBatch?.(batch);
  }

  /** The state as one container (version 2); the WAL streams beginSnapshot() instead. */
  snapshot(): Uint8Array {
    const stream = this.beginSnapshot();
    const pieces: Uint8Array[] = [];
    let total = 0;
    for (let piece = stream.next(1 << 24); piece !== null; piece = stream.next(1 << 24)) {
      pieces.push(piece.slice());
      total += piece.byteLength;
    }
    const bytes = new Uint8Array(total);
    let offset = 0;
    for (const piece of pieces) {
      bytes.set(piece, offset);
      offset += piece.byteLength;
    }
    return bytes;
  }

  /** The state as it is now, as a stream of container bytes (state-snapshot.ts). */
  beginSnapshot(): SnapshotStream {
    return stateSnapshotStream({ shard: this.shard, appliedSeq: this.lastSeq, signals: this.signals, sessions: this.sessions.encode() });
  }

  /**
   * Restores from container bytes pushed in pieces; the state changes only when every byte
   * arrived and checked out (finish). DECODE_FAILED for another shard's or seq's container.
   */
  beginRestore(lastSeq: number): SnapshotSink {
    checkLastSeq(lastSeq);
    return new StateSnapshotReader(
      { shard: this.shard, appliedSeq: lastSeq, schema: this.schema, options: { maxPendingEvents: this.maxPendingEvents } },
      (restored) => this.install(restored.signals, restored.sessions, lastSeq),
    );
  }

  /**
   * Replaces the state with a snapshot taken after `lastSeq` (empty bytes: the initial state,
   * with seqs ≤ lastSeq taken as gone). DECODE_FAILED for bytes that are not this shard's
   * state at lastSeq; SCHEMA_INVALID when the CRDT part was built on another signal schema.
   */
  restore(snapshot: Uint8Array, lastSeq: number): void {
    checkLastSeq(lastSeq);
    if (snapshot.byteLength === 0) {
      const signals = new CrdtSignalState(this.schema, { maxPendingEvents: this.maxPendingEvents });
      if (lastSeq > 0) signals.registerOrigin(this.origin, lastSeq + 1);
      this.install(signals, snapshot, lastSeq);
      return;
    }
    const reader = this.beginRestore(lastSeq);
    reader.push(snapshot);
    reader.finish();
  }

  private install(signals: CrdtSignalState, sessions: Uint8Array, lastSeq: number): void {
    if (lastSeq > 0 && signals.appliedSeq(this.origin) !== lastSeq) {
      throw new TidelogError('DECODE_FAILED', `shard ${this.shard} state snapshot: its CRDT part was folded to seq ${signals.appliedSeq(this.origin)}, not ${lastSeq}`, {
        details: { shard: this.shard },
      });
    }
    this.sessions.restore(sessions);
    this.signals = signals;
    this.lastSeq = lastSeq;
  }

  /**
   * The entity's signals as the wire's StateReply carries them, ascending by signal type, as
   * of `atNs` (default: now). `isHidden` is the entity's "hidden" flag (false when the schema
   * has none); a flag signal reports zeros and the time its flag was last set.
   * UNKNOWN_SIGNAL_TYPE for a requested type the schema lacks.
   */
  query(entityId: bigint, signalTypes?: readonly number[], atNs: bigint = this.clock.nowNs()): SignalStateView[] {
    if (signalTypes !== undefined) {
      for (const signalType of signalTypes) {
        if (!Number.isInteger(signalType) || this.schema.byId[signalType] === undefined) {
          throw new TidelogError('UNKNOWN_SIGNAL_TYPE', `signal type ${String(signalType)} is not in the schema`, {
            details: { signalType },
          });
        }
      }
    }
    const wanted = signalTypes === undefined ? undefined : new Set(signalTypes);
    const entity = this.signals.query(entityId, atNs);
    const isHidden = this.hiddenFlag === undefined ? false : entity.flags[this.hiddenFlag];
    const views: SignalStateView[] = [];
    for (const signal of this.schema.signals) {
      if (wanted !== undefined && !wanted.has(signal.id)) continue;
      if (signal.kind === 'score') {
        const score = entity.signals[signal.name];
        views.push({
          signalType: signal.id,
          name: signal.name,
          score: score.score,
          count: score.eventCount,
          total: score.weightSum,
          isHidden,
          lastUpdateNs: score.lastEventNs ?? 0n,
        });
      } else {
        const register = this.signals.flag(entityId, signal.flag);
        views.push({
          signalType: signal.id,
          name: signal.name,
          score: 0,
          count: 0,
          total: 0,
          isHidden,
          lastUpdateNs: register.timestamp?.wallNs ?? 0n,
        });
      }
    }
    return views;
  }

  // ---- folding ----

  /** Folds events from index `from` of the batch, skipping the ones the CRDT cannot hold. */
  private foldEvents(batch: StoredBatch, from: number, stamp: BatchStamp): void {
    const { events, count, firstSeq } = batch;
    let start = from;
    while (start < count) {
      const bad = this.firstUnfoldable(events, start, count);
      if (bad > start) this.foldRange(batch, start, bad, stamp);
      if (bad === count) return;
      // Consume the skipped event's seq, so the events after it fold without a gap.
      this.skipped++;
      this.signals.registerOrigin(this.origin, firstSeq + bad + 1);
      start = bad + 1;
    }
  }

  /** Folds events [from, to) of the batch, stamped as described in the header. */
  private foldRange(batch: StoredBatch, from: number, to: number, stamp: BatchStamp): void {
    const nodeId = stamp.epoch % TWO_POW_32;
    let index = from;
    while (index < to) {
      const seq = batch.firstSeq + index;
      const logical = seq % TWO_POW_32;
      // The logical counter wraps with the seq's low 32 bits: cut the batch there.
      const end = Math.min(to, index + (U32_MAX - logical) + 1);
      const hlc = new HlcTimestamp(stamp.timeNs, logical, nodeId);
      this.signals.applyPacked(batch.events.subarray(index * EVENT_BYTES, end * EVENT_BYTES), this.origin, seq, hlc);
      index = end;
    }
  }

  /** Index of the first event in [from, count) the CRDT would refuse, or count. */
  private firstUnfoldable(bytes: Uint8Array, from: number, count: number): number {
    const known = this.isKnownType;
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let index = from; index < count; index++) {
      const offset = index * EVENT_BYTES;
      if (known[bytes[offset + 8]] === 0) return index;
      // The negated form also catches NaN.
      if (!(Math.abs(view.getFloat32(offset + 9, true)) <= MAX_ABS_WEIGHT)) return index;
    }
    return count;
  }
}

/** The wall and node of a batch's events' HLCs: its own seal time and epoch, or (re-appended by a merge) the orphan batch's. */
interface BatchStamp {
  timeNs: bigint;
  epoch: number;
}

function stampOf(batch: StoredBatch): BatchStamp {
  for (const note of batch.notes) {
    if (!isMergeNote(note)) continue;
    try {
      const merged = decodeMergeNote(note);
      return { timeNs: merged.originTimeNs, epoch: merged.originEpoch };
    } catch (error) {
      if (!isTidelogError(error, 'DECODE_FAILED')) throw error;
    }
  }
  return { timeNs: batch.timestampNs, epoch: batch.leaderEpoch };
}

function checkLastSeq(lastSeq: number): void {
  if (!Number.isSafeInteger(lastSeq) || lastSeq < 0) {
    throw new TidelogError('BAD_REQUEST', `lastSeq must be a non-negative safe integer, got ${String(lastSeq)}`);
  }
}
