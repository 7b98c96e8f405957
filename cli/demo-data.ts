import { createHash } from 'node:crypto';
import { defaultSlaPolicy } from '../domain/feedback/sla.ts';

/**
 * The demo data set as a plan: a deterministic, time-ordered list of CRM commands for a seed.
 * Pure (no I/O): `cli/demo.ts` sends the plan through the command handlers.
 *
 * The shape of the business: customers sign up over two years; each buys at a personal rate with a
 * chance of dropping out after every purchase (the BG/NBD story) and a personal mean spend (the
 * Gamma-Gamma story), busier in November-December and quieter in summer; some purchases are refunded;
 * business customers get deals that move through the pipeline; campaigns go out with responses;
 * customers raise feedback, some of it answered after its SLA deadline.
 */

export interface DemoActor {
  userId: string;
  roles: string[];
}

/**
 * The idempotency key of a plan's action. It names the seed and the size: the plans of one seed for
 * two sizes share ids but not all commands, so a key of one must never stand for the other's action.
 */
export const demoKey = (seed: number, customers: number, label: string): string => `demo:${seed}:${customers}:${label}`;

/** One command of the plan. `key` is stable for a seed and size: it becomes the idempotency key. */
export interface DemoAction {
  key: string;
  at: Date;
  actor: DemoActor;
  command: { type: string } & Record<string, unknown>;
}

export interface DemoOptions {
  seed: number;
  customers: number;
  /** End of the simulated period (business time); the plan covers the two years before it. */
  until: Date;
}

/** A fixed end date keeps the data set identical for a seed, whenever it is generated. */
export const DEFAULT_DEMO_UNTIL = new Date('2026-10-31T18:00:00.000Z');

const DAY = 86_400_000;
const HOUR = 3_600_000;

/** mulberry32: small, fast, good enough for simulated customers, and reproducible. */
const rng = (seed: number) => {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
};

type Random = ReturnType<typeof rng>;

const pick = <T>(random: Random, items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;
const chance = (random: Random, p: number) => random() < p;
const between = (random: Random, min: number, max: number) => min + random() * (max - min);
const normal = (random: Random) => Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());

/** Marsaglia-Tsang gamma sampler (shape k, scale theta). */
const gamma = (random: Random, k: number, theta: number): number => {
  if (k < 1) return gamma(random, k + 1, theta) * Math.pow(random(), 1 / k);
  const d = k - 1 / 3;
  const c = 1 / Math.sqrt(9 * d);
  for (;;) {
    const x = normal(random);
    const v = Math.pow(1 + c * x, 3);
    if (v <= 0) continue;
    const u = random();
    if (Math.log(u) < 0.5 * x * x + d - d * v + d * Math.log(v)) return d * v * theta;
  }
};
const beta = (random: Random, a: number, b: number) => {
  const x = gamma(random, a, 1);
  return x / (x + gamma(random, b, 1));
};

/** A UUID derived from the seed and a label: the same customer gets the same id on every run. */
export const demoId = (seed: number, label: string): string => {
  const h = createHash('sha256').update(`crm-demo:${seed}:${label}`).digest('hex');
  const variant = ((parseInt(h[16] as string, 16) & 0x3) | 0x8).toString(16);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-${variant}${h.slice(17, 20)}-${h.slice(20, 32)}`;
};

/** Monthly demand: busy before Christmas, quiet in summer. Index 0 = January. */
const SEASON = [0.8, 0.7, 0.9, 0.95, 0.95, 0.8, 0.55, 0.55, 0.9, 1, 1.9, 2.4] as const;
const SEASON_MAX = 2.4;
const season = (t: number) => SEASON[new Date(t).getUTCMonth()] as number;

const FIRST_NAMES = [
  'Ada',
  'Ben',
  'Chloé',
  'David',
  'Elif',
  'Farid',
  'Grace',
  'Hugo',
  'Ines',
  'Jonas',
  'Kira',
  'Luca',
  'Maya',
  'Noah',
  'Olga',
  'Pablo',
  'Qing',
  'Rosa',
  'Sami',
  'Tara',
  'Uma',
  'Victor',
  'Wen',
  'Ximena',
  'Yusuf',
  'Zoe',
  'Amara',
  'Bruno',
  'Carmen',
  'Dmitri',
  'Emma',
  'Felix',
  'Giulia',
  'Hana',
  'Ivan',
  'Julia',
  'Kenji',
  'Lea',
  'Marco',
  'Nina',
] as const;
const LAST_NAMES = [
  'Adler',
  'Bauer',
  'Costa',
  'Dubois',
  'Eriksen',
  'Fischer',
  'García',
  'Hansen',
  'Ito',
  'Jansen',
  'Kowalski',
  'Laurent',
  'Müller',
  'Novak',
  'Okafor',
  'Petrov',
  'Quinn',
  'Rossi',
  'Schmidt',
  'Tanaka',
  'Urban',
  'Varga',
  'Weber',
  'Xu',
  'Yilmaz',
  'Zimmermann',
  'Andersson',
  'Brown',
  'Chen',
  'Dias',
] as const;
const COMPANIES = [
  'Acme Tools',
  'Blue Harbor',
  'Cedar Labs',
  'Delta Foods',
  'Evergreen Hotels',
  'Fjord Logistics',
  'Granite Works',
  'Helios Energy',
  'Iris Design',
  'Juniper Health',
  'Kite Media',
  'Lumen Retail',
  'Maple Finance',
  'Nimbus Cloud',
  'Orchid Spa',
  'Pioneer Farms',
] as const;
const SOURCES = ['web', 'web', 'web', 'referral', 'referral', 'event', 'ads', 'ads', 'partner'] as const;
const SALES = ['ana.silva', 'ben.okoro', 'carla.meyer', 'dan.wu'] as const;
const SUPPORT = ['eva.lind', 'finn.berg', 'gina.ross'] as const;
const LOST_REASONS = ['Chose a competitor', 'No budget this year', 'Project postponed', 'Price too high', 'No decision maker'] as const;
const FEEDBACK_SUBJECTS: Record<string, readonly string[]> = {
  complaint: ['Late delivery', 'Damaged item on arrival', 'Charged twice', 'Rude phone support'],
  request: ['Change delivery address', 'Invoice with VAT number', 'Bulk order discount'],
  question: ['How do I return an item?', 'Is this compatible with my setup?', 'When is the next restock?'],
  praise: ['Great service', 'Fast delivery, thanks'],
  survey: ['Quarterly satisfaction survey'],
};
/** First-response and resolution targets by priority in hours (domain/feedback/sla.ts defaults), to place late answers. */
const SLA_HOURS = {
  urgent: [defaultSlaPolicy.urgent.firstResponseHours, defaultSlaPolicy.urgent.resolutionHours],
  high: [defaultSlaPolicy.high.firstResponseHours, defaultSlaPolicy.high.resolutionHours],
  normal: [defaultSlaPolicy.normal.firstResponseHours, defaultSlaPolicy.normal.resolutionHours],
  low: [defaultSlaPolicy.low.firstResponseHours, defaultSlaPolicy.low.resolutionHours],
} as const;

const money = (value: number) => Math.round(value * 100) / 100;
const iso = (t: number) => new Date(t).toISOString();
const isoDate = (t: number) => iso(t).slice(0, 10);
/** Office hours for staff actions: nudge a time to 08:00-18:00 UTC. */
const officeHours = (t: number, random: Random) => {
  const d = new Date(t);
  const h = d.getUTCHours();
  if (h >= 8 && h < 18) return t;
  d.setUTCHours(8 + Math.floor(random() * 9), Math.floor(random() * 60), 0, 0);
  return d.getTime() < t ? d.getTime() + DAY : d.getTime();
};

interface SimCustomer {
  id: string;
  index: number;
  since: number;
  consent: boolean;
  business: boolean;
  purchases: { orderId: string; at: number; amount: number }[];
}

export function buildDemoPlan(options: DemoOptions): DemoAction[] {
  const { seed, customers: customerCount } = options;
  const end = options.until.getTime();
  const start = end - 730 * DAY;
  const random = rng(seed);
  const actions: DemoAction[] = [];
  const key = (label: string) => demoKey(seed, customerCount, label);
  const add = (label: string, at: number, actor: DemoActor, command: DemoAction['command']) => {
    if (at <= end) actions.push({ key: key(label), at: new Date(Math.floor(at / 1000) * 1000), actor, command });
  };
  const staff = (userId: string, role: string): DemoActor => ({ userId, roles: [role] });
  const web: DemoActor = { userId: 'webshop', roles: ['system'] };

  // --- customers and their purchases -------------------------------------------------------
  const sims: SimCustomer[] = [];
  for (let i = 0; i < customerCount; i++) {
    const id = demoId(seed, `customer-${i}`);
    // Sign-ups grow over time: the square root skews them towards the recent past.
    const since = start + Math.sqrt(random()) * (end - start - 7 * DAY);
    const first = pick(random, FIRST_NAMES);
    const last = pick(random, LAST_NAMES);
    const business = chance(random, 0.3);
    const company = business ? pick(random, COMPANIES) : null;
    const consent = chance(random, 0.7);
    const tags = [...(business ? ['b2b'] : []), ...(consent && chance(random, 0.5) ? ['newsletter'] : []), ...(chance(random, 0.05) ? ['vip'] : [])];
    const sim: SimCustomer = { id, index: i, since, consent, business, purchases: [] };
    sims.push(sim);
    add(`customer-${i}:register`, since, web, {
      type: 'RegisterCustomer',
      customerId: id,
      name: `${first} ${last}`,
      email: `${first}.${last}.${i}@example.com`
        .toLowerCase()
        .normalize('NFD')
        // eslint-disable-next-line no-control-regex -- keeps ASCII only: the range starts at NUL on purpose
        .replace(/[^\x00-\x7f]/g, ''),
      phone: chance(random, 0.6) ? `+49 30 ${String(1_000_000 + Math.floor(random() * 8_999_999))}` : null,
      company,
      tags,
      source: pick(random, SOURCES),
      marketingConsent: consent,
    });

    // BG/NBD-style behaviour: rate lambda (per day), dropout p after each purchase, mean spend nu.
    // A cap keeps one hyperactive customer from dominating a month.
    const lambda = Math.min(gamma(random, 1.1, 1 / 40), 1 / 7);
    const dropout = beta(random, 1.2, 5);
    const meanSpend = (business ? 3 : 1) * gamma(random, 4, 15);
    const buysAtAll = chance(random, 0.85);
    let t = since + between(random, 0, 2) * HOUR;
    let alive = buysAtAll;
    let n = 0;
    while (alive && t <= end) {
      const amount = money(Math.max(5, gamma(random, 6, meanSpend / 6)));
      const orderId = `D${seed}-${i}-${n}`;
      sim.purchases.push({ orderId, at: t, amount });
      add(`customer-${i}:purchase-${n}`, t, web, { type: 'RecordPurchase', customerId: id, orderId, amount, currency: 'EUR' });
      // Some orders come back: a partial or full refund a few days later.
      if (chance(random, 0.04)) {
        const full = chance(random, 0.5);
        add(`customer-${i}:refund-${n}`, t + between(random, 2, 14) * DAY, staff(pick(random, SUPPORT), 'support'), {
          type: 'RefundPurchase',
          customerId: id,
          orderId,
          refundId: `R-${orderId}`,
          amount: full ? amount : money(amount * between(random, 0.1, 0.6)),
          currency: 'EUR',
          reason: full ? 'Returned within 14 days' : 'Partial return',
        });
      }
      n += 1;
      if (chance(random, dropout)) alive = false;
      // Next purchase: a Poisson process thinned by the season.
      for (;;) {
        t += (-Math.log(1 - random()) / (lambda * SEASON_MAX)) * DAY;
        if (t > end || random() < season(t) / SEASON_MAX) break;
      }
    }
    if (chance(random, 0.1)) {
      add(`customer-${i}:tag-loyal`, since + between(random, 30, 300) * DAY, staff(pick(random, SALES), 'sales'), {
        type: 'TagCustomer',
        customerId: id,
        tag: n >= 5 ? 'loyal' : 'follow-up',
      });
    }
    if (chance(random, 0.05)) {
      add(`customer-${i}:contact`, since + between(random, 10, 400) * DAY, web, {
        type: 'ChangeCustomerDetails',
        customerId: id,
        phone: `+49 40 ${String(1_000_000 + Math.floor(random() * 8_999_999))}`,
      });
    }
  }

  // Duplicates registered by mistake, then merged into the original.
  for (let k = 0; k < Math.max(1, Math.floor(customerCount / 250)); k++) {
    const primary = pick(random, sims);
    const duplicateId = demoId(seed, `duplicate-${k}`);
    const at = primary.since + between(random, 5, 60) * DAY;
    add(`duplicate-${k}:register`, at, web, {
      type: 'RegisterCustomer',
      customerId: duplicateId,
      name: `Duplicate ${k} of customer ${primary.index}`,
      email: `duplicate.${k}.${primary.index}@example.com`,
      phone: null,
      company: null,
      tags: [],
      source: 'web',
      marketingConsent: false,
    });
    add(`duplicate-${k}:merge`, at + between(random, 1, 10) * DAY, staff(pick(random, SUPPORT), 'support'), {
      type: 'MergeCustomer',
      customerId: primary.id,
      duplicateId,
    });
  }

  // --- deals through the pipeline -----------------------------------------------------------
  const dealCustomers = sims.filter((s) => s.business || chance(random, 0.05));
  let dealNo = 0;
  for (const sim of dealCustomers) {
    const deals = 1 + (chance(random, 0.3) ? 1 : 0);
    for (let d = 0; d < deals; d++) {
      const dealId = demoId(seed, `deal-${dealNo}`);
      const owner = pick(random, SALES);
      const seller = staff(owner, 'sales');
      let t = officeHours(sim.since + between(random, 1, 500) * DAY, random);
      if (t > end) continue;
      const amount = money(between(random, 2, 60) * 500);
      const label = `deal-${dealNo}`;
      dealNo += 1;
      add(`${label}:open`, t, seller, {
        type: 'OpenDeal',
        dealId,
        customerId: sim.id,
        title: `${pick(random, ['Annual supply', 'Pilot', 'Renewal', 'Upgrade', 'Framework agreement'])} ${isoDate(t).slice(0, 4)}`,
        amount,
        currency: 'EUR',
        ownerId: owner,
        expectedCloseDate: isoDate(t + between(random, 30, 120) * DAY),
      });
      // A discovery call the next day: staff engagement, one of the churn model's features.
      add(`${label}:call`, t + DAY, seller, {
        type: 'LogActivity',
        activityId: demoId(seed, `${label}-call`),
        dealId,
        kind: 'call',
        subject: 'Discovery call',
        body: 'Went through needs, budget and timing',
      });
      const path = ['qualified', 'proposal', 'negotiation'] as const;
      let stage: string = 'lead';
      let closed = false;
      for (const next of path) {
        t = officeHours(t + between(random, 3, 25) * DAY, random);
        // Deals fall out at every stage; the rest move on.
        if (chance(random, 0.22)) {
          add(`${label}:lost`, t, seller, { type: 'LoseDeal', dealId, reason: pick(random, LOST_REASONS) });
          closed = true;
          break;
        }
        add(`${label}:stage-${next}`, t, seller, { type: 'MoveDealStage', dealId, stage: next });
        stage = next;
      }
      if (!closed && stage === 'negotiation') {
        t = officeHours(t + between(random, 5, 30) * DAY, random);
        if (chance(random, 0.7)) {
          const final = money(amount * between(random, 0.85, 1.05));
          add(`${label}:won`, t, seller, { type: 'WinDeal', dealId, amount: final });
        } else {
          add(`${label}:lost`, t, seller, { type: 'LoseDeal', dealId, reason: pick(random, LOST_REASONS) });
        }
      }
    }
  }

  // --- campaigns with responses -------------------------------------------------------------
  const campaignPlans = [
    { name: 'Spring newsletter', channel: 'email', month: 2, budget: 1500 },
    { name: 'Summer sale SMS', channel: 'sms', month: 6, budget: 2500 },
    { name: 'Trade fair invitation', channel: 'event', month: 8, budget: 8000 },
    { name: 'Black Friday', channel: 'ads', month: 10, budget: 12000 },
    { name: 'Christmas newsletter', channel: 'email', month: 11, budget: 1800 },
    { name: 'Social giveaway', channel: 'social', month: 4, budget: 3000 },
  ] as const;
  const marketer = staff('maria.marketing', 'marketing');
  let campaignNo = 0;
  for (const year of [new Date(start).getUTCFullYear(), new Date(start).getUTCFullYear() + 1, new Date(start).getUTCFullYear() + 2]) {
    for (const plan of campaignPlans) {
      const launchAt = Date.UTC(year, plan.month, 3 + Math.floor(random() * 10), 9);
      const createdAt = launchAt - between(random, 10, 25) * DAY;
      if (createdAt < start || createdAt > end) continue;
      const campaignId = demoId(seed, `campaign-${campaignNo}`);
      const label = `campaign-${campaignNo}`;
      campaignNo += 1;
      const endsAt = launchAt + 21 * DAY;
      add(`${label}:create`, createdAt, marketer, {
        type: 'CreateCampaign',
        campaignId,
        name: `${plan.name} ${year}`,
        channel: plan.channel,
        budget: plan.budget,
        currency: 'EUR',
        schedule: null,
        targetSegment: { marketingConsentOnly: true },
      });
      add(`${label}:schedule`, createdAt + 2 * DAY, marketer, { type: 'ScheduleCampaign', campaignId, startsAt: iso(launchAt), endsAt: iso(endsAt) });
      // One campaign in eight is called off before it starts.
      if (chance(random, 0.12)) {
        add(`${label}:cancel`, createdAt + 5 * DAY, marketer, { type: 'CancelCampaign', campaignId, reason: 'Budget moved to another channel' });
        continue;
      }
      add(`${label}:launch`, launchAt, marketer, { type: 'LaunchCampaign', campaignId });
      add(`${label}:cost-0`, launchAt + HOUR, marketer, {
        type: 'RecordCampaignCost',
        campaignId,
        costId: `${label}-setup`,
        amount: money(plan.budget * between(random, 0.3, 0.5)),
        currency: 'EUR',
        description: 'Creative and setup',
      });
      add(`${label}:cost-1`, launchAt + 14 * DAY, marketer, {
        type: 'RecordCampaignCost',
        campaignId,
        costId: `${label}-media`,
        // Setup and media together stay within the budget (a cost beyond it needs allowOverBudget).
        amount: money(plan.budget * between(random, 0.3, 0.45)),
        currency: 'EUR',
        description: 'Media and delivery',
      });
      const audience = sims.filter((s) => s.consent && s.since < launchAt && chance(random, 0.3));
      for (const sim of audience) {
        const who = `${label}:customer-${sim.index}`;
        let t = launchAt + between(random, 0, 2) * HOUR;
        const respond = (kind: string, extra: Record<string, unknown> = {}) =>
          add(`${who}:${kind}`, t, marketer, { type: 'RecordCampaignResponse', campaignId, customerId: sim.id, kind, revenue: null, currency: null, ...extra });
        respond('sent');
        if (!chance(random, plan.channel === 'event' ? 0.3 : 0.45)) continue;
        t += between(random, 1, 72) * HOUR;
        respond('opened');
        if (chance(random, 0.03)) {
          t += between(random, 0, 2) * HOUR;
          respond('unsubscribed');
          continue;
        }
        if (!chance(random, 0.35)) continue;
        t += between(random, 0, 3) * HOUR;
        respond('clicked');
        if (!chance(random, 0.25)) continue;
        t += between(random, 1, 96) * HOUR;
        respond('converted', { revenue: money(gamma(random, 5, 12)), currency: 'EUR' });
      }
      add(`${label}:complete`, endsAt, marketer, { type: 'CompleteCampaign', campaignId });
    }
  }

  // --- feedback with SLA breaches ------------------------------------------------------------
  let feedbackNo = 0;
  for (const sim of sims) {
    if (!chance(random, 0.4)) continue;
    const count = chance(random, 0.2) ? 2 : 1;
    for (let f = 0; f < count; f++) {
      const kind = pick(random, ['complaint', 'complaint', 'request', 'question', 'question', 'praise', 'survey'] as const);
      const priority = kind === 'complaint' ? pick(random, ['normal', 'high', 'high', 'urgent'] as const) : pick(random, ['low', 'normal', 'normal'] as const);
      const feedbackId = demoId(seed, `feedback-${feedbackNo}`);
      const label = `feedback-${feedbackNo}`;
      feedbackNo += 1;
      let t = sim.since + random() * (end - sim.since);
      const agent = pick(random, SUPPORT);
      const support = staff(agent, 'support');
      const survey = kind === 'survey';
      add(
        `${label}:submit`,
        t,
        { userId: `customer:${sim.index}`, roles: ['system'] },
        {
          type: 'SubmitFeedback',
          feedbackId,
          customerId: sim.id,
          kind,
          channel: pick(random, ['email', 'email', 'phone', 'chat', 'web', 'social'] as const),
          subject: pick(random, FEEDBACK_SUBJECTS[kind] as readonly string[]),
          body: `Customer ${sim.index} wrote about "${kind}" (demo text).`,
          priority,
          csat: survey ? 1 + Math.min(4, Math.floor(gamma(random, 6, 0.6))) : null,
          nps: survey ? Math.min(10, Math.floor(between(random, 3, 11))) : null,
        },
      );
      const [responseHours, resolutionHours] = SLA_HOURS[priority];
      // Most tickets are answered in time; about one in six misses its first-response target.
      const late = chance(random, 0.17);
      const recent = end - t < 3 * DAY;
      if (recent && chance(random, 0.6)) continue; // still waiting in the queue
      t += between(random, 0.05, 0.5) * responseHours * HOUR;
      add(`${label}:assign`, t, support, { type: 'AssignFeedback', feedbackId, assigneeId: agent });
      t += (late ? between(random, 1.1, 3) : between(random, 0.1, 0.8)) * responseHours * HOUR;
      add(`${label}:respond`, t, support, {
        type: 'RespondToFeedback',
        feedbackId,
        message: 'Thank you for reaching out; we are looking into it.',
      });
      if (kind === 'complaint' && priority !== 'urgent' && chance(random, 0.12)) {
        t += between(random, 1, 12) * HOUR;
        add(`${label}:escalate`, t, support, { type: 'EscalateFeedback', feedbackId, reason: 'Customer asked for a manager' });
      }
      const resolveLate = late ? chance(random, 0.6) : chance(random, 0.08);
      t += (resolveLate ? between(random, 1.1, 2.5) : between(random, 0.2, 0.9)) * resolutionHours * HOUR;
      if (t > end) continue;
      add(`${label}:resolve`, t, support, {
        type: 'ResolveFeedback',
        feedbackId,
        resolution: pick(random, ['Refund issued', 'Replacement sent', 'Question answered', 'Account updated', 'Explained the policy']),
      });
      if (chance(random, 0.55)) {
        add(
          `${label}:rate`,
          t + between(random, 2, 48) * HOUR,
          { userId: `customer:${sim.index}`, roles: ['system'] },
          {
            type: 'RateFeedback',
            feedbackId,
            csat: late ? pick(random, [1, 2, 2, 3, 3, 4]) : pick(random, [3, 4, 4, 5, 5, 5]),
            comment: null,
          },
        );
      }
      if (chance(random, 0.8)) add(`${label}:close`, t + between(random, 3, 7) * DAY, support, { type: 'CloseFeedback', feedbackId });
    }
  }

  // A few people close their account, one asks to be forgotten: last, so nothing of theirs follows.
  for (let k = 0; k < Math.max(1, Math.floor(customerCount / 200)); k++) {
    const sim = sims[Math.floor(random() * sims.length)] as SimCustomer;
    add(`customer-${sim.index}:deactivate`, end, staff(pick(random, SUPPORT), 'support'), {
      type: 'DeactivateCustomer',
      customerId: sim.id,
      reason: 'Customer closed the account',
    });
  }
  if (sims.length > 1) {
    const sim = sims[sims.length - 1] as SimCustomer;
    add(`customer-${sim.index}:forget`, end, staff('dpo', 'admin'), { type: 'ForgetCustomer', customerId: sim.id });
  }

  // Business-time order; ties keep generation order (each stream's steps are generated in order).
  const ordered = actions
    .map((action, index) => ({ action, index }))
    .sort((x, y) => x.action.at.getTime() - y.action.at.getTime() || x.index - y.index)
    .map(({ action }) => action);
  return withoutSendsAfterUnsubscribe(ordered);
}

/**
 * Every demo campaign goes to customers who consent, and an unsubscribe withdraws the consent: a
 * campaign generated earlier but sent later (the plans are not in calendar order) would be refused
 * (`campaign.marketing_consent_required`). Such a send is left out, with the responses that followed it.
 */
function withoutSendsAfterUnsubscribe(plan: DemoAction[]): DemoAction[] {
  const unsubscribed = new Set<string>();
  const notSent = new Set<string>();
  return plan.filter(({ command }) => {
    if (command.type !== 'RecordCampaignResponse') return true;
    const customer = String(command.customerId);
    const delivery = `${String(command.campaignId)}:${customer}`;
    if (notSent.has(delivery)) return false;
    if (command.kind === 'sent' && unsubscribed.has(customer)) {
      notSent.add(delivery);
      return false;
    }
    if (command.kind === 'unsubscribed') unsubscribed.add(customer);
    return true;
  });
}

/** How the plan breaks down, for the summary line. */
export const summarizePlan = (plan: DemoAction[]): Record<string, number> => {
  const counts: Record<string, number> = {};
  for (const action of plan) counts[action.command.type] = (counts[action.command.type] ?? 0) + 1;
  return counts;
};
