// `tidelog wal verify` reads every snapshot file whole: a damaged one, or a log that starts
// after seq 1 with no intact snapshot to continue it from, is damage (exit 1).
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Wal, type StoredBatch, type WalStateMachine } from '../../src/wal/index.ts';
import type { ShardVerification } from '../../src/cli/verify.ts';
import { makeEvent } from '../support/wal-fixtures.ts';
import { makeTempDir, runCli } from './harness.ts';

/** A state machine whose state is the number of events applied. */
function counter(): WalStateMachine {
  let count = 0;
  return {
    restore: (snapshot) => {
      count = snapshot.byteLength === 0 ? 0 : Number(new TextDecoder().decode(snapshot));
    },
    apply: (batch: StoredBatch) => {
      count += batch.count;
    },
    snapshot: () => new TextEncoder().encode(String(count)),
  };
}

function verify(dir: string): { status: number | null; shard: ShardVerification; text: string } {
  const json = runCli(['wal', 'verify', dir, '--json']);
  const text = runCli(['wal', 'verify', dir]);
  return { status: json.status, shard: (JSON.parse(json.stdout) as { shards: ShardVerification[] }).shards[0], text: text.stdout };
}

test('verify-snapshots - intact snapshots are listed; a damaged one, or a truncated log none continues, is damage', async () => {
  const { dir, remove } = makeTempDir('verify-snap');
  try {
    const { wal } = await Wal.open({ dir, segmentBytes: 1024, batchMaxEvents: 4, batchLingerMs: 0, fsync: 'off', stateMachine: counter() });
    for (let id = 1; id <= 60; id++) await wal.append(makeEvent(id));
    const snapshot = await wal.takeSnapshot();
    await wal.truncateBefore(41);
    await wal.close();
    const clean = verify(dir);
    assert.is(clean.status, 0, clean.text);
    assert.equal(
      clean.shard.snapshots.map((entry) => [entry.seq, entry.status]),
      [[60, 'intact']],
    );
    assert.match(clean.text, /snapshot\s+seq 60: intact/);

    const path = join(dir, snapshot?.fileName ?? '');
    const bytes = readFileSync(path);
    bytes[bytes.byteLength - 1] ^= 0x80;
    writeFileSync(path, bytes);
    const damaged = verify(dir);
    assert.is(damaged.status, 1);
    assert.is(damaged.shard.damage?.code, 'SNAPSHOT_DAMAGED');
    assert.is(damaged.shard.damage?.file, path);
    assert.match(damaged.text, /snapshot\s+seq 60: DAMAGED/);

    rmSync(path);
    const uncovered = verify(dir);
    assert.is(uncovered.status, 1, 'the log starts at 41 and nothing holds the state before it');
    assert.is(uncovered.shard.damage?.code, 'SNAPSHOT_DAMAGED');
    assert.match(uncovered.shard.damage?.reason ?? '', /starts at seq 41/);
  } finally {
    remove();
  }
});

test.run();
