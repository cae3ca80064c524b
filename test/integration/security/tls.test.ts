/**
 * TLS (issue 12, finding 8): `redis.tls` names a CA, a client certificate and key (mutual TLS) and a
 * servername. A redis-server with a TLS port and client certificates required, a CA made with openssl
 * at test time; a worker and `tally status` go through it, and an untrusted server or a missing client
 * certificate ends `tally status` in one line.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { resolveConfig, TallyConfigError } from '../../../src/index.js';
import { run, start } from '../../support/cli.js';
import { findFreePort, startRedisServer, type RedisServerHandle } from '../../support/redis-server.js';
import { Harness } from '../../support/tally.js';

const MINUTE = 60_000;
const meters = [
  { slug: 'tokens', eventType: 'llm', aggregation: 'SUM', valueProperty: '$.tokens', windowSize: '1m' },
];
/** The name in the server certificate: not the host of the URL (127.0.0.1), so servername matters. */
const SERVERNAME = 'tally-redis';

function openssl(dir: string, ...args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
}

/** A CA, a server certificate for SERVERNAME and a client certificate, all signed by the CA. */
function makeCertificates(dir: string): void {
  openssl(
    dir,
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    'ca.key',
    '-out',
    'ca.crt',
    '-days',
    '1',
    '-subj',
    '/CN=tally-test-ca',
  );
  writeFileSync(join(dir, 'server.ext'), `subjectAltName=DNS:${SERVERNAME}\n`);
  for (const [name, ext] of [
    ['server', ['-extfile', 'server.ext']],
    ['client', []],
  ] as const) {
    openssl(
      dir,
      'req',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.csr`,
      '-subj',
      `/CN=tally-${name}`,
    );
    openssl(
      dir,
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      'ca.crt',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-out',
      `${name}.crt`,
      '-days',
      '1',
      ...ext,
    );
  }
  // Another CA the server does not use: trusting only it must fail.
  openssl(
    dir,
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    'other.key',
    '-out',
    'other.crt',
    '-days',
    '1',
    '-subj',
    '/CN=other-ca',
  );
}

describe('TLS to Redis', () => {
  let server: RedisServerHandle;
  let dir: string;
  let tlsUrl: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tally-tls-'));
    makeCertificates(dir);
    const tlsPort = await findFreePort();
    // The plain port is for the test's own checks; Tally goes through the TLS port.
    server = await startRedisServer({
      extraArgs: [
        '--tls-port',
        String(tlsPort),
        '--tls-cert-file',
        join(dir, 'server.crt'),
        '--tls-key-file',
        join(dir, 'server.key'),
        '--tls-ca-cert-file',
        join(dir, 'ca.crt'),
        '--tls-auth-clients',
        'yes',
      ],
    });
    tlsUrl = `rediss://127.0.0.1:${tlsPort}`;
  });
  afterAll(async () => {
    await server?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** A config file in `dir` (paths in redis.tls relative to it) for the harness, over TLS. */
  function configFile(h: Harness, name: string, tls: Record<string, string>): string {
    const file = join(dir, `${name}.yaml`);
    writeFileSync(file, stringify({ ...h.raw, redis: { url: tlsUrl, tls } }));
    return file;
  }

  it(
    'runs a worker and tally status through mutual TLS with a private CA and a servername',
    { timeout: 90_000 },
    async () => {
      const h = new Harness({ meters, redisUrl: server.url, label: 'tls' });
      try {
        const file = configFile(h, 'mtls', {
          ca: 'ca.crt',
          cert: 'client.crt',
          key: 'client.key',
          servername: SERVERNAME,
        });
        const worker = start(['worker', '--config', file, '--roles', 'metering'], { LOG_LEVEL: 'info' });
        await worker.waitForOutput(/"msg":"worker started"/);
        const time = new Date(Math.floor(Date.now() / MINUTE) * MINUTE - 3 * MINUTE + 500).toISOString();
        await h.producer().sendBatch(
          Array.from({ length: 20 }, (_, i) => ({
            id: `t${i}`,
            source: 'tls',
            type: 'llm',
            subject: 'acme',
            time,
            data: { tokens: i },
          })),
        );
        await h.settle(30_000);
        const { latest } = await h.finalRollups();
        expect([...latest.values()].map((r) => `${r.valueDecimal}/${r.eventCount}`)).toEqual(['190/20']);
        // The worker's connections really are TLS ones: plain clients would show on the plain port only.
        const clients = String(await h.redis.call('CLIENT', 'LIST'));
        expect(clients).toMatch(new RegExp(`laddr=127\\.0\\.0\\.1:${new URL(tlsUrl).port}`));

        const status = await run(['status', '--config', file, '--json']);
        expect(status.code, status.stderr).toBe(0);
        expect(JSON.parse(status.stdout)).toMatchObject({
          partitions: [{ partition: 0, group: { lag: 0 } }],
        });
        expect(await worker.stop()).toBe(0);
      } finally {
        await h.close();
      }
    },
  );

  it(
    'ends tally status (and tally worker) in one line for an untrusted server, a wrong servername or no client certificate',
    { timeout: 90_000 },
    async () => {
      const h = new Harness({ meters, redisUrl: server.url, label: 'tls-bad' });
      try {
        const cases: [string, Record<string, string>, RegExp][] = [
          [
            'untrusted',
            { ca: 'other.crt', cert: 'client.crt', key: 'client.key', servername: SERVERNAME },
            /certificate|self.signed|unable to verify/i,
          ],
          [
            'system-cas',
            { cert: 'client.crt', key: 'client.key', servername: SERVERNAME },
            /certificate|self.signed|unable to verify/i,
          ],
          [
            'servername',
            { ca: 'ca.crt', cert: 'client.crt', key: 'client.key' },
            /altnames|Hostname\/IP does not match/i,
          ],
          [
            'no-client-cert',
            { ca: 'ca.crt', servername: SERVERNAME },
            /ECONNRESET|certificate|socket|closed/i,
          ],
        ];
        for (const [name, tls, pattern] of cases) {
          const result = await run(['status', '--config', configFile(h, name, tls)]);
          const lines = result.stderr
            .split('\n')
            .filter((l) => l.trim() !== '' && !/^tally: Redis rediss?:\/\//.test(l));
          expect(result.code, `${name}: ${result.stderr}`).not.toBe(0);
          expect(lines, `${name}: ${result.stderr}`).toHaveLength(1);
          expect(lines[0], name).toMatch(/^tally: /);
          expect(lines[0], name).toMatch(pattern);
          expect(result.stdout, name).toBe('');
        }
        // A worker waits for a Redis that is down, but not for one it can never trust: one line, exit 1.
        const worker = await run([
          'worker',
          '--config',
          configFile(h, 'untrusted-worker', {
            ca: 'other.crt',
            cert: 'client.crt',
            key: 'client.key',
            servername: SERVERNAME,
          }),
        ]);
        expect(worker.code, worker.stderr).toBe(1);
        expect(
          worker.stderr.split('\n').filter((l) => l.trim() !== '' && !/^tally: Redis rediss?:\/\//.test(l)),
        ).toEqual([
          expect.stringMatching(
            /^tally: cannot reach Redis at rediss:.*self-signed certificate/,
          ) as unknown as string,
        ]);
      } finally {
        await h.close();
      }
    },
  );

  it('names the field when redis.tls is unusable', () => {
    const error = (tls: unknown, url = tlsUrl): string => {
      try {
        resolveConfig({ redis: { url, tls } }, {}, dir);
      } catch (err) {
        expect(err).toBeInstanceOf(TallyConfigError);
        return (err as Error).message;
      }
      throw new Error('expected a TallyConfigError');
    };
    expect(error({ ca: 'missing.crt' })).toMatch(/^redis\.tls\.ca: cannot read .*missing\.crt/);
    expect(error({ cert: 'client.crt' })).toBe(
      'redis.tls.key: a client certificate (mutual TLS) needs both cert and key',
    );
    expect(error({ ca: 'ca.crt' }, 'redis://127.0.0.1:1')).toMatch(
      /^redis\.tls: applies to a rediss:\/\/ URL only/,
    );
    expect(error({ ca: 'ca.crt', verify: false })).toMatch(/^redis\.tls/);
    expect(
      resolveConfig({ redis: { url: tlsUrl, tls: { ca: 'ca.crt', servername: SERVERNAME } } }, {}, dir).redis
        .tls,
    ).toMatchObject({ servername: SERVERNAME });
  });
});
