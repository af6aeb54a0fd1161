// Snapshot files: the drawn layout, a write/read pair in any chunking, and damage anywhere —
// truncation at every byte, a flip of any bit — found before a byte of it is used.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fc from 'fast-check';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { initChecksum } from '../../src/wal/checksum.ts';
import { nodeFileIo } from '../../src/wal/file-io.ts';
import { snapshotFileName } from '../../src/wal/segment-name.ts';
import { SNAPSHOT_CHUNK_HEAD_BYTES, SNAPSHOT_FOOTER_BYTES, SNAPSHOT_HEADER_BYTES, SnapshotFileWriter, readSnapshotFile, type SnapshotMeta } from '../../src/wal/snapshot-file.ts';
import { rejection, removeDir, tempDir, withTempDir } from '../support/wal-fixtures.ts';

await initChecksum();

const meta: SnapshotMeta = { shard: 3, seq: 1234, notesBatchesAfter: 2, leaderEpoch: 9, timestampNs: 1_700_000_000_000_000_000n };

function payloadOf(length: number, seed = 1): Uint8Array {
  return Uint8Array.from({ length }, (_, index) => (index * 31 + seed * 7) & 0xff);
}

async function write(dir: string, pieces: Uint8Array[], chunkBytes = 1024): Promise<string> {
  const writer = await SnapshotFileWriter.create(nodeFileIo, dir, meta, { chunkBytes, isSynced: false });
  for (const piece of pieces) await writer.write(piece);
  await writer.finish();
  return writer.fileName;
}

async function read(dir: string, fileName: string, expected = { shard: meta.shard, seq: meta.seq }): Promise<{ bytes: Uint8Array; meta: SnapshotMeta }> {
  const parts: Uint8Array[] = [];
  const reading = await readSnapshotFile(nodeFileIo, dir, fileName, expected, (chunk) => parts.push(chunk.slice()));
  return { bytes: Buffer.concat(parts), meta: reading.meta };
}

test('snapshot-file - header, chunk and footer fields sit at the documented offsets', async () => {
  await withTempDir(async (dir) => {
    const fileName = await write(dir, [payloadOf(1500)], 1024);
    assert.is(fileName, snapshotFileName(3, 1234));
    const bytes = readFileSync(join(dir, fileName));
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    assert.is(bytes.subarray(0, 4).toString(), 'TLSF');
    assert.is(view.getUint16(4, true), 1);
    assert.is(view.getUint32(8, true), 3);
    assert.is(view.getUint32(12, true), 1024);
    assert.is(view.getBigUint64(16, true), 1234n);
    assert.is(view.getUint32(24, true), 2);
    assert.is(view.getBigUint64(32, true), 9n);
    assert.is(view.getBigUint64(40, true), meta.timestampNs);
    // Two chunks: 1024 and 476 bytes.
    assert.is(view.getUint32(64, true), 1024);
    assert.is(view.getUint32(68, true), 0);
    const second = SNAPSHOT_HEADER_BYTES + SNAPSHOT_CHUNK_HEAD_BYTES + 1024;
    assert.is(view.getUint32(second, true), 476);
    assert.is(view.getUint32(second + 4, true), 1);
    const footer = second + SNAPSHOT_CHUNK_HEAD_BYTES + 476;
    assert.is(bytes.subarray(footer, footer + 4).toString(), 'TLSE');
    assert.is(view.getUint32(footer + 4, true), 2);
    assert.is(view.getBigUint64(footer + 8, true), 1500n);
    assert.is(bytes.byteLength, footer + SNAPSHOT_FOOTER_BYTES);
    assert.not.ok(existsSync(join(dir, `${fileName}.tmp`)), 'renamed from .tmp');
  });
});

test('snapshot-file - what is written in any pieces reads back whole, with its header fields (property)', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(fc.integer({ min: 0, max: 3000 }), { maxLength: 6 }), fc.integer({ min: 1, max: 2048 }), async (lengths, chunkBytes) => {
      const dir = tempDir('snapfile');
      try {
        const pieces = lengths.map((length, index) => payloadOf(length, index));
        const fileName = await write(dir, pieces, chunkBytes);
        const back = await read(dir, fileName);
        assert.equal(back.bytes, Buffer.concat(pieces));
        assert.equal(back.meta, meta);
      } finally {
        removeDir(dir);
      }
    }),
    { seed: 7, numRuns: 40 },
  );
});

test('snapshot-file - truncated at every byte it is SNAPSHOT_DAMAGED, never a shorter state', async () => {
  await withTempDir(async (dir) => {
    const fileName = await write(dir, [payloadOf(300)], 128);
    const whole = readFileSync(join(dir, fileName));
    for (let length = 0; length < whole.byteLength; length++) {
      writeFileSync(join(dir, fileName), whole.subarray(0, length));
      const error = await rejection(() => read(dir, fileName));
      assert.is(error.code, 'SNAPSHOT_DAMAGED', `cut at ${length}`);
      assert.match(error.message, new RegExp(fileName));
    }
    writeFileSync(join(dir, fileName), Buffer.concat([whole, Buffer.from([0])]));
    assert.is((await rejection(() => read(dir, fileName))).code, 'SNAPSHOT_DAMAGED', 'a byte after the footer');
  });
});

test('snapshot-file - a bit flipped in any byte is SNAPSHOT_DAMAGED naming the offset', async () => {
  await withTempDir(async (dir) => {
    const fileName = await write(dir, [payloadOf(200)], 64);
    const whole = readFileSync(join(dir, fileName));
    for (let offset = 0; offset < whole.byteLength; offset++) {
      // One bit per byte, each bit position in turn.
      const bit = offset % 8;
      const copy = Buffer.from(whole);
      copy[offset] ^= 1 << bit;
      writeFileSync(join(dir, fileName), copy);
      const error = await rejection(() => read(dir, fileName));
      assert.is(error.code, 'SNAPSHOT_DAMAGED', `bit ${bit} of byte ${offset}`);
      assert.type((error as { context?: { offset?: number } }).context?.offset, 'number');
    }
  });
});

test('snapshot-file - a file renamed to another seq or shard is refused', async () => {
  await withTempDir(async (dir) => {
    const fileName = await write(dir, [payloadOf(10)]);
    assert.is((await rejection(() => read(dir, fileName, { shard: 3, seq: 1235 }))).code, 'SNAPSHOT_DAMAGED');
    assert.is((await rejection(() => read(dir, fileName, { shard: 4, seq: 1234 }))).code, 'SNAPSHOT_DAMAGED');
  });
});

test('snapshot-file - abort removes the half-written file', async () => {
  await withTempDir(async (dir) => {
    const writer = await SnapshotFileWriter.create(nodeFileIo, dir, meta, { isSynced: false });
    await writer.write(payloadOf(5000));
    await writer.abort();
    assert.equal(readdirSync(dir), []);
  });
});

test.run();
