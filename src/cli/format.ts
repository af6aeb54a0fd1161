// Human-readable numbers for the CLI: sizes and rates in decimal units (MB = 10^6 bytes),
// counts with thousands separators, f32 weights in their shortest round-tripping form, and
// a column-aligned table.

export function formatBytes(bytes: number): string {
  if (bytes < 1000) return `${bytes} B`;
  const units = ['kB', 'MB', 'GB', 'TB'];
  let value = bytes / 1000;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${value.toFixed(value < 10 ? 2 : value < 100 ? 1 : 0)} ${units[unit]}`;
}

/** Bytes per second as MB/s; '-' when the interval is too short to mean anything. */
export function formatRate(bytes: number, durationMs: number): string {
  if (durationMs <= 0.5) return '- MB/s';
  const megabytesPerSecond = bytes / 1000 / durationMs;
  return `${megabytesPerSecond.toFixed(megabytesPerSecond < 10 ? 1 : 0)} MB/s`;
}

export function formatCount(count: number): string {
  return Math.round(count).toLocaleString('en-US');
}

export function formatMs(ms: number): string {
  return ms < 10 ? `${ms.toFixed(2)} ms` : ms < 1000 ? `${ms.toFixed(0)} ms` : `${(ms / 1000).toFixed(2)} s`;
}

/** Microseconds as a short latency ('850 µs', '3.2 ms'). */
export function formatLatencyUs(us: number): string {
  return us < 1000 ? `${Math.round(us)} µs` : `${(us / 1000).toFixed(us < 10_000 ? 1 : 0)} ms`;
}

/** The shortest decimal that reads back as the same f32, so 0.1f prints as 0.1. */
export function formatWeight(weight: number): string {
  if (!Number.isFinite(weight)) return String(weight);
  for (let digits = 1; digits <= 9; digits++) {
    const text = weight.toPrecision(digits);
    if (Math.fround(Number(text)) === weight) return String(Number(text));
  }
  return String(weight);
}

/** Rows under a header, each column padded to its widest cell; numbers right-aligned. */
export function formatTable(header: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => (row[column] ?? '').length)));
  const isNumeric = header.map((_, column) => rows.length > 0 && rows.every((row) => /^[-\d]/.test(row[column] ?? '')));
  const line = (cells: readonly string[]): string =>
    cells
      .map((cell, column) => (isNumeric[column] ? cell.padStart(widths[column]) : cell.padEnd(widths[column])))
      .join('  ')
      .trimEnd();
  return [line(header), line(widths.map((width) => '-'.repeat(width))), ...rows.map(line)].join('\n');
}
