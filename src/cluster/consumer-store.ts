// Durable consumers' committed positions: per (consumer name, shard), the seq through which
// the consumer has processed the shard's log. A consumer that resumes reads from position + 1,
// so delivery is at-least-once: what was read after the last commit is read again.
//
// Where positions live follows where the shard logs live:
//   standalone  FileConsumerStore: <dataDir>/consumers.json, written atomically (tmp, fsync,
//               rename, fsync dir) before a commit is answered; commits arriving while a
//               write runs go together in the next one (group commit)
//   cluster     KvConsumerStore: a JetStream KV bucket per namespace (`tidelog_<ns>_consumers`,
//               replicated like the epoch bucket), key `<name>.<shard>`, so any node answers
//               and a position survives the loss of any node; every node watches the bucket
//               for its status. Last write wins (2.9.10's KV has no compare-and-set to offer);
//               a consumer name is meant for one reader per shard at a time, as a Kafka
//               consumer group gives each partition one member. JetStream acknowledges before
//               its fsync: a power loss of a majority of NATS servers may take the newest
//               commits back, which at-least-once absorbs (those events are read again).
//   tests       MemoryConsumerStore.
// Invariant: a commit resolves only once the position is stored (file synced, KV put
// acknowledged); a position read after a resolved commit (on any node) is that commit's or a
// later one's.

import { join } from 'node:path';
import type { NatsConnection } from '@nats-io/transport-node';
import { jetstream } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { TidelogError } from '../errors.ts';
import { isValidConsumerName } from '../transport/messages.ts';
import { readWhole, writeFileAtomic, type FileIo } from '../wal/file-io.ts';

/** Positions a node stores at most by default (a commit of a new (name, shard) past it is OVERLOADED). */
export const DEFAULT_MAX_CONSUMER_POSITIONS = 100_000;

export interface ConsumerPosition {
  name: string;
  shard: number;
  /** Every seq ≤ this one was processed (0: none yet). */
  seq: number;
}

export interface ConsumerStore {
  /** Stores `seq` as the consumer's position in `shard`; resolves once it is durable. */
  commit(name: string, shard: number, seq: number): Promise<void>;
  /** The committed position (0 when the consumer never committed in this shard). */
  position(name: string, shard: number): Promise<number>;
  /** Every position known here, by name then shard (for status; a watch may lag a commit by ms). */
  positions(): ConsumerPosition[];
  close(): Promise<void>;
}

/** BAD_REQUEST unless the name, shard and seq are well formed. */
export function checkPosition(name: string, shard: number, seq?: number): void {
  if (!isValidConsumerName(name)) {
    throw new TidelogError('BAD_REQUEST', `consumer name must be 1..64 of A-Z a-z 0-9 _ -, got ${JSON.stringify(name)}`, { details: { field: 'consumer' } });
  }
  if (!Number.isInteger(shard) || shard < 0 || shard > 65_535) throw new TidelogError('BAD_REQUEST', `shard must be a u16, got ${shard}`, { details: { field: 'shard' } });
  if (seq !== undefined && (!Number.isSafeInteger(seq) || seq < 0)) throw new TidelogError('BAD_REQUEST', `seq must be a u53, got ${seq}`, { details: { field: 'seq' } });
}

function sortPositions(positions: Iterable<ConsumerPosition>): ConsumerPosition[] {
  return [...positions].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : a.shard - b.shard));
}

function keyOf(name: string, shard: number): string {
  return `${name}.${shard}`;
}

/** A bound on positions stored; a commit of a new (name, shard) past it is OVERLOADED. */
function checkRoom(size: number, isNew: boolean, maxPositions: number): void {
  if (isNew && size >= maxPositions) {
    throw new TidelogError('OVERLOADED', `${size} consumer positions are stored, limit ${maxPositions} (limits.maxConsumerPositions)`, {
      details: { positions: size, limit: maxPositions },
    });
  }
}

/** Positions in memory (tests, and the map the file store persists). */
export class MemoryConsumerStore implements ConsumerStore {
  protected readonly map = new Map<string, ConsumerPosition>();
  constructor(protected readonly maxPositions = Number.MAX_SAFE_INTEGER) {}

  async commit(name: string, shard: number, seq: number): Promise<void> {
    this.record(name, shard, seq);
    return Promise.resolve();
  }

  /** Checks and records a position in the map (bounded by maxPositions). */
  protected record(name: string, shard: number, seq: number): void {
    checkPosition(name, shard, seq);
    checkRoom(this.map.size, !this.map.has(keyOf(name, shard)), this.maxPositions);
    this.map.set(keyOf(name, shard), { name, shard, seq });
  }

  position(name: string, shard: number): Promise<number> {
    checkPosition(name, shard);
    return Promise.resolve(this.map.get(keyOf(name, shard))?.seq ?? 0);
  }

  positions(): ConsumerPosition[] {
    return sortPositions(this.map.values());
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

const FILE_NAME = 'consumers.json';

/** A standalone node's positions, in one file of its data dir. */
export class FileConsumerStore extends MemoryConsumerStore {
  /** The write under way, and whether commits arrived after it took the map. */
  private writing: Promise<void> | null = null;
  private next: Promise<void> | null = null;

  private constructor(
    private readonly io: FileIo,
    private readonly dir: string,
    maxPositions: number,
  ) {
    super(maxPositions);
  }

  /** Loads `<dir>/consumers.json` (none: no positions). CONFIG_INVALID for a file that does not parse. */
  static async open(io: FileIo, dir: string, maxPositions: number): Promise<FileConsumerStore> {
    const store = new FileConsumerStore(io, dir, maxPositions);
    const path = join(dir, FILE_NAME);
    if (!(await io.exists(path))) return store;
    let parsed: unknown;
    try {
      parsed = JSON.parse(new TextDecoder().decode(await readWhole(io, path)));
    } catch (cause) {
      throw new TidelogError('CONFIG_INVALID', `${path}: not the consumer positions this node writes (${String(cause)}); move it aside to start without them`, { cause, details: { file: path } });
    }
    const list = (parsed as { positions?: unknown }).positions;
    if (!Array.isArray(list)) throw new TidelogError('CONFIG_INVALID', `${path}: no positions list`, { details: { file: path } });
    for (const item of list as ConsumerPosition[]) {
      try {
        checkPosition(item.name, item.shard, item.seq);
      } catch (cause) {
        throw new TidelogError('CONFIG_INVALID', `${path}: ${(cause as Error).message}; move it aside to start without the positions`, { cause, details: { file: path } });
      }
      store.map.set(keyOf(item.name, item.shard), { name: item.name, shard: item.shard, seq: item.seq });
    }
    return store;
  }

  override async commit(name: string, shard: number, seq: number): Promise<void> {
    this.record(name, shard, seq);
    await this.persist();
  }

  override async close(): Promise<void> {
    await this.next?.catch(() => undefined);
    await this.writing?.catch(() => undefined);
  }

  /** Resolves once a write that began after this call's change is durable. */
  private persist(): Promise<void> {
    if (this.writing === null) {
      this.writing = this.write().finally(() => (this.writing = null));
      return this.writing;
    }
    // A write is under way with an older map: one more follows it, for every commit meanwhile.
    this.next ??= this.writing
      .catch(() => undefined)
      .then(() => {
        this.next = null;
        return this.persist();
      });
    return this.next;
  }

  private async write(): Promise<void> {
    const body = `${JSON.stringify({ version: 1, positions: this.positions() })}\n`;
    await writeFileAtomic(this.io, this.dir, FILE_NAME, new TextEncoder().encode(body));
  }
}

export function consumerBucketName(namespace: string): string {
  return `tidelog_${namespace.replace(/[^A-Za-z0-9_-]/g, '_')}_consumers`;
}

/** A cluster's positions, in a JetStream KV bucket every node shares. */
export class KvConsumerStore implements ConsumerStore {
  private readonly cache = new Map<string, ConsumerPosition>();
  private watcher: { stop(): void } | null = null;

  private constructor(
    private readonly kv: KV,
    private readonly maxPositions: number,
  ) {}

  static async open(connection: NatsConnection, options: { namespace: string; bucketReplicas: number; timeoutMs?: number; maxPositions: number }): Promise<KvConsumerStore> {
    const js = jetstream(connection, { timeout: options.timeoutMs ?? 5_000 });
    let kv: KV;
    try {
      // No direct gets: any replica could answer one, and a position read right after a commit
      // must see it (the stream leader answers).
      kv = await new Kvm(js).create(consumerBucketName(options.namespace), { replicas: options.bucketReplicas, history: 1, allow_direct: false });
    } catch (cause) {
      throw new TidelogError('DISCONNECTED', `consumer positions: cannot open bucket ${consumerBucketName(options.namespace)}: ${String(cause)}`, { cause });
    }
    const store = new KvConsumerStore(kv, options.maxPositions);
    await store.watch();
    return store;
  }

  async commit(name: string, shard: number, seq: number): Promise<void> {
    checkPosition(name, shard, seq);
    checkRoom(this.cache.size, !this.cache.has(keyOf(name, shard)), this.maxPositions);
    try {
      await this.kv.put(keyOf(name, shard), String(seq));
    } catch (cause) {
      // A put that timed out may still be applied: the caller retries (a commit is idempotent).
      throw new TidelogError('TIMEOUT', `consumer ${name} shard ${shard}: the position was not acknowledged (${String(cause)}); it may or may not be stored`, { cause });
    }
    this.cache.set(keyOf(name, shard), { name, shard, seq });
  }

  async position(name: string, shard: number): Promise<number> {
    checkPosition(name, shard);
    let entry;
    try {
      entry = await this.kv.get(keyOf(name, shard));
    } catch (cause) {
      throw new TidelogError('TIMEOUT', `consumer ${name} shard ${shard}: the position could not be read (${String(cause)})`, { cause });
    }
    if (entry === null || entry.operation !== 'PUT') return 0;
    return parseSeq(entry.string(), name, shard);
  }

  positions(): ConsumerPosition[] {
    return sortPositions(this.cache.values());
  }

  close(): Promise<void> {
    this.watcher?.stop();
    this.watcher = null;
    return Promise.resolve();
  }

  /** Follows every key of the bucket into the cache (status reads it; position() asks the KV). */
  private async watch(): Promise<void> {
    const iterator = await this.kv.watch();
    this.watcher = iterator;
    void (async () => {
      for await (const entry of iterator) {
        const dot = entry.key.lastIndexOf('.');
        const name = entry.key.slice(0, dot);
        const shard = Number(entry.key.slice(dot + 1));
        if (entry.operation !== 'PUT') this.cache.delete(entry.key);
        else {
          try {
            this.cache.set(entry.key, { name, shard, seq: parseSeq(entry.string(), name, shard) });
          } catch {
            // A value no node wrote: left out of status, and position() reports it.
          }
        }
      }
    })().catch(() => undefined);
  }
}

function parseSeq(text: string, name: string, shard: number): number {
  const seq = Number(text);
  if (!/^(0|[1-9][0-9]{0,15})$/.test(text) || !Number.isSafeInteger(seq)) {
    throw new TidelogError('DECODE_FAILED', `consumer ${name} shard ${shard}: the stored position ${JSON.stringify(text)} is not a seq`);
  }
  return seq;
}
