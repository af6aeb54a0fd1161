// Hybrid logical clock (Kulkarni, Demirbas et al., "Logical Physical Clocks", 2014).
// Invariant: every timestamp this clock issues is strictly greater than every timestamp it
// issued before, in this process and (with a persisted high-water) in any earlier one, and
// strictly greater than every remote timestamp it has received.
//
// Rules, with l/c the last issued wall/logical and pt the physical clock:
//   now (local or send):  l' = max(l, pt);         c' = l' == l ? c + 1 : 0
//   receive(m):           l' = max(l, m.l, pt);    c' = l' == l == m.l ? max(c, m.c) + 1
//                                                     : l' == l ? c + 1 : l' == m.l ? m.c + 1 : 0
// Deviations a production clock needs, and their reasons:
// - a remote wall more than maxOffsetMs ahead of pt is rejected with CLOCK_SKEW and not adopted
//   (CockroachDB's rule): one node with a runaway clock must not drag every clock forward;
// - when c' would exceed maxLogical the wall component advances by 1 ns and c' = 0, so the
//   logical counter never wraps (a wrap would order a later event first);
// - "reserve ahead" (Spanner/CockroachDB style): with `onReserve`, the clock persists a ceiling
//   highWaterNs before it issues any wall >= the previous ceiling; every wall it ever issued is
//   then < the persisted value, and `Hlc.restore(nodeId, highWaterNs)` starts above all of them
//   even if the machine's clock went backwards across the restart;
// - every value stays a u64: a physical reading above U64_MAX is rejected (BAD_REQUEST), and the
//   largest wall the clock issues is U64_MAX − 1, so its high-water (wall + 1, or a reserved
//   ceiling capped at U64_MAX) is a u64 too. A clock that would have to pass that refuses with
//   BAD_REQUEST instead. Every refusal leaves the clock exactly as it was: the next timestamp is
//   computed and built first, and state is committed only after it (and onReserve) succeeded.

import { TidelogError } from '../errors.ts';
import { HlcTimestamp, U32_MAX, U64_MAX } from './hlc-timestamp.ts';

export interface HlcOptions {
  /** Physical clock, ns since the Unix epoch. Defaults to the system clock. */
  now?: () => bigint;
  /** A remote timestamp whose wall is further ahead of our physical clock than this is rejected. */
  maxOffsetMs?: number;
  /** The largest logical counter before the wall component advances (default u32 max). */
  maxLogical?: number;
  /** A ceiling persisted by an earlier run: every wall issued before the restart is below it. */
  highWaterNs?: bigint;
  /** How far beyond the current wall a new ceiling is reserved (default 1000 ms). */
  reserveAheadMs?: number;
  /** Must store `highWaterNs` durably before returning; a throw means the timestamp is not issued. */
  onReserve?: (highWaterNs: bigint) => void;
}

export const DEFAULT_MAX_OFFSET_MS = 500;
/** The largest wall the clock issues: its high-water, wall + 1, must itself be a u64. */
export const MAX_WALL_NS = U64_MAX - 1n;
const NS_PER_MS = 1_000_000n;

/** Wall clock with sub-millisecond resolution (performance.timeOrigin + performance.now()). */
export function systemClockNs(): bigint {
  return BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e6));
}

export class Hlc {
  readonly nodeId: number;
  readonly maxOffsetNs: bigint;
  readonly maxLogical: number;
  private readonly physicalNs: () => bigint;
  private readonly reserveAheadNs: bigint;
  private readonly onReserve: ((highWaterNs: bigint) => void) | undefined;
  private wallNs = 0n;
  private logical = 0;
  /** Every wall issued so far is < reservedNs (only maintained when onReserve is set). */
  private reservedNs = 0n;

  constructor(nodeId: number, options: HlcOptions = {}) {
    if (!Number.isInteger(nodeId) || nodeId < 0 || nodeId > U32_MAX) {
      throw new TidelogError('BAD_REQUEST', `hlc nodeId must be a u32, got ${String(nodeId)}`);
    }
    const maxOffsetMs = options.maxOffsetMs ?? DEFAULT_MAX_OFFSET_MS;
    const maxLogical = options.maxLogical ?? U32_MAX;
    const reserveAheadMs = options.reserveAheadMs ?? 1000;
    if (!Number.isSafeInteger(maxOffsetMs) || maxOffsetMs < 0) {
      throw new TidelogError('BAD_REQUEST', `maxOffsetMs must be a non-negative integer, got ${maxOffsetMs}`);
    }
    if (!Number.isInteger(maxLogical) || maxLogical < 1 || maxLogical > U32_MAX) {
      throw new TidelogError('BAD_REQUEST', `maxLogical must be an integer 1..${U32_MAX}, got ${maxLogical}`);
    }
    if (!Number.isSafeInteger(reserveAheadMs) || reserveAheadMs < 1) {
      throw new TidelogError('BAD_REQUEST', `reserveAheadMs must be a positive integer, got ${reserveAheadMs}`);
    }
    this.nodeId = nodeId;
    this.physicalNs = options.now ?? systemClockNs;
    this.maxOffsetNs = BigInt(maxOffsetMs) * NS_PER_MS;
    this.maxLogical = maxLogical;
    this.reserveAheadNs = BigInt(reserveAheadMs) * NS_PER_MS;
    this.onReserve = options.onReserve;
    if (options.highWaterNs !== undefined) {
      if (typeof options.highWaterNs !== 'bigint' || options.highWaterNs < 0n || options.highWaterNs > U64_MAX) {
        throw new TidelogError('BAD_REQUEST', `highWaterNs must be a u64 bigint, got ${String(options.highWaterNs)}`, {
          details: { highWaterNs: options.highWaterNs },
        });
      }
      // Pretend (highWaterNs, 0) was issued: the next timestamp is above it, hence above every
      // timestamp of the earlier run, whatever the physical clock says now.
      this.wallNs = options.highWaterNs;
      this.reservedNs = options.highWaterNs;
    }
  }

  /** A clock that resumes above a persisted high-water (see `onReserve`). */
  static restore(nodeId: number, highWaterNs: bigint, options: Omit<HlcOptions, 'highWaterNs'> = {}): Hlc {
    return new Hlc(nodeId, { ...options, highWaterNs });
  }

  /** The last issued timestamp (ZERO-wall before the first one). */
  get last(): HlcTimestamp {
    return new HlcTimestamp(this.wallNs, this.logical, this.nodeId);
  }

  /**
   * A ceiling to persist: every wall issued so far is strictly below it. With `onReserve` this is
   * the reserved value; without, it is last wall + 1 (persist it on a clean shutdown).
   */
  get highWaterNs(): bigint {
    if (this.onReserve) return this.reservedNs;
    // Only a clock restored at U64_MAX holds a wall above MAX_WALL_NS, and it issued nothing.
    return this.wallNs < U64_MAX ? this.wallNs + 1n : U64_MAX;
  }

  /** A timestamp for a local or send event. */
  now(): HlcTimestamp {
    return this.reserve(1);
  }

  /**
   * The first of `count` consecutive timestamps (same wall, logical .. logical + count - 1), for
   * a batch whose events each need their own timestamp. The clock ends at the last of them.
   */
  reserve(count: number): HlcTimestamp {
    if (!Number.isInteger(count) || count < 1 || count > this.maxLogical + 1) {
      throw new TidelogError('BAD_REQUEST', `reserve count must be 1..${this.maxLogical + 1}, got ${count}`);
    }
    const physicalNs = this.readPhysical();
    let wallNs = this.wallNs;
    let logical: number;
    if (physicalNs > wallNs) {
      wallNs = physicalNs;
      logical = 0;
    } else {
      logical = this.logical + 1;
    }
    if (logical + count - 1 > this.maxLogical) {
      wallNs += 1n;
      logical = 0;
    }
    const first = this.stamp(wallNs, logical);
    this.issue(wallNs, logical + count - 1);
    return first;
  }

  /** Merges a timestamp carried by a received message; returns the receive event's timestamp. */
  receive(remote: HlcTimestamp): HlcTimestamp {
    if (!(remote instanceof HlcTimestamp)) {
      throw new TidelogError('BAD_REQUEST', 'receive needs an HlcTimestamp');
    }
    const physicalNs = this.readPhysical();
    if (remote.wallNs - physicalNs > this.maxOffsetNs) {
      throw new TidelogError(
        'CLOCK_SKEW',
        `remote clock of node ${remote.nodeId} is ${remote.wallNs - physicalNs} ns ahead (max ${this.maxOffsetNs} ns)`,
        {
          details: {
            remoteNodeId: remote.nodeId,
            remoteWallNs: remote.wallNs,
            physicalNs,
            maxOffsetNs: this.maxOffsetNs,
          },
        },
      );
    }
    const localWallNs = this.wallNs;
    let wallNs = localWallNs;
    if (remote.wallNs > wallNs) wallNs = remote.wallNs;
    if (physicalNs > wallNs) wallNs = physicalNs;
    let logical: number;
    if (wallNs === localWallNs && wallNs === remote.wallNs) logical = Math.max(this.logical, remote.logical) + 1;
    else if (wallNs === localWallNs) logical = this.logical + 1;
    else if (wallNs === remote.wallNs) logical = remote.logical + 1;
    else logical = 0;
    if (logical > this.maxLogical) {
      wallNs += 1n;
      logical = 0;
    }
    const stamp = this.stamp(wallNs, logical);
    this.issue(wallNs, logical);
    return stamp;
  }

  private readPhysical(): bigint {
    const physicalNs = this.physicalNs();
    if (typeof physicalNs !== 'bigint' || physicalNs < 0n || physicalNs > U64_MAX) {
      throw new TidelogError('BAD_REQUEST', `the physical clock returned ${String(physicalNs)}, not a u64 bigint`, {
        details: { physicalNs },
      });
    }
    return physicalNs;
  }

  /** The timestamp about to be issued, built before any state changes (it validates the range). */
  private stamp(wallNs: bigint, logical: number): HlcTimestamp {
    if (wallNs > MAX_WALL_NS) {
      throw new TidelogError('BAD_REQUEST', `the clock would pass the largest wall ${MAX_WALL_NS} ns`, {
        details: { wallNs, maxWallNs: MAX_WALL_NS, nodeId: this.nodeId },
      });
    }
    return new HlcTimestamp(wallNs, logical, this.nodeId);
  }

  private issue(wallNs: bigint, logical: number): void {
    if (this.onReserve && wallNs >= this.reservedNs) {
      // wallNs ≤ MAX_WALL_NS < U64_MAX, so the capped ceiling is still above it.
      const ceilingNs = wallNs + this.reserveAheadNs;
      const reservedNs = ceilingNs > U64_MAX ? U64_MAX : ceilingNs;
      // Persist first: if it throws, nothing was issued and the clock state is unchanged.
      this.onReserve(reservedNs);
      this.reservedNs = reservedNs;
    }
    this.wallNs = wallNs;
    this.logical = logical;
  }
}
