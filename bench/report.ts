// Shared benchmark output: every benchmark prints one JSON document (machine-readable, for
// comparing runs) and then a table (for people). Ratios are computed inside one run only.

import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export interface BenchRow {
  name: string;
  value: number;
  unit: string;
  /** Optional extra columns, e.g. the peer a ratio is taken against. */
  note?: string;
}

export interface BenchReport {
  bench: string;
  startedAt: string;
  machine: { cpus: number; node: string; platform: string };
  params: Record<string, unknown>;
  rows: BenchRow[];
  ratios: Record<string, number>;
}

import { cpus } from 'node:os';

export function newReport(bench: string, params: Record<string, unknown>): BenchReport {
  return {
    bench,
    startedAt: new Date().toISOString(),
    machine: { cpus: cpus().length, node: process.version, platform: process.platform },
    params,
    rows: [],
    ratios: {},
  };
}

export function printReport(report: BenchReport): void {
  console.log(JSON.stringify(report, null, 2));
  const nameWidth = Math.max(4, ...report.rows.map((row) => row.name.length));
  const lines = [`${'what'.padEnd(nameWidth)}  ${'value'.padStart(14)}  unit`];
  for (const row of report.rows) {
    lines.push(
      `${row.name.padEnd(nameWidth)}  ${formatNumber(row.value).padStart(14)}  ${row.unit}${row.note ? `  (${row.note})` : ''}`,
    );
  }
  for (const [name, ratio] of Object.entries(report.ratios)) {
    lines.push(`${name.padEnd(nameWidth)}  ${ratio.toFixed(2).padStart(14)}  ×`);
  }
  console.log(`\n${report.bench}\n${lines.join('\n')}`);
}

function formatNumber(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  if (Math.abs(value) >= 1000) return Math.round(value).toLocaleString('en-US');
  return value.toFixed(3);
}

/** Percentile of an unsorted sample (nearest-rank); the sample is sorted in place. */
export function percentile(sample: number[], p: number): number {
  if (sample.length === 0) return Number.NaN;
  sample.sort((a, b) => a - b);
  const rank = Math.min(sample.length - 1, Math.max(0, Math.ceil((p / 100) * sample.length) - 1));
  return sample[rank];
}

/**
 * Runs `npm run bench -- <bench> <childFlag>` in a fresh process (so nothing else this run
 * allocated is counted) and returns the JSON it printed last; also the child's wall time,
 * process start included.
 */
export function runBenchChild<T>(bench: string, nodeFlags: string[], childFlag: string): T & { childWallMs: number } {
  const startMs = performance.now();
  const child = spawnSync(
    process.execPath,
    [...nodeFlags, '--max-old-space-size=16384', '--import', 'tsx', fileURLToPath(new URL('./main.ts', import.meta.url)), bench, childFlag],
    { encoding: 'utf8', maxBuffer: 1 << 20 },
  );
  const childWallMs = performance.now() - startMs;
  if (child.status !== 0) throw new Error(`the child ${childFlag} failed: ${child.stderr}`);
  const lines = child.stdout.trim().split('\n');
  return { ...(JSON.parse(lines[lines.length - 1]) as T), childWallMs };
}
