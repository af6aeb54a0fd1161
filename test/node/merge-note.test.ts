import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { decodeMergeNote, encodeMergeNote, isMergeNote, mergeIdentity } from '../../src/node/merge-note.ts';
import { encodeSessionNote } from '../../src/node/session-note.ts';
import { expectCode } from '../support/expect-code.ts';

const identity = mergeIdentity(7, 1_000);
const inner = [encodeSessionNote(identity, [2_000, 3]), encodeSessionNote({ producerId: 'p', sessionEpoch: 2, requestSeq: 9 }, [2_000, 2, 0, 1])];

test('merge-note - round-trips its origin and session notes; a session note is not one', () => {
  const bytes = encodeMergeNote({ originEpoch: 7, originFirstSeq: 1_000, originCount: 3, originTimeNs: 1_750_000_000_000_000_000n, notes: inner });
  assert.ok(isMergeNote(bytes));
  assert.not.ok(isMergeNote(inner[1]));
  const decoded = decodeMergeNote(bytes);
  assert.equal([decoded.originEpoch, decoded.originFirstSeq, decoded.originCount, decoded.originTimeNs], [7, 1_000, 3, 1_750_000_000_000_000_000n]);
  assert.equal(decoded.sessions, [
    { producerId: '~merge:7:1000', sessionEpoch: 1, requestSeq: 1, runs: [2_000, 3] },
    { producerId: 'p', sessionEpoch: 2, requestSeq: 9, runs: [2_000, 2, 0, 1] },
  ]);
});

test('merge-note - decode refuses every truncation, trailing bytes and a damaged inner note', () => {
  const bytes = encodeMergeNote({ originEpoch: 7, originFirstSeq: 1_000, originCount: 3, originTimeNs: 1_750_000_000_000_000_000n, notes: inner });
  for (let length = 0; length < bytes.byteLength; length++) expectCode(() => decodeMergeNote(bytes.subarray(0, length)), 'DECODE_FAILED');
  const longer = new Uint8Array(bytes.byteLength + 1);
  longer.set(bytes);
  expectCode(() => decodeMergeNote(longer), 'DECODE_FAILED');
  const badInner = bytes.slice();
  badInner[33 + 4] = 9; // the first inner note's version byte
  expectCode(() => decodeMergeNote(badInner), 'DECODE_FAILED');
  expectCode(() => encodeMergeNote({ originEpoch: 7, originFirstSeq: 0, originCount: 3, originTimeNs: 1_750_000_000_000_000_000n, notes: inner }), 'BAD_REQUEST');
  expectCode(() => encodeMergeNote({ originEpoch: 7, originFirstSeq: 1, originCount: 3, originTimeNs: 0n, notes: [] }), 'BAD_REQUEST');
});

test.run();
