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
// Operations run strictly one after another: FLUSH (rotate if asked, one write, one
// fdatasync), SYNC (the 'normal' policy's timer), TASK (segment removal, checkpoint file)
// and CLOSE. A failed FLUSH or SYNC is fail-stop: the worker turns `failed`, reports
// FLUSH_FAILED to its writer, and refuses everything after. A failed TASK rejects that task
// only: it never touched the segment being written.

import { assign, fromPromise, setup } from 'xstate';
import { TidelogError } from '../errors.ts';
import type { CommitGroup } from '../wal/commit-queue.ts';
import { recordUs } from '../wal/flush-metrics.ts';
import type { SegmentWriter } from '../wal/segment-writer.ts';

export interface FlushRequest {
  /** Batches in seq order; a group of only duplicates has no bytes but still settles here. */
  groups: CommitGroup[];
  /** The sealed batches back to back: one write. */
  bytes: Uint8Array;
  events: number;
  /** Start a new segment at this seq, opened by this head record (a marker), before writing. */
  rotate: { firstSeq: number; headRecord: Uint8Array } | null;
  shouldSync: boolean;
}

export type FlushWorkerOp =
  | { type: 'FLUSH'; request: FlushRequest }
  | { type: 'SYNC' }
  | { type: 'TASK'; run: (files: SegmentWriter) => Promise<void>; resolve: () => void; reject: (error: Error) => void }
  | { type: 'CLOSE' };

/** What the worker tells its writer. */
export type FlushWorkerReport =
  | { type: 'PERSISTED'; request: FlushRequest }
  | { type: 'FLUSH_FAILED'; error: Error }
  | { type: 'WORKER_CLOSED' };

export interface FlushWorkerInput {
  files: SegmentWriter;
  report: (event: FlushWorkerReport) => void;
  nowNs: () => bigint;
  /** Bound on queued operations; the writer keeps at most one FLUSH in flight. */
  maxQueuedOps: number;
}

interface FlushWorkerContext extends FlushWorkerInput {
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
      if (rotate !== null) await files.rotate(rotate.firstSeq, rotate.headRecord);
      recordUs(files.metrics.queueWait, groups[0].sealedAtNs, context.nowNs());
      await files.append(bytes, shouldSync);
      for (const group of groups) if (group.sealed !== null) files.metrics.batches++;
      files.metrics.events += op.request.events;
      return op;
    }
    case 'SYNC':
      await files.sync();
      return op;
    case 'TASK':
      try {
        await op.run(files);
        op.resolve();
      } catch (error) {
        op.reject(error instanceof Error ? error : new Error(String(error)));
      }
      return op;
    case 'CLOSE':
      if (context.failure === null) await files.close();
      else await files.abandon();
      return op;
  }
}

export const flushWorkerMachine = setup({
  types: {
    context: {} as FlushWorkerContext,
    events: {} as FlushWorkerOp,
    input: {} as FlushWorkerInput,
  },
  actors: {
    execute: fromPromise<FlushWorkerOp, { context: FlushWorkerContext; op: FlushWorkerOp }>(({ input }) => execute(input)),
  },
  guards: {
    hasOp: ({ context }) => context.ops.length > 0,
    isCloseNext: ({ context }) => context.ops[0]?.type === 'CLOSE',
  },
  actions: {
    enqueue: ({ context, event }) => {
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
    reportDone: ({ context }, params: { op: FlushWorkerOp }) => {
      context.ops.shift();
      const op = params.op;
      if (op.type === 'FLUSH') context.report({ type: 'PERSISTED', request: op.request });
      else if (op.type === 'CLOSE') context.report({ type: 'WORKER_CLOSED' });
    },
    recordFailure: assign({
      failure: (_, params: { error: unknown }) =>
        params.error instanceof Error ? params.error : new TidelogError('IO_ERROR', String(params.error)),
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
  },
}).createMachine({
  id: 'flushWorker',
  context: ({ input }) => ({ ...input, ops: [], failure: null }),
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
      invoke: {
        src: 'execute',
        input: ({ context }) => ({ context, op: context.ops[0] }),
        onDone: [
          {
            guard: ({ event }) => event.output.type === 'CLOSE',
            target: 'closed',
            actions: { type: 'reportDone', params: ({ event }) => ({ op: event.output }) },
          },
          { target: 'ready', actions: { type: 'reportDone', params: ({ event }) => ({ op: event.output }) } },
        ],
        onError: {
          target: 'failed',
          actions: [{ type: 'recordFailure', params: ({ event }) => ({ error: event.error }) }, 'reportFailure'],
        },
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
      invoke: {
        src: 'execute',
        input: ({ context }) => ({ context, op: { type: 'CLOSE' } as FlushWorkerOp }),
        onDone: { target: 'closed', actions: ({ context }) => context.report({ type: 'WORKER_CLOSED' }) },
        onError: { target: 'closed', actions: ({ context }) => context.report({ type: 'WORKER_CLOSED' }) },
      },
    },
    closed: { type: 'final' },
  },
});
