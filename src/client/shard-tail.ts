// A tail of one shard: every event from a starting seq, then every new one, forever (until
// return()/break or consumer.close()). Invariant: the seqs it yields are exactly
// start, start+1, start+2 … — no gap and no duplicate — however the feed and the disk
// reads interleave.
//
// How: subscribe to `{ns}.shard.{n}.feed` first and buffer what arrives (bounded), announce
// the tail on `{ns}.shard.{n}.tail` (now and every TAIL_ANNOUNCE_MS: the leader publishes the
// feed only while some tail announces itself), then read
// pages from disk. As soon as the oldest buffered feed message covers the next seq, switch
// to the feed. Feed messages that end before the next seq are dropped (already delivered);
// one that starts after it means something was lost (slow consumer, node restart, a full
// buffer): go back to disk pages until the feed covers the next seq again. When nothing
// arrives for idlePollMs a page read checks the disk, so a feed message lost while the
// shard then went quiet cannot stall the tail.
//
//        ┌───────────── feed covers next seq ─────────────┐
//        │                                                ▼
//   ┌─ disk pages ─┐                                ┌── feed ──┐
//   └──────────────┘ ◄── gap in feed seqs / idle ── └──────────┘
//
// Pages are read only when the caller asks for more than the last page held, so the
// iterator's pace is the page reads' pace.
//
// Errors: failures that say "not now" (TIMEOUT, NO_RESPONDERS, NOT_LEADER, DISCONNECTED, a
// node's CLOSED…) are retried forever; any other code ends the tail, and the caller's
// for-await throws it. Two need care, because a failover looks like them at first:
// - A shard outside the cluster's map has no node subscribed, so its reads meet
//   NO_RESPONDERS as in a failover: the map (asked with `{ns}.info`) decides, UNKNOWN_SHARD.
// - A read past the end (OUT_OF_RANGE with the hwm) may come from a follower lagging its
//   leader. Once a page read answered or the feed went past the next seq, the log is known
//   to reach it, and such an answer is only lag: wait. Before that, it may be a fromSeq beyond
//   hwm + 1: ask again (with back-off) until retryTimeoutMs, then end the tail with it.

import { TidelogError, isTidelogError } from '../errors.ts';
import { decodeFeed, encodeMessage, decodeReply } from '../transport/codec.ts';
import { TAIL_ANNOUNCE_MS, type ReadBatch } from '../transport/messages.ts';
import type { Subscription } from '../transport/transport.ts';
import { FeedBuffer } from './feed-buffer.ts';
import { endSeqOf, eventsFrom, readPage, type ConsumedEvent, type PageReaderContext } from './page-reader.ts';
import { commitPosition, fetchPosition } from './positions.ts';
import { backoffMs, isLocalClosed, requestBytes, retrying } from './retry.ts';

export interface TailOptions {
  shard: number;
  /** First seq to yield (default 1; a durable consumer's default: its committed position + 1). */
  fromSeq?: number;
  /**
   * A durable consumer's name (1..64 of A-Z a-z 0-9 _ -): without fromSeq or fromTimestampNs
   * the tail starts after the position the name last committed in this shard (the cluster
   * keeps it across restarts and failovers), and commit() stores where it got to.
   */
  consumer?: string;
  /**
   * Commit as the caller moves on (needs `consumer`): asking for the next event counts the
   * previous one as processed, and the position is committed at most every
   * autoCommitIntervalMs (default 1 000), when the loop ends (break, return()) and when the
   * consumer closes — not when the tail ends with an error. At-least-once: what was handed
   * out after the last commit is delivered again after a crash (the event in hand when the
   * loop breaks, too).
   */
  autoCommit?: boolean;
  autoCommitIntervalMs?: number;
  /** Start at the first batch sealed at or after this time (asks `{ns}.shard.{n}.seek`); wins over fromSeq. */
  fromTimestampNs?: bigint;
  /** Events per page read (default: the consumer's pageEvents). */
  pageEvents?: number;
  /** Feed messages held while reading from disk (default: the consumer's). */
  maxBufferedFeedMessages?: number;
  maxBufferedFeedEvents?: number;
  /** Quiet this long, check the disk (default: the consumer's idlePollMs). */
  idlePollMs?: number;
}

export interface TailStats {
  nextSeq: number;
  pagesRead: number;
  eventsFromPages: number;
  feedMessagesUsed: number;
  eventsFromFeed: number;
  /** Times the feed skipped seqs and the tail went back to disk. */
  feedGaps: number;
  /** Times the tail moved from disk pages to the feed. */
  switchesToFeed: number;
  /** Feed messages pushed out of a full buffer. */
  feedMessagesDropped: number;
  feedDecodeFailures: number;
}

export interface TailSettings {
  pageEvents: number;
  maxBufferedFeedMessages: number;
  maxBufferedFeedEvents: number;
  idlePollMs: number;
  /** How long a start past the log's end is asked again before the tail ends OUT_OF_RANGE. */
  retryTimeoutMs: number;
}

export class ShardTail implements AsyncIterableIterator<ConsumedEvent> {
  private readonly abort = new AbortController();
  private readonly generator: AsyncGenerator<ConsumedEvent, void, undefined>;
  private readonly buffer: FeedBuffer;
  private readonly counters = { pagesRead: 0, eventsFromPages: 0, feedMessagesUsed: 0, eventsFromFeed: 0, feedGaps: 0, switchesToFeed: 0, feedDecodeFailures: 0 };
  private nextSeq: number;
  private hasEnded = false;
  /** The log is known to reach nextSeq − 1: a page read answered, the feed went past nextSeq, or a seek chose it. */
  private isStartConfirmed = false;
  /** Reads past the end before the start was confirmed (paces the next one). */
  private unconfirmedReads = 0;
  private startDeadlineMs = Number.POSITIVE_INFINITY;
  /** Durable consumers: the seq of the event handed out last, the one processed (the caller asked past it), and the one committed. */
  private yieldedSeq = 0;
  private processedSeq = 0;
  private committedSeq = 0;
  private lastCommitMs = 0;
  private commitInFlight: Promise<void> | null = null;

  constructor(
    private readonly context: PageReaderContext,
    private readonly options: TailOptions,
    private readonly settings: TailSettings,
    /** Fires when the consumer closes. */
    consumerSignal: AbortSignal,
    private readonly onEnd: () => void,
  ) {
    if (consumerSignal.aborted) this.abort.abort();
    else consumerSignal.addEventListener('abort', () => this.abort.abort(), { once: true });
    this.nextSeq = options.fromSeq ?? 1;
    this.lastCommitMs = context.nowMs(); // autoCommit's first interval starts with the tail
    this.buffer = new FeedBuffer(settings.maxBufferedFeedMessages, settings.maxBufferedFeedEvents);
    this.generator = this.run();
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  async next(): Promise<IteratorResult<ConsumedEvent>> {
    if (this.yieldedSeq > this.processedSeq) this.processedSeq = this.yieldedSeq;
    if (this.options.autoCommit === true && this.processedSeq > this.committedSeq && this.context.nowMs() - this.lastCommitMs >= (this.options.autoCommitIntervalMs ?? 1000)) {
      void this.commitQuietly(this.processedSeq);
    }
    const result = await this.generator.next();
    if (result.done !== true) this.yieldedSeq = result.value.seq;
    return result;
  }

  /** Ends the tail; a next() waiting for events resolves done. With autoCommit, commits what was processed first. */
  async return(): Promise<IteratorResult<ConsumedEvent>> {
    if (!this.abort.signal.aborted) await this.commitProcessed();
    this.abort.abort();
    await this.generator.return(undefined);
    this.end(); // a tail never iterated has no finally block to run
    return { done: true, value: undefined };
  }

  /**
   * Stores the durable consumer's position in this shard: `seq` (default: the event handed out
   * last, i.e. "processed through the one I hold"; with none handed out yet, nothing to do).
   * Resolves once the cluster holds it.
   */
  async commit(seq?: number): Promise<void> {
    const consumer = this.options.consumer;
    if (consumer === undefined) throw new TidelogError('BAD_REQUEST', 'commit() needs a tail opened with a consumer name');
    if (seq === undefined) {
      if (this.yieldedSeq === 0) return; // nothing handed out: the committed position stands
      seq = this.yieldedSeq;
    }
    // One at a time, in order: a later position never lands before an earlier one.
    while (this.commitInFlight !== null) await this.commitInFlight.catch(() => undefined);
    const commit = commitPosition(this.context, consumer, this.options.shard, seq, this.context.nowMs() + this.settings.retryTimeoutMs);
    this.commitInFlight = commit;
    try {
      await commit;
    } finally {
      this.commitInFlight = null;
    }
    this.lastCommitMs = this.context.nowMs();
    this.committedSeq = seq;
  }

  /**
   * autoCommit: commits what was processed and not yet committed (the tail ends: return(), or
   * its consumer closes). A failure is logged; those events are delivered again.
   */
  async commitProcessed(): Promise<void> {
    if (this.options.autoCommit !== true) return;
    while (this.commitInFlight !== null) await this.commitInFlight.catch(() => undefined);
    if (this.processedSeq > this.committedSeq) await this.commitQuietly(this.processedSeq);
  }

  /** An automatic commit: skipped while one is in flight; a failure is logged and the next one tries again. */
  private async commitQuietly(seq: number): Promise<void> {
    if (this.commitInFlight !== null) return;
    this.lastCommitMs = this.context.nowMs();
    try {
      await this.commit(seq);
    } catch (error) {
      this.context.logger?.warn({ err: error, shard: this.options.shard, consumer: this.options.consumer, seq }, 'auto-commit failed; the next one tries again');
    }
  }

  private end(): void {
    if (this.hasEnded) return;
    this.hasEnded = true;
    this.onEnd();
  }

  stats(): TailStats {
    return { ...this.counters, nextSeq: this.nextSeq, feedMessagesDropped: this.buffer.droppedMessages };
  }

  private async *run(): AsyncGenerator<ConsumedEvent, void, undefined> {
    const { shard } = this.options;
    const signal = this.abort.signal;
    let subscription: Subscription | null = null;
    let announcer: NodeJS.Timeout | null = null;
    try {
      // Subscribe before the first read: whatever becomes durable after it reaches the buffer.
      subscription = this.context.transport.subscribe(this.context.subjects.shardFeed(shard), (message) => {
        try {
          const feed = decodeFeed(message.data);
          if (feed.shard === shard) this.buffer.push(feed);
        } catch {
          this.counters.feedDecodeFailures++; // a lost message: the seq check finds the hole
        }
      });
      // The leader publishes the feed only while tails announce themselves.
      this.announce();
      announcer = setInterval(() => this.announce(), TAIL_ANNOUNCE_MS);
      announcer.unref();
      const { consumer } = this.options;
      if (consumer !== undefined && this.options.fromSeq === undefined && this.options.fromTimestampNs === undefined) {
        const position = await fetchPosition(this.context, consumer, shard, Number.POSITIVE_INFINITY, signal);
        this.nextSeq = position + 1;
        this.committedSeq = position;
      }
      if (this.options.fromTimestampNs !== undefined) {
        this.nextSeq = await this.seek(this.options.fromTimestampNs, signal);
        this.isStartConfirmed = true; // a seek answers at most hwm + 1
      }
      // From here: a position fetch or seek may have waited out an outage first.
      this.startDeadlineMs = this.context.nowMs() + this.settings.retryTimeoutMs;
      while (!signal.aborted) {
        this.buffer.discardBefore(this.nextSeq);
        const head = this.buffer.peek();
        // A feed message that ends past nextSeq shows the leader's log holds nextSeq.
        if (head !== undefined) this.isStartConfirmed = true;
        if (head !== undefined && head.firstSeq <= this.nextSeq) {
          this.counters.switchesToFeed++;
          yield* this.fromFeed(signal);
          continue;
        }
        const page = await this.page(signal);
        if (page === null) {
          // Caught up with the disk: wait for the feed (or the next idle check). A start not
          // confirmed yet is asked about again sooner: a lagging follower catches up fast.
          const waitMs = this.isStartConfirmed ? this.settings.idlePollMs : Math.min(this.settings.idlePollMs, backoffMs(this.unconfirmedReads, this.context));
          await this.buffer.wait(waitMs, signal);
          continue;
        }
        for (const batch of page) {
          for (const consumed of eventsFrom(shard, batch, this.nextSeq)) {
            this.nextSeq = consumed.seq + 1;
            this.counters.eventsFromPages++;
            yield consumed;
          }
        }
      }
    } catch (error) {
      if (signal.aborted && isLocalClosed(error)) return;
      throw error;
    } finally {
      if (announcer !== null) clearInterval(announcer);
      subscription?.unsubscribe();
      this.abort.abort();
      this.end();
    }
  }

  /** `{ns}.shard.{n}.tail`: best effort, like the feed itself (a lost one is repeated). */
  private announce(): void {
    try {
      this.context.transport.publish(this.context.subjects.shardTail(this.options.shard), encodeMessage({ v: 1, t: 'tail', shard: this.options.shard }));
    } catch (error) {
      this.context.logger?.debug({ err: error, shard: this.options.shard }, 'tail announce failed');
    }
  }

  /** Yields from buffered feed messages while they continue the sequence. */
  private async *fromFeed(signal: AbortSignal): AsyncGenerator<ConsumedEvent, void, undefined> {
    const { shard } = this.options;
    while (!signal.aborted) {
      this.buffer.discardBefore(this.nextSeq);
      const message = this.buffer.peek();
      if (message === undefined) {
        if (await this.buffer.wait(this.settings.idlePollMs, signal)) continue;
        return; // quiet: let the caller check the disk
      }
      if (message.firstSeq > this.nextSeq) {
        this.counters.feedGaps++;
        this.context.logger?.debug({ shard, nextSeq: this.nextSeq, feedSeq: message.firstSeq }, 'feed skipped seqs; reading from disk');
        return;
      }
      this.buffer.shift();
      this.counters.feedMessagesUsed++;
      for (const consumed of eventsFrom(shard, message, this.nextSeq)) {
        this.nextSeq = consumed.seq + 1;
        this.counters.eventsFromFeed++;
        yield consumed;
      }
    }
  }

  /** The next page's batches from nextSeq, or null when the disk has nothing newer. */
  private async page(signal: AbortSignal): Promise<ReadBatch[] | null> {
    const { shard } = this.options;
    let reply;
    try {
      reply = await readPage(this.context, { shard, fromSeq: this.nextSeq, maxEvents: this.settings.pageEvents }, Number.POSITIVE_INFINITY, signal);
    } catch (error) {
      // Below the first seq on disk is an error whoever answers. Past the end of what this
      // replica has is a lagging follower (or we read the feed of a leader ahead of it) once
      // the start was confirmed: nothing newer yet. Before, it may be a fromSeq past the end.
      if (!isPastEnd(error)) throw error;
      if (this.isStartConfirmed) return null;
      if (this.context.nowMs() >= this.startDeadlineMs) throw error;
      this.unconfirmedReads++;
      this.context.logger?.debug({ shard, nextSeq: this.nextSeq, hwm: error.context.hwm }, 'tail start past the end of the replica that answered; asking again');
      return null;
    }
    this.isStartConfirmed = true;
    this.counters.pagesRead++;
    const fresh = reply.batches.filter((batch) => endSeqOf(batch) > this.nextSeq);
    return fresh.length === 0 ? null : fresh;
  }

  private async seek(timestampNs: bigint, signal: AbortSignal): Promise<number> {
    const { shard } = this.options;
    await this.context.cluster.forShard(shard, Number.POSITIVE_INFINITY, signal); // UNKNOWN_SHARD, not NO_RESPONDERS forever
    const request = encodeMessage({ v: 1, t: 'seek', shard, timestampNs });
    const reply = await retrying(
      async () => decodeReply(await requestBytes(this.context.transport, this.context.subjects.shardSeek(shard), request, this.context.requestTimeoutMs), 'sought'),
      { ...this.context, deadlineMs: Number.POSITIVE_INFINITY, signal },
    );
    if (reply.shard !== shard) throw new TidelogError('DECODE_FAILED', `asked shard ${shard} to seek, got shard ${reply.shard}`);
    return reply.seq;
  }
}

/** OUT_OF_RANGE for a read beyond the answering replica's hwm + 1 (not below its first seq). */
function isPastEnd(error: unknown): error is TidelogError {
  return isTidelogError(error, 'OUT_OF_RANGE') && error.context.firstSeq === undefined && error.context.hwm !== undefined;
}
