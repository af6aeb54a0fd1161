// How a client gets its transport and talks request/reply through it. Invariant: a client
// closes only a transport it opened itself (from `servers`); a transport handed in belongs
// to the caller, who may share it between clients and a node (the embedded mode).

import { TidelogError } from '../errors.ts';
import { NatsTransport, type NatsAuthOptions } from '../transport/nats.ts';
import { isValidNamespace } from '../transport/messages.ts';
import type { Transport } from '../transport/transport.ts';

export const DEFAULT_NAMESPACE = 'tidelog';

export interface ClientTransportOptions {
  /** NATS urls (nats://host:port); the client opens and later closes its own connection. */
  servers?: string | string[];
  /** An open transport to use instead; the caller keeps owning it. */
  transport?: Transport;
  /** Subject prefix of the cluster (default 'tidelog'). */
  namespace?: string;
  /** Name shown in the NATS server's connection list. */
  name?: string;
  /**
   * With `servers`: credentials and TLS of the connection (user + pass, token, NKey seed,
   * creds file; CA, client certificate; a private inbox prefix), see docs/SECURITY.md.
   */
  auth?: NatsAuthOptions;
}

export interface ClientTransport {
  transport: Transport;
  namespace: string;
  /** True when close() must close the transport too. */
  isOwned: boolean;
}

export async function openClientTransport(options: ClientTransportOptions): Promise<ClientTransport> {
  const namespace = options.namespace ?? DEFAULT_NAMESPACE;
  if (!isValidNamespace(namespace)) {
    throw new TidelogError('BAD_REQUEST', `namespace must be 1..64 of A-Z a-z 0-9 _ -, got ${JSON.stringify(namespace)}`, {
      details: { namespace },
    });
  }
  if (options.transport !== undefined && options.servers !== undefined) {
    throw new TidelogError('BAD_REQUEST', 'give either servers or transport, not both');
  }
  if (options.transport !== undefined && options.auth !== undefined) {
    throw new TidelogError('BAD_REQUEST', 'auth applies to a connection opened from servers; a transport handed in is already connected');
  }
  if (options.transport !== undefined) return { transport: options.transport, namespace, isOwned: false };
  if (options.servers === undefined || options.servers.length === 0) {
    throw new TidelogError('BAD_REQUEST', 'servers (NATS urls) or transport is required');
  }
  const transport = await NatsTransport.connect({ servers: options.servers, name: options.name, ...(options.auth === undefined ? {} : { auth: options.auth }) });
  return { transport, namespace, isOwned: true };
}

/** A positive integer option, or BAD_REQUEST naming it. */
export function positiveIntegerOption(name: string, value: number | undefined, fallback: number): number {
  const chosen = value ?? fallback;
  if (!Number.isSafeInteger(chosen) || chosen < 1) {
    throw new TidelogError('BAD_REQUEST', `${name} must be a positive integer, got ${String(value)}`, { details: { [name]: value } });
  }
  return chosen;
}

/** A non-negative finite number option, or BAD_REQUEST naming it. */
export function nonNegativeOption(name: string, value: number | undefined, fallback: number): number {
  const chosen = value ?? fallback;
  if (typeof chosen !== 'number' || !Number.isFinite(chosen) || chosen < 0) {
    throw new TidelogError('BAD_REQUEST', `${name} must be a finite number ≥ 0, got ${String(value)}`, { details: { [name]: value } });
  }
  return chosen;
}
