import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  checkpointFileName,
  listShardSegments,
  lockFileName,
  parseSegmentFileName,
  segmentFileName,
} from '../../src/wal/segment-name.ts';

test('segment-name - names carry shard and zero-padded first seq', () => {
  assert.is(segmentFileName(3, 42), 'wal-00003-00000000000000000042.seg');
  assert.is(lockFileName(3), 'wal-00003.lock');
  assert.is(checkpointFileName(3), 'checkpoint-00003.bin');
  assert.equal(parseSegmentFileName('wal-00003-00000000000000000042.seg'), {
    shard: 3,
    firstSeq: 42,
    fileName: 'wal-00003-00000000000000000042.seg',
  });
});

test('segment-name - lexical order of names is seq order', () => {
  const seqs = [1, 9, 10, 99, 100, 123_456_789, 2 ** 40];
  const names = seqs.map((seq) => segmentFileName(0, seq));
  assert.equal([...names].sort(), names);
});

test('segment-name - listing keeps one shard, ignores other files, sorts by seq', () => {
  const listed = listShardSegments(
    [
      segmentFileName(1, 300),
      'wal-00001.lock',
      segmentFileName(2, 5),
      'notes.txt',
      `${segmentFileName(1, 400)}.tmp`,
      `${segmentFileName(1, 50)}.damaged`,
      segmentFileName(1, 1),
      'wal-1-1.seg',
    ],
    1,
  );
  assert.equal(
    listed.map((segment) => segment.firstSeq),
    [1, 300],
  );
});

test.run();
