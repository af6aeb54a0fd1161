// Exit codes and option parsers shared by every `tidelog` command. Exit codes are part of the
// CLI's contract (scripts branch on them), so they live in one place.

import { InvalidArgumentError } from 'commander';

export const ExitCode = {
  /** Done; for verify: every shard intact (a torn tail alone is a warning, still 0). */
  ok: 0,
  /** Damage found, acknowledged data lost, or an operational failure. */
  failed: 1,
  /** Bad usage: unknown command or option, bad value, missing directory. */
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
