// The lines `tidelog wal load --json` writes, which `tidelog demo` reads from its child:
// stdout carries one `ack` per acknowledged call (written only after the promise resolved),
// stderr carries `ready`, a `progress` line a second, `done` or `error`.
//
// Events made by load are unique and traceable: entityId = (pid << 32) | counter, so a reader
// of the log can tell which process wrote the event at any seq.

export interface AckMessage {
  type: 'ack';
  firstSeq: number;
  lastSeq: number;
  n: number;
}

export interface ReadyMessage {
  type: 'ready';
  pid: number;
  shard: number;
  lastSeq: number;
  recoveryMs: number;
  recoveredBytes: number;
  tornTailBytes: number;
}

export interface ProgressMessage {
  type: 'progress';
  elapsedMs: number;
  eventsPerSecond: number;
  acked: number;
  ackLatencyUsP99: number;
  lastSeq: number;
}

export interface DoneMessage {
  type: 'done';
  acked: number;
  calls: number;
  lastSeq: number;
  elapsedMs: number;
}

export interface ErrorMessage {
  type: 'error';
  code: string;
  message: string;
}

export type LoadMessage = AckMessage | ReadyMessage | ProgressMessage | DoneMessage | ErrorMessage;

const TYPES = new Set(['ack', 'ready', 'progress', 'done', 'error']);

/** The message on one line, or null for anything else (a stack trace, a warning). */
export function parseLoadMessage(line: string): LoadMessage | null {
  if (!line.startsWith('{')) return null;
  try {
    const value: unknown = JSON.parse(line);
    if (typeof value !== 'object' || value === null) return null;
    const type = (value as { type?: unknown }).type;
    return typeof type === 'string' && TYPES.has(type) ? (value as LoadMessage) : null;
  } catch {
    return null;
  }
}
