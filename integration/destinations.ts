import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { BlockList, isIP, type LookupFunction } from 'node:net';

/**
 * Where webhook deliveries may go. A subscription's URL comes from an admin key, but the POST leaves
 * from inside the network the CRM runs in: unguarded, a subscription could reach the cloud metadata
 * service (169.254.169.254), the database or an internal admin page, and the delivery log would report
 * what answered. Addresses outside the public internet (IANA's special-purpose ranges) are refused
 * unless the operator allows their network (`CRM_WEBHOOK_ALLOW_NETWORKS`). The address checked is the
 * one connected to, after DNS: a name that resolves, or later re-resolves, to a private address is
 * refused as well.
 */

/** An address range, as written: `10.0.0.0/8`, `fd00::/8`, or one address. */
export interface Network {
  address: string;
  prefix: number;
  family: 'ipv4' | 'ipv6';
}

/** The ranges refused by default, each with what it is (for the refusal's message). */
const NON_PUBLIC: readonly [kind: string, cidrs: readonly string[]][] = [
  ['a loopback', ['127.0.0.0/8', '::1/128']],
  ['a private', ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', 'fc00::/7']],
  ['a link-local (cloud metadata)', ['169.254.0.0/16', 'fe80::/10']],
  ['a carrier-grade NAT', ['100.64.0.0/10']],
  ['an unspecified or "this network"', ['0.0.0.0/8', '::/96']],
  ['a multicast or reserved', ['224.0.0.0/4', '240.0.0.0/4', 'ff00::/8', 'fec0::/10', '100::/64']],
  [
    'a documentation, benchmarking or protocol',
    ['192.0.0.0/24', '192.0.2.0/24', '192.88.99.0/24', '198.18.0.0/15', '198.51.100.0/24', '203.0.113.0/24', '2001:db8::/32', '64:ff9b:1::/48'],
  ],
];

const UNLESS_ALLOWED = 'deliveries go to public addresses unless CRM_WEBHOOK_ALLOW_NETWORKS allows its network';

const NETWORK_SYNTAX = 'addresses or CIDR ranges separated by commas, e.g. 10.0.0.0/8,fd00::/8';

/** `10.0.0.0/8` or `10.1.2.3` (a single address) -> Network; undefined when it is neither. */
export const parseNetwork = (text: string): Network | undefined => {
  const [address = '', prefixText, extra] = text.split('/');
  const version = isIP(address);
  if (version === 0 || extra !== undefined) return undefined;
  const bits = version === 4 ? 32 : 128;
  if (prefixText !== undefined && !/^\d{1,3}$/.test(prefixText)) return undefined;
  const prefix = prefixText === undefined ? bits : Number(prefixText);
  if (prefix > bits) return undefined;
  return { address, prefix, family: version === 4 ? 'ipv4' : 'ipv6' };
};

/** A comma-separated list of networks (empty: none); the message says what is wrong with which entry. */
export const parseNetworks = (text: string): { networks: Network[] } | { error: string } => {
  const networks: Network[] = [];
  for (const entry of text.split(',').map((e) => e.trim())) {
    if (entry === '') continue;
    const network = parseNetwork(entry);
    if (!network) return { error: `"${entry}" is not an address or a CIDR range (${NETWORK_SYNTAX})` };
    networks.push(network);
  }
  return { networks };
};

const blockListOf = (networks: readonly Network[]): BlockList => {
  const list = new BlockList();
  for (const n of networks) list.addSubnet(n.address, n.prefix, n.family);
  return list;
};

const REFUSED_RANGES = NON_PUBLIC.map(([kind, cidrs]) => ({ kind, list: blockListOf(cidrs.map((c) => parseNetwork(c)!)) }));

/** The eight 16-bit groups of an IPv6 address (a zone and a trailing dotted IPv4 part allowed). */
const ipv6Groups = (address: string): number[] => {
  let text = address.split('%')[0]!;
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (dotted) {
    const [a, b, c, d] = dotted.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, dotted.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = '', rest] = text.split('::');
  const before = head === '' ? [] : head.split(':');
  const after = rest === undefined || rest === '' ? [] : rest.split(':');
  const groups = rest === undefined ? before : [...before, ...Array<string>(8 - before.length - after.length).fill('0'), ...after];
  return groups.map((g) => parseInt(g, 16));
};

const ipv4Of = (high: number, low: number): string => `${high >> 8}.${high & 0xff}.${low >> 8}.${low & 0xff}`;

/**
 * The IPv4 address an IPv6 address stands for, where the prefix says it carries one that a gateway
 * or relay connects to: NAT64 (64:ff9b::/96, RFC 6052), 6to4 (2002::/16, RFC 3056), IPv4-translated
 * (::ffff:0:0:0/96, RFC 2765) and Teredo (2001::/32, the client's address inverted, RFC 4380). (IPv4-mapped
 * ::ffff:0:0/96 is the IPv4 address itself to BlockList.) Undefined for any other address.
 */
const embeddedIpv4 = (address: string): string | undefined => {
  const g = ipv6Groups(address);
  if (g.length !== 8 || g.some((x) => Number.isNaN(x))) return undefined;
  const zero = (from: number, to: number) => g.slice(from, to).every((x) => x === 0);
  if (g[0] === 0x64 && g[1] === 0xff9b && zero(2, 6)) return ipv4Of(g[6]!, g[7]!);
  if (g[0] === 0x2002) return ipv4Of(g[1]!, g[2]!);
  if (zero(0, 4) && g[4] === 0xffff && g[5] === 0) return ipv4Of(g[6]!, g[7]!);
  if (g[0] === 0x2001 && g[1] === 0) return ipv4Of(g[6]! ^ 0xffff, g[7]! ^ 0xffff);
  return undefined;
};

/** An IP literal from a URL's host (`[::1]` -> `::1`), or undefined for a name. */
const literalAddress = (hostname: string): string | undefined => {
  const bare = hostname.replace(/^\[(.*)\]$/, '$1');
  return isIP(bare) === 0 ? undefined : bare;
};

export interface DestinationGuard {
  /** Why deliveries may not go to this IP address, or null when they may. */
  refusal(address: string): string | null;
  /**
   * The same for a URL's host (`URL.hostname`), as far as it can be told without DNS: an IP literal or
   * a `localhost` name. Other names are checked when each delivery connects (`lookup`).
   */
  hostRefusal(hostname: string): string | null;
  /** `hostRefusal` of a URL given as text (null when it is no URL: its validation refuses it). */
  urlRefusal(url: string): string | null;
  /** `dns.lookup` for the delivery's socket: only the addresses `refusal` lets through, else an error saying why. */
  lookup: LookupFunction;
}

export const createDestinationGuard = (allowed: readonly Network[] = []): DestinationGuard => {
  const allowedList = blockListOf(allowed);
  const familyOf = (address: string) => (isIP(address) === 6 ? 'ipv6' : 'ipv4');
  const refusal = (address: string): string | null => {
    const family = familyOf(address);
    if (allowedList.check(address, family)) return null;
    const refused = REFUSED_RANGES.find((r) => r.list.check(address, family));
    if (refused) return `${address} is ${refused.kind} address: ${UNLESS_ALLOWED}`;
    // An IPv6 address a gateway translates to an IPv4 one reaches that one: it is checked too.
    const embedded = family === 'ipv6' ? embeddedIpv4(address) : undefined;
    if (embedded === undefined || allowedList.check(embedded, 'ipv4')) return null;
    const inner = REFUSED_RANGES.find((r) => r.list.check(embedded, 'ipv4'));
    return inner ? `${address} stands for ${embedded}, ${inner.kind} address: ${UNLESS_ALLOWED}` : null;
  };
  const hostRefusal = (host: string): string | null => {
    const hostname = host.toLowerCase().replace(/\.$/, '');
    // `localhost` and its subdomains never leave the host (RFC 6761), whatever a resolver says.
    if (hostname === 'localhost' || hostname.endsWith('.localhost')) return refusal('127.0.0.1');
    const address = literalAddress(hostname);
    return address === undefined ? null : refusal(address);
  };
  const urlRefusal = (url: string): string | null => {
    const parsed = URL.parse(url);
    if (!parsed) return null;
    // Nothing listens on port 0: a connection to it goes nowhere, or wherever the stack decides.
    if (parsed.port === '0') return 'port 0 is no port a receiver listens on: give the real port, or none for the default';
    return hostRefusal(parsed.hostname);
  };
  const lookup: LookupFunction = (hostname, options, callback) => {
    dnsLookup(hostname, { ...options, all: true }, (error, addresses: LookupAddress[]) => {
      if (error) return callback(error, '', undefined);
      const refusals = addresses.map((a) => refusal(a.address));
      const usable = addresses.filter((_, i) => refusals[i] === null);
      const first = usable[0];
      // A lookup without an error has an address: here every one is refused, the first says why.
      if (!first) return callback(new Error(`${hostname}: ${refusals[0]}`), '', undefined);
      if (options.all) return callback(null, usable);
      return callback(null, first.address, first.family);
    });
  };
  return { refusal, hostRefusal, urlRefusal, lookup };
};
