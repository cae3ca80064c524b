/**
 * The pure parts of notifications: rule thresholds mapped onto the evaluator's notifications, the
 * channel URL policy, and Standard Webhooks signatures checked by the real verifiers.
 */
import { Webhook as StandardWebhook } from 'standardwebhooks';
import { Webhook as SvixWebhook } from 'svix';
import { describe, expect, it } from 'vitest';
import type { NotificationJob } from '../../../src/index.js';
import {
  eventId,
  generateSigningSecret,
  matchThreshold,
  resolveNotificationsConfig,
  signatureHeaders,
  WebhookUrlPolicy,
  type Rule,
  type ThresholdValue,
} from '../../../src/notifications/index.js';

const job = (over: Partial<NotificationJob>): NotificationJob => ({
  version: 1,
  type: 'entitlement.threshold',
  subject: 's',
  feature: 'api',
  periodStart: '2026-01-01T00:00:00.000Z',
  periodEnd: '2026-02-01T00:00:00.000Z',
  usage: '6',
  balance: '4',
  overage: '0',
  allowance: '10',
  at: '2026-01-02T00:00:00.000Z',
  ...over,
});
const rule = (thresholds: ThresholdValue[]): Rule => ({
  id: 'r1',
  type: 'entitlements.balance.threshold',
  name: 'r',
  disabled: false,
  channels: ['c'],
  features: [],
  thresholds,
  createdAt: '',
  updatedAt: '',
});

describe('rule thresholds on the evaluator notifications', () => {
  const r = rule([
    { type: 'usage_percentage', value: 50 },
    { type: 'usage_value', value: 8 },
    { type: 'balance_value', value: 1 },
    { type: 'usage_percentage', value: 100 },
  ]);
  it('match a fired threshold at the same level or percentage', () => {
    expect(matchThreshold(r, job({ threshold: { id: 'p50', percent: 50, level: '5' } }))).toEqual({
      type: 'usage_percentage',
      value: 50,
    });
    expect(matchThreshold(r, job({ threshold: { id: 'v8', value: '8', level: '8' } }))?.type).toBe(
      'usage_value',
    );
    // balance 1 of 10 = usage 9
    expect(matchThreshold(r, job({ threshold: { id: 'p90', percent: 90, level: '9' } }))).toEqual({
      type: 'balance_value',
      value: 1,
    });
    expect(matchThreshold(r, job({ threshold: { id: 'p70', percent: 70, level: '7' } }))).toBeUndefined();
  });
  it('match the whole allowance only on exhausted, never on a 100% threshold (one event, not two)', () => {
    expect(matchThreshold(r, job({ type: 'entitlement.exhausted', usage: '10', balance: '0' }))).toEqual({
      type: 'usage_percentage',
      value: 100,
    });
    expect(matchThreshold(r, job({ threshold: { id: 'p100', percent: 100, level: '10' } }))).toBeUndefined();
    expect(
      matchThreshold(rule([{ type: 'usage_percentage', value: 50 }]), job({ type: 'entitlement.exhausted' })),
    ).toBeUndefined();
  });
  it('give one event id per notification and rule, the same on every replay', () => {
    const a = job({ threshold: { id: 'p50', percent: 50, level: '5' } });
    expect(eventId(a, 'r1')).toBe(eventId({ ...a, at: 'later', usage: '7' }, 'r1'));
    expect(eventId(a, 'r1')).not.toBe(eventId(a, 'r2'));
    expect(eventId(a, 'r1')).not.toBe(eventId({ ...a, subject: 't' }, 'r1'));
  });
});

describe('channel URL policy', () => {
  const policy = new WebhookUrlPolicy(['10.1.0.0/16', 'internal.example']);
  it('refuses non-http(s), credentials, and private ranges unless allowed', async () => {
    const refused = [
      'ftp://x.example/',
      'http://u:p@1.1.1.1/',
      'http://127.0.0.1/',
      'http://[::1]/',
      'http://[fe80::1]/',
      'http://169.254.169.254/',
      'http://192.168.1.1/',
      'http://172.20.0.1/',
      'http://10.2.0.1/',
      'http://[::ffff:127.0.0.1]/',
      'http://localhost:8080/',
      'http://[fd00::1]/',
    ];
    for (const url of refused) expect(await policy.refusal(url, false), url).toBeDefined();
    for (const url of [
      'https://1.1.1.1/hook',
      'http://10.1.2.3/',
      'http://internal.example/',
      'https://hooks.example.com/x',
    ])
      expect(await policy.refusal(url, false), url).toBeUndefined();
  });
  it('config entries are checked and named', () => {
    const base = {
      retrySchedule: ['0s'],
      timeout: '15s',
      concurrency: 1,
      perChannelConcurrency: 1,
      pollInterval: '200ms',
    };
    expect(() => resolveNotificationsConfig({ webhooks: { ...base, allow: ['10.0.0.0/99'] } })).toThrow(
      /notifications\.webhooks\.allow\[0\]/,
    );
    expect(() =>
      resolveNotificationsConfig({ webhooks: { ...base, allow: [], retrySchedule: ['soon'] } }),
    ).toThrow(/notifications\.webhooks\.retrySchedule\[0\]/);
    expect(
      resolveNotificationsConfig({ webhooks: { ...base, allow: [], retrySchedule: ['0s', '5s', '5m'] } })
        .webhooks.retryScheduleMs,
    ).toEqual([0, 5000, 300000]);
  });
});

describe('Standard Webhooks signatures', () => {
  it('verify with standardwebhooks and svix, and fail for another body', () => {
    const secret = generateSigningSecret();
    expect(secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    const body = JSON.stringify({ id: 'e1', type: 'entitlements.reset', data: { x: 'é' } });
    const ts = Math.floor(Date.now() / 1000);
    const h = signatureHeaders(secret, 'e1', ts, body);
    expect(h['webhook-signature']).toMatch(/^v1,[A-Za-z0-9+/]+=*$/);
    expect(h['svix-signature']).toBe(h['webhook-signature']);
    expect(new StandardWebhook(secret).verify(body, h)).toEqual(JSON.parse(body));
    expect(new SvixWebhook(secret).verify(body, h)).toEqual(JSON.parse(body));
    expect(() => new StandardWebhook(secret).verify(`${body} `, h)).toThrow();
    expect(() => new SvixWebhook(generateSigningSecret()).verify(body, h)).toThrow();
  });
});
