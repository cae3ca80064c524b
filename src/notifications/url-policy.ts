import { lookup } from 'node:dns/promises';
import { BlockList, isIP } from 'node:net';

/**
 * Which URLs a webhook channel may point to: http(s) only, and never (unless allowed by
 * `notifications.webhooks.allow`) an address in a loopback, link-local, private or otherwise
 * non-public range, so that a channel cannot be used to reach services inside the network (SSRF).
 * Host names are resolved and every address they resolve to is checked, when the channel is saved
 * and again before each attempt (a name that changes to a private address is refused then).
 */
const PRIVATE_V4 = [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
] as const;
const PRIVATE_V6 = [
  ['::', 128],
  ['::1', 128],
  ['fc00::', 7],
  ['fe80::', 10],
  ['ff00::', 8],
] as const;

const denied = new BlockList();
for (const [net, bits] of PRIVATE_V4) denied.addSubnet(net, bits, 'ipv4');
for (const [net, bits] of PRIVATE_V6) denied.addSubnet(net, bits, 'ipv6');

export class WebhookUrlPolicy {
  private readonly allowed = new BlockList();
  private readonly allowedHosts = new Set<string>();

  constructor(allow: readonly string[]) {
    for (const entry of allow) {
      const [address, bits] = entry.split('/');
      const family = isIP(address ?? '');
      if (family === 0) this.allowedHosts.add(entry.toLowerCase());
      else {
        const type = family === 4 ? 'ipv4' : 'ipv6';
        this.allowed.addSubnet(
          address as string,
          bits === undefined ? (family === 4 ? 32 : 128) : Number(bits),
          type,
        );
      }
    }
  }

  private addressRefused(address: string): boolean {
    let a = address;
    // IPv4-mapped IPv6 (::ffff:10.0.0.1) is the IPv4 address.
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(a);
    if (mapped) a = mapped[1] as string;
    const type = isIP(a) === 4 ? 'ipv4' : 'ipv6';
    return denied.check(a, type) && !this.allowed.check(a, type);
  }

  /**
   * Why `raw` is refused (a sentence naming the reason), or undefined when it is acceptable. Resolves
   * host names (`resolve` false: only the syntax and literal addresses are checked).
   */
  async refusal(raw: string, resolve = true): Promise<string | undefined> {
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      return `not a URL: ${JSON.stringify(raw)}`;
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:')
      return `only http and https URLs are accepted, not ${url.protocol}`;
    if (url.username || url.password) return 'URLs with credentials are refused (use customHeaders)';
    const host = url.hostname.replace(/^\[|\]$/g, '').toLowerCase();
    if (this.allowedHosts.has(host)) return undefined;
    const reason = (a: string) =>
      `${url.hostname} is (or resolves to) ${a}, a loopback, link-local or private address; allow it with notifications.webhooks.allow`;
    if (isIP(host) !== 0) return this.addressRefused(host) ? reason(host) : undefined;
    if (host === 'localhost' || host.endsWith('.localhost')) return reason('loopback');
    if (!resolve) return undefined;
    let addresses: { address: string }[];
    try {
      addresses = await lookup(host, { all: true, verbatim: true });
    } catch (err) {
      return `cannot resolve ${host}: ${(err as Error).message}`;
    }
    const bad = addresses.find((a) => this.addressRefused(a.address));
    return bad ? reason(bad.address) : undefined;
  }
}
