import type { Decider } from '../decider.ts';
import { dictionary, entryOf, setEntry } from '../entries.ts';
import { ruleViolated } from '../errors.ts';
import type { ExchangeRateCommand } from './commands.ts';
import type { ExchangeRateEvent } from './events.ts';

export interface ExchangeRateState {
  currency: string | null;
  /** The rate in force from each `validFrom` (instant in ms, as text), per base currency: the latest fact wins. */
  rates: Record<string, string>;
}

export const initialExchangeRateState = (): ExchangeRateState => ({ currency: null, rates: dictionary() });

/** `validFrom` spelt differently ('+01:00' or 'Z') is the same instant: keyed by base and epoch ms. */
const keyOf = (baseCurrency: string, validFrom: string): string => `${baseCurrency}@${Date.parse(validFrom)}`;

export const evolveExchangeRate = (state: ExchangeRateState, event: ExchangeRateEvent): ExchangeRateState => {
  const d = event.data;
  setEntry(state.rates, keyOf(d.baseCurrency, d.validFrom), d.rate);
  return { currency: d.currency, rates: state.rates };
};

export const decideExchangeRate = (command: ExchangeRateCommand, state: ExchangeRateState): ExchangeRateEvent[] => {
  if (command.currency === command.baseCurrency)
    throw ruleViolated('exchange_rate.base_currency', `${command.currency} is the base currency: its rate is 1 by definition`, 'currency');
  const previous = entryOf(state.rates, keyOf(command.baseCurrency, command.validFrom)) ?? null;
  // The same rate again (a re-import, a retried upload) records nothing.
  if (previous === command.rate) return [];
  return [
    {
      type: 'ExchangeRateSet',
      data: {
        currency: command.currency,
        baseCurrency: command.baseCurrency,
        rate: command.rate,
        validFrom: command.validFrom,
        previousRate: previous,
      },
    },
  ];
};

export const exchangeRateDecider: Decider<ExchangeRateCommand, ExchangeRateEvent, ExchangeRateState> = {
  initialState: initialExchangeRateState,
  evolve: evolveExchangeRate,
  decide: decideExchangeRate,
};
