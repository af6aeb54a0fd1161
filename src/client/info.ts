// Asking the cluster for its shard map and limits (`{ns}.info`), the first thing a producer
// does. Invariant: resolves with a validated InfoReply whose router spec builds, or rejects
// with the last failure once the deadline passed (NO_RESPONDERS: no node up or a wrong
// namespace; TIMEOUT: nodes up but silent).

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
