// `tidelog demo`: the engine's main job end to end. Each round runs `tidelog wal load` as a
// real child process, lets it append under load, kills it with SIGKILL, reopens the WAL here
// and checks that every acknowledged seq survived; rounds share one directory, so each also
// recovers what the previous crashes left. Exit 0 only when nothing acknowledged was lost.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { checkAfterCrash, type CrashCheck } from './demo-check.ts';
import { killActiveChild, runLoadChildUntilKilled, type AckedRange, type LoadChildResult } from './demo-child.ts';
import { formatBytes, formatCount, formatLatencyUs, formatMs, formatRate, formatTable } from './format.ts';
import { ExitCode, type ExitCodeValue } from './options.ts';
import { StatusLine } from './progress.ts';

export interface DemoOptions {
  dir?: string;
  seconds: number;
  rounds: number;
  keep?: boolean;
}

const SHARD = 0;
const CALLERS = 8;
const BATCH_EVENTS = 100;
/** Small segments so a few seconds of load rotate several times. */
const SEGMENT_BYTES = 4 << 20;

interface Round {
  load: LoadChildResult;
  check: CrashCheck;
}

export async function runDemo(options: DemoOptions): Promise<ExitCodeValue> {
  const isTempDir = options.dir === undefined;
  const dir = options.dir === undefined ? await mkdtemp(join(tmpdir(), 'tidelog-demo-')) : resolve(options.dir);
  const out = (text = ''): void => void process.stdout.write(`${text}\n`);
  const onInterrupt = (): void => {
    killActiveChild();
    process.stderr.write(`\ntidelog demo: interrupted; ${isTempDir && options.keep !== true ? 'removing' : 'keeping'} ${dir}\n`);
    const cleanup = isTempDir && options.keep !== true ? rm(dir, { recursive: true, force: true }) : Promise.resolve();
    void cleanup.finally(() => process.exit(130));
  };
  process.once('SIGINT', onInterrupt);
  process.once('SIGTERM', onInterrupt);

  out(`tidelog demo: ${options.rounds} round(s) of crash-and-recover on ${dir}${isTempDir ? ' (temp dir)' : ''}`);
  out(`each round: \`tidelog wal load\` as a child process (${CALLERS} callers × ${BATCH_EVENTS} events, fsync full)`);
  out(`for ${options.seconds} s, then SIGKILL, reopen the WAL here, and check every acknowledged seq.`);
  out();

  const rounds: Round[] = [];
  const allAcked: AckedRange[] = [];
  let hasLost = false;
  try {
    for (let round = 1; round <= options.rounds; round++) {
      const status = new StatusLine(process.stdout);
      const load = await runLoadChildUntilKilled({
        dir,
        shard: SHARD,
        loadMs: options.seconds * 1000,
        callers: CALLERS,
        batch: BATCH_EVENTS,
        fsync: 'full',
        segmentBytes: SEGMENT_BYTES,
        onStatus: (live) =>
          status.update(
            `  round ${round}: ${(live.elapsedMs / 1000).toFixed(1)} s  ` +
              `${live.eventsPerSecond === null ? '-' : formatCount(live.eventsPerSecond)} events/s  acked ${formatCount(live.acked)}  ` +
              `p99 ack ${live.ackLatencyUsP99 === null ? '-' : formatLatencyUs(live.ackLatencyUsP99)}`,
          ),
      });
      status.clear();
      allAcked.push(...load.ranges);
      const check = await checkAfterCrash(dir, SHARD, allAcked);
      rounds.push({ load, check });
      hasLost ||= check.lost > 0 || check.gaps.length > 0;
      out(renderRound(round, options.rounds, load, check));
    }
  } catch (error) {
    process.stderr.write(`tidelog demo: FAILED: ${error instanceof Error ? error.message : String(error)}\n`);
    process.stderr.write(`tidelog demo: the WAL is kept for inspection: ${dir}\n`);
    return ExitCode.failed;
  } finally {
    process.removeListener('SIGINT', onInterrupt);
    process.removeListener('SIGTERM', onInterrupt);
  }

  out();
  out(renderSummary(rounds));
  out();
  const totalAcked = rounds.reduce((sum, round) => sum + round.load.acked, 0);
  if (hasLost) {
    const examples = rounds.flatMap((round) => [...round.check.gaps.map((gap) => `gap: seqs ${gap} missing`), ...round.check.lostExamples]);
    process.stderr.write(
      `\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n` +
        `!!! FAIL: ACKNOWLEDGED EVENTS WERE LOST after SIGKILL + recovery\n` +
        examples.slice(0, 10).map((line) => `!!!   ${line}\n`).join('') +
        `!!! the WAL is kept for inspection: ${dir}\n` +
        `!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n`,
    );
    return ExitCode.failed;
  }
  out(`PASS: ${rounds.length} SIGKILL(s), ${formatCount(totalAcked)} acknowledged events, lost 0, seqs gapless`);
  if (isTempDir && options.keep !== true) await rm(dir, { recursive: true, force: true });
  else out(`WAL kept at ${dir} (try: tidelog wal verify ${dir})`);
  return ExitCode.ok;
}

function renderRound(round: number, rounds: number, load: LoadChildResult, check: CrashCheck): string {
  const durable = check.lastSeq - load.ready.lastSeq;
  const roundAcked = load.acked;
  return [
    `round ${round}/${rounds}: load pid ${load.pid} started at seq ${load.ready.lastSeq}, SIGKILL after ${formatMs(load.loadMs)}`,
    `  acked     ${formatCount(roundAcked)} events in ${formatCount(load.calls)} calls (${formatCount((roundAcked * 1000) / load.loadMs)} events/s)`,
    `  recovered seqs ${check.oldestSeq} … ${check.lastSeq} ${check.gaps.length === 0 ? 'gapless' : `WITH ${check.gaps.length} GAP(S)`}; ` +
      `${formatCount(durable)} new this round (${formatCount(Math.max(0, durable - roundAcked))} durable but unacknowledged at the kill)`,
    `  recovery  ${formatMs(check.recoveryMs)} for ${formatBytes(check.recoveryBytes)} (${formatRate(check.recoveryBytes, check.recoveryMs)}); ` +
      `torn tail cut: ${formatCount(check.tornTailBytes)} bytes`,
    `  lost ${formatCount(check.lost)} of ${formatCount(check.ackedEvents)} acknowledged so far${check.lost > 0 ? '  <<< DATA LOSS' : ''}`,
  ].join('\n');
}

function renderSummary(rounds: readonly Round[]): string {
  const rows = rounds.map(({ load, check }, index) => [
    String(index + 1),
    formatCount(load.acked),
    formatCount(check.lastSeq - load.ready.lastSeq),
    String(check.lost),
    formatCount(check.tornTailBytes),
    formatMs(check.recoveryMs),
    formatRate(check.recoveryBytes, check.recoveryMs),
    formatCount(check.lastSeq),
  ]);
  return formatTable(['round', 'acked', 'recovered', 'lost', 'torn tail B', 'recovery', 'recovery rate', 'log last seq'], rows);
}
