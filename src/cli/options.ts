// Exit codes and option parsers shared by every `tidelog` command. Exit codes are part of the
// CLI's contract (scripts branch on them), so they live in one place.

import { resolve } from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import { CONFIG_ENV } from '../node/config.ts';
import type { NatsAuthOptions, NatsTlsOptions } from '../transport/nats.ts';

export const ExitCode = {
  /** Done; for verify: every shard intact (a torn tail alone is a warning, still 0). */
  ok: 0,
  /** Damage found, acknowledged data lost, or an operational failure. */
  failed: 1,
  /** Bad usage: unknown command or option, bad value, missing directory, a config that does not validate (CONFIG_INVALID), credentials the NATS server refuses a permission (PERMISSION_DENIED). */
  usage: 2,
} as const;

export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

/** A commander option parser for an integer in [min, max]. */
export function integerOption(min: number, max: number = Number.MAX_SAFE_INTEGER): (value: string) => number {
  return (value: string): number => {
    const parsed = /^-?\d+$/.test(value.trim()) ? Number(value) : Number.NaN;
    if (!Number.isSafeInteger(parsed) || parsed < min || parsed > max) {
      throw new InvalidArgumentError(`expected an integer ${min}..${max}, got '${value}'`);
    }
    return parsed;
  };
}

/** A commander option parser for a finite number in [min, max]. */
export function numberOption(min: number, max: number): (value: string) => number {
  return (value: string): number => {
    const parsed = value.trim() === '' ? Number.NaN : Number(value);
    if (!Number.isFinite(parsed) || parsed < min || parsed > max) {
      throw new InvalidArgumentError(`expected a number ${min}..${max}, got '${value}'`);
    }
    return parsed;
  };
}

/**
 * The NATS credential flags of the commands that connect to a cluster (serve, status, wal
 * verify --repair-from): what NATS users know, as files and names. Secrets (a password, a
 * token, an NKey seed) are never flags, since a command line is visible to every user of the
 * machine: they come from TIDELOG_NATS_PASS, TIDELOG_NATS_TOKEN, TIDELOG_NATS_NKEY_SEED (or a file).
 */
export interface NatsAuthFlags {
  natsUser?: string;
  natsCreds?: string;
  natsNkey?: string;
  natsInboxPrefix?: string;
  natsTlsCa?: string;
  natsTlsCert?: string;
  natsTlsKey?: string;
}

/** Adds the NatsAuthFlags options to a command (commander names them natsUser, natsCreds, …). */
export function addNatsAuthOptions(command: Command): Command {
  return command
    .option('--nats-user <name>', 'NATS user (its password from TIDELOG_NATS_PASS)')
    .option('--nats-creds <file>', 'NATS .creds file: user JWT + NKey seed (operator mode)')
    .option('--nats-nkey <file>', 'file holding an NKey user seed (SU…)')
    .option('--nats-inbox-prefix <prefix>', "prefix of this connection's reply inboxes, when the user's permissions allow a private one (docs/SECURITY.md)")
    .option('--nats-tls-ca <file>', "CA certificate(s), PEM, that signed the NATS servers' certificates (TLS required)")
    .option('--nats-tls-cert <file>', 'client certificate, PEM, for servers that verify clients (with --nats-tls-key)')
    .option('--nats-tls-key <file>', 'private key, PEM, of --nats-tls-cert')
    .addHelpText(
      'after',
      '\nNATS secrets are read from the environment, never from flags: TIDELOG_NATS_PASS, TIDELOG_NATS_TOKEN,\nTIDELOG_NATS_NKEY_SEED (also TIDELOG_NATS_USER, _CREDS, _NKEY_SEED_FILE, _INBOX_PREFIX, _TLS_CA, _TLS_CERT, _TLS_KEY).',
    );
}

/** The flags as a NatsAuthOptions (only what was given; paths as given). */
export function natsAuthFromFlags(flags: NatsAuthFlags): NatsAuthOptions {
  const auth: NatsAuthOptions = {};
  if (flags.natsUser !== undefined) auth.user = flags.natsUser;
  if (flags.natsCreds !== undefined) auth.credsFile = flags.natsCreds;
  if (flags.natsNkey !== undefined) auth.nkeySeedFile = flags.natsNkey;
  if (flags.natsInboxPrefix !== undefined) auth.inboxPrefix = flags.natsInboxPrefix;
  const tls: NatsTlsOptions = {};
  if (flags.natsTlsCa !== undefined) tls.caFile = flags.natsTlsCa;
  if (flags.natsTlsCert !== undefined) tls.certFile = flags.natsTlsCert;
  if (flags.natsTlsKey !== undefined) tls.keyFile = flags.natsTlsKey;
  if (Object.keys(tls).length > 0) auth.tls = tls;
  return auth;
}

/**
 * A client command's credentials: `base` (a config file's nats.auth, paths already absolute)
 * ← TIDELOG_NATS_* of `env` ← flags, field by field as a node's config merges them; relative
 * paths from env and flags taken relative to `cwd`. Undefined when nothing is set.
 */
export function cliNatsAuth(flags: NatsAuthFlags, options: { base?: NatsAuthOptions; env?: NodeJS.ProcessEnv; cwd?: string } = {}): NatsAuthOptions | undefined {
  const { base = {}, env = process.env, cwd = process.cwd() } = options;
  const fromEnv: Record<string, unknown> = {};
  for (const [name, variable] of Object.entries(CONFIG_ENV)) {
    const text = env[name];
    if (text === undefined || variable.path[0] !== 'nats' || variable.path[1] !== 'auth') continue;
    let holder = fromEnv;
    for (const key of variable.path.slice(2, -1)) holder = (holder[key] ??= {}) as Record<string, unknown>;
    holder[variable.path[variable.path.length - 1]] = text;
  }
  const resolved = (auth: NatsAuthOptions): NatsAuthOptions => {
    const copy: NatsAuthOptions = { ...auth, ...(auth.tls === undefined ? {} : { tls: { ...auth.tls } }) };
    for (const key of ['nkeySeedFile', 'credsFile'] as const) if (copy[key] !== undefined) copy[key] = resolve(cwd, copy[key]);
    for (const key of ['caFile', 'certFile', 'keyFile'] as const) if (copy.tls?.[key] !== undefined) copy.tls[key] = resolve(cwd, copy.tls[key]);
    return copy;
  };
  const layers = [base, resolved(fromEnv as NatsAuthOptions), resolved(natsAuthFromFlags(flags))];
  const merged: NatsAuthOptions = {};
  for (const layer of layers) {
    const { tls, ...fields } = layer;
    Object.assign(merged, fields);
    if (tls !== undefined) merged.tls = { ...merged.tls, ...tls };
  }
  return Object.keys(merged).length === 0 ? undefined : merged;
}
