import type { FastifyPluginAsync } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { DEFAULT_BASE_CURRENCY } from '../../domain/exchange-rate/events.ts';
import { IsoDateTime, MultiLineText, SafeText } from '../../domain/shared.ts';
import type { RouteContext } from '../route-context.ts';
import { awaitReadModels, CommandHeaders, executeCommand, PositionString, WaitForQuery } from '../http.ts';
import { ProblemError, problemResponses } from '../problems.ts';

const tags = ['exchange-rates'];
const CurrencyCode = z.string().regex(/^[A-Z]{3}$/, 'an ISO 4217 code such as JPY');

/**
 * The body as documented; the command layer (domain/exchange-rate/commands.ts) checks the rate's
 * precision and range and refuses the base currency itself, each as a 4xx naming the field.
 */
const SetRateBody = z.strictObject({
  currency: CurrencyCode.describe('ISO 4217 code of the currency the rate is for (not the base currency)'),
  rate: z
    .union([z.number(), SafeText.max(40)])
    .describe('Units of the base currency per unit of `currency`: a positive decimal, at most 10 decimals (a number or a decimal string)'),
  validFrom: IsoDateTime.describe('Business time from which the rate applies (until the next rate of the currency)'),
  reason: MultiLineText.max(2000).optional().describe('Why, e.g. the source of the rate or why a correction was needed'),
});

const RateAccepted = z.object({
  id: z.string().describe('The currency (its rates are one stream)'),
  currency: z.string(),
  baseCurrency: z.string(),
  revision: z.number().int(),
  position: PositionString,
});

export const exchangeRateRoutes: FastifyPluginAsync<RouteContext> = async (app, context) => {
  const baseCurrency = context.deps.baseCurrency ?? DEFAULT_BASE_CURRENCY;
  const typed = app.withTypeProvider<ZodTypeProvider>();

  typed.post(
    '/exchange-rates',
    {
      schema: {
        operationId: 'setExchangeRate',
        tags,
        summary: 'Set the rate of a currency to the base currency from a business time; the same validFrom again is a correction (history kept)',
        description: `Base currency: ${baseCurrency} (CRM_BASE_CURRENCY). Setting the same rate again records nothing. Roles: admin.`,
        headers: CommandHeaders,
        ifMatchHeader: 'forbidden',
        body: SetRateBody,
        response: { 201: RateAccepted, ...problemResponses(400, 401, 403, 409, 422, 429, 503) },
        responseHeaders: { 201: ['etag', 'location'] },
      },
    },
    async (request, reply) => {
      const { reason, ...body } = request.body;
      const accepted = await executeCommand(request, reply, context, {
        command: { type: 'SetExchangeRate', ...body, baseCurrency, ...(reason !== undefined ? { reason } : {}) },
        status: 201,
        // Like a creation: rates are facts added to the currency's history, not edits of a record read before.
        ifMatch: 'forbidden',
        location: (currency) => `/exchange-rates?currency=${currency}`,
      });
      return { ...accepted, currency: body.currency, baseCurrency };
    },
  );

  typed.get(
    '/exchange-rates',
    {
      schema: {
        operationId: 'listExchangeRates',
        tags,
        summary: 'Rates to the base currency: those valid at ?at= (one per currency), or without it every rate and every correction',
        querystring: z.strictObject({
          currency: CurrencyCode.optional(),
          at: IsoDateTime.optional().describe('Business time: the rate valid then (the latest validFrom at or before it)'),
          ...WaitForQuery,
        }),
        response: { 200: z.looseObject({}), ...problemResponses(400, 401, 403, 429, 503) },
      },
    },
    async (request) => {
      const { waitFor, ...query } = request.query;
      await awaitReadModels(context.deps.projections, waitFor, context.waitForTimeoutMs);
      if (!context.deps.queries?.exchangeRates) throw new ProblemError('unavailable', 'The read models are not configured in this process.');
      return context.deps.queries.exchangeRates(query);
    },
  );
};
