import { Type, type Static } from '@sinclair/typebox';

/**
 * The schemas of the notification boundaries: the config section `notifications:` and the bodies of
 * the HTTP API, in OpenMeter's shapes (api/openapi.yaml: NotificationChannelWebhookCreateRequest,
 * NotificationRuleCreateRequest, NotificationEventResendRequest).
 */

const durationSchema = (defaultValue: string, description: string) =>
  Type.Union([Type.String(), Type.Number({ minimum: 0 })], { default: defaultValue, description });

export const DEFAULT_RETRY_SCHEDULE = ['0s', '5s', '5m', '30m', '2h', '5h', '10h', '10h'];

/** The optional `notifications:` section of config/tally.yaml. */
export const NotificationsConfigSchema = Type.Object(
  {
    webhooks: Type.Object(
      {
        allow: Type.Array(Type.String({ minLength: 1 }), {
          default: [],
          description:
            'CIDRs (10.0.0.0/8, ::1/128) and host names a channel URL may point to although they are loopback, link-local or private',
        }),
        retrySchedule: Type.Array(Type.Union([Type.String(), Type.Number({ minimum: 0 })]), {
          default: DEFAULT_RETRY_SCHEDULE,
          minItems: 1,
          maxItems: 50,
          description: 'Delay before each attempt: the first entry before the first attempt, and so on',
        }),
        timeout: durationSchema('15s', 'How long an attempt may take before it counts as failed'),
        concurrency: Type.Integer({
          default: 32,
          minimum: 1,
          maximum: 10_000,
          description: 'Attempts in flight per replica',
        }),
        perChannelConcurrency: Type.Integer({
          default: 4,
          minimum: 1,
          maximum: 1000,
          description: 'Attempts in flight per channel per replica',
        }),
        pollInterval: durationSchema('200ms', 'How often an idle delivery loop looks for due attempts'),
      },
      { additionalProperties: false, default: {} },
    ),
  },
  { additionalProperties: false, default: {} },
);
export type NotificationsConfigInput = Static<typeof NotificationsConfigSchema>;

export const ThresholdValueTypes = [
  'usage_value',
  'usage_percentage',
  'balance_value',
  'NUMBER',
  'PERCENT',
] as const;
export type ThresholdValueType = (typeof ThresholdValueTypes)[number];

export const ThresholdValueSchema = Type.Object(
  {
    value: Type.Number({ minimum: 0, description: 'The threshold' }),
    type: Type.Unsafe<ThresholdValueType>({
      type: 'string',
      enum: [...ThresholdValueTypes],
      description: 'usage_value, usage_percentage or balance_value (NUMBER, PERCENT: deprecated aliases)',
    }),
  },
  { additionalProperties: false },
);
export type ThresholdValue = Static<typeof ThresholdValueSchema>;

const nameSchema = Type.String({ minLength: 1, maxLength: 256 });
const idList = (description: string) =>
  Type.Array(Type.String({ minLength: 1, maxLength: 256 }), { maxItems: 100, description });

export const ChannelCreateSchema = Type.Object(
  {
    type: Type.Unsafe<'WEBHOOK'>({ type: 'string', enum: ['WEBHOOK'] }),
    name: nameSchema,
    disabled: Type.Optional(Type.Boolean()),
    url: Type.String({ minLength: 1, maxLength: 2048, description: 'http(s) URL of the receiver' }),
    customHeaders: Type.Optional(
      Type.Record(
        Type.String({ pattern: "^[A-Za-z0-9!#$%&'*+.^_`|~-]+$" }),
        Type.String({ maxLength: 4096 }),
      ),
    ),
    signingSecret: Type.Optional(
      Type.String({
        pattern: '^whsec_[A-Za-z0-9+/]{32,}={0,2}$',
        description: 'whsec_ + base64 (generated when omitted)',
      }),
    ),
    metadata: Type.Optional(Type.Union([Type.Record(Type.String(), Type.String()), Type.Null()])),
  },
  { additionalProperties: false },
);
export type ChannelCreate = Static<typeof ChannelCreateSchema>;

export const RuleTypes = ['entitlements.balance.threshold', 'entitlements.reset'] as const;
export type RuleType = (typeof RuleTypes)[number];

/** One flat object for both rule types, so errors name the exact field; `thresholds` is checked per type. */
export const RuleCreateSchema = Type.Object(
  {
    type: Type.Unsafe<RuleType>({ type: 'string', enum: [...RuleTypes] }),
    name: nameSchema,
    disabled: Type.Optional(Type.Boolean()),
    channels: idList('Ids of the channels to deliver to'),
    features: Type.Optional(idList('Feature keys (or ids) the rule is limited to; all when empty')),
    thresholds: Type.Optional(Type.Array(ThresholdValueSchema, { minItems: 1, maxItems: 10 })),
    metadata: Type.Optional(Type.Union([Type.Record(Type.String(), Type.String()), Type.Null()])),
  },
  { additionalProperties: false },
);
export type RuleCreate = Static<typeof RuleCreateSchema>;

export const ResendSchema = Type.Object(
  { channels: Type.Optional(idList('Only these channels (default: all of the event)')) },
  { additionalProperties: false },
);

export const DeliveryStates = ['SUCCESS', 'FAILED', 'SENDING', 'PENDING', 'RESENDING'] as const;
export type DeliveryState = (typeof DeliveryStates)[number];
