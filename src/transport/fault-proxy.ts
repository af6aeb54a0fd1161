// A TCP fault proxy for NATS links (docs/REPLICATION.md, "Partitions"): it sits in
// front of one nats-server's route (or client) port and forwards bytes both ways, and each
// link through it can be cut (closed, and new connections refused), blackholed (held open,
// nothing delivered: a silent peer, found only by pings — as TCP over a dead network, the
// bytes wait and arrive in order if the link heals before either end gives up), delayed, or
// healed. Written here on
// node:net: no maintained package does per-peer faults on a raw TCP stream.
//
// A link is named by the peer at the other end, read from what it sends first: a route's
// dialer sends `CONNECT {…}` then `INFO {"server_name":"n2",…}`; a client sends `CONNECT
// {"name":"…"}`. Until a connection has said who it is its bytes pass (they are the hello).
//
//   dialer ──► proxy (mode per peer: pass | cut | blackhole | delay) ──► nats-server port
//
// Invariant: bytes are forwarded in order, never dropped from the middle of a stream (a
// blackholed link holds them, at most HELD_BYTES, past which it is cut); a cut closes both
// sockets.

import { createServer, connect, type Server, type Socket } from 'node:net';

export type LinkMode = { kind: 'pass' } | { kind: 'cut' } | { kind: 'blackhole' } | { kind: 'delay'; ms: number };

interface Link {
  peer: string | null;
  client: Socket;
  upstream: Socket;
  /** Bytes of the hello read so far (until the peer is known). */
  hello: string;
  /** When each direction's last delayed chunk goes out (keeps order under delay). */
  nextSendMs: { up: number; down: number };
  /** Bytes a blackhole holds, per direction, until heal. */
  held: { up: Buffer[]; down: Buffer[]; bytes: number };
}

/** Most bytes a blackholed link holds before it is cut (a TCP window would fill long before). */
const HELD_BYTES = 16 << 20;

/** Most bytes of a connection's start read to learn its peer. */
const HELLO_BYTES = 16 << 10;

export class FaultProxy {
  private readonly links = new Set<Link>();
  private readonly modes = new Map<string, LinkMode>();
  private defaultMode: LinkMode = { kind: 'pass' };
  private isClosed = false;

  private constructor(
    private readonly server: Server,
    readonly port: number,
    private readonly target: { host: string; port: number },
  ) {}

  /** Listens on a free loopback port (or `port`) and forwards to `target`. */
  static async start(target: { host: string; port: number }, port = 0): Promise<FaultProxy> {
    let proxy: FaultProxy | null = null;
    const server = createServer((socket) => proxy?.accept(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    const address = server.address();
    if (address === null || typeof address === 'string') throw new Error('fault proxy: no TCP address');
    proxy = new FaultProxy(server, address.port, target);
    return proxy;
  }

  /** Sets the mode of the links to `peer` ('*': every peer without a mode of its own). */
  setMode(peer: string, mode: LinkMode): void {
    if (peer === '*') this.defaultMode = mode;
    else this.modes.set(peer, mode);
    this.settle();
  }

  /** Every link back to pass; what blackholes held is delivered. */
  heal(): void {
    this.modes.clear();
    this.defaultMode = { kind: 'pass' };
    this.settle();
  }

  /** Applies the modes to open links: cut ones close, held bytes of unblocked ones go out. */
  private settle(): void {
    for (const link of this.links) {
      const kind = this.modeOf(link.peer).kind;
      if (link.peer !== null && kind === 'cut') this.drop(link);
      else if (kind !== 'blackhole' && link.held.bytes > 0) {
        const { up, down } = link.held;
        link.held = { up: [], down: [], bytes: 0 };
        for (const chunk of up) this.forward(link, chunk, link.upstream, 'up');
        for (const chunk of down) this.forward(link, chunk, link.client, 'down');
      }
    }
  }

  /** The peers of the open links (null: not yet identified). */
  peers(): Array<string | null> {
    return [...this.links].map((link) => link.peer);
  }

  async close(): Promise<void> {
    this.isClosed = true;
    for (const link of this.links) this.drop(link);
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private modeOf(peer: string | null): LinkMode {
    return (peer === null ? undefined : this.modes.get(peer)) ?? this.defaultMode;
  }

  private accept(client: Socket): void {
    if (this.isClosed) {
      client.destroy();
      return;
    }
    const upstream = connect(this.target.port, this.target.host);
    const link: Link = { peer: null, client, upstream, hello: '', nextSendMs: { up: 0, down: 0 }, held: { up: [], down: [], bytes: 0 } };
    this.links.add(link);
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    const end = (): void => this.drop(link);
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    client.on('data', (chunk: Buffer) => {
      if (link.peer === null) this.identify(link, chunk);
      if (this.links.has(link)) this.forward(link, chunk, upstream, 'up');
    });
    upstream.on('data', (chunk: Buffer) => this.forward(link, chunk, client, 'down'));
  }

  /** Reads the peer's name from its hello; a peer whose link is cut is dropped at once. */
  private identify(link: Link, chunk: Buffer): void {
    link.hello += chunk.toString('latin1');
    let connectName: string | null = null;
    const lines = link.hello.split('\r\n');
    for (let index = 0; index < lines.length - 1; index++) {
      const line = lines[index];
      const json = line.startsWith('CONNECT ') ? line.slice(8) : line.startsWith('INFO ') ? line.slice(5) : null;
      if (json === null) {
        // A client's first command after CONNECT (PING, SUB…): it is the CONNECT's name.
        link.peer = connectName ?? 'unknown';
        break;
      }
      const fields = parseJson(json);
      if (line.startsWith('INFO ') && typeof fields.server_name === 'string') {
        link.peer = fields.server_name;
        break;
      }
      if (line.startsWith('CONNECT ')) connectName = typeof fields.name === 'string' && fields.name !== '' ? fields.name : 'client';
    }
    if (link.peer === null && link.hello.length > HELLO_BYTES) link.peer = connectName ?? 'unknown';
    if (link.peer !== null) {
      link.hello = '';
      if (this.modeOf(link.peer).kind === 'cut') this.drop(link);
    }
  }

  private forward(link: Link, chunk: Buffer, to: Socket, direction: 'up' | 'down'): void {
    const mode = this.modeOf(link.peer);
    switch (mode.kind) {
      case 'pass':
        if (link.nextSendMs[direction] > Date.now()) this.later(link, chunk, to, direction, 0);
        else to.write(chunk);
        return;
      case 'cut':
        if (link.peer !== null) this.drop(link);
        else to.write(chunk); // the hello, before the peer is known
        return;
      case 'blackhole':
        if (link.peer === null) {
          to.write(chunk);
          return;
        }
        link.held[direction].push(chunk);
        link.held.bytes += chunk.byteLength;
        if (link.held.bytes > HELD_BYTES) this.drop(link);
        return;
      case 'delay':
        this.later(link, chunk, to, direction, mode.ms);
        return;
    }
  }

  /** Sends `chunk` after `delayMs`, never before a chunk queued earlier in that direction. */
  private later(link: Link, chunk: Buffer, to: Socket, direction: 'up' | 'down', delayMs: number): void {
    const at = Math.max(Date.now() + delayMs, link.nextSendMs[direction]);
    link.nextSendMs[direction] = at;
    setTimeout(() => {
      if (this.links.has(link)) to.write(chunk);
    }, at - Date.now());
  }

  private drop(link: Link): void {
    if (!this.links.delete(link)) return;
    link.client.destroy();
    link.upstream.destroy();
  }
}

function parseJson(text: string): Record<string, unknown> {
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}
