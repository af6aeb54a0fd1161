// The client library's public surface: the producer (batched, idempotent appends with
// backpressure) and the consumer (read, tail, state, info, status). Import from here only.
export { createProducer, Producer, DEFAULT_MAX_BATCH_EVENTS, SendError, type Ack, type ProducerOptions, type ProducerStats, type SendPartFailure } from './producer.ts';
export { createConsumer, Consumer, type ConsumerOptions, type ReadOptions } from './consumer.ts';
export type { EntityState, SignalState } from './entity-state.ts';
export type { EntityIdInput, SignalEvent, SignalEventInput } from '../event.ts';
export { ShardTail, type TailOptions, type TailStats } from './shard-tail.ts';
export type { ConsumedEvent } from './page-reader.ts';
export type { ShardPipelineStats } from './shard-pipeline.ts';
export { DEFAULT_NAMESPACE, type ClientTransportOptions } from './client-transport.ts';
export type { ClientLogger } from './retry.ts';
