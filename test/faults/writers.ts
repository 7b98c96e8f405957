import { randomUUID } from 'node:crypto';

/**
 * Concurrent writers recording purchases as a careful client does: each purchase has its own
 * Idempotency-Key, and a purchase is retried with that key until the service acknowledges it.
 * What they saw is counted per phase (the fault in progress).
 */
export interface PhaseCounts {
  acknowledged: number;
  unavailable503: number;
  outcomeUnknown503: number;
  other503: number;
  status5xx: number;
  status4xx: number;
  timeouts: number;
  connectionErrors: number;
  /** Slowest answer of any kind (ms). */
  slowestMs: number;
  /** Slowest 503 answer (ms): the bound on how long a client waits to learn the database is away. */
  slowest503Ms: number;
}

export interface Purchase {
  customerId: string;
  orderId: string;
  position?: bigint;
}

const emptyCounts = (): PhaseCounts => ({
  acknowledged: 0,
  unavailable503: 0,
  outcomeUnknown503: 0,
  other503: 0,
  status5xx: 0,
  status4xx: 0,
  timeouts: 0,
  connectionErrors: 0,
  slowestMs: 0,
  slowest503Ms: 0,
});

export class Writers {
  phase = 'warm-up';
  readonly counts = new Map<string, PhaseCounts>();
  readonly acknowledged = new Map<string, Purchase>();
  /** Sent at least once; acknowledged or not. */
  readonly attempted = new Map<string, Purchase>();
  readonly customers: string[] = [];
  /** Time of each acknowledgement (ms since epoch), to find the first one after a fault. */
  private readonly ackTimes: number[] = [];
  private stopping = false;
  private loops: Promise<void>[] = [];

  constructor(
    private readonly base: () => string,
    private readonly key: string,
    private readonly count = 8,
  ) {}

  countsOf(phase: string): PhaseCounts {
    let counts = this.counts.get(phase);
    if (!counts) this.counts.set(phase, (counts = emptyCounts()));
    return counts;
  }

  /** Highest position acknowledged so far. */
  head(): bigint {
    let max = 0n;
    for (const p of this.acknowledged.values()) if (p.position !== undefined && p.position > max) max = p.position;
    return max;
  }

  firstAckAfter(time: number): number | undefined {
    return this.ackTimes.find((t) => t >= time);
  }

  async start(): Promise<void> {
    for (let i = 0; i < this.count; i++) {
      const customerId = randomUUID();
      await this.send(`/customers`, { id: customerId, name: `Writer ${i}`, email: `writer${i}@example.com` }, `register-${customerId}`);
      this.customers.push(customerId);
    }
    this.loops = this.customers.map((customerId, i) => this.loop(customerId, i));
  }

  /** Stops after each writer's purchase in flight is acknowledged (or `giveUpMs` passes). */
  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(this.loops);
  }

  private async loop(customerId: string, writer: number): Promise<void> {
    for (let n = 0; !this.stopping; n++) {
      const orderId = `w${writer}-${n}-${randomUUID().slice(0, 8)}`;
      const purchase: Purchase = { customerId, orderId };
      this.attempted.set(orderId, purchase);
      const answer = await this.send(`/customers/${customerId}/purchases`, { orderId, amount: 10, currency: 'EUR' }, `purchase-${orderId}`, 60_000);
      if (answer) {
        purchase.position = BigInt(answer.position);
        this.acknowledged.set(orderId, purchase);
        this.ackTimes.push(Date.now());
      }
    }
  }

  /** Sends until acknowledged (same Idempotency-Key each time); undefined if `giveUpMs` passed. */
  private async send(path: string, body: unknown, idempotencyKey: string, giveUpMs = 120_000): Promise<{ position: string } | undefined> {
    const until = Date.now() + giveUpMs;
    while (Date.now() < until) {
      const counts = this.countsOf(this.phase);
      const started = Date.now();
      let pauseMs = 100;
      try {
        const response = await fetch(`${this.base()}${path}`, {
          method: 'POST',
          headers: { authorization: `Bearer ${this.key}`, 'content-type': 'application/json', 'idempotency-key': idempotencyKey },
          body: JSON.stringify(body),
          signal: AbortSignal.timeout(20_000),
        });
        const elapsed = Date.now() - started;
        counts.slowestMs = Math.max(counts.slowestMs, elapsed);
        const payload = (await response.json().catch(() => ({}))) as { position?: string; type?: string };
        if (response.ok) {
          counts.acknowledged++;
          return payload as { position: string };
        }
        if (response.status === 503) {
          counts.slowest503Ms = Math.max(counts.slowest503Ms, elapsed);
          if (payload.type?.endsWith('/unavailable')) counts.unavailable503++;
          else if (payload.type?.endsWith('/outcome-unknown')) counts.outcomeUnknown503++;
          else counts.other503++;
          pauseMs = 1_000 * Math.min(1, Number(response.headers.get('retry-after') ?? 1)) * (0.5 + Math.random() / 2);
        } else if (response.status >= 500) counts.status5xx++;
        else counts.status4xx++;
      } catch (error) {
        counts.slowestMs = Math.max(counts.slowestMs, Date.now() - started);
        if ((error as Error).name === 'TimeoutError') counts.timeouts++;
        else counts.connectionErrors++;
      }
      await new Promise((r) => setTimeout(r, pauseMs));
    }
    return undefined;
  }
}
