import { describe, expect, it } from 'vitest';
import { resolveConfig, TallyConfigError } from '../../../src/index.js';
import { listenAddress } from '../../../src/http/index.js';

const KEY = 'k'.repeat(16);

describe('http config: API keys, auth and the listening address', () => {
  it('merges http.apiKeys with TALLY_API_KEYS (comma-separated, trimmed, deduplicated)', () => {
    const config = resolveConfig(
      { http: { apiKeys: [KEY] } },
      { TALLY_API_KEYS: ` ${'a'.repeat(16)}, ${KEY},,` },
    );
    expect(config.http.apiKeys).toEqual([KEY, 'a'.repeat(16)]);
    expect(config.http).toMatchObject({
      port: 8888,
      auth: 'bearer',
      bodyLimit: 5_242_880,
      maxEventsPerRequest: 10_000,
    });
  });

  it('rejects short keys and auth none beside keys, naming the field', () => {
    expect(() => resolveConfig({}, { TALLY_API_KEYS: 'short' })).toThrow(
      /TALLY_API_KEYS: API keys must be at least 16 characters/,
    );
    expect(() => resolveConfig({ http: { apiKeys: ['short'] } }, {})).toThrow(TallyConfigError);
    expect(() => resolveConfig({ http: { auth: 'none' } }, { TALLY_API_KEYS: KEY })).toThrow(
      /http\.auth: "none" contradicts/,
    );
  });

  it('listens on loopback only without a key, unless auth is none', () => {
    const none = resolveConfig({}, {}).http;
    expect(listenAddress(none)).toEqual({ host: '127.0.0.1', port: 8888 });
    expect(listenAddress(none, { host: '::1', port: 1 })).toEqual({ host: '::1', port: 1 });
    expect(listenAddress(none, { host: '127.0.0.2' }).host).toBe('127.0.0.2');
    expect(() => listenAddress(none, { host: '0.0.0.0' })).toThrow(/not a loopback address and no API key/);
    expect(listenAddress(resolveConfig({ http: { auth: 'none' } }, {}).http, { host: '0.0.0.0' }).host).toBe(
      '0.0.0.0',
    );
    expect(listenAddress(resolveConfig({ http: { apiKeys: [KEY], port: 9000 } }, {}).http)).toEqual({
      host: '0.0.0.0',
      port: 9000,
    });
  });
});
