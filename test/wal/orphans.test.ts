// Availability mode in the WAL: appendMany answered at durable (resolveAt 'durable') while the
// commit point still governs the fold; a cut hands its batches to beforeCut first (and a
// beforeCut that fails cuts nothing); orphan files hold them verbatim and refuse damage.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { listOrphans, nodeFileIo, readOrphans, removeOrphanLeftovers, removeOrphans, saveOrphans } from '../../src/wal/index.ts';
import { readBatchHeader } from '../../src/wal/batch-format.ts';
import { makeEvent, openLeading, removeDir, tempDir } from '../support/wal-fixtures.ts';
import { SumMachine } from '../support/sum-machine.ts';
import { expectRejection } from '../support/expect-code.ts';
import { until } from '../support/waits.ts';

const options = { segmentBytes: 512, batchMaxEvents: 4, batchLingerMs: 0, commit: 'external' as const, resolveAt: 'durable' as const };

test('orphans - resolveAt durable answers at fsync; the fold still waits for commitTo', async () => {
  const dir = tempDir();
  try {
    const machine = new SumMachine();
    const { wal } = await openLeading({ dir, ...options, stateMachine: machine });
    const seqs = await wal.appendMany([1, 2, 3].map(makeEvent));
    assert.equal(seqs, [1, 2, 3]);
    assert.is(wal.durableSeq, 3);
    assert.is(machine.count, 0, 'not folded before the commit point');
    await wal.commitTo(3);
    await until(() => machine.count === 3, 'folded at commitTo');
    await wal.close();
  } finally {
    removeDir(dir);
  }
});

test('orphans - a cut passes the batches it removes to beforeCut; a failing beforeCut cuts nothing', async () => {
  const dir = tempDir();
  try {
    const { wal } = await openLeading({ dir, ...options });
    for (let call = 0; call < 6; call++) await wal.appendMany([call * 2 + 1, call * 2 + 2].map(makeEvent));
    await wal.commitTo(4);
    await wal.setEpoch(wal.epoch + 1);
    const refused = await wal.truncateAfter(4, { beforeCut: () => Promise.reject(new Error('orphan file not written')) }).then(
      () => 'cut',
      (error: Error) => error.message,
    );
    assert.is(refused, 'orphan file not written');
    assert.is(wal.durableSeq, 12, 'nothing was cut');
    let kept: Uint8Array[] = [];
    assert.is(await wal.truncateAfter(4, { beforeCut: async (batches) => void (kept = batches) }), 8);
    assert.is(wal.durableSeq, 4);
    const ranges = kept.map((batch) => {
      const parsed = readBatchHeader(batch, 0);
      return parsed.ok ? [parsed.header.firstSeq, parsed.header.count] : null;
    });
    assert.equal(ranges, [[5, 2], [7, 2], [9, 2], [11, 2]], 'every cut batch, across segments, in order');
    await wal.close();
  } finally {
    removeDir(dir);
  }
});

test('orphans - files hold batches verbatim, per shard, oldest first; damage is refused and the file kept', async () => {
  const dir = tempDir();
  try {
    const { wal } = await openLeading({ dir: join(dir, 'log'), ...options });
    for (let call = 0; call < 3; call++) await wal.appendMany([call + 1].map(makeEvent));
    await wal.setEpoch(wal.epoch + 1);
    let kept: Uint8Array[] = [];
    await wal.truncateAfter(0, { beforeCut: async (batches) => void (kept = batches) });
    await wal.close();
    const orphanDir = join(dir, 'orphans');
    const first = await saveOrphans(nodeFileIo, orphanDir, 3, kept.slice(0, 2), 1_000);
    const second = await saveOrphans(nodeFileIo, orphanDir, 3, kept.slice(2), 2_000);
    await saveOrphans(nodeFileIo, orphanDir, 4, kept, 500);
    assert.equal(await listOrphans(nodeFileIo, orphanDir, 3), [first, second]);
    assert.equal(await listOrphans(nodeFileIo, join(dir, 'none'), 3), [], 'no directory: none');
    const read = await readOrphans(nodeFileIo, orphanDir, first);
    assert.equal(read.map((batch) => Buffer.from(batch).toString('hex')), kept.slice(0, 2).map((batch) => Buffer.from(batch).toString('hex')));
    assert.not.ok(readdirSync(orphanDir).some((name) => name.endsWith('.tmp')), 'no temporary file left');
    const bytes = readFileSync(join(orphanDir, first));
    for (const offset of [10, 64, bytes.byteLength - 1]) {
      const damaged = Buffer.from(bytes);
      damaged[offset] ^= 0x10;
      writeFileSync(join(orphanDir, first), damaged);
      await expectRejection(readOrphans(nodeFileIo, orphanDir, first), 'CORRUPT_SEGMENT');
    }
    writeFileSync(join(orphanDir, first), bytes.subarray(0, bytes.byteLength - 3));
    await expectRejection(readOrphans(nodeFileIo, orphanDir, first), 'CORRUPT_SEGMENT');
    assert.ok(readdirSync(orphanDir).includes(first), 'a damaged file is kept');
    await removeOrphans(nodeFileIo, orphanDir, second);
    await removeOrphans(nodeFileIo, orphanDir, second);
    assert.equal(await listOrphans(nodeFileIo, orphanDir, 3), [first]);
    // A crash mid-write leaves a temporary file: never listed, removed on the next open.
    writeFileSync(join(orphanDir, `${second}.tmp`), bytes.subarray(0, 10));
    assert.equal(await listOrphans(nodeFileIo, orphanDir, 3), [first]);
    assert.is(await removeOrphanLeftovers(nodeFileIo, orphanDir, 4), 0, "another shard's leftovers are not this one's");
    assert.is(await removeOrphanLeftovers(nodeFileIo, orphanDir, 3), 1);
    assert.not.ok(readdirSync(orphanDir).some((name) => name.endsWith('.tmp')));
  } finally {
    removeDir(dir);
  }
});

test.run();
