// InProcessTransport: NATS core semantics (transport.ts) with no network, for unit tests and
// the embedded fallback. Several transports may share one InProcessBus, like several
// connections to one nats-server; each closes on its own.
//
// Invariants it keeps:
// - delivery is asynchronous: publish only routes and queues; handlers run later, in
//   setImmediate batches, never inside publish (so a handler that publishes cannot recurse);
// - one FIFO queue per bus, so every subscriber sees every publisher's messages in publish
//   order;
// - bounded: each subscription holds at most maxPendingMessages queued messages (past it the
//   message is dropped and 'slow-consumer' reported once per episode); pending requests are
//   capped at maxPendingRequests (OVERLOADED past it); the match cache is capped.
//
// Data is passed by reference, never copied: a publisher must not change `data` after
// publish, and receivers must treat it as read-only (every subscriber gets the same bytes).

import { randomBytes } from 'node:crypto';
import { deferred, type Deferred } from '../deferred.ts';
import { TidelogError } from '../errors.ts';
import { StatusListeners, handlerError } from './status-listeners.ts';
import { checkPublishSubject, checkQueueName, checkSubscribeSubject, checkTimeoutMs, subjectTokensMatch } from './subject.ts';
import type {
  MessageHandler,
  RequestManyOptions,
  RequestOptions,
  SubscribeOptions,
  Subscription,
  Transport,
  TransportMessage,
  TransportStatus,
} from './transport.ts';

export const DEFAULT_MAX_PENDING_MESSAGES = 65_536;
export const DEFAULT_MAX_PENDING_REQUESTS = 65_536;
/** Distinct published subjects whose routing is remembered; the cache is emptied past it. */
const MATCH_CACHE_ENTRIES = 4096;

interface BusSubscription {
  readonly pattern: string;
  readonly tokens: readonly string[];
  readonly queue: string | null;
  readonly handler: MessageHandler;
  readonly owner: InProcessTransport;
  /** Queued for this subscription, not yet handled. */
  pending: number;
  /** False once unsubscribed or its transport closed: queued messages are then dropped. */
  isActive: boolean;
  /** Reported slow since pending last reached zero. */
  isSlow: boolean;
}

interface QueueGroup {
  readonly members: BusSubscription[];
  /** Round-robin cursor: deterministic, so tests can predict who gets what. */
  next: number;
}

interface Route {
  readonly plain: BusSubscription[];
  readonly groups: QueueGroup[];
}

interface Delivery {
  readonly subscription: BusSubscription;
  readonly message: TransportMessage;
}

/** The routing table and delivery queue that connected InProcessTransports share. */
export class InProcessBus {
  private readonly subscriptions = new Set<BusSubscription>();
  /** Reply inboxes by exact subject: kept apart so requests do not empty the match cache. */
  private readonly inboxes = new Map<string, BusSubscription>();
  private readonly routes = new Map<string, Route>();
  private queue: Delivery[] = [];
  private isScheduled = false;

  add(subscription: BusSubscription): void {
    this.subscriptions.add(subscription);
    this.routes.clear();
  }

  remove(subscription: BusSubscription): void {
    if (this.subscriptions.delete(subscription)) this.routes.clear();
  }

  addInbox(subject: string, subscription: BusSubscription): void {
    this.inboxes.set(subject, subscription);
  }

  removeInbox(subject: string): void {
    this.inboxes.delete(subject);
  }

  /** Queues `message` for every matching subscription; returns how many it was routed to. */
  route(message: TransportMessage): number {
    let routed = 0;
    const inbox = this.inboxes.get(message.subject);
    if (inbox !== undefined) {
      this.enqueue(inbox, message);
      routed++;
    }
    const route = this.routeOf(message.subject);
    for (const subscription of route.plain) this.enqueue(subscription, message);
    for (const group of route.groups) {
      this.enqueue(group.members[group.next % group.members.length], message);
      group.next = (group.next + 1) % group.members.length;
    }
    return routed + route.plain.length + route.groups.length;
  }

  private routeOf(subject: string): Route {
    const cached = this.routes.get(subject);
    if (cached !== undefined) return cached;
    const tokens = subject.split('.');
    const plain: BusSubscription[] = [];
    const groupsByName = new Map<string, QueueGroup>();
    for (const subscription of this.subscriptions) {
      if (!subjectTokensMatch(subscription.tokens, tokens)) continue;
      if (subscription.queue === null) {
        plain.push(subscription);
        continue;
      }
      let group = groupsByName.get(subscription.queue);
      if (group === undefined) {
        group = { members: [], next: 0 };
        groupsByName.set(subscription.queue, group);
      }
      group.members.push(subscription);
    }
    const route = { plain, groups: [...groupsByName.values()] };
    if (this.routes.size >= MATCH_CACHE_ENTRIES) this.routes.clear();
    this.routes.set(subject, route);
    return route;
  }

  private enqueue(subscription: BusSubscription, message: TransportMessage): void {
    const owner = subscription.owner;
    if (subscription.pending >= owner.maxPendingMessages) {
      if (!subscription.isSlow) {
        subscription.isSlow = true;
        owner.emit({ type: 'slow-consumer', subject: subscription.pattern });
      }
      return;
    }
    subscription.pending++;
    owner.pendingDeliveries++;
    this.queue.push({ subscription, message });
    if (!this.isScheduled) {
      this.isScheduled = true;
      setImmediate(this.deliverBatch);
    }
  }

  /** Handles what was queued before this batch began; later messages wait for the next one. */
  private readonly deliverBatch = (): void => {
    this.isScheduled = false;
    const batch = this.queue;
    this.queue = [];
    for (const { subscription, message } of batch) {
      subscription.pending--;
      if (subscription.pending === 0) subscription.isSlow = false;
      if (subscription.isActive) subscription.owner.handle(subscription, message);
      subscription.owner.delivered();
    }
  };
}

export interface InProcessTransportOptions {
  /** Share a bus to let several transports (nodes) talk; default: a bus of its own. */
  bus?: InProcessBus;
  /** Per subscription: queued messages past which new ones are dropped (slow consumer). */
  maxPendingMessages?: number;
  /** Requests (and requestMany calls) awaiting replies at once; OVERLOADED past it. */
  maxPendingRequests?: number;
}

type PendingRequest = { fail: (error: TidelogError) => void };

export class InProcessTransport implements Transport {
  readonly kind = 'in-process' as const;
  readonly bus: InProcessBus;
  readonly maxPendingMessages: number;
  readonly maxPendingRequests: number;
  /** Messages queued on the bus for this transport's subscriptions. */
  pendingDeliveries = 0;
  private readonly subscriptions = new Set<BusSubscription>();
  private readonly pendingRequests = new Set<PendingRequest>();
  private readonly listeners = new StatusListeners();
  /** Unique per transport, so inboxes of transports sharing a bus never collide. */
  private readonly inboxPrefix = `_INBOX.${randomBytes(9).toString('base64url')}.`;
  private nextInbox = 0;
  private state: 'open' | 'draining' | 'closed' = 'open';
  private closing: Promise<void> | null = null;
  private drained: Deferred<void> | null = null;

  constructor(options: InProcessTransportOptions = {}) {
    this.bus = options.bus ?? new InProcessBus();
    this.maxPendingMessages = positiveInteger(options.maxPendingMessages ?? DEFAULT_MAX_PENDING_MESSAGES, 'maxPendingMessages');
    this.maxPendingRequests = positiveInteger(options.maxPendingRequests ?? DEFAULT_MAX_PENDING_REQUESTS, 'maxPendingRequests');
  }

  publish(subject: string, data: Uint8Array, reply?: string): void {
    // Like NATS drain: handlers may still publish (reply) while subscriptions drain.
    if (this.state === 'closed') throw closedError();
    checkPublishSubject(subject);
    if (reply !== undefined) checkPublishSubject(reply);
    this.bus.route({ subject, data, reply: reply ?? null });
  }

  subscribe(subject: string, handler: MessageHandler, options: SubscribeOptions = {}): Subscription {
    if (this.state !== 'open') throw closedError();
    checkSubscribeSubject(subject);
    if (options.queue !== undefined) checkQueueName(options.queue);
    const subscription = this.newSubscription(subject, handler, options.queue ?? null);
    this.subscriptions.add(subscription);
    this.bus.add(subscription);
    return {
      subject,
      unsubscribe: () => {
        subscription.isActive = false;
        this.subscriptions.delete(subscription);
        this.bus.remove(subscription);
      },
    };
  }

  request(subject: string, data: Uint8Array, options: RequestOptions): Promise<Uint8Array> {
    return this.collect(subject, data, options.timeoutMs, 1).then((replies) => {
      // A single-reply collection ends early only on a reply, so [] means the deadline passed.
      if (replies.length === 0) throw new TidelogError('TIMEOUT', `no reply on ${subject} within ${options.timeoutMs} ms`, { details: { subject, timeoutMs: options.timeoutMs } });
      return replies[0];
    });
  }

  requestMany(subject: string, data: Uint8Array, options: RequestManyOptions): Promise<Uint8Array[]> {
    return this.collect(subject, data, options.timeoutMs, options.maxReplies ?? Number.POSITIVE_INFINITY).catch((error: unknown) => {
      if (error instanceof TidelogError && error.code === 'NO_RESPONDERS') return [];
      throw error;
    });
  }

  flush(): Promise<void> {
    // Routing happens inside publish: there is nothing in between to wait for.
    return this.state === 'closed' ? Promise.reject(closedError()) : Promise.resolve();
  }

  onStatus(listener: (status: TransportStatus) => void): () => void {
    return this.listeners.add(listener);
  }

  close(): Promise<void> {
    this.closing ??= this.drainAndClose();
    return this.closing;
  }

  // ── used by InProcessBus ──────────────────────────────────────────────────────────

  emit(status: TransportStatus): void {
    this.listeners.emit(status);
  }

  handle(subscription: BusSubscription, message: TransportMessage): void {
    try {
      subscription.handler(message);
    } catch (error) {
      this.emit({ type: 'error', error: handlerError(subscription.pattern, message.subject, error) });
    }
  }

  delivered(): void {
    this.pendingDeliveries--;
    if (this.pendingDeliveries === 0 && this.drained !== null) this.drained.resolve();
  }

  // ── internals ─────────────────────────────────────────────────────────────────────

  private newSubscription(pattern: string, handler: MessageHandler, queue: string | null): BusSubscription {
    return { pattern, tokens: pattern.split('.'), queue, handler, owner: this, pending: 0, isActive: true, isSlow: false };
  }

  /** Publishes with a fresh inbox and gathers replies until maxReplies or the deadline. */
  private collect(subject: string, data: Uint8Array, timeoutMs: number, maxReplies: number): Promise<Uint8Array[]> {
    if (this.state !== 'open') return Promise.reject(closedError());
    try {
      checkPublishSubject(subject);
      checkTimeoutMs(timeoutMs);
      if (!(maxReplies >= 1)) throw new TidelogError('BAD_REQUEST', `maxReplies must be at least 1, got ${maxReplies}`, { details: { maxReplies } });
    } catch (error) {
      return Promise.reject(error as Error);
    }
    if (this.pendingRequests.size >= this.maxPendingRequests) {
      return Promise.reject(new TidelogError('OVERLOADED', `${this.maxPendingRequests} requests already pending`, { details: { maxPendingRequests: this.maxPendingRequests } }));
    }
    const inbox = `${this.inboxPrefix}${this.nextInbox++}`;
    const replies: Uint8Array[] = [];
    const done = deferred<Uint8Array[]>();
    const finish = (error: TidelogError | null): void => {
      clearTimeout(timer);
      inboxSubscription.isActive = false;
      this.bus.removeInbox(inbox);
      this.pendingRequests.delete(pending);
      if (error === null) done.resolve(replies);
      else done.reject(error);
    };
    const pending: PendingRequest = { fail: finish };
    const inboxSubscription = this.newSubscription(inbox, (message) => {
      replies.push(message.data);
      if (replies.length >= maxReplies) finish(null);
    }, null);
    this.bus.addInbox(inbox, inboxSubscription);
    this.pendingRequests.add(pending);
    const timer = setTimeout(() => finish(null), timeoutMs);
    if (this.bus.route({ subject, data, reply: inbox }) === 0) {
      finish(new TidelogError('NO_RESPONDERS', `nothing subscribes to ${subject}`, { details: { subject } }));
    }
    return done.promise;
  }

  private async drainAndClose(): Promise<void> {
    this.state = 'draining';
    // Requests in flight end now, as NATS ends them when the connection closes.
    for (const pending of [...this.pendingRequests]) pending.fail(closedError());
    // Stop routing new messages here, then handle those already queued (NATS drain).
    for (const subscription of this.subscriptions) this.bus.remove(subscription);
    if (this.pendingDeliveries > 0) {
      this.drained = deferred<void>();
      await this.drained.promise;
    }
    for (const subscription of this.subscriptions) subscription.isActive = false;
    this.subscriptions.clear();
    this.state = 'closed';
    this.emit({ type: 'closed' });
  }
}

function closedError(): TidelogError {
  return new TidelogError('CLOSED', 'the transport is closed');
}

function positiveInteger(value: number, name: string): number {
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new TidelogError('BAD_REQUEST', `${name} must be a positive integer, got ${value}`, { details: { [name]: value } });
  }
  return value;
}
