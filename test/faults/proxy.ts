import net from 'node:net';

/**
 * A TCP proxy between the service and PostgreSQL (or NATS) that injects the faults a network and a
 * server produce: reset every connection, refuse new ones, stall all traffic (held, then delivered
 * when the stall ends, as after a network pause), lose the server's answers.
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
  port = 0;

  constructor(private readonly target: { host: string; port: number }) {
    this.server = net.createServer((client) => this.accept(client));
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

  /** Back to normal: what a stall held is delivered. */
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
    client.on('data', (chunk: Buffer) => (held() ? pair.toUpstream.push(chunk) : upstream.write(chunk)));
    upstream.on('data', (chunk: Buffer) => {
      if (this.deaf.has(pair)) return;
      if (held()) pair.toClient.push(chunk);
      else client.write(chunk);
    });
    const end = () => this.drop(pair, false);
    client.on('close', end);
    upstream.on('close', end);
    client.on('error', end);
    upstream.on('error', end);
  }

  private drop(pair: Pair, reset: boolean): void {
    if (!this.pairs.delete(pair)) return;
    this.stalled.delete(pair);
    this.deaf.delete(pair);
    if (reset && !pair.client.destroyed) pair.client.resetAndDestroy();
    else pair.client.destroy();
    pair.upstream.destroy();
  }
}
