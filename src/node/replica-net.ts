// Replication over the Transport (NATS in a cluster): the PeerNet a replica uses to reach the
// other replicas of its shards, and the subscriptions that answer them. Subjects and messages:
// src/transport/replication-codec.ts and docs/PROTOCOL.md ("Replication").

import type { Logger } from 'pino';
import { TidelogError, isTidelogError } from '../errors.ts';
import { encodeMessage, errorReply } from '../transport/codec.ts';
import {
  decodeCampaignNow,
  decodeCampaignNowReply,
  encodeCampaignNow,
  encodeCampaignNowReply,
  type CampaignNowRequest,
  decodeFetch,
  decodeFetchReply,
  decodePrepare,
  decodePrepareReply,
  decodePreVote,
  decodePreVoteReply,
  encodePreVote,
  encodePreVoteReply,
  type PreVoteRequest,
  decodeReplicate,
  decodeReplicateReply,
  encodeFetch,
  encodeFetchReply,
  encodePrepare,
  encodePrepareReply,
  encodeReplicate,
  encodeReplicateReply,
  replicationSubject,
  decodeInstall,
  decodeInstallReply,
  encodeInstall,
  encodeInstallReply,
  decodeMerge,
  decodeMergeReply,
  encodeMerge,
  encodeMergeReply,
  type MergeRequest,
  type FetchRequest,
  type InstallRequest,
  type ReplicationKind,
  type PrepareRequest,
  type ReplicateRequest,
} from '../transport/replication-codec.ts';
import type { Subscription, Transport, TransportMessage } from '../transport/transport.ts';
import type { PeerNet, ReplicaServer } from './election.ts';

export class TransportPeerNet implements PeerNet {
  constructor(
    private readonly transport: Transport,
    private readonly namespace: string,
    private readonly timeoutMs: number,
  ) {}

  async replicate(peer: string, request: ReplicateRequest) {
    const bytes = await this.transport.request(replicationSubject(this.namespace, request.shard, peer, 'append'), encodeReplicate(request), { timeoutMs: this.timeoutMs });
    return decodeReplicateReply(bytes);
  }

  async preVote(peer: string, request: PreVoteRequest) {
    const bytes = await this.transport.request(replicationSubject(this.namespace, request.shard, peer, 'prevote'), encodePreVote(request), { timeoutMs: this.timeoutMs });
    return decodePreVoteReply(bytes);
  }

  async prepare(peer: string, request: PrepareRequest) {
    const bytes = await this.transport.request(replicationSubject(this.namespace, request.shard, peer, 'prepare'), encodePrepare(request), { timeoutMs: this.timeoutMs });
    return decodePrepareReply(bytes);
  }

  async fetch(peer: string, request: FetchRequest) {
    const bytes = await this.transport.request(replicationSubject(this.namespace, request.shard, peer, 'fetch'), encodeFetch(request), { timeoutMs: this.timeoutMs });
    return decodeFetchReply(bytes);
  }

  async install(peer: string, request: InstallRequest) {
    const bytes = await this.transport.request(replicationSubject(this.namespace, request.shard, peer, 'install'), encodeInstall(request), { timeoutMs: this.timeoutMs });
    return decodeInstallReply(bytes);
  }

  async merge(peer: string, request: MergeRequest) {
    // A merge waits for the leader's fsync of what it appends: a longer wait than a heartbeat's.
    const bytes = await this.transport.request(replicationSubject(this.namespace, request.shard, peer, 'merge'), encodeMerge(request), { timeoutMs: this.timeoutMs * 5 });
    return decodeMergeReply(bytes);
  }

  async campaignNow(peer: string, request: CampaignNowRequest): Promise<void> {
    const bytes = await this.transport.request(replicationSubject(this.namespace, request.shard, peer, 'campaign'), encodeCampaignNow(request), { timeoutMs: this.timeoutMs });
    decodeCampaignNowReply(bytes);
  }
}

/**
 * Answers replication requests for this node's replica of `shard` until the returned function
 * is called. A request that cannot be decoded or fails is answered with an ErrorReply.
 */
export function serveReplica(transport: Transport, namespace: string, nodeId: string, server: ReplicaServer, logger: Logger): () => void {
  const shard = server.shard;
  const subscriptions: Subscription[] = [];
  const answer = (message: TransportMessage, work: () => Promise<Uint8Array>): void => {
    const reply = message.reply;
    if (reply === null) return;
    work().then(
      (bytes) => publish(reply, bytes),
      (error: unknown) => {
        if (!isTidelogError(error)) logger.error({ err: error, shard }, 'replication request failed unexpectedly');
        else logger.debug({ err: error, shard }, 'replication request refused');
        publish(reply, encodeMessage(errorReply(error)));
      },
    );
  };
  const publish = (subject: string, bytes: Uint8Array): void => {
    try {
      transport.publish(subject, bytes);
    } catch (error) {
      // A reply that cannot be sent (too large, disconnected) leaves the asker to time out.
      logger.warn({ err: error, shard, bytes: bytes.byteLength }, 'replication reply not sent');
    }
  };
  const subscribe = (kind: ReplicationKind, handle: (data: Uint8Array) => Promise<Uint8Array>): void => {
    subscriptions.push(transport.subscribe(replicationSubject(namespace, shard, nodeId, kind), (message) => answer(message, () => handle(message.data))));
  };
  subscribe('append', async (data) => encodeReplicateReply(await server.replicate(checked(decodeReplicate(data), shard))));
  subscribe('prevote', async (data) => encodePreVoteReply(await server.preVote(checked(decodePreVote(data), shard))));
  subscribe('prepare', async (data) => encodePrepareReply(await server.prepare(checked(decodePrepare(data), shard))));
  subscribe('fetch', async (data) => encodeFetchReply(await server.fetch(checked(decodeFetch(data), shard))));
  subscribe('install', async (data) => encodeInstallReply(await server.install(checked(decodeInstall(data), shard))));
  subscribe('merge', async (data) => encodeMergeReply(await server.merge(checked(decodeMerge(data), shard))));
  subscribe('campaign', async (data) => {
    await server.campaignNow(checked(decodeCampaignNow(data), shard));
    return encodeCampaignNowReply();
  });
  return () => {
    for (const subscription of subscriptions) subscription.unsubscribe();
  };
}

function checked<T extends { shard: number }>(request: T, shard: number): T {
  if (request.shard !== shard) {
    throw new TidelogError('WRONG_SHARD', `request for shard ${request.shard} on the subject of shard ${shard}`, { details: { shard, requested: request.shard } });
  }
  return request;
}
