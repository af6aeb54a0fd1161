// The epoch store on NATS JetStream KV (see epoch-store.ts for why keys are create-only). One
// bucket per namespace; its replicas follow the NATS cluster (3 in a 3-server cluster). Every
// failed create is resolved by reading the key back: a KV write that timed out may still have
// been applied (measured: all 6 that timed out on a minority were there after the heal).

import type { NatsConnection } from '@nats-io/transport-node';
import { jetstream } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { TidelogError } from '../errors.ts';
import { epochKey, newClaimId, parseEpochKey, readBack, type ClaimOutcome, type EpochClaim, type EpochStore } from './epoch-store.ts';

export interface KvEpochStoreOptions {
  /** The namespace's bucket is `tidelog_<namespace>_epochs`. */
  namespace: string;
  /** Replicas of the bucket's stream: 1 on a single server, 3 (or 5) in a NATS cluster. */
  bucketReplicas: number;
  /** How long one KV operation may take before it counts as timed out (default 5 000 ms). */
  timeoutMs?: number;
}

export function epochBucketName(namespace: string): string {
  return `tidelog_${namespace.replace(/[^A-Za-z0-9_-]/g, '_')}_epochs`;
}

export class KvEpochStore implements EpochStore {
  private constructor(private readonly kv: KV) {}

  /** Opens (creating if needed) the namespace's epoch bucket on `connection`. */
  static async open(connection: NatsConnection, options: KvEpochStoreOptions): Promise<KvEpochStore> {
    const js = jetstream(connection, { timeout: options.timeoutMs ?? 5_000 });
    try {
      const kv = await new Kvm(js).create(epochBucketName(options.namespace), { replicas: options.bucketReplicas, history: 1 });
      return new KvEpochStore(kv);
    } catch (cause) {
      throw new TidelogError('DISCONNECTED', `epoch store: cannot open bucket ${epochBucketName(options.namespace)}: ${String(cause)}`, { cause });
    }
  }

  async claim(shard: number, epoch: number, nodeId: string): Promise<ClaimOutcome> {
    const claim: EpochClaim = { shard, epoch, nodeId, claimId: newClaimId(), atMs: Date.now() };
    try {
      await this.kv.create(epochKey(shard, epoch), JSON.stringify(claim));
      return { kind: 'won', claim };
    } catch (cause) {
      // The key existed, or the create timed out or failed: what the key says now decides.
      const error = cause instanceof Error ? cause : new Error(String(cause));
      try {
        return readBack(await this.get(shard, epoch), claim, error);
      } catch (readError) {
        return { kind: 'unknown', error: readError instanceof Error ? readError : new Error(String(readError)) };
      }
    }
  }

  async get(shard: number, epoch: number): Promise<EpochClaim | null> {
    const entry = await this.kv.get(epochKey(shard, epoch));
    if (entry === null || entry.operation !== 'PUT') return null;
    return decodeClaim(entry.string(), shard, epoch);
  }

  async latest(shard: number): Promise<EpochClaim | null> {
    let newest = -1;
    const keys = await this.kv.keys(`s.${shard}.e.*`);
    for await (const key of keys) {
      const parsed = parseEpochKey(key);
      if (parsed !== null && parsed.shard === shard && parsed.epoch > newest) newest = parsed.epoch;
    }
    return newest < 0 ? null : this.get(shard, newest);
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

function decodeClaim(text: string, shard: number, epoch: number): EpochClaim {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (cause) {
    throw new TidelogError('DECODE_FAILED', `epoch store: the claim of shard ${shard} epoch ${epoch} is not JSON`, { cause });
  }
  const claim = value as Partial<EpochClaim>;
  if (claim.shard !== shard || claim.epoch !== epoch || typeof claim.nodeId !== 'string' || typeof claim.claimId !== 'string' || typeof claim.atMs !== 'number') {
    throw new TidelogError('DECODE_FAILED', `epoch store: the claim of shard ${shard} epoch ${epoch} does not describe it`);
  }
  return claim as EpochClaim;
}
