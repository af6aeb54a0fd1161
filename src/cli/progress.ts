// A status line that rewrites itself on a terminal and degrades to occasional plain lines
// elsewhere, so logs and pipes never fill with carriage returns.

export interface StatusStream {
  write(text: string): boolean;
  readonly isTTY?: boolean;
}

export interface StatusLineOptions {
  /** Rewrite one line in place (a terminal); otherwise print whole lines. */
  isLive?: boolean;
  /** Minimum time between two renders; plain lines use `plainIntervalMs` instead. */
  minIntervalMs?: number;
  /** How often a non-live status prints a line; 0 prints nothing until done(). */
  plainIntervalMs?: number;
}

export class StatusLine {
  private readonly isLive: boolean;
  private readonly minIntervalMs: number;
  private readonly plainIntervalMs: number;
  private lastRenderMs = Number.NEGATIVE_INFINITY;
  private isShowing = false;

  constructor(
    private readonly stream: StatusStream,
    options: StatusLineOptions = {},
  ) {
    this.isLive = options.isLive ?? stream.isTTY === true;
    this.minIntervalMs = options.minIntervalMs ?? 100;
    this.plainIntervalMs = options.plainIntervalMs ?? 1000;
  }

  /** Shows `text` unless the last render was too recent (`force` skips the throttle). */
  update(text: string, force = false): void {
    const nowMs = performance.now();
    const intervalMs = this.isLive ? this.minIntervalMs : this.plainIntervalMs;
    if (!this.isLive && intervalMs === 0) return;
    if (!force && nowMs - this.lastRenderMs < intervalMs) return;
    this.lastRenderMs = nowMs;
    if (this.isLive) {
      this.stream.write(`\r\x1b[K${text}`);
      this.isShowing = true;
    } else {
      this.stream.write(`${text}\n`);
    }
  }

  /** Removes the live line (so the next output starts clean). */
  clear(): void {
    if (this.isLive && this.isShowing) this.stream.write('\r\x1b[K');
    this.isShowing = false;
  }
}

/** `[#####-----]`: `done` of `total` as a bar of `width` cells. */
export function renderBar(done: number, total: number, width = 10): string {
  const filled = total <= 0 ? width : Math.min(width, Math.floor((done / total) * width));
  return `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}]`;
}
