// The Transport: the only way tidelog components talk to each other. Two implementations
// keep the same semantics: NatsTransport (core NATS through @nats-io/transport-node) and
// InProcessTransport (no network; unit tests and the embedded fallback).
//
// Semantics both keep (they are NATS core's):
// - subjects are dot-separated tokens; `*` matches one token, `>` one or more at the end;
// - publish is fire-and-forget, at most once; a subscriber sees a publisher's messages in
//   publish order;
// - subscribers sharing a `queue` name get each message once between them (one is picked);
//   subscribers without a queue each get every message;
// - request publishes with a fresh reply subject and resolves with the first reply; it
//   rejects with NO_RESPONDERS when nothing is subscribed, TIMEOUT after `timeoutMs`,
//   CLOSED after close();
// - handlers run synchronously on delivery and must not throw (a throw is reported to the
//   transport's error listener and the message is dropped, never retried);
// - every subscription has a bound on messages delivered but not yet handled; past it the
//   transport drops messages for that subscription and reports it (NATS slow consumer).

export interface TransportMessage {
  readonly subject: string;
  readonly data: Uint8Array;
  /** Where to answer; null when the sender expects no answer. */
  readonly reply: string | null;
}

export type MessageHandler = (message: TransportMessage) => void;

export interface Subscription {
  readonly subject: string;
  /** Stops delivery; messages already delivered are still handled. Idempotent. */
  unsubscribe(): void;
}

export interface SubscribeOptions {
  /** Queue group: one member of the group gets each message. */
  queue?: string;
}

export interface RequestOptions {
  timeoutMs: number;
}

export interface RequestManyOptions {
  /** Stop collecting after this long. */
  timeoutMs: number;
  /** Stop once this many replies arrived. */
  maxReplies?: number;
}

export type TransportStatus =
  | { type: 'disconnected' }
  | { type: 'reconnecting' }
  | { type: 'reconnected' }
  | { type: 'slow-consumer'; subject: string }
  | { type: 'error'; error: Error }
  | { type: 'closed' };

export interface Transport {
  readonly kind: 'nats' | 'in-process';
  /** Fire-and-forget. Throws CLOSED after close(), BAD_REQUEST on a bad subject, OVERLOADED (NATS) when the reconnect buffer is full. `data` must not be changed afterwards. */
  publish(subject: string, data: Uint8Array, reply?: string): void;
  subscribe(subject: string, handler: MessageHandler, options?: SubscribeOptions): Subscription;
  /** First reply to `data` sent on `subject`. Rejects TIMEOUT / NO_RESPONDERS / CLOSED. */
  request(subject: string, data: Uint8Array, options: RequestOptions): Promise<Uint8Array>;
  /** Every reply that arrives within timeoutMs (or until maxReplies); [] when none. */
  requestMany(subject: string, data: Uint8Array, options: RequestManyOptions): Promise<Uint8Array[]>;
  /** Resolves once everything published so far reached the server (in-process: at once). */
  flush(): Promise<void>;
  /** Connection events; returns the function that removes the listener. */
  onStatus(listener: (status: TransportStatus) => void): () => void;
  /** Drains subscriptions, then closes. Idempotent. */
  close(): Promise<void>;
}
