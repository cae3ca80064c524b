import { describe, expect, it } from 'vitest';
import { decodeEntry, explainInvalidEvent } from '../../../src/events/index.js';

const opts = { maxEntryBytes: 4096, maxFutureSkewMs: 60_000, maxEventsPerEntry: 100 };
const ingested = Date.parse('2026-11-26T10:00:00Z');
const ok = {
  id: '1',
  source: 's',
  type: 't',
  subject: 'c',
  time: '2026-11-26T09:59:59.123456Z',
  data: { v: 1 },
};

describe('decodeEntry', () => {
  it('decodes a single event, keeping its time to the millisecond', () => {
    const { events, rejected } = decodeEntry(['event', JSON.stringify(ok)], ingested, opts);
    expect(rejected).toEqual([]);
    expect(events[0]?.timeMs).toBe(Date.parse('2026-11-26T09:59:59.123Z'));
  });

  it('uses the ingestion time when the event has none', () => {
    const { events } = decodeEntry(['event', JSON.stringify({ ...ok, time: undefined })], ingested, opts);
    expect(events[0]?.timeMs).toBe(ingested);
  });

  it('accepts time zone offsets', () => {
    const { events } = decodeEntry(
      ['event', JSON.stringify({ ...ok, time: '2026-11-26T11:59:00+02:00' })],
      ingested,
      opts,
    );
    expect(events[0]?.timeMs).toBe(Date.parse('2026-11-26T09:59:00Z'));
  });

  it('decodes batch entries event by event', () => {
    const { events, rejected } = decodeEntry(
      ['events', JSON.stringify([ok, { ...ok, id: '' }, { ...ok, id: '3' }])],
      ingested,
      opts,
    );
    expect(events.map((e) => e.index)).toEqual([0, 2]);
    expect(rejected).toMatchObject([
      { index: 1, reason: 'invalid-field', field: 'event', payload: JSON.stringify({ ...ok, id: '' }) },
    ]);
  });

  it.each([
    [['event', '{'], 'invalid-json'],
    [['other', '{}'], 'no-event-field'],
    [['event', '[]'], 'not-an-object'],
    [['event', JSON.stringify({ ...ok, subject: undefined })], 'missing-field'],
    [['event', JSON.stringify({ ...ok, specversion: '0.3' })], 'invalid-field'],
    [['event', JSON.stringify({ ...ok, data: 'text' })], 'invalid-field'],
    [['event', JSON.stringify({ ...ok, time: '26/11/2026' })], 'invalid-field'],
    [['event', JSON.stringify({ ...ok, time: '2026-11-26T10:05:00Z' })], 'future-time'],
    [['event', JSON.stringify({ ...ok, data: { pad: 'x'.repeat(5000) } })], 'oversized'],
    [['events', JSON.stringify(ok)], 'invalid-batch'],
  ])('rejects %j as %s, keeping the original payload', (fields, reason) => {
    const { events, rejected } = decodeEntry(fields, ingested, opts);
    expect(events).toEqual([]);
    expect(rejected[0]?.reason).toBe(reason);
    if (fields[0] === 'event' || fields[0] === 'events') expect(rejected[0]?.payload).toBe(fields[1]);
  });

  it('names the field in the explanation', () => {
    expect(explainInvalidEvent({ ...ok, source: '' })?.detail).toMatch(/^source/);
    expect(explainInvalidEvent({ ...ok, type: undefined })?.detail).toBe('type: required');
    expect(explainInvalidEvent(ok)).toBeUndefined();
  });
});

describe('decodeEntry with hostile values', () => {
  const deepData = JSON.parse(`${'{"a":'.repeat(10_000)}1${'}'.repeat(10_000)}`) as Record<string, unknown>;

  it('dead-letters an invalid deep event of a batch alone, with its own text, and keeps its valid neighbour', () => {
    const invalid = { ...ok, id: undefined, data: deepData };
    // Built by hand: JSON.stringify cannot serialize the deep value.
    const invalidText = `{"source":"s","type":"t","subject":"c","data":${'{"a":'.repeat(10_000)}1${'}'.repeat(10_000)}}`;
    expect(() => JSON.stringify(invalid)).toThrow(RangeError);
    const raw = `[${JSON.stringify(ok)}, ${invalidText}]`;
    const decoded = decodeEntry(['events', raw], ingested, { ...opts, maxEntryBytes: 1_000_000 });
    expect(decoded.events.map((e) => e.index)).toEqual([0]);
    expect(decoded.rejected).toEqual([
      { index: 1, reason: 'missing-field', detail: 'id: required', payload: invalidText, field: 'event' },
    ]);
    expect(decoded.eventText(0)).toBe(JSON.stringify(ok));
  });
});
