// The nats-server launcher: loopback only, ready when it resolves, restartable on its port,
// cleans up its temp store, surfaces the server's own words on failure, and never leaves a
// child behind when this process exits.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { NatsTransport } from '../../src/transport/nats.ts';
import { findNatsServer, pickFreePort, startNatsServer } from '../../src/transport/nats-server-process.ts';
import { StatusLog, connectTestTransport, isProcessAlive, runOrphanCheck, startTestNats, waitForExit } from '../support/nats-harness.ts';
import { rejection } from '../support/wal-fixtures.ts';
import { WAIT_MS } from '../support/waits.ts';

const test = suite('nats-server-process');
const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);

async function roundTrip(transport: NatsTransport, subject: string): Promise<string> {
  const subscription = transport.subscribe(subject, (message) => transport.publish(message.reply ?? 'x', message.data));
  try {
    return new TextDecoder().decode(await transport.request(subject, bytes('ping'), { timeoutMs: WAIT_MS }));
  } finally {
    subscription.unsubscribe();
  }
}

test('findNatsServer finds the binary', () => {
  const binary = findNatsServer();
  assert.ok(binary !== null && binary.endsWith('nats-server'), String(binary));
});

test('starts on a free loopback port with a temp JetStream store, kill -9 and restart keep port and store, stop cleans up', async () => {
  const server = await startNatsServer();
  const firstPid = server.pid;
  try {
    assert.ok(server.port > 0);
    assert.is(server.url, `nats://127.0.0.1:${server.port}`);
    assert.ok(firstPid !== null && isProcessAlive(firstPid));
    assert.ok(server.storeDir !== null && existsSync(server.storeDir));
    const transport = await connectTestTransport(server);
    const log = new StatusLog(transport);
    assert.is(await roundTrip(transport, 'launcher.one'), 'ping');

    await server.kill();
    assert.not.ok(server.isRunning);
    assert.is(server.pid, null);
    assert.ok(await waitForExit(firstPid!), 'the killed server is gone');
    assert.ok(existsSync(server.storeDir!), 'kill keeps the store');
    await log.waitFor('disconnected');

    await server.restart();
    assert.ok(server.pid !== null && server.pid !== firstPid);
    await log.waitFor('reconnected');
    assert.is(await roundTrip(transport, 'launcher.two'), 'ping');
    await transport.close();
  } finally {
    await server.stop();
  }
  assert.is(server.pid, null);
  assert.not.ok(existsSync(server.storeDir!), 'stop removes the temp store it created');
  await server.stop(); // idempotent
});

test('uses an explicit port, and the port is free again after stop', async () => {
  const port = await pickFreePort();
  const first = await startTestNats({ port });
  assert.is(first.port, port);
  await first.stop();
  const second = await startTestNats({ port });
  try {
    assert.is(second.port, port);
    const transport = await NatsTransport.connect({ servers: second.url });
    await transport.flush();
    await transport.close();
  } finally {
    await second.stop();
  }
});

test('a taken port fails with IO_ERROR carrying the server log', async () => {
  const holder = await startTestNats();
  try {
    const error = await rejection(() => startTestNats({ port: holder.port }));
    assert.is(error.code, 'IO_ERROR');
    const context = (error as unknown as { context: Record<string, unknown> }).context;
    assert.is(context.isAddressInUse, true);
    assert.match(String(context.log), 'address already in use');
  } finally {
    await holder.stop();
  }
});

test('keeps a store dir it did not create; no store without JetStream', async () => {
  const storeDir = mkdtempSync(join(tmpdir(), 'tidelog-nats-test-'));
  try {
    const server = await startNatsServer({ storeDir });
    assert.is(server.storeDir, storeDir);
    await server.stop();
    assert.ok(existsSync(storeDir));
    const plain = await startNatsServer({ jetStream: false });
    assert.is(plain.storeDir, null);
    await plain.stop();
  } finally {
    rmSync(storeDir, { recursive: true, force: true });
  }
});

test('a missing binary fails with IO_ERROR; a bad port with BAD_REQUEST', async () => {
  assert.is((await rejection(() => startNatsServer({ binary: '/nonexistent/nats-server', jetStream: false }))).code, 'IO_ERROR');
  assert.is((await rejection(() => startNatsServer({ port: 70_000 }))).code, 'BAD_REQUEST');
});

test('a server that never says ready fails with TIMEOUT and is killed', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tidelog-fake-nats-'));
  try {
    const binary = join(dir, 'nats-server');
    writeFileSync(binary, '#!/bin/sh\nexec sleep 30\n', { mode: 0o755 });
    // The fake binary never says ready: the short start timeout cannot be beaten by load.
    const error = await rejection(() => startNatsServer({ binary, jetStream: false, startTimeoutMs: 200 }));
    assert.is(error.code, 'TIMEOUT');
    const pid = (error as unknown as { context: { pid: number } }).context.pid;
    assert.ok(pid > 0 && (await waitForExit(pid)), `the hung child ${pid} was not killed`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('children never outlive this process: normal exit and SIGTERM', async () => {
  for (const mode of ['exit', 'sigterm'] as const) {
    const { natsPid, code, signal, stderr } = await runOrphanCheck(mode);
    assert.ok(natsPid > 0, `no pid printed (code ${code}, signal ${signal}): ${stderr}`);
    if (mode === 'sigterm') assert.is(signal, 'SIGTERM');
    assert.ok(await waitForExit(natsPid), `${mode}: nats-server ${natsPid} still runs`);
  }
});

test.run();
