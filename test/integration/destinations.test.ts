import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createDestinationGuard, parseNetwork, parseNetworks, type DestinationGuard } from '../../integration/destinations.ts';

describe('webhook destinations', () => {
  let guard: DestinationGuard;
  // Made in each test, not once when the file is read: what it is made of is what the tests check.
  beforeEach(() => {
    guard = createDestinationGuard();
  });

  it('refuses loopback, private, link-local, shared, reserved and documentation addresses, IPv4 and IPv6, and lets public ones through', () => {
    const refused = {
      '127.0.0.1': 'loopback',
      '::1': 'loopback',
      '10.200.1.1': 'private',
      '172.31.255.255': 'private',
      '192.168.0.10': 'private',
      'fd12:3456::1': 'private',
      '169.254.169.254': 'link-local',
      'fe80::1': 'link-local',
      '100.100.100.200': 'carrier-grade NAT',
      '0.0.0.0': 'unspecified',
      '::': 'unspecified',
      '224.0.0.1': 'multicast',
      '255.255.255.255': 'multicast or reserved',
      '198.51.100.7': 'documentation',
      '2001:db8::1': 'documentation',
      // IPv4-mapped IPv6 is the IPv4 address.
      '::ffff:127.0.0.1': 'loopback',
      '::ffff:a9fe:a9fe': 'link-local',
    };
    for (const [address, kind] of Object.entries(refused)) expect(guard.refusal(address), address).toContain(kind);
    for (const address of ['93.184.216.34', '8.8.8.8', '172.32.0.1', '100.128.0.1', '2606:4700::1111', '::ffff:8.8.8.8']) {
      expect(guard.refusal(address), address).toBeNull();
    }
  });

  it('refuses an IPv6 address that stands for a refused IPv4 one (NAT64, 6to4, IPv4-translated, Teredo), and lets those of public ones through', () => {
    const refused = {
      // NAT64 well-known prefix 64:ff9b::/96 (RFC 6052) to 10.0.0.1 and 127.0.0.1.
      '64:ff9b::a00:1': '10.0.0.1, a private',
      '64:ff9b::127.0.0.1': '127.0.0.1, a loopback',
      // 6to4 2002::/16 (RFC 3056): the IPv4 address is the next 32 bits.
      '2002:7f00:1::': '127.0.0.1, a loopback',
      '2002:a9fe:a9fe::1': '169.254.169.254, a link-local',
      // IPv4-translated ::ffff:0:0:0/96 (RFC 2765).
      '::ffff:0:7f00:1': '127.0.0.1, a loopback',
      '::ffff:0:c0a8:1': '192.168.0.1, a private',
      // Teredo 2001::/32 (RFC 4380): the client's address is the last 32 bits inverted.
      '2001:0:4136:e378:8000:63bf:80ff:fffe': '127.0.0.1, a loopback',
    };
    for (const [address, inner] of Object.entries(refused)) expect(guard.refusal(address), address).toContain(`stands for ${inner}`);
    for (const address of ['64:ff9b::808:808', '2002:808:808::1', '::ffff:0:808:808', '2001:0:4136:e378:8000:63bf:f7f7:f7f7']) {
      expect(guard.refusal(address), address).toBeNull();
    }
    // The operator's allowed networks apply to the address it stands for.
    expect(createDestinationGuard([parseNetwork('10.0.0.0/8')!]).refusal('64:ff9b::a00:1')).toBeNull();
    for (const url of ['http://[64:ff9b::a00:1]/', 'http://[2002:7f00:1::]/', 'http://[::ffff:0:7f00:1]/'])
      expect(guard.urlRefusal(url), url).toContain('stands for');
  });

  it('refuses port 0 in a URL', () => {
    for (const url of ['https://example.com:0/', 'http://example.com:000/x', 'http://93.184.216.34:0/']) expect(guard.urlRefusal(url), url).toContain('port 0');
    expect(guard.urlRefusal('https://example.com:8443/')).toBeNull();
  });

  it('lets through exactly the networks the operator allows', () => {
    const allowing = createDestinationGuard([parseNetwork('10.1.0.0/16')!, parseNetwork('::1')!]);
    expect(allowing.refusal('10.1.2.3')).toBeNull();
    expect(allowing.refusal('10.2.0.1')).toContain('private');
    expect(allowing.refusal('::1')).toBeNull();
    expect(allowing.refusal('127.0.0.1')).toContain('loopback');
  });

  it('reads a URL as delivery would: IP literals in any spelling and localhost names are refused before any lookup, other names are left to the lookup', () => {
    for (const url of [
      'http://127.1/',
      'http://2130706433/',
      'http://0x7f000001/',
      'http://[::ffff:7f00:1]:8080/',
      'http://LOCALHOST./x',
      'https://api.localhost/',
    ]) {
      expect(guard.urlRefusal(url), url).toContain('loopback');
    }
    expect(guard.urlRefusal('https://hooks.example.com/crm')).toBeNull();
    expect(guard.urlRefusal('https://[2606:4700::1111]/crm')).toBeNull();
    // Not a URL: nothing to refuse here (the URL's own validation refuses it).
    expect(guard.urlRefusal('not a url')).toBeNull();
    expect(guard.urlRefusal('https://93.184.216.34/crm')).toBeNull();
  });

  it('parses the allowed networks, saying which entry is wrong', () => {
    expect(parseNetworks(' 10.0.0.0/8, fd00::/8 ,127.0.0.1,')).toEqual({
      networks: [
        { address: '10.0.0.0', prefix: 8, family: 'ipv4' },
        { address: 'fd00::', prefix: 8, family: 'ipv6' },
        { address: '127.0.0.1', prefix: 32, family: 'ipv4' },
      ],
    });
    expect(parseNetworks('')).toEqual({ networks: [] });
    expect(parseNetworks('10.0.0.0/8, , ::1')).toEqual({ networks: [parseNetwork('10.0.0.0/8'), parseNetwork('::1')] });
    for (const wrong of ['10.0.0.0/33', 'intranet', '10.0.0.0/8/1', '::1/129', '10.0.0.0/x', '10.0.0.0/8x', '10.0.0.0/x8', '10.0.0.0/0008', '10.0.0.0/']) {
      expect(parseNetworks(`192.168.0.0/16,${wrong}`)).toEqual({ error: expect.stringContaining(`"${wrong}"`) });
    }
  });

  describe('the lookup a delivery connects through', () => {
    let server: Server;
    let port: number;
    beforeAll(async () => {
      server = createServer((_req, res) => res.end('reached'));
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      port = (server.address() as AddressInfo).port;
    });
    afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

    /** A GET to localhost with the guard's lookup (the URL check skipped): what a name resolving to loopback meets. */
    const get = (lookup: ReturnType<typeof createDestinationGuard>['lookup']) =>
      new Promise<string>((resolve) => {
        const req = request({ host: 'localhost', port, path: '/', lookup, agent: false }, (res) => {
          let body = '';
          res.on('data', (chunk: Buffer) => (body += chunk.toString()));
          res.on('end', () => resolve(`answered: ${body}`));
        });
        req.on('error', (error) => resolve(`error: ${error.message}`));
        req.end();
      });

    it('refuses to connect when every address of the name is refused, saying which and why', async () => {
      expect(await get(guard.lookup)).toMatch(/^error: localhost: 127\.0\.0\.1 is a loopback address: .*CRM_WEBHOOK_ALLOW_NETWORKS/);
    });

    it('connects when the operator allows the network', async () => {
      expect(await get(createDestinationGuard([parseNetwork('127.0.0.0/8')!]).lookup)).toBe('answered: reached');
    });

    it("answers as dns.lookup does: one address unless all are asked for, and the resolver's own error for a name with none", async () => {
      const { lookup } = createDestinationGuard([parseNetwork('127.0.0.0/8')!]);
      const one = await new Promise<unknown[]>((resolve) => lookup('localhost', { family: 4 }, (...answer) => resolve(answer)));
      expect(one).toEqual([null, '127.0.0.1', 4]);
      const all = await new Promise<unknown[]>((resolve) => lookup('localhost', { family: 4, all: true }, (...answer) => resolve(answer)));
      expect(all).toEqual([null, [{ address: '127.0.0.1', family: 4 }]]);
      const missing = await new Promise<unknown[]>((resolve) => lookup('no-such-host.invalid', { all: true }, (...answer) => resolve(answer)));
      expect((missing[0] as NodeJS.ErrnoException).code).toBe('ENOTFOUND');
    });
  });
});
