// Crash recovery against real SIGKILLs: a child (test/support/wal-child.ts) appends from
// several concurrent callers with fsync 'full' and 64 KiB segments, printing each event only
// after its promise resolved; the parent kills it after a seeded number of acks, reopens the
// one directory all rounds share, and checks the durability contract:
//   - every acknowledged (seq, event) is there, with that seq and that content;
//   - seqs run 1..lastSeq without a gap, and earlier rounds' log is untouched;
//   - nothing appears that was never submitted: each caller's events are a prefix of what it
//     submitted, at most one call past its last acknowledged one;
//   - appending continues at lastSeq + 1, in the parent and in the next child.

import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TidelogError } from '../../src/errors.ts';
import { Wal, type SignalEvent } from '../../src/wal/index.ts';
import { mulberry32 } from '../../src/chaos/schedule.ts';
import {
  CALLERS,
  CHILD_WAL_OPTIONS,
  PARENT_CALLER,
  callSize,
  childExit,
  entityParts,
  eventFor,
  onLines,
  spawnWalChild,
} from '../support/wal-child.ts';

const ROUNDS = 32;
const SEED = 0x71de_109;

interface ChildRound {
  /** lastSeq the child found on open, or null if it was killed before saying. */
  openSeq: number | null;
  /** seq → entityId of every event the child reported acknowledged. */
  acks: Map<number, bigint>;
}

/** Runs one `append` child and SIGKILLs it once it has reported `killAfterAcks` acks. */
async function runChild(dir: string, round: number, killAfterAcks: number): Promise<ChildRound> {
  const child = spawnWalChild(['append', dir, String(round)]);
  const outcome: ChildRound = { openSeq: null, acks: new Map() };
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  let isKilled = false;
  const killWhenDue = (): void => {
    if (!isKilled && outcome.openSeq !== null && outcome.acks.size >= killAfterAcks) {
      isKilled = true;
      child.kill('SIGKILL');
    }
  };
  onLines(child, (line) => {
    const [kind, first, second] = line.split(' ');
    if (kind === 'open') outcome.openSeq = Number(first);
    else if (kind === 'ack') outcome.acks.set(Number(first), BigInt(second));
    else assert.unreachable(`unexpected child output: ${line}`);
    killWhenDue();
  });
  const exit = await childExit(child);
  assert.is(exit.signal, 'SIGKILL', `round ${round}: the child ended on its own (code ${exit.code}): ${stderr}`);
  return outcome;
}

function sameEvent(a: SignalEvent, b: SignalEvent): boolean {
  return a.entityId === b.entityId && a.signalType === b.signalType && a.weight === b.weight && a.timestampNs === b.timestampNs;
}

/** Counter just past call `call` of a caller (calls are numbered from 0). */
function counterAfterCall(round: number, caller: number, call: number): number {
  let counter = 0;
  for (let index = 0; index <= call; index++) counter += callSize(round, caller, index);
  return counter;
}

/** Index of the call holding `counter`. */
function callHolding(round: number, caller: number, counter: number): number {
  let end = 0;
  for (let call = 0; ; call++) {
    end += callSize(round, caller, call);
    if (counter < end) return call;
  }
}

/** Checks one round's recovered log against what came before and what the child reported. */
function verifyRound(round: number, log: readonly SignalEvent[], replayed: readonly SignalEvent[], child: ChildRound): void {
  const fail = (message: string): never => {
    assert.unreachable(`round ${round}: ${message}`);
    throw new Error(message);
  };
  if (child.openSeq !== null && child.openSeq !== log.length) fail(`child opened at seq ${child.openSeq}, log ends at ${log.length}`);
  for (let index = 0; index < log.length; index++) {
    if (replayed[index] === undefined || !sameEvent(replayed[index], log[index])) fail(`seq ${index + 1} of an earlier round changed`);
  }
  for (const [seq, entityId] of child.acks) {
    if (seq <= log.length) fail(`acknowledged seq ${seq} is not after the earlier log (${log.length})`);
    const found = replayed[seq - 1];
    if (found === undefined) fail(`acknowledged seq ${seq} is missing (log ends at ${replayed.length})`);
    const { round: eventRound, caller, counter } = entityParts(entityId);
    if (!sameEvent(found, eventFor(eventRound, caller, counter))) fail(`acknowledged seq ${seq} holds another event`);
  }
  // Each caller's events, in seq order, are its counters 0, 1, 2, … with nothing foreign.
  const nextCounter = new Array<number>(CALLERS).fill(0);
  for (let index = log.length; index < replayed.length; index++) {
    const event = replayed[index];
    const { round: eventRound, caller, counter } = entityParts(event.entityId);
    if (eventRound !== round || caller >= CALLERS) fail(`seq ${index + 1} was never submitted in this round`);
    if (counter !== nextCounter[caller]) fail(`seq ${index + 1}: caller ${caller} event ${counter}, expected ${nextCounter[caller]}`);
    if (!sameEvent(event, eventFor(round, caller, counter))) fail(`seq ${index + 1} has content that was never submitted`);
    nextCounter[caller]++;
  }
  // Nothing acknowledged is missing, and nothing past the call in flight after the last ack
  // (allowing one more whose ack line the kill may have cut).
  const ackedCount = new Array<number>(CALLERS).fill(0);
  for (const entityId of child.acks.values()) {
    const { caller, counter } = entityParts(entityId);
    ackedCount[caller] = Math.max(ackedCount[caller], counter + 1);
  }
  for (let caller = 0; caller < CALLERS; caller++) {
    if (nextCounter[caller] < ackedCount[caller]) fail(`caller ${caller}: ${ackedCount[caller]} acknowledged, ${nextCounter[caller]} in the log`);
    const lastAckedCall = ackedCount[caller] === 0 ? -1 : callHolding(round, caller, ackedCount[caller] - 1);
    const limit = counterAfterCall(round, caller, lastAckedCall + 2);
    if (nextCounter[caller] > limit) fail(`caller ${caller}: ${nextCounter[caller]} events in the log, at most ${limit} were submitted`);
  }
}

test(`crash - SIGKILL during concurrent appends loses nothing acknowledged (${ROUNDS} rounds)`, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'tidelog-crash-'));
  try {
    const random = mulberry32(SEED);
    let log: SignalEvent[] = [];
    let acknowledged = 0;
    for (let round = 1; round <= ROUNDS; round++) {
      // Mostly early kills, some late ones; round 2 dies right after opening.
      const killAfterAcks = round === 2 ? 0 : Math.floor(random() ** 2 * 8000);
      const child = await runChild(dir, round, killAfterAcks);
      acknowledged += child.acks.size;
      const { wal, replayed, recovery } = await Wal.open({ dir, ...CHILD_WAL_OPTIONS });
      try {
        assert.is(wal.lastSeq, replayed.length, `round ${round}: lastSeq matches the replay`);
        if (replayed.length > 0) assert.is(recovery.firstSeq, 1, `round ${round}: the log starts at seq 1`);
        verifyRound(round, log, replayed, child);
        const marker = eventFor(round, PARENT_CALLER, 0);
        assert.is(await wal.append(marker), replayed.length + 1, `round ${round}: appending continues at lastSeq + 1`);
        log = [...replayed, marker];
      } finally {
        await wal.close();
      }
    }
    const segments = (await readdir(dir)).filter((name) => name.endsWith('.seg'));
    assert.ok(segments.length >= 3, `segments rotated (${segments.length})`);
    assert.ok(acknowledged > 10_000, `enough acknowledged events to mean something (${acknowledged})`);
  } catch (error) {
    // uvu's reporter wants a string in `details`; a TidelogError carries an object there.
    if (error instanceof TidelogError) throw new Error(`unexpected ${error.message}`, { cause: error });
    throw error;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test.run();
