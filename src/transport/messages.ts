// Every message tidelog puts on the wire, as TypeScript types, and the subjects they travel
// on. The byte encoding (msgpack maps, validated on decode) is in codec.ts; the language-
// neutral description is docs/PROTOCOL.md. Every message names its shard, the leader epoch
// and seqs where they apply, so replication adds followers without changing a message.
//
// Conventions
// - every message is a msgpack map with `v` (protocol version, 1) and `t` (type name);
// - events travel as one msgpack bin of n × 21 packed bytes (src/event.ts), never as arrays;
// - seqs are u53 integers; entity ids are u64 as decimal strings (msgpack has no portable
//   u64 for every language's decoder);
// - acks carry seqs as runs: [seq, length, seq, length, …] in event order, where a run with
//   seq 0 is `length` duplicates (content dedup: not written again).

import type { RouterSpec } from '../shard-map.ts';

export const PROTOCOL_VERSION = 1;

/**
 * Limits a node enforces per request unless its config changes them. Both keep a request
 * under NATS's default max_payload (1 MiB): 32 768 events are 688 KiB of packed bytes.
 */
export const DEFAULT_MAX_REQUEST_EVENTS = 32_768;
export const DEFAULT_MAX_REQUEST_BYTES = 1 << 20;
/** A read reply stays under this many bytes of events plus per-batch overhead. */
export const MAX_READ_REPLY_BYTES = 768 << 10;
/** Producer ids: 1..64 bytes of UTF-8. */
export const MAX_PRODUCER_ID_BYTES = 64;

export interface SessionTag {
  producerId: string;
  /** u32 (1..2^32-1). A restarted producer takes a higher epoch; lower epochs are fenced. */
  sessionEpoch: number;
  /** 1, 2, 3 … per (producer, shard); gapless. */
  requestSeq: number;
}

/** `{ns}.append` (any node, router splits) or `{ns}.shard.{n}.append` (that shard's leader). */
export interface AppendRequest {
  v: 1;
  t: 'append';
  /** Required on the per-shard subject (must match it); absent on the any-node subject. */
  shard?: number;
  /** Per-shard subject only: makes the request idempotent across retries and restarts. */
  session?: SessionTag;
  events: Uint8Array;
}

export interface AckPart {
  shard: number;
  epoch: number;
  /** Seq runs in this shard's event order; see the conventions above. */
  runs: number[];
}

export interface AppendReply {
  v: 1;
  t: 'appended';
  parts: AckPart[];
  /** One u16 LE per request event: index into parts. Absent when there is one part. */
  route?: Uint8Array;
  /**
   * 'new': written now. 'replayed': a retry, answered with the original seqs from the
   * idempotency store. 'applied': a retry older than the store remembers; it was applied
   * once, its seqs are forgotten (runs are one run of seq 0).
   */
  outcome: 'new' | 'replayed' | 'applied';
}

/** `{ns}.shard.{n}.read`: durable events from fromSeq, at most maxEvents. */
export interface ReadRequest {
  v: 1;
  t: 'read';
  shard: number;
  fromSeq: number;
  maxEvents: number;
}

export interface ReadBatch {
  firstSeq: number;
  epoch: number;
  timestampNs: bigint;
  events: Uint8Array;
}

export interface ReadReply {
  v: 1;
  t: 'batches';
  shard: number;
  /** Batches with seqs ≥ fromSeq (the first is trimmed to start at fromSeq), in order. */
  batches: ReadBatch[];
  /** Highest seq readers may see (single node: the durable seq). */
  hwm: number;
  /** Lowest seq still on disk (truncation removes older ones). */
  firstSeq: number;
}

/** `{ns}.shard.{n}.feed`: published by the shard's leader for every durable batch. */
export interface FeedMessage {
  v: 1;
  t: 'feed';
  shard: number;
  epoch: number;
  firstSeq: number;
  timestampNs: bigint;
  events: Uint8Array;
  hwm: number;
}

/**
 * `{ns}.shard.{n}.tail`: published (no reply) by a tail of shard n when it starts and every
 * TAIL_ANNOUNCE_MS while it runs. The shard's leader publishes the feed only while a tail
 * announced itself within FEED_INTEREST_MS: no tail, no feed encoded.
 */
export interface TailAnnounce {
  v: 1;
  t: 'tail';
  shard: number;
}

/** How often a tail announces itself, and how long the node keeps the feed going after one. */
export const TAIL_ANNOUNCE_MS = 1_000;
export const FEED_INTEREST_MS = 5_000;

/** `{ns}.shard.{n}.seek`: the first seq whose batch was sealed at or after timestampNs. */
export interface SeekRequest {
  v: 1;
  t: 'seek';
  shard: number;
  timestampNs: bigint;
}

export interface SeekReply {
  v: 1;
  t: 'sought';
  shard: number;
  /** hwm + 1 when every batch is older. */
  seq: number;
}

/** `{ns}.state`: CRDT signal state of one entity (the router picks the shard). */
export interface StateRequest {
  v: 1;
  t: 'state';
  entityId: string;
  /** Only these signal types; all when absent. */
  signalTypes?: number[];
}

export interface SignalStateView {
  signalType: number;
  name: string;
  score: number;
  count: number;
  /** PN counter value in units. */
  total: number;
  isHidden: boolean;
  lastUpdateNs: bigint;
}

export interface StateReply {
  v: 1;
  t: 'entity';
  entityId: string;
  shard: number;
  /** Highest seq folded into the state. */
  appliedSeq: number;
  signals: SignalStateView[];
}

/** `{ns}.info`: the shard map and limits a client needs to route and batch. */
export interface InfoRequest {
  v: 1;
  t: 'info';
}

// The shard map on the wire is the router's own description (src/shard-map.ts owns the type,
// so the top of src/ depends on no folder).
export type { RouterSpec };

export interface InfoReply {
  v: 1;
  t: 'info';
  namespace: string;
  router: RouterSpec;
  shards: number[];
  maxRequestEvents: number;
  maxRequestBytes: number;
}

/**
 * `{ns}.consumer.commit` (any node): a durable consumer's position in one shard — every seq
 * through `seq` was processed; a consumer resuming reads from seq + 1 (at-least-once).
 */
export interface CommitRequest {
  v: 1;
  t: 'commit';
  /** The consumer's name: 1..64 of A-Z a-z 0-9 _ -. */
  consumer: string;
  shard: number;
  seq: number;
}

export interface CommitReply {
  v: 1;
  t: 'committed';
  consumer: string;
  shard: number;
  seq: number;
}

/** `{ns}.consumer.position` (any node): a durable consumer's committed position in one shard. */
export interface PositionRequest {
  v: 1;
  t: 'position';
  consumer: string;
  shard: number;
}

export interface PositionReply {
  v: 1;
  t: 'positioned';
  consumer: string;
  shard: number;
  /** 0 when the consumer never committed in this shard. */
  seq: number;
}

/** `{ns}.status`: every node answers (no queue group). */
export interface StatusRequest {
  v: 1;
  t: 'status';
}

export interface ShardStatus {
  shard: number;
  role: 'leader' | 'follower';
  epoch: number;
  lastSeq: number;
  hwm: number;
  checkpointSeq: number;
  pendingEvents: number;
  segments: number;
  appliedSeq: number;
  entities: number;
  /** Oldest seq the log still holds (retention deletes whole segments before it). */
  firstSeq?: number;
  /** Bytes of log on disk. */
  logBytes?: number;
  /** Seq and size of the newest state snapshot file (0 when none yet). */
  snapshotSeq?: number;
  snapshotBytes?: number;
  /** The retention policy in force (0: off). */
  retentionMaxAgeMs?: number;
  retentionMaxBytes?: number;
  /**
   * Error code of a failed shard: a failed lane (no appends, reads go on), or a shard that
   * could not open (damage: see failureFile, failureOffset); absent when healthy.
   */
  failure?: string;
  failureMessage?: string;
  failureFile?: string;
  failureOffset?: number;
  /** Replicated shards: following, electing, preparing (leads, not yet serving), serving, failed. */
  phase?: string;
  /** Replicated shards: the node that leads the shard as far as this replica knows. */
  leader?: string;
  /** The leader only: each follower's durable seq as last reported (its lag is hwm − matchSeq). */
  followers?: FollowerStatus[];
  /** Replicated shards: this replica lost part of its log to damage and catches up from its leader before it votes again. */
  repairing?: boolean;
  /** Availability mode: orphan files this replica still has to merge into the leader's log. */
  orphanFiles?: number;
  /** Availability mode: bytes of orphan batches this replica sent to be merged since it started, and the events the leader appended of them. */
  orphanBytesSent?: number;
  orphanEventsMerged?: number;
}

export interface FollowerStatus {
  nodeId: string;
  matchSeq: number;
}

export interface StatusReply {
  v: 1;
  t: 'status';
  nodeId: string;
  /** The node's process id (older nodes do not send it). */
  pid?: number;
  uptimeMs: number;
  state: string;
  sessions: number;
  shards: ShardStatus[];
  /** Durable consumers' committed positions this node knows of (a cluster: every one; older nodes do not send it). */
  consumers?: ConsumerPositionStatus[];
}

export interface ConsumerPositionStatus {
  consumer: string;
  shard: number;
  seq: number;
}

export interface ErrorReply {
  v: 1;
  t: 'error';
  /** A stable ErrorCode (src/errors.ts). */
  code: string;
  message: string;
  details?: Record<string, unknown>;
}

export type Request = AppendRequest | ReadRequest | SeekRequest | StateRequest | InfoRequest | StatusRequest | TailAnnounce | CommitRequest | PositionRequest;
export type Reply = AppendReply | ReadReply | SeekReply | StateReply | InfoReply | StatusReply | CommitReply | PositionReply | ErrorReply;
export type Message = Request | Reply | FeedMessage;

/** Subjects under one namespace (a NATS token: letters, digits, `-`, `_`). */
export function subjects(namespace: string) {
  return {
    append: `${namespace}.append`,
    info: `${namespace}.info`,
    state: `${namespace}.state`,
    status: `${namespace}.status`,
    consumerCommit: `${namespace}.consumer.commit`,
    consumerPosition: `${namespace}.consumer.position`,
    shardAppend: (shard: number) => `${namespace}.shard.${shard}.append`,
    shardRead: (shard: number) => `${namespace}.shard.${shard}.read`,
    shardSeek: (shard: number) => `${namespace}.shard.${shard}.seek`,
    shardFeed: (shard: number) => `${namespace}.shard.${shard}.feed`,
    shardTail: (shard: number) => `${namespace}.shard.${shard}.tail`,
    /** Queue group of the nodes that answer any-node subjects. */
    nodesQueue: `${namespace}.nodes`,
    /** Queue group of the nodes that serve one shard. */
    shardQueue: (shard: number) => `${namespace}.shard.${shard}`,
  };
}

export type Subjects = ReturnType<typeof subjects>;

const NAMESPACE_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

export function isValidNamespace(namespace: string): boolean {
  return NAMESPACE_PATTERN.test(namespace);
}

/** A durable consumer's name: one token too (a subject's, and a KV key's), by the namespace's rule. */
export function isValidConsumerName(name: unknown): name is string {
  return typeof name === 'string' && NAMESPACE_PATTERN.test(name);
}
