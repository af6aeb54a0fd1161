// The checker of a chaos run: holds its history (history.ts) against what the replicas hold
// afterwards. After healing and stopping the nodes the runner opens each replica's shard
// offline and calls checkHistory. The checker is pure and deterministic (no I/O, no timers, no
// randomness): the same history and logs give the same report, and the report stays small
// (every check keeps its full count but at most 10 examples).
//
// What "correct" means here, check by check:
//   lost            an ok event is at its acked (shard, seq) with the same 21 bytes;
//                   below a retained log's firstSeq it is counted as not checkable instead.
//                   Availability mode (acks 'leader'): an event a cut-off leader acked may
//                   have been merged at a later seq of the same shard on heal (counted
//                   `moved`): only where a newer epoch than the ack's holds the acked seq (the
//                   acked batch was cut) and wrote the landing seq (a newer leader merged it);
//                   it must still be in that shard's log, once
//   duplicated      no event content sits at two seqs (in one shard or across shards)
//   phantom         every event in a log was sent by some call
//   orderViolations each replica's entries run firstSeq, firstSeq + 1, … committedSeq
//   divergentShards a shard's replicas agree on committedSeq and on the bytes at every seq
//                   both hold (compared against the reference image as they stream by: the
//                   first differing seq is exact and no digest is needed)
//   failedLanded    no event of a definitely failed call is in a log
//   staleReads      every read matches the final log at its (shard, seq), within the commit point
//   stateMismatches the replicas' CRDT state agrees, and with a model folded from the log (state-check.ts)
// Every event the runner sends has unique content (its timestampNs is a global counter), so
// an event is named by its 21 bytes. A shard's reference log is the replica with the greatest
// committedSeq (the first on a tie: the first replica when they agree); the content checks
// (lost, duplicated, phantom, failed landed, unknown outcomes, reads) read that one.

import { defaultSignalSchema, type SignalSchema } from '../crdt/index.ts';
import { EVENT_BYTES } from '../event.ts';
import { grown, knownEpoch, misuse, recorded, type History, type OpRecord, type ReadLog, type ReplicaLog, type ShardReplicas } from './history.ts';
import { OUTCOME_FAIL, SentEvents, describeEvent, isSameEvent, u32At } from './sent-events.ts';
import { EntitySet, checkState } from './state-check.ts';

export interface CheckOptions {
  /** When decay and windows are evaluated; default: the greatest timestampNs sent. */
  atNs?: bigint;
  /** The nodes' signal schema; default: config/signals.json (the one file read, and only then). */
  schema?: SignalSchema;
  /** Entities whose state is compared; default 100 000. */
  maxStateEntities?: number;
  /** The cluster's acks mode; 'leader' (availability) lets a merge move an acked event to a later seq. */
  acks?: 'quorum' | 'all' | 'leader';
}

const ERROR_COUNTS = [
  'lost',
  'duplicated',
  'phantom',
  'orderViolations',
  'divergentShards',
  'failedLanded',
  'staleReads',
  'stateMismatches',
] as const;
export type CheckName = (typeof ERROR_COUNTS)[number];

export interface HistoryReport extends Record<CheckName, number> {
  ops: { invoked: number; ok: number; fail: number; unknown: number; pending: number };
  events: {
    acked: number;
    inLog: number;
    unknownLanded: number;
    unknownNotLanded: number;
    notCheckable: number;
    /** Availability mode: acked events a merge put at a later seq of their shard. */
    moved: number;
  };
  readsChecked: number;
  entitiesChecked: number;
  /** Per check (keys as the counts), at most 10 lines each. */
  examples: Record<CheckName, string[]>;
  /** What could not be checked and why (at most 20 lines). */
  notes: string[];
  /** The query time of the state check, as a decimal string. */
  atNs: string;
  /** True iff every error count is 0. */
  ok: boolean;
}

const MAX_EXAMPLES = 10;
const MAX_NOTES = 20;
const DEFAULT_MAX_STATE_ENTITIES = 100_000;
/** A reference image past this many events would not fit in memory anyway. */
const MAX_LOG_EVENTS = 2 ** 28;
/** Phantoms remembered to spot phantom duplicates; a log of garbage must not exhaust memory. */
const MAX_PHANTOMS_TRACKED = 100_000;

/** Counts and examples, per check. */
class Findings {
  readonly counts = Object.fromEntries(ERROR_COUNTS.map((name) => [name, 0])) as Record<CheckName, number>;
  readonly examples = Object.fromEntries(ERROR_COUNTS.map((name) => [name, [] as string[]])) as Record<CheckName, string[]>;
  readonly notes: string[] = [];

  /** Counts one finding; the line is built only while examples are still kept. */
  flag(check: CheckName, line: () => string): void {
    this.counts[check]++;
    if (this.examples[check].length < MAX_EXAMPLES) this.examples[check].push(line());
  }

  note(line: string): void {
    if (this.notes.length < MAX_NOTES) this.notes.push(line);
  }
}

/** One shard's reference log: the bytes at firstSeq … committedSeq and which seqs it held. */
class LogImage {
  bytes = new Uint8Array(0);
  isHeld = new Uint8Array(0);
  /** The epoch of the batch holding each seq (0: not known). */
  epochs = new Float64Array(0);
  heldCount = 0;
  readonly span: number;

  constructor(
    readonly shard: number,
    readonly nodeId: string,
    readonly firstSeq: number,
    readonly committedSeq: number,
  ) {
    this.span = Math.max(0, committedSeq - firstSeq + 1);
    if (this.span > MAX_LOG_EVENTS) throw misuse(`shard ${shard} ${nodeId}: ${this.span} committed events is past the checker's ${MAX_LOG_EVENTS}`);
  }

  get isGapless(): boolean {
    return this.heldCount === this.span;
  }

  holds(seq: number): boolean {
    const index = seq - this.firstSeq;
    return index >= 0 && index < this.isHeld.length && this.isHeld[index] === 1;
  }

  offsetOf(seq: number): number {
    return (seq - this.firstSeq) * EVENT_BYTES;
  }

  epochAt(seq: number): number {
    return this.holds(seq) ? this.epochs[seq - this.firstSeq] : 0;
  }

  store(seq: number, event: Uint8Array, epoch: number): void {
    const index = seq - this.firstSeq;
    if (index >= this.isHeld.length) {
      let capacity = Math.max(1024, this.isHeld.length * 2);
      while (capacity <= index) capacity *= 2;
      capacity = Math.min(capacity, this.span);
      this.isHeld = grown(this.isHeld, new Uint8Array(capacity));
      this.bytes = grown(this.bytes, new Uint8Array(capacity * EVENT_BYTES));
      this.epochs = grown(this.epochs, new Float64Array(capacity));
    }
    if (this.isHeld[index] === 1) return;
    this.isHeld[index] = 1;
    this.epochs[index] = epoch;
    this.bytes.set(event, index * EVENT_BYTES);
    this.heldCount++;
  }
}

/**
 * Streams one replica's entries once: checks their order and either stores them (the
 * reference) or compares them with the reference image. Returns the first seq where the
 * replica holds other bytes than the image, or null.
 */
function scanReplica(replica: ReplicaLog, image: LogImage, isReference: boolean, findings: Findings): number | null {
  const { nodeId, firstSeq, committedSeq } = replica;
  const where = `shard ${image.shard} ${nodeId}`;
  if (committedSeq < firstSeq - 1) {
    findings.flag('orderViolations', () => `${where}: committedSeq ${committedSeq} is below firstSeq ${firstSeq} − 1`);
  }
  let expected = firstSeq;
  let isPastCommit = false;
  let firstDifferentSeq: number | null = null;
  for (const { seq, event, epoch } of replica.entries) {
    if (!Number.isSafeInteger(seq) || !(event instanceof Uint8Array) || event.byteLength !== EVENT_BYTES) {
      findings.flag('orderViolations', () => `${where}: malformed entry at seq ${String(seq)}`);
      continue;
    }
    if (seq > committedSeq) {
      if (!isPastCommit) findings.flag('orderViolations', () => `${where}: entry at seq ${seq} past committedSeq ${committedSeq}`);
      isPastCommit = true;
      continue;
    }
    if (seq !== expected) {
      const due = expected;
      findings.flag('orderViolations', () => `${where}: seq ${seq} where ${due} was due`);
      if (seq < expected) continue;
    }
    expected = seq + 1;
    if (isReference) image.store(seq, event, knownEpoch(epoch));
    else if (firstDifferentSeq === null && image.holds(seq) && !isSameEvent(image.bytes, image.offsetOf(seq), event, 0)) {
      firstDifferentSeq = seq;
    }
  }
  if (expected <= committedSeq) {
    const last = expected - 1;
    findings.flag('orderViolations', () => `${where}: entries end at seq ${last}, committedSeq is ${committedSeq}`);
  }
  return firstDifferentSeq;
}

/** Reads every replica of a shard once; returns the reference image. Counts order and divergence. */
function scanShard(shard: ShardReplicas, findings: Findings): LogImage {
  const { replicas } = shard;
  if (replicas.length === 0) throw misuse(`shard ${shard.shard} has no replicas`);
  for (const replica of replicas) {
    if (!Number.isSafeInteger(replica.firstSeq) || replica.firstSeq < 1 || !Number.isSafeInteger(replica.committedSeq)) {
      throw misuse(`shard ${shard.shard} ${replica.nodeId}: firstSeq ${replica.firstSeq}, committedSeq ${replica.committedSeq}`);
    }
  }
  let reference = replicas[0];
  for (const replica of replicas) if (replica.committedSeq > reference.committedSeq) reference = replica;
  const image = new LogImage(shard.shard, reference.nodeId, reference.firstSeq, reference.committedSeq);
  scanReplica(reference, image, true, findings);
  const differences: string[] = [];
  for (const replica of replicas) {
    if (replica === reference) continue;
    const differentSeq = scanReplica(replica, image, false, findings);
    if (replica.committedSeq !== image.committedSeq) {
      differences.push(`${replica.nodeId} committedSeq ${replica.committedSeq} vs ${image.committedSeq}`);
    }
    if (differentSeq !== null) differences.push(`${replica.nodeId} holds other bytes from seq ${differentSeq}`);
  }
  if (differences.length > 0) {
    findings.flag('divergentShards', () => `shard ${shard.shard} (reference ${image.nodeId}): ${differences.join('; ')}`);
  }
  return image;
}

/** Matches a reference log with what was sent: landings, duplicates, phantoms, entities touched. */
function indexImage(image: LogImage, sent: SentEvents, phantoms: Map<string, number>, findings: Findings): EntitySet {
  const entities = new EntitySet();
  const { bytes, isHeld, shard } = image;
  for (let index = 0; index < isHeld.length; index++) {
    if (isHeld[index] === 0) continue;
    const seq = image.firstSeq + index;
    const offset = index * EVENT_BYTES;
    entities.add(u32At(bytes, offset), u32At(bytes, offset + 4));
    const canonical = sent.find(bytes, offset);
    if (canonical < 0) {
      findings.flag('phantom', () => `shard ${shard} seq ${seq}: ${describeEvent(bytes, offset)} was never sent`);
      const key = Buffer.from(bytes.buffer, bytes.byteOffset + offset, EVENT_BYTES).toString('hex');
      const earlier = phantoms.get(key);
      if (earlier !== undefined) {
        findings.flag('duplicated', () => `shard ${shard} seq ${seq}: phantom ${describeEvent(bytes, offset)} again (first at ${earlier})`);
      } else if (phantoms.size < MAX_PHANTOMS_TRACKED) phantoms.set(key, seq);
      continue;
    }
    if (sent.landedSeq[canonical] !== 0) {
      const [firstShard, firstSeq] = [sent.landedShard[canonical], sent.landedSeq[canonical]];
      findings.flag('duplicated', () => `${describeEvent(bytes, offset)} at shard ${firstShard} seq ${firstSeq} and shard ${shard} seq ${seq}`);
      continue;
    }
    sent.landedShard[canonical] = shard;
    sent.landedSeq[canonical] = seq;
  }
  return entities;
}

/**
 * Every ok event at its acked place (or, when merges may move it, later in the same shard);
 * returns how many were below a retained log's start, and how many a merge moved.
 */
function checkAcks(records: readonly OpRecord[], sent: SentEvents, images: Map<number, LogImage>, findings: Findings, isMoveAllowed: boolean): { notCheckable: number; moved: number } {
  let notCheckable = 0;
  let moved = 0;
  let seqUnknownNotFound = 0;
  let eventIndex = 0;
  for (const record of records) {
    const count = record.events.byteLength / EVENT_BYTES;
    if (record.outcome !== 'ok' || record.ackShards === null || record.ackSeqs === null) {
      eventIndex += count;
      continue;
    }
    for (let index = 0; index < count; index++, eventIndex++) {
      const shard = record.ackShards[index];
      const seq = record.ackSeqs[index];
      const image = images.get(shard);
      if (seq === 0) {
        const canonical = sent.canonicalOf[eventIndex];
        if (sent.landedSeq[canonical] !== 0 && sent.landedShard[canonical] === shard) continue;
        if (image !== undefined && image.firstSeq > 1) {
          // Not in the retained log, and its seq unknown: deleted by retention or lost, the
          // checker cannot tell which (counted not checkable, and said so apart).
          notCheckable++;
          seqUnknownNotFound++;
          continue;
        }
        const offset = index * EVENT_BYTES;
        findings.flag('lost', () => `op ${record.id} (${record.process}) ${describeEvent(record.events, offset)} acked on shard ${shard} (seq not known to the caller): not in that shard's log`);
        continue;
      }
      if (image !== undefined && seq < image.firstSeq) {
        notCheckable++;
        continue;
      }
      let problem: string | null = null;
      if (image === undefined) problem = 'no replica of the shard was given';
      else if (seq > image.committedSeq) problem = `the log is committed only to ${image.committedSeq}`;
      else if (!image.holds(seq)) problem = 'the log holds nothing there';
      else if (!isSameEvent(image.bytes, image.offsetOf(seq), record.events, index * EVENT_BYTES)) {
        problem = `the log holds ${describeEvent(image.bytes, image.offsetOf(seq))} there`;
      }
      if (problem === null) continue;
      const canonical = sent.canonicalOf[eventIndex];
      if (isMoveAllowed && image !== undefined && isMovedByMerge(image, seq, record.ackEpochs?.[index] ?? 0, sent.landedShard[canonical] === shard ? sent.landedSeq[canonical] : 0)) {
        moved++;
        continue;
      }
      const [offset, reason] = [index * EVENT_BYTES, problem];
      findings.flag('lost', () => {
        const landed = sent.landedSeq[canonical] !== 0 ? ` (it is at shard ${sent.landedShard[canonical]} seq ${sent.landedSeq[canonical]})` : '';
        const epoch = record.ackEpochs?.[index] ?? 0;
        const by = `${epoch > 0 ? ` by epoch ${epoch}` : ''} at ${record.completedMs ?? '?'} ms`;
        return `op ${record.id} (${record.process}) ${describeEvent(record.events, offset)} acked at shard ${shard} seq ${seq}${by}: ${reason}${landed}`;
      });
    }
  }
  if (seqUnknownNotFound > 0) findings.note(`${seqUnknownNotFound} events acked without their seq (session replays) are in no retained log: deleted by retention or lost, not knowable`);
  return { notCheckable, moved };
}

/**
 * Availability mode: an event acknowledged at `ackedSeq` by a leader of `ackEpoch` that the
 * final log holds at `landedSeq` instead. A merge explains it only when a newer epoch holds the
 * acked seq (the ack's batch was cut there) and wrote the landing seq (a newer leader merged
 * it); anything else — the same epoch, an earlier seq, epochs not known — is a misplaced ack.
 */
function isMovedByMerge(image: LogImage, ackedSeq: number, ackEpoch: number, landedSeq: number): boolean {
  if (ackEpoch <= 0 || landedSeq <= ackedSeq) return false;
  return image.epochAt(ackedSeq) > ackEpoch && image.epochAt(landedSeq) > ackEpoch;
}

/** Events of definitely failed calls that landed (errors) and of unknown calls (information). */
function checkOutcomes(records: readonly OpRecord[], sent: SentEvents, findings: Findings): { landed: number; notLanded: number } {
  let landed = 0;
  let notLanded = 0;
  for (let index = 0; index < sent.recordOf.length; index++) {
    const record = records[sent.recordOf[index]];
    const canonical = sent.canonicalOf[index];
    const isLanded = sent.landedSeq[canonical] !== 0;
    if (record.outcome === 'unknown' || record.outcome === 'pending') {
      if (isLanded) landed++;
      else notLanded++;
    }
    // Counted once per content, and only when no ok or unknown sending explains the landing.
    if (canonical === index && isLanded && sent.outcomes[canonical] === OUTCOME_FAIL) {
      findings.flag(
        'failedLanded',
        () =>
          `op ${record.id} (${record.process}) failed with ${record.detail ?? '?'} but ${describeEvent(sent.bytes, index * EVENT_BYTES)} is at shard ${sent.landedShard[canonical]} seq ${sent.landedSeq[canonical]}`,
      );
    }
  }
  return { landed, notLanded };
}

/** Every read matches the final log; returns [reads checked, reads below a retained start]. */
function checkReads(reads: ReadLog, images: Map<number, LogImage>, findings: Findings): [number, number] {
  let checked = 0;
  let notCheckable = 0;
  for (let index = 0; index < reads.count; index++) {
    const shard = reads.shards[index];
    const seq = reads.seqs[index];
    const image = images.get(shard);
    if (image !== undefined && seq < image.firstSeq) {
      notCheckable++;
      continue;
    }
    checked++;
    let problem: string | null = null;
    if (image === undefined) problem = 'no replica of the shard was given';
    else if (seq > image.committedSeq) problem = `past the final commit point ${image.committedSeq}`;
    else if (!image.holds(seq)) problem = 'the final log holds nothing there';
    else if (!isSameEvent(image.bytes, image.offsetOf(seq), reads.events, index * EVENT_BYTES)) {
      problem = `the final log holds ${describeEvent(image.bytes, image.offsetOf(seq))}`;
    }
    if (problem === null) continue;
    const reason = problem;
    findings.flag('staleReads', () => `read of shard ${shard} seq ${seq} saw ${describeEvent(reads.events, index * EVENT_BYTES)}: ${reason}`);
  }
  return [checked, notCheckable];
}

/** Holds the history against every replica's committed log and state (see the file header). */
export function checkHistory(history: History, shards: ShardReplicas[], options: CheckOptions = {}): HistoryReport {
  const { records, reads } = recorded.get(history) as { records: OpRecord[]; reads: ReadLog };
  const findings = new Findings();
  const sorted = [...shards].sort((a, b) => a.shard - b.shard);
  for (let index = 1; index < sorted.length; index++) {
    if (sorted[index].shard === sorted[index - 1].shard) throw misuse(`shard ${sorted[index].shard} given twice`);
  }
  const sent = new SentEvents(records);
  const images = new Map<number, LogImage>();
  const entitySets = new Map<number, EntitySet>();
  const phantoms = new Map<string, number>();
  let inLog = 0;
  for (const shard of sorted) {
    const image = scanShard(shard, findings);
    images.set(shard.shard, image);
    entitySets.set(shard.shard, indexImage(image, sent, phantoms, findings));
    inLog += image.heldCount;
  }
  const { notCheckable, moved } = checkAcks(records, sent, images, findings, options.acks === 'leader');
  const unknown = checkOutcomes(records, sent, findings);
  const [readsChecked, readsNotCheckable] = checkReads(reads, images, findings);
  const atNs = options.atNs ?? sent.maxTimestampNs;
  const limit = options.maxStateEntities ?? DEFAULT_MAX_STATE_ENTITIES;
  const schema = options.schema ?? defaultSignalSchema();
  const entitiesChecked = checkState(sorted, images, entitySets, { schema, atNs, limit }, findings);

  const counts = history.counts();
  if (counts.pending > 0) findings.note(`${counts.pending} ops never completed; their events count as unknown`);
  if (notCheckable > 0) findings.note(`${notCheckable} acked events lie below a retained log's first seq`);
  if (readsNotCheckable > 0) findings.note(`${readsNotCheckable} reads lie below a retained log's first seq`);
  let entityTotal = 0;
  for (const set of entitySets.values()) entityTotal += set.size;
  if (entitiesChecked < entityTotal) findings.note(`state compared for ${entitiesChecked} of ${entityTotal} entities (sampled by hash)`);

  const found = findings.counts;
  return {
    ops: { invoked: counts.invoked, ok: counts.ok, fail: counts.fail, unknown: counts.unknown, pending: counts.pending },
    events: {
      acked: counts.ackedEvents,
      inLog,
      unknownLanded: unknown.landed,
      unknownNotLanded: unknown.notLanded,
      notCheckable,
      moved,
    },
    ...found,
    readsChecked,
    entitiesChecked,
    examples: findings.examples,
    notes: findings.notes,
    atNs: atNs.toString(),
    ok: ERROR_COUNTS.every((name) => found[name] === 0),
  };
}

/** A few lines for people: the verdict, the counts, up to 3 examples per failed check, the notes. */
export function formatReport(report: HistoryReport): string {
  const { ops, events } = report;
  const lines = [
    `history ${report.ok ? 'OK' : 'FAILED'}: ${ops.invoked} ops (${ops.ok} ok, ${ops.fail} fail, ${ops.unknown} unknown, ${ops.pending} pending), ` +
      `${events.acked} events acked, ${events.inLog} in the logs`,
    `  lost ${report.lost}, duplicated ${report.duplicated}, phantom ${report.phantom}, order violations ${report.orderViolations}, ` +
      `divergent shards ${report.divergentShards}, failed landed ${report.failedLanded}, stale reads ${report.staleReads} of ${report.readsChecked}, ` +
      `state mismatches ${report.stateMismatches} over ${report.entitiesChecked} entities`,
    `  unknown outcomes: ${events.unknownLanded} events landed, ${events.unknownNotLanded} did not; not checkable (retention): ${events.notCheckable}` +
      (events.moved > 0 ? `; moved to a later seq by a merge: ${events.moved}` : ''),
  ];
  for (const name of ERROR_COUNTS) {
    for (const line of report.examples[name].slice(0, 3)) lines.push(`  ${name}: ${line}`);
  }
  for (const note of report.notes) lines.push(`  note: ${note}`);
  return lines.join('\n');
}
