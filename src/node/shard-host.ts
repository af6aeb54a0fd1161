// One shard served by this node: its WAL (writer + flush-worker actors inside), the state
// folded from it (CRDT signal state + producer sessions), the newest batches in memory, and
// the live feed. Invariant: everything that leaves this file — an ack, a feed message, a
// read page, a state answer — describes events that are committed (standalone: durable here;
// with replication: durable on a quorum, docs/REPLICATION.md).
//
//   append(packed, session?) ─► sessions.begin ─► wal.appendMany(packed, { note })
//                                                       │ group durable
//                                ShardState.apply ◄─────┘ (CRDT fold, session note → hwm)
//                                      └─► onBatch ─► recent batches + feed publish
//   ack ◄── appendMany resolves (after apply) ◄──┘

import { join } from 'node:path';
import { TidelogError, isTidelogError } from '../errors.ts';
import { EVENT_BYTES } from '../event.ts';
import type { SignalSchema } from '../crdt/index.ts';
import { MAX_NOTE_BYTES, Wal, clearRepair, isRepairMarked, listOrphans, markRepair, nodeFileIo, readOrphans, removeOrphanLeftovers, removeOrphans, saveOrphans, type EpochStart, type FileIo, type PersistedInfo, type StoredBatch, type WalOptions, type WalRecovery, type WalStats } from '../wal/index.ts';
import { readBatchHeader } from '../wal/batch-format.ts';
import { SnapshotReceiver, type SnapshotPart } from '../wal/snapshot-install.ts';
import { seqsToRuns } from '../transport/codec.ts';
import { FEED_INTEREST_MS, MAX_READ_REPLY_BYTES, type FeedMessage, type ReadBatch, type SessionTag, type ShardStatus, type SignalStateView } from '../transport/messages.ts';
import { MERGE_PRODUCER_PREFIX } from './merge-note.ts';
import { mergeOrphanBatches, type MergeResult } from './orphan-merge.ts';
import { RecentBatches, trimBatch } from './recent-batches.ts';
import { RUN_BYTES, checkSessionNumbers, encodeSessionNote, eventsDigest, producerIdBytes, sessionNoteBytes } from './session-note.ts';
import type { SessionLimits } from './session-store.ts';
import { ShardState } from './shard-state.ts';

export type WalSettings = Pick<
  WalOptions,
  | 'segmentBytes'
  | 'batchMaxEvents'
  | 'batchLingerMs'
  | 'dedupWindowMs'
  | 'dedupMaxEvents'
  | 'fsync'
  | 'syncIntervalMs'
  | 'maxPendingEvents'
  | 'snapshotLogRatio'
  | 'snapshotMinLogBytes'
  | 'snapshotMaxBytesPerSecond'
  | 'retention'
>;

/**
 * Damage in the segments that a replica repairs from its peers (not a torn tail: that is cut as
 * always). A damaged replica or checkpoint file is not here: the replica file holds the epoch
 * this replica promised, which salvage cannot restore, so such a shard stays stopped.
 */
const REPAIRABLE_DAMAGE = new Set<string>(['CHECKSUM_MISMATCH', 'CORRUPT_SEGMENT', 'SEGMENT_GAP']);

export interface ShardHostOptions {
  shard: number;
  dataDir: string;
  wal: WalSettings;
  /**
   * Leader epoch stamped on every batch (0: standalone, no lease). Undefined: the highest one
   * this replica recorded (a replicated shard reopening).
   */
  epoch?: number;
  schema: SignalSchema;
  sessions: SessionLimits;
  /** Bytes of newest batches kept in memory for readers near the head. */
  recentBytes: number;
  publishFeed: (message: FeedMessage) => void;
  onRecoveryProgress?: (done: number, total: number) => void;
  /** Open on the durable prefix of a damaged log instead of failing (tidelog serve --salvage). */
  salvage?: boolean;
  /**
   * A replica (commit 'external'): damage before the log's tail is repaired from the peers
   * instead of stopping the shard — a repair marker is made durable, the log is opened on its
   * intact prefix (salvage), and the replica does not vote until its leader has brought it
   * back (docs/REPLICATION.md, "Repair from peers").
   */
  repairFromPeers?: boolean;
  /**
   * With repairFromPeers: start a repair before opening, for a reason found outside the log —
   * a replica with no replica file while its shard has epochs claimed (a replaced or wiped disk).
   */
  startRepair?: { code: string; message: string };
  /** The file system (tests inject EIO/ENOSPC here); default the real one. */
  io?: FileIo;
  /**
   * Replication (docs/REPLICATION.md): 'external' keeps durable and committed apart — the owner
   * moves the commit point (commitTo), and acks, the state, reads and the feed follow it.
   * Default 'durable' (one node: committed once durable here).
   */
  commit?: 'durable' | 'external';
  /** Each batch once durable here, with its sealed bytes (what a shipper sends). */
  onDurable?: (info: PersistedInfo) => void;
  /** Each batch as it is committed and folded (views valid during the call only). */
  onCommitted?: (batch: StoredBatch) => void;
  /** A leader's snapshot replaced this replica's log (it was behind the leader's retention). */
  onSnapshotInstalled?: (installed: { seq: number; fileBytes: number; reopenMs: number }) => void;
  /** A repair from the peers ended (the replica votes again). */
  onRepaired?: () => void;
  /**
   * Availability mode (acks 'leader', docs/REPLICATION.md): appends are answered once durable
   * here, before the commit point reaches them, and durable batches a cut would remove are kept
   * as orphan files first (the node merges them into the leader's log). Needs commit 'external'.
   */
  availability?: boolean;
  /** Availability mode: a cut kept its batches as an orphan file (logs). */
  onOrphansKept?: (kept: { file: string; batches: number; firstSeq: number; lastSeq: number; cutAfter: number }) => void;
}

export interface AppendOutcome {
  runs: number[];
  outcome: 'new' | 'replayed' | 'applied';
  /** Events written now (0 for replays and duplicates). */
  written: number;
}

/** Longest read page, whatever the request asks for: bounds one reply's size. */
export const MAX_READ_EVENTS = 32_768;
/** What one batch costs in a read reply besides its events (msgpack keys, seqs, epoch). */
const READ_BATCH_OVERHEAD_BYTES = 48;

export class ShardHost {
  private readonly recent: RecentBatches;
  private hwmSeq: number;
  /** The feed is published until then (performance.now() ms): a tail announced itself. */
  private feedWantedUntilMs = 0;

  /** Replication: the snapshot a leader is sending (this replica is behind its retention). */
  private receiver: SnapshotReceiver | null = null;
  /** A snapshot install that failed after the old log was closed: the shard is down. */
  private installFailure: Error | null = null;
  private isRepairingNow = false;
  private isClosing = false;
  /** Snapshots installed here since the host opened (this replica was behind its leader's retention). */
  snapshotsInstalled = 0;

  private constructor(
    readonly shard: number,
    private wal: Wal,
    private shardState: ShardState,
    private readonly options: ShardHostOptions,
    private opened: WalRecovery,
  ) {
    this.recent = new RecentBatches(options.recentBytes);
    this.hwmSeq = wal.committedSeq;
    shardState.onBatch = (batch) => this.batchCommitted(batch);
  }

  static async open(options: ShardHostOptions): Promise<ShardHost> {
    const io = options.io ?? nodeFileIo;
    const walDir = join(options.dataDir, 'wal');
    let opened: { wal: Wal; state: ShardState; recovery: WalRecovery };
    if (options.repairFromPeers === true && options.startRepair !== undefined) await markRepair(io, walDir, options.shard, options.startRepair);
    try {
      opened = await ShardHost.openWal(options, options.epoch);
    } catch (error) {
      if (options.repairFromPeers !== true || !isTidelogError(error) || !REPAIRABLE_DAMAGE.has(error.code)) throw error;
      // Durable before the cut: a crash from here on still opens as a repair.
      await markRepair(io, walDir, options.shard, { code: error.code, message: error.message });
      opened = await ShardHost.openWal({ ...options, salvage: true }, options.epoch);
    }
    const host = new ShardHost(options.shard, opened.wal, opened.state, options, opened.recovery);
    if (options.commit === 'external') await removeOrphanLeftovers(io, walDir, options.shard);
    host.isRepairingNow = options.repairFromPeers === true && (await isRepairMarked(io, walDir, options.shard));
    return host;
  }

  /**
   * This replica lost part of its log to damage and has not yet been brought back past its
   * leader's commit point: it must not vote (ReplicaServer.prepare refuses) nor campaign.
   */
  get isRepairing(): boolean {
    return this.isRepairingNow;
  }

  /** The leader brought this log back (FollowerReplica decides when): it votes again. */
  async finishRepair(): Promise<void> {
    if (!this.isRepairingNow) return;
    await clearRepair(this.options.io ?? nodeFileIo, join(this.options.dataDir, 'wal'), this.shard);
    this.isRepairingNow = false;
    this.options.onRepaired?.();
  }

  private static async openWal(options: ShardHostOptions, epoch: number | undefined): Promise<{ wal: Wal; state: ShardState; recovery: WalRecovery }> {
    const state = new ShardState({ shard: options.shard, schema: options.schema, sessions: options.sessions });
    const { wal, recovery } = await Wal.open({
      ...options.wal,
      dir: join(options.dataDir, 'wal'),
      shard: options.shard,
      ...(epoch === undefined ? {} : { leaderEpoch: epoch }),
      commit: options.commit ?? 'durable',
      ...(options.availability === true ? { resolveAt: 'durable' as const } : {}),
      ...(options.onDurable === undefined ? {} : { onDurable: options.onDurable }),
      stateMachine: state,
      salvage: options.salvage ?? false,
      onRecoveryProgress: options.onRecoveryProgress,
      ...(options.io === undefined ? {} : { io: options.io }),
    });
    return { wal, state, recovery };
  }

  /** The state folded from the committed log (replaced when a snapshot is installed). */
  get state(): ShardState {
    return this.shardState;
  }

  /** What the open found: where the state came from, what was cut or set aside. */
  get recovery(): WalRecovery {
    return this.opened;
  }

  /** The highest seq readers may see: durable on this node (replication: on a quorum). */
  get hwm(): number {
    return this.hwmSeq;
  }

  get failure(): Error | null {
    return this.installFailure ?? this.wal.failed;
  }

  /** Appends packed events (already validated); resolves once they are durable. */
  async append(packed: Uint8Array, session?: SessionTag): Promise<AppendOutcome> {
    const count = packed.byteLength / EVENT_BYTES;
    this.state.checkSignalTypes(packed);
    if (session !== undefined && typeof session.producerId === 'string' && session.producerId.startsWith(MERGE_PRODUCER_PREFIX)) {
      throw new TidelogError('BAD_REQUEST', `producer ids starting with ${MERGE_PRODUCER_PREFIX} are reserved for merges`);
    }
    if (session !== undefined && count === 0) {
      // A no-op (docs/PROTOCOL.md): the tag is checked, nothing is noted, the number is not used up.
      producerIdBytes(session.producerId);
      checkSessionNumbers(session);
      return { runs: [], outcome: 'new', written: 0 };
    }
    if (session === undefined) {
      // Without a session, the content dedup window is what makes a retry harmless.
      const seqs = await this.wal.appendMany(packed);
      return { runs: seqsToRuns(seqs), outcome: 'new', written: countWritten(seqs) };
    }
    // The session note lists the request's seq runs; in the worst case (written and duplicate
    // events alternating) one run per event. A note the WAL cannot hold would fail the lane,
    // so such a request is refused before it takes anything.
    const worstNoteBytes = sessionNoteBytes(producerIdBytes(session.producerId).byteLength, count);
    if (worstNoteBytes > MAX_NOTE_BYTES) {
      throw new TidelogError('REQUEST_TOO_LARGE', `a session request may hold at most ${maxSessionRequestEvents(session.producerId)} events`, {
        details: { events: count, maxEvents: maxSessionRequestEvents(session.producerId) },
      });
    }
    // In order, in every mode: a request is appended only after the ones before it (the
    // session window's floor relies on it: a retry at or below it is answered 'applied'). In
    // availability mode a producer that switched sides meets SEQUENCE_GAP for requests still
    // on the other side and restarts its session; the merge then finds those requests fenced
    // and looks for them in the log (orphan-merge.ts).
    // What a retry must carry again: the same events (a reused number with others is refused).
    const digest = eventsDigest(packed);
    const decision = this.beginSession(session, count, digest);
    switch (decision.kind) {
      case 'replay':
        return { runs: decision.runs, outcome: 'replayed', written: 0 };
      case 'applied':
        return { runs: [0, count], outcome: 'applied', written: 0 };
      case 'pending':
        return { runs: await decision.promise, outcome: 'replayed', written: 0 };
      case 'append': {
        let seqs: number[];
        try {
          // A session makes its retries exactly-once; content dedup would drop real signals
          // that share their 21 bytes (views stamped in the same millisecond), so it is off.
          seqs = await this.wal.appendMany(packed, { note: (assigned) => encodeSessionNote(session, seqsToRuns(assigned), digest), dedup: false });
        } catch (error) {
          this.state.sessions.abandon(session, error as Error);
          throw error;
        }
        const runs = seqsToRuns(seqs);
        // Availability mode: answered at durable; the note commits later (or is cut).
        if (this.options.availability === true) this.state.sessions.markDurable(session, runs);
        return { runs, outcome: 'new', written: countWritten(seqs) };
      }
    }
  }

  /**
   * sessions.begin; in availability mode a SEQUENCE_GAP says `maybeAppliedElsewhere`: the
   * requests before it may be on the other side of a split (acknowledged there, merged on
   * heal), so the gap is no proof that this request was never applied — a try of it may have
   * reached the other side's leader. The producer restarts its session on such a gap and
   * answers a request whose earlier try is in doubt "maybe applied" instead of sending it again
   * under a new number (its first copy may yet be merged).
   */
  private beginSession(session: SessionTag, count: number, digest: number): ReturnType<ShardState['sessions']['begin']> {
    try {
      return this.state.sessions.begin(session, count, { digest });
    } catch (error) {
      if (this.options.availability !== true || !isTidelogError(error, 'SEQUENCE_GAP')) throw error;
      throw new TidelogError('SEQUENCE_GAP', error.message, { details: { ...error.context, maybeAppliedElsewhere: true } });
    }
  }

  /** What this replica does for the shard now: standalone always leads; a replica leads after lead(). */
  get role(): 'leader' | 'follower' {
    return this.wal.leading ? 'leader' : 'follower';
  }

  /** The highest epoch this replica has recorded (batches it seals carry it). */
  get epoch(): number {
    return this.wal.epoch;
  }

  // ── replication (commit: 'external'; docs/REPLICATION.md) ───────────────────────────────

  /** Highest seq committed (and folded) here. */
  get committedSeq(): number {
    return this.wal.committedSeq;
  }

  /** Highest seq durable here (committed or not). */
  get durableSeq(): number {
    return this.wal.durableSeq;
  }

  /** The commit point moved to `hwm`: acks, the CRDT fold, reads and the feed follow it. */
  commitTo(hwm: number): Promise<void> {
    return this.wal.commitTo(hwm);
  }

  /**
   * Cuts the uncommitted suffix after `seq` (a deposed leader's); see Wal.truncateAfter. In
   * availability mode what is cut may have been acknowledged: it is kept as an orphan file
   * first (durably; no file, no cut).
   */
  truncateAfter(seq: number): Promise<number> {
    if (this.options.availability !== true) return this.wal.truncateAfter(seq);
    return this.wal.truncateAfter(seq, { beforeCut: (batches) => this.keepOrphans(batches, seq) }).then((removed) => {
      // Requests answered at durable whose notes were just cut stay in flight otherwise, and a
      // retry or a merge would wait on them (or take them for landed): they end here. Only a
      // replica that no longer leads cuts, so nothing live is in flight.
      if (removed > 0) {
        // Their batches were durable here and are kept as orphans: merged on heal, so maybe applied.
        this.state.sessions.failInFlight(new TidelogError('TRUNCATED', `shard ${this.shard}: the log was cut after seq ${seq}; the request may yet be merged`, { details: { maybeApplied: true } }));
      }
      return removed;
    });
  }

  private async readSealedRange(fromSeq: number, toSeq: number): Promise<Uint8Array[]> {
    const batches: Uint8Array[] = [];
    for await (const batch of this.sealedBetween(fromSeq, toSeq)) batches.push(batch);
    return batches;
  }

  /** The sealed batches (copies) from the one holding fromSeq to the one holding toSeq, in order, read a few MiB at a time. */
  async *sealedBetween(fromSeq: number, toSeq: number): AsyncGenerator<Uint8Array> {
    for (let next = fromSeq; next <= toSeq; ) {
      const before = next;
      for (const batch of await this.readSealed(next, 4 << 20)) {
        const parsed = readBatchHeader(batch, 0);
        if (!parsed.ok) throw new TidelogError('CORRUPT_SEGMENT', `shard ${this.shard}: a batch near seq ${next} does not parse`);
        yield batch;
        next = Math.max(next, parsed.header.firstSeq + parsed.header.count);
      }
      if (next === before) break;
    }
  }

  private async keepOrphans(batches: readonly Uint8Array[], cutAfter: number): Promise<void> {
    const withEvents = batches.filter((batch) => batch.byteLength > 0 && readEventCount(batch) > 0);
    if (withEvents.length === 0) return;
    const file = await saveOrphans(this.options.io ?? nodeFileIo, join(this.options.dataDir, 'wal'), this.shard, withEvents);
    this.orphansKept += withEvents.length;
    const first = readBatchHeader(withEvents[0], 0);
    const last = readBatchHeader(withEvents[withEvents.length - 1], 0);
    if (first.ok && last.ok) {
      this.options.onOrphansKept?.({ file, batches: withEvents.length, firstSeq: first.header.firstSeq, lastSeq: last.header.firstSeq + last.header.count - 1, cutAfter });
    }
  }

  /** Orphan batches kept here since the host opened (availability mode). */
  orphansKept = 0;

  /** This shard's orphan files waiting to be merged, oldest first. */
  orphanFiles(): Promise<string[]> {
    return listOrphans(this.options.io ?? nodeFileIo, join(this.options.dataDir, 'wal'), this.shard);
  }

  readOrphanFile(name: string): Promise<Uint8Array[]> {
    return readOrphans(this.options.io ?? nodeFileIo, join(this.options.dataDir, 'wal'), name);
  }

  /** The leader merged the file's batches: it goes, durably. */
  removeOrphanFile(name: string): Promise<void> {
    return removeOrphans(this.options.io ?? nodeFileIo, join(this.options.dataDir, 'wal'), name);
  }

  /**
   * Leader only: re-appends the orphan batches this log lacks, each exactly once
   * (src/node/orphan-merge.ts); resolves once what was appended is durable here.
   */
  mergeOrphans(batches: readonly Uint8Array[]): Promise<MergeResult> {
    if (!this.wal.leading) return Promise.reject(new TidelogError('NOT_LEADER', `shard ${this.shard}: merges go to the leader`));
    const wal = this.wal;
    return mergeOrphanBatches(
      {
        shard: this.shard,
        sessions: this.state.sessions,
        get durableSeq() {
          return wal.durableSeq;
        },
        get firstSeq() {
          return wal.firstSeq;
        },
        epochAt: (seq) => wal.epochAt(seq),
        epochEnd: (epoch) => wal.epochEnd(epoch),
        sealedBetween: (fromSeq, toSeq) => this.sealedBetween(fromSeq, toSeq),
        appendWithNote: (packed, note) => wal.appendMany(packed, { note, dedup: false }),
        answeredAtDurable: this.options.availability === true,
      },
      batches,
    );
  }

  /** Records `epoch` durably before this replica takes part in it; an older one is FENCED. */
  setEpoch(epoch: number): Promise<void> {
    return this.wal.setEpoch(epoch);
  }

  /** The newest epoch whose leader confirmed this log (see Wal.confirmedEpoch). */
  get confirmedEpoch(): number {
    return this.wal.confirmedEpoch;
  }

  /** Records that the leader of `epoch` confirmed this log. */
  confirmEpoch(epoch: number): Promise<void> {
    return this.wal.confirmEpoch(epoch);
  }

  /**
   * Starts leading at `epoch` (claimed already): records it, confirms its own log in it, and
   * takes appends from then on (NOT_LEADER before, and after a newer epoch is recorded). The
   * shard machine opens the gate to producers only once the commit point has reached the
   * durable end it had here: then the session store and the state hold every batch that could
   * have been acknowledged before.
   */
  lead(epoch: number): Promise<void> {
    return this.wal.lead(epoch);
  }

  /** The last seq handed out here (written, being written, or queued). */
  get lastAssignedSeq(): number {
    return this.wal.lastAssignedSeq;
  }

  /** Whether this replica takes local appends (see lead). */
  get leading(): boolean {
    return this.wal.leading;
  }

  /** A follower's append of its leader's sealed batch, verbatim; resolves once durable here. */
  appendSealed(batch: Uint8Array): Promise<void> {
    return this.wal.appendSealed(batch);
  }

  /** Retention keeps every seq above `seq` (what a lagging replica still needs); null: no hold. */
  holdRetention(seq: number | null): void {
    this.wal.holdRetention(seq);
  }

  /** The epoch of the batch holding `seq` here (-1: none); seq 0 has epoch 0. */
  epochAt(seq: number): number {
    return this.wal.epochAt(seq);
  }

  /** The divergence search: the largest epoch ≤ `epoch` in this log and its last seq here. */
  epochEnd(epoch: number): { epoch: number; endSeq: number } | null {
    return this.wal.epochEnd(epoch);
  }

  /** Where each epoch's part of this log begins (a copy; a snapshot install sends it along). */
  epochStarts(): EpochStart[] {
    return this.wal.epochStarts();
  }

  /**
   * Catch-up for a follower: the sealed batches from `fromSeq` (the first may start earlier)
   * to the durable end, committed or not, at most `maxBytes` of them (always at least one).
   */
  async readSealed(fromSeq: number, maxBytes: number): Promise<Uint8Array[]> {
    const batches: Uint8Array[] = [];
    let bytes = 0;
    for await (const stored of this.wal.readBatches({ fromSeq, uncommitted: true })) {
      if (stored.sealed === undefined) continue;
      if (batches.length > 0 && bytes + stored.sealed.byteLength > maxBytes) break;
      batches.push(new Uint8Array(stored.sealed));
      bytes += stored.sealed.byteLength;
    }
    return batches;
  }

  /** Lowest seq this replica still holds (retention deleted what came before). */
  get firstSeq(): number {
    return this.wal.firstSeq;
  }

  /** The newest snapshot file kept here, or null (a leader sends it to a replica behind retention). */
  newestSnapshot(): { fileName: string; seq: number; bytes: number } | null {
    const snapshots = this.wal.snapshots();
    const newest = snapshots[snapshots.length - 1];
    return newest === undefined ? null : { fileName: newest.fileName, seq: newest.seq, bytes: newest.bytes };
  }

  /** Part of a kept snapshot file; OUT_OF_RANGE once it is no longer kept. */
  readSnapshotPart(fileName: string, offset: number, maxBytes: number): Promise<Uint8Array> {
    return this.wal.readSnapshotPart(fileName, offset, maxBytes);
  }

  /**
   * A follower behind its leader's retention receives the leader's snapshot part by part;
   * once the file is complete and verified it replaces this replica's log (snapshot-install.ts):
   * the WAL is closed, the install completed, and the WAL and state opened again at the
   * snapshot's seq. Resolves with the offset expected next, or `installed` with the new end.
   */
  async receiveSnapshot(part: SnapshotPart): Promise<{ kind: 'next'; offset: number } | { kind: 'installed'; seq: number }> {
    if (this.installFailure !== null) throw this.installFailure;
    if (this.wal.leading) throw new TidelogError('BAD_REQUEST', `shard ${this.shard}: a leading replica takes no snapshot`);
    const io = this.options.io ?? nodeFileIo;
    this.receiver ??= new SnapshotReceiver(io, join(this.options.dataDir, 'wal'), this.shard);
    const offset = await this.receiver.receive(part);
    if (offset < part.fileBytes) return { kind: 'next', offset };
    // The install replaces the whole log: in availability mode its durable batches past the
    // commit point may have been acknowledged, so they are kept first. Where this log holds the
    // leader's epoch at the snapshot's seq, it equals the leader's log up to there (log
    // matching: one batch per (seq, epoch)): only what follows is kept. Otherwise everything
    // past its own commit point (a deposed leader's suffix may run below the snapshot's seq).
    if (this.options.availability === true && this.wal.durableSeq > this.wal.committedSeq) {
      const matchesAtSnapshot = part.seq <= this.wal.durableSeq && this.wal.epochAt(part.seq) === part.epochAtSeq;
      const keepAfter = matchesAtSnapshot ? Math.max(this.wal.committedSeq, part.seq) : this.wal.committedSeq;
      if (this.wal.durableSeq > keepAfter) await this.keepOrphans(await this.readSealedRange(keepAfter + 1, this.wal.durableSeq), keepAfter);
    }
    try {
      await this.receiver.commit();
    } catch (error) {
      // Maybe committed: the old log must not take another batch (the next open installs).
      if (isTidelogError(error) && error.context.installMayHaveCommitted === 1) {
        this.installFailure = error;
        await this.wal.close().catch(() => undefined);
      }
      throw error;
    }
    // Committed: from here the old log is gone once the directory is opened again.
    const epoch = this.wal.epoch;
    const startedMs = performance.now();
    try {
      await this.wal.close();
      // Closing meanwhile: the next open completes the install.
      if (this.isClosing) throw new TidelogError('CLOSED', `shard ${this.shard} is closing`);
      const reopened = await ShardHost.openWal(this.options, undefined);
      if (this.isClosing) {
        await reopened.wal.close();
        throw new TidelogError('CLOSED', `shard ${this.shard} is closing`);
      }
      this.shardState.sessions.failInFlight(new TidelogError('CLOSED', `shard ${this.shard}: a snapshot replaced this replica's log`));
      this.wal = reopened.wal;
      this.shardState = reopened.state;
      this.opened = reopened.recovery;
      reopened.state.onBatch = (batch) => this.batchCommitted(batch);
      this.recent.clear();
      this.hwmSeq = reopened.wal.committedSeq;
      this.snapshotsInstalled++;
      if (reopened.wal.epoch < epoch) throw new Error(`invariant violated: the install lowered the recorded epoch ${epoch} to ${reopened.wal.epoch}`);
      this.options.onSnapshotInstalled?.({ seq: reopened.wal.durableSeq, fileBytes: part.fileBytes, reopenMs: Math.round(performance.now() - startedMs) });
      return { kind: 'installed', seq: reopened.wal.durableSeq };
    } catch (error) {
      this.installFailure = error instanceof Error ? error : new Error(String(error));
      throw this.installFailure;
    }
  }

  /** Durable events from fromSeq: memory when recent enough, else the segments on disk. */
  async read(fromSeq: number, maxEvents: number): Promise<{ batches: ReadBatch[]; hwm: number; firstSeq: number }> {
    const hwm = this.hwmSeq;
    const firstSeq = this.wal.firstSeq;
    if (fromSeq > hwm + 1) {
      throw new TidelogError('OUT_OF_RANGE', `shard ${this.shard}: fromSeq ${fromSeq} is beyond the log's end ${hwm}`, {
        details: { shard: this.shard, fromSeq, hwm },
      });
    }
    if (fromSeq < firstSeq) {
      throw new TidelogError('OUT_OF_RANGE', `shard ${this.shard}: seqs before ${firstSeq} were truncated`, {
        details: { shard: this.shard, fromSeq, firstSeq },
      });
    }
    const limit = Math.min(maxEvents, MAX_READ_EVENTS, hwm - fromSeq + 1);
    if (limit <= 0) return { batches: [], hwm, firstSeq };
    const cached = this.recent.read(fromSeq, limit);
    if (cached !== null) return { batches: withinReplyBudget(cached), hwm, firstSeq };
    const batches: ReadBatch[] = [];
    let remaining = limit;
    let replyBytes = 0;
    for await (const stored of this.wal.readBatches({ fromSeq, toSeq: fromSeq + limit - 1 })) {
      if (stored.count === 0) continue;
      // The stored bytes are a view of a whole segment read: copy the part we keep.
      const trimmed = trimBatch(toReadBatch(stored), fromSeq, remaining);
      replyBytes += trimmed.events.byteLength + READ_BATCH_OVERHEAD_BYTES;
      if (batches.length > 0 && replyBytes > MAX_READ_REPLY_BYTES) break;
      batches.push({ ...trimmed, events: new Uint8Array(trimmed.events) });
      remaining -= trimmed.events.byteLength / EVENT_BYTES;
      if (remaining <= 0) break;
    }
    return { batches, hwm, firstSeq };
  }

  /** The first seq of the first batch sealed at or after timestampNs. */
  seek(timestampNs: bigint): Promise<number> {
    return this.wal.seqAtTime(timestampNs);
  }

  query(entityId: bigint, signalTypes?: readonly number[]): SignalStateView[] {
    return this.state.query(entityId, signalTypes);
  }

  stats(): WalStats {
    return this.wal.stats();
  }

  status(): ShardStatus {
    const stats = this.wal.stats();
    const newest = stats.snapshots.files[stats.snapshots.files.length - 1];
    return {
      shard: this.shard,
      role: this.role,
      epoch: this.wal.epoch,
      lastSeq: stats.nextSeq - 1,
      hwm: this.hwmSeq,
      checkpointSeq: stats.checkpointSeq,
      pendingEvents: stats.pendingEvents,
      segments: stats.segments.length,
      appliedSeq: this.state.appliedSeq,
      entities: this.state.entityCount,
      firstSeq: this.wal.firstSeq,
      logBytes: stats.logBytes,
      snapshotSeq: newest?.seq ?? 0,
      snapshotBytes: newest?.bytes ?? 0,
      retentionMaxAgeMs: stats.retention.maxAgeMs,
      retentionMaxBytes: stats.retention.maxBytes,
      ...(this.wal.failed === null ? {} : failureFields(this.wal.failed)),
      ...(this.isRepairingNow ? { repairing: true } : {}),
    };
  }

  async close(): Promise<void> {
    this.isClosing = true;
    await this.receiver?.abort();
    try {
      await this.wal.close();
    } finally {
      this.state.sessions.failInFlight(new TidelogError('CLOSED', `shard ${this.shard} is closing`));
    }
  }

  /** A tail of this shard exists: publish the feed for the next FEED_INTEREST_MS. */
  wantFeed(): void {
    this.feedWantedUntilMs = performance.now() + FEED_INTEREST_MS;
  }

  /** Called from ShardState.apply as a batch is committed (before its acks). */
  private batchCommitted(stored: StoredBatch): void {
    this.options.onCommitted?.(stored);
    if (stored.count === 0) return;
    this.hwmSeq = stored.firstSeq + stored.count - 1;
    // `stored.events` is valid during the call only: one copy serves memory and the feed
    // (new Uint8Array copies even a Buffer view, whose slice() would not).
    const batch = { ...toReadBatch(stored), events: new Uint8Array(stored.events) };
    this.recent.push(batch);
    // No tail announced itself lately: nobody would read the feed, so it is not encoded.
    if (performance.now() >= this.feedWantedUntilMs) return;
    this.options.publishFeed({
      v: 1,
      t: 'feed',
      shard: this.shard,
      epoch: batch.epoch,
      firstSeq: batch.firstSeq,
      timestampNs: batch.timestampNs,
      events: batch.events,
      hwm: this.hwmSeq,
    });
  }
}

/** The leading batches of a page that fit one reply (always at least one). */
function withinReplyBudget(batches: ReadBatch[]): ReadBatch[] {
  let replyBytes = 0;
  for (let index = 0; index < batches.length; index++) {
    replyBytes += batches[index].events.byteLength + READ_BATCH_OVERHEAD_BYTES;
    if (index > 0 && replyBytes > MAX_READ_REPLY_BYTES) return batches.slice(0, index);
  }
  return batches;
}

/** A failure as ShardStatus carries it: the code, and where it is on disk when known. */
export function failureFields(error: Error): Pick<ShardStatus, 'failure' | 'failureMessage' | 'failureFile' | 'failureOffset'> {
  const context = isTidelogError(error) ? error.context : {};
  return {
    failure: isTidelogError(error) ? error.code : 'IO_ERROR',
    failureMessage: error.message,
    ...(typeof context.file === 'string' ? { failureFile: context.file } : {}),
    ...(typeof context.offset === 'number' ? { failureOffset: context.offset } : {}),
  };
}

function toReadBatch(stored: StoredBatch): ReadBatch {
  return { firstSeq: stored.firstSeq, epoch: stored.leaderEpoch, timestampNs: stored.timestampNs, events: stored.events };
}

/** The largest session request whose note surely fits the WAL's MAX_NOTE_BYTES. */
export function maxSessionRequestEvents(producerId: string): number {
  const fixed = sessionNoteBytes(producerIdBytes(producerId).byteLength, 0);
  return Math.floor((MAX_NOTE_BYTES - fixed) / RUN_BYTES);
}

function countWritten(seqs: readonly number[]): number {
  let written = 0;
  for (const seq of seqs) if (seq !== 0) written++;
  return written;
}

function readEventCount(batch: Uint8Array): number {
  const parsed = readBatchHeader(batch, 0);
  return parsed.ok ? parsed.header.count : 0;
}
