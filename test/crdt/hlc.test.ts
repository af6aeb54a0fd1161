import fc from 'fast-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { isTidelogError } from '../../src/errors.ts';
import { Hlc, HlcTimestamp, MAX_WALL_NS } from '../../src/crdt/index.ts';

const U64_MAX = 0xffff_ffff_ffff_ffffn;

const MS = 1_000_000n;
const START_NS = 1_700_000_000_000_000_000n;

function expectCode(run: () => unknown, code: string): void {
  try {
    run();
  } catch (error) {
    assert.ok(isTidelogError(error), `expected a TidelogError, got ${String(error)}`);
    assert.is((error as { code: string }).code, code);
    return;
  }
  assert.unreachable(`expected ${code}`);
}

/** A settable physical clock. */
function manualClock(startNs = START_NS): { now: () => bigint; set: (ns: bigint) => void } {
  let current = startNs;
  return { now: () => current, set: (ns) => (current = ns) };
}

test('hlc - now takes the physical clock when it is ahead', () => {
  const clock = manualClock();
  const hlc = new Hlc(7, { now: clock.now });
  const first = hlc.now();
  assert.is(first.wallNs, START_NS);
  assert.is(first.logical, 0);
  assert.is(first.nodeId, 7);
  clock.set(START_NS + 5n);
  assert.equal(hlc.now().toJSON(), { wallNs: String(START_NS + 5n), logical: 0, nodeId: 7 });
});

test('hlc - now counts logically while the physical clock stands still or goes backwards', () => {
  const clock = manualClock();
  const hlc = new Hlc(1, { now: clock.now });
  hlc.now();
  assert.is(hlc.now().logical, 1);
  clock.set(START_NS - 1000n);
  const later = hlc.now();
  assert.is(later.wallNs, START_NS);
  assert.is(later.logical, 2);
});

test('hlc - receive adopts a later remote clock', () => {
  const clock = manualClock();
  const hlc = new Hlc(1, { now: clock.now });
  const remote = new HlcTimestamp(START_NS + 100n * MS, 4, 2);
  const received = hlc.receive(remote);
  assert.is(received.wallNs, remote.wallNs);
  assert.is(received.logical, 5);
  assert.is(received.nodeId, 1);
  assert.ok(hlc.now().isAfter(received));
});

test('hlc - receive with equal walls takes the larger logical plus one', () => {
  const clock = manualClock();
  const hlc = new Hlc(1, { now: clock.now });
  hlc.reserve(10); // last = (START, 9)
  const received = hlc.receive(new HlcTimestamp(START_NS, 3, 2));
  assert.is(received.logical, 10);
  const received2 = hlc.receive(new HlcTimestamp(START_NS, 40, 2));
  assert.is(received2.logical, 41);
});

test('hlc - rejects a remote clock beyond maxOffsetMs with CLOCK_SKEW and keeps its state', () => {
  const clock = manualClock();
  const hlc = new Hlc(1, { now: clock.now, maxOffsetMs: 250 });
  const before = hlc.now();
  expectCode(() => hlc.receive(new HlcTimestamp(START_NS + 251n * MS, 0, 2)), 'CLOCK_SKEW');
  const after = hlc.now();
  assert.is(after.wallNs, before.wallNs, 'the skewed wall was not adopted');
  assert.is(after.logical, before.logical + 1);
  // Exactly maxOffsetMs ahead is still accepted.
  assert.is(hlc.receive(new HlcTimestamp(START_NS + 250n * MS, 0, 2)).wallNs, START_NS + 250n * MS);
});

test('hlc - logical overflow advances the wall and never wraps', () => {
  const clock = manualClock();
  const hlc = new Hlc(1, { now: clock.now, maxLogical: 3 });
  const stamps = Array.from({ length: 10 }, () => hlc.now());
  for (let index = 1; index < stamps.length; index++) assert.ok(stamps[index].isAfter(stamps[index - 1]));
  assert.ok(stamps.every((stamp) => stamp.logical <= 3));
  assert.is(stamps[4].wallNs, START_NS + 1n);
  assert.is(stamps[4].logical, 0);
  const received = hlc.receive(new HlcTimestamp(START_NS + 5n, 3, 9));
  assert.is(received.wallNs, START_NS + 6n);
  assert.is(received.logical, 0);
});

test('hlc - reserve hands out consecutive timestamps and ends at the last', () => {
  const clock = manualClock();
  const hlc = new Hlc(3, { now: clock.now, maxLogical: 100 });
  const first = hlc.reserve(60);
  assert.is(first.logical, 0);
  assert.is(hlc.last.logical, 59);
  const second = hlc.reserve(60); // would pass maxLogical: moves to the next wall
  assert.is(second.wallNs, START_NS + 1n);
  assert.is(second.logical, 0);
  assert.ok(hlc.now().isAfter(new HlcTimestamp(second.wallNs, 59, 3)));
  expectCode(() => hlc.reserve(0), 'BAD_REQUEST');
  expectCode(() => hlc.reserve(102), 'BAD_REQUEST');
});

test('hlc - a restored clock never issues a timestamp at or below one issued before the restart', () => {
  let persisted = 0n;
  const clock = manualClock();
  const before = new Hlc(1, { now: clock.now, reserveAheadMs: 10, onReserve: (ns) => (persisted = ns) });
  let last = before.now();
  for (let step = 0; step < 50; step++) {
    clock.set(clock.now() + 3n * MS);
    last = before.now();
  }
  assert.ok(persisted > last.wallNs);
  // The machine restarts with its clock an hour behind.
  clock.set(START_NS - 3_600_000n * MS);
  const after = Hlc.restore(1, persisted, { now: clock.now });
  const first = after.now();
  assert.ok(first.isAfter(last));
});

test('hlc - reserves ahead only when the wall reaches the reserved ceiling', () => {
  const reserved: bigint[] = [];
  const clock = manualClock();
  const hlc = new Hlc(1, { now: clock.now, reserveAheadMs: 100, onReserve: (ns) => reserved.push(ns) });
  hlc.now();
  for (let step = 0; step < 99; step++) {
    clock.set(clock.now() + MS);
    hlc.now();
  }
  assert.equal(reserved, [START_NS + 100n * MS]);
  assert.is(hlc.highWaterNs, START_NS + 100n * MS);
  clock.set(START_NS + 100n * MS);
  hlc.now();
  assert.equal(reserved, [START_NS + 100n * MS, START_NS + 200n * MS]);
});

test('hlc - a failing onReserve issues nothing', () => {
  const clock = manualClock();
  let isFailing = false;
  const hlc = new Hlc(1, {
    now: clock.now,
    reserveAheadMs: 1,
    onReserve: () => {
      if (isFailing) throw new Error('disk full');
    },
  });
  const first = hlc.now();
  isFailing = true;
  clock.set(START_NS + 10n * MS);
  assert.throws(() => hlc.now(), /disk full/);
  assert.ok(hlc.last.equals(first));
});

test('hlc - rejects bad arguments with BAD_REQUEST', () => {
  expectCode(() => new Hlc(-1), 'BAD_REQUEST');
  expectCode(() => new Hlc(2 ** 32), 'BAD_REQUEST');
  expectCode(() => new Hlc(1, { maxOffsetMs: -1 }), 'BAD_REQUEST');
  expectCode(() => new Hlc(1, { maxLogical: 0 }), 'BAD_REQUEST');
  expectCode(() => new Hlc(1, { now: () => -1n }).now(), 'BAD_REQUEST');
  expectCode(() => new Hlc(1).receive({ wallNs: 1n, logical: 0, nodeId: 2 } as HlcTimestamp), 'BAD_REQUEST');
});

// Regression: a reading above u64 was adopted (and a ceiling above it persisted) before the
// timestamp failed to build, so the clock failed forever after, even with a sane clock.
test('hlc - a physical reading above u64 is BAD_REQUEST and changes nothing', () => {
  const clock = manualClock();
  const persisted: bigint[] = [];
  const hlc = new Hlc(1, { now: clock.now, onReserve: (ns) => persisted.push(ns) });
  const before = hlc.now();
  clock.set(U64_MAX + 1n);
  expectCode(() => hlc.now(), 'BAD_REQUEST');
  expectCode(() => hlc.receive(new HlcTimestamp(START_NS, 0, 2)), 'BAD_REQUEST');
  assert.ok(hlc.last.equals(before), 'nothing was issued');
  assert.equal(persisted, [START_NS + 1000n * MS], 'no ceiling above u64 was persisted');
  clock.set(START_NS + 5n);
  const after = hlc.now();
  assert.is(after.wallNs, START_NS + 5n, 'the clock works again once its source does');
  assert.ok(after.isAfter(before));
});

// Regression: the wall could be pushed past u64 (logical overflow at the top, a remote at the
// top); the state changed before the timestamp failed to build.
test('hlc - a clock that would pass the largest wall refuses with BAD_REQUEST and keeps its state', () => {
  const clock = manualClock(MAX_WALL_NS);
  const hlc = new Hlc(1, { now: clock.now, maxLogical: 2 });
  hlc.reserve(3); // (MAX_WALL, 0 … 2): the logical counter is full at the largest wall
  const last = hlc.last;
  expectCode(() => hlc.now(), 'BAD_REQUEST');
  expectCode(() => hlc.receive(new HlcTimestamp(MAX_WALL_NS, 2, 7)), 'BAD_REQUEST');
  assert.ok(hlc.last.equals(last));
  assert.is(hlc.highWaterNs, U64_MAX, 'the high-water stays a u64');
  const lenient = new Hlc(2, { now: manualClock(START_NS).now, maxOffsetMs: Number.MAX_SAFE_INTEGER });
  const first = lenient.now();
  expectCode(() => lenient.receive(new HlcTimestamp(U64_MAX, 0, 3)), 'BAD_REQUEST');
  assert.ok(lenient.last.equals(first));
  expectCode(() => new Hlc(3, { now: () => U64_MAX }).now(), 'BAD_REQUEST');
});

// Regression: a high-water above u64 was accepted, and restore started a clock it could never use.
test('hlc - a high-water above u64 is BAD_REQUEST; one at u64 restores', () => {
  expectCode(() => new Hlc(1, { highWaterNs: 2n ** 70n }), 'BAD_REQUEST');
  expectCode(() => Hlc.restore(1, U64_MAX + 1n), 'BAD_REQUEST');
  expectCode(() => Hlc.restore(1, -1n), 'BAD_REQUEST');
  const top = Hlc.restore(1, U64_MAX);
  assert.is(top.highWaterNs, U64_MAX);
  expectCode(() => top.now(), 'BAD_REQUEST');
  let reserved = 0n;
  const near = new Hlc(1, { now: () => MAX_WALL_NS - 5n, reserveAheadMs: 1000, onReserve: (ns) => (reserved = ns) });
  near.now();
  assert.is(reserved, U64_MAX, 'a reserved ceiling is capped at u64 and stays above the wall');
});

test('hlc - the system clock is near Date.now', () => {
  const stamp = new Hlc(1).now();
  const nowNs = BigInt(Date.now()) * MS;
  assert.ok(stamp.wallNs > nowNs - 1000n * MS && stamp.wallNs < nowNs + 1000n * MS);
});

// 5 nodes with skewed, jittery, sometimes backwards physical clocks exchange messages. The
// nodes' offsets reach ±40 ms against a 50 ms limit, so honest messages between far-apart nodes
// are sometimes refused, and 'forge' steps receive a timestamp 50–150 ms ahead of the
// receiver's clock on purpose. Checks: every node's timestamps strictly increase; a receive is
// after the message (and so, by transitivity, after everything that happened before the send);
// a remote more than maxOffsetMs ahead is CLOCK_SKEW and leaves the clock exactly as it was;
// the HLC wall stays within maxOffset (+ 2 ms of backwards jitter) of the node's physical clock,
// apart from the 1 ns steps that logical overflow adds. 300 runs × 200 steps = 60,000 clock
// operations; CLOCK_SKEW is counted and must occur.
test('hlc - monotonic per node, respects happens-before across receive, and refuses skew (5 nodes, property)', () => {
  const maxOffsetMs = 50;
  const maxOffsetNs = BigInt(maxOffsetMs) * MS;
  let skewRefusals = 0;
  let forgedRefusals = 0;
  fc.assert(
    fc.property(
      fc.array(fc.integer({ min: -40_000_000, max: 40_000_000 }), { minLength: 5, maxLength: 5 }),
      fc.array(
        fc.record({
          node: fc.integer({ min: 0, max: 4 }),
          action: fc.constantFrom('local', 'send', 'receive', 'receive', 'forge'),
          to: fc.integer({ min: 0, max: 4 }),
          advanceNs: fc.integer({ min: -2_000_000, max: 5_000_000 }),
          forgeAheadNs: fc.integer({ min: 1, max: 100_000_000 }),
        }),
        { minLength: 200, maxLength: 200 },
      ),
      (offsetsNs, steps) => {
        let globalNs = START_NS;
        const physical = offsetsNs.map((offset) => globalNs + BigInt(offset));
        const clocks = physical.map((_, node) => new Hlc(node, { now: () => physical[node], maxOffsetMs, maxLogical: 7 }));
        const last: (HlcTimestamp | undefined)[] = [undefined, undefined, undefined, undefined, undefined];
        const inbox: HlcTimestamp[][] = [[], [], [], [], []];
        for (const step of steps) {
          globalNs += BigInt(Math.max(0, step.advanceNs));
          // Every clock follows global time with its offset; the acting one may jitter backwards.
          for (let node = 0; node < 5; node++) physical[node] = globalNs + BigInt(offsetsNs[node]);
          physical[step.node] += BigInt(Math.min(0, step.advanceNs));
          const clock = clocks[step.node];
          let message: HlcTimestamp | undefined;
          if (step.action === 'forge') {
            message = new HlcTimestamp(physical[step.node] + maxOffsetNs + BigInt(step.forgeAheadNs), 0, (step.node + 1) % 5);
          } else if (step.action === 'receive') message = inbox[step.node].shift();
          let stamp: HlcTimestamp;
          if (message !== undefined) {
            if (message.wallNs - physical[step.node] > maxOffsetNs) {
              const before = clock.last;
              expectCode(() => clock.receive(message), 'CLOCK_SKEW');
              assert.ok(clock.last.equals(before), 'a refused remote leaves the clock unchanged');
              if (step.action === 'forge') forgedRefusals++;
              else skewRefusals++;
              continue;
            }
            stamp = clock.receive(message);
            assert.ok(stamp.isAfter(message), 'a receive is after the message');
          } else {
            stamp = clock.now();
            if (step.action === 'send') inbox[step.to].push(stamp);
          }
          const previous = last[step.node];
          if (previous !== undefined) assert.ok(stamp.isAfter(previous), 'timestamps of one node strictly increase');
          last[step.node] = stamp;
          // An adopted wall is ≤ maxOffset ahead of pt when adopted; pt can fall back 2 ms since.
          assert.ok(stamp.wallNs - physical[step.node] <= maxOffsetNs + 2n * MS + BigInt(steps.length), 'bounded drift');
        }
      },
    ),
    { seed: 20240501, numRuns: 300 },
  );
  assert.ok(forgedRefusals >= 1000, `${forgedRefusals} forged remotes refused`);
  assert.ok(skewRefusals >= 100, `${skewRefusals} honest but skewed remotes refused`);
});

test.run();
