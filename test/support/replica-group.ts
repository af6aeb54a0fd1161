// A shard's replica group in one process: N ShardReplicas over real shard hosts (temp dirs),
// a MemoryEpochStore, and an in-memory PeerNet whose links can be cut. Real timers, with a
// leader timeout (1 s) well above the pauses a test process sees under load (GC after the
// suite's earlier files), so no election happens that a test did not cause; the
// deterministic simulation (test/sim) drives the same code on a simulated clock.
import { MemoryEpochStore, type EpochStore } from '../../src/cluster/epoch-store.ts';
import { TidelogError } from '../../src/errors.ts';
import type { PeerNet, ReplicaServer } from '../../src/node/election.ts';
import type { ShardHost, WalSettings } from '../../src/node/shard-host.ts';
import type { FileIo } from '../../src/wal/index.ts';
import { ShardReplica, type ReplicaTimers } from '../../src/node/shard-replica.ts';
import { openReplicaHost } from './replica-host.ts';
import { removeDir, tempDir } from './wal-fixtures.ts';

export interface GroupMember {
  nodeId: string;
  dir: string;
  host: ShardHost | null;
  replica: ShardReplica | null;
  /** Every phase change of its replicas so far: "phase@epoch: reason". */
  changes: string[];
}

export interface ReplicaGroupOptions {
  nodes: number;
  leaderTimeoutMs?: number;
  heartbeatMs?: number;
  fsync?: 'full' | 'off';
  store?: EpochStore;
  timers?: ReplicaTimers;
  random?: () => number;
  /** More WAL settings for every member (retention, snapshots, segment size). */
  wal?: Partial<WalSettings>;
  /** Default 'quorum'. */
  acks?: 'quorum' | 'all';
  /** How long retention waits for a silent follower (default forever). */
  retentionWaitMs?: number;
  /** The file system of a member (tests inject disk faults); default the real one. */
  io?: (nodeId: string) => FileIo | undefined;
}

/** An in-memory network between the replicas' servers; a link can be cut both ways. */
export class MemoryPeerNet {
  readonly servers = new Map<string, ReplicaServer>();
  private readonly cut = new Set<string>();

  isCut(from: string, to: string): boolean {
    return this.cut.has(`${from}>${to}`);
  }

  /** Isolates `node` from every other (both ways); heal() undoes it. */
  isolate(node: string, others: readonly string[]): void {
    for (const other of others) {
      if (other === node) continue;
      this.cut.add(`${node}>${other}`);
      this.cut.add(`${other}>${node}`);
    }
  }

  heal(): void {
    this.cut.clear();
  }

  /** The PeerNet one node uses. */
  from(nodeId: string): PeerNet {
    const call = async <T>(peer: string, work: (server: ReplicaServer) => Promise<T>): Promise<T> => {
      const server = this.servers.get(peer);
      if (server === undefined || this.isCut(nodeId, peer)) throw new TidelogError('NO_RESPONDERS', `${peer} is not reachable from ${nodeId}`);
      const reply = await work(server);
      // The answer crosses the link back: lost if it was cut meanwhile.
      if (this.isCut(peer, nodeId) || this.servers.get(peer) !== server) throw new TidelogError('TIMEOUT', `${peer}'s answer to ${nodeId} was lost`);
      return reply;
    };
    return {
      replicate: (peer, request) => call(peer, (server) => server.replicate(request)),
      preVote: (peer, request) => call(peer, (server) => server.preVote(request)),
      prepare: (peer, request) => call(peer, (server) => server.prepare(request)),
      fetch: (peer, request) => call(peer, (server) => server.fetch(request)),
      install: (peer, request) => call(peer, (server) => server.install(request)),
      campaignNow: (peer, request) => call(peer, (server) => server.campaignNow(request)),
    };
  }
}

export class ReplicaGroup {
  readonly members: GroupMember[];
  readonly net = new MemoryPeerNet();
  readonly store: EpochStore;
  readonly ids: string[];

  constructor(private readonly options: ReplicaGroupOptions) {
    this.ids = Array.from({ length: options.nodes }, (_, index) => `n${index + 1}`);
    this.members = this.ids.map((nodeId) => ({ nodeId, dir: tempDir(`replica-${nodeId}`), host: null, replica: null, changes: [] }));
    this.store = options.store ?? new MemoryEpochStore();
  }

  async start(): Promise<void> {
    for (const member of this.members) await this.startMember(member);
  }

  member(nodeId: string): GroupMember {
    const member = this.members.find((candidate) => candidate.nodeId === nodeId);
    if (member === undefined) throw new Error(`no member ${nodeId}`);
    return member;
  }

  async startMember(member: GroupMember): Promise<void> {
    let replica: ShardReplica | null = null;
    const host = await openReplicaHost(member.dir, {
      fsync: this.options.fsync ?? 'off',
      epoch: null,
      onDurable: (info) => replica?.onDurable(info.sealed),
      // As a clustered node opens its shards.
      repairFromPeers: true,
      ...(this.options.io?.(member.nodeId) === undefined ? {} : { io: this.options.io(member.nodeId)! }),
      ...(this.options.wal === undefined ? {} : { wal: this.options.wal }),
    });
    replica = new ShardReplica({
      shard: 0,
      nodeId: member.nodeId,
      replicas: this.ids,
      acks: this.options.acks ?? 'quorum',
      log: host,
      store: this.store,
      net: this.net.from(member.nodeId),
      leaderTimeoutMs: this.options.leaderTimeoutMs ?? 1_000,
      heartbeatMs: this.options.heartbeatMs ?? 100,
      ...(this.options.timers === undefined ? {} : { timers: this.options.timers }),
      ...(this.options.random === undefined ? {} : { random: this.options.random }),
      ...(this.options.retentionWaitMs === undefined ? {} : { retentionWaitMs: this.options.retentionWaitMs }),
      onChange: (change) => member.changes.push(`${change.phase}@${change.epoch}: ${change.reason ?? ''}`),
    });
    member.host = host;
    member.replica = replica;
    this.net.servers.set(member.nodeId, replica.server);
    replica.start();
  }

  /** Stops a member as a crash would look to the others (its host closes; unacked appends fail). */
  async stopMember(member: GroupMember): Promise<void> {
    this.net.servers.delete(member.nodeId);
    member.replica?.stop();
    member.replica = null;
    const host = member.host;
    member.host = null;
    await host?.close();
  }

  /** The member serving producers, if exactly one is. */
  serving(): GroupMember[] {
    return this.members.filter((member) => member.replica?.serving === true);
  }

  async close(): Promise<void> {
    for (const member of this.members) await this.stopMember(member);
    for (const member of this.members) removeDir(member.dir);
  }
}
