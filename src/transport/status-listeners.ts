// The status stream both transports report on: its bounded listener set and the handler-error report.
// Invariant: a listener that throws never stops the others, nor the delivery that reported;
// at most MAX_STATUS_LISTENERS are registered at once.

import { TidelogError } from '../errors.ts';
import type { TransportStatus } from './transport.ts';

/** Status listeners at once per transport: a leak guard, far above any real use. */
export const MAX_STATUS_LISTENERS = 1024;

export class StatusListeners {
  private readonly listeners = new Set<(status: TransportStatus) => void>();

  add(listener: (status: TransportStatus) => void): () => void {
    if (this.listeners.size >= MAX_STATUS_LISTENERS) {
      throw new TidelogError('OVERLOADED', `${MAX_STATUS_LISTENERS} status listeners already registered`, { details: { maxListeners: MAX_STATUS_LISTENERS } });
    }
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  /** A listener that throws must not stop the others, nor the delivery that reported. */
  emit(status: TransportStatus): void {
    for (const listener of [...this.listeners]) {
      try {
        listener(status);
      } catch {
        // nowhere left to report it: the status stream is the report channel
      }
    }
  }
}

/** What a throwing handler becomes on the status stream: the subject and the cause. */
export function handlerError(pattern: string, subject: string, cause: unknown): TidelogError {
  return new TidelogError('HOOK_FAILED', `the handler of ${pattern} threw on ${subject}`, { cause, details: { pattern, subject } });
}
