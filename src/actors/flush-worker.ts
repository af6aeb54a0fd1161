// The flush-worker actor: one per lane, the only code that touches the lane's files.
//
//        ┌────────┐  op queued  ┌─────────┐  op failed (write/fsync)  ┌────────┐
//   ───► │ ready  │ ──────────► │ working │ ────────────────────────► │ failed │
//        └────────┘ ◄────────── └─────────┘                           └────────┘
//                     op done        │ CLOSE done                        │ CLOSE
//                                    ▼                                   ▼
//                               ┌────────┐ ◄─────────────────────────────┘
//                               │ closed │
//                               └────────┘
//
// One long-lived executor actor performs the operations (no actor is spawned per flush).
// Operations run strictly one after another: FLUSH (rotate if asked, one write, one
// fdatasync), SYNC (the 'normal' policy's timer), TASK (segment removal, checkpoint file)
// and CLOSE. A failed FLUSH or SYNC is fail-stop: the worker turns `failed`, reports
// FLUSH_FAILED to its writer, and refuses everything after. A failed TASK rejects that task
// only: it never touched the segment being written.

import { assign, fromCallback, sendTo, setup } from 'xstate';
import { TidelogError } from '../errors.ts';

// The worker is generic over what it writes: it declares what it needs of a batch and of the
// lane's files, and src/wal (which composes the actors behind Wal.open) provides them. So
// src/actors imports nothing from src/wal.

/** What the flush worker needs of a batch. */
export interface FlushGroup {
  /** The sealed batch (header + payload); null for a group of only duplicates (nothing to write). */
  readonly sealed: Uint8Array | null;
  /** When it was sealed (for the queue-wait metric). */
  readonly sealedAtNs: bigint;
}

/** The lane's files as the flush worker uses them (src/wal's SegmentWriter). */
export interface LaneFiles {
  /** Starts a new segment at firstSeq opened by headRecord (the old one synced first). */
  rotate(firstSeq: number, headRecord: Uint8Array): Promise<void>;
  /** One write of the bytes, then one fdatasync if asked. */
  append(bytes: Uint8Array, shouldSync: boolean): Promise<void>;
  sync(): Promise<void>;
  close(): Promise<void>;
  /** Closes without syncing (the lane failed). */
  abandon(): Promise<void>;
  /** A flush is about to be written: its first batch was sealed at sealedAtNs. */
  noteQueueWait(sealedAtNs: bigint): void;
  /** A flush of `batches` batches and `events` events was written. */
  noteWritten(batches: number, events: number): void;
}

export interface FlushRequest {
  /** Batches in seq order; a group of only duplicates has no bytes but still settles here. */
  groups: readonly FlushGroup[];
  /** The sealed batches back to back: one write. */
  bytes: Uint8Array;
  events: number;
  /** Start a new segment at this seq, opened by this head record (a marker), before writing. */
  rotate: { firstSeq: number; headRecord: Uint8Array } | null;
  shouldSync: boolean;
  /** Work that must be durable before these batches are written (a failure fails the flush). */
  prelude: (() => Promise<void>) | null;
}

export type FlushWorkerOp =
  | { type: 'FLUSH'; request: FlushRequest }
  | { type: 'SYNC' }
  /** Work on the lane's files between flushes (the task closes over the files it needs). */
  | { type: 'TASK'; run: () => Promise<void>; resolve: () => void; reject: (error: Error) => void }
  /** isAbandoned: the lane failed, so close without syncing (a failed fsync is never retried). */
  | { type: 'CLOSE'; isAbandoned?: boolean };

/** What the worker tells its writer. */
export type FlushWorkerReport =
  | { type: 'PERSISTED'; request: FlushRequest }
  | { type: 'FLUSH_FAILED'; error: Error }
  | { type: 'WORKER_CLOSED' };

export interface FlushWorkerInput {
  files: LaneFiles;
  report: (event: FlushWorkerReport) => void;
  nowNs: () => bigint;
  /** Bound on queued operations; the writer keeps at most one FLUSH in flight. */
  maxQueuedOps: number;
}

export interface FlushWorkerContext extends FlushWorkerInput {
  ops: FlushWorkerOp[];
  failure: Error | null;
}

async function execute(input: { context: FlushWorkerContext; op: FlushWorkerOp }): Promise<FlushWorkerOp> {
  const { context, op } = input;
  const files = context.files;
  switch (op.type) {
    case 'FLUSH': {
      const { groups, bytes, rotate, shouldSync } = op.request;
      if (bytes.byteLength === 0) return op; // every event was a duplicate: nothing to write
      if (op.request.prelude !== null) await op.request.prelude();
      if (rotate !== null) await files.rotate(rotate.firstSeq, rotate.headRecord);
      files.noteQueueWait(groups[0].sealedAtNs);
      await files.append(bytes, shouldSync);
      let batches = 0;
      for (const group of groups) if (group.sealed !== null) batches++;
      files.noteWritten(batches, op.request.events);
      return op;
    }
    case 'SYNC':
      await files.sync();
      return op;
    case 'TASK':
      try {
        await op.run();
        op.resolve();
      } catch (error) {
        op.reject(error instanceof Error ? error : new Error(String(error)));
      }
      return op;
    case 'CLOSE':
      if (op.isAbandoned === true) await files.abandon();
      else await files.close();
      return op;
  }
}

/** What the executor tells the machine: the operation at the head of the queue finished. */
type ExecutorReport = { type: 'OP_DONE'; op: FlushWorkerOp } | { type: 'OP_FAILED'; op: FlushWorkerOp; error: unknown };

/**
 * The one long-lived actor that performs operations, one at a time, as the machine hands
 * them over (EXECUTE). Spawning a promise actor per flush cost more than the flush's own
 * bookkeeping at thousands of flushes a second; this one lives as long as the worker.
 */
const executor = fromCallback<{ type: 'EXECUTE'; op: FlushWorkerOp }, { context: FlushWorkerContext }>(({ input, receive, sendBack }) => {
  let isStopped = false;
  // Reports go out on setImmediate: an operation that needed no real I/O wait (fsync 'off'
  // or 'normal': the write is synchronous) would otherwise complete in a microtask, and with
  // callers appending from their continuations flush would follow flush without the event
  // loop ever turning — no timer, socket or file callback would run (measured: a snapshot
  // starved for minutes). One turn per flush costs microseconds.
  const report = (message: ExecutorReport): void => {
    setImmediate(() => {
      if (!isStopped) sendBack(message);
    });
  };
  receive((event) => {
    execute({ context: input.context, op: event.op }).then(
      (op) => report({ type: 'OP_DONE', op }),
      (error: unknown) => report({ type: 'OP_FAILED', op: event.op, error }),
    );
  });
  return () => {
    isStopped = true;
  };
});

export const flushWorkerMachine = setup({
  types: {
    context: {} as FlushWorkerContext,
    events: {} as FlushWorkerOp | ExecutorReport,
    input: {} as FlushWorkerInput,
  },
  actors: { executor },
  guards: {
    hasOp: ({ context }) => context.ops.length > 0,
    isCloseNext: ({ context }) => context.ops[0]?.type === 'CLOSE',
    wasClose: ({ event }) => event.type === 'OP_DONE' && event.op.type === 'CLOSE',
  },
  actions: {
    enqueue: ({ context, event }) => {
      if (event.type === 'OP_DONE' || event.type === 'OP_FAILED') return;
      // The bound applies to TASKs only: the writer keeps at most one FLUSH and one CLOSE in
      // flight, and dropping either would leave its callers waiting forever. A SYNC already
      // queued covers any later one.
      if (event.type === 'TASK' && context.ops.length >= context.maxQueuedOps) {
        event.reject(new TidelogError('OVERLOADED', 'flush worker queue is full'));
        return;
      }
      if (event.type === 'SYNC' && context.ops.some((op) => op.type === 'SYNC')) return;
      context.ops.push(event);
    },
    executeNext: sendTo('executor', ({ context }) => ({ type: 'EXECUTE' as const, op: context.ops[0] })),
    reportDone: ({ context, event }) => {
      if (event.type !== 'OP_DONE') return;
      context.ops.shift();
      const op = event.op;
      if (op.type === 'FLUSH') context.report({ type: 'PERSISTED', request: op.request });
      else if (op.type === 'CLOSE') {
        // Nothing runs after CLOSE: a task queued behind it is answered, never left waiting.
        for (const queued of context.ops.splice(0)) if (queued.type === 'TASK') queued.reject(new TidelogError('CLOSED', 'the WAL closed before this task ran'));
        context.report({ type: 'WORKER_CLOSED' });
      }
    },
    recordFailure: assign({
      failure: ({ event }) => {
        const error = event.type === 'OP_FAILED' ? event.error : undefined;
        return error instanceof Error ? error : new TidelogError('IO_ERROR', String(error));
      },
    }),
    reportFailure: ({ context }) => {
      context.report({ type: 'FLUSH_FAILED', error: context.failure ?? new TidelogError('IO_ERROR', 'unknown') });
    },
    refuseQueued: ({ context }) => {
      // Keep CLOSE so a failed lane still releases its descriptor; refuse the rest.
      const failure = context.failure ?? new TidelogError('IO_ERROR', 'lane failed');
      const keep: FlushWorkerOp[] = [];
      for (const op of context.ops) {
        if (op.type === 'TASK') op.reject(failure);
        else if (op.type === 'CLOSE') keep.push(op);
      }
      context.ops.length = 0;
      context.ops.push(...keep);
    },
    closeAfterFailure: sendTo('executor', { type: 'EXECUTE' as const, op: { type: 'CLOSE', isAbandoned: true } as FlushWorkerOp }),
    reportClosed: ({ context }) => context.report({ type: 'WORKER_CLOSED' }),
  },
}).createMachine({
  id: 'flushWorker',
  context: ({ input }) => ({ ...input, ops: [], failure: null }),
  invoke: { id: 'executor', src: 'executor', input: ({ context }) => ({ context }) },
  initial: 'ready',
  on: {
    FLUSH: { actions: 'enqueue' },
    SYNC: { actions: 'enqueue' },
    TASK: { actions: 'enqueue' },
    CLOSE: { actions: 'enqueue' },
  },
  states: {
    ready: {
      always: { guard: 'hasOp', target: 'working' },
    },
    working: {
      entry: 'executeNext',
      on: {
        OP_DONE: [
          { guard: 'wasClose', target: 'closed', actions: 'reportDone' },
          { target: 'ready', actions: 'reportDone' },
        ],
        OP_FAILED: { target: 'failed', actions: ['recordFailure', 'reportFailure'] },
      },
    },
    failed: {
      entry: 'refuseQueued',
      always: { guard: 'isCloseNext', target: 'closingAfterFailure' },
      on: {
        FLUSH: { actions: 'reportFailure' },
        SYNC: {},
        TASK: { actions: ({ context, event }) => event.reject(context.failure ?? new TidelogError('IO_ERROR', 'lane failed')) },
        CLOSE: { actions: 'enqueue', target: 'closingAfterFailure' },
      },
    },
    closingAfterFailure: {
      entry: 'closeAfterFailure',
      on: {
        OP_DONE: { target: 'closed', actions: 'reportClosed' },
        OP_FAILED: { target: 'closed', actions: 'reportClosed' },
      },
    },
    closed: { type: 'final' },
  },
});
