// Epochs are claimed in a store with create-only keys: NATS JetStream KV in a cluster
// (kv-epoch-store.ts), and an in-memory twin with the same semantics for tests and the
// deterministic simulation. NATS is the consensus; tidelog runs no election of its own.
//
// Why create-only: on nats-server 2.9.10 (Debian's) `update(key, value, revision)` is not an
// atomic compare-and-set on a replicated bucket (nats-server#4320; measured: both racing
// updates succeeded in 221–297 of 300 trials), while `create` of a never-used key is checked
// when applied (0 of 300). So each (shard, epoch) is its own key, created once and never
// deleted (a create after a delete falls back to an update: 65 of 300 raced).
//
//   claim(shard, E, node) ─► create "s.<shard>.e.<E>" = { nodeId, claimId, atMs }
//        created            → won
//        exists             → lost, holder = what the key says
//        timeout / error    → read back: mine → won; another's → lost; absent → unknown
//                             (the create may still land later: never act on E, claim E + 1)

export interface EpochClaim {
  shard: number;
  epoch: number;
  nodeId: string;
  /** Random per attempt: tells this attempt's create from an earlier one. */
  claimId: string;
  /** The claimer's wall clock when it claimed (for people; never compared across nodes). */
  atMs: number;
}

export type ClaimOutcome =
  | { kind: 'won'; claim: EpochClaim }
  | { kind: 'lost'; holder: EpochClaim }
  /** Neither confirmed nor refuted (a timeout, and nothing to read back yet). */
  | { kind: 'unknown'; error: Error };

export interface EpochStore {
  /** Tries to become the holder of (shard, epoch); see the header for the outcomes. */
  claim(shard: number, epoch: number, nodeId: string): Promise<ClaimOutcome>;
  /** The highest epoch claimed for the shard, with its holder; null when none is. */
  latest(shard: number): Promise<EpochClaim | null>;
  /** The claim of (shard, epoch), or null. */
  get(shard: number, epoch: number): Promise<EpochClaim | null>;
  close(): Promise<void>;
}

export function epochKey(shard: number, epoch: number): string {
  return `s.${shard}.e.${epoch}`;
}

/** (shard, epoch) of a key epochKey made; null for any other key. */
export function parseEpochKey(key: string): { shard: number; epoch: number } | null {
  const match = /^s\.(\d+)\.e\.(\d+)$/.exec(key);
  if (match === null) return null;
  const shard = Number(match[1]);
  const epoch = Number(match[2]);
  return Number.isSafeInteger(shard) && Number.isSafeInteger(epoch) ? { shard, epoch } : null;
}

export function newClaimId(): string {
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
}

/**
 * What a store does when asked to create a key (the simulation injects the others):
 * timeout-applied: the caller times out but the create landed before it reads back;
 * timeout-late: the caller times out, reads back nothing, and the create lands afterwards;
 * timeout-lost: the caller times out and the create never lands.
 */
export type CreateFault = 'none' | 'timeout-applied' | 'timeout-late' | 'timeout-lost';

/**
 * The in-memory twin: one Map shared by every "node" that uses it, create-only like the KV
 * bucket. `fault` decides per create whether it times out, and if so whether it was applied
 * (the KV can apply a write whose caller timed out).
 */
export class MemoryEpochStore implements EpochStore {
  private readonly claims = new Map<string, EpochClaim>();

  constructor(private readonly fault: (shard: number, epoch: number) => CreateFault = () => 'none') {}

  claim(shard: number, epoch: number, nodeId: string): Promise<ClaimOutcome> {
    const key = epochKey(shard, epoch);
    const claim: EpochClaim = { shard, epoch, nodeId, claimId: newClaimId(), atMs: Date.now() };
    const fault = this.fault(shard, epoch);
    const existing = this.claims.get(key);
    if (existing === undefined && (fault === 'none' || fault === 'timeout-applied')) this.claims.set(key, claim);
    if (fault !== 'none') {
      const outcome = readBack(this.claims.get(key) ?? null, claim, new Error(`claim of ${key} timed out`));
      if (fault === 'timeout-late' && !this.claims.has(key)) this.claims.set(key, claim);
      return Promise.resolve(outcome);
    }
    return Promise.resolve(existing === undefined ? { kind: 'won', claim } : { kind: 'lost', holder: existing });
  }

  latest(shard: number): Promise<EpochClaim | null> {
    let best: EpochClaim | null = null;
    for (const claim of this.claims.values()) if (claim.shard === shard && (best === null || claim.epoch > best.epoch)) best = claim;
    return Promise.resolve(best);
  }

  get(shard: number, epoch: number): Promise<EpochClaim | null> {
    return Promise.resolve(this.claims.get(epochKey(shard, epoch)) ?? null);
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** The outcome of a claim whose create failed, from what reading the key back found. */
export function readBack(found: EpochClaim | null, mine: EpochClaim, error: Error): ClaimOutcome {
  if (found === null) return { kind: 'unknown', error };
  // Our node's create landed, this attempt's or an earlier one whose caller timed out.
  if (found.nodeId === mine.nodeId) return { kind: 'won', claim: found };
  return { kind: 'lost', holder: found };
}
