// The node's endpoints: decode a request, hand it to the shard host(s), encode the answer.
// Invariants: every request that carries a reply subject gets exactly one answer — a reply or
// an ErrorReply with a stable code — and nothing a request does can stop the node: a decode
// failure, a bad value or a failed shard is answered and counted, never thrown past here.
// Requests in flight are bounded (maxInFlightRequests → OVERLOADED).

import type { Logger } from 'pino';
import { TidelogError, isTidelogError } from '../errors.ts';
import { EVENT_BYTES } from '../event.ts';
import type { ShardRouter } from '../shard-map.ts';
import { decodeReply, decodeRequest, encodeMessage, errorReply, routeOf } from '../transport/codec.ts';
import type {
  AckPart,
  AppendReply,
  CommitReply,
  InfoReply,
  PositionReply,
  ReadReply,
  SeekReply,
  StateReply,
  StatusReply,
  Subjects,
} from '../transport/messages.ts';
import type { Subscription, Transport, TransportMessage } from '../transport/transport.ts';
import type { ConsumerStore } from '../cluster/consumer-store.ts';
import type { NodeMetrics } from './metrics.ts';
import type { ShardHost } from './shard-host.ts';

export interface RequestLimits {
  maxRequestEvents: number;
  maxRequestBytes: number;
  maxInFlightRequests: number;
}

export interface EndpointContext {
  transport: Transport;
  subjects: Subjects;
  router: ShardRouter;
  limits: RequestLimits;
  metrics: NodeMetrics;
  logger: Logger;
  /**
   * The local host serving `shard`; throws the error to answer with (unknown, not open, not
   * led; for appends also a failed lane — reads of a failed lane go on).
   */
  hostFor(shard: number, purpose: 'append' | 'read'): ShardHost;
  /** The shards this node holds: their per-shard subjects are subscribed here. */
  shards: readonly number[];
  /**
   * Replicated shards: `{ns}.shard.{n}.append` is subscribed only while this node serves as
   * the shard's leader (setServing), so NATS routes producers to the leader; and the parts of
   * an any-node append for shards led elsewhere are forwarded there. Standalone: false.
   */
  clustered: boolean;
  /** How long a forwarded part may take (clustered only). */
  forwardTimeoutMs?: number;
  /** A shard's lane failed under a request: the supervisor takes it out of service. */
  shardFailed(shard: number, error: Error): void;
  info(): InfoReply;
  status(): StatusReply;
  /** Durable consumers' positions (src/cluster/consumer-store.ts). */
  consumers: ConsumerStore;
}

type Endpoint = 'append' | 'shard-append' | 'read' | 'seek' | 'state' | 'info' | 'status' | 'commit' | 'position';

export interface Endpoints {
  /** Unsubscribes every endpoint. */
  stop(): void;
  /** Clustered: subscribes (or drops) the shard's append subject as this node starts (or stops) serving it. */
  setServing(shard: number, serving: boolean): void;
}

/** Subscribes every endpoint. */
export function serveEndpoints(context: EndpointContext): Endpoints {
  const { transport, subjects, router } = context;
  let inFlight = 0;
  const subscriptions: Subscription[] = [];
  const appendSubscriptions = new Map<number, Subscription>();
  let isStopped = false;

  const answer = (endpoint: Endpoint, message: TransportMessage, handle: () => Promise<Uint8Array> | Uint8Array): void => {
    const reply = message.reply;
    if (reply === null) {
      // Nobody to tell the outcome to: doing the work would only hide a client bug.
      context.metrics.requestErrors.inc({ endpoint, code: 'NO_REPLY_SUBJECT' });
      return;
    }
    if (inFlight >= context.limits.maxInFlightRequests) {
      send(endpoint, reply, new TidelogError('OVERLOADED', `node has ${inFlight} requests in flight, limit ${context.limits.maxInFlightRequests}`));
      return;
    }
    inFlight++;
    let result: Promise<Uint8Array>;
    try {
      result = Promise.resolve(handle());
    } catch (error) {
      result = Promise.reject(error as Error);
    }
    result.then(
      (bytes) => {
        inFlight--;
        publishReply(reply, bytes);
      },
      (error: unknown) => {
        inFlight--;
        send(endpoint, reply, error);
      },
    );
  };

  const publishReply = (reply: string, bytes: Uint8Array): void => {
    try {
      transport.publish(reply, bytes);
    } catch (error) {
      // Closed or disconnected beyond the client's buffer: the requester times out and retries.
      context.logger.debug({ err: error }, 'reply not sent');
    }
  };

  const send = (endpoint: Endpoint, reply: string, error: unknown): void => {
    const wire = errorReply(error);
    context.metrics.requestErrors.inc({ endpoint, code: wire.code });
    if (!isTidelogError(error)) context.logger.error({ err: error, endpoint }, 'request failed unexpectedly');
    publishReply(reply, encodeMessage(wire));
  };

  /** A part of an any-node append for a shard led elsewhere: its leader answers it. */
  const forwardToShard = async (shard: number, packed: Uint8Array) => {
    const bytes = await transport.request(subjects.shardAppend(shard), encodeMessage({ v: 1, t: 'append', shard, events: packed }), {
      timeoutMs: context.forwardTimeoutMs ?? 5_000,
    });
    const reply = decodeReply(bytes, 'appended');
    return { part: reply.parts[0], outcome: reply.outcome };
  };

  /** `mayForward`: the any-node endpoint only (a per-shard request is never forwarded again). */
  const appendToShard = async (shard: number, packed: Uint8Array, request: Parameters<ShardHost['append']>[1], mayForward = false) => {
    if (mayForward && context.clustered && !appendSubscriptions.has(shard)) return forwardToShard(shard, packed);
    const host = context.hostFor(shard, 'append');
    const startedNs = process.hrtime.bigint();
    try {
      const outcome = await host.append(packed, request);
      context.metrics.eventsAppended.inc({ shard: String(shard) }, outcome.written);
      if (outcome.outcome === 'new') {
        const duplicates = packed.byteLength / EVENT_BYTES - outcome.written;
        if (duplicates > 0) context.metrics.duplicatesSkipped.inc({ shard: String(shard) }, duplicates);
      }
      context.metrics.observeAppend(shard, Number(process.hrtime.bigint() - startedNs) / 1e9);
      return { part: { shard, epoch: host.epoch, runs: outcome.runs } satisfies AckPart, outcome: outcome.outcome };
    } catch (error) {
      if (host.failure !== null) context.shardFailed(shard, host.failure);
      throw error;
    }
  };

  const subscribe = (subject: string, queue: string | undefined, handler: (message: TransportMessage) => void): void => {
    subscriptions.push(transport.subscribe(subject, handler, queue === undefined ? undefined : { queue }));
  };

  subscribe(subjects.append, subjects.nodesQueue, (message) =>
    answer('append', message, async () => {
      const request = decodeRequest(message.data, 'append', context.limits);
      if (request.session !== undefined) {
        throw new TidelogError('BAD_REQUEST', `sessions are per shard: send them to ${subjects.shardAppend(0).replace('.0.', '.<n>.')}`);
      }
      context.metrics.requestEvents.observe(request.events.byteLength / EVENT_BYTES);
      const split = router.split(request.events);
      const results = await Promise.all(split.shards.map((shard, index) => appendToShard(shard, split.parts[index], undefined, true)));
      const reply: AppendReply = { v: 1, t: 'appended', parts: results.map((result) => result.part), outcome: 'new' };
      if (split.route !== null) reply.route = routeOf(split.route);
      context.metrics.requests.inc({ endpoint: 'append', outcome: 'new' });
      return encodeMessage(reply);
    }),
  );

  const shardAppendHandler = (shard: number) => (message: TransportMessage) =>
    answer('shard-append', message, async () => {
      const request = decodeRequest(message.data, 'append', context.limits);
      checkSubjectShard(request.shard, shard);
      checkEventsRouteTo(router, request.events, shard);
      context.metrics.requestEvents.observe(request.events.byteLength / EVENT_BYTES);
      const { part, outcome } = await appendToShard(shard, request.events, request.session);
      context.metrics.requests.inc({ endpoint: 'shard-append', outcome });
      const reply: AppendReply = { v: 1, t: 'appended', parts: [part], outcome };
      return encodeMessage(reply);
    });

  for (const shard of context.shards) {
    if (!context.clustered) subscribe(subjects.shardAppend(shard), subjects.shardQueue(shard), shardAppendHandler(shard));
    subscribe(subjects.shardRead(shard), subjects.shardQueue(shard), (message) =>
      answer('read', message, async () => {
        const request = decodeRequest(message.data, 'read', context.limits);
        checkSubjectShard(request.shard, shard);
        const page = await context.hostFor(shard, 'read').read(request.fromSeq, request.maxEvents);
        const reply: ReadReply = { v: 1, t: 'batches', shard, ...page };
        context.metrics.requests.inc({ endpoint: 'read', outcome: 'ok' });
        return encodeMessage(reply);
      }),
    );
    // Every node serving the shard hears a tail (no queue group); nothing is answered.
    subscribe(subjects.shardTail(shard), undefined, (message) => {
      try {
        const announce = decodeRequest(message.data, 'tail', context.limits);
        checkSubjectShard(announce.shard, shard);
        context.hostFor(shard, 'read').wantFeed();
      } catch (error) {
        context.logger.debug({ err: error, shard }, 'tail announce ignored');
      }
    });
    subscribe(subjects.shardSeek(shard), subjects.shardQueue(shard), (message) =>
      answer('seek', message, async () => {
        const request = decodeRequest(message.data, 'seek', context.limits);
        checkSubjectShard(request.shard, shard);
        const reply: SeekReply = { v: 1, t: 'sought', shard, seq: await context.hostFor(shard, 'read').seek(request.timestampNs) };
        context.metrics.requests.inc({ endpoint: 'seek', outcome: 'ok' });
        return encodeMessage(reply);
      }),
    );
  }

  subscribe(subjects.state, subjects.nodesQueue, (message) =>
    answer('state', message, () => {
      const request = decodeRequest(message.data, 'state', context.limits);
      const entityId = BigInt(request.entityId);
      const shard = router.shardOf(entityId);
      const host = context.hostFor(shard, 'read');
      const reply: StateReply = {
        v: 1,
        t: 'entity',
        entityId: request.entityId,
        shard,
        appliedSeq: host.state.appliedSeq,
        signals: host.query(entityId, request.signalTypes),
      };
      context.metrics.requests.inc({ endpoint: 'state', outcome: 'ok' });
      return encodeMessage(reply);
    }),
  );

  subscribe(subjects.info, subjects.nodesQueue, (message) =>
    answer('info', message, () => {
      decodeRequest(message.data, 'info', context.limits);
      context.metrics.requests.inc({ endpoint: 'info', outcome: 'ok' });
      return encodeMessage(context.info());
    }),
  );

  /** UNKNOWN_SHARD unless `shard` is in the shard map. */
  const checkMapped = (shard: number): void => {
    if (!router.shards.includes(shard)) throw new TidelogError('UNKNOWN_SHARD', `shard ${shard} is not in the shard map`, { details: { shard } });
  };

  // Durable consumers' positions: any node answers (the store is the cluster's, or the only node's).
  subscribe(subjects.consumerCommit, subjects.nodesQueue, (message) =>
    answer('commit', message, async () => {
      const request = decodeRequest(message.data, 'commit', context.limits);
      checkMapped(request.shard);
      await context.consumers.commit(request.consumer, request.shard, request.seq);
      context.metrics.requests.inc({ endpoint: 'commit', outcome: 'ok' });
      const reply: CommitReply = { v: 1, t: 'committed', consumer: request.consumer, shard: request.shard, seq: request.seq };
      return encodeMessage(reply);
    }),
  );

  subscribe(subjects.consumerPosition, subjects.nodesQueue, (message) =>
    answer('position', message, async () => {
      const request = decodeRequest(message.data, 'position', context.limits);
      checkMapped(request.shard);
      const seq = await context.consumers.position(request.consumer, request.shard);
      context.metrics.requests.inc({ endpoint: 'position', outcome: 'ok' });
      const reply: PositionReply = { v: 1, t: 'positioned', consumer: request.consumer, shard: request.shard, seq };
      return encodeMessage(reply);
    }),
  );

  // Status goes to every node (no queue group), so `tidelog status` sees the whole cluster.
  subscribe(subjects.status, undefined, (message) =>
    answer('status', message, () => {
      decodeRequest(message.data, 'status', context.limits);
      context.metrics.requests.inc({ endpoint: 'status', outcome: 'ok' });
      return encodeMessage(context.status());
    }),
  );

  return {
    stop: () => {
      isStopped = true;
      for (const subscription of subscriptions) subscription.unsubscribe();
      for (const subscription of appendSubscriptions.values()) subscription.unsubscribe();
      appendSubscriptions.clear();
    },
    setServing: (shard, serving) => {
      const existing = appendSubscriptions.get(shard);
      if (serving && existing === undefined && !isStopped) {
        appendSubscriptions.set(shard, transport.subscribe(subjects.shardAppend(shard), shardAppendHandler(shard), { queue: subjects.shardQueue(shard) }));
      } else if (!serving && existing !== undefined) {
        existing.unsubscribe();
        appendSubscriptions.delete(shard);
      }
    },
  };
}

/** A per-shard request names the shard of the subject it was sent on. */
function checkSubjectShard(requested: number | undefined, shard: number): void {
  if (requested !== shard) {
    throw new TidelogError('WRONG_SHARD', `request names shard ${String(requested)} on the subject of shard ${shard}`, {
      details: { shard, requested: requested ?? null },
    });
  }
}

/** A per-shard request must hold only that shard's events (a stale client shard map). */
function checkEventsRouteTo(router: ShardRouter, packed: Uint8Array, shard: number): void {
  const count = packed.byteLength / EVENT_BYTES;
  for (let index = 0; index < count; index++) {
    const actual = router.shardOfPacked(packed, index);
    if (actual !== shard) {
      throw new TidelogError('WRONG_SHARD', `event ${index} routes to shard ${actual}, not ${shard}`, {
        details: { index, shard, actual },
      });
    }
  }
}
