/**
 * Usage queries over windows written by a real worker, against an independent model computed from the
 * raw events: coarser row windows (also aligned in another zone), group-by subsets, filters, subjects,
 * and exact re-aggregation for every aggregation, UNIQUE_COUNT included.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UsageQuery, type UsageEvent, type UsageRow } from '../../../src/index.js';
import { Harness } from '../../support/tally.js';

const MINUTE = 60_000;
const HOUR = 3_600_000;
const MICRO = 1_000_000n;

const METERS = [
  {
    slug: 'tokens',
    eventType: 'llm',
    aggregation: 'SUM',
    valueProperty: '$.tokens',
    groupBy: { model: '$.model', region: '$.region' },
    windowSize: '1m',
  },
  { slug: 'calls', eventType: 'llm', aggregation: 'COUNT', groupBy: { model: '$.model' }, windowSize: '1m' },
  { slug: 'lat_avg', eventType: 'llm', aggregation: 'AVG', valueProperty: '$.ms', windowSize: '1m' },
  { slug: 'lat_min', eventType: 'llm', aggregation: 'MIN', valueProperty: '$.ms', windowSize: '1m' },
  { slug: 'lat_max', eventType: 'llm', aggregation: 'MAX', valueProperty: '$.ms', windowSize: '1m' },
  { slug: 'lat_last', eventType: 'llm', aggregation: 'LATEST', valueProperty: '$.ms', windowSize: '1m' },
  {
    slug: 'users',
    eventType: 'llm',
    aggregation: 'UNIQUE_COUNT',
    valueProperty: '$.user',
    groupBy: { model: '$.model' },
    windowSize: '1m',
  },
];

type Agg = 'SUM' | 'COUNT' | 'AVG' | 'MIN' | 'MAX' | 'LATEST' | 'UNIQUE_COUNT';

interface Ev {
  t: number;
  subject: string;
  model: string;
  region: string;
  tokens: string;
  ms: string;
  user: string;
}

const micro = (v: string) => {
  const [i = '0', f = ''] = v.split('.');
  return BigInt(i) * MICRO + BigInt(f.padEnd(6, '0'));
};
const decimal = (v: bigint) => {
  const frac = (v % MICRO).toString().padStart(6, '0').replace(/0+$/, '');
  return `${v / MICRO}${frac ? `.${frac}` : ''}`;
};

interface ModelQuery {
  agg: Agg;
  value?: 'tokens' | 'ms' | 'user';
  rowOf: (t: number) => [number, number];
  groupBy: ('model' | 'region')[];
  subject?: string;
  filter?: (e: Ev) => boolean;
}

/** The expected rows, straight from the events (rows keyed by the minute window each event falls in). */
function model(events: readonly Ev[], q: ModelQuery): Map<string, string> {
  const cells = new Map<string, Ev[]>();
  for (const e of events) {
    if (q.subject && e.subject !== q.subject) continue;
    if (q.filter && !q.filter(e)) continue;
    const minute = Math.floor(e.t / MINUTE) * MINUTE;
    const [start, end] = q.rowOf(minute);
    const key = JSON.stringify([start, end, e.subject, Object.fromEntries(q.groupBy.map((g) => [g, e[g]]))]);
    cells.set(key, [...(cells.get(key) ?? []), e]);
  }
  const out = new Map<string, string>();
  for (const [key, list] of cells) {
    const vals =
      q.agg === 'UNIQUE_COUNT' || q.agg === 'COUNT' ? [] : list.map((e) => micro(e[q.value ?? 'tokens']));
    let value: string;
    switch (q.agg) {
      case 'COUNT':
        value = String(list.length);
        break;
      case 'SUM':
        value = decimal(vals.reduce((a, b) => a + b, 0n));
        break;
      case 'AVG': {
        const sum = vals.reduce((a, b) => a + b, 0n);
        const n = BigInt(vals.length);
        let q2 = sum / n;
        const r2 = (sum % n) * 2n;
        if (r2 > n || (r2 === n && q2 % 2n === 1n)) q2 += 1n;
        value = decimal(q2);
        break;
      }
      case 'MIN':
        value = decimal(vals.reduce((a, b) => (b < a ? b : a)));
        break;
      case 'MAX':
        value = decimal(vals.reduce((a, b) => (b > a ? b : a)));
        break;
      case 'LATEST':
        value = decimal(micro([...list].sort((a, b) => a.t - b.t).at(-1)!.ms));
        break;
      case 'UNIQUE_COUNT':
        value = String(new Set(list.map((e) => e.user)).size);
        break;
    }
    out.set(key, value);
  }
  return out;
}

function asMap(rows: readonly UsageRow[]): Map<string, string> {
  return new Map(
    rows.map((r) => [
      JSON.stringify([Date.parse(r.windowStart), Date.parse(r.windowEnd), r.subject, r.groupBy]),
      r.valueDecimal,
    ]),
  );
}

describe('usage query', () => {
  let harness: Harness;
  let query: UsageQuery;
  const events: Ev[] = [];
  const base = Math.floor((Date.now() - 3 * HOUR) / HOUR) * HOUR;
  const hourRow = (t: number): [number, number] => [
    Math.floor(t / HOUR) * HOUR,
    Math.floor(t / HOUR) * HOUR + HOUR,
  ];

  beforeAll(async () => {
    harness = new Harness({ meters: METERS, label: 'usage', partitions: 2 });
    let seed = 11;
    const rnd = () => {
      seed = (seed * 16807) % 2147483647;
      return seed / 2147483647;
    };
    const used = new Set<number>();
    for (let i = 0; i < 1500; i++) {
      let t = base + Math.floor(rnd() * 3 * HOUR);
      while (used.has(t)) t++;
      used.add(t);
      events.push({
        t,
        subject: `s${1 + Math.floor(rnd() * 4)}`,
        model: rnd() < 0.6 ? 'a' : 'b',
        region: rnd() < 0.5 ? 'eu' : 'us',
        tokens: (Math.floor(rnd() * 100_000_000) / 1_000_000).toFixed(6).replace(/\.?0+$/, ''),
        ms: (Math.floor(rnd() * 5_000_000) / 1_000).toFixed(3),
        user: `u${Math.floor(rnd() * 25)}`,
      });
    }
    const wire: UsageEvent[] = events.map((e, i) => ({
      id: `q${i}`,
      source: 'query-test',
      type: 'llm',
      subject: e.subject,
      time: new Date(e.t).toISOString(),
      data: { tokens: e.tokens, ms: e.ms, model: e.model, region: e.region, user: e.user },
    }));
    await harness
      .producer()
      .sendBatch([...wire].sort((a, b) => Date.parse(a.time as string) - Date.parse(b.time as string)));
    await harness.startWorker();
    await harness.settle(25_000);
    query = new UsageQuery({ config: harness.config });
  }, 60_000);

  afterAll(async () => {
    await query?.close();
    await harness?.close();
  });

  const range = () => ({ from: new Date(base).toISOString(), to: new Date(base + 3 * HOUR).toISOString() });

  it('sums per hour and model, re-aggregating minute windows exactly', async () => {
    const rows = await query.query({ meter: 'tokens', ...range(), windowSize: 'HOUR', groupBy: ['model'] });
    expect(asMap(rows)).toEqual(model(events, { agg: 'SUM', rowOf: hourRow, groupBy: ['model'] }));
    expect(rows.every((r) => r.value === Number(r.valueDecimal))).toBe(true);
  });

  it('totals one subject over the whole range, filtered by group-by value', async () => {
    const rows = await query.query({
      meter: 'tokens',
      ...range(),
      subject: 's2',
      filter: { region: ['eu'] },
    });
    const whole = (): [number, number] => [base, base + 3 * HOUR];
    expect(asMap(rows)).toEqual(
      model(events, {
        agg: 'SUM',
        rowOf: whole,
        groupBy: [],
        subject: 's2',
        filter: (e) => e.region === 'eu',
      }),
    );
    expect(rows).toHaveLength(1);
    const counted = events.filter((e) => e.subject === 's2' && e.region === 'eu').length;
    expect(rows[0]?.eventCount).toBe(counted);
  });

  it('AVG, MIN, MAX and LATEST over half hours, and COUNT per hour', async () => {
    const half = (t: number): [number, number] => [
      Math.floor(t / (30 * MINUTE)) * 30 * MINUTE,
      Math.floor(t / (30 * MINUTE)) * 30 * MINUTE + 30 * MINUTE,
    ];
    for (const [meter, agg] of [
      ['lat_avg', 'AVG'],
      ['lat_min', 'MIN'],
      ['lat_max', 'MAX'],
      ['lat_last', 'LATEST'],
    ] as const) {
      const rows = await query.query({ meter, ...range(), windowSize: '30m' });
      expect([meter, asMap(rows)]).toEqual([
        meter,
        model(events, { agg, value: 'ms', rowOf: half, groupBy: [] }),
      ]);
    }
    const calls = await query.query({ meter: 'calls', ...range(), windowSize: 'HOUR', groupBy: ['model'] });
    expect(asMap(calls)).toEqual(model(events, { agg: 'COUNT', rowOf: hourRow, groupBy: ['model'] }));
  });

  it('UNIQUE_COUNT re-aggregates from the stored distinct values, not by adding counts', async () => {
    const hourly = await query.query({ meter: 'users', ...range(), windowSize: 'HOUR' });
    const want = model(events, { agg: 'UNIQUE_COUNT', value: 'user', rowOf: hourRow, groupBy: [] });
    expect(asMap(hourly)).toEqual(want);
    // Adding the per-minute counts would overcount: users repeat across minutes.
    const minutes = await query.query({
      meter: 'users',
      ...range(),
      windowSize: 'MINUTE',
      groupBy: ['model'],
    });
    expect(asMap(minutes)).toEqual(
      model(events, {
        agg: 'UNIQUE_COUNT',
        value: 'user',
        rowOf: (t) => [t, t + MINUTE],
        groupBy: ['model'],
      }),
    );
    const added = minutes.reduce((s, r) => s + r.value, 0);
    const distinct = [...want.values()].reduce((s, v) => s + Number(v), 0);
    expect(added).toBeGreaterThan(distinct);
  });

  it('aligns rows in another time zone and clips them to the range', async () => {
    // Asia/Kolkata hours start at :30 UTC.
    const ist = (t: number): [number, number] => {
      const s = Math.floor((t + 30 * MINUTE) / HOUR) * HOUR - 30 * MINUTE;
      return [s, s + HOUR];
    };
    const rows = await query.query({
      meter: 'calls',
      ...range(),
      windowSize: 'HOUR',
      timeZone: 'Asia/Kolkata',
    });
    const clip = (t: number): [number, number] => {
      const [s, e] = ist(t);
      return [Math.max(s, base), Math.min(e, base + 3 * HOUR)];
    };
    expect(asMap(rows)).toEqual(model(events, { agg: 'COUNT', rowOf: clip, groupBy: [] }));
    // A range not on hour boundaries: only windows starting in it, rows clipped to it.
    const from = base + 10 * MINUTE;
    const to = base + 100 * MINUTE;
    const clipped = await query.query({
      meter: 'tokens',
      from,
      to,
      windowSize: 'HOUR',
      subject: ['s1', 's3'],
    });
    const inRange = events.filter(
      (e) => e.t >= from && e.t < to && (e.subject === 's1' || e.subject === 's3'),
    );
    const rowOf = (t: number): [number, number] => {
      const [s, e] = hourRow(t);
      return [Math.max(s, from), Math.min(e, to)];
    };
    expect(asMap(clipped)).toEqual(model(inRange, { agg: 'SUM', rowOf, groupBy: [] }));
  });

  it('rejects what it cannot answer exactly, naming why', async () => {
    await expect(query.query({ meter: 'tokens', ...range(), windowSize: '30s' })).rejects.toMatchObject({
      reason: 'invalid-window-size',
    });
    await expect(query.query({ meter: 'tokens', ...range(), groupBy: ['colour'] })).rejects.toMatchObject({
      reason: 'invalid-group-by',
    });
    await expect(
      query.query({ meter: 'tokens', ...range(), filter: { colour: 'red' } }),
    ).rejects.toMatchObject({ reason: 'invalid-filter' });
    await expect(query.query({ meter: 'nope', ...range() })).rejects.toMatchObject({
      reason: 'unknown-meter',
    });
    await expect(
      query.query({ meter: 'tokens', from: Date.now() - 40 * 86_400_000, to: Date.now() }),
    ).rejects.toMatchObject({ reason: 'beyond-retention' });
    await expect(query.query({ meter: 'tokens', from: base + HOUR, to: base })).rejects.toMatchObject({
      reason: 'invalid-range',
    });
  });
});
