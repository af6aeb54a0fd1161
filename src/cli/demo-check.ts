// After a SIGKILL: reopen the WAL (recovery cuts any torn tail) and prove the durability
// contract: seqs are gapless from the oldest retained one to the last, and every
// acknowledged seq is present and holds an event written by the process that got the ack.

import { EVENT_BYTES, Wal } from '../wal/index.ts';
import type { AckedRange } from './demo-child.ts';

export interface CrashCheck {
  oldestSeq: number;
  lastSeq: number;
  /** Seq ranges missing between batches (should be none). */
  gaps: string[];
  ackedEvents: number;
  /** Acknowledged events missing or holding another writer's event (must be 0). */
  lost: number;
  lostExamples: string[];
  tornTailBytes: number;
  recoveryMs: number;
  recoveryBytes: number;
  openMs: number;
}

const MAX_EXAMPLES = 5;

export async function checkAfterCrash(dir: string, shard: number, acked: readonly AckedRange[]): Promise<CrashCheck> {
  const openStartMs = performance.now();
  const { wal, recovery } = await Wal.open({ dir, shard, replay: false });
  const openMs = performance.now() - openStartMs;
  try {
    const stats = wal.stats();
    const oldestSeq = stats.segments[0]?.firstSeq ?? 1;
    const ranges = [...acked].sort((a, b) => a.firstSeq - b.firstSeq);
    const verified = new Array<number>(ranges.length).fill(0);
    const gaps: string[] = [];
    const lostExamples: string[] = [];
    let expectedSeq = oldestSeq;
    let next = 0; // first range that may still overlap the coming batches

    for await (const batch of wal.readBatches({ fromSeq: oldestSeq })) {
      const batchLastSeq = batch.firstSeq + batch.count - 1;
      if (batch.firstSeq !== expectedSeq) gaps.push(`${expectedSeq}…${batch.firstSeq - 1}`);
      expectedSeq = batchLastSeq + 1;
      while (next < ranges.length && ranges[next].lastSeq < batch.firstSeq) next++;
      const view = new DataView(batch.events.buffer, batch.events.byteOffset, batch.events.byteLength);
      for (let index = next; index < ranges.length && ranges[index].firstSeq <= batchLastSeq; index++) {
        const range = ranges[index];
        const from = Math.max(range.firstSeq, batch.firstSeq);
        const to = Math.min(range.lastSeq, batchLastSeq);
        for (let seq = from; seq <= to; seq++) {
          // entityId's high half is the writer's pid (see load-messages.ts).
          const writerPid = view.getUint32((seq - batch.firstSeq) * EVENT_BYTES + 4, true);
          if (writerPid === range.pid) verified[index]++;
          else if (lostExamples.length < MAX_EXAMPLES) {
            lostExamples.push(`seq ${seq} acked to pid ${range.pid} holds an event of pid ${writerPid}`);
          }
        }
      }
    }
    let ackedEvents = 0;
    let lost = 0;
    ranges.forEach((range, index) => {
      const size = range.lastSeq - range.firstSeq + 1;
      ackedEvents += size;
      lost += size - verified[index];
      if (verified[index] < size && lostExamples.length < MAX_EXAMPLES) {
        lostExamples.push(`acked seqs ${range.firstSeq}…${range.lastSeq} (pid ${range.pid}): ${size - verified[index]} missing or wrong`);
      }
    });
    return {
      oldestSeq,
      lastSeq: wal.lastSeq,
      gaps,
      ackedEvents,
      lost,
      lostExamples,
      tornTailBytes: recovery.truncatedTail?.bytesRemoved ?? 0,
      recoveryMs: recovery.durationMs,
      recoveryBytes: recovery.bytesScanned,
      openMs,
    };
  } finally {
    await wal.close();
  }
}
