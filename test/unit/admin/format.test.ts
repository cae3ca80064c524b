import { describe, expect, it } from 'vitest';
import {
  formatDeadLetters,
  formatDuration,
  formatReplay,
  formatStatus,
  formatTime,
  parseDeadLetter,
  renderTable,
  statusWarnings,
  type PartitionStatus,
  type TallyStatus,
} from '../../../src/admin/index.js';
import {
  parseConsumers,
  parseGroupInfo,
  parsePendingEntries,
  parsePendingSummary,
  parseScored,
  parseTime,
  streamIdMs,
} from '../../../src/admin/replies.js';

describe('Redis reply parsers', () => {
  it('XINFO GROUPS: picks the group; lag and entries-read may be nil', () => {
    const reply = [
      [
        'name',
        'other',
        'consumers',
        1,
        'pending',
        9,
        'last-delivered-id',
        '5-0',
        'entries-read',
        9,
        'lag',
        0,
      ],
      [
        'name',
        'tally',
        'consumers',
        2,
        'pending',
        3,
        'last-delivered-id',
        '7-1',
        'entries-read',
        null,
        'lag',
        null,
      ],
    ];
    expect(parseGroupInfo(reply, 'tally')).toEqual({
      pending: 3,
      lag: null,
      entriesRead: null,
      lastDeliveredId: '7-1',
      consumers: 2,
    });
    expect(parseGroupInfo(reply, 'missing')).toBeNull();
    expect(parseGroupInfo(null, 'tally')).toBeNull();
  });

  it('XPENDING summary and extended forms, XINFO CONSUMERS, WITHSCORES, TIME, stream ids', () => {
    expect(parsePendingSummary([2, '1-0', '3-0', [['c1', '2']]])).toEqual({
      count: 2,
      minId: '1-0',
      maxId: '3-0',
      byConsumer: new Map([['c1', 2]]),
    });
    expect(parsePendingSummary([0, null, null, null])).toEqual({
      count: 0,
      minId: null,
      maxId: null,
      byConsumer: new Map(),
    });
    expect(parsePendingEntries([['1-0', 'c1', 1500, 2]])).toEqual([
      { id: '1-0', consumer: 'c1', idleMs: 1500, deliveries: 2 },
    ]);
    expect(
      parseConsumers([
        ['name', 'a', 'pending', 1, 'idle', 20],
        ['name', 'b', 'pending', 0, 'idle', 5, 'inactive', -1],
        ['name', 'c', 'pending', 0, 'idle', 5, 'inactive', 7],
      ]),
    ).toEqual([
      { name: 'a', pending: 1, idleMs: 20, inactiveMs: null },
      { name: 'b', pending: 0, idleMs: 5, inactiveMs: null },
      { name: 'c', pending: 0, idleMs: 5, inactiveMs: 7 },
    ]);
    expect(parseScored(['a', '10', 'b', '1.5'])).toEqual([
      ['a', 10],
      ['b', 1.5],
    ]);
    expect(parseTime(['1700000000', '123456'])).toBe(1700000000123);
    expect(streamIdMs('1700000000000-5')).toBe(1700000000000);
    expect(streamIdMs(null)).toBeNull();
  });
});

describe('formatting', () => {
  it('formats durations and times', () => {
    expect(
      [0, 999, 1000, 12_345, 59_999, 65_000, 3_600_000 + 120_000, 2 * 86_400_000 + 4 * 3_600_000].map(
        formatDuration,
      ),
    ).toEqual(['0ms', '999ms', '1.0s', '12.3s', '59.9s', '1m05s', '1h02m', '2d04h']);
    const now = Date.parse('2025-06-01T12:00:00Z');
    expect(formatTime(now - 45_000, now)).toBe('11:59:15Z (45.0s ago)');
    expect(formatTime(now + 3_000, now)).toBe('12:00:03Z (in 3.0s)');
    expect(formatTime(now - 3 * 86_400_000, now)).toBe('2025-05-29 12:00Z (3d00h ago)');
    expect(formatTime(null, now)).toBe('-');
  });

  it('renders aligned tables, right-aligning columns marked with >', () => {
    expect(
      renderTable(
        ['name', '>n'],
        [
          ['a', '1'],
          ['bbb', '100'],
        ],
        '',
      ),
    ).toBe(['name    n', 'a       1', 'bbb   100'].join('\n'));
  });

  const now = Date.parse('2025-06-01T12:00:00Z');
  const partition = (over: Partial<PartitionStatus>): PartitionStatus => ({
    partition: 0,
    streamLength: 10,
    group: { pending: 0, lag: 0, entriesRead: 10, lastDeliveredId: '1-0', consumers: 1 },
    pending: {
      count: 0,
      oldestId: null,
      oldestAgeMs: null,
      oldestIdleMs: null,
      oldestDeliveries: null,
      oldestConsumer: null,
    },
    consumers: [{ name: 'w1', pending: 0, idleMs: 120, inactiveMs: null, leaseOwner: true, stale: false }],
    lease: { owner: 'w1', ttlMs: 9500 },
    windows: {
      open: 2,
      oldest: { meter: 'tokens', aggregation: 'S', start: now - 60_000, end: now, closesAt: now + 5000 },
    },
    closedThrough: now - 1000,
    streamTime: now - 200,
    deadLetters: 0,
    outbox: 0,
    correctionsPending: 0,
    wrongTypeKeys: [],
    ...over,
  });
  const config = { consumerGroup: 'tally', worker: { claimIdleMs: 30_000 } } as const;

  it('warns about what needs an operator', () => {
    const base = {
      prefix: 'p',
      consumerGroup: 'tally',
      partitionCount: 4,
      leases: true,
      at: now,
      replicas: [{ name: 'old', expiresAt: now - 1, live: false, partitions: [] }],
      registry: {
        version: 3,
        partitions: 8,
        meters: [],
        processes: [
          { name: 'w1', role: 'worker', version: 3, seenAt: now - 1000 },
          { name: 'w2', role: 'worker', version: 2, seenAt: now - 1000 },
        ],
      },
      unreadStreams: [{ partition: 5, key: 'p:{p5}:events', length: 7 }],
      partitions: [
        partition({}),
        partition({ partition: 1, group: null }),
        partition({
          partition: 2,
          lease: { owner: null, ttlMs: null },
          group: { pending: 2, lag: 3, entriesRead: 1, lastDeliveredId: '1-0', consumers: 1 },
          pending: {
            count: 2,
            oldestId: '1-0',
            oldestAgeMs: 200_000,
            oldestIdleMs: 100_000,
            oldestDeliveries: 2,
            oldestConsumer: 'x',
          },
        }),
        partition({ partition: 3, deadLetters: 4, wrongTypeKeys: ['p:{p3}:state'] }),
      ],
    };
    expect(statusWarnings(base, config as never)).toEqual([
      'partition 1: consumer group "tally" does not exist (no worker has started on it yet, or Redis lost its data)',
      'partition 2: 5 entries waiting and no replica holds its lease',
      'partition 2: entry 1-0 pending and idle for 100 s (reclaimed after 30 s): is a worker running its maintenance loop?',
      'partition 3: key p:{p3}:state holds the wrong type of value (WRONGTYPE): the partition stalls until it is deleted or renamed (see what it holds with TYPE and DUMP first)',
      'partition 3: 4 dead letters (tally dead-letter list)',
      'replica registry: old stopped heartbeating',
      'this config says 4 partitions, the registry 8: processes with this config refuse to start',
      'w2 (worker, v2) not yet at registry v3 (they follow within seconds)',
      'p:{p5}:events: 7 entries in a partition beyond the 4 configured, which no worker reads (a producer with another partition count?)',
    ]);
  });

  it('prints the status as tables', () => {
    const status: TallyStatus = {
      prefix: 'tally-demo',
      consumerGroup: 'tally',
      partitionCount: 1,
      leases: true,
      at: now,
      partitions: [
        partition({
          pending: {
            count: 1,
            oldestId: '1-0',
            oldestAgeMs: 1500,
            oldestIdleMs: 300,
            oldestDeliveries: 1,
            oldestConsumer: 'w1',
          },
          consumers: [
            { name: 'w1', pending: 1, idleMs: 120, inactiveMs: null, leaseOwner: true, stale: false },
            { name: 'gone', pending: 0, idleMs: 3_600_000, inactiveMs: null, leaseOwner: false, stale: true },
          ],
        }),
      ],
      replicas: [{ name: 'w1', expiresAt: now + 9500, live: true, partitions: [0] }],
      registry: {
        version: 2,
        partitions: 1,
        meters: [
          {
            slug: 'tokens',
            eventType: 'llm',
            aggregation: 'SUM',
            windowSize: 'HOUR',
            activeSince: 1,
            deletedAt: null,
          },
          {
            slug: 'old',
            eventType: 'llm',
            aggregation: 'COUNT',
            windowSize: 'MINUTE',
            activeSince: 1,
            deletedAt: now - 60_000,
          },
        ],
        processes: [{ name: 'w1', role: 'worker', version: 2, seenAt: now - 2000 }],
      },
      unreadStreams: [],
      warnings: ['something'],
    };
    expect(formatStatus(status).split('\n')).toEqual([
      'Tally status · prefix tally-demo · group tally · 1 partition · leases on · 2025-06-01T12:00:00.000Z',
      '',
      'Streams',
      '  partition  length  lag  entries read  pending  oldest pending                     lease owner  lease ttl  consumers',
      '          0      10    0            10        1  1.5s old (idle 300ms, 1 delivery)  w1                9.5s          2',
      '',
      'Windows (event time)',
      '  partition  open  next close                  closed through        stream time            dead letters  outbox  corrections',
      '          0     2  12:00:05Z (in 5.0s) tokens  11:59:59Z (1.0s ago)  11:59:59Z (200ms ago)             0       0            0',
      '',
      'Consumers',
      '  partition  consumer  pending   idle  inactive  lease',
      '          0  w1              1  120ms         -  yes',
      '  + 1 stale (idle, nothing pending, not a live replica; --json lists them): gone',
      '',
      'Replicas',
      '  replica  heartbeat               partitions',
      '  w1       live (expires in 9.5s)  0',
      '',
      'Meter registry v2 · 1 partitions',
      '  meter   event type  aggregation  window  since  state',
      '  tokens  llm         SUM          HOUR       v1  active',
      '  old     llm         COUNT        MINUTE     v1  deleted 11:59:00Z (1m00s ago)',
      '',
      '  process  role    follows  seen',
      '  w1       worker       v2  11:59:58Z (2.0s ago)',
      '',
      'Warnings',
      '  - something',
    ]);
  });

  it('prints dead letters and replay results', () => {
    const d = parseDeadLetter(1, '1748779140000-0', [
      'reason',
      'invalid-value',
      'detail',
      'tokens: value "lots"\nis not a number',
      'entry',
      '1748779139000-0',
      'index',
      '0',
      'field',
      'event',
      'payload',
      JSON.stringify({ id: 'e1', source: 'src', subject: 'acme' }),
      'at',
      String(now - 60_000),
    ]);
    expect(formatDeadLetters([d], now, 1).split('\n')).toEqual([
      'ref                at                     reason         event (source/id)  subject  detail',
      '1/1748779140000-0  11:59:00Z (1m00s ago)  invalid-value  src/e1             acme     tokens: value "lots" is not a number',
      '1 dead letter; more may follow: --after 1/1748779140000-0',
    ]);
    expect(formatDeadLetters([], now)).toBe('no dead letters');
    const replayed = {
      ref: d.ref,
      reason: d.reason,
      event: d.event,
      partition: 0,
      field: 'event' as const,
      scope: 'event' as const,
      meter: null,
    };
    expect(
      formatReplay({
        dryRun: false,
        replayed: [{ ...replayed, entryId: '1748779200000-0', deleted: true }],
        skipped: [{ ref: '1/2-0', reason: 'sum-overflow', why: 'no payload' }],
        notFound: ['0/3-0'],
        failed: [{ ref: '0/4-0', error: 'boom' }],
      }).split('\n'),
    ).toEqual([
      'replayed 1/1748779140000-0 [invalid-value] src/e1 → partition 0 (event, field event) as 1748779200000-0; dead letter removed',
      'skipped 1/2-0 [sum-overflow]: no payload',
      'not found 0/3-0',
      'FAILED 0/4-0: boom',
      '1 replayed, 1 skipped, 1 not found, 1 failed',
    ]);
    expect(
      formatReplay({
        dryRun: true,
        replayed: [{ ...replayed, entryId: null, deleted: false }],
        skipped: [],
        notFound: [],
        failed: [],
      }),
    ).toBe(
      [
        'would replay 1/1748779140000-0 [invalid-value] src/e1 → partition 0 (event, field event)',
        '1 would be replayed (dry run: nothing written), 0 skipped, 0 not found, 0 failed',
      ].join('\n'),
    );
  });
});
