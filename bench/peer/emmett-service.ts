/**
 * The API benchmark's peer: a small Fastify service built on Emmett 0.42 (PostgreSQL event store),
 * with the same purchase decider as ours (domain/customer/decider.ts) and ONE inline projection
 * (revenue per customer, written in the append's transaction), as an Emmett user would write it.
 * It validates the body with the same zod schema and checks the same bearer key header shape, but
 * keeps no idempotency, encryption, metadata, rate limits or analytics: it is the floor of what an
 * event-sourced purchase costs on this stack, not an equal.
 */
import Fastify from 'fastify';
import { z } from 'zod';
import { RecordPurchasePayload } from '../../domain/customer/commands.ts';
import { customerDecider } from '../../domain/customer/decider.ts';

export interface PeerConfig {
  databaseUrl: string;
  schema: string;
  customers: number;
}

export interface PeerReady {
  url: string;
  key: string;
  customerIds: string[];
}

const PurchaseBody = RecordPurchasePayload.omit({ customerId: true });

export async function servePeer(config: PeerConfig): Promise<{ ready: PeerReady; close: () => Promise<void> }> {
  const emmett = await import('@event-driven-io/emmett');
  const emmettPostgres = await import('@event-driven-io/emmett-postgresql');
  const url = `${config.databaseUrl}${config.databaseUrl.includes('?') ? '&' : '?'}options=${encodeURIComponent(`-c search_path=${config.schema}`)}`;

  type PeerEvent = { type: string; data: Record<string, unknown> };
  const revenue = emmettPostgres.postgreSQLProjection<PeerEvent>({
    name: 'customer_revenue',
    canHandle: ['PurchaseRecorded'],
    handle: async (events: { data: unknown }[], context: { connection: { client: { query(text: string, values: unknown[]): Promise<unknown> } } }) => {
      for (const event of events) {
        const d = event.data as { customerId: string; amount: number };
        await context.connection.client.query(
          `INSERT INTO customer_revenue (customer_id, purchases, revenue) VALUES ($1, 1, $2)
           ON CONFLICT (customer_id) DO UPDATE SET purchases = customer_revenue.purchases + 1, revenue = customer_revenue.revenue + EXCLUDED.revenue`,
          [d.customerId, d.amount],
        );
      }
    },
  });
  const store = emmettPostgres.getPostgreSQLEventStore(url, {
    projections: emmett.projections.inline([revenue as never]),
  }) as unknown as Parameters<ReturnType<typeof emmett.CommandHandler>>[0] & {
    close(): Promise<void>;
    appendToStream(stream: string, events: PeerEvent[]): Promise<unknown>;
  };
  const handle = emmett.CommandHandler({
    evolve: customerDecider.evolve as never,
    initialState: customerDecider.initialState,
    // Emmett's own answer to a lost race: retry the handler on a version conflict.
    retry: { onVersionConflict: 10 },
  });
  // The schema, then the projection's table (Emmett creates its tables on first use).
  await store.appendToStream('warmup-1', [{ type: 'Warmup', data: {} }]);
  const pg = (await import('pg')).default;
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  await admin.query('CREATE TABLE IF NOT EXISTS customer_revenue (customer_id uuid PRIMARY KEY, purchases int NOT NULL, revenue numeric NOT NULL)');
  await admin.end();

  const key = 'peer-bench-key';
  const app = Fastify({ logger: false });
  app.post('/customers/:id/purchases', async (request, reply) => {
    if (request.headers.authorization !== `Bearer ${key}`) return reply.code(401).send({ title: 'unauthenticated' });
    const customerId = z.uuid().parse((request.params as { id: string }).id);
    const body = PurchaseBody.safeParse(request.body);
    if (!body.success) return reply.code(400).send({ title: 'invalid', errors: body.error.issues });
    const command = { type: 'RecordPurchase', customerId, ...body.data, occurredAt: body.data.occurredAt ?? new Date().toISOString() };
    try {
      const result = await handle(
        store as never,
        `customer-${customerId}`,
        (state: unknown) => customerDecider.decide(command as never, state as never) as never,
      );
      return { id: customerId, revision: Number((result as unknown as { nextExpectedStreamVersion: bigint }).nextExpectedStreamVersion) - 1 };
    } catch (error) {
      if (emmett.isExpectedVersionConflictError(error)) return reply.code(409).send({ title: 'conflict' });
      return reply.code(422).send({ title: (error as Error).message });
    }
  });
  app.get('/bench/noop', async () => ({}));

  const customerIds: string[] = [];
  for (let i = 0; i < config.customers; i++) {
    const customerId = crypto.randomUUID();
    await handle(
      store as never,
      `customer-${customerId}`,
      (state: unknown) =>
        customerDecider.decide(
          { type: 'RegisterCustomer', customerId, name: `Peer Customer ${i}`, email: `peer${i}@example.com`, occurredAt: new Date().toISOString() } as never,
          state as never,
        ) as never,
    );
    customerIds.push(customerId);
  }
  const listening = await app.listen({ host: '127.0.0.1', port: 0 });
  return {
    ready: { url: listening, key, customerIds },
    close: async () => {
      await app.close();
      await store.close();
    },
  };
}
