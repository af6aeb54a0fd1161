// The leader's side of a merge (availability mode, docs/REPLICATION.md): orphan batches — what
// a cut-off replica acknowledged on its own fsync and then cut from its log when it rejoined —
// are re-appended to the shard's log under the current epoch, each exactly once:
//
//   per orphan batch (identity: its epoch E and first seq S):
//     in this log already (same seqs, same epoch: one batch)          → nothing to do
//     identity session `~merge:E:S` already noted (an earlier merge) → nothing to do
//     else, per producer request in it (its session note):
//       the request is in this log already (the producer's retry landed here) → its events go
//       otherwise its events stay, and its note is written again with the new seqs
//     append what stays (no content dedup) with one merge note: the identity's session note
//     and the moved producer notes; all of it durable in one batch, atomically.
//
// So a retry of the same merge, a merge of the same batch from another replica, and a
// producer's own retry elsewhere each count the events once. Bounded by the session store's
// memory: an identity forgotten (evicted past maxSessions) is merged again if sent again.

import { TidelogError, isTidelogError } from '../errors.ts';
import { EVENT_BYTES } from '../event.ts';
import { seqsToRuns } from '../transport/codec.ts';
import type { SessionTag } from '../transport/messages.ts';
import { BATCH_HEADER_BYTES, readBatchHeader, readNotes, verifyBatch } from '../wal/batch-format.ts';
import { decodeMergeNote, encodeMergeNote, isMergeNote, mergeIdentity } from './merge-note.ts';
import { decodeSessionNote, encodeSessionNote, type SessionNote } from './session-note.ts';
import type { SessionStore } from './session-store.ts';

export interface MergeTarget {
  readonly shard: number;
  readonly sessions: SessionStore;
  readonly durableSeq: number;
  epochAt(seq: number): number;
  /** Appends with a note, no content dedup; resolves with one seq per event. */
  appendWithNote(packed: Uint8Array, note: (assigned: readonly number[]) => Uint8Array): Promise<number[]>;
  /** appendWithNote resolves at durable (availability mode): the sessions begun are marked so. */
  answeredAtDurable?: boolean;
}

export interface MergeResult {
  /** Orphan batches looked at. */
  batches: number;
  /** Found in this log as they are. */
  inLog: number;
  /** Merged before (their identity is noted). */
  alreadyMerged: number;
  /** Re-appended now. */
  appended: number;
  /** Events re-appended now. */
  events: number;
  /** Events left out: their producer request is in this log already. */
  droppedEvents: number;
}

/** Merges `batches` (sealed orphan batches, in their log order) into the target's log. */
export async function mergeOrphanBatches(target: MergeTarget, batches: readonly Uint8Array[]): Promise<MergeResult> {
  const result: MergeResult = { batches: 0, inLog: 0, alreadyMerged: 0, appended: 0, events: 0, droppedEvents: 0 };
  for (const batch of batches) {
    result.batches++;
    const parsed = readBatchHeader(batch, 0);
    if (!parsed.ok) throw new TidelogError('BAD_REQUEST', `merge: not a batch (${parsed.problem})`);
    const { header } = parsed;
    if (header.shardId !== target.shard) throw new TidelogError('BAD_REQUEST', `merge: a batch of shard ${header.shardId} sent to shard ${target.shard}`);
    if (BATCH_HEADER_BYTES + header.payloadBytes !== batch.byteLength || !verifyBatch(batch, 0, header.payloadBytes)) {
      throw new TidelogError('CHECKSUM_MISMATCH', `merge: the orphan batch at seq ${header.firstSeq} fails its checksum`);
    }
    // A notes-only batch holds no event to keep (its requests were all duplicates).
    if (header.count === 0) continue;
    const firstSeq = header.firstSeq;
    const lastSeq = firstSeq + header.count - 1;
    if (lastSeq <= target.durableSeq && target.epochAt(firstSeq) === header.leaderEpoch && target.epochAt(lastSeq) === header.leaderEpoch) {
      result.inLog++;
      continue;
    }
    const identity = mergeIdentity(header.leaderEpoch, firstSeq);
    const decision = target.sessions.begin(identity);
    if (decision.kind === 'pending') await decision.promise.catch(() => undefined);
    if (decision.kind !== 'append') {
      result.alreadyMerged++;
      continue;
    }
    const eventsStart = BATCH_HEADER_BYTES;
    const notes = header.notesBytes > 0 ? (readNotes(batch, eventsStart + header.count * EVENT_BYTES, header.notesBytes) ?? []) : [];
    const keep = new Uint8Array(header.count).fill(1);
    const moved: SessionNote[] = [];
    const begun: SessionTag[] = [identity];
    try {
      // An earlier merge's identity (this batch is a merged one, orphaned again) is carried like
      // a producer's session: a replica still holding that older orphan finds it merged.
      for (const request of sessionNotesOf(notes)) {
        let kind: string;
        try {
          kind = target.sessions.begin(request).kind;
        } catch (error) {
          // Fenced (the producer restarted) or a gap: the events stay, counted under the
          // merge's identity only; the producer no longer retries this request.
          if (!isTidelogError(error)) throw error;
          kind = 'refused';
        }
        if (kind === 'append') {
          moved.push(request);
          begun.push(request);
        } else if (kind !== 'refused') {
          for (const seq of writtenSeqs(request.runs)) {
            if (seq >= firstSeq && seq <= lastSeq && keep[seq - firstSeq] === 1) {
              keep[seq - firstSeq] = 0;
              result.droppedEvents++;
            }
          }
        }
      }
      let keptCount = 0;
      for (const flag of keep) keptCount += flag;
      if (keptCount === 0) {
        for (const tag of begun) target.sessions.abandon(tag, new TidelogError('CLOSED', 'merge: nothing left to append'));
        result.alreadyMerged++;
        continue;
      }
      const packed = new Uint8Array(keptCount * EVENT_BYTES);
      const newSeqOf = new Map<number, number>();
      let at = 0;
      for (let index = 0; index < header.count; index++) {
        if (keep[index] === 0) continue;
        const from = eventsStart + index * EVENT_BYTES;
        packed.set(batch.subarray(from, from + EVENT_BYTES), at * EVENT_BYTES);
        at++;
      }
      const noted: Array<{ tag: SessionTag; runs: number[] }> = [];
      await target.appendWithNote(packed, (assigned) => {
        let next = 0;
        for (let index = 0; index < header.count; index++) if (keep[index] === 1) newSeqOf.set(firstSeq + index, assigned[next++]);
        noted.push({ tag: identity, runs: seqsToRuns(assigned) }, ...moved.map((request) => ({ tag: request, runs: movedRuns(request.runs, newSeqOf) })));
        return encodeMergeNote({
          originEpoch: header.leaderEpoch,
          originFirstSeq: firstSeq,
          originCount: header.count,
          notes: noted.map(({ tag, runs }) => encodeSessionNote(tag, runs)),
        });
      });
      if (target.answeredAtDurable === true) for (const { tag, runs } of noted) target.sessions.markDurable(tag, runs);
      result.appended++;
      result.events += keptCount;
    } catch (error) {
      for (const tag of begun) target.sessions.abandon(tag, error as Error);
      throw error;
    }
  }
  return result;
}

/** The producer session notes a batch's notes carry (a merge note's inner ones included). */
function sessionNotesOf(notes: readonly Uint8Array[]): SessionNote[] {
  const sessions: SessionNote[] = [];
  for (const note of notes) {
    try {
      if (isMergeNote(note)) sessions.push(...decodeMergeNote(note).sessions);
      else sessions.push(decodeSessionNote(note));
    } catch (error) {
      if (!isTidelogError(error, 'DECODE_FAILED')) throw error;
    }
  }
  return sessions;
}

function* writtenSeqs(runs: readonly number[]): Generator<number> {
  for (let index = 0; index < runs.length; index += 2) {
    if (runs[index] === 0) continue;
    for (let offset = 0; offset < runs[index + 1]; offset++) yield runs[index] + offset;
  }
}

/** A request's runs with each written seq moved to where the merge put it (duplicates stay 0). */
function movedRuns(runs: readonly number[], newSeqOf: ReadonlyMap<number, number>): number[] {
  const seqs: number[] = [];
  for (let index = 0; index < runs.length; index += 2) {
    for (let offset = 0; offset < runs[index + 1]; offset++) {
      const seq = runs[index];
      seqs.push(seq === 0 ? 0 : (newSeqOf.get(seq + offset) ?? 0));
    }
  }
  return seqsToRuns(seqs);
}
