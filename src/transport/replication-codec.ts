// The messages replicas of one shard send each other (docs/PROTOCOL.md, "Replication"), their
// subjects and their msgpack encoding. Invariant, as for codec.ts: a decoder returns a message
// whose every field has its documented type and range, or throws DECODE_FAILED /
// UNSUPPORTED_VERSION; sealed batches come back as views of the input (the WAL checks them).
//
//   {ns}.repl.{shard}.{node}.append   leader → follower   ReplicateRequest → ReplicateReply
//   {ns}.repl.{shard}.{node}.prevote  would-be candidate → replica  PreVoteRequest → PreVoteReply
//   {ns}.repl.{shard}.{node}.prepare  candidate → replica PrepareRequest   → PrepareReply
//   {ns}.repl.{shard}.{node}.fetch    candidate → replica FetchRequest     → FetchReply
//   {ns}.repl.{shard}.{node}.campaign stopping leader → follower  CampaignNowRequest → ok
//   {ns}.repl.{shard}.{node}.install  leader → follower   InstallRequest   → InstallReply
//   {ns}.repl.{shard}.{node}.merge    replica → leader    MergeRequest     → MergeReply  (availability mode)
//
// A request names the node it is for in its subject, so no queue group is involved: only
// that node's shard replica answers; a node that does not hold the shard leaves nothing
// subscribed there and the sender sees NO_RESPONDERS.

import { TidelogError } from '../errors.ts';
import { remoteError } from './codec.ts';
import { PROTOCOL_VERSION } from './messages.ts';
import { U53_MAX, openMessage, packWire, type Fields } from './wire-fields.ts';

export interface ReplicateRequest {
  shard: number;
  epoch: number;
  leaderId: string;
  /** The leader's commit point. */
  hwm: number;
  /**
   * The leader's durable end when it began to lead: a follower confirms the epoch only once
   * it holds the leader's log up to here (then it holds everything committed before the epoch).
   */
  leadEnd: number;
  prevSeq: number;
  prevEpoch: number;
  /** Sealed batches, consecutive, the first starting at prevSeq + 1. Empty: a heartbeat. */
  batches: Uint8Array[];
  /**
   * The lowest seq a replica of the shard is known to hold (the leader's view): retention keeps
   * everything above it, so whoever leads next can still catch that replica up.
   */
  retainFrom?: number;
}

export type ReplicateReply =
  /** matchSeq: the follower's log equals the leader's up to here, durable (prevSeq + what was sent). */
  | { kind: 'ok'; matchSeq: number }
  | { kind: 'gap'; expectedSeq: number }
  | { kind: 'diverged'; seq: number; epoch: number }
  | { kind: 'fenced'; epoch: number };

/**
 * Before it claims an epoch, a replica that heard no leader asks the others whether they heard
 * none either (Raft's pre-vote): nothing is recorded, so a replica that was cut off cannot
 * depose a leader the others still follow.
 */
export interface PreVoteRequest {
  shard: number;
  /** The asker's recorded epoch (for logs and status; the grant does not depend on it). */
  epoch: number;
  candidateId: string;
}

export interface PreVoteReply {
  /** True: this replica heard from no leader for a leader timeout and leads nothing itself. */
  granted: boolean;
  epoch: number;
  /** The leader this replica heard from last (null: none since it started). */
  leaderId: string | null;
}

/** A candidate that claimed `epoch` asks a replica to record it and tell its log's end. */
export interface PrepareRequest {
  shard: number;
  epoch: number;
  candidateId: string;
}

export type PrepareReply =
  | { kind: 'ok'; confirmedEpoch: number; durableSeq: number; committedSeq: number }
  | { kind: 'fenced'; epoch: number };

/** A candidate of `epoch` reads the log of a replica more advanced than itself. */
export interface FetchRequest {
  shard: number;
  epoch: number;
  fromSeq: number;
  maxBytes: number;
  /** When set: also tell where this epoch (or the largest before it) ends in your log. */
  epochEndOf?: number;
  /**
   * Read-only (`tidelog wal verify --repair-from`): committed batches only, and the replica
   * records nothing (epoch ignored): what every replica holds the same bytes of.
   */
  committedOnly?: boolean;
}

export type FetchReply =
  | {
      kind: 'ok';
      /** Sealed batches from the one holding fromSeq, up to the durable end. */
      batches: Uint8Array[];
      /** The epoch of the batch before the first one sent (0 for seq 0). */
      prevEpoch: number;
      durableSeq: number;
      committedSeq: number;
      /** The end of epochEndOf's epoch here (-1: no such epoch). */
      epochEndSeq?: number;
    }
  | { kind: 'fenced'; epoch: number };

/** A stopping leader hands its shard to the follower that holds its whole log: campaign now. */
export interface CampaignNowRequest {
  shard: number;
  epoch: number;
  leaderId: string;
}

/**
 * A leader sends its newest snapshot file, part by part, to a follower whose next seq its
 * retention deleted (src/wal/snapshot-install.ts); the follower's log is then replaced by it.
 */
export interface InstallRequest {
  shard: number;
  epoch: number;
  leaderId: string;
  /** The snapshot's seq, and the epoch of the leader's batch there. */
  seq: number;
  epochAtSeq: number;
  /** The leader's epoch starts through `seq`, with the part at offset 0 (snapshot-install.ts). */
  epochStarts?: ReadonlyArray<{ epoch: number; firstSeq: number }>;
  /** The whole snapshot file's length, and where `bytes` go in it. */
  fileBytes: number;
  offset: number;
  bytes: Uint8Array;
}

export type InstallReply =
  /** Send from `offset` next (0: start over). */
  | { kind: 'next'; offset: number }
  /** The log now ends at `matchSeq`, equal to the leader's (installed, or no install needed). */
  | { kind: 'done'; matchSeq: number }
  | { kind: 'fenced'; epoch: number };

export type ReplicationKind = 'append' | 'prevote' | 'prepare' | 'fetch' | 'campaign' | 'install' | 'merge';

/**
 * Availability mode: a replica sends the leader its orphan batches — durable batches it cut
 * from its log, which it may have acknowledged while cut off — to be re-appended once each.
 */
export interface MergeRequest {
  shard: number;
  /** The sender's recorded epoch (a leader of an older one refuses: NOT_LEADER). */
  epoch: number;
  fromNode: string;
  batches: Uint8Array[];
}

/** What the leader did with them (src/node/orphan-merge.ts); sent once what it appended is durable there. */
export interface MergeReply {
  batches: number;
  inLog: number;
  alreadyMerged: number;
  appended: number;
  events: number;
  droppedEvents: number;
}

export function replicationSubject(namespace: string, shard: number, nodeId: string, kind: ReplicationKind): string {
  return `${namespace}.repl.${shard}.${nodeId}.${kind}`;
}

/** Most batches one replicate or fetch message carries. */
const MAX_BATCHES = 65_536;

export function encodeReplicate(request: ReplicateRequest): Uint8Array {
  return packWire({ v: PROTOCOL_VERSION, t: 'replicate', ...request }, 'replicate');
}

export function decodeReplicate(bytes: Uint8Array): ReplicateRequest {
  const fields = openMessage(bytes, 'replicate', 'DECODE_FAILED');
  return {
    shard: fields.integer('shard', 0, 65535),
    epoch: seq(fields, 'epoch'),
    leaderId: fields.string('leaderId'),
    hwm: seq(fields, 'hwm'),
    leadEnd: seq(fields, 'leadEnd'),
    prevSeq: seq(fields, 'prevSeq'),
    prevEpoch: fields.integer('prevEpoch', -1, U53_MAX),
    batches: bins(fields, 'batches'),
    ...(fields.has('retainFrom') ? { retainFrom: seq(fields, 'retainFrom') } : {}),
  };
}

export function encodeReplicateReply(reply: ReplicateReply): Uint8Array {
  return packWire({ v: PROTOCOL_VERSION, t: 'replicated', ...reply }, 'replicated');
}

export function decodeReplicateReply(bytes: Uint8Array): ReplicateReply {
  const fields = openReply(bytes, 'replicated');
  const kind = fields.oneOf('kind', ['ok', 'gap', 'diverged', 'fenced'] as const);
  switch (kind) {
    case 'ok':
      return { kind, matchSeq: seq(fields, 'matchSeq') };
    case 'gap':
      return { kind, expectedSeq: seq(fields, 'expectedSeq') };
    case 'diverged':
      return { kind, seq: seq(fields, 'seq'), epoch: fields.integer('epoch', -1, U53_MAX) };
    case 'fenced':
      return { kind, epoch: seq(fields, 'epoch') };
  }
}

export function encodePreVote(request: PreVoteRequest): Uint8Array {
  return packWire({ v: PROTOCOL_VERSION, t: 'prevote', ...request }, 'prevote');
}

export function decodePreVote(bytes: Uint8Array): PreVoteRequest {
  const fields = openMessage(bytes, 'prevote', 'DECODE_FAILED');
  return { shard: fields.integer('shard', 0, 65535), epoch: seq(fields, 'epoch'), candidateId: fields.string('candidateId') };
}

export function encodePreVoteReply(reply: PreVoteReply): Uint8Array {
  return packWire({ v: PROTOCOL_VERSION, t: 'prevoted', ...reply, leaderId: reply.leaderId ?? '' }, 'prevoted');
}

export function decodePreVoteReply(bytes: Uint8Array): PreVoteReply {
  const fields = openReply(bytes, 'prevoted');
  const leaderId = fields.has('leaderId') ? fields.string('leaderId') : '';
  return { granted: fields.boolean('granted'), epoch: seq(fields, 'epoch'), leaderId: leaderId === '' ? null : leaderId };
}

export function encodePrepare(request: PrepareRequest): Uint8Array {
  return packWire({ v: PROTOCOL_VERSION, t: 'prepare', ...request }, 'prepare');
}

export function decodePrepare(bytes: Uint8Array): PrepareRequest {
  const fields = openMessage(bytes, 'prepare', 'DECODE_FAILED');
  return { shard: fields.integer('shard', 0, 65535), epoch: seq(fields, 'epoch'), candidateId: fields.string('candidateId') };
}

export function encodePrepareReply(reply: PrepareReply): Uint8Array {
  return packWire({ v: PROTOCOL_VERSION, t: 'prepared', ...reply }, 'prepared');
}

export function decodePrepareReply(bytes: Uint8Array): PrepareReply {
  const fields = openReply(bytes, 'prepared');
  const kind = fields.oneOf('kind', ['ok', 'fenced'] as const);
  if (kind === 'fenced') return { kind, epoch: seq(fields, 'epoch') };
  return { kind, confirmedEpoch: seq(fields, 'confirmedEpoch'), durableSeq: seq(fields, 'durableSeq'), committedSeq: seq(fields, 'committedSeq') };
}

export function encodeFetch(request: FetchRequest): Uint8Array {
  return packWire({ v: PROTOCOL_VERSION, t: 'fetch', ...request }, 'fetch');
}

export function decodeFetch(bytes: Uint8Array): FetchRequest {
  const fields = openMessage(bytes, 'fetch', 'DECODE_FAILED');
  return {
    shard: fields.integer('shard', 0, 65535),
    epoch: seq(fields, 'epoch'),
    fromSeq: fields.integer('fromSeq', 1, U53_MAX),
    maxBytes: fields.integer('maxBytes', 1, 64 << 20),
    ...(fields.has('epochEndOf') ? { epochEndOf: seq(fields, 'epochEndOf') } : {}),
    ...(fields.has('committedOnly') ? { committedOnly: fields.boolean('committedOnly') } : {}),
  };
}

export function encodeFetchReply(reply: FetchReply): Uint8Array {
  return packWire({ v: PROTOCOL_VERSION, t: 'fetched', ...reply }, 'fetched');
}

export function decodeFetchReply(bytes: Uint8Array): FetchReply {
  const fields = openReply(bytes, 'fetched');
  const kind = fields.oneOf('kind', ['ok', 'fenced'] as const);
  if (kind === 'fenced') return { kind, epoch: seq(fields, 'epoch') };
  return {
    kind,
    batches: bins(fields, 'batches'),
    prevEpoch: fields.integer('prevEpoch', -1, U53_MAX),
    durableSeq: seq(fields, 'durableSeq'),
    committedSeq: seq(fields, 'committedSeq'),
    ...(fields.has('epochEndSeq') ? { epochEndSeq: fields.integer('epochEndSeq', -1, U53_MAX) } : {}),
  };
}

/** Most bytes of snapshot file one install request carries (keeps it under NATS's 1 MiB). */
export const MAX_INSTALL_PART_BYTES = 512 << 10;

/** Most epoch starts an install carries (the newest; ≤ 16 bytes each, so the part still fits). */
export const MAX_INSTALL_EPOCH_STARTS = 16_384;

export function encodeInstall(request: InstallRequest): Uint8Array {
  const { epochStarts, ...rest } = request;
  // On the wire the table is flat: [epoch, firstSeq, epoch, firstSeq, …].
  const table = epochStarts === undefined ? {} : { epochStarts: epochStarts.flatMap((start) => [start.epoch, start.firstSeq]) };
  return packWire({ v: PROTOCOL_VERSION, t: 'install', ...rest, ...table }, 'install');
}

export function decodeInstall(bytes: Uint8Array): InstallRequest {
  const fields = openMessage(bytes, 'install', 'DECODE_FAILED');
  const part = fields.bin('bytes');
  if (part.byteLength > MAX_INSTALL_PART_BYTES) {
    throw new TidelogError('DECODE_FAILED', `bytes must hold at most ${MAX_INSTALL_PART_BYTES} bytes, got ${part.byteLength}`, { details: { field: 'bytes' } });
  }
  return {
    shard: fields.integer('shard', 0, 65535),
    epoch: seq(fields, 'epoch'),
    leaderId: fields.string('leaderId'),
    seq: fields.integer('seq', 1, U53_MAX),
    epochAtSeq: seq(fields, 'epochAtSeq'),
    ...(fields.has('epochStarts') ? { epochStarts: epochStartList(fields) } : {}),
    fileBytes: seq(fields, 'fileBytes'),
    offset: seq(fields, 'offset'),
    bytes: part,
  };
}

/** An install's flat epoch table, as pairs (their order is the receiver's to check). */
function epochStartList(fields: Fields): Array<{ epoch: number; firstSeq: number }> {
  const flat = fields.array('epochStarts', 2 * MAX_INSTALL_EPOCH_STARTS);
  if (flat.length % 2 !== 0) throw fields.valueFault('epochStarts', 'must hold (epoch, firstSeq) pairs');
  const starts: Array<{ epoch: number; firstSeq: number }> = [];
  for (let at = 0; at < flat.length; at += 2) {
    starts.push({ epoch: fields.at('epochStarts', at, flat[at]).integer(0, U53_MAX), firstSeq: fields.at('epochStarts', at + 1, flat[at + 1]).integer(1, U53_MAX) });
  }
  return starts;
}

export function encodeInstallReply(reply: InstallReply): Uint8Array {
  return packWire({ v: PROTOCOL_VERSION, t: 'installed', ...reply }, 'installed');
}

export function decodeInstallReply(bytes: Uint8Array): InstallReply {
  const fields = openReply(bytes, 'installed');
  const kind = fields.oneOf('kind', ['next', 'done', 'fenced'] as const);
  switch (kind) {
    case 'next':
      return { kind, offset: seq(fields, 'offset') };
    case 'done':
      return { kind, matchSeq: seq(fields, 'matchSeq') };
    case 'fenced':
      return { kind, epoch: seq(fields, 'epoch') };
  }
}

export function encodeMerge(request: MergeRequest): Uint8Array {
  return packWire({ v: PROTOCOL_VERSION, t: 'merge', ...request }, 'merge');
}

export function decodeMerge(bytes: Uint8Array): MergeRequest {
  const fields = openMessage(bytes, 'merge', 'DECODE_FAILED');
  return { shard: fields.integer('shard', 0, 65535), epoch: seq(fields, 'epoch'), fromNode: fields.string('fromNode'), batches: bins(fields, 'batches') };
}

export function encodeMergeReply(reply: MergeReply): Uint8Array {
  return packWire({ v: PROTOCOL_VERSION, t: 'merged', ...reply }, 'merged');
}

export function decodeMergeReply(bytes: Uint8Array): MergeReply {
  const fields = openReply(bytes, 'merged');
  return {
    batches: seq(fields, 'batches'),
    inLog: seq(fields, 'inLog'),
    alreadyMerged: seq(fields, 'alreadyMerged'),
    appended: seq(fields, 'appended'),
    events: seq(fields, 'events'),
    droppedEvents: seq(fields, 'droppedEvents'),
  };
}

/** A reply of `type`, or the ErrorReply the replica sent instead, thrown as its TidelogError. */
function openReply(bytes: Uint8Array, type: string): Fields {
  const fields = openMessage(bytes, type, 'DECODE_FAILED', 'error');
  if (fields.get('t') === 'error') throw remoteError(fields);
  return fields;
}

export function encodeCampaignNow(request: CampaignNowRequest): Uint8Array {
  return packWire({ v: PROTOCOL_VERSION, t: 'campaign', ...request }, 'campaign');
}

export function decodeCampaignNow(bytes: Uint8Array): CampaignNowRequest {
  const fields = openMessage(bytes, 'campaign', 'DECODE_FAILED');
  return { shard: fields.integer('shard', 0, 65535), epoch: seq(fields, 'epoch'), leaderId: fields.string('leaderId') };
}

export function encodeCampaignNowReply(): Uint8Array {
  return packWire({ v: PROTOCOL_VERSION, t: 'campaigning' }, 'campaigning');
}

export function decodeCampaignNowReply(bytes: Uint8Array): void {
  openReply(bytes, 'campaigning');
}

function seq(fields: Fields, name: string): number {
  return fields.integer(name, 0, U53_MAX);
}

function bins(fields: Fields, name: string): Uint8Array[] {
  const items = fields.array(name, MAX_BATCHES);
  return items.map((item, index) => {
    if (!fields.isBin(item)) throw new TidelogError('DECODE_FAILED', `${name}[${index}] must be a bin`, { details: { field: `${name}[${index}]` } });
    return item;
  });
}
