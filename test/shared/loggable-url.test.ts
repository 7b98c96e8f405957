import { describe, expect, it } from 'vitest';
import { loggableUrl } from '../../shared/loggable-url.ts';

/** What the service may print of a URL (a webhook receiver, a server it connects to): the server, never its credential. */
describe('a URL as the service prints it', () => {
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

  // After a restore or a move the operator confirms from the banner which database was opened: names
  // that read like tokens to the path rule (mixed case, digits) were printed as ***.
  it("shows a PostgreSQL URL's database name whole, masking only credentials and token-like settings", () => {
    expect(loggableUrl('postgres://crm:s3cret@127.0.0.1:5432/probe_restore2')).toBe('postgres://127.0.0.1:5432/probe_restore2');
    expect(loggableUrl('postgres://127.0.0.1/crm_prod2')).toBe('postgres://127.0.0.1:5432/crm_prod2');
    expect(loggableUrl('postgresql://db.internal/crmStaging?sslmode=require&application_name=crm')).toBe(
      'postgresql://db.internal:5432/crmStaging?sslmode=require&application_name=crm',
    );
    expect(loggableUrl('postgres://db/crm?password=hunter2&sslpassword=fish&sslmode=verify-full')).toBe(
      'postgres://db:5432/crm?password=***&sslpassword=***&sslmode=verify-full',
    );
    // A value or key that reads like a token is masked whatever its key.
    expect(loggableUrl('postgres://db/crm?options=aBcD1234eFgH5678iJkL9012&aBcD1234eFgH=x')).toBe('postgres://db:5432/crm?options=***&***=***');
    // Other URLs keep the path rule: a webhook's token-like segment is masked.
    expect(loggableUrl('https://example.com/crm_prod2')).toBe('https://example.com/***');
  });

  it('says so when the text is not a URL', () => {
    expect(loggableUrl('not a url')).toBe('(not a URL)');
  });

  // Every server URL the service prints goes through loggableUrl; these are the connection strings'
  // shapes, with a password the WHATWG parser alone would split wrongly.
  const PASSWORDS = [
    'hunter/fish',
    '/hunterfish',
    'hunter@fish',
    'hunter@/fish',
    'hunter?fish',
    'hunter#fish',
    'hunter:fish',
    'hunter%2Ffish',
    'hunter%40fish',
    'hunter\\fish',
    '12/hunterfish',
    '12#hunterfish',
    '12?hunter@fish',
  ];

  it.each(PASSWORDS)('never shows the password %s of a database, Redis, EventStoreDB or NATS URL, and names the server', (password) => {
    const cases: Array<[string, string]> = [
      [`postgres://crm:${password}@db.internal:6543/crm`, 'postgres://db.internal:6543/crm'],
      [`postgresql://crm:${password}@127.0.0.1/test?sslmode=disable`, 'postgresql://127.0.0.1:5432/test?sslmode=disable'],
      [`postgres://crm@127.0.0.1/crm_prod2?password=${encodeURIComponent(password)}`, 'postgres://127.0.0.1:5432/crm_prod2?password=***'],
      [`redis://:${password}@cache.internal:6380/0`, 'redis://cache.internal:6380/0'],
      [`rediss://default:${password}@cache.internal`, 'rediss://cache.internal:6379'],
      [`esdb://admin:${password}@host:2113?tls=false`, 'esdb://host:2113?tls=***'],
      [`esdb+discover://admin:${password}@cluster.internal:2113`, 'esdb+discover://cluster.internal:2113'],
      [`nats://crm:${password}@127.0.0.1:4222`, 'nats://127.0.0.1:4222'],
      [`https://hook:${password}@hooks.example.com/crm`, 'https://hooks.example.com/crm'],
    ];
    for (const [url, shown] of cases) {
      expect(loggableUrl(url), url).toBe(shown);
      expect(loggableUrl(url), url).not.toMatch(/hunter|fish/);
    }
  });

  it('names the host a delivery went to for a URL an HTTP client reads as the WHATWG parser does (a webhook), whatever @ its path, query or fragment holds', () => {
    expect(loggableUrl('http://example.com/a#@127.0.0.1/', { asDelivered: true })).toBe('http://example.com/a');
    expect(loggableUrl('https://hooks.example.com/notify?email=ops@example.com', { asDelivered: true })).toBe('https://hooks.example.com/notify?email=***');
    expect(loggableUrl('https://hook:s3cret@hooks.example.com/crm', { asDelivered: true })).toBe('https://hooks.example.com/crm');
    // A connection string is read as its server's client reads it: the last @ ends the userinfo.
    expect(loggableUrl('http://example.com/a#@127.0.0.1/')).toBe('http://127.0.0.1/');
  });

  it('names the port a client uses when the URL gives none, for the servers the CRM connects to', () => {
    expect(loggableUrl('postgres://db.example/crm')).toBe('postgres://db.example:5432/crm');
    expect(loggableUrl('redis://127.0.0.1')).toBe('redis://127.0.0.1:6379');
    expect(loggableUrl('esdb://localhost?tls=false')).toBe('esdb://localhost:2113?tls=***');
    expect(loggableUrl('nats://127.0.0.1')).toBe('nats://127.0.0.1:4222');
  });

  it('shows a list of hosts (EventStoreDB gossip seeds), which is not one URL, without its credentials', () => {
    expect(loggableUrl('esdb://admin:pa/ss@a.internal:2113,b.internal:2113,c.internal:2113?tls=false&nodePreference=leader')).toBe(
      // `nodePreference` reads like a token (long, mixed case): masked as one.
      'esdb://a.internal:2113,b.internal:2113,c.internal:2113?tls=***&***=***',
    );
    expect(loggableUrl('esdb://a:2113,b:2113')).toBe('esdb://a:2113,b:2113');
  });

  it('shows nothing of a text it cannot tell the server of', () => {
    expect(loggableUrl('postgres:crm:secret@db/crm')).toBe('(not a URL)');
    expect(loggableUrl('crm:secret@db.internal')).toBe('(not a URL)');
    expect(loggableUrl('esdb://admin:pa ss@a b')).toBe('(not a URL)');
  });
});
