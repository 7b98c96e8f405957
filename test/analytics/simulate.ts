import { simulateBgNbdCustomer, type BgNbdParams } from '../../analytics/models/bgnbd.ts';
import { seededRandom } from '../../analytics/models/random.ts';
import type { ProjectedEvent } from '../../projections/projection.ts';
import { projected, purchase, registered } from './support.ts';

const uuidOf = (seed: number, i: number, kind: number) =>
  `${(seed >>> 0).toString(16).padStart(8, '0')}-${kind.toString(16).padStart(4, '0')}-4000-8000-${i.toString(16).padStart(12, '0')}`;

/**
 * A CRM history drawn from BG/NBD (weekly CDNOW-like parameters, scaled up so a test has enough
 * repeat purchases) with Gamma-Gamma spend, plus feedback ratings, in business-time order.
 */
export function simulatedHistory(customers: number, seed: number, params: BgNbdParams = { r: 0.6, alpha: 4, a: 0.8, b: 2.5 }) {
  const random = seededRandom(seed);
  const start = Date.parse('2023-01-01T00:00:00Z');
  const end = Date.parse('2024-06-30T12:00:00Z');
  const week = 7 * 86_400_000;
  const events: { at: number; event: ProjectedEvent }[] = [];
  const channels = ['email', 'phone', 'chat'] as const;
  for (let i = 0; i < customers; i++) {
    const id = uuidOf(seed, i, 1);
    const joined = start + Math.floor(random.next() * 26) * week + Math.floor(random.next() * 86_400_000);
    const T = (end - joined) / week;
    const history = simulateBgNbdCustomer(params, T, random);
    const nu = random.gamma(4, 100);
    events.push({ at: joined - 3_600_000, event: registered(id, new Date(joined - 3_600_000).toISOString()) });
    history.purchaseTimes.forEach((t, k) => {
      const at = joined + Math.round(t * week);
      const amount = Math.max(1, Math.round(random.gamma(5, nu) * 100) / 100);
      events.push({ at, event: purchase(id, `o${k}`, amount, new Date(at).toISOString()) });
    });
    if (random.next() < 0.3) {
      const at = joined + Math.floor(random.next() * (end - joined));
      const csat = 1 + Math.floor(random.next() * 5);
      events.push({
        at,
        event: projected(
          {
            type: 'FeedbackSubmitted',
            data: {
              feedbackId: uuidOf(seed, i, 2),
              customerId: id,
              kind: csat <= 2 ? 'complaint' : 'survey',
              channel: channels[i % 3]!,
              subject: 's',
              body: 'b',
              priority: 'normal',
              csat,
              nps: Math.min(10, csat * 2 + Math.floor(random.next() * 2)),
              firstResponseDueAt: new Date(at + 86_400_000).toISOString(),
              resolutionDueAt: new Date(at + 3 * 86_400_000).toISOString(),
            },
          },
          new Date(at).toISOString(),
        ),
      });
    }
  }
  events.sort((x, y) => x.at - y.at);
  return events.map((e) => e.event);
}
