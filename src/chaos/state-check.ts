// The CRDT state part of the chaos check (history-check.ts calls checkState): do the replicas
// hold the state their logs fold to?
//
// A replica's state is folded from batches stamped with the leader's seal time and
// epoch (shard-state.ts), which the checker does not know. Of a SignalStateView
//   count  (all-time event count)          depends only on which events were folded,
//   total  (PN-counter weight sum, exact)  the same,
//   score  (decayed score at atNs)         on the events, their own timestampNs and the seq
//                                          order they fold in (score-column.ts), and is
//                                          computed by the same arithmetic in the same order,
//                                          so it is bit-identical, not just close;
//   lastUpdateNs (the event of the greatest HLC) and isHidden (LWW flags by HLC) depend on the
//   batch stamps: a new leader sealing with a clock behind the old one reorders HLCs.
// So for every entity the reference logs touch (all of them up to maxStateEntities, 100k by
// default, else a deterministic sample by hash): each replica's whole query(entity, every
// signal type, atNs) must equal the first replica's (deep equality, bigints included), and
// count, total and score of every signal type must equal a model: a fresh ShardState folded
// from the shard's reference log with stamps of its own. The model is skipped for a shard
// whose log does not start at seq 1 (retention dropped events the state still counts) or has
// a gap; the replicas are still compared with one another. One mismatch is counted per
// (entity, replica).

import type { SignalSchema } from '../crdt/index.ts';
import { EVENT_BYTES } from '../event.ts';
import { finalMix, mixWord } from '../murmur.ts';
import { ShardState } from '../node/shard-state.ts';
import { grown, misuse, type ReplicaLog, type ShardReplicas } from './history.ts';

const MODEL_BATCH_EVENTS = 65_536;

/** What the state check reads of a shard's reference log (history-check.ts's LogImage). */
interface ReferenceLog {
  readonly shard: number;
  readonly firstSeq: number;
  /** Seqs firstSeq … committedSeq; the event at firstSeq + i is at bytes[i * EVENT_BYTES]. */
  readonly span: number;
  readonly bytes: Uint8Array;
  /** True iff every seq of the span is held. */
  readonly isGapless: boolean;
}

/** Where the state check reports (history-check.ts's Findings). */
interface StateFindings {
  flag(check: 'stateMismatches', line: () => string): void;
  note(line: string): void;
}

/** Entity ids as (lo, hi) u32 pairs in an open-addressing set, in insertion order. */
export class EntitySet {
  size = 0;
  los = new Uint32Array(1024);
  his = new Uint32Array(1024);
  private slots = new Int32Array(2048);

  add(lo: number, hi: number): void {
    const mask = this.slots.length - 1;
    let slot = finalMix(mixWord(mixWord(0, lo), hi)) & mask;
    for (let entry = this.slots[slot]; entry !== 0; entry = this.slots[slot]) {
      if (this.los[entry - 1] === lo && this.his[entry - 1] === hi) return;
      slot = (slot + 1) & mask;
    }
    if (this.size === this.los.length) {
      this.los = grown(this.los, new Uint32Array(this.size * 2));
      this.his = grown(this.his, new Uint32Array(this.size * 2));
    }
    this.los[this.size] = lo;
    this.his[this.size] = hi;
    this.slots[slot] = ++this.size;
    if (this.size * 2 > this.slots.length) this.rehash();
  }

  idAt(index: number): bigint {
    return (BigInt(this.his[index]) << 32n) | BigInt(this.los[index]);
  }

  private rehash(): void {
    this.slots = new Int32Array(this.slots.length * 2);
    const mask = this.slots.length - 1;
    for (let index = 0; index < this.size; index++) {
      let slot = finalMix(mixWord(mixWord(0, this.los[index]), this.his[index])) & mask;
      while (this.slots[slot] !== 0) slot = (slot + 1) & mask;
      this.slots[slot] = index + 1;
    }
  }
}

interface Counted {
  count: unknown;
  total: unknown;
  score: unknown;
}

/** count, total and score per signal type of a SignalStateView[]; null for another shape. */
function countedFields(views: unknown): Map<number, Counted> | null {
  if (!Array.isArray(views)) return null;
  const fields = new Map<number, Counted>();
  for (const view of views as unknown[]) {
    if (view === null || typeof view !== 'object') return null;
    const { signalType, count, total, score } = view as Record<string, unknown>;
    if (typeof signalType !== 'number') return null;
    fields.set(signalType, { count, total, score });
  }
  return fields;
}

function modelDifference(model: Map<number, Counted>, replica: unknown, signalTypes: readonly number[]): string | null {
  const fields = countedFields(replica);
  if (fields === null) return `unreadable view ${preview(replica)}`;
  for (const signalType of signalTypes) {
    const want = model.get(signalType) as Counted;
    const got = fields.get(signalType);
    if (got === undefined) return `no view of signal type ${signalType}`;
    // Equal is equal: the model folds the same events in the same order with the same arithmetic.
    if (got.count !== want.count || got.total !== want.total || got.score !== want.score) {
      return `signal type ${signalType} count/total/score ${String(got.count)}/${String(got.total)}/${String(got.score)}, model ${String(want.count)}/${String(want.total)}/${String(want.score)}`;
    }
  }
  return null;
}

/** Deep equality of query answers: arrays, plain objects, primitives and bigints; −0 equals 0. */
function isSameValue(a: unknown, b: unknown, depth = 0): boolean {
  if (a === b) return true;
  if (typeof a === 'number' && typeof b === 'number') return Number.isNaN(a) && Number.isNaN(b);
  if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object' || depth > 16) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const aKeys = Object.keys(a);
  const bKeys = Object.keys(b);
  if (aKeys.length !== bKeys.length) return false;
  for (const key of aKeys) {
    if (!Object.hasOwn(b, key)) return false;
    if (!isSameValue((a as Record<string, unknown>)[key], (b as Record<string, unknown>)[key], depth + 1)) return false;
  }
  return true;
}

function preview(value: unknown): string {
  let text: string;
  try {
    text = JSON.stringify(value, (_key, field: unknown) => (typeof field === 'bigint' ? field.toString() : field)) ?? String(value);
  } catch {
    text = String(value);
  }
  return text.length > 240 ? `${text.slice(0, 240)}…` : text;
}

/** The first part where two answers differ, both ways. */
function answerDifference(got: unknown, want: unknown): string {
  if (Array.isArray(got) && Array.isArray(want) && got.length === want.length) {
    const index = got.findIndex((item, at) => !isSameValue(item, want[at]));
    if (index >= 0) return `${preview(got[index])} vs ${preview(want[index])}`;
  }
  return `${preview(got)} vs ${preview(want)}`;
}

function queryReplica(replica: ReplicaLog, entityId: bigint, signalTypes: readonly number[], atNs: bigint): unknown {
  let answer: unknown;
  try {
    answer = replica.query(entityId, signalTypes, atNs);
  } catch (error) {
    return { queryFailed: error instanceof Error ? error.message : String(error) };
  }
  if (answer !== null && typeof (answer as { then?: unknown }).then === 'function') {
    throw misuse(`${replica.nodeId}: query must answer synchronously`);
  }
  return answer;
}

/** A fresh ShardState folded from the image, stamped with stamps of its own (see the header). */
function foldModel(image: ReferenceLog, schema: SignalSchema): ShardState {
  const model = new ShardState({ shard: image.shard, schema });
  for (let start = 0; start < image.span; start += MODEL_BATCH_EVENTS) {
    const count = Math.min(MODEL_BATCH_EVENTS, image.span - start);
    const events = image.bytes.subarray(start * EVENT_BYTES, (start + count) * EVENT_BYTES);
    model.apply({ firstSeq: image.firstSeq + start, count, events, timestampNs: 0n, leaderEpoch: 1, notes: [] });
  }
  return model;
}

/** Which entities of each shard to compare: all, or the `limit` with the smallest hashes. */
function selectEntities(shards: readonly number[], entitySets: Map<number, EntitySet>, limit: number): Map<number, number[]> {
  const hashOf = (shard: number, set: EntitySet, index: number): number =>
    finalMix(mixWord(mixWord(mixWord(0x5eed, shard), set.los[index]), set.his[index]));
  let total = 0;
  for (const set of entitySets.values()) total += set.size;
  let threshold = 0xffff_ffff;
  if (total > limit) {
    const hashes = new Uint32Array(total);
    let at = 0;
    for (const shard of shards) {
      const set = entitySets.get(shard) as EntitySet;
      for (let index = 0; index < set.size; index++) hashes[at++] = hashOf(shard, set, index);
    }
    hashes.sort();
    threshold = limit > 0 ? hashes[limit - 1] : -1;
  }
  let budget = limit;
  const selected = new Map<number, number[]>();
  for (const shard of shards) {
    const set = entitySets.get(shard) as EntitySet;
    const indexes: number[] = [];
    for (let index = 0; index < set.size && budget > 0; index++) {
      if (total <= limit || hashOf(shard, set, index) <= threshold) {
        indexes.push(index);
        budget--;
      }
    }
    selected.set(shard, indexes);
  }
  return selected;
}

export function checkState(
  shards: readonly ShardReplicas[],
  images: ReadonlyMap<number, ReferenceLog>,
  entitySets: Map<number, EntitySet>,
  options: { schema: SignalSchema; atNs: bigint; limit: number },
  findings: StateFindings,
): number {
  const { schema, atNs } = options;
  const signalTypes = schema.signals.map((signal) => signal.id);
  const selected = selectEntities(
    shards.map((shard) => shard.shard),
    entitySets,
    options.limit,
  );
  let checked = 0;
  for (const { shard, replicas } of shards) {
    const image = images.get(shard) as ReferenceLog;
    const set = entitySets.get(shard) as EntitySet;
    const isModelled = image.firstSeq === 1 && image.isGapless;
    if (!isModelled) {
      findings.note(`shard ${shard}: the log ${image.firstSeq > 1 ? `starts at seq ${image.firstSeq}` : 'has gaps'}, so its state is compared across replicas only`);
    }
    const model = isModelled ? foldModel(image, schema) : null;
    for (const index of selected.get(shard) ?? []) {
      const entityId = set.idAt(index);
      const modelFields = model === null ? null : (countedFields(model.query(entityId, signalTypes, atNs)) as Map<number, Counted>);
      const first = queryReplica(replicas[0], entityId, signalTypes, atNs);
      replicas.forEach((replica, replicaIndex) => {
        const answer = replicaIndex === 0 ? first : queryReplica(replica, entityId, signalTypes, atNs);
        const problems: string[] = [];
        if (replicaIndex > 0 && !isSameValue(answer, first)) {
          problems.push(`${answerDifference(answer, first)} on ${replicas[0].nodeId}`);
        }
        const fromModel = modelFields === null ? null : modelDifference(modelFields, answer, signalTypes);
        if (fromModel !== null) problems.push(fromModel);
        if (problems.length > 0) {
          findings.flag('stateMismatches', () => `shard ${shard} entity ${entityId} ${replica.nodeId}: ${problems.join('; ')}`);
        }
      });
      checked++;
    }
  }
  return checked;
}
