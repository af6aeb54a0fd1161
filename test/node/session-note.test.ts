import fc from 'fast-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  RUN_BYTES,
  decodeSessionNote,
  encodeSessionNote,
  eventsDigest,
  runsEventCount,
  runsProblem,
  sessionNoteBytes,
} from '../../src/node/session-note.ts';
import { seqsToRuns } from '../../src/transport/ack-runs.ts';
import { expectCode } from '../support/expect-code.ts';

/** Seqs of one call: ascending consecutive written seqs with duplicates (0) anywhere. */
const callSeqs = fc
  .record({
    firstSeq: fc.oneof(fc.integer({ min: 1, max: 1000 }), fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER - 100 })),
    shape: fc.array(fc.boolean(), { minLength: 1, maxLength: 60 }),
  })
  .map(({ firstSeq, shape }) => {
    let next = firstSeq;
    return shape.map((isDuplicate) => (isDuplicate ? 0 : next++));
  });

const producerId = fc
  .string({ unit: 'grapheme', minLength: 1, maxLength: 16 })
  .filter((id) => {
    const length = new TextEncoder().encode(id).byteLength;
    return length >= 1 && length <= 64;
  });

const note = fc.record({
  producerId,
  sessionEpoch: fc.oneof(fc.integer({ min: 0, max: 10 }), fc.constant(0xffff_ffff)),
  requestSeq: fc.oneof(fc.integer({ min: 1, max: 100 }), fc.constant(Number.MAX_SAFE_INTEGER)),
  runs: callSeqs.map(seqsToRuns),
  digest: fc.option(fc.integer({ min: 0, max: 0xffff_ffff }), { nil: undefined }),
});

test('session-note - round-trips every tag and canonical runs', () => {
  fc.assert(
    fc.property(note, ({ digest, ...value }) => {
      const bytes = encodeSessionNote(value, value.runs, digest);
      assert.is(bytes.byteLength, sessionNoteBytes(new TextEncoder().encode(value.producerId).byteLength, value.runs.length / 2, digest !== undefined));
      assert.is(bytes[0], digest === undefined ? 1 : 3, 'version 3 carries the digest; without one, version 1');
      assert.equal(decodeSessionNote(bytes), digest === undefined ? value : { ...value, digest });
    }),
    { seed: 31, numRuns: 400 },
  );
});

test('session-note - decodes a note inside a larger buffer (a view into a batch)', () => {
  const bytes = encodeSessionNote({ producerId: 'p', sessionEpoch: 2, requestSeq: 9 }, [5, 3, 0, 1]);
  const batch = new Uint8Array(bytes.byteLength + 10);
  batch.set(bytes, 7);
  assert.equal(decodeSessionNote(batch.subarray(7, 7 + bytes.byteLength)), {
    producerId: 'p',
    sessionEpoch: 2,
    requestSeq: 9,
    runs: [5, 3, 0, 1],
  });
});

test('session-note - the layout is the documented one', () => {
  const bytes = encodeSessionNote({ producerId: 'ab', sessionEpoch: 0x01020304, requestSeq: 7 }, [0x0102, 3]);
  assert.equal(
    [...bytes],
    [1, 2, 0x61, 0x62, 4, 3, 2, 1, 7, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 1, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0],
  );
  // Version 3: the events' digest between runCount and the runs.
  const withDigest = encodeSessionNote({ producerId: 'ab', sessionEpoch: 0x01020304, requestSeq: 7 }, [0x0102, 3], 0x0a0b0c0d);
  assert.equal(
    [...withDigest],
    [3, 2, 0x61, 0x62, 4, 3, 2, 1, 7, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0x0d, 0x0c, 0x0b, 0x0a, 2, 1, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0],
  );
});

test('session-note - eventsDigest tells other events of the same count apart, and is stable', () => {
  const events = new Uint8Array(21 * 3).map((_, at) => (at * 37) & 0xff);
  const other = events.slice();
  other[40] ^= 1;
  assert.is.not(eventsDigest(events), eventsDigest(other), 'one bit of one event differs');
  assert.is.not(eventsDigest(events), eventsDigest(events.subarray(0, 42)), 'one event fewer');
  assert.is(eventsDigest(events), eventsDigest(events.slice()), 'the same bytes anywhere');
  const inBatch = new Uint8Array(events.byteLength + 5);
  inBatch.set(events, 5);
  assert.is(eventsDigest(inBatch.subarray(5)), eventsDigest(events), 'a view at an unaligned offset');
  // Digests are kept in logs and snapshots: the function may never change.
  assert.is(eventsDigest(events), 0x701c8591);
});

test('session-note - runs as the node builds them (seqsToRuns) are canonical', () => {
  fc.assert(
    fc.property(callSeqs, (seqs) => {
      const runs = seqsToRuns(seqs);
      assert.is(runsProblem(runs), null);
      assert.is(runsEventCount(runs), seqs.length);
    }),
    { seed: 32, numRuns: 300 },
  );
});

test('session-note - encode rejects bad tags and non-canonical runs with BAD_REQUEST', () => {
  const tag = { producerId: 'p', sessionEpoch: 1, requestSeq: 1 };
  const badTags = [
    { ...tag, producerId: '' },
    { ...tag, producerId: 'x'.repeat(65) },
    { ...tag, producerId: 'é'.repeat(33) },
    { ...tag, producerId: '\ud800' },
    { ...tag, sessionEpoch: -1 },
    { ...tag, sessionEpoch: 2 ** 32 },
    { ...tag, requestSeq: 0 },
    { ...tag, requestSeq: 1.5 },
    { ...tag, requestSeq: 2 ** 53 },
  ];
  for (const bad of badTags) expectCode(() => encodeSessionNote(bad, [1, 1]), 'BAD_REQUEST');
  const badRuns = [[], [1], [1, 0], [0, 1, 0, 2], [5, 2, 7, 1], [5, 2, 6, 1], [5, 2, 3, 1], [-1, 1], [1.5, 1], [2 ** 53, 1]];
  for (const runs of badRuns) expectCode(() => encodeSessionNote(tag, runs), 'BAD_REQUEST');
  // A written run may continue the one before it when duplicates sit between them.
  assert.equal(decodeSessionNote(encodeSessionNote(tag, [5, 2, 0, 1, 7, 1])).runs, [5, 2, 0, 1, 7, 1]);
});

test('session-note - decode rejects every truncation, extension and version with DECODE_FAILED', () => {
  const bytes = encodeSessionNote({ producerId: 'producer', sessionEpoch: 3, requestSeq: 44 }, [10, 4, 0, 2, 14, 1]);
  for (let length = 0; length < bytes.byteLength; length++) expectCode(() => decodeSessionNote(bytes.subarray(0, length)), 'DECODE_FAILED');
  const longer = new Uint8Array(bytes.byteLength + RUN_BYTES);
  longer.set(bytes);
  expectCode(() => decodeSessionNote(longer), 'DECODE_FAILED');
  const mutate = (at: number, value: number): Uint8Array => {
    const copy = bytes.slice();
    copy[at] = value;
    return copy;
  };
  expectCode(() => decodeSessionNote(mutate(0, 3)), 'DECODE_FAILED'); // version 3 needs 4 more bytes
  expectCode(() => decodeSessionNote(mutate(0, 2)), 'DECODE_FAILED'); // a merge note's version
  expectCode(() => decodeSessionNote(mutate(0, 4)), 'DECODE_FAILED'); // version
  expectCode(() => decodeSessionNote(mutate(1, 0)), 'DECODE_FAILED'); // producer length 0
  expectCode(() => decodeSessionNote(mutate(1, 65)), 'DECODE_FAILED'); // producer length 65
  expectCode(() => decodeSessionNote(mutate(2, 0xff)), 'DECODE_FAILED'); // not UTF-8
  expectCode(() => decodeSessionNote(mutate(21, 0xff)), 'DECODE_FAILED'); // requestSeq beyond 2^53
  expectCode(() => decodeSessionNote(mutate(22, 4)), 'DECODE_FAILED'); // runCount disagrees with the length
  const zeroSeq = new Uint8Array(bytes);
  new DataView(zeroSeq.buffer).setBigUint64(14, 0n, true);
  expectCode(() => decodeSessionNote(zeroSeq), 'DECODE_FAILED'); // requestSeq 0
  const overlapping = new Uint8Array(bytes);
  new DataView(overlapping.buffer).setBigUint64(26 + 2 * RUN_BYTES, 12n, true); // third run inside the first
  expectCode(() => decodeSessionNote(overlapping), 'DECODE_FAILED');
  const emptyRun = new Uint8Array(bytes);
  new DataView(emptyRun.buffer).setUint32(26 + 8, 0, true);
  expectCode(() => decodeSessionNote(emptyRun), 'DECODE_FAILED');
  const version3 = encodeSessionNote({ producerId: 'producer', sessionEpoch: 3, requestSeq: 44 }, [10, 4, 0, 2, 14, 1], 99);
  for (let length = 0; length < version3.byteLength; length++) expectCode(() => decodeSessionNote(version3.subarray(0, length)), 'DECODE_FAILED');
  const asVersion1 = version3.slice();
  asVersion1[0] = 1;
  expectCode(() => decodeSessionNote(asVersion1), 'DECODE_FAILED'); // version 1 is 4 bytes shorter
});

test('session-note - decode never throws anything but DECODE_FAILED on random bytes', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 80 }), (bytes) => {
      try {
        decodeSessionNote(bytes);
      } catch (error) {
        assert.is((error as { code?: string }).code, 'DECODE_FAILED');
      }
    }),
    { seed: 33, numRuns: 500 },
  );
});

test.run();
