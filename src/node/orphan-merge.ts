// The leader's side of a merge (availability mode, docs/REPLICATION.md): orphan batches — what
// a cut-off replica acknowledged on its own fsync and then cut from its log when it rejoined —
// are re-appended to the shard's log under the current epoch, each exactly once:
//
//   per orphan batch (identity: its epoch E and first seq S):
//     in this log already (same seqs, same epoch: one batch)          → nothing to do
//     identity session `~merge:E:S` already noted (an earlier merge) → nothing to do
//     else, per producer request in it (its session note):
//       the store has it (noted, answered, in flight)       → its events are here: left out
//       the store cannot tell (below its floor, or of an epoch the producer has left) → its
//         note is looked for in this log after the end of epoch E here (a retry on this side
//         was written by a newer epoch): found → left out; not found → its events stay
//       not noted                                           → its events stay, its note is
//         written again with the new seqs
//     append what stays (no content dedup) with one merge note: the identity's session note
//     and the moved producer notes; all of it durable in one batch, atomically.
//
// So a retry of the same merge, a merge of the same batch from another replica, and a
// producer's own retry elsewhere each count the events once. Where this log no longer holds
// what it would look in (retention), an event the store cannot place stays: it may then be in
// the log twice, never lost. Bounded by the session store's memory: an identity forgotten
// (evicted past maxSessions) is merged again if sent again.

import { TidelogError } from '../errors.ts';
import { EVENT_BYTES } from '../event.ts';
import { seqsToRuns } from '../transport/codec.ts';
import type { SessionTag } from '../transport/messages.ts';
import type { MergeReply } from '../transport/replication-codec.ts';
import { BATCH_HEADER_BYTES, MAX_NOTE_BYTES, readBatchHeader, readNotes, verifyBatch, type BatchHeader } from '../wal/batch-format.ts';
import { MERGE_NOTE_HEAD_BYTES, decodeMergeNote, encodeMergeNote, isMergeNote, mergeIdentity } from './merge-note.ts';
import { decodeSessionNote, encodeSessionNote, producerIdBytes, sessionNoteBytes, type SessionNote } from './session-note.ts';
import type { SessionStore } from './session-store.ts';

export interface MergeTarget {
  readonly shard: number;
  readonly sessions: SessionStore;
  readonly durableSeq: number;
  /** The lowest seq this log still holds (retention deleted what came before). */
  readonly firstSeq: number;
  epochAt(seq: number): number;
  /** The end of the newest epoch ≤ `epoch` in this log (null: none). */
  epochEnd(epoch: number): { epoch: number; endSeq: number } | null;
  /** The sealed batches from the one holding fromSeq to the one holding toSeq, in order (ShardHost.sealedBetween). */
  sealedBetween(fromSeq: number, toSeq: number): AsyncIterable<Uint8Array>;
  /** Appends with a note, no content dedup; resolves with one seq per event. */
  appendWithNote(packed: Uint8Array, note: (assigned: readonly number[]) => Uint8Array): Promise<number[]>;
  /** appendWithNote resolves at durable (availability mode): the sessions begun are marked so. */
  answeredAtDurable?: boolean;
}

/** What a merge did (the merge request's reply: src/transport/replication-codec.ts). */
export type MergeResult = MergeReply;

interface Orphan {
  bytes: Uint8Array;
  header: BatchHeader;
  /** Producer session notes it carries (a merge note's inner ones included). */
  requests: SessionNote[];
  /** The seal time of the write the batch holds: its own, or (merged before) the first orphan's. */
  originTimeNs: bigint;
}

/** Merges `batches` (sealed orphan batches, in their log order) into the target's log. */
export async function mergeOrphanBatches(target: MergeTarget, batches: readonly Uint8Array[]): Promise<MergeResult> {
  const result: MergeResult = { batches: 0, inLog: 0, alreadyMerged: 0, appended: 0, events: 0, droppedEvents: 0 };
  const orphans = batches.map((batch) => parseOrphan(target.shard, batch));
  const landed = await findUncertainRequests(target, orphans);
  for (const orphan of orphans) {
    result.batches++;
    const { header } = orphan;
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
    if (decision.kind === 'pending') {
      // Merged by another request now: once it is durable this one is answered. If it failed,
      // this batch is not in the log: the sender must try again (never report it merged).
      try {
        await decision.promise;
      } catch (error) {
        throw new TidelogError('OVERLOADED', `merge: a concurrent merge of the batch at epoch ${header.leaderEpoch} seq ${firstSeq} failed; send it again`, { cause: error });
      }
    }
    if (decision.kind !== 'append') {
      result.alreadyMerged++;
      continue;
    }
    const keep = new Uint8Array(header.count).fill(1);
    const moved: SessionNote[] = [];
    const begun: SessionTag[] = [identity];
    try {
      for (const request of orphan.requests) {
        const known = target.sessions.classify(request);
        let isHere: boolean;
        if (known === 'here') isHere = true;
        else if (known === 'forgotten' || known === 'fenced') isHere = landed.has(requestKey(request));
        else {
          // No gap check: the requests before it may land later (from another orphan, or a
          // retry); the store keeps them appendable.
          const begin = target.sessions.begin(request, undefined, { allowGap: true, digest: request.digest });
          isHere = begin.kind !== 'append';
          if (!isHere) {
            moved.push(request);
            begun.push(request);
          }
        }
        if (!isHere) continue;
        for (const seq of writtenSeqs(request.runs)) {
          if (seq >= firstSeq && seq <= lastSeq && keep[seq - firstSeq] === 1) {
            keep[seq - firstSeq] = 0;
            result.droppedEvents++;
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
      // Checked before anything is appended: a note the WAL cannot hold would fail its lane.
      const noteBytes = mergeNoteBound(identity, moved);
      if (noteBytes > MAX_NOTE_BYTES) {
        throw new TidelogError('REQUEST_TOO_LARGE', `merge: the batch at epoch ${header.leaderEpoch} seq ${firstSeq} needs a ${noteBytes}-byte merge note, at most ${MAX_NOTE_BYTES}`, {
          details: { noteBytes, maxNoteBytes: MAX_NOTE_BYTES },
        });
      }
      const packed = new Uint8Array(keptCount * EVENT_BYTES);
      let at = 0;
      for (let index = 0; index < header.count; index++) {
        if (keep[index] === 0) continue;
        const from = BATCH_HEADER_BYTES + index * EVENT_BYTES;
        packed.set(orphan.bytes.subarray(from, from + EVENT_BYTES), at * EVENT_BYTES);
        at++;
      }
      // A moved request keeps its digest (its events are the same); the identity has none.
      const noted: Array<{ tag: SessionTag; runs: number[]; digest?: number }> = [];
      await target.appendWithNote(packed, (assigned) => {
        const newSeqOf = new Map<number, number>();
        let next = 0;
        for (let index = 0; index < header.count; index++) if (keep[index] === 1) newSeqOf.set(firstSeq + index, assigned[next++]);
        noted.push({ tag: identity, runs: seqsToRuns(assigned) }, ...moved.map((request) => ({ tag: request, runs: movedRuns(request.runs, newSeqOf), digest: request.digest })));
        return encodeMergeNote({
          originEpoch: header.leaderEpoch,
          originFirstSeq: firstSeq,
          originCount: header.count,
          originTimeNs: orphan.originTimeNs,
          notes: noted.map(({ tag, runs, digest }) => encodeSessionNote(tag, runs, digest)),
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

/** Checks and parses one orphan batch; BAD_REQUEST or CHECKSUM_MISMATCH for one that is not whole. */
function parseOrphan(shard: number, batch: Uint8Array): Orphan {
  const parsed = readBatchHeader(batch, 0);
  if (!parsed.ok) throw new TidelogError('BAD_REQUEST', `merge: not a batch (${parsed.problem})`);
  const { header } = parsed;
  if (header.shardId !== shard) throw new TidelogError('BAD_REQUEST', `merge: a batch of shard ${header.shardId} sent to shard ${shard}`);
  if (BATCH_HEADER_BYTES + header.payloadBytes !== batch.byteLength || !verifyBatch(batch, 0, header.payloadBytes)) {
    throw new TidelogError('CHECKSUM_MISMATCH', `merge: the orphan batch at seq ${header.firstSeq} fails its checksum`);
  }
  // A merged batch orphaned again: the write time is the first orphan's, and the identities it
  // merged are carried like producer sessions (a replica still holding that older orphan finds
  // it merged).
  const { sessions: requests, mergedTimeNs } = notesOf(batch, header);
  const originTimeNs = mergedTimeNs ?? header.timestampNs;
  return { bytes: batch, header, requests, originTimeNs };
}

/**
 * The requests among the orphans whose landing the session store cannot answer (below its
 * floor, or of a session epoch the producer has left) that this log notes after the end of
 * their orphan's epoch here — where a retry of them on this side would be. One read of that
 * stretch of log per distinct start, collecting only the keys asked for.
 */
async function findUncertainRequests(target: MergeTarget, orphans: readonly Orphan[]): Promise<Set<string>> {
  const wanted = new Map<number, Set<string>>();
  // Where this log and the orphans' may part: no later than the end of their epoch here, nor
  // than just before the first orphan batch (this log may hold an older epoch's tail past
  // it, which the orphans' leader never had: a copy of a request may sit there).
  let firstOrphanSeq = Number.POSITIVE_INFINITY;
  for (const { header } of orphans) if (header.count > 0) firstOrphanSeq = Math.min(firstOrphanSeq, header.firstSeq);
  for (const { header, requests } of orphans) {
    if (header.count === 0) continue;
    // Merged before (identity noted, or forgotten with it): nothing of it is appended.
    const identity = target.sessions.classify(mergeIdentity(header.leaderEpoch, header.firstSeq));
    if (identity === 'here' || identity === 'forgotten') continue;
    for (const request of requests) {
      const known = target.sessions.classify(request);
      if (known !== 'forgotten' && known !== 'fenced') continue;
      const from = Math.min(target.epochEnd(header.leaderEpoch)?.endSeq ?? 0, firstOrphanSeq - 1);
      let keys = wanted.get(from);
      if (keys === undefined) wanted.set(from, (keys = new Set()));
      keys.add(requestKey(request));
    }
  }
  const found = new Set<string>();
  for (const [afterSeq, keys] of wanted) {
    // What retention deleted cannot be looked at: such a request is taken as not here (its
    // events stay: at worst twice in the log, never lost).
    for await (const batch of target.sealedBetween(Math.max(afterSeq + 1, target.firstSeq), target.durableSeq)) {
      const parsed = readBatchHeader(batch, 0);
      if (!parsed.ok) continue; // sealedBetween parsed it already
      for (const note of notesOf(batch, parsed.header).sessions) {
        const key = requestKey(note);
        if (keys.has(key)) found.add(key);
      }
    }
  }
  return found;
}

/** The producer session notes a batch carries (a merge note's inner ones included), and a merge note's write time. */
function notesOf(batch: Uint8Array, header: BatchHeader): { sessions: SessionNote[]; mergedTimeNs: bigint | null } {
  const notes = header.notesBytes > 0 ? (readNotes(batch, BATCH_HEADER_BYTES + header.count * EVENT_BYTES, header.notesBytes) ?? []) : [];
  const sessions: SessionNote[] = [];
  let mergedTimeNs: bigint | null = null;
  for (const note of notes) {
    try {
      if (isMergeNote(note)) {
        const merged = decodeMergeNote(note);
        mergedTimeNs = merged.originTimeNs;
        sessions.push(...merged.sessions);
      } else sessions.push(decodeSessionNote(note));
    } catch (error) {
      // A note that does not decode was never a leader's (the state skips it the same way).
      if (!(error instanceof TidelogError && error.code === 'DECODE_FAILED')) throw error;
    }
  }
  return { sessions, mergedTimeNs };
}

function requestKey(tag: SessionTag): string {
  return `${tag.producerId}\u0000${tag.sessionEpoch}\u0000${tag.requestSeq}`;
}

/**
 * The merge note's size at most: the identity's note (the kept events take consecutive seqs:
 * one run) and each moved note (its kept events stay consecutive, so its runs never grow).
 */
function mergeNoteBound(identity: SessionTag, moved: readonly SessionNote[]): number {
  let bytes = MERGE_NOTE_HEAD_BYTES + 4 + sessionNoteBytes(producerIdBytes(identity.producerId).byteLength, 1);
  for (const request of moved) bytes += 4 + sessionNoteBytes(producerIdBytes(request.producerId).byteLength, request.runs.length / 2);
  return bytes;
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

