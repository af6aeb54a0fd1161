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
//
// Credentials (NatsAuthOptions, docs/SECURITY.md): user + password, a token, an NKey seed or a
// `.creds` file (JWT + seed), over TLS with a CA and a client certificate if asked. Files are
// read once at connect (a missing or bad one fails connect() with BAD_REQUEST naming the
// option, never its content) and again at every reconnect, so rotated creds take effect
// without a restart. Secrets never appear in an error message: servers are shown with
// redactServerUrl, options with redactNatsAuth.

import { readFileSync } from 'node:fs';
import {
  connect,
  createInbox,
  credsAuthenticator,
  errors,
  nkeyAuthenticator,
  nkeys,
  type Authenticator,
  type ConnectionOptions,
  type Msg,
  type NatsConnection,
  type Subscription as NatsSubscription,
} from '@nats-io/transport-node';
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
  /** Credentials and TLS (docs/SECURITY.md); none: connect anonymously, TLS only for tls:// urls. */
  auth?: NatsAuthOptions;
}

/** TLS towards the NATS servers. Given at all (even `{}`), TLS is required. */
export interface NatsTlsOptions {
  /** PEM file of the CA(s) that signed the servers' certificates (default: Node's bundled CAs). */
  caFile?: string;
  /** PEM certificate of this client, for servers that verify clients (`tls { verify: true }`); needs keyFile. */
  certFile?: string;
  /** PEM private key of certFile. */
  keyFile?: string;
}

/**
 * How a connection proves who it is, the way NATS clients do (docs/SECURITY.md). At most one
 * method: user + pass, token, nkeySeed / nkeySeedFile, or credsFile; TLS combines with any.
 */
export interface NatsAuthOptions {
  /** User name of `authorization`/`accounts` users; needs pass. */
  user?: string;
  /** Password of user (secret: never logged). */
  pass?: string;
  /** Authorization token (secret: never logged). */
  token?: string;
  /** NKey user seed, `SU…` (secret: never logged); or nkeySeedFile. */
  nkeySeed?: string;
  /** File holding an NKey user seed (what `nk -gen user` writes). */
  nkeySeedFile?: string;
  /** A `.creds` file (user JWT + NKey seed) of a server in operator mode (`nsc generate creds`). */
  credsFile?: string;
  /**
   * Prefix of this connection's reply inboxes (default `_INBOX`). With a private prefix per
   * user its permissions can allow replies to it alone (docs/SECURITY.md).
   */
  inboxPrefix?: string;
  /** TLS: verify the servers against caFile; certFile + keyFile authenticate this client. */
  tls?: NatsTlsOptions;
}

/** What a redacted secret reads as in logs and messages. */
export const REDACTED = '[redacted]';

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
  /** Prefix of our reply inboxes ('' : the client's default, _INBOX). */
  private readonly inboxPrefix: string;
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
    this.inboxPrefix = options.auth?.inboxPrefix ?? '';
    void this.watchStatus();
    void connection.closed().then((error) => this.onConnectionClosed(error));
  }

  /** Connects to one of `servers`; rejects DISCONNECTED when none answers. */
  static async connect(options: NatsTransportOptions): Promise<NatsTransport> {
    const { servers, security } = natsConnectSecurity(options.servers, options.auth);
    const shownServers = redactServers(options.servers);
    let connection: NatsConnection;
    try {
      connection = await connect({
        ...security,
        servers,
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
        // The client otherwise stops reconnecting for good after two refused logins in a row
        // (a server restarted while its auth config was being changed, a creds rotation):
        // never giving up means retrying those too. The first connect still fails at once.
        ignoreAuthErrorAbort: (options.maxReconnectAttempts ?? -1) === -1,
      });
    } catch (error) {
      throw new TidelogError('DISCONNECTED', `cannot connect to NATS at ${String(shownServers)}: ${messageOf(error)}`, {
        cause: error,
        details: { servers: shownServers },
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
    const inbox = this.connection.subscribe(createInbox(this.inboxPrefix), {
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
          // After refused logins the client reports one reconnect per refused attempt, all at
          // once when one succeeds (seen with nats.js 3.4): one report per outage is enough.
          if (!this.isDisconnected) break;
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
  else if (has(errors.PermissionViolationError)) code = 'PERMISSION_DENIED';
  else if (has(errors.InvalidSubjectError) || has(errors.InvalidArgumentError)) code = 'BAD_REQUEST';
  else code = 'IO_ERROR';
  // A permission the server refused (docs/SECURITY.md): what and where, for callers and logs.
  const violation = chain.find((link): link is InstanceType<typeof errors.PermissionViolationError> => link instanceof errors.PermissionViolationError);
  if (violation !== undefined) {
    const permission = { operation: violation.operation, subject: violation.subject, ...(violation.queue === undefined ? {} : { queue: violation.queue }) };
    const hint = violation.operation === 'subscription' && /^_INBOX[._]/.test(violation.subject) ? ' (replies come to an inbox this user may not subscribe to: set auth.inboxPrefix to the one its permissions allow)' : '';
    return new TidelogError(code, `${subject === '' ? 'NATS' : subject}: ${messageOf(error)}${hint}`, { cause: error, details: { subject, permission } });
  }
  return new TidelogError(code, `${subject === '' ? 'NATS' : subject}: ${messageOf(error)}`, { cause: error, details: { subject } });
}

// ── credentials ─────────────────────────────────────────────────────────────────────────

/** One thing wrong with a NatsAuthOptions: the option (e.g. `tls.certFile`) and why; never its value. */
export interface NatsAuthProblem {
  field: string;
  message: string;
}

const SECRET_FIELDS = ['pass', 'token', 'nkeySeed'] as const;
const STRING_FIELDS = ['user', 'pass', 'token', 'nkeySeed', 'nkeySeedFile', 'credsFile', 'inboxPrefix'] as const;
const TLS_FIELDS = ['caFile', 'certFile', 'keyFile'] as const;
/** A published subject: dot-separated tokens without wildcards or whitespace. */
const INBOX_PREFIX = /^[^\s.*>]+(\.[^\s.*>]+)*$/;

/**
 * What is wrong with `auth` as given (its files are not read here): the node's config check
 * and connect() share it. Messages name options, never values.
 */
export function natsAuthProblems(auth: NatsAuthOptions): NatsAuthProblem[] {
  const problems: NatsAuthProblem[] = [];
  const add = (field: string, message: string): void => void problems.push({ field, message });
  for (const field of STRING_FIELDS) if (auth[field] === '') add(field, 'must not be empty');
  for (const field of TLS_FIELDS) if (auth.tls?.[field] === '') add(`tls.${field}`, 'must not be empty');
  const has = (value: string | undefined): boolean => value !== undefined && value !== '';
  if (has(auth.user) && !has(auth.pass)) add('pass', 'is required with user');
  if (has(auth.pass) && !has(auth.user)) add('user', 'is required with pass');
  const methods: Array<[string, string]> = [];
  if (has(auth.user) || has(auth.pass)) methods.push(['user', 'user + pass']);
  if (has(auth.token)) methods.push(['token', 'token']);
  if (has(auth.nkeySeed) || has(auth.nkeySeedFile)) methods.push([has(auth.nkeySeed) ? 'nkeySeed' : 'nkeySeedFile', 'an NKey seed']);
  if (has(auth.credsFile)) methods.push(['credsFile', 'a creds file']);
  if (methods.length > 1) add(methods[1][0], `give one way to authenticate, not ${methods.map(([, name]) => name).join(' and ')}`);
  if (has(auth.nkeySeed) && has(auth.nkeySeedFile)) add('nkeySeedFile', 'give nkeySeed or nkeySeedFile, not both');
  if (has(auth.nkeySeed)) {
    const problem = nkeySeedProblem(auth.nkeySeed ?? '');
    if (problem !== null) add('nkeySeed', problem);
  }
  if (has(auth.inboxPrefix) && !INBOX_PREFIX.test(auth.inboxPrefix ?? '')) add('inboxPrefix', 'must be a subject without wildcards or whitespace (e.g. _INBOX_producer)');
  if (has(auth.tls?.certFile) && !has(auth.tls?.keyFile)) add('tls.keyFile', 'is required with tls.certFile');
  if (has(auth.tls?.keyFile) && !has(auth.tls?.certFile)) add('tls.certFile', 'is required with tls.keyFile');
  return problems;
}

/** Why `seed` is not an NKey user seed, or null when it is one. Never quotes the seed. */
function nkeySeedProblem(seed: string): string | null {
  let publicKey: string;
  try {
    publicKey = nkeys.fromSeed(new TextEncoder().encode(seed.trim())).getPublicKey();
  } catch {
    return 'is not an NKey seed (a user seed starts with SU)';
  }
  return publicKey.startsWith('U') ? null : 'is an NKey seed, but not a user\'s (a user seed starts with SU)';
}

interface UrlCredentials {
  user?: string;
  pass?: string;
  token?: string;
}

/** [scheme://][userinfo@]rest, the way NATS urls carry credentials (nats://user:pass@host, nats://token@host). */
// Userinfo runs to the last '@': a token or password pasted raw may hold '/', '?', '#' or '@'.
const URL_USERINFO = /^((?:[A-Za-z][A-Za-z0-9+.-]*:\/\/)?)(.*)@([^@]*)$/s;

/** A url's parts around its userinfo (`user` is null for a token alone), or null without one. */
function parseUserinfo(url: string): { scheme: string; user: string | null; secret: string; rest: string } | null {
  const match = URL_USERINFO.exec(url);
  if (match === null) return null;
  const [, scheme, userinfo, rest] = match;
  const colon = userinfo.indexOf(':');
  return colon < 0 ? { scheme, user: null, secret: userinfo, rest } : { scheme, user: userinfo.slice(0, colon), secret: userinfo.slice(colon + 1), rest };
}

function splitServerUrl(url: string): { url: string; credentials: UrlCredentials | null } {
  const parts = parseUserinfo(url);
  if (parts === null) return { url, credentials: null };
  const decode = (text: string): string => {
    try {
      return decodeURIComponent(text);
    } catch {
      return text;
    }
  };
  const credentials = parts.user === null ? { token: decode(parts.secret) } : { user: decode(parts.user), pass: decode(parts.secret) };
  return { url: `${parts.scheme}${parts.rest}`, credentials };
}

/** A server url fit to print: a password or token in it becomes [redacted]. */
export function redactServerUrl(url: string): string {
  const parts = parseUserinfo(url);
  if (parts === null) return url;
  return `${parts.scheme}${parts.user === null ? '' : `${parts.user}:`}${REDACTED}@${parts.rest}`;
}

export function redactServers<T extends string | readonly string[]>(servers: T): T {
  return (typeof servers === 'string' ? redactServerUrl(servers) : servers.map(redactServerUrl)) as T;
}

/** `auth` fit to print: pass, token and nkeySeed become [redacted]; user, file paths and TLS stay. */
export function redactNatsAuth<T extends NatsAuthOptions | undefined>(auth: T): T {
  if (auth === undefined) return auth;
  const copy: NatsAuthOptions = { ...auth, ...(auth.tls === undefined ? {} : { tls: { ...auth.tls } }) };
  for (const field of SECRET_FIELDS) if (copy[field] !== undefined) copy[field] = REDACTED;
  return copy as T;
}

/**
 * The client's connect options for `auth` and `servers` (credentials in a url move to the
 * options; the urls keep no secret). Reads every file now: BAD_REQUEST naming the option when
 * one is missing, unreadable or not what it should hold. Files are read again at every
 * (re)connect; a read failing then keeps the last good content.
 */
export function natsConnectSecurity(servers: string | readonly string[], auth: NatsAuthOptions = {}): { servers: string[]; security: Partial<ConnectionOptions> } {
  const split = (typeof servers === 'string' ? [servers] : [...servers]).map(splitServerUrl);
  const fromUrls = split.map((entry) => entry.credentials).filter((credentials): credentials is UrlCredentials => credentials !== null);
  const bad = (problems: NatsAuthProblem[]): TidelogError =>
    new TidelogError('BAD_REQUEST', `NATS auth: ${problems.map((problem) => `${problem.field} ${problem.message}`).join('; ')}`, { details: { problems } });
  if (fromUrls.length > 0 && new Set(fromUrls.map((credentials) => JSON.stringify(credentials))).size > 1) {
    throw bad([{ field: 'servers', message: 'carry different credentials in their urls' }]);
  }
  const hasMethod = [auth.user, auth.pass, auth.token, auth.nkeySeed, auth.nkeySeedFile, auth.credsFile].some((value) => value !== undefined);
  if (fromUrls.length > 0 && hasMethod) throw bad([{ field: 'servers', message: 'carry credentials in a url, and auth gives some too: give them in one place' }]);
  const effective: NatsAuthOptions = { ...auth, ...(fromUrls[0] ?? {}) };
  const problems = natsAuthProblems(effective);
  if (problems.length > 0) throw bad(problems);

  const security: Partial<ConnectionOptions> = {};
  if (effective.user !== undefined) {
    security.user = effective.user;
    security.pass = effective.pass;
  }
  if (effective.token !== undefined) security.token = effective.token;
  if (effective.nkeySeed !== undefined) {
    const seed = new TextEncoder().encode(effective.nkeySeed.trim());
    security.authenticator = nkeyAuthenticator(seed);
  }
  if (effective.nkeySeedFile !== undefined) {
    const source = fileSource('nkeySeedFile', effective.nkeySeedFile, (bytes) => nkeySeedProblem(new TextDecoder().decode(bytes)));
    security.authenticator = nkeyAuthenticator(() => new TextEncoder().encode(new TextDecoder().decode(source()).trim()));
  }
  if (effective.credsFile !== undefined) {
    const source = fileSource('credsFile', effective.credsFile, credsProblem);
    security.authenticator = credsAuthenticator(source);
  }
  if (effective.inboxPrefix !== undefined) security.inboxPrefix = effective.inboxPrefix;
  const isTlsUrl = split.some((entry) => /^tls:\/\//i.test(entry.url));
  if (effective.tls !== undefined || isTlsUrl) {
    const tls: NonNullable<ConnectionOptions['tls']> = {};
    for (const field of TLS_FIELDS) {
      const path = effective.tls?.[field];
      if (path === undefined) continue;
      fileSource(`tls.${field}`, path, () => null);
      tls[field] = path;
    }
    security.tls = tls;
  }
  return { servers: split.map((entry) => entry.url), security };
}

/** The bytes of a file, read now (BAD_REQUEST naming `field` if it cannot be, or `check` objects) and at each call after. */
function fileSource(field: string, path: string, check: (bytes: Uint8Array) => string | null): () => Uint8Array {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code ?? 'unreadable';
    throw new TidelogError('BAD_REQUEST', `NATS auth: ${field}: cannot read ${path} (${code})`, { cause, details: { problems: [{ field, message: `cannot read ${path} (${code})` }] } });
  }
  const problem = check(bytes);
  if (problem !== null) throw new TidelogError('BAD_REQUEST', `NATS auth: ${field}: ${path} ${problem}`, { details: { problems: [{ field, message: `${path} ${problem}` }] } });
  let lastGood = bytes;
  return () => {
    try {
      const fresh = readFileSync(path);
      if (check(fresh) === null) lastGood = fresh;
    } catch {
      // keep the last good content: a rotation in progress must not break a reconnect
    }
    return lastGood;
  };
}

/** Why `bytes` is not a creds file (a user JWT and its NKey seed), or null. */
function credsProblem(bytes: Uint8Array): string | null {
  try {
    const authenticate: Authenticator = credsAuthenticator(bytes);
    const { jwt } = authenticate('probe') as { jwt?: string };
    if (typeof jwt !== 'string' || jwt.split('.').length !== 3) return 'holds no user JWT';
    return null;
  } catch {
    return 'is not a creds file (a user JWT and its NKey seed, as `nsc generate creds` writes)';
  }
}
