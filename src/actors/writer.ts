// The writer actor: one per shard. It decides *when* a group commits; the data plane
// (CommitQueue) decides *what* is in it, and the flush-worker actor does the I/O.
//
//                WORK_QUEUED                  linger elapsed / a full group sealed
//   ┌──────┐ ─────────────────► ┌───────────┐ ─────────────────────────────► ┌──────────┐
//   │ idle │                    │ lingering │                                │ flushing │
//   └──────┘                    └───────────┘                                └──────────┘
//      ▲  │  a full group, or linger 0: straight to flushing ─────────────────────►  │ PERSISTED
//      │  │                                                                        ▼
//      │  │                     one tick later, work queued → flushing   ┌──────────┐
//      └──┼──────────────────────────── nothing queued ◄──────────────── │ settling │
//         │                                                              └──────────┘
//         └ CLOSE_REQUESTED and nothing queued → closing → closed      FLUSH_FAILED → failed
//
// The machine sees one event per group, never one per event: the queue rings WORK_QUEUED
// only when it goes from empty to non-empty or seals a full group. A flush starts as soon as
// the flush worker is free; appends that arrive meanwhile form the next group.

import { and, assign, sendTo, setup, type ActorRefFrom } from 'xstate';
import { TidelogError } from '../errors.ts';
import { flushWorkerMachine, type FlushRequest, type FlushWorkerOp, type FlushWorkerReport, type LaneFiles } from './flush-worker.ts';

/** What the writer reads of the lane's queue to decide when to flush (src/wal's CommitQueue). */
export interface WriterQueue {
  /** A full group is sealed and waiting. */
  readonly hasSealedGroup: boolean;
  /** A group is still open (it may wait for company). */
  readonly hasOpenGroup: boolean;
  readonly hasWork: boolean;
  readonly isClosing: boolean;
}

/** What the writer needs from the lane that owns it (implemented by Wal). */
export interface WriterLane {
  readonly queue: WriterQueue;
  readonly files: LaneFiles;
  readonly batchLingerMs: number;
  readonly nowNs: () => bigint;
  /** Takes what is queued (as much as fits the segment) and decides rotation and sync. */
  prepareFlush(): FlushRequest;
  /** The group is durable (or, with fsync off, written): fold it, then resolve its callers. */
  groupDurable(request: FlushRequest): void;
  laneFailed(error: Error): void;
  laneClosed(): void;
}

export type WriterEvent =
  | { type: 'WORK_QUEUED'; sealed: boolean }
  | { type: 'SETTLED'; token: number }
  | { type: 'CLOSE_REQUESTED' }
  | { type: 'WORKER_OP'; op: FlushWorkerOp }
  | FlushWorkerReport;

export const writerMachine = setup({
  types: {
    context: {} as { lane: WriterLane; settle: { token: number }; isCloseRequested: boolean },
    events: {} as WriterEvent,
    input: {} as { lane: WriterLane },
  },
  actors: {
    flushWorker: flushWorkerMachine,
  },
  delays: {
    linger: ({ context }) => context.lane.batchLingerMs,
  },
  guards: {
    /** The tick this settling state asked for (a stale one from an earlier settling is ignored). */
    isThisTick: ({ context, event }) => event.type === 'SETTLED' && event.token === context.settle.token,
    mustFlushNow: ({ context }) =>
      context.lane.queue.hasSealedGroup || (context.lane.queue.hasOpenGroup && context.lane.batchLingerMs <= 0),
    hasWork: ({ context }) => context.lane.queue.hasWork,
    hasSealedGroup: ({ context }) => context.lane.queue.hasSealedGroup,
    // Only once close() asked (CLOSE_REQUESTED): between the queue's beginClose and that, the
    // WAL still runs its last tasks (the replica file) in the flush worker.
    canClose: ({ context }) => context.isCloseRequested && context.lane.queue.isClosing && !context.lane.queue.hasWork,
    isClosingWithWork: ({ context }) => context.lane.queue.isClosing && context.lane.queue.hasWork,
  },
  actions: {
    startFlush: sendTo('flushWorker', ({ context }): FlushWorkerOp => ({ type: 'FLUSH', request: context.lane.prepareFlush() })),
    completeGroup: ({ context, event }) => {
      if (event.type === 'PERSISTED') context.lane.groupDurable(event.request);
    },
    failLane: ({ context, event }) => {
      const error = event.type === 'FLUSH_FAILED' ? event.error : new TidelogError('IO_ERROR', 'lane failed');
      context.lane.laneFailed(error);
    },
    forwardOp: sendTo('flushWorker', ({ event }) => {
      if (event.type !== 'WORKER_OP') throw new Error('invariant violated: forwardOp without an op');
      return event.op;
    }),
    closeWorker: sendTo('flushWorker', { type: 'CLOSE' } as FlushWorkerOp),
    notifyClosed: ({ context }) => context.lane.laneClosed(),
    // One turn of the event loop: callers resolved by the last flush get to queue again. A
    // plain setImmediate, not an invoked actor: one actor spawned per flush costs more than
    // the flush's bookkeeping at thousands of flushes a second.
    awaitTick: ({ context, self }) => {
      const token = ++context.settle.token;
      setImmediate(() => {
        if (self.getSnapshot().status === 'active') self.send({ type: 'SETTLED', token });
      });
    },
  },
}).createMachine({
  id: 'writer',
  context: ({ input }) => ({ lane: input.lane, settle: { token: 0 }, isCloseRequested: false }),
  invoke: {
    id: 'flushWorker',
    src: 'flushWorker',
    input: ({ context, self }) => ({
      files: context.lane.files,
      nowNs: context.lane.nowNs,
      maxQueuedOps: 1024,
      report: (event: FlushWorkerReport) => self.send(event),
    }),
  },
  on: {
    WORKER_OP: { actions: 'forwardOp' },
    FLUSH_FAILED: { target: '.failed' },
    // Noted from any state; idle acts on it (the states below that take it also move there).
    CLOSE_REQUESTED: { actions: assign({ isCloseRequested: true }) },
  },
  initial: 'idle',
  states: {
    idle: {
      always: [
        { guard: 'mustFlushNow', target: 'flushing' },
        { guard: 'isClosingWithWork', target: 'flushing' },
        { guard: 'hasWork', target: 'lingering' },
        { guard: 'canClose', target: 'closing' },
      ],
      on: {
        WORK_QUEUED: { target: 'idle', reenter: true },
        CLOSE_REQUESTED: { target: 'idle', reenter: true, actions: assign({ isCloseRequested: true }) },
      },
    },
    lingering: {
      after: { linger: 'flushing' },
      on: {
        WORK_QUEUED: { guard: ({ event }) => event.sealed, target: 'flushing' },
        CLOSE_REQUESTED: { target: 'flushing', actions: assign({ isCloseRequested: true }) },
      },
    },
    flushing: {
      entry: 'startFlush',
      on: {
        // A full group queued meanwhile goes at once, before the callers just answered run,
        // so their work overlaps this flush's I/O (the pipeline of a busy shard). Anything
        // less waits one tick in settling for those callers to join it.
        PERSISTED: [
          { guard: 'hasSealedGroup', target: 'flushing', reenter: true, actions: 'completeGroup' },
          { target: 'settling', actions: 'completeGroup' },
        ],
      },
    },
    settling: {
      // A flush just finished: wait one tick, then flush whatever queued (without lingering).
      // The callers it just answered append again from their promise continuations within
      // this turn; flushing what queued during the flush at once instead would split the
      // callers into two cohorts that never meet again (groups of k, n − k, k, n − k, …:
      // measured 1 and 63 of 64 callers). Only a full group goes before the tick.
      entry: 'awaitTick',
      on: {
        WORK_QUEUED: { guard: ({ event }) => event.sealed, target: 'flushing' },
        SETTLED: [
          { guard: and(['isThisTick', 'hasWork']), target: 'flushing' },
          { guard: 'isThisTick', target: 'idle' },
        ],
        CLOSE_REQUESTED: { target: 'idle', actions: assign({ isCloseRequested: true }) },
      },
    },
    closing: {
      entry: 'closeWorker',
      on: { WORKER_CLOSED: 'closed' },
    },
    failed: {
      entry: ['failLane', 'closeWorker'],
      on: {
        FLUSH_FAILED: {},
        WORKER_CLOSED: 'closed',
      },
    },
    closed: { type: 'final', entry: 'notifyClosed' },
  },
});

export type WriterActor = ActorRefFrom<typeof writerMachine>;
