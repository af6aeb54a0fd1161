// The transport layer's public surface: the Transport contract, its two implementations,
// the nats-server launcher, the wire messages and their codec. Import from here only.
export type {
  MessageHandler,
  RequestManyOptions,
  RequestOptions,
  SubscribeOptions,
  Subscription,
  Transport,
  TransportMessage,
  TransportStatus,
} from './transport.ts';
export {
  DEFAULT_MAX_PENDING_MESSAGES,
  InProcessBus,
  InProcessTransport,
  type InProcessTransportOptions,
} from './in-process.ts';
export { subjectMatches } from './subject.ts';
export { DEFAULT_RECONNECT_BUFFER_BYTES, NatsTransport, type NatsTransportOptions } from './nats.ts';
export {
  NATS_INSTALL_HINT,
  findNatsServer,
  pickFreePort,
  startNatsServer,
  type NatsServerOptions,
  type NatsServerProcess,
} from './nats-server-process.ts';
export * from './messages.ts';
export * from './codec.ts';
