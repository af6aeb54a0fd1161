// NatsTransport: the Transport (transport.ts) on core NATS through @nats-io/transport-node v3.
// Invariants it keeps on top of the client:
// - a restarted nats-server is transparent: reconnect is on and never gives up by default,
//   the client re-subscribes everything on reconnect, and our own reconnect buffer keeps
//   what is published while we know the connection is down (see below);
// - handlers run from the client's socket reader, never inside publish; a handler that throws
//   is reported as status {type:'error'} and cannot break the reader (the client would drop
//   the connection);
// - every client error leaves as a TidelogError with a stable code and the client's error as
//   `cause`;
// - bounded: the reconnect buffer by bytes (OVERLOADED past it), pending requests by count.
//
// Why our own reconnect buffer: the v3 client empties its outbound buffer at every dial
// attempt, so without one nearly everything published during an outage is lost. From the
// 'disconnect' status to the 'reconnect' status, publish() appends to a FIFO of at most
// reconnectBufferBytes (default 8 MiB) and replays it, in order, before it reports
// 'reconnected'. The statuses arrive asynchronously, so messages published in the moment
// between the socket breaking and the status arriving can still be lost: publish stays at
// most once, as the contract says. Requests made while disconnected wait for the reconnect
// (within their timeout) before they are sent.
//
// Slow consumers: handlers run synchronously as messages are parsed, so the client never
// holds a backlog of its own; the bound is the server's per-connection max_pending, and a
// client past it is disconnected by the server (seen here as disconnected/reconnected).
// The client's own slowConsumer status is still mapped, should it ever be raised.
//
// Data: a message's `data` is a view into the socket read that carried it; receivers must
// treat it as read-only. Publishers must not change `data` after publish.

import { connect, createInbox, errors, type Msg, type NatsConnection, type Subscription as NatsSubscription } from '@nats-io/transport-node';
import { deferred, type Deferred } from '../deferred.ts';
import { TidelogError, type ErrorCode } from '../errors.ts';
import { StatusListeners, handlerError } from './status-listeners.ts';
import { checkPublishSubject, checkQueueName, checkSubscribeSubject, checkTimeoutMs } from './subject.ts';
import type {
  MessageHandler,
  RequestManyOptions,
  RequestOptions,
  SubscribeOptions,
  Subscription,
  Transport,
  TransportStatus,
} from './transport.ts';

export const DEFAULT_RECONNECT_BUFFER_BYTES = 8 << 20;
export const DEFAULT_MAX_PENDING_REQUESTS = 65_536;
/** Bytes a buffered message costs beyond its subject and data (object, array slot). */
const BUFFERED_MESSAGE_OVERHEAD_BYTES = 64;
/** flush() retries a PING lost to a disconnect at most this often. */
const FLUSH_ATTEMPTS = 10;

export interface NatsTransportOptions {
  /** nats://host:port, one or several (a cluster). */
  servers: string | string[];
  /** Shown in the server's connection list. */
  name?: string;
  /** Default true. */
  reconnect?: boolean;
  /** Per server; -1 (default) never gives up. */
  maxReconnectAttempts?: number;
  /** Wait between attempts on one server (default 1 000). */
  reconnectTimeWaitMs?: number;
  /** Random extra wait, up to this (default 100). */
  reconnectJitterMs?: number;
  /** Client PINGs to detect a dead server (default 20 000). */
  pingIntervalMs?: number;
  /** Unanswered PINGs before the connection counts as stale (default 2). */
  maxPingOut?: number;
  /** Handshake deadline per dial (default 5 000). */
  connectTimeoutMs?: number;
  /** Keep trying when no server is up yet, instead of failing connect() (default false). */
  waitOnFirstConnect?: boolean;
  /** Bytes publish() may hold while disconnected (default 8 MiB); OVERLOADED past it. */
  reconnectBufferBytes?: number;
  /** request/requestMany calls awaiting replies at once (default 65 536); OVERLOADED past it. */
  maxPendingRequests?: number;
}

interface BufferedMessage {
  readonly subject: string;
  readonly data: Uint8Array;
  readonly reply: string | undefined;
}

type PendingRequest = { fail: (error: TidelogError) => void };

export class NatsTransport implements Transport {
  readonly kind = 'nats' as const;
  private readonly listeners = new StatusListeners();
  private readonly pendingRequests = new Set<PendingRequest>();
  private readonly reconnectBufferBytes: number;
  private readonly maxPendingRequests: number;
  private isDisconnected = false;
  private hasReportedReconnecting = false;
  /** Settles at the next reconnect or at close; waiters re-check the state afterwards. */
  private reconnected: Deferred<void> | null = null;
  private buffered: BufferedMessage[] = [];
  private bufferedBytes = 0;
  private state: 'open' | 'draining' | 'closed' = 'open';
  private closing: Promise<void> | null = null;
  private hasReportedClosed = false;

  private constructor(
    readonly connection: NatsConnection,
    options: NatsTransportOptions,
  ) {
    this.reconnectBufferBytes = options.reconnectBufferBytes ?? DEFAULT_RECONNECT_BUFFER_BYTES;
    this.maxPendingRequests = options.maxPendingRequests ?? DEFAULT_MAX_PENDING_REQUESTS;
    void this.watchStatus();
    void connection.closed().then((error) => this.onConnectionClosed(error));
  }

  /** Connects to one of `servers`; rejects DISCONNECTED when none answers. */
  static async connect(options: NatsTransportOptions): Promise<NatsTransport> {
    let connection: NatsConnection;
    try {
      connection = await connect({
        servers: options.servers,
        name: options.name,
        reconnect: options.reconnect ?? true,
        maxReconnectAttempts: options.maxReconnectAttempts ?? -1,
        reconnectTimeWait: options.reconnectTimeWaitMs ?? 1_000,
        reconnectJitter: options.reconnectJitterMs ?? 100,
        pingInterval: options.pingIntervalMs ?? 20_000,
        maxPingOut: options.maxPingOut ?? 2,
        timeout: options.connectTimeoutMs ?? 5_000,
        waitOnFirstConnect: options.waitOnFirstConnect ?? false,
        // nats.js otherwise builds an Error per request and per timer for its stack (a third
        // of a producer's CPU at 1000 sends/s, measured); ours name the subject and the cause.
        noAsyncTraces: true,
      });
    } catch (error) {
      throw new TidelogError('DISCONNECTED', `cannot connect to NATS at ${String(options.servers)}: ${messageOf(error)}`, {
        cause: error,
        details: { servers: options.servers },
      });
    }
    return new NatsTransport(connection, options);
  }

  publish(subject: string, data: Uint8Array, reply?: string): void {
    if (this.state === 'closed') throw closedError();
    checkPublishSubject(subject);
    if (reply !== undefined) checkPublishSubject(reply);
    if (this.isDisconnected) {
      this.buffer({ subject, data, reply });
      return;
    }
    try {
      this.connection.publish(subject, data, reply === undefined ? undefined : { reply });
    } catch (error) {
      throw toTidelogError(error, subject);
    }
  }

  subscribe(subject: string, handler: MessageHandler, options: SubscribeOptions = {}): Subscription {
    if (this.state !== 'open') throw closedError();
    checkSubscribeSubject(subject);
    if (options.queue !== undefined) checkQueueName(options.queue);
    let subscription: NatsSubscription;
    try {
      subscription = this.connection.subscribe(subject, {
        ...(options.queue === undefined ? {} : { queue: options.queue }),
        callback: (error, message) => {
          if (error !== null) {
            this.emit({ type: 'error', error: toTidelogError(error, subject) });
            return;
          }
          try {
            handler({ subject: message.subject, data: message.data, reply: message.reply || null });
          } catch (thrown) {
            this.emit({ type: 'error', error: handlerError(subject, message.subject, thrown) });
          }
        },
      });
    } catch (error) {
      throw toTidelogError(error, subject);
    }
    return {
      subject,
      unsubscribe: () => {
        if (!subscription.isClosed()) subscription.unsubscribe();
      },
    };
  }

  request(subject: string, data: Uint8Array, options: RequestOptions): Promise<Uint8Array> {
    return this.track(subject, options.timeoutMs, async (remainingMs) => {
      const reply = await this.connection.request(subject, data, { timeout: remainingMs });
      return reply.data;
    });
  }

  requestMany(subject: string, data: Uint8Array, options: RequestManyOptions): Promise<Uint8Array[]> {
    const maxReplies = options.maxReplies ?? Number.POSITIVE_INFINITY;
    if (!(maxReplies >= 1)) {
      return Promise.reject(new TidelogError('BAD_REQUEST', `maxReplies must be at least 1, got ${maxReplies}`, { details: { maxReplies } }));
    }
    return this.track(subject, options.timeoutMs, (remainingMs) => this.collect(subject, data, remainingMs, maxReplies));
  }

  async flush(): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      if (this.isClosed()) throw closedError();
      if (this.isDisconnected) await this.untilReconnected(Number.POSITIVE_INFINITY);
      if (this.isClosed()) throw closedError();
      try {
        await this.connection.flush();
        return;
      } catch (error) {
        if (this.isClosed()) throw closedError();
        // A PING lost to a disconnect: retry once the connection is back.
        if (!isDisconnectError(error) || attempt >= FLUSH_ATTEMPTS) throw toTidelogError(error, '');
      }
    }
  }

  onStatus(listener: (status: TransportStatus) => void): () => void {
    return this.listeners.add(listener);
  }

  close(): Promise<void> {
    this.closing ??= this.drainAndClose();
    return this.closing;
  }

  // ── internals ─────────────────────────────────────────────────────────────────────

  /** A method, not a field read: the state changes across awaits, which narrowing misses. */
  private isClosed(): boolean {
    return this.state === 'closed';
  }

  private emit(status: TransportStatus): void {
    this.listeners.emit(status);
  }

  private buffer(message: BufferedMessage): void {
    const bytes = message.data.byteLength + message.subject.length + (message.reply?.length ?? 0) + BUFFERED_MESSAGE_OVERHEAD_BYTES;
    if (this.bufferedBytes + bytes > this.reconnectBufferBytes) {
      throw new TidelogError('OVERLOADED', `disconnected, and the reconnect buffer holds ${this.bufferedBytes} of ${this.reconnectBufferBytes} bytes`, {
        details: { subject: message.subject, bufferedBytes: this.bufferedBytes, reconnectBufferBytes: this.reconnectBufferBytes },
      });
    }
    this.buffered.push(message);
    this.bufferedBytes += bytes;
  }

  /** Runs a request-shaped call: bounded, waiting out a disconnect, failed by close(). */
  private async track<T>(subject: string, timeoutMs: number, run: (remainingMs: number) => Promise<T>): Promise<T> {
    if (this.state !== 'open') throw closedError();
    checkPublishSubject(subject);
    checkTimeoutMs(timeoutMs);
    if (this.pendingRequests.size >= this.maxPendingRequests) {
      throw new TidelogError('OVERLOADED', `${this.maxPendingRequests} requests already pending`, { details: { maxPendingRequests: this.maxPendingRequests } });
    }
    const done = deferred<T>();
    const pending: PendingRequest = { fail: (error) => done.reject(error) };
    this.pendingRequests.add(pending);
    const startedMs = performance.now();
    const attempt = async (): Promise<void> => {
      if (this.isDisconnected) await this.untilReconnected(timeoutMs);
      if (this.state !== 'open') throw closedError();
      const remainingMs = Math.floor(timeoutMs - (performance.now() - startedMs));
      if (this.isDisconnected || remainingMs < 1) throw timeoutError(subject, timeoutMs);
      done.resolve(await run(remainingMs));
    };
    attempt().catch((error: unknown) => done.reject(this.state === 'open' ? toTidelogError(error, subject, timeoutMs) : closedError()));
    try {
      return await done.promise;
    } finally {
      this.pendingRequests.delete(pending);
    }
  }

  /** requestMany's body: an inbox of our own, so replies are taken as they come. */
  private collect(subject: string, data: Uint8Array, timeoutMs: number, maxReplies: number): Promise<Uint8Array[]> {
    const done = deferred<Uint8Array[]>();
    const replies: Uint8Array[] = [];
    const finish = (): void => {
      clearTimeout(timer);
      if (!inbox.isClosed()) inbox.unsubscribe();
      done.resolve(replies);
    };
    const inbox = this.connection.subscribe(createInbox(), {
      callback: (error, message) => {
        if (error !== null) {
          clearTimeout(timer);
          done.reject(error);
        } else if (isNoResponders(message)) {
          finish();
        } else {
          replies.push(message.data);
          if (replies.length >= maxReplies) finish();
        }
      },
    });
    // Replies arrive from the socket, never synchronously: `timer` is set before any callback.
    const timer = setTimeout(finish, timeoutMs);
    // Closing the connection closes the inbox without a callback: end the collection then.
    void inbox.closed.then(() => done.resolve(replies));
    try {
      this.connection.publish(subject, data, { reply: inbox.getSubject() });
    } catch (error) {
      clearTimeout(timer);
      inbox.unsubscribe();
      done.reject(error as Error);
    }
    return done.promise;
  }

  /** Resolves at the next reconnect, at close, or after waitMs, whichever comes first. */
  private async untilReconnected(waitMs: number): Promise<void> {
    // Closed: nothing would ever settle the promise (and an await on it alone lets Node exit).
    if (this.isClosed()) return;
    this.reconnected ??= deferred<void>();
    if (!Number.isFinite(waitMs)) return this.reconnected.promise;
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<void>((resolveExpired) => {
      timer = setTimeout(resolveExpired, waitMs);
    });
    try {
      await Promise.race([this.reconnected.promise, expired]);
    } finally {
      clearTimeout(timer);
    }
  }

  private settleReconnected(): void {
    this.reconnected?.resolve();
    this.reconnected = null;
  }

  private async watchStatus(): Promise<void> {
    for await (const status of this.connection.status()) {
      switch (status.type) {
        case 'disconnect':
          this.isDisconnected = true;
          this.hasReportedReconnecting = false;
          this.emit({ type: 'disconnected' });
          break;
        case 'reconnecting':
          // The client reports every dial attempt; one report per outage is enough.
          if (this.isDisconnected && !this.hasReportedReconnecting) {
            this.hasReportedReconnecting = true;
            this.emit({ type: 'reconnecting' });
          }
          break;
        case 'reconnect':
          this.replayBuffered();
          this.isDisconnected = false;
          this.settleReconnected();
          this.emit({ type: 'reconnected' });
          break;
        case 'slowConsumer':
          this.emit({ type: 'slow-consumer', subject: status.sub.getSubject() });
          break;
        case 'error':
          this.emit({ type: 'error', error: toTidelogError(status.error, '') });
          break;
        default:
          // ping, update, ldm, staleConnection (a disconnect follows), forceReconnect, close
          break;
      }
    }
  }

  private replayBuffered(): void {
    const buffered = this.buffered;
    this.buffered = [];
    this.bufferedBytes = 0;
    for (const message of buffered) {
      try {
        this.connection.publish(message.subject, message.data, message.reply === undefined ? undefined : { reply: message.reply });
      } catch (error) {
        this.emit({ type: 'error', error: toTidelogError(error, message.subject) });
      }
    }
  }

  private async drainAndClose(): Promise<void> {
    this.state = 'draining';
    for (const pending of [...this.pendingRequests]) pending.fail(closedError());
    this.buffered = [];
    this.bufferedBytes = 0;
    try {
      // Drain needs the server (UNSUB + PING/PONG); without one, close at once.
      if (this.isDisconnected) await this.connection.close();
      else await this.connection.drain();
    } catch {
      await this.connection.close().catch(() => undefined);
    }
    this.onConnectionClosed(undefined);
  }

  private onConnectionClosed(error: void | Error): void {
    this.state = 'closed';
    this.settleReconnected();
    for (const pending of [...this.pendingRequests]) pending.fail(closedError());
    if (this.hasReportedClosed) return;
    this.hasReportedClosed = true;
    if (error instanceof Error) this.emit({ type: 'error', error: toTidelogError(error, '') });
    this.emit({ type: 'closed' });
  }
}

function closedError(): TidelogError {
  return new TidelogError('CLOSED', 'the transport is closed');
}

function timeoutError(subject: string, timeoutMs: number, cause?: unknown): TidelogError {
  return new TidelogError('TIMEOUT', `no reply on ${subject} within ${timeoutMs} ms`, { cause, details: { subject, timeoutMs } });
}

/** The status message a server sends to a reply subject when nothing subscribes. */
function isNoResponders(message: Msg): boolean {
  return message.data.length === 0 && message.headers?.code === 503;
}

function isDisconnectError(error: unknown): boolean {
  return error instanceof errors.RequestError && /disconnect/i.test(error.message);
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** The client's error (or one in its cause chain) as a TidelogError with a stable code. */
export function toTidelogError(error: unknown, subject: string, timeoutMs?: number): TidelogError {
  if (error instanceof TidelogError) return error;
  const chain: unknown[] = [];
  for (let link: unknown = error; link instanceof Error && chain.length < 8; link = link.cause) chain.push(link);
  const has = (type: abstract new (...args: never[]) => Error): boolean => chain.some((link) => link instanceof type);
  if (has(errors.TimeoutError)) return timeoutError(subject, timeoutMs ?? 0, error);
  let code: ErrorCode;
  if (has(errors.NoRespondersError) || chain.some((link) => link instanceof errors.RequestError && link.isNoResponders())) code = 'NO_RESPONDERS';
  else if (has(errors.ClosedConnectionError) || has(errors.DrainingConnectionError)) code = 'CLOSED';
  else if (chain.some((link) => link instanceof errors.RequestError && /closed/i.test(link.message))) code = 'CLOSED';
  else if (isDisconnectError(error) || has(errors.ConnectionError)) code = 'DISCONNECTED';
  else if (has(errors.InvalidSubjectError) || has(errors.InvalidArgumentError) || has(errors.PermissionViolationError)) code = 'BAD_REQUEST';
  else code = 'IO_ERROR';
  return new TidelogError(code, `${subject === '' ? 'NATS' : subject}: ${messageOf(error)}`, { cause: error, details: { subject } });
}
