// The deterministic simulation of one shard's replica group (FoundationDB / TigerBeetle
// style): the real ShardReplica, elections, shipper, follower and WAL code of three (or five) nodes in
// one process, driven by
//   - a simulated clock (every timer the replicas and xstate use; nothing real-time),
//   - a simulated network in front of each node's ReplicaServer: seeded drops, delays (so
//     reorders), duplicates and partitions,
//   - an in-memory epoch store with the KV's create-only semantics,
//   - in-memory disks (memory-disk.ts) that lose unsynced bytes on a power cut,
//   - a producer with a session, retrying with its original session seqs,
// all from one seeded PRNG. The WAL's own async steps (setImmediate, promises) involve no real
// I/O, so a run is a function of its seed: a failing seed replays exactly.
//
// After every step the invariants of docs/REPLICATION.md are checked:
//   1. an acknowledged event is at its acked seq in the committed log, and never contradicted;
//   2. every replica's committed batches equal the cluster's committed log (same seqs, bytes);
//   3. at most one node leads an epoch;
//   4. a replica's commit point never goes down while it lives;
//   5. sessions: no event is in the committed log twice; a replayed ack names the original seqs.
// At the end the faults stop, every node runs, and the group must converge: one leader, every
// replica at the same commit point holding every acknowledged event, CRDT states equal.

import { MemoryEpochStore, type CreateFault } from '../../src/cluster/epoch-store.ts';
import { defaultSignalSchema } from '../../src/crdt/index.ts';
import { TidelogError, isTidelogError } from '../../src/errors.ts';
import { EVENT_BYTES, encodeEvents, type SignalEvent } from '../../src/event.ts';
import type { PeerNet, ReplicaServer } from '../../src/node/election.ts';
import { ShardHost } from '../../src/node/shard-host.ts';
import { ShardReplica, type ReplicaTimers } from '../../src/node/shard-replica.ts';
import type { SessionTag } from '../../src/transport/messages.ts';
import type { StoredBatch } from '../../src/wal/index.ts';
import { MemoryDisk } from '../support/memory-disk.ts';
import { mulberry32 } from '../crdt/replica-simulation.ts';

interface Timer {
  at: number;
  order: number;
  fn: () => void;
  isCancelled: boolean;
}

/** Virtual time: timers fire in (time, creation) order when the simulation steps. */
export class SimClock {
  nowMs = 0;
  private order = 0;
  private readonly timers: Timer[] = [];

  setTimeout(fn: () => void, ms: number): Timer {
    const timer: Timer = { at: this.nowMs + Math.max(0, ms), order: this.order++, fn, isCancelled: false };
    // Sorted insert from the end (most timers are near the end).
    let index = this.timers.length;
    while (index > 0 && (this.timers[index - 1].at > timer.at || (this.timers[index - 1].at === timer.at && this.timers[index - 1].order > timer.order))) index--;
    this.timers.splice(index, 0, timer);
    return timer;
  }

  clearTimeout(timer: unknown): void {
    if (timer !== null && typeof timer === 'object') (timer as Timer).isCancelled = true;
  }

  /** The next live timer, removed; null when none is left. */
  next(): Timer | null {
    for (;;) {
      const timer = this.timers.shift();
      if (timer === undefined) return null;
      if (!timer.isCancelled) return timer;
    }
  }

  timersFor(): ReplicaTimers {
    return {
      every: (ms, tick) => {
        let timer: Timer | null = null;
        const arm = (): void => {
          timer = this.setTimeout(() => {
            arm();
            tick();
          }, ms);
        };
        arm();
        return () => this.clearTimeout(timer);
      },
      clock: { setTimeout: (fn, ms) => this.setTimeout(fn as () => void, ms), clearTimeout: (id) => this.clearTimeout(id) },
      nowMs: () => this.nowMs,
    };
  }
}

export interface SimOptions {
  seed: number;
  /** Replicas of the shard (default 3; 5 tolerates two down). */
  nodes?: number;
  /** Retention by size on every replica (bytes; 0: off): segments go once behind a snapshot and every replica's hold. */
  retentionMaxBytes?: number;
  /** Simulated milliseconds of faults and load; then a quiet period to converge. */
  durationMs?: number;
  /** Per message: probability it is dropped / duplicated. */
  dropRate?: number;
  duplicateRate?: number;
  /** Network delay per message, uniform in [1, maxDelayMs]. */
  maxDelayMs?: number;
  /** Average simulated ms between faults (crash, partition, heal). */
  faultEveryMs?: number;
  /** Log every step (for replaying a failing seed). */
  trace?: (line: string) => void;
  /**
   * 'leader': availability mode — a cut-off leader keeps acknowledging, what replicas cut is
   * merged back; invariant 1 becomes "every acked event is in the committed log exactly once"
   * (its seq may change), and convergence waits for every orphan file to be merged.
   */
  acks?: 'quorum' | 'leader';
}

export interface SimResult {
  seed: number;
  steps: number;
  acked: number;
  committed: number;
  crashes: number;
  partitions: number;
  elections: number;
  simulatedMs: number;
  /** Segments retention deleted on the replicas that were up at the end. */
  segmentsDeleted: number;
  /** Snapshots installed on replicas behind their leader's retention. */
  snapshotsInstalled: number;
  /** Repairs from the peers that ended (a segment rotted while its replica was down). */
  repairs: number;
  /** Availability mode: acked events whose committed seq differs from the acked one (merged). */
  movedAcks: number;
  /** Availability mode: orphan batches re-appended into the log (merge notes folded by the end). */
  mergedBatches: number;
}

const LEADER_TIMEOUT_MS = 300;
/** Shorter than the longer crashes and partitions, so some replicas are sent snapshots. */
const RETENTION_WAIT_MS = 250;
const HEARTBEAT_MS = 50;
const REQUEST_TIMEOUT_MS = 150;
const CLIENT_TIMEOUT_MS = 400;
const SETTLE_MS = 15_000;
/** CRDT states are compared decayed to this instant (a query decays scores to its time). */
const AT_NS = 1_900_000_000_000_000_000n;

class SimNode {
  host: ShardHost | null = null;
  replica: ShardReplica | null = null;
  /** Highest commit point seen in this life (invariant 4). */
  lifeCommitted = 0;
  life = 0;
  /** A segment of this node rotted and it has not been repaired yet (one such node at a time). */
  isDamaged = false;
  constructor(
    readonly nodeId: string,
    readonly disk: MemoryDisk,
  ) {}
  get isUp(): boolean {
    return this.host !== null;
  }
}

class InvariantViolation extends Error {}

export async function runSimulation(options: SimOptions): Promise<SimResult> {
  const sim = new Simulation(options);
  return sim.run();
}

class Simulation {
  private readonly random: () => number;
  private readonly clock = new SimClock();
  private readonly store: MemoryEpochStore;
  private readonly nodes: SimNode[];
  private readonly ids: string[];
  /** Links cut: "from>to". */
  private readonly cut = new Set<string>();
  /** The node a partition isolates (availability mode: producer 0 reaches only it meanwhile, producer 1 only the others). */
  private isolated: string | null = null;
  private readonly servers = new Map<string, ReplicaServer>();
  /** The cluster's committed log: firstSeq → "count:bytes-hex" as first committed anywhere. */
  private readonly committedLog = new Map<number, { count: number; events: string }>();
  private committedEnd = 0;
  /** Entity ids committed (each event has its own): a second one is a duplicate append. */
  private readonly committedEntities = new Set<bigint>();
  /** seq → entity id of every committed event. */
  private readonly committedAt = new Map<number, bigint>();
  private readonly leaders = new Map<number, string>();
  private readonly acked = new Map<number, bigint>();
  /** Availability mode: every acked event (its seq may change on a merge). */
  private readonly ackedEntities = new Map<bigint, number>();
  private readonly isAvailability: boolean;
  private readonly result: SimResult;
  private readonly durationMs: number;
  private readonly dropRate: number;
  private readonly duplicateRate: number;
  private readonly maxDelayMs: number;
  private readonly faultEveryMs: number;
  private violation: Error | null = null;
  // The producer: one session, requests sent in order, each retried until acked.
  private readonly requests: Array<{ tag: SessionTag; producer: number; events: Uint8Array; ids: bigint[]; runs: number[] | null; attempts: number }> = [];
  /** Availability mode runs two producers (each its own session and idea of the leader), so both sides of a split write. */
  private readonly producers: Array<{ producerId: string; believedLeader: string; sent: number }> = [];
  private nextEntity = 1n;
  private isLoadOn = true;

  constructor(private readonly options: SimOptions) {
    this.random = mulberry32(options.seed);
    this.isAvailability = options.acks === 'leader';
    this.producers.push({ producerId: 'sim', believedLeader: 'n1', sent: 0 });
    if (this.isAvailability) this.producers.push({ producerId: 'sim2', believedLeader: 'n2', sent: 0 });
    this.durationMs = options.durationMs ?? 4_000;
    this.dropRate = options.dropRate ?? 0.03;
    this.duplicateRate = options.duplicateRate ?? 0.02;
    this.maxDelayMs = options.maxDelayMs ?? 15;
    this.faultEveryMs = options.faultEveryMs ?? 600;
    // Some claims time out: applied, applied late, or lost (the KV's behaviours).
    this.store = new MemoryEpochStore((): CreateFault => {
      const roll = this.random();
      return roll < 0.03 ? 'timeout-applied' : roll < 0.05 ? 'timeout-late' : roll < 0.07 ? 'timeout-lost' : 'none';
    });
    this.ids = Array.from({ length: options.nodes ?? 3 }, (_, index) => `n${index + 1}`);
    this.nodes = this.ids.map((nodeId) => new SimNode(nodeId, new MemoryDisk()));
    this.result = { seed: options.seed, steps: 0, acked: 0, committed: 0, crashes: 0, partitions: 0, elections: 0, simulatedMs: 0, segmentsDeleted: 0, snapshotsInstalled: 0, repairs: 0, movedAcks: 0, mergedBatches: 0 };
  }

  private trace(line: string): void {
    this.options.trace?.(`${String(this.clock.nowMs).padStart(6)} ${line}`);
  }

  private fail(message: string): never {
    const error = new InvariantViolation(`seed ${this.options.seed} at ${this.clock.nowMs} ms: ${message}`);
    this.violation ??= error;
    throw error;
  }

  async run(): Promise<SimResult> {
    for (const node of this.nodes) await this.start(node);
    this.scheduleFault();
    this.scheduleSend();
    const endMs = this.durationMs + SETTLE_MS;
    this.clock.setTimeout(() => this.quiet(), this.durationMs);
    for (;;) {
      await drain();
      if (this.violation !== null) throw this.violation;
      this.checkInvariants();
      if (this.isConverged()) break;
      const timer = this.clock.next();
      if (timer === null) this.fail('no timers left before convergence');
      if (timer.at > endMs) this.fail(`no convergence ${SETTLE_MS} ms after the faults stopped: ${this.describe()}`);
      this.clock.nowMs = timer.at;
      this.result.steps++;
      try {
        timer.fn();
      } catch (error) {
        if (error instanceof InvariantViolation) throw error;
        this.fail(`a step threw: ${(error as Error).stack ?? String(error)}`);
      }
    }
    await this.finalChecks();
    this.result.simulatedMs = this.clock.nowMs;
    for (const node of this.nodes) node.replica?.stop();
    return this.result;
  }

  private describe(): string {
    return this.nodes
      .map((node) => `${node.nodeId}:${node.isUp ? `${node.replica?.phase}@e${node.host?.epoch} c${node.host?.committedSeq} d${node.host?.durableSeq}` : 'down'}`)
      .join(' ') + ` cut=[${[...this.cut].join(',')}] pending=${this.requests.filter((request) => request.runs === null).length}`;
  }

  // ── nodes ──────────────────────────────────────────────────────────────────────────────

  private async start(node: SimNode): Promise<void> {
    node.life++;
    node.lifeCommitted = 0;
    const io = node.disk.mount();
    let replica: ShardReplica | null = null;
    const host = await ShardHost.open({
      shard: 0,
      dataDir: `/${node.nodeId}`,
      wal: {
        fsync: 'full',
        batchLingerMs: 0,
        // With retention: small segments and frequent snapshots, so it has something to delete.
        segmentBytes: (this.options.retentionMaxBytes ?? 0) > 0 ? 2 << 10 : 8 << 10,
        snapshotLogRatio: 1,
        snapshotMinLogBytes: (this.options.retentionMaxBytes ?? 0) > 0 ? 4 << 10 : 16 << 10,
        snapshotMaxBytesPerSecond: 0,
        retention: { maxAgeMs: 0, maxBytes: this.options.retentionMaxBytes ?? 0 },
      },
      schema: defaultSignalSchema(),
      // Availability mode: a short session window, so a producer's requests on one side push
      // the floor past ones that only an orphan holds (the merge must look in the log).
      sessions: this.isAvailability ? { maxRunsPerSession: 16 } : {},
      recentBytes: 64 << 10,
      publishFeed: () => undefined,
      commit: 'external',
      onDurable: (info) => replica?.onDurable(info.sealed),
      onCommitted: (batch) => this.observeCommit(node, batch),
      io,
      repairFromPeers: true,
      ...(this.isAvailability ? { availability: true } : {}),
      onRepaired: () => {
        this.trace(`${node.nodeId} repaired from its peers`);
        node.isDamaged = false;
        this.result.repairs++;
      },
    });
    replica = new ShardReplica({
      shard: 0,
      nodeId: node.nodeId,
      replicas: this.ids,
      acks: this.isAvailability ? 'leader' : 'quorum',
      log: host,
      ...(this.isAvailability ? { orphans: host } : {}),
      store: this.store,
      net: this.netFrom(node.nodeId),
      leaderTimeoutMs: LEADER_TIMEOUT_MS,
      heartbeatMs: HEARTBEAT_MS,
      timers: this.clock.timersFor(),
      random: this.random,
      maxRequestBytes: 4 << 10,
      // With retention, a replica away longer than this is caught up from a snapshot.
      ...((this.options.retentionMaxBytes ?? 0) > 0 ? { retentionWaitMs: RETENTION_WAIT_MS } : {}),
      onStep: (step, fields) => {
        if (step === 'merged' || step === 'merge-failed') this.trace(`${node.nodeId} ${step} ${JSON.stringify(fields)}`);
      },
      onChange: (change) => {
        this.trace(`${node.nodeId} ${change.phase} e${change.epoch} leader=${change.leaderId ?? '-'} ${change.reason ?? ''}`);
        if (change.phase === 'preparing') {
          this.result.elections++;
          const holder = this.leaders.get(change.epoch);
          if (holder !== undefined && holder !== node.nodeId) this.fail(`epoch ${change.epoch} led by ${holder} and ${node.nodeId}`);
          this.leaders.set(change.epoch, node.nodeId);
        }
      },
    });
    node.host = host;
    node.replica = replica;
    this.servers.set(node.nodeId, replica.server);
    replica.start();
    this.trace(`${node.nodeId} started (life ${node.life}) epoch ${host.epoch} committed ${host.committedSeq} durable ${host.durableSeq}`);
  }

  private crash(node: SimNode, how: 'power' | 'kill'): void {
    if (!node.isUp) return;
    this.result.crashes++;
    this.trace(`${node.nodeId} ${how === 'power' ? 'power cut' : 'killed'}`);
    node.replica?.stop();
    this.servers.delete(node.nodeId);
    this.result.snapshotsInstalled += node.host?.snapshotsInstalled ?? 0;
    if (how === 'power') node.disk.powerCut();
    else node.disk.kill();
    node.host = null;
    node.replica = null;
  }

  private observeCommit(node: SimNode, batch: StoredBatch): void {
    if (batch.count === 0) return;
    const events = hex(batch.events);
    const known = this.committedLog.get(batch.firstSeq);
    if (known === undefined) {
      if (batch.firstSeq !== this.committedEnd + 1) {
        // A batch that starts inside a known one, or leaves a hole.
        this.fail(`${node.nodeId} committed a batch at ${batch.firstSeq}, the committed log ends at ${this.committedEnd}`);
      }
      this.committedLog.set(batch.firstSeq, { count: batch.count, events });
      this.committedEnd = batch.firstSeq + batch.count - 1;
      this.result.committed = this.committedEnd;
      for (let index = 0; index < batch.count; index++) {
        const entity = new DataView(batch.events.buffer, batch.events.byteOffset + index * EVENT_BYTES, 8).getBigUint64(0, true);
        if (this.committedEntities.has(entity)) this.fail(`event ${entity} committed twice (at ${batch.firstSeq + index})`);
        this.committedEntities.add(entity);
        this.committedAt.set(batch.firstSeq + index, entity);
      }
    } else if (known.count !== batch.count || known.events !== events) {
      this.fail(`${node.nodeId} committed a different batch at ${batch.firstSeq} than the cluster's committed log`);
    }
  }

  private checkInvariants(): void {
    for (const node of this.nodes) {
      if (node.host === null) continue;
      const committed = node.host.committedSeq;
      if (committed < node.lifeCommitted) this.fail(`${node.nodeId}'s commit point went down from ${node.lifeCommitted} to ${committed}`);
      node.lifeCommitted = committed;
      if (committed > this.committedEnd && node.host.state.appliedSeq >= committed) {
        this.fail(`${node.nodeId} commit point ${committed} is past the committed log's end ${this.committedEnd}`);
      }
    }
  }

  private isConverged(): boolean {
    if (this.isLoadOn || this.requests.some((request) => request.runs === null)) return false;
    if (this.nodes.some((node) => !node.isUp)) return false;
    const serving = this.nodes.filter((node) => node.replica?.serving === true);
    if (serving.length !== 1) return false;
    const target = serving[0].host!.committedSeq;
    // A repair must end too: a replica still repairing does not vote, so it is not converged.
    if (!this.nodes.every((node) => node.host!.committedSeq === target && node.host!.durableSeq === target && !node.host!.isRepairing)) return false;
    // Availability mode: every orphan file merged (each replica looked, and found none).
    return !this.isAvailability || this.nodes.every((node) => node.replica!.status().orphanFiles === 0);
  }

  private async finalChecks(): Promise<void> {
    if (this.isAvailability) {
      // Exactly once: observeCommit fails on an event committed twice; here, none is missing.
      for (const [entity, seq] of this.ackedEntities) {
        if (!this.committedEntities.has(entity)) this.fail(`acked event ${entity} is not in the committed log`);
        if (this.committedAt.get(seq) !== entity) this.result.movedAcks++;
      }
      this.result.mergedBatches = Math.max(...this.nodes.map((node) => node.host!.state.mergedBatches));
    }
    for (const [seq, entity] of this.acked) {
      if (!this.isAvailability && this.committedAt.get(seq) !== entity) this.fail(`acked seq ${seq} (event ${entity}) is not in the committed log`);
    }
    // Every replica's log read back equals the committed log, and their states agree.
    const reference = this.nodes[0].host!;
    for (const node of this.nodes) {
      const host = node.host!;
      this.result.segmentsDeleted += host.stats().retention.segmentsDeleted;
      this.result.snapshotsInstalled += host.snapshotsInstalled;
      let seq = host.stats().segments[0]?.firstSeq ?? 1; // retention may have deleted the start
      while (seq <= host.committedSeq) {
        const page = await host.read(seq, 4096);
        if (page.batches.length === 0) break;
        for (const batch of page.batches) {
          for (let index = 0; index < batch.events.byteLength / EVENT_BYTES; index++) {
            const at = batch.firstSeq + index;
            const entity = new DataView(batch.events.buffer, batch.events.byteOffset + index * EVENT_BYTES, 8).getBigUint64(0, true);
            const acked = this.isAvailability ? undefined : this.acked.get(at);
            if (acked !== undefined && acked !== entity) this.fail(`${node.nodeId} holds event ${entity} at acked seq ${at}, acked for ${acked}`);
            seq = at + 1;
          }
        }
      }
      if (seq - 1 !== host.committedSeq && host.committedSeq > 0) this.fail(`${node.nodeId} read back to ${seq - 1}, committed ${host.committedSeq}`);
      // Availability mode: every acked event counted once on every replica (a fold of the model: count 1).
      const sample = this.isAvailability ? [...this.ackedEntities.keys()].filter((_, index) => index % 7 === 0) : [];
      for (const entity of sample) {
        const views = host.state.query(entity, [1], AT_NS);
        if (views.length !== 1 || views[0].count !== 1) this.fail(`${node.nodeId}: acked event ${entity} counted ${JSON.stringify(views.map((view) => view.count))} times`);
      }
      for (const entity of [1n, this.nextEntity / 2n, this.nextEntity - 1n]) {
        const mine = JSON.stringify(host.state.query(entity, [1], AT_NS), bigintJson);
        const theirs = JSON.stringify(reference.state.query(entity, [1], AT_NS), bigintJson);
        if (mine !== theirs) this.fail(`CRDT state of entity ${entity} differs: ${node.nodeId} ${mine} vs ${this.nodes[0].nodeId} ${theirs}`);
      }
    }
  }

  // ── faults ─────────────────────────────────────────────────────────────────────────────

  private scheduleFault(): void {
    this.clock.setTimeout(() => {
      if (!this.isLoadOn) return;
      this.injectFault();
      this.scheduleFault();
    }, Math.round(this.faultEveryMs * (0.5 + this.random())));
  }

  private injectFault(): void {
    const roll = this.random();
    const node = this.nodes[Math.floor(this.random() * this.nodes.length)];
    if (roll < 0.3) {
      const how = this.random() < 0.5 ? 'power' : 'kill';
      this.crash(node, how);
      // Bit rot in the newest segment, before its tail, while it is down (one damaged replica at
      // a time: two of three would leave no quorum that holds the committed log, which takes an
      // operator).
      // Not in availability mode: there an ack may rest on this one disk until it reaches a
      // quorum, and damage to the only copy loses it (the mode's contract says so).
      if (!this.isAvailability && this.random() < 0.15 && !node.isUp && !this.nodes.some((other) => other.isDamaged)) {
        const rotted = node.disk.rotNewest(`/${node.nodeId}/wal`, '.seg');
        if (rotted !== null) {
          node.isDamaged = true;
          this.trace(`${node.nodeId}: a byte of ${rotted} rotted`);
        }
      }
      // With retention, one crash in three is a long outage: the others' retention goes on
      // without the replica, and it is sent a snapshot when it returns.
      const isLong = (this.options.retentionMaxBytes ?? 0) > 0 && this.random() < 1 / 3;
      this.clock.setTimeout(() => void this.restart(node), isLong ? 1_500 + Math.round(this.random() * 2_000) : 100 + Math.round(this.random() * 900));
    } else if (roll < 0.6) {
      this.result.partitions++;
      this.trace(`partition: ${node.nodeId} isolated`);
      this.isolated = node.nodeId;
      for (const other of this.ids) {
        if (other === node.nodeId) continue;
        this.cut.add(`${node.nodeId}>${other}`);
        this.cut.add(`${other}>${node.nodeId}`);
      }
      this.clock.setTimeout(() => this.heal(), 200 + Math.round(this.random() * 1500));
    } else if (roll < 0.75) {
      // One direction only: node hears the others but they do not hear it.
      const others = this.ids.filter((id) => id !== node.nodeId);
      const other = others[Math.floor(this.random() * others.length)];
      this.cut.add(`${node.nodeId}>${other}`);
      this.trace(`link cut ${node.nodeId}>${other}`);
      this.clock.setTimeout(() => this.heal(), 200 + Math.round(this.random() * 800));
    } else {
      this.heal();
    }
  }

  private heal(): void {
    if (this.cut.size > 0) this.trace('heal');
    this.cut.clear();
    this.isolated = null;
  }

  private async restart(node: SimNode): Promise<void> {
    if (node.isUp) return;
    try {
      await this.start(node);
    } catch (error) {
      this.fail(`${node.nodeId} could not restart: ${(error as Error).stack ?? String(error)}`);
    }
  }

  /** The faults stop: links heal, every node comes back, the load ends. */
  private quiet(): void {
    this.trace('quiet: faults stop');
    this.isLoadOn = false;
    this.heal();
    for (const node of this.nodes) if (!node.isUp) void this.restart(node);
  }

  // ── network ────────────────────────────────────────────────────────────────────────────

  private delay(): number {
    return 1 + Math.floor(this.random() * this.maxDelayMs);
  }

  /** One request over the simulated network; rejects (TIMEOUT) when it or its answer is lost. */
  private deliver<T>(from: string, to: string, work: (server: ReplicaServer) => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let isSettled = false;
      const timeout = this.clock.setTimeout(() => {
        if (isSettled) return;
        isSettled = true;
        reject(new TidelogError('TIMEOUT', `${from} → ${to}: no answer`));
      }, REQUEST_TIMEOUT_MS);
      const send = (): void => {
        if (this.cut.has(`${from}>${to}`) || this.random() < this.dropRate) return;
        this.clock.setTimeout(() => {
          const server = this.servers.get(to);
          if (server === undefined) return;
          work(server).then(
            (reply) => this.answer(to, from, () => {
              if (isSettled) return;
              isSettled = true;
              this.clock.clearTimeout(timeout);
              resolve(reply);
            }),
            (error: unknown) => this.answer(to, from, () => {
              if (isSettled) return;
              isSettled = true;
              this.clock.clearTimeout(timeout);
              reject(error);
            }),
          );
        }, this.delay());
      };
      send();
      if (this.random() < this.duplicateRate) send();
    });
  }

  private answer(from: string, to: string, settle: () => void): void {
    if (this.cut.has(`${from}>${to}`) || this.random() < this.dropRate) return;
    this.clock.setTimeout(settle, this.delay());
  }

  private netFrom(nodeId: string): PeerNet {
    return {
      replicate: (peer, request) => this.deliver(nodeId, peer, (server) => server.replicate(request)),
      preVote: (peer, request) => this.deliver(nodeId, peer, (server) => server.preVote(request)),
      prepare: (peer, request) => this.deliver(nodeId, peer, (server) => server.prepare(request)),
      fetch: (peer, request) => this.deliver(nodeId, peer, (server) => server.fetch(request)),
      install: (peer, request) => this.deliver(nodeId, peer, (server) => server.install(request)),
      campaignNow: (peer, request) => this.deliver(nodeId, peer, (server) => server.campaignNow(request)),
      merge: (peer, request) => this.deliver(nodeId, peer, (server) => server.merge(request)),
    };
  }

  // ── the producer ───────────────────────────────────────────────────────────────────────

  private scheduleSend(): void {
    this.clock.setTimeout(() => {
      if (!this.isLoadOn) return;
      // At most 3 requests of the session in flight (pipelining, as the real producer does).
      const producer = Math.floor(this.random() * this.producers.length);
      if (this.requests.filter((request) => request.runs === null && request.producer === producer).length < 3) this.newRequest(producer);
      this.scheduleSend();
    }, 5 + Math.floor(this.random() * 30));
  }

  private newRequest(producer: number): void {
    const count = 1 + Math.floor(this.random() * 20);
    const ids: bigint[] = [];
    const events: SignalEvent[] = [];
    for (let index = 0; index < count; index++) {
      const id = this.nextEntity++;
      ids.push(id);
      events.push({ entityId: id, signalType: 1, weight: 1, timestampNs: 1_700_000_000_000_000_000n + id });
    }
    const sender = this.producers[producer];
    const request = { tag: { producerId: sender.producerId, sessionEpoch: 1, requestSeq: ++sender.sent }, producer, events: encodeEvents(events), ids, runs: null, attempts: 0 };
    this.requests.push(request);
    this.attempt(request);
  }

  private attempt(request: (typeof this.requests)[number]): void {
    if (request.runs !== null) return;
    request.attempts++;
    const sender = this.producers[request.producer];
    const target = sender.believedLeader;
    let isSettled = false;
    const retry = (): void => {
      if (isSettled) return;
      isSettled = true;
      this.clock.setTimeout(() => this.attempt(request), 20 + Math.floor(this.random() * 30));
    };
    this.clock.setTimeout(() => {
      if (!isSettled) {
        sender.believedLeader = this.ids[Math.floor(this.random() * this.ids.length)];
        retry();
      }
    }, CLIENT_TIMEOUT_MS);
    if (this.random() < this.dropRate) return;
    // Availability mode: a split cuts the producers too, one on each side.
    if (this.isAvailability && this.isolated !== null && (request.producer === 0) !== (target === this.isolated)) return;
    this.clock.setTimeout(() => {
      const node = this.nodes.find((candidate) => candidate.nodeId === target)!;
      const host = node.host;
      const replica = node.replica;
      if (host === null || replica === null) return; // down: the client times out
      if (!replica.serving) {
        const leader = replica.leaderId;
        this.answerClient(() => {
          sender.believedLeader = leader !== null && leader !== target ? leader : this.ids[Math.floor(this.random() * this.ids.length)];
          retry();
        });
        return;
      }
      host.append(request.events, request.tag).then(
        (outcome) =>
          this.answerClient(() => {
            if (isSettled) return;
            isSettled = true;
            this.onAck(request, outcome.runs, outcome.outcome, target);
          }),
        (error: unknown) =>
          this.answerClient(() => {
            if (!isTidelogError(error)) this.fail(`append threw a non-tidelog error: ${String(error)}`);
            retry();
          }),
      );
    }, this.delay());
  }

  private answerClient(settle: () => void): void {
    if (this.random() < this.dropRate) return;
    this.clock.setTimeout(settle, this.delay());
  }

  private onAck(request: (typeof this.requests)[number], runs: number[], outcome: string, from: string): void {
    if (outcome === 'applied') {
      // Availability mode runs a short session window: a late copy of a retry may find its
      // request forgotten. 'applied' is an ack without seqs: its events must be in the log.
      if (!this.isAvailability) this.fail(`request ${request.tag.requestSeq} answered 'applied': the session store forgot it`);
      request.runs = runs;
      this.result.acked += request.ids.length;
      this.trace(`ack ${request.tag.producerId} request ${request.tag.requestSeq} (events ${request.ids[0]}..${request.ids[request.ids.length - 1]}) from ${from} (applied)`);
      for (const id of request.ids) if (!this.ackedEntities.has(id)) this.ackedEntities.set(id, 0);
      return;
    }
    const seqs: number[] = [];
    for (let index = 0; index < runs.length; index += 2) for (let offset = 0; offset < runs[index + 1]; offset++) seqs.push(runs[index] === 0 ? 0 : runs[index] + offset);
    if (seqs.length !== request.ids.length || seqs.includes(0)) this.fail(`request ${request.tag.requestSeq}: ack runs ${JSON.stringify(runs)} do not cover its ${request.ids.length} events`);
    request.runs = runs;
    this.result.acked += seqs.length;
    this.trace(`ack ${request.tag.producerId} request ${request.tag.requestSeq} (events ${request.ids[0]}..${request.ids[request.ids.length - 1]}) from ${from} (${outcome}): ${JSON.stringify(runs)}`);
    if (this.isAvailability) {
      // Two leaders may hand out one seq in a split; the seq may change on heal. What must hold
      // is checked at the end: every acked event in the committed log exactly once.
      seqs.forEach((seq, index) => this.ackedEntities.set(request.ids[index], seq));
      return;
    }
    seqs.forEach((seq, index) => {
      const previous = this.acked.get(seq);
      if (previous !== undefined && previous !== request.ids[index]) this.fail(`seq ${seq} acked for events ${previous} and ${request.ids[index]}`);
      this.acked.set(seq, request.ids[index]);
      // Invariant 1: an acked event is in the committed log at its seq.
      const committed = this.committedAt.get(seq);
      if (committed !== request.ids[index]) this.fail(`seq ${seq} acked for event ${request.ids[index]}, the committed log holds ${committed ?? 'nothing'} there`);
    });
  }
}

/** Lets every pending microtask and setImmediate chain of the WAL run (no real I/O is involved). */
async function drain(): Promise<void> {
  for (let turn = 0; turn < 8; turn++) await new Promise<void>((resolve) => setImmediate(resolve));
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

function bigintJson(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value;
}
