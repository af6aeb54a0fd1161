import fc from 'fast-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { isTidelogError } from '../../src/errors.ts';
import { producerIdBytes, runsProblem } from '../../src/node/session-note.ts';
import {
  decodeSessionSnapshot,
  encodeSessionSnapshot,
  type SessionRecord,
  type SessionSnapshot,
} from '../../src/node/session-snapshot.ts';
import { expectCode } from '../support/expect-code.ts';

/** A session as the store holds it: hwm is the newest remembered request, or the floor. */
function record(producerId: string, epoch: number, floor: number, recent: Array<[number, number[], number?]>): SessionRecord {
  return {
    producerId,
    producerBytes: producerIdBytes(producerId),
    epoch,
    hwm: recent.length === 0 ? floor : recent[recent.length - 1][0],
    floor,
    recent: new Map(recent.map(([requestSeq, runs]) => [requestSeq, runs])),
    digests: new Map(recent.filter((entry): entry is [number, number[], number] => entry[2] !== undefined).map(([requestSeq, , digest]) => [requestSeq, digest])),
    recentSeqs: recent.map(([requestSeq]) => requestSeq),
    runCount: recent.reduce((total, [, runs]) => total + runs.length / 2, 0),
  };
}

function encode(snapshot: SessionSnapshot): Uint8Array {
  return encodeSessionSnapshot(snapshot.evictedSessions, snapshot.sessions);
}

const GOLDEN: SessionSnapshot = {
  evictedSessions: 3,
  sessions: [
    record('ab', 7, 2, [
      [3, [10, 2], 0xdeadbeef],
      [4, [0, 1, 12, 1]],
    ]),
    record('cd', 0, 5, []),
  ],
};

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex');
}

test('session-snapshot - encodes the layout of the table, byte for byte', () => {
  const u64 = (value: number): string => hex(new Uint8Array(new BigUint64Array([BigInt(value)]).buffer));
  const u32 = (value: number): string => hex(new Uint8Array(new Uint32Array([value]).buffer));
  const expected = [
    '544c5353', '0200', '0000', u64(3), u32(2), // magic "TLSS", version, reserved, evicted, count
    '02', '6162', u32(7), u64(4), u64(2), u32(2), // "ab": epoch 7, hwm 4, floor 2, 2 recent
    u64(3), u32(1), '01', u32(0xdeadbeef), u64(10), u32(2), // request 3: its digest, seqs 10..11
    u64(4), u32(2), '00', u32(0), u64(0), u32(1), u64(12), u32(1), // request 4: no digest; one duplicate, then seq 12
    '02', '6364', u32(0), u64(5), u64(5), u32(0), // "cd": epoch 0, hwm 5 = floor 5, none recent
  ].join('');
  assert.is(hex(encode(GOLDEN)), expected);
  assert.equal(decodeSessionSnapshot(encode(GOLDEN)), GOLDEN);
  // Version 1 (before digests) still decodes: the same sessions without a digest.
  const version1 = [
    '544c5353', '0100', '0000', u64(3), u32(2),
    '02', '6162', u32(7), u64(4), u64(2), u32(2),
    u64(3), u32(1), u64(10), u32(2),
    u64(4), u32(2), u64(0), u32(1), u64(12), u32(1),
    '02', '6364', u32(0), u64(5), u64(5), u32(0),
  ].join('');
  const withoutDigests = { ...GOLDEN, sessions: GOLDEN.sessions.map((session) => ({ ...session, digests: new Map<number, number>() })) };
  assert.equal(decodeSessionSnapshot(new Uint8Array(Buffer.from(version1, 'hex'))), withoutDigests);
});

test('session-snapshot - an empty store encodes to its 20-byte head', () => {
  const bytes = encodeSessionSnapshot(0, []);
  assert.is(bytes.byteLength, 20);
  assert.equal(decodeSessionSnapshot(bytes), { evictedSessions: 0, sessions: [] });
});

/** Golden bytes with one change; offsets are those of the table for GOLDEN. */
function damaged(change: (view: DataView, bytes: Uint8Array) => void): Uint8Array {
  const bytes = encode(GOLDEN);
  change(new DataView(bytes.buffer), bytes);
  return bytes;
}

test('session-snapshot - rejects each broken rule of the table with DECODE_FAILED', () => {
  const cases: Record<string, Uint8Array> = {
    'bad magic': damaged((_view, bytes) => (bytes[0] = 0x58)),
    'unknown version': damaged((view) => view.setUint16(4, 3, true)),
    'reserved not zero': damaged((_view, bytes) => (bytes[6] = 1)),
    'evictedSessions past 2^53-1': damaged((view) => view.setBigUint64(8, 1n << 60n, true)),
    'more sessions than bytes': damaged((view) => view.setUint32(16, 3, true)),
    'fewer sessions than bytes': damaged((view) => view.setUint32(16, 1, true)),
    'empty producer id': damaged((_view, bytes) => (bytes[20] = 0)),
    'producer id over 64 bytes': damaged((_view, bytes) => (bytes[20] = 65)),
    'producer id not UTF-8': damaged((_view, bytes) => (bytes[21] = 0xff)),
    'producer twice': damaged((_view, bytes) => bytes.set([0x61, 0x62], 118)),
    'floor above hwm': damaged((view) => view.setBigUint64(132, 6n, true)),
    'more recent requests than (floor, hwm] holds': damaged((view) => view.setUint32(43, 3, true)),
    'requestSeqs not ascending': damaged((view) => view.setBigUint64(76, 3n, true)),
    'request without runs': damaged((view) => view.setUint32(55, 0, true)),
    'hasDigest neither 0 nor 1': damaged((_view, bytes) => (bytes[59] = 2)),
    'a digest without hasDigest': damaged((view) => view.setUint32(89, 1, true)),
    'run of length 0': damaged((view) => view.setUint32(72, 0, true)),
    'two duplicate runs in a row': damaged((view) => view.setBigUint64(105, 0n, true)),
    'hwm above the newest request': damaged((view) => view.setBigUint64(27, 5n, true)),
    'hwm above the floor with no request': damaged((view) => view.setBigUint64(124, 6n, true)),
  };
  for (const [name, bytes] of Object.entries(cases)) {
    try {
      decodeSessionSnapshot(bytes);
    } catch (error) {
      assert.ok(isTidelogError(error, 'DECODE_FAILED'), `${name}: ${String(error)}`);
      continue;
    }
    assert.unreachable(`${name} was accepted`);
  }
});

test('session-snapshot - every truncation and extension of a snapshot is DECODE_FAILED', () => {
  const bytes = encode(GOLDEN);
  for (let length = 0; length < bytes.byteLength; length++) expectCode(() => decodeSessionSnapshot(bytes.subarray(0, length)), 'DECODE_FAILED');
  const longer = new Uint8Array(bytes.byteLength + 1);
  longer.set(bytes);
  expectCode(() => decodeSessionSnapshot(longer), 'DECODE_FAILED');
});

// ---- properties ----

/** Canonical runs (see session-note.ts): written seqs ascend without touching, duplicates never adjacent. */
const runsArbitrary: fc.Arbitrary<number[]> = fc
  .record({
    base: fc.integer({ min: 0, max: 2 ** 45 }),
    parts: fc.array(fc.record({ isDuplicate: fc.boolean(), gap: fc.nat(3), length: fc.integer({ min: 1, max: 0xffff_ffff }) }), {
      minLength: 1,
      maxLength: 4,
    }),
  })
  .map(({ base, parts }) => {
    const runs: number[] = [];
    let nextWritten = 1 + base;
    let previousWasDuplicate = false;
    parts.forEach((part, index) => {
      if (part.isDuplicate && !previousWasDuplicate) {
        runs.push(0, part.length);
        previousWasDuplicate = true;
        return;
      }
      const seq = nextWritten + part.gap + (index > 0 && !previousWasDuplicate ? 1 : 0);
      runs.push(seq, part.length);
      nextWritten = seq + part.length;
      previousWasDuplicate = false;
    });
    return runs;
  });

const sessionArbitrary: fc.Arbitrary<SessionRecord> = fc
  .record({
    producerId: fc.string({ unit: 'binary', minLength: 1, maxLength: 16 }),
    epoch: fc.integer({ min: 0, max: 0xffff_ffff }),
    floor: fc.oneof(fc.nat(20), fc.integer({ min: 0, max: 2 ** 52 })),
    recent: fc.array(fc.record({ gap: fc.nat(3), runs: runsArbitrary, digest: fc.option(fc.integer({ min: 0, max: 0xffff_ffff }), { nil: undefined }) }), { maxLength: 5 }),
  })
  .map(({ producerId, epoch, floor, recent }) => {
    let requestSeq = floor;
    return record(
      producerId,
      epoch,
      floor,
      recent.map(({ gap, runs, digest }): [number, number[], number?] => {
        requestSeq += 1 + gap;
        return [requestSeq, runs, digest];
      }),
    );
  });

const snapshotArbitrary: fc.Arbitrary<SessionSnapshot> = fc
  .tuple(
    fc.oneof(fc.nat(10), fc.maxSafeNat()),
    fc.uniqueArray(sessionArbitrary, { selector: (session) => session.producerId, maxLength: 6 }),
  )
  .map(([evictedSessions, sessions]) => ({ evictedSessions, sessions }));

test('session-snapshot - decode(encode(s)) is s, for any sessions the store can hold', () => {
  fc.assert(
    fc.property(snapshotArbitrary, (snapshot) => {
      for (const session of snapshot.sessions) for (const runs of session.recent.values()) assert.is(runsProblem(runs), null);
      const bytes = encode(snapshot);
      assert.equal(decodeSessionSnapshot(bytes), snapshot);
    }),
    { seed: 51, numRuns: 300 },
  );
});

/**
 * A snapshot that decodes re-encodes to itself — or, for bytes that became version 1 (which
 * the encoder no longer writes), to a version 2 snapshot of the same sessions.
 */
function assertCanonical(bytes: Uint8Array, decoded: SessionSnapshot): void {
  if (new DataView(bytes.buffer, bytes.byteOffset).getUint16(4, true) === 1) assert.equal(decodeSessionSnapshot(encode(decoded)), decoded);
  else assert.equal(encode(decoded), bytes);
}

test('session-snapshot - decode accepts only canonical bytes: a damaged snapshot is DECODE_FAILED or re-encodes to itself', () => {
  const flips = fc.record({ snapshot: snapshotArbitrary, at: fc.nat(), mask: fc.integer({ min: 1, max: 255 }) });
  fc.assert(
    fc.property(flips, ({ snapshot, at, mask }) => {
      const bytes = encode(snapshot);
      bytes[at % bytes.byteLength] ^= mask;
      let decoded: SessionSnapshot;
      try {
        decoded = decodeSessionSnapshot(bytes);
      } catch (error) {
        assert.ok(isTidelogError(error, 'DECODE_FAILED'), String(error));
        return;
      }
      assertCanonical(bytes, decoded);
    }),
    { seed: 52, numRuns: 1000 },
  );
  const golden = encode(GOLDEN);
  for (let at = 0; at < golden.byteLength; at++) {
    const copy = golden.slice();
    copy[at] ^= 0xff;
    let decoded: SessionSnapshot;
    try {
      decoded = decodeSessionSnapshot(copy);
    } catch (error) {
      assert.ok(isTidelogError(error, 'DECODE_FAILED'), String(error));
      continue;
    }
    assertCanonical(copy, decoded);
  }
});

test.run();
