import net from 'node:net';

/**
 * A TCP proxy between the service and PostgreSQL (or NATS) that injects the faults a network and a
 * server produce: reset every connection, refuse new ones, stall all traffic (held, then delivered
 * when the stall ends, as after a network pause), lose the server's answers, leave the server
 * holding connections whose service side is gone (half-open).
 */
interface Pair {
  client: net.Socket;
  upstream: net.Socket;
  /** Bytes held during a stall, per direction. */
  toUpstream: Buffer[];
  toClient: Buffer[];
}

export class FaultProxy {
  private readonly server: net.Server;
  private readonly pairs = new Set<Pair>();
  private mode: 'pass' | 'refuse' | 'stall' = 'pass';
  /** Connections stalled on their own (`stallOpen`), new ones passing. */
  private readonly stalled = new Set<Pair>();
  /** Connections that lose what the server sends (`loseRepliesOpen`), new ones passing. */
  private readonly deaf = new Set<Pair>();
  /** Connections gone silent both ways whose server side stays open whatever the service does (`halfOpen`). */
  private readonly halfOpened = new Set<Pair>();
  port = 0;

  constructor(private readonly target: { host: string; port: number }) {
    this.server = net.createServer((client) => this.accept(client));
  }

  /** A proxy in front of the server a URL names (PostgreSQL's port when it names none). */
  static before(serviceUrl: string, defaultPort = 5432): FaultProxy {
    const url = new URL(serviceUrl);
    return new FaultProxy({ host: url.hostname, port: Number(url.port || defaultPort) });
  }

  /** The same URL, reaching its server through this proxy (once started). */
  urlThrough(serviceUrl: string): string {
    const url = new URL(serviceUrl);
    url.hostname = '127.0.0.1';
    url.port = String(this.port);
    return url.toString();
  }

  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as net.AddressInfo).port;
  }

  /** Connections open now (through the proxy). */
  get connections(): number {
    return this.pairs.size;
  }

  /** Every open connection is reset (RST to the service, closed towards the server). */
  resetAll(): void {
    for (const pair of [...this.pairs]) this.drop(pair, true);
  }

  /** New connections are reset at once; open ones are reset too (the server is gone). */
  refuse(): void {
    this.mode = 'refuse';
    this.resetAll();
  }

  /** Nothing moves in either direction, on open connections and new ones, until `pass()`. */
  stall(): void {
    this.mode = 'stall';
  }

  /**
   * The connections open now stall for good (a peer gone without a word, a half-open socket); new
   * connections pass. Only a reconnection gets through.
   */
  stallOpen(): void {
    for (const pair of this.pairs) this.stalled.add(pair);
  }

  /**
   * The connections open now lose everything the server sends (answers, acknowledgements) while what
   * the service sends still arrives; new connections pass. Requests are carried out, their answers lost.
   */
  loseRepliesOpen(): void {
    for (const pair of this.pairs) this.deaf.add(pair);
  }

  /**
   * The connections open now go half-open for good, as when the service's host or a NAT between them
   * loses the connection without a word: nothing more reaches either side, and when the service gives
   * up and closes its socket the server is not told (no FIN, no RST). The server sees an idle open
   * connection, and a session in a transaction stays `idle in transaction` until the server itself
   * ends it. New connections pass. (The proxy's own socket still acknowledges the server's TCP
   * keepalive probes, so only a bound the server applies to the session, not to the socket, shows here.)
   */
  halfOpen(): void {
    for (const pair of this.pairs) this.halfOpened.add(pair);
  }

  /** Half-open connections whose server side is still open: sessions the server holds for a service that is gone. */
  get halfOpenConnections(): number {
    return [...this.halfOpened].filter((pair) => !pair.upstream.destroyed).length;
  }

  /** Back to normal: what a stall held is delivered. Half-open connections stay lost. */
  pass(): void {
    this.mode = 'pass';
    this.stalled.clear();
    this.deaf.clear();
    for (const pair of this.pairs) {
      for (const chunk of pair.toUpstream.splice(0)) pair.upstream.write(chunk);
      for (const chunk of pair.toClient.splice(0)) pair.client.write(chunk);
    }
  }

  async close(): Promise<void> {
    this.resetAll();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: net.Socket): void {
    if (this.mode === 'refuse') {
      client.resetAndDestroy();
      return;
    }
    const upstream = net.connect(this.target.port, this.target.host);
    const pair: Pair = { client, upstream, toUpstream: [], toClient: [] };
    this.pairs.add(pair);
    const held = () => this.mode === 'stall' || this.stalled.has(pair);
    client.on('data', (chunk: Buffer) => {
      if (this.halfOpened.has(pair)) return;
      if (held()) pair.toUpstream.push(chunk);
      else upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (this.deaf.has(pair) || this.halfOpened.has(pair)) return;
      if (held()) pair.toClient.push(chunk);
      else client.write(chunk);
    });
    const end = () => this.drop(pair, false);
    // The service closing a half-open connection never reaches the server.
    const serviceEnd = () => (this.halfOpened.has(pair) ? client.destroy() : end());
    client.on('close', serviceEnd);
    upstream.on('close', end);
    client.on('error', serviceEnd);
    upstream.on('error', end);
  }

  private drop(pair: Pair, reset: boolean): void {
    if (!this.pairs.delete(pair)) return;
    this.stalled.delete(pair);
    this.deaf.delete(pair);
    this.halfOpened.delete(pair);
    if (reset && !pair.client.destroyed) pair.client.resetAndDestroy();
    else pair.client.destroy();
    pair.upstream.destroy();
  }
}
