/**
 * The fleet's shape lives in Redis: a process whose config gives an existing meter another definition,
 * or the prefix another partition count, refuses to start in one line; a new slug beside the old one
 * works; misrouted entries are forwarded once, never bounced, and streams beyond the partition count
 * show up in `tally status`.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { status } from '../../../src/admin/index.js';
import { partitionOf, UsageProducer } from '../../../src/index.js';
import { run, start } from '../../support/cli.js';
import { testRedisUrl, uniquePrefix, waitFor } from '../../support/redis.js';
import { Harness } from '../../support/tally.js';

const dir = mkdtempSync(join(tmpdir(), 'tally-registry-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const calls = {
  slug: 'calls',
  eventType: 'req',
  aggregation: 'COUNT',
  windowSize: 'MINUTE',
  groupBy: { route: '$.route' },
};
const tokens = {
  slug: 'tokens',
  eventType: 'llm',
  aggregation: 'SUM',
  valueProperty: '$.tokens',
  windowSize: 'HOUR',
};

function configFile(prefix: string, meters: unknown[], partitions = 2): string {
  const file = join(dir, `${prefix}-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(
    file,
    stringify({
      redis: { url: testRedisUrl() },
      streams: { prefix, partitions },
      rollups: { queues: [`${prefix}-billing`] },
      meters,
    }),
  );
  return file;
}

const env = () => ({ REDIS_URL: testRedisUrl(), LOG_LEVEL: 'info' });

describe('the registry refuses a config that contradicts it', () => {
  it('refuses a changed window size, zone, aggregation, value property or group-by, and another partition count, each in one line', async () => {
    const prefix = uniquePrefix('refuse');
    const first = start(['worker', '--config', configFile(prefix, [calls, tokens])], env());
    await first.waitForOutput(/worker started/);

    const changes: [string, Record<string, unknown>, RegExp][] = [
      ['windowSize', { windowSize: '5m' }, /windowSize is "MINUTE" in the registry but "5m" here/],
      [
        'timeZone',
        { timeZone: 'Europe/Paris' },
        /timeZone is "UTC" in the registry but "Europe\/Paris" here/,
      ],
      [
        'aggregation',
        { aggregation: 'SUM', valueProperty: '$.n' },
        /aggregation is "COUNT" in the registry but "SUM" here/,
      ],
      [
        'groupBy',
        { groupBy: { path: '$.route' } },
        /groupBy is \{"route":"\$\.route"\} in the registry but \{"path":"\$\.route"\} here/,
      ],
    ];
    const valueProperty = await run(
      ['worker', '--config', configFile(prefix, [calls, { ...tokens, valueProperty: '$.n' }])],
      env(),
    );
    expect(valueProperty.code).not.toBe(0);
    expect(valueProperty.stderr).toMatch(
      /meter "tokens": valueProperty is "\$\.tokens" in the registry but "\$\.n" here/,
    );
    for (const [field, change, says] of changes) {
      const r = await run(['worker', '--config', configFile(prefix, [{ ...calls, ...change }])], env());
      expect(r.code, `${field}: ${r.stderr}`).not.toBe(0);
      const lines = r.stderr
        .trim()
        .split('\n')
        .filter((l) => !l.startsWith('tally: Redis'));
      expect(lines, field).toHaveLength(1);
      expect(lines[0]).toMatch(/meter "calls"/);
      expect(lines[0]).toMatch(says);
      expect(lines[0]).toMatch(/new slug/);
    }
    const parts = await run(['worker', '--config', configFile(prefix, [calls], 4)], env());
    expect(parts.code).not.toBe(0);
    const lines = parts.stderr
      .trim()
      .split('\n')
      .filter((l) => !l.startsWith('tally: Redis'));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/streams\.partitions: is 4 here, but .* was set up with 2 partitions/);
    // serve refuses the same way.
    const serve = await run(
      ['serve', '--config', configFile(prefix, [{ ...calls, windowSize: 'HOUR' }]), '--port', '0'],
      env(),
    );
    expect(serve.code).not.toBe(0);
    expect(serve.stderr).toMatch(/windowSize is "MINUTE" in the registry but "HOUR" here/);

    // A new slug beside the old one works, and the first worker follows it without a restart.
    const second = start(
      ['worker', '--config', configFile(prefix, [calls, { ...calls, slug: 'calls_5m', windowSize: '5m' }])],
      env(),
    );
    await second.waitForOutput(/worker started/);
    await first.waitForOutput(/meter registry changed: following the new version/, 10_000);
    const listed = await run(['meters', 'list', '--json', '--config', configFile(prefix, [calls])], env());
    expect(listed.code).toBe(0);
    const json = JSON.parse(listed.stdout) as {
      version: number;
      meters: { definition: { slug: string; windowSize: string } }[];
    };
    expect(json.version).toBe(2);
    expect(json.meters.map((m) => [m.definition.slug, m.definition.windowSize])).toEqual([
      ['calls', 'MINUTE'],
      ['tokens', 'HOUR'],
      ['calls_5m', '5m'],
    ]);
  });
});

describe('misrouting', () => {
  let harness: Harness | undefined;
  afterEach(async () => {
    await harness?.close();
    harness = undefined;
  });

  it('forwards an entry in the wrong partition once, dead-letters a forwarded copy found misplaced, and shows streams beyond the count', async () => {
    harness = new Harness({ meters: [calls], partitions: 4, label: 'misroute' });
    const h = harness;
    const time = new Date(Date.now() - 180_000).toISOString();
    const event = (id: string) => ({
      id,
      source: 'm',
      type: 'req',
      subject: 'acme',
      time,
      data: { route: '/a' },
    });
    const home = partitionOf('acme', 4);
    const wrong = (home + 1) % 4;
    const other = (home + 2) % 4;
    // A foreign producer's mistake: forwarded once, counted once.
    await h.redis.xadd(h.keys.events(wrong), '*', 'event', JSON.stringify(event('once')));
    // A copy that claims it was forwarded already, in a partition that is not its home: never forwarded again.
    await h.redis.xadd(
      h.keys.events(other),
      '*',
      'forwarded',
      String(wrong),
      'event',
      JSON.stringify(event('bounced')),
    );
    // A producer that thinks there are 6 partitions.
    await h.redis.xadd(`${h.prefix}:{p5}:events`, '*', 'event', JSON.stringify(event('lost')));
    const worker = await h.startWorker();
    await h.settle();
    expect(worker.getStats().forwarded).toBe(1);
    const forwardedCopy = (await h.redis.xrange(h.keys.events(home), '-', '+')).map(([, f]) => f);
    expect(forwardedCopy).toEqual([['forwarded', String(wrong), 'event', JSON.stringify(event('once'))]]);
    const dead = await h.deadLetters(other);
    expect(dead.map((d) => [d.reason, (JSON.parse(d.payload) as { id: string }).id])).toEqual([
      ['misrouted', 'bounced'],
    ]);
    expect(dead[0]?.detail).toMatch(new RegExp(`forwarded here from partition ${wrong}`));
    // Stream lengths stay put: nothing bounces between partitions.
    for (let p = 0; p < 4; p++)
      expect(await h.redis.xlen(h.keys.events(p))).toBe(p === wrong || p === other || p === home ? 1 : 0);
    const rollups = await waitFor(async () => {
      const r = await h.rollups();
      return r.length > 0 && r;
    });
    expect(rollups.map((r) => [r.meter, r.valueDecimal, r.partition])).toEqual([['calls', '1', home]]);

    // A TypeScript producer configured with another count refuses to send, instead of misrouting.
    const wrongProducer = new UsageProducer({ redis: h.config.redisUrl, prefix: h.prefix, partitions: 6 });
    await expect(wrongProducer.send(event('never'))).rejects.toThrow(
      /partitions: is 6 here, but the workers of prefix .* use 4: set partitions to 4/,
    );
    await wrongProducer.close();
    const s = await status(h.redis, h.config);
    expect(s.unreadStreams).toEqual([{ partition: 5, key: `${h.prefix}:{p5}:events`, length: 1 }]);
    expect(s.warnings.join('\n')).toMatch(/\{p5\}:events: 1 entries in a partition beyond the 4 configured/);
    expect(s.registry).toMatchObject({
      version: 1,
      partitions: 4,
      meters: [{ slug: 'calls', activeSince: 1, deletedAt: null }],
    });
    expect(s.registry.processes.map((p) => [p.role, p.version])).toEqual([['worker', 1]]);
  });
});
