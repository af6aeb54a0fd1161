// The floor of a durable service on NATS: a separate Node process that answers requests on
// `bare.<lane>` only after appending their bytes to that lane's file and fdatasync'ing it,
// with group commit (what arrives during one write + fdatasync goes in the next one). No
// parsing, no checksum, no sessions, no state: whatever tidelog's node adds on top is its
// overhead. The ingest benchmark drives it with the same payloads, senders or pace, on the
// same nats-server, so the two share the machine's scheduling and disk alike: one request per
// shard per send (tidelog's producer may also merge concurrent sends into one request).
//
// As a child: `node --import tsx bench/peers/bare-responder.ts <nats url> <dir> <lanes> <sync>`
// (sync 0: no fdatasync, as tidelog's --fsync off/normal acks); prints "ready" once
// subscribed. The parent side is `BareResponder.start` and `request`.

import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { connect, type Msg, type NatsConnection } from '@nats-io/transport-node';
import { EVENT_BYTES } from '../../src/event.ts';

interface Lane {
  fd: number;
  position: number;
  queued: Msg[];
  isBusy: boolean;
}

const REPLY = new Uint8Array(16);

/** The child: subscribe, group-commit per lane, reply after fdatasync. */
async function serve(url: string, dir: string, laneCount: number, isSynced: boolean): Promise<void> {
  const nc = await connect({ servers: [url], noAsyncTraces: true });
  const lanes: Lane[] = Array.from({ length: laneCount }, (_, index) => ({
    fd: fs.openSync(join(dir, `bare-lane-${index}`), 'w'),
    position: 0,
    queued: [],
    isBusy: false,
  }));
  const commit = (lane: Lane): void => {
    if (lane.isBusy || lane.queued.length === 0) return;
    lane.isBusy = true;
    const group = lane.queued.splice(0);
    const buffers = group.map((message) => message.data);
    const bytes = buffers.reduce((sum, buffer) => sum + buffer.byteLength, 0);
    const position = lane.position;
    lane.position += bytes;
    const answer = (): void => {
      for (const message of group) message.respond(REPLY);
      lane.isBusy = false;
      // One turn for the callers just answered to send again, as tidelog's writer does.
      setImmediate(() => commit(lane));
    };
    fs.writev(lane.fd, buffers, position, (writeError, written) => {
      if (writeError !== null || written !== bytes) throw writeError ?? new Error(`short write: ${written} of ${bytes}`);
      if (!isSynced) return answer();
      fs.fdatasync(lane.fd, (syncError) => {
        if (syncError !== null) throw syncError;
        answer();
      });
    });
  };
  nc.subscribe('bare.*', {
    callback: (error, message) => {
      if (error !== null) throw error;
      const lane = lanes[Number(message.subject.slice('bare.'.length))];
      lane.queued.push(message);
      commit(lane);
    },
  });
  await nc.flush();
  process.stdout.write('ready\n');
  await nc.closed();
}

/** The parent side: the child process and a connection that drives it. */
export class BareResponder {
  private constructor(
    private readonly child: ChildProcess,
    private readonly nc: NatsConnection,
    readonly lanes: number,
  ) {}

  static async start(url: string, dir: string, lanes: number, isSynced: boolean): Promise<BareResponder> {
    const child = spawn(process.execPath, ['--import', 'tsx', import.meta.filename, url, dir, String(lanes), isSynced ? '1' : '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      child.once('exit', (code) => reject(new Error(`bare responder exited with ${code}`)));
      child.stdout?.once('data', () => resolve());
    });
    const nc = await connect({ servers: [url], name: 'bench-bare', noAsyncTraces: true });
    return new BareResponder(child, nc, lanes);
  }

  /** Sends `bytes` (packed 21-byte events) as one request per lane, whole events, an equal share each; resolves when all are durable. */
  async request(bytes: Uint8Array): Promise<void> {
    const share = Math.ceil(bytes.byteLength / EVENT_BYTES / this.lanes) * EVENT_BYTES;
    const replies: Array<Promise<Msg>> = [];
    for (let lane = 0; lane < this.lanes && lane * share < bytes.byteLength; lane++) {
      replies.push(this.nc.request(`bare.${lane}`, bytes.subarray(lane * share, (lane + 1) * share), { timeout: 30_000 }));
    }
    await Promise.all(replies);
  }

  async stop(): Promise<void> {
    await this.nc.close();
    this.child.kill('SIGKILL');
  }
}

if (process.argv[1] === import.meta.filename) {
  const [url, dir, lanes, sync] = process.argv.slice(2);
  await serve(url, dir, Number(lanes), sync !== '0');
}
