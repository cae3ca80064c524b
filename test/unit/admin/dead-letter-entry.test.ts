import { describe, expect, it } from 'vitest';
import {
  parseDeadLetter,
  parseDeadLetterRef,
  pinEventTime,
  planReplay,
  type DeadLetter,
} from '../../../src/admin/index.js';
import { TallyConfigError } from '../../../src/errors/index.js';
import { partitionOf } from '../../../src/producer/index.js';

const time = '2025-01-02T03:04:05.000Z';
const ev = (id: string, subject: string, extra: Record<string, unknown> = {}) => ({
  id,
  source: 's',
  type: 'llm',
  subject,
  time,
  data: {},
  ...extra,
});

function dl(fields: Record<string, string>, partition = 0, id = '1700000000500-0'): DeadLetter {
  return parseDeadLetter(partition, id, Object.entries(fields).flat());
}

describe('parseDeadLetter', () => {
  it('parses the fields applyBatch.lua writes, and summarizes the event the index points at', () => {
    const payload = JSON.stringify([ev('a', 'x'), ev('b', 'y')]);
    const d = dl(
      {
        reason: 'invalid-value',
        detail: 'bad',
        entry: '1700000000000-3',
        index: '1',
        field: 'events',
        payload,
        at: '1700000000600',
      },
      3,
    );
    expect(d).toEqual({
      ref: '3/1700000000500-0',
      partition: 3,
      id: '1700000000500-0',
      reason: 'invalid-value',
      detail: 'bad',
      at: 1700000000600,
      entry: '1700000000000-3',
      index: 1,
      field: 'events',
      payload,
      deliveries: null,
      meter: null,
      event: { id: 'b', source: 's', subject: 'y', type: 'llm', time },
    });
  });

  it('parses poison and overflow dead letters, and tolerates missing or odd fields', () => {
    const poison = dl({
      reason: 'poison',
      detail: 'boom',
      entry: '5-0',
      index: '-1',
      field: 'event',
      payload: JSON.stringify(ev('p', 'x')),
      deliveries: '6',
      at: '9',
    });
    expect(poison).toMatchObject({ index: -1, deliveries: 6, field: 'event', event: { id: 'p' } });
    const overflow = dl({
      reason: 'sum-overflow',
      detail: 'w += 1',
      entry: '',
      index: '-1',
      field: '',
      payload: '',
      at: '9',
    });
    expect(overflow).toMatchObject({ entry: null, field: null, payload: '', event: null });
    expect(dl({})).toMatchObject({
      reason: '',
      detail: '',
      at: null,
      entry: null,
      index: -1,
      field: null,
      event: null,
    });
    expect(dl({ field: 'event', payload: '{"id": ' }).event).toBeNull();
    expect(dl({ field: 'event', payload: '{"id": 42}' }).event).toBeNull();
  });
});

describe('parseDeadLetterRef', () => {
  it('reads <partition>/<id>, or a bare id with a partition', () => {
    expect(parseDeadLetterRef('2/1700000000000-0', 4)).toEqual({ partition: 2, id: '1700000000000-0' });
    expect(parseDeadLetterRef('1700000000000-7', 4, 3)).toEqual({ partition: 3, id: '1700000000000-7' });
  });

  it('names the option and the bad value', () => {
    expect(() => parseDeadLetterRef('1700000000000-0', 4)).toThrow(TallyConfigError);
    expect(() => parseDeadLetterRef('1700000000000-0', 4)).toThrow(
      /^ids: "1700000000000-0" names no partition/,
    );
    expect(() => parseDeadLetterRef('4/1-0', 4)).toThrow(/partition must be one of 0..3/);
    expect(() => parseDeadLetterRef('x/1-0', 4)).toThrow(/partition must be one of/);
    expect(() => parseDeadLetterRef('1/abc', 4, undefined, 'after')).toThrow(
      /^after: "1\/abc": "abc" is not a stream id/,
    );
  });
});

describe('pinEventTime', () => {
  it('gives events without time the time of their original entry, and leaves everything else alone', () => {
    const noTime = JSON.stringify({ id: 'a', subject: 'x', data: { n: 1.5 } });
    expect(JSON.parse(pinEventTime(noTime, 1700000000000))).toEqual({
      id: 'a',
      subject: 'x',
      data: { n: 1.5 },
      time: '2023-11-14T22:13:20.000Z',
    });
    const withTime = ' {"id":"a","time":"2020-01-01T00:00:00Z"} ';
    expect(pinEventTime(withTime, 1700000000000)).toBe(withTime);
    expect(pinEventTime(noTime, null)).toBe(noTime);
    expect(pinEventTime('not json', 1)).toBe('not json');
    const batch = JSON.stringify([{ id: 'a' }, { id: 'b', time }, 7]);
    expect(JSON.parse(pinEventTime(batch, 0))).toEqual([
      { id: 'a', time: '1970-01-01T00:00:00.000Z' },
      { id: 'b', time },
      7,
    ]);
  });
});

describe('planReplay', () => {
  const partitions = 8;
  const home = (subject: string) => partitionOf(subject, partitions);

  it('replays one event of a batch entry alone, in its home partition', () => {
    const events = [ev('a', 'cust-1'), ev('b', 'cust-2')];
    const plan = planReplay(
      dl({ reason: 'late', entry: '1-0', index: '1', field: 'events', payload: JSON.stringify(events) }, 5),
      partitions,
    );
    expect(plan).toEqual({
      replayable: true,
      partition: home('cust-2'),
      field: 'event',
      value: JSON.stringify(events[1]),
      scope: 'event',
      meter: null,
    });
  });

  it('replays a single-event entry unchanged, in its home partition, or in its own partition when it has no subject', () => {
    const payload = JSON.stringify(ev('a', 'cust-9'));
    expect(
      planReplay(
        dl({ reason: 'invalid-value', entry: '1-0', index: '0', field: 'event', payload }, 1),
        partitions,
      ),
    ).toEqual({
      replayable: true,
      partition: home('cust-9'),
      field: 'event',
      value: payload,
      scope: 'event',
      meter: null,
    });
    const invalid = '{"id": "x",';
    expect(
      planReplay(
        dl({ reason: 'invalid-json', entry: '1-0', index: '0', field: 'event', payload: invalid }, 6),
        partitions,
      ),
    ).toEqual({
      replayable: true,
      partition: 6,
      field: 'event',
      value: invalid,
      scope: 'event',
      meter: null,
    });
  });

  it('replays a whole entry (poison, or a reason that rejected the whole entry) under its field, in its own partition', () => {
    const payload = JSON.stringify([ev('a', 'cust-1'), ev('b', 'cust-2')]);
    for (const [reason, index] of [
      ['poison', '-1'],
      ['oversized', '0'],
      ['invalid-batch', '0'],
    ] as const) {
      expect(
        planReplay(dl({ reason, entry: '1-0', index, field: 'events', payload }, 4), partitions),
      ).toEqual({
        replayable: true,
        partition: 4,
        field: 'events',
        value: payload,
        scope: 'entry',
        meter: null,
      });
    }
  });

  it('pins the original time of an event that had none', () => {
    const payload = JSON.stringify([{ id: 'a', source: 's', type: 'llm', subject: 'c' }]);
    const plan = planReplay(
      dl({ reason: 'invalid-value', entry: '1700000000000-0', index: '0', field: 'events', payload }),
      partitions,
    );
    expect(plan.replayable && JSON.parse(plan.value)).toMatchObject({
      id: 'a',
      time: '2023-11-14T22:13:20.000Z',
    });
  });

  it('refuses a sum-overflow of one event: it is remembered for dedup, so a replay would change nothing', () => {
    const payload = JSON.stringify(ev('big', 'acme'));
    expect(
      planReplay(
        dl({ reason: 'sum-overflow', entry: '1-0', index: '0', field: 'event', payload }),
        partitions,
      ),
    ).toMatchObject({ replayable: false, why: expect.stringMatching(/remembered/) as unknown });
  });

  it('refuses dead letters that are not about an event, and partitions beyond the config', () => {
    expect(
      planReplay(dl({ reason: 'sum-overflow', entry: '', index: '-1', field: '', payload: '' }), partitions),
    ).toMatchObject({ replayable: false });
    expect(
      planReplay(
        dl({ reason: 'no-event-field', entry: '1-0', index: '0', field: 'event', payload: '{"x":"1"}' }),
        partitions,
      ),
    ).toMatchObject({
      replayable: false,
      why: 'the entry had no event field: fix the producer and send the event again',
    });
    expect(
      planReplay(
        dl({ reason: 'poison', entry: '1-0', index: '-1', field: 'events', payload: '[]' }, 9),
        partitions,
      ),
    ).toEqual({
      replayable: false,
      why: 'partition 9 is beyond the 8 configured partitions',
    });
  });
});

describe('replaying what the worker wrote about hostile values', () => {
  const deep = `${'{"a":'.repeat(10_000)}1${'}'.repeat(10_000)}`;
  const deepEvent = `{"source":"s","type":"llm","subject":"acme","data":${deep}}`;

  it('pins the time of a deep event by text, without re-serializing it', () => {
    expect(() => JSON.stringify(JSON.parse(deepEvent))).toThrow(RangeError);
    expect(pinEventTime(deepEvent, 0)).toBe(`{"time":"1970-01-01T00:00:00.000Z",${deepEvent.slice(1)}`);
    const batch = `[${JSON.stringify(ev('a', 'x'))},${deepEvent}]`;
    expect(pinEventTime(batch, 0)).toBe(
      `[${JSON.stringify(ev('a', 'x'))},{"time":"1970-01-01T00:00:00.000Z",${deepEvent.slice(1)}]`,
    );
  });

  it('plans the replay of a deep event alone, of a whole deep entry, and of a poison entry', () => {
    const batch = `[${JSON.stringify(ev('a', 'x'))},${deepEvent}]`;
    const one = planReplay(
      dl({ reason: 'missing-field', entry: '0-1', index: '1', field: 'events', payload: batch }),
      4,
    );
    expect(one).toMatchObject({
      replayable: true,
      field: 'event',
      scope: 'event',
      meter: null,
      partition: partitionOf('acme', 4),
    });
    expect(one.replayable && one.value.endsWith(deepEvent.slice(1))).toBe(true);
    for (const reason of ['poison', 'unprocessable']) {
      const whole = planReplay(
        dl({ reason, entry: '0-1', index: '-1', field: 'events', payload: batch }, 2),
        4,
      );
      expect(whole).toMatchObject({ replayable: true, field: 'events', scope: 'entry', partition: 2 });
    }
  });
});
