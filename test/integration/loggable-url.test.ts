import { describe, expect, it } from 'vitest';
import { loggableUrl } from '../../integration/loggable-url.ts';

/** What the process log may say of a webhook URL: the receiver, never its credential. */
describe('a webhook URL as the log shows it', () => {
  it('names scheme, host and port, and leaves out user, password and fragment', () => {
    expect(loggableUrl('https://hookuser:pw-123@Hooks.Example.com:8443/crm#section')).toBe('https://hooks.example.com:8443/crm');
    expect(loggableUrl('https://hooks.example.com:443/crm')).toBe('https://hooks.example.com/crm');
    expect(loggableUrl('http://[::1]:4100/')).toBe('http://[::1]:4100/');
  });

  it('masks path segments that read like tokens, keeping the ones that read like names', () => {
    expect(loggableUrl('https://hooks.slack.com/services/T01ABCDEF/B02GHIJKL/aBcD1234eFgH5678iJkL9012')).toBe('https://hooks.slack.com/services/***/***/***');
    expect(loggableUrl('https://discord.com/api/webhooks/123456789012345678/Xy_9-abcdefghijklmnopqrstuvwxyz0123456789')).toBe(
      'https://discord.com/api/webhooks/123456789012345678/***',
    );
    expect(loggableUrl('https://n8n.example.com/webhook/2f1c0a4e-7b5d-4c1a-9e3f-0d2b6a8c4e11')).toBe('https://n8n.example.com/webhook/***');
    // Letters only, but as long as a token.
    expect(loggableUrl('https://example.com/hooks/qwertyuiopasdfghjklzx')).toBe('https://example.com/hooks/***');
    expect(loggableUrl('https://example.com/api/v2/crm-events/12345/')).toBe('https://example.com/api/v2/crm-events/12345/');
  });

  it('masks every query value, keeping the keys unless a key itself reads like a token', () => {
    expect(loggableUrl('https://example.com/hook?token=abc&channel=crm&empty=')).toBe('https://example.com/hook?token=***&channel=***&empty=***');
    expect(loggableUrl('https://example.com/hook?aBcD1234eFgH5678&debug')).toBe('https://example.com/hook?***&debug');
    expect(loggableUrl('https://example.com/hook?')).toBe('https://example.com/hook');
  });

  it('says so when the text is not a URL', () => {
    expect(loggableUrl('not a url')).toBe('(not a URL)');
  });
});
