#!/usr/bin/env node
// The `tidelog` command line. Parsing and help come from commander; each command lives in
// its own file and returns an exit code: 0 ok, 1 damage/failure/loss, 2 usage (options.ts).

import { readFileSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import { isTidelogError } from '../errors.ts';
import type { FsyncMode } from '../wal/index.ts';
import { parseFaultKinds, runChaos } from './chaos.ts';
import { runDemo } from './demo.ts';
import { runDev } from './dev.ts';
import { runDevCluster } from './dev-cluster.ts';
import { runServe, type ServeOptions } from './serve.ts';
import { runStatus, type StatusOptions } from './status.ts';
import { runDump } from './dump.ts';
import { runLoad } from './load.ts';
import { ExitCode, addNatsAuthOptions, integerOption, numberOption, type ExitCodeValue, type NatsAuthFlags } from './options.ts';
import { runRepairFrom } from './repair-from.ts';
import { runVerify } from './verify.ts';

const SHARD_MAX = 65_535;
const FSYNC_MODES: FsyncMode[] = ['full', 'normal', 'off'];

/** The package's version: package.json two levels up, from src/cli/ (tsx) and from dist/cli/ (the build) alike. */
function packageVersion(): string {
  const json = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return json.version;
}

/** Runs the CLI on `argv` (node-style: [execPath, script, ...args]) and returns the exit code. */
export async function runCli(argv: readonly string[]): Promise<ExitCodeValue> {
  let exitCode: ExitCodeValue = ExitCode.ok;
  const done = (code: ExitCodeValue): void => {
    exitCode = code;
  };
  const program = buildProgram(done);
  try {
    await program.parseAsync([...argv]);
    return exitCode;
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode === 0 ? ExitCode.ok : ExitCode.usage;
    if (isTidelogError(error)) {
      // Operational errors have a code and a message that names what failed; no stack.
      process.stderr.write(`tidelog: ${error.message}\n`);
      // Usage and config errors alike exit 2: the command was not run as asked (a permission
      // the NATS server refused is the credentials' configuration too).
      return error.code === 'BAD_REQUEST' || error.code === 'CONFIG_INVALID' || error.code === 'PERMISSION_DENIED' ? ExitCode.usage : ExitCode.failed;
    }
    process.stderr.write(`tidelog: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    return ExitCode.failed;
  }
}

function buildProgram(done: (code: ExitCodeValue) => void): Command {
  const program = new Command('tidelog')
    .description('tidelog: a durable, replicated log for signal events')
    .version(packageVersion(), '-V, --version', 'print the tidelog version')
    // Settings made before .command() are inherited by every subcommand.
    .exitOverride()
    .showHelpAfterError()
    .allowExcessArguments(false)
    .addHelpText('after', '\nExit codes: 0 ok, 1 damage or failure, 2 usage error.');

  const wal = program.command('wal').description('inspect and exercise a write-ahead log directory');

  const verify = wal
    .command('verify')
    .description('verify every batch of every shard read-only (never takes the lock, safe beside a running writer)')
    .argument('<dir>', "a node's data dir, or its WAL directory")
    .option('--shard <n>', 'verify only this shard (default: every shard found)', integerOption(0, SHARD_MAX))
    .option('--json', 'print one JSON document on stdout and nothing else there')
    .option('--repair-from <nats url>', "repair damaged shards from a replica of the cluster at this NATS URL (the node stopped; <dir> is <dataDir>/wal)")
    .option('--namespace <ns>', 'with --repair-from: the cluster\'s namespace', 'tidelog')
    .option('--config <file>', "with --repair-from: the node's config (signal schema, WAL settings, acks)")
    .addHelpText(
      'after',
      `
Exit codes:
  0  every shard intact. A torn tail (a partial batch at the end of the last segment, what a
     crash mid-write leaves; the next open cuts it) is reported as a WARNING and still exits 0.
  1  damage: a checksum mismatch or broken record before the tail, a seq gap between
     segments, or a damaged checkpoint; the report names the file and the offset.
  2  usage error (bad option, missing or empty directory).
A progress bar is drawn on stderr when it is a terminal and the shard is large.
With --repair-from (a cluster's replica, its node stopped): each damaged shard is opened on
its intact prefix with a repair marker, the committed batches after it are fetched from the
shard's leader (or the replica committed furthest) and appended verbatim; exit 0 once every
repaired shard verifies. The node then catches up from its leader and votes again.`,
    )
  addNatsAuthOptions(verify).action(async (dir: string, options: NatsAuthFlags & { shard?: number; json?: boolean; repairFrom?: string; namespace: string; config?: string }) =>
    done(
      options.repairFrom === undefined
        ? await runVerify(dir, options)
        : await runRepairFrom(dir, { ...options, nats: options.repairFrom, namespace: options.namespace, ...(options.shard === undefined ? {} : { shard: options.shard }), ...(options.config === undefined ? {} : { config: options.config }) }),
    ),
  );

  wal
    .command('dump')
    .description('print committed events (or batch headers) of a shard, read-only')
    .argument('<dir>', 'WAL directory')
    .option('--shard <n>', 'shard to read (default: the only shard in the directory)', integerOption(0, SHARD_MAX))
    .option('--from-seq <seq>', 'first seq to print', integerOption(1))
    .option('--limit <n>', 'print at most n events (or batches)', integerOption(0))
    .option('--batches', 'print batch headers: firstSeq count epoch timestampNs time bytes segment offset')
    .option('--json', 'NDJSON, one object a line; u64 fields as strings')
    .addHelpText(
      'after',
      `
Event lines: seq entityId signalType weight timestampNs
Exit codes: 0 ok (a torn tail is a warning on stderr), 1 damage (the intact prefix is printed), 2 usage.`,
    )
    .action(async (dir: string, options: { shard?: number; fromSeq?: number; limit?: number; batches?: boolean; json?: boolean }) =>
      done(await runDump(dir, options)),
    );

  wal
    .command('load')
    .description('append unique events from concurrent callers; one "ack <firstSeq> <lastSeq> <n>" line per acknowledged call')
    .argument('<dir>', 'WAL directory (created if missing)')
    .option('--shard <n>', 'shard to write', integerOption(0, SHARD_MAX), 0)
    .option('--callers <n>', 'concurrent callers', integerOption(1, 4096), 8)
    .option('--batch <n>', 'events per appendMany call', integerOption(1, 1 << 20), 100)
    .option('--duration-ms <ms>', 'stop after this long (default: until SIGINT/SIGTERM)', integerOption(1))
    .addOption(new Option('--fsync <mode>', 'full: ack after fdatasync; normal: sync every 100 ms; off: never').choices(FSYNC_MODES).default('full'))
    .option('--segment-bytes <n>', 'segment rotation size', integerOption(4096, 1 << 30), 16 << 20)
    .option('--json', 'NDJSON acks on stdout; JSON ready/progress/done lines on stderr')
    .addHelpText(
      'after',
      `
An ack line is printed only after its appendMany promise resolved: with --fsync full every
printed seq is durable. stderr gets a progress line every second (events/s, acked, p99 ack
latency). SIGINT/SIGTERM stop the callers and close the WAL cleanly.
Exit codes: 0 ok, 1 the WAL failed (e.g. FSYNC_FAILED, WAL_LOCKED), 2 usage.`,
    )
    .action(
      async (
        dir: string,
        options: { shard: number; callers: number; batch: number; durationMs?: number; fsync: FsyncMode; segmentBytes: number; json?: boolean },
      ) => done(await runLoad(dir, options)),
    );

  program
    .command('demo')
    .description('crash-and-recover demo: load in a child process, SIGKILL it, recover, check every acknowledged seq')
    .option('--dir <dir>', 'WAL directory (default: a fresh temp dir, removed at the end)')
    .option('--seconds <s>', 'load time per round', numberOption(0.1, 3600), 3)
    .option('--rounds <n>', 'crash rounds on the same directory', integerOption(1, 1000), 3)
    .option('--keep', 'keep the temp dir')
    .addHelpText('after', '\nExit codes: 0 nothing acknowledged was lost, 1 acknowledged data lost or the demo failed, 2 usage.')
    .action(async (options: { dir?: string; seconds: number; rounds: number; keep?: boolean }) => done(await runDemo(options)));

  program
    .command('dev')
    .description('embedded default (npm start): own nats-server, a node, a demo producer with a live line, then a read-back check')
    .option('--seconds <s>', 'how long the demo producer sends', numberOption(0, 86_400), 10)
    .option('--shards <n>', 'shards (hash router)', integerOption(1, 64), 4)
    .option('--senders <n>', 'concurrent sends of the demo producer', integerOption(1, 1024), 16)
    .option('--batch <n>', 'events per send', integerOption(1, 65_536), 1000)
    .option('--dir <dir>', 'data directory (default: a fresh temp dir, removed at the end)')
    .option('--keep', 'keep the temp dir')
    .option('--in-process', 'use the in-process transport even when nats-server is installed')
    .option('--nodes <n>', 'a local cluster: a 3-server NATS cluster and this many nodes as child processes (R = 3)', integerOption(1, 9))
    .option('--chaos', 'with --nodes: kill a random shard leader every few seconds and restart it')
    .option('--chaos-every <s>', 'seconds between chaos kills', numberOption(1, 3600), 5)
    .addHelpText('after', '\n--seconds 0 with --nodes runs until Ctrl-C.\nExit codes: 0 every acknowledged event read back intact, 1 otherwise, 2 usage.')
    .action(
      async (options: {
        seconds: number;
        shards: number;
        senders: number;
        batch: number;
        dir?: string;
        keep?: boolean;
        inProcess?: boolean;
        nodes?: number;
        chaos?: boolean;
        chaosEvery: number;
      }) => {
        if (options.nodes !== undefined) {
          const { seconds, shards, senders, batch, dir, keep, nodes, chaosEvery } = options;
          return done(await runDevCluster({ seconds, shards, senders, batch, nodes, chaos: options.chaos === true, chaosEverySeconds: chaosEvery, ...(dir === undefined ? {} : { dir }), ...(keep === undefined ? {} : { keep }) }));
        }
        if (options.chaos === true) throw new Error('--chaos needs --nodes');
        return done(await runDev({ ...options, forceInProcess: options.inProcess }));
      },
    );

  program
    .command('chaos')
    .description('a local 3-node cluster under load and seeded faults (kill -9, SIGSTOP, partitions, blackholes, delays, nats-server kills, fsync EIO, ENOSPC, power cuts, clock jumps; quorum or availability mode); a Jepsen-style history checked against every replica\'s files')
    .option('--minutes <m>', 'how long the load and the faults run', numberOption(0.1, 24 * 60))
    .option('--seconds <s>', 'the same in seconds (wins over --minutes)', numberOption(5, 86_400))
    .option('--seed <n>', 'seed of the fault schedule (default: random; printed, so a run replays)', integerOption(0, 0xffff_ffff))
    .option('--shards <n>', 'shards (hash router)', integerOption(1, 64), 3)
    .option('--rate <n>', 'events/s the producers send together (paced)', integerOption(1, 10_000_000), 3000)
    .option('--batch <n>', 'events per send', integerOption(1, 65_536), 20)
    .option('--faults <kinds>', 'fault kinds: all, or a list of kill,pause,partition-cut,partition-blackhole,link-delay,nats-kill,disk-eio,disk-full,power-cut,clock-jump', 'all')
    .addOption(new Option('--acks <mode>', "the nodes' cluster.acks: quorum, or leader (availability mode: a cut-off leader keeps acknowledging; merged on heal)").choices(['quorum', 'leader']).default('quorum'))
    .option('--dir <dir>', 'data directory (default: a fresh temp dir, removed at the end unless the run fails)')
    .option('--keep', 'keep the temp dir')
    .option('--json', 'also print the summary as one JSON line')
    .addHelpText('after', '\nExit codes: 0 nothing acknowledged lost or twice and every replica equal, 1 otherwise, 2 usage.')
    .action(async (options: { minutes?: number; seconds?: number; seed?: number; shards: number; rate: number; batch: number; faults: string; acks: 'quorum' | 'leader'; dir?: string; keep?: boolean; json?: boolean }) => {
      const seconds = options.seconds ?? (options.minutes ?? 2) * 60;
      const seed = options.seed ?? Math.floor(Math.random() * 0xffff_ffff);
      const { shards, rate, batch, acks, dir, keep, json } = options;
      return done(await runChaos({ seconds, seed, shards, rate, batch, acks, kinds: parseFaultKinds(options.faults), ...(dir === undefined ? {} : { dir }), ...(keep === undefined ? {} : { keep }), ...(json === undefined ? {} : { json }) }));
    });

  addNatsAuthOptions(
    program
      .command('serve')
      .description('run a node: config file (relative paths in it from its folder), then TIDELOG_* environment variables, then these flags')
      .option('--config <file>', 'JSON config (schema: config/node.schema.json; defaults: config/default.json)')
      .option('--nats <urls>', 'NATS server urls, comma separated')
      .option('--namespace <ns>', 'subject namespace')
      .option('--data-dir <dir>', 'where the shards keep their WALs')
      .option('--node-id <id>', 'node id (default: generated once, kept in <dataDir>/node-id)')
      .addOption(new Option('--shards <n>', 'hash entity ids over n shards (router strategy hash; only on an empty data dir)').argParser(integerOption(1, SHARD_MAX + 1)))
      .addOption(new Option('--fsync <mode>', 'full: ack after fdatasync (default); normal: sync every syncIntervalMs; off').choices(FSYNC_MODES))
      .option('--metrics-port <port>', 'monitoring endpoint port: /, /status, /healthz, /metrics (default 8322; 0: a free port)', integerOption(0, 65_535))
      .option('--no-metrics', 'no monitoring endpoint')
      .addOption(new Option('--log-level <level>', 'log level').choices(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']))
      .option('--salvage', 'open damaged shards on their durable prefix (damaged bytes kept aside as .damaged) instead of leaving them stopped'),
  ).action(async (options: ServeOptions) => done(await runServe(options)));

  addNatsAuthOptions(
    program
      .command('status')
    .description('ask every node of a namespace for its status and print a table')
    .option('--nats <urls>', 'NATS server urls, comma separated', 'nats://127.0.0.1:4222')
    .option('--namespace <ns>', 'subject namespace', 'tidelog')
    .option('--timeout-ms <ms>', 'how long to collect answers', integerOption(10, 600_000), 500)
    .option('--nodes <n>', 'stop as soon as this many nodes answered (the timeout still bounds the wait)', integerOption(1, 65_536))
      .option('--json', 'print JSON instead of a table'),
  ).action(async (options: StatusOptions) => done(await runStatus(options)));

  return program;
}

// `tidelog wal dump … | head` closes the pipe early: that is the reader's choice, not an error.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code !== 'EPIPE') throw error;
  process.exit(process.exitCode ?? ExitCode.ok);
});
process.exitCode = await runCli(process.argv);
