// The flush-worker actor: its queue is bounded for tasks, never for the writer's FLUSH/CLOSE.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Wal } from '../../src/wal/index.ts';
import { makeEvent, withTempDir } from '../support/wal-fixtures.ts';

test('flush-worker - a flood of checkpoint tasks never drops a FLUSH: appends and close() still finish', async () => {
  await withTempDir(async (dir) => {
    const { wal } = await Wal.open({ dir, batchLingerMs: 0 });
    await wal.append(makeEvent(1));
    const checkpoints = Array.from({ length: 1100 }, () => wal.checkpoint(1).then(() => 'ok', (error: Error & { code?: string }) => error.code));
    const append = wal.append(makeEvent(2));
    assert.is(await append, 2);
    const outcomes = await Promise.all(checkpoints);
    assert.ok(outcomes.every((outcome) => outcome === 'ok' || outcome === 'OVERLOADED'), String(new Set(outcomes)));
    assert.ok(outcomes.includes('OVERLOADED'), 'the task queue is bounded');
    await wal.close();
  });
});

test('flush-worker - flushes that need no I/O wait (fsync off) still let the event loop turn between them', async () => {
  await withTempDir(async (dir) => {
    const { wal } = await Wal.open({ dir, fsync: 'off', batchMaxEvents: 10, dedupWindowMs: 0 });
    let timerFiredAfter = -1;
    let appended = 0;
    setTimeout(() => (timerFiredAfter = appended), 1);
    // Callers that append again from their own continuations, as a busy producer does.
    await Promise.all(
      Array.from({ length: 8 }, async (_, caller) => {
        for (let call = 0; call < 300; call++) {
          await wal.appendMany(Array.from({ length: 10 }, (_, index) => makeEvent(caller * 1_000_000 + call * 10 + index)));
          appended++;
        }
      }),
    );
    assert.ok(timerFiredAfter >= 0 && timerFiredAfter < appended, `a 1 ms timer fired after ${timerFiredAfter} of ${appended} appends`);
    await wal.close();
  });
});

test.run();
