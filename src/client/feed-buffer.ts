// Feed messages a tail received but has not consumed yet, oldest first. Invariant: bounded
// by message count and by events; when full, the oldest message goes (the tail notices the
// hole by its seqs and reads it from disk), so a slow reader costs bounded memory and a
// re-read, never a wrong sequence.

import { EVENT_BYTES } from '../event.ts';
import type { FeedMessage } from '../transport/messages.ts';
import { endSeqOf } from './page-reader.ts';

export class FeedBuffer {
  private items: FeedMessage[] = [];
  private head = 0;
  private bufferedEvents = 0;
  private wakeUp: (() => void) | null = null;
  /** Messages pushed out by newer ones because the buffer was full. */
  droppedMessages = 0;

  constructor(
    readonly maxMessages: number,
    readonly maxEvents: number,
  ) {}

  get size(): number {
    return this.items.length - this.head;
  }

  get events(): number {
    return this.bufferedEvents;
  }

  push(message: FeedMessage): void {
    this.items.push(message);
    this.bufferedEvents += message.events.byteLength / EVENT_BYTES;
    // The newest message stays even if it alone passes maxEvents: it is the one worth having.
    while (this.size > 1 && (this.size > this.maxMessages || this.bufferedEvents > this.maxEvents)) {
      this.shift();
      this.droppedMessages++;
    }
    this.wakeUp?.();
  }

  peek(): FeedMessage | undefined {
    return this.head < this.items.length ? this.items[this.head] : undefined;
  }

  shift(): FeedMessage | undefined {
    if (this.head >= this.items.length) return undefined;
    const message = this.items[this.head];
    this.items[this.head] = undefined as unknown as FeedMessage; // let it be collected
    this.head++;
    this.bufferedEvents -= message.events.byteLength / EVENT_BYTES;
    if (this.head === this.items.length) {
      this.items = [];
      this.head = 0;
    } else if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return message;
  }

  /** Drops messages that end before `seq` (already delivered, from disk or earlier feed). */
  discardBefore(seq: number): void {
    for (let message = this.peek(); message !== undefined && endSeqOf(message) <= seq; message = this.peek()) this.shift();
  }

  /**
   * True as soon as a message is buffered; false after timeoutMs or when the signal fires.
   * One waiter at a time: the buffer belongs to one tail's loop.
   */
  wait(timeoutMs: number, signal: AbortSignal): Promise<boolean> {
    if (this.size > 0) return Promise.resolve(true);
    if (signal.aborted) return Promise.resolve(false);
    return new Promise((resolve) => {
      const finish = (arrived: boolean): void => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        this.wakeUp = null;
        resolve(arrived);
      };
      const onAbort = (): void => finish(false);
      const timer = setTimeout(() => finish(false), timeoutMs);
      signal.addEventListener('abort', onAbort, { once: true });
      this.wakeUp = () => finish(true);
    });
  }
}
