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
