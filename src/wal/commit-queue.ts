// The writer's data plane: turns append calls into group-commit batches.
//
//   append calls ──► open group ──seal──► sealed groups (FIFO) ──► in flight ──► durable
//                    (dedup, seqs,         (header + checksum      (every sealed group that
//                     packed copy)          done while waiting)     fits: one write, one fdatasync)
//
// Seqs are assigned at enqueue, in call order, so they are gapless and monotonic across
// concurrent callers; the lane is fail-stop, so a seq handed out is either written or the
// lane dies and nothing after it is ever acknowledged. A caller's promise settles only when
// every group holding a part of its call is durable (duplicates included: a duplicate's
// original sits in the same or an earlier group). Everything is bounded by maxPendingEvents
// (and notes by MAX_PENDING_NOTE_BYTES).
//
// Notes: a call may carry a note callback. It runs synchronously once the call's seqs are
// assigned. A call with a note is never split: all its events and the note go into one group
// (which may pass batchMaxEvents), so they share one checksum and recovery finds all of them
// or none. A call whose events were all
// duplicates still gets its note written, in a group that may then hold no event (a
// notes-only batch, firstSeq = the next seq). A callback that throws or returns an invalid
// note after seqs were handed out breaks the "seq handed out → written or lane dead" rule's
// premise, so the lane fails (onBroken) rather than write the events without their note.

import { deferred } from '../deferred.ts';
import { TidelogError } from '../errors.ts';
import {
  BATCH_HEADER_BYTES,
  BatchKind,
  type BatchHeader,
  MAX_NOTE_BYTES,
  NOTE_LENGTH_BYTES,
  sealBatch,
  writeNotes,
} from './batch-format.ts';
import type { DedupWindow } from './dedup.ts';
import { EVENT_BYTES } from '../event.ts';

/** Called with the call's seqs (0 for duplicates) as appendMany will resolve them. */
export type NoteCallback = (seqs: readonly number[]) => Uint8Array;

/** Bound on the notes section of one batch: a group is sealed before a note could pass it. */
export const MAX_GROUP_NOTES_BYTES = 1 << 20;
/** Bound on note bytes accepted but not yet durable; past it calls with notes get OVERLOADED. */
export const MAX_PENDING_NOTE_BYTES = 64 << 20;
const MAX_NOTE_RECORD_BYTES = NOTE_LENGTH_BYTES + MAX_NOTE_BYTES;
/** Group buffers kept for reuse (≈ 21 KB each at the default batchMaxEvents). */
const MAX_FREE_BUFFERS = 64;

export interface CommitQueueOptions {
  shard: number;
  batchMaxEvents: number;
  maxPendingEvents: number;
  leaderEpoch: number;
  /** The newest seal time in the log so far: no batch is ever sealed below it. */
  newestSealNs: bigint;
  /**
   * External commit only: 'durable' answers appendMany once the call's batch is durable here,
   * before the commit point reaches it (availability mode, docs/REPLICATION.md); default
   * 'commit'. The group still waits for its commit (it counts in maxPendingEvents meanwhile).
   */
  resolveAt?: 'commit' | 'durable';
}

interface Waiter {
  seqs: number[];
  partsLeft: number;
  /** Parts not yet durable (resolveAt 'durable'). */
  undurableParts: number;
  resolve: (seqs: number[]) => void;
  reject: (error: Error) => void;
}

export class CommitGroup {
  buffer: Uint8Array;
  /** Events kept (written); duplicates are not. */
  count = 0;
  /** Events submitted into this group, duplicates included (bounds the group). */
  submitted = 0;
  readonly waiters: Waiter[] = [];
  sealedAtNs = 0n;
  timestampNs = 0n;
  /** The sealed batch (header + payload); null when every event was a duplicate and no note came. */
  sealed: Uint8Array | null = null;
  /** Notes of calls whose last part is here (copies), in call order; null while there are none. */
  notes: Uint8Array[] | null = null;
  /** Whether the group's events bypassed the content dedup window (groups never mix the two). */
  skipsDedup = false;
  /** Bytes the notes section takes (length prefixes included). */
  notesBytes = 0;
  /** The segment file the batch was written to (set once durable). */
  segment = '';
  /** The leader epoch the batch was sealed with. */
  epoch = 0;
  /** A batch sealed elsewhere (appendSealed): its caller is answered once durable, not at commit. */
  durableWaiter: { resolve: () => void; reject: (error: Error) => void } | null = null;

  constructor(
    readonly firstSeq: number,
    buffer: Uint8Array,
  ) {
    this.buffer = buffer;
  }

  get lastSeq(): number {
    return this.firstSeq + this.count - 1;
  }

  /** The packed events of a sealed group (a view; do not keep it past the callback). */
  get events(): Uint8Array {
    return this.buffer.subarray(BATCH_HEADER_BYTES, BATCH_HEADER_BYTES + this.count * EVENT_BYTES);
  }

  addNote(note: Uint8Array): void {
    (this.notes ??= []).push(note);
    this.notesBytes += NOTE_LENGTH_BYTES + note.byteLength;
  }

  /** Writes the notes section after the events (growing the buffer); returns its length. */
  writeNotesSection(): number {
    const eventsEnd = BATCH_HEADER_BYTES + this.count * EVENT_BYTES;
    if (this.notes === null) return 0;
    if (eventsEnd + this.notesBytes > this.buffer.byteLength) {
      const grown = new Uint8Array(eventsEnd + this.notesBytes);
      grown.set(this.buffer.subarray(0, eventsEnd));
      this.buffer = grown;
    }
    return writeNotes(this.buffer, eventsEnd, this.notes);
  }

  ensureRoom(extraEvents: number): void {
    const needed = BATCH_HEADER_BYTES + (this.count + extraEvents) * EVENT_BYTES;
    if (needed <= this.buffer.byteLength) return;
    const grown = new Uint8Array(Math.max(needed, this.buffer.byteLength * 2));
    grown.set(this.buffer.subarray(0, BATCH_HEADER_BYTES + this.count * EVENT_BYTES));
    this.buffer = grown;
  }
}

export class CommitQueue {
  private openGroup: CommitGroup | null = null;
  private readonly sealedGroups: CommitGroup[] = [];
  private inFlight: CommitGroup[] = [];
  /** Durable groups whose callers wait for the commit point (external commit only), in seq order. */
  private readonly durableGroups: CommitGroup[] = [];
  private pendingEvents = 0;
  private pendingNoteBytes = 0;
  /** Set while a note callback runs: it must not append (its group is being completed). */
  private isInNoteCallback = false;
  /** Scratch for dedup results, reused across calls. */
  private isDuplicate = new Uint8Array(1024);
  /** Seal times never go back, whatever the wall clock does (segment-head.ts relies on it). */
  private lastSealNs: bigint;
  /**
   * Group buffers of the standard size (a full group) whose batch is durable, for reuse:
   * thousands of groups a second would otherwise each allocate one (GC pressure). Bounded.
   */
  private readonly freeBuffers: Uint8Array[] = [];
  private readonly standardBufferBytes: number;
  private failure: Error | null = null;
  isClosing = false;
  /** While set (a truncation runs), appends are refused with it. */
  refusal: Error | null = null;
  /** Called when work appears that an idle or lingering writer must know about. */
  onWork: (sealed: boolean) => void = () => undefined;
  /** Called when a note callback broke the queue's invariants; the owner must fail the lane. */
  onBroken: (error: Error) => void = (error) => this.fail(error);

  constructor(
    private readonly options: CommitQueueOptions,
    private readonly dedup: DedupWindow,
    private nextSeq: number,
    private readonly clock: { nowMs(): number; nowNs(): bigint },
  ) {
    this.lastSealNs = options.newestSealNs;
    this.standardBufferBytes = BATCH_HEADER_BYTES + options.batchMaxEvents * EVENT_BYTES;
  }

  /** A buffer for a new group whose first part has `events` events: pooled when standard. */
  private takeBuffer(events: number): Uint8Array {
    const needed = BATCH_HEADER_BYTES + events * EVENT_BYTES;
    if (needed <= this.standardBufferBytes) return this.freeBuffers.pop() ?? new Uint8Array(this.standardBufferBytes);
    return new Uint8Array(needed);
  }

  /** A durable group's buffer goes back to the pool (its views are not used after complete). */
  private releaseBuffer(group: CommitGroup): void {
    if (group.buffer.byteLength === this.standardBufferBytes && this.freeBuffers.length < MAX_FREE_BUFFERS) this.freeBuffers.push(group.buffer);
  }

  /** The time a batch or segment head sealed now gets: the clock, but never below an earlier seal. */
  sealTimeNs(): bigint {
    const nowNs = this.clock.nowNs();
    if (nowNs > this.lastSealNs) this.lastSealNs = nowNs;
    return this.lastSealNs;
  }

  /** The seq the next kept event will get. */
  get nextSequence(): number {
    return this.nextSeq;
  }

  get pending(): number {
    return this.pendingEvents;
  }

  get hasSealedGroup(): boolean {
    return this.sealedGroups.length > 0;
  }

  get hasOpenGroup(): boolean {
    return this.openGroup !== null;
  }

  get hasWork(): boolean {
    return this.sealedGroups.length > 0 || this.openGroup !== null;
  }

  get dedupSize(): number {
    return this.dedup.size;
  }

  get failed(): Error | null {
    return this.failure;
  }

  /**
   * Queues `count` packed events; resolves with their seqs (0 for duplicates) once durable.
   * With `note`, the whole call and the note's bytes become durable in one batch.
   * `count` must be ≥ 1 when a note is given (the caller checks). With `skipsDedup` the
   * events bypass the content window (neither checked nor remembered): sessions make their
   * retries exactly-once, and two real signals may share all 21 bytes.
   */
  enqueue(packed: Uint8Array, count: number, note?: NoteCallback, skipsDedup = false): Promise<number[]> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.isClosing) return Promise.reject(new TidelogError('CLOSED', 'the WAL is closing'));
    if (this.refusal !== null) return Promise.reject(this.refusal);
    if (this.isInNoteCallback) throw new Error('invariant violated: a note callback appended to the WAL');
    if (count === 0) return Promise.resolve([]);
    if (this.pendingEvents + count > this.options.maxPendingEvents) {
      return Promise.reject(
        new TidelogError('OVERLOADED', `shard ${this.options.shard}: ${this.pendingEvents} events pending, limit ${this.options.maxPendingEvents}`, {
          details: { shard: this.options.shard, pending: this.pendingEvents, limit: this.options.maxPendingEvents },
        }),
      );
    }
    if (note !== undefined && this.pendingNoteBytes + MAX_NOTE_RECORD_BYTES > MAX_PENDING_NOTE_BYTES) {
      return Promise.reject(
        new TidelogError('OVERLOADED', `shard ${this.options.shard}: ${this.pendingNoteBytes} note bytes pending, limit ${MAX_PENDING_NOTE_BYTES}`, {
          details: { shard: this.options.shard, pendingNoteBytes: this.pendingNoteBytes, limit: MAX_PENDING_NOTE_BYTES },
        }),
      );
    }
    const { promise, resolve, reject } = deferred<number[]>();
    const waiter: Waiter = { seqs: new Array<number>(count), partsLeft: 0, undurableParts: 0, resolve, reject };
    this.pendingEvents += count;
    const nowMs = this.clock.nowMs();
    this.dedup.tick(nowMs);
    const max = this.options.batchMaxEvents;
    // A call with a note is atomic: all of its events and its note go in one batch (which may
    // then pass batchMaxEvents), so recovery finds them all with the note or none of them.
    // Split across batches, a crash could keep the first parts without the note, and a retry
    // of the call would write them again.
    const partMax = note === undefined ? max : Math.max(max, count);
    // With a note the (only) part's group stays open until the note is in it.
    const lastPartStart = note === undefined ? count : 0;
    let sealedAny = false;
    const wasIdle = this.openGroup === null && this.sealedGroups.length === 0;
    for (let start = 0; start < count; start += partMax) {
      const partCount = Math.min(partMax, count - start);
      if (
        this.openGroup !== null &&
        (this.openGroup.submitted + partCount > max ||
          this.openGroup.skipsDedup !== skipsDedup ||
          (start === lastPartStart && this.openGroup.notesBytes + MAX_NOTE_RECORD_BYTES > MAX_GROUP_NOTES_BYTES))
      ) {
        this.seal();
        sealedAny = true;
      }
      if (this.openGroup === null) {
        this.openGroup = new CommitGroup(this.nextSeq, this.takeBuffer(partCount));
        this.openGroup.skipsDedup = skipsDedup;
      }
      const group = this.openGroup;
      this.fill(group, packed, start, partCount, waiter.seqs, nowMs);
      group.submitted += partCount;
      group.waiters.push(waiter);
      waiter.partsLeft++;
      waiter.undurableParts++;
      if (group.submitted >= max && start !== lastPartStart) {
        this.seal();
        sealedAny = true;
      }
    }
    if (note !== undefined) {
      this.attachNote(note, waiter, promise);
      if (this.openGroup !== null && this.openGroup.submitted >= max) {
        this.seal();
        sealedAny = true;
      }
    }
    if (wasIdle || sealedAny) this.onWork(sealedAny);
    return promise;
  }

  /** Runs the call's note callback and puts its bytes in the open group (the last part's). */
  /**
   * Queues a batch sealed elsewhere (a follower appends its leader's batches verbatim): a copy
   * of `sealed` is written as it is, after anything queued before it. The caller checked it
   * (header, checksum, shard, epoch) and that it starts at `nextSequence`. Resolves once the
   * batch is durable here; its commit comes later, like any batch's.
   */
  enqueueSealed(sealed: Uint8Array, header: BatchHeader, notes: Uint8Array[]): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.isClosing) return Promise.reject(new TidelogError('CLOSED', 'the WAL is closing'));
    if (this.refusal !== null) return Promise.reject(this.refusal);
    if (header.firstSeq !== this.nextSeq) throw new Error(`invariant violated: a sealed batch at ${header.firstSeq}, next seq ${this.nextSeq}`);
    if (this.pendingEvents + header.count > this.options.maxPendingEvents || this.pendingNoteBytes + header.notesBytes > MAX_PENDING_NOTE_BYTES) {
      return Promise.reject(
        new TidelogError('OVERLOADED', `shard ${this.options.shard}: ${this.pendingEvents} events pending, limit ${this.options.maxPendingEvents}`, {
          details: { shard: this.options.shard, pending: this.pendingEvents, limit: this.options.maxPendingEvents },
        }),
      );
    }
    this.seal();
    // `sealed` is the WAL's own copy (Wal.appendSealed made it); its notes are views of it.
    const group = new CommitGroup(header.firstSeq, sealed);
    group.sealed = group.buffer;
    group.count = header.count;
    group.submitted = header.count;
    group.timestampNs = header.timestampNs;
    group.sealedAtNs = this.clock.nowNs();
    group.epoch = header.leaderEpoch;
    group.skipsDedup = header.skipsDedup;
    group.notes = notes.length > 0 ? notes : null;
    group.notesBytes = header.notesBytes;
    const { promise, resolve, reject } = deferred<void>();
    group.durableWaiter = { resolve: () => resolve(), reject };
    this.nextSeq += header.count;
    this.pendingEvents += header.count;
    this.pendingNoteBytes += header.notesBytes;
    if (header.timestampNs > this.lastSealNs) this.lastSealNs = header.timestampNs;
    this.sealedGroups.push(group);
    this.onWork(true);
    return promise;
  }

  private attachNote(note: NoteCallback, waiter: Waiter, promise: Promise<number[]>): void {
    const group = this.openGroup;
    if (group === null) throw new Error('invariant violated: no open group for a note');
    let bytes: unknown;
    this.isInNoteCallback = true;
    try {
      bytes = note(waiter.seqs);
    } catch (cause) {
      this.breakOnNote(new TidelogError('HOOK_FAILED', `shard ${this.options.shard}: a note callback threw`, { cause }), promise);
    } finally {
      this.isInNoteCallback = false;
    }
    if (this.openGroup !== group) {
      // The callback made the writer seal the group (say, by closing the WAL): too late for the note.
      this.breakOnNote(new Error('invariant violated: a note callback sealed its own group'), promise);
    }
    if (!(bytes instanceof Uint8Array) || bytes.byteLength < 1 || bytes.byteLength > MAX_NOTE_BYTES) {
      const what = bytes instanceof Uint8Array ? `${bytes.byteLength} bytes` : typeof bytes;
      this.breakOnNote(new Error(`invariant violated: a note callback returned ${what}, not 1..${MAX_NOTE_BYTES} bytes`), promise);
    }
    // A copy: the caller may reuse its buffer before the group is sealed.
    const copy = new Uint8Array(bytes);
    group.addNote(copy);
    this.pendingNoteBytes += NOTE_LENGTH_BYTES + copy.byteLength;
  }

  /** The call's events hold seqs but cannot get their note: fail the lane, then throw. */
  private breakOnNote(error: Error, promise: Promise<number[]>): never {
    // The caller gets the throw; its promise (never returned) must not surface as unhandled.
    promise.catch(() => undefined);
    this.onBroken(error);
    throw error;
  }

  /** Dedup, seq assignment and one copy per run of kept events (usually the whole call). */
  private fill(group: CommitGroup, packed: Uint8Array, start: number, partCount: number, seqs: number[], nowMs: number): void {
    group.ensureRoom(partCount);
    if (this.isDuplicate.length < partCount) this.isDuplicate = new Uint8Array(partCount);
    const isDuplicate = this.isDuplicate;
    const duplicates = group.skipsDedup ? 0 : this.dedup.markDuplicates(packed, start, partCount, nowMs, isDuplicate);
    const buffer = group.buffer;
    let writeAt = BATCH_HEADER_BYTES + group.count * EVENT_BYTES;
    if (duplicates === 0) {
      buffer.set(packed.subarray(start * EVENT_BYTES, (start + partCount) * EVENT_BYTES), writeAt);
      for (let index = 0; index < partCount; index++) seqs[start + index] = this.nextSeq++;
      group.count += partCount;
      return;
    }
    let runStart = -1;
    for (let index = 0; index <= partCount; index++) {
      const isKept = index < partCount && isDuplicate[index] === 0;
      if (isKept) {
        if (runStart < 0) runStart = index;
        seqs[start + index] = this.nextSeq++;
        group.count++;
        continue;
      }
      if (index < partCount) seqs[start + index] = 0;
      if (runStart >= 0) {
        const run = packed.subarray((start + runStart) * EVENT_BYTES, (start + index) * EVENT_BYTES);
        buffer.set(run, writeAt);
        writeAt += run.byteLength;
        runStart = -1;
      }
    }
  }

  /** Closes the open group: header and checksum now, while an earlier flush may be running. */
  private seal(): void {
    const group = this.openGroup;
    if (group === null) return;
    this.openGroup = null;
    group.sealedAtNs = this.clock.nowNs();
    group.timestampNs = this.sealTimeNs();
    if (group.count > 0 || group.notes !== null) {
      // A group of only duplicates with a note still becomes a batch: count 0, firstSeq = the
      // next seq (no seq was handed out since the group opened).
      const notesBytes = group.notes === null ? 0 : group.writeNotesSection();
      group.sealed = sealBatch(group.buffer, {
        kind: BatchKind.Events,
        shardId: this.options.shard,
        count: group.count,
        leaderEpoch: (group.epoch = this.options.leaderEpoch),
        firstSeq: group.firstSeq,
        payloadBytes: group.count * EVENT_BYTES + notesBytes,
        notesBytes,
        timestampNs: group.timestampNs,
        skipsDedup: group.skipsDedup,
      });
    }
    this.sealedGroups.push(group);
  }

  /** Seals the open group so everything queued can go in the next flush. */
  sealOpenGroup(): void {
    this.seal();
  }

  /** Sealed groups waiting for the flush worker, oldest first. */
  get sealed(): readonly CommitGroup[] {
    return this.sealedGroups;
  }

  /** Hands the oldest `count` sealed groups to the flush worker (one flush, one fdatasync). */
  take(count: number): CommitGroup[] {
    if (this.inFlight.length > 0) throw new Error('invariant violated: a flush is already in flight');
    if (count < 1 || count > this.sealedGroups.length) throw new Error(`invariant violated: take(${count})`);
    this.inFlight = this.sealedGroups.splice(0, count);
    return this.inFlight;
  }

  /**
   * The in-flight groups are durable. `isCommitted` (standalone: durable is committed): resolve
   * every caller whose last part they held now; otherwise they wait in `awaitingCommit` until
   * `settleCommitted` (replication: the HWM passed them).
   */
  complete(groups: readonly CommitGroup[], isCommitted = true): void {
    if (groups !== this.inFlight) throw new Error('invariant violated: completed groups that are not in flight');
    this.inFlight = [];
    for (const group of groups) group.durableWaiter?.resolve();
    if (isCommitted) this.settle(groups);
    else {
      this.durableGroups.push(...groups);
      if (this.options.resolveAt === 'durable') this.answerDurable(groups);
    }
  }

  /** Groups sealed from now on carry `epoch` (the WAL recorded it first). */
  setLeaderEpoch(epoch: number): void {
    this.options.leaderEpoch = epoch;
  }

  /** The groups of the flush in flight (empty when none). */
  get inFlightGroups(): CommitGroup[] {
    return this.inFlight;
  }

  /** Durable groups waiting for the commit point, oldest first. */
  get awaitingCommit(): readonly CommitGroup[] {
    return this.durableGroups;
  }

  /** The oldest `count` durable groups are committed: resolve their callers. */
  settleCommitted(count: number): void {
    if (count < 0 || count > this.durableGroups.length) throw new Error(`invariant violated: settleCommitted(${count})`);
    this.settle(this.durableGroups.splice(0, count));
  }

  /** resolveAt 'durable': callers whose every part is durable are answered now (a later settle or cut is then a no-op for them). */
  private answerDurable(groups: readonly CommitGroup[]): void {
    for (const group of groups) {
      for (const waiter of group.waiters) {
        waiter.undurableParts--;
        if (waiter.undurableParts === 0) waiter.resolve(waiter.seqs);
      }
    }
  }

  private settle(groups: readonly CommitGroup[]): void {
    for (const group of groups) {
      this.pendingEvents -= group.submitted;
      this.pendingNoteBytes -= group.notesBytes;
      for (const waiter of group.waiters) {
        waiter.partsLeft--;
        if (waiter.partsLeft === 0) waiter.resolve(waiter.seqs);
      }
      this.releaseBuffer(group);
    }
  }

  /**
   * truncateAfter, first step: the groups not yet written (sealed or open) leave the queue and
   * their callers are rejected with `error`; they never reach the log. The flush in flight
   * is left alone.
   */
  dropUnwritten(error: Error): void {
    const dropped = [...this.sealedGroups.splice(0), ...(this.openGroup === null ? [] : [this.openGroup])];
    this.openGroup = null;
    this.rejectGroups(dropped, error);
  }

  /**
   * truncateAfter, once the cut is on disk: the durable groups that end past `seq` leave the
   * queue, their callers are rejected with `error`, and the next seq handed out is seq + 1.
   * A call with parts on both sides of the cut is rejected although its first part stays (a
   * call with a note, as every session append, is never split, so this is session-less only).
   */
  cutDurableAfter(seq: number, error: Error, nowMs: number): void {
    if (this.inFlight.length > 0 || this.sealedGroups.length > 0 || this.openGroup !== null) {
      throw new Error('invariant violated: a cut with groups still queued or in flight');
    }
    let keep = 0;
    while (keep < this.durableGroups.length && this.durableGroups[keep].lastSeq <= seq) keep++;
    this.rejectGroups(this.durableGroups.splice(keep), error);
    this.nextSeq = seq + 1;
    // Events the window remembers may have been cut: a resend of one must be written again.
    // (Committed ones are forgotten too: a session-less retry of one is then written twice.)
    this.dedup.forgetAll(nowMs);
  }

  private rejectGroups(groups: readonly CommitGroup[], error: Error): void {
    const rejected = new Set<Waiter>();
    for (const group of groups) {
      this.pendingEvents -= group.submitted;
      this.pendingNoteBytes -= group.notesBytes;
      group.durableWaiter?.reject(error);
      for (const waiter of group.waiters) {
        if (rejected.has(waiter)) continue;
        rejected.add(waiter);
        waiter.reject(error);
      }
    }
  }

  /** The lane failed: reject everything pending and everything that comes later. */
  fail(error: Error): void {
    this.failure ??= error;
    const groups = [...this.durableGroups, ...this.inFlight, ...this.sealedGroups, this.openGroup].filter((g): g is CommitGroup => g !== null);
    this.durableGroups.length = 0;
    this.inFlight = [];
    this.sealedGroups.length = 0;
    this.openGroup = null;
    const rejected = new Set<Waiter>();
    for (const group of groups) {
      group.durableWaiter?.reject(this.failure);
      for (const waiter of group.waiters) {
        if (!rejected.has(waiter)) {
          rejected.add(waiter);
          waiter.reject(this.failure);
        }
      }
    }
    this.pendingEvents = 0;
    this.pendingNoteBytes = 0;
  }

  /** No new appends; what is queued still flushes. */
  beginClose(): void {
    this.isClosing = true;
  }
}
