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

test.run();
