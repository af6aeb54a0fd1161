// The replication messages (docs/PROTOCOL.md section 9): each round-trips; a batch comes back
// as a view of the input; an ErrorReply is thrown as its TidelogError; damaged input is
// DECODE_FAILED, another protocol version UNSUPPORTED_VERSION.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { isTidelogError, TidelogError } from '../../src/errors.ts';
import { encodeMessage, errorReply } from '../../src/transport/codec.ts';
import {
  MAX_INSTALL_EPOCH_STARTS,
  MAX_INSTALL_PART_BYTES,
  decodeInstall,
  decodeInstallReply,
  encodeInstall,
  encodeInstallReply,
  type InstallReply,
  type InstallRequest,
  decodeFetch,
  decodeFetchReply,
  decodePrepare,
  decodePrepareReply,
  decodePreVote,
  decodePreVoteReply,
  decodeReplicate,
  decodeReplicateReply,
  encodeFetch,
  encodeFetchReply,
  encodePrepare,
  encodePrepareReply,
  encodePreVote,
  encodePreVoteReply,
  encodeReplicate,
  encodeReplicateReply,
  replicationSubject,
  type ReplicateRequest,
} from '../../src/transport/replication-codec.ts';
import { packWire } from '../../src/transport/wire-fields.ts';

function codeOf(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    if (isTidelogError(error)) return error.code;
    throw error;
  }
  return 'no error';
}

test('replication codec - replicate requests and every reply kind round-trip; batches are views of the input', () => {
  const request: ReplicateRequest = {
    shard: 7,
    epoch: 12,
    leaderId: 'node-2',
    hwm: 2 ** 40,
    leadEnd: 99,
    prevSeq: 100,
    prevEpoch: 11,
    batches: [new Uint8Array([1, 2, 3]), new Uint8Array(70_000).fill(9)],
    retainFrom: 50,
  };
  const bytes = encodeReplicate(request);
  const decoded = decodeReplicate(bytes);
  assert.equal({ ...decoded, batches: decoded.batches.map((batch) => Array.from(batch.subarray(0, 3))) }, { ...request, batches: [[1, 2, 3], [9, 9, 9]] });
  assert.is(decoded.batches[1].byteLength, 70_000);
  assert.is(decoded.batches[1].buffer, bytes.buffer, 'a view, not a copy');
  const heartbeat = decodeReplicate(encodeReplicate({ ...request, batches: [], retainFrom: undefined }));
  assert.equal(heartbeat.batches, []);
  assert.is(heartbeat.retainFrom, undefined);
  for (const reply of [
    { kind: 'ok', matchSeq: 5 },
    { kind: 'gap', expectedSeq: 6 },
    { kind: 'diverged', seq: 7, epoch: -1 },
    { kind: 'fenced', epoch: 13 },
  ] as const) {
    assert.equal(decodeReplicateReply(encodeReplicateReply(reply)), reply);
  }
});

test('replication codec - prepare and fetch round-trip', () => {
  assert.equal(decodePrepare(encodePrepare({ shard: 1, epoch: 4, candidateId: 'n3' })), { shard: 1, epoch: 4, candidateId: 'n3' });
  for (const reply of [{ kind: 'ok', confirmedEpoch: 3, durableSeq: 10, committedSeq: 9 }, { kind: 'fenced', epoch: 5 }] as const) {
    assert.equal(decodePrepareReply(encodePrepareReply(reply)), reply);
  }
  assert.equal(decodeFetch(encodeFetch({ shard: 1, epoch: 4, fromSeq: 1, maxBytes: 1 << 20 })), { shard: 1, epoch: 4, fromSeq: 1, maxBytes: 1 << 20 });
  assert.equal(decodeFetch(encodeFetch({ shard: 1, epoch: 4, fromSeq: 3, maxBytes: 1, epochEndOf: 2 })).epochEndOf, 2);
  const ok = decodeFetchReply(encodeFetchReply({ kind: 'ok', batches: [new Uint8Array([4])], prevEpoch: 0, durableSeq: 8, committedSeq: 8, epochEndSeq: -1 }));
  assert.equal(ok.kind === 'ok' ? [Array.from(ok.batches[0]), ok.prevEpoch, ok.durableSeq, ok.epochEndSeq] : null, [[4], 0, 8, -1]);
  assert.equal(decodeFetchReply(encodeFetchReply({ kind: 'fenced', epoch: 9 })), { kind: 'fenced', epoch: 9 });
});

test('replication codec - pre-vote round-trips; no leader heard is an empty leaderId on the wire', () => {
  assert.equal(decodePreVote(encodePreVote({ shard: 2, epoch: 7, candidateId: 'n1' })), { shard: 2, epoch: 7, candidateId: 'n1' });
  for (const reply of [
    { granted: true, epoch: 7, leaderId: null },
    { granted: false, epoch: 9, leaderId: 'n2' },
  ]) {
    assert.equal(decodePreVoteReply(encodePreVoteReply(reply)), reply);
  }
  assert.throws(() => decodePreVoteReply(packWire({ v: 1, t: 'prevoted', granted: 'yes', epoch: 1, leaderId: '' }, 'prevoted')), /granted/);
});

test('replication codec - install requests and every reply kind round-trip; a part above 512 KiB or a seq of 0 is DECODE_FAILED', () => {
  const request: InstallRequest = { shard: 3, epoch: 9, leaderId: 'n1', seq: 4_000, epochAtSeq: 7, fileBytes: 3_000_000, offset: 524_288, bytes: Uint8Array.from([1, 2, 3, 4]) };
  const decoded = decodeInstall(encodeInstall(request));
  assert.equal({ ...decoded, bytes: [...decoded.bytes] }, { ...request, bytes: [1, 2, 3, 4] });
  const replies: InstallReply[] = [
    { kind: 'next', offset: 1_048_576 },
    { kind: 'done', matchSeq: 4_000 },
    { kind: 'fenced', epoch: 10 },
  ];
  for (const reply of replies) assert.equal(decodeInstallReply(encodeInstallReply(reply)), reply);
  assert.is(codeOf(() => decodeInstall(encodeInstall({ ...request, bytes: new Uint8Array(MAX_INSTALL_PART_BYTES + 1) }))), 'DECODE_FAILED');
  assert.is(codeOf(() => decodeInstall(encodeInstall({ ...request, seq: 0 }))), 'DECODE_FAILED');
  // The epoch table (with the part at offset 0) travels flat and comes back as pairs.
  const withTable: InstallRequest = { ...request, offset: 0, epochStarts: [{ epoch: 1, firstSeq: 1 }, { epoch: 7, firstSeq: 3_100 }] };
  const decodedTable = decodeInstall(encodeInstall(withTable));
  assert.equal({ ...decodedTable, bytes: [...decodedTable.bytes] }, { ...withTable, bytes: [1, 2, 3, 4] });
  assert.is(codeOf(() => decodeInstall(packWire({ ...withTable, v: 1, t: 'install', epochStarts: [1, 1, 7] }, 'install'))), 'DECODE_FAILED', 'an odd-length table');
  assert.is(codeOf(() => decodeInstall(encodeInstall({ ...withTable, epochStarts: Array.from({ length: MAX_INSTALL_EPOCH_STARTS + 1 }, (_, at) => ({ epoch: at, firstSeq: at + 1 })) }))), 'DECODE_FAILED', 'a table past its bound');
  assert.is(replicationSubject('tl', 3, 'n2', 'install'), 'tl.repl.3.n2.install');
});

test('replication codec - an ErrorReply is thrown with its code; bad input is DECODE_FAILED; another version UNSUPPORTED_VERSION', () => {
  const refusal = encodeMessage(errorReply(new TidelogError('WRONG_SHARD', 'wrong shard')));
  assert.is(codeOf(() => decodeReplicateReply(refusal)), 'WRONG_SHARD');
  assert.is(codeOf(() => decodePrepareReply(refusal)), 'WRONG_SHARD');
  assert.is(codeOf(() => decodeFetchReply(refusal)), 'WRONG_SHARD');
  assert.is(codeOf(() => decodeReplicate(new Uint8Array([0xc1]))), 'DECODE_FAILED');
  assert.is(codeOf(() => decodeReplicate(encodePrepare({ shard: 1, epoch: 1, candidateId: 'x' }))), 'DECODE_FAILED', 'another message type');
  assert.is(codeOf(() => decodeReplicate(packWire({ v: 1, t: 'replicate', shard: 1, epoch: 1, leaderId: 'a', hwm: 0, leadEnd: 0, prevSeq: 0, prevEpoch: 0, batches: [1] }, 'x'))), 'DECODE_FAILED', 'a batch that is not a bin');
  assert.is(codeOf(() => decodeReplicate(packWire({ v: 1, t: 'replicate', shard: -1, epoch: 1, leaderId: 'a', hwm: 0, leadEnd: 0, prevSeq: 0, prevEpoch: 0, batches: [] }, 'x'))), 'DECODE_FAILED', 'a shard out of range');
  assert.is(codeOf(() => decodeFetch(packWire({ v: 1, t: 'fetch', shard: 1, epoch: 1, fromSeq: 0, maxBytes: 1 }, 'x'))), 'DECODE_FAILED', 'fromSeq 0');
  assert.is(codeOf(() => decodePrepare(packWire({ v: 2, t: 'prepare', shard: 1, epoch: 1, candidateId: 'x' }, 'x'))), 'UNSUPPORTED_VERSION');
  assert.is(replicationSubject('ns', 3, 'node-1', 'fetch'), 'ns.repl.3.node-1.fetch');
});

test.run();
