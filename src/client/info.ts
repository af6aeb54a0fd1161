// Asking the cluster for its shard map and limits (`{ns}.info`), the first thing a producer
// does, and what a consumer learns before its first read. Invariant: resolves with a
// validated InfoReply whose router spec builds, or rejects with the last failure once the
// deadline passed (NO_RESPONDERS: no node up or a wrong namespace; TIMEOUT: nodes up but
// silent).

import { TidelogError } from '../errors.ts';
import { decodeReply, encodeMessage } from '../transport/codec.ts';
import type { InfoReply, Subjects } from '../transport/messages.ts';
import type { Transport } from '../transport/transport.ts';
import { requestBytes, retrying, type BackoffOptions, type ClientLogger } from './retry.ts';

export interface FetchInfoOptions extends BackoffOptions {
  requestTimeoutMs: number;
  /** Clock ms after which no new try starts. */
  deadlineMs: number;
  nowMs: () => number;
  signal?: AbortSignal;
  logger?: ClientLogger;
}

export function fetchInfo(transport: Transport, subjects: Subjects, options: FetchInfoOptions): Promise<InfoReply> {
  const request = encodeMessage({ v: 1, t: 'info' });
  return retrying(
    async () => {
      const reply = decodeReply(await requestBytes(transport, subjects.info, request, options.requestTimeoutMs), 'info');
      if (reply.shards.length === 0) throw new TidelogError('DECODE_FAILED', 'info reply lists no shards');
      return reply;
    },
    {
      ...options,
      onRetry: (error, attempt) => options.logger?.debug({ code: error.code, attempt }, 'info not answered yet; retrying'),
    },
  );
}

/**
 * The shard map and limits as a client last heard them, asked on first use and then kept:
 * they change only when nodes restart with another config. Why a consumer needs them before
 * it reads: a shard outside the map has no node subscribed to its subjects, and NO_RESPONDERS
 * alone cannot tell that from a failover, which is retried. A shard missing from the kept map
 * is asked about again; a kept maxRequestEvents that a restart lowered does no harm (a read's
 * maxEvents is an upper bound the node clamps to its own limit).
 */
export class ClusterView {
  private info: InfoReply | null = null;
  private shards: ReadonlySet<number> = new Set();

  constructor(
    private readonly transport: Transport,
    private readonly subjects: Subjects,
    private readonly options: Omit<FetchInfoOptions, 'deadlineMs' | 'signal'>,
  ) {}

  /** Asks the cluster now, retrying until deadlineMs, and keeps the answer. */
  async refresh(deadlineMs: number, signal?: AbortSignal): Promise<InfoReply> {
    const info = await fetchInfo(this.transport, this.subjects, { ...this.options, deadlineMs, signal });
    this.info = info;
    this.shards = new Set(info.shards);
    return info;
  }

  /**
   * The info a request to `shard` goes by. A shard missing from the kept map is asked about
   * once more (the map may have grown since), then rejected UNKNOWN_SHARD.
   */
  async forShard(shard: number, deadlineMs: number, signal?: AbortSignal): Promise<InfoReply> {
    if (this.info !== null && this.shards.has(shard)) return this.info;
    const info = await this.refresh(deadlineMs, signal);
    if (!this.shards.has(shard)) {
      throw new TidelogError('UNKNOWN_SHARD', `shard ${shard} is not in the cluster's shard map (${info.shards.length} shards)`, {
        details: { shard },
      });
    }
    return info;
  }
}
