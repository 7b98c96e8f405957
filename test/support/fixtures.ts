import { customerIdUnder } from '../../commands/ids.ts';
/** Event data the tests of several folders record: one well-formed customer, overridable field by field. */
export const customerRegistered = (customerId: string, overrides: Record<string, unknown> = {}) => ({
  customerId,
  name: 'Ada Lovelace',
  email: 'ada@example.com',
  phone: '+44 20 7946 0000',
  company: 'Analytical Engines',
  tags: ['vip'],
  source: 'web',
  marketingConsent: true,
  ...overrides,
});

/** The key that batches built by tests derive imported customers' ids under (a runtime's is its email index's). */
export const TEST_CUSTOMER_ID_KEY = Buffer.alloc(32, 0x5a);
/** The id an import through such a batch gives a customer named by address alone. */
export const importedCustomerId = (email: string): string => customerIdUnder(TEST_CUSTOMER_ID_KEY, email);
