import { Type, type Static } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';

/**
 * The schemas of the entitlement boundaries: the config section `entitlements:`, the inputs of the
 * EntitlementStore API (features, entitlements, grants) and the notification jobs Tally emits. The
 * entitlement input is one flat object for all three types so errors name the exact field
 * (`entitlements.defaults[0].limit`); the type-specific rules are checked in `model.ts`.
 */

const KEY_PATTERN = '^[a-z0-9][a-z0-9_-]{0,62}$';
const GROUP_KEY_PATTERN = '^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$';

/** A non-negative decimal with up to 6 fractional digits, as a number or a string ("1000000", "0.5"). */
export const AmountSchema = Type.Union(
  [Type.Number({ minimum: 0 }), Type.String({ pattern: '^[0-9]+(\\.[0-9]{1,6})?$' })],
  {
    description: 'A non-negative decimal with up to 6 fractional digits',
  },
);

export const FeatureSchema = Type.Object(
  {
    key: Type.String({ pattern: KEY_PATTERN, description: 'Unique feature key' }),
    name: Type.Optional(Type.String()),
    meter: Type.Optional(
      Type.String({
        minLength: 1,
        description: 'Slug of the SUM or COUNT meter measuring it (metered features)',
      }),
    ),
    filter: Type.Optional(
      Type.Record(Type.String({ pattern: GROUP_KEY_PATTERN }), Type.String(), {
        description: "Only usage whose group-by values equal these, e.g. { model: 'gpt-5' }",
      }),
    ),
  },
  { additionalProperties: false },
);
export type FeatureInput = Static<typeof FeatureSchema>;

export const UsagePeriodSchema = Type.Object(
  {
    interval: Type.String({
      minLength: 2,
      description: 'DAY, WEEK, MONTH, YEAR or an ISO 8601 duration (P1M, P2W, PT6H)',
    }),
    anchor: Type.Optional(
      Type.String({
        description:
          'When period 0 starts: local date-time in timeZone (2024-01-01T00:00) or an instant with offset',
      }),
    ),
    timeZone: Type.Optional(
      Type.String({ description: 'IANA time zone the periods are aligned in (default UTC)' }),
    ),
  },
  { additionalProperties: false },
);
export type UsagePeriodInput = Static<typeof UsagePeriodSchema>;

export const ThresholdSchema = Type.Union([
  Type.Object(
    { percent: Type.Number({ exclusiveMinimum: 0, maximum: 100_000 }) },
    { additionalProperties: false },
  ),
  Type.Object({ value: AmountSchema }, { additionalProperties: false }),
]);
export type ThresholdInput = Static<typeof ThresholdSchema>;

export const EntitlementTypes = ['boolean', 'static', 'metered'] as const;
export type EntitlementType = (typeof EntitlementTypes)[number];

const entitlementProperties = {
  type: Type.Union(
    EntitlementTypes.map((t) => Type.Literal(t)),
    { description: 'boolean, static or metered' },
  ),
  config: Type.Optional(
    Type.Unknown({ description: 'static: the JSON configuration handed to the application' }),
  ),
  usagePeriod: Type.Optional(UsagePeriodSchema),
  limit: Type.Optional(AmountSchema),
  limitType: Type.Optional(
    Type.Union([Type.Literal('hard'), Type.Literal('soft')], { description: 'hard (default) or soft' }),
  ),
  thresholds: Type.Optional(Type.Array(ThresholdSchema, { maxItems: 32 })),
};

/** An entitlement of a subject to a feature, as given to `setEntitlement` (type-specific fields checked in model.ts). */
export const EntitlementSpecSchema = Type.Object(entitlementProperties, { additionalProperties: false });
export type EntitlementSpecInput = Static<typeof EntitlementSpecSchema>;

/** A config default: the entitlement every subject has to `feature` unless the API sets its own. */
export const DefaultEntitlementSchema = Type.Object(
  { feature: Type.String({ pattern: KEY_PATTERN }), ...entitlementProperties },
  { additionalProperties: false },
);
export type DefaultEntitlementInput = Static<typeof DefaultEntitlementSchema>;

export const GrantInputSchema = Type.Object(
  {
    id: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_.-]{1,64}$' })),
    amount: AmountSchema,
    effectiveAt: Type.Optional(Type.String({ description: 'ISO 8601 instant; default now' })),
    expiresAt: Type.Optional(
      Type.String({ description: 'ISO 8601 instant; default: never (but see the reset rule)' }),
    ),
    priority: Type.Optional(
      Type.Integer({ minimum: 0, maximum: 1_000_000, description: 'Lower burns first; default 1' }),
    ),
  },
  { additionalProperties: false },
);
export type GrantInput = Static<typeof GrantInputSchema>;

const durationSchema = (defaultValue: string, description: string) =>
  Type.Union([Type.String(), Type.Number({ minimum: 0 })], { default: defaultValue, description });

/** The optional `entitlements:` section of config/tally.yaml. */
export const EntitlementsConfigSchema = Type.Object(
  {
    queue: Type.Optional(
      Type.String({
        minLength: 1,
        pattern: '^[^:]+$',
        description: 'Rollup queue the evaluator consumes; default rollups.queues[1]',
      }),
    ),
    notificationsQueue: Type.String({ default: 'tally-notifications', minLength: 1, pattern: '^[^:]+$' }),
    concurrency: Type.Integer({
      default: 16,
      minimum: 1,
      maximum: 1000,
      description: 'Rollup jobs the evaluator applies at once',
    }),
    lookback: durationSchema(
      '5m',
      'How long after its end a window may still wait for its rollup to be applied (real-time checks read it live)',
    ),
    maxLiveWindows: Type.Integer({
      default: 32,
      minimum: 1,
      maximum: 1000,
      description: 'Windows a check reads live, at most',
    }),
    maxLiveGroups: Type.Integer({
      default: 64,
      minimum: 1,
      maximum: 10_000,
      description:
        'Group-by combinations per meter a check probes across the partition before it probes only the subject’s own',
    }),
    maxScanFields: Type.Integer({
      default: 256,
      minimum: 0,
      maximum: 100_000,
      description:
        'Window hash fields a check may scan for group-by combinations no rollup has shown yet (0: never scan)',
    }),
    interval: durationSchema(
      '250ms',
      'How often the evaluator relays notifications and processes period resets',
    ),
    features: Type.Array(FeatureSchema, { default: [] }),
    defaults: Type.Array(DefaultEntitlementSchema, { default: [] }),
  },
  { additionalProperties: false, default: {} },
);
export type EntitlementsConfigInput = Static<typeof EntitlementsConfigSchema>;

export const NotificationTypes = [
  'entitlement.threshold',
  'entitlement.exhausted',
  'entitlement.reset',
] as const;
export type NotificationType = (typeof NotificationTypes)[number];

/**
 * The data of a notification job on the notifications queue (job name = `type`); a public contract
 * (docs/entitlements.md). Amounts are exact decimals as strings.
 */
export const NotificationJobSchema = Type.Object(
  {
    version: Type.Literal(1),
    type: Type.Union(NotificationTypes.map((t) => Type.Literal(t))),
    subject: Type.String(),
    feature: Type.String(),
    periodStart: Type.String({ description: 'ISO 8601 UTC' }),
    periodEnd: Type.String({ description: 'ISO 8601 UTC' }),
    threshold: Type.Optional(
      Type.Object({
        id: Type.String({ description: 'p<percent> or v<value>' }),
        percent: Type.Optional(Type.Number()),
        value: Type.Optional(Type.String()),
        level: Type.String({ description: 'The usage at which it fires' }),
      }),
    ),
    usage: Type.String({ description: 'Usage of the period when it fired (applied rollups)' }),
    balance: Type.String(),
    overage: Type.String(),
    allowance: Type.String({ description: 'limit + grants of the period' }),
    at: Type.String({ description: 'ISO 8601 UTC, when it fired' }),
  },
  { additionalProperties: false },
);
export type NotificationJob = Static<typeof NotificationJobSchema>;
export const notificationJobChecker = TypeCompiler.Compile(NotificationJobSchema);
