import { TallyConfigError, TallyValidationError } from '../errors/index.js';
import { formatScaled, toScaled, type Meter } from '../meters/index.js';
import { parseUsagePeriod, type UsagePeriod } from './period.js';
import type {
  EntitlementSpecInput,
  EntitlementType,
  FeatureInput,
  GrantInput,
  ThresholdInput,
} from './schema.js';

/**
 * The entitlement model in its validated form, and the formats it is stored in (Redis hash fields of
 * a subject's definition). Amounts are bigint micro-units (meters/decimal.ts), so limits, grants and
 * usage add up exactly.
 */

/** Looks a meter up by slug (the config's compiled meters). */
export type MeterLookup = (slug: string) => Meter | undefined;

export interface Feature {
  readonly key: string;
  readonly name?: string;
  /** Meter measuring the feature; absent for features that are only ever boolean or static. */
  readonly meter?: string;
  /** Group-by values usage must have to count, by group-by key. */
  readonly filter: Readonly<Record<string, string>>;
}

export interface Threshold {
  /** `p<percent>` or `v<value>`: the identity a notification is emitted once for, per period. */
  readonly id: string;
  readonly percent?: number;
  readonly value?: bigint;
}

export interface BooleanEntitlement {
  readonly type: 'boolean';
  readonly feature: Feature;
}

export interface StaticEntitlement {
  readonly type: 'static';
  readonly feature: Feature;
  readonly config: unknown;
}

export interface MeteredEntitlement {
  readonly type: 'metered';
  readonly feature: Feature & { readonly meter: string };
  readonly usagePeriod: UsagePeriod;
  readonly limit: bigint;
  readonly limitType: 'hard' | 'soft';
  readonly thresholds: readonly Threshold[];
}

export type Entitlement = BooleanEntitlement | StaticEntitlement | MeteredEntitlement;

export interface Grant {
  readonly id: string;
  readonly amount: bigint;
  /** As requested. */
  readonly effectiveAt: number;
  readonly expiresAt: number | undefined;
  readonly priority: number;
  /**
   * When it starts covering usage: max(effectiveAt, the moment it was added, by Redis's clock). A grant
   * never covers usage retroactively (see docs/entitlements.md, "Grants").
   */
  readonly activeFrom: number;
  readonly createdAt: number;
}

/** Default priority of grants and of the period's limit, which burns like a grant expiring at the period end. */
export const DEFAULT_PRIORITY = 1;
export const LIMIT_ALLOWANCE_ID = 'limit';

const fail = (field: string, message: string): never => {
  throw new TallyConfigError(field, message);
};

/** Parses an amount (number or decimal string) into micro-units; `positive` rejects zero. */
export function parseAmount(value: unknown, field: string, positive = false): bigint {
  const scaled = toScaled(value);
  // toScaled rounds beyond 6 fractional digits; an amount must be exact.
  const exact =
    scaled !== undefined &&
    (typeof value === 'number'
      ? Number(formatScaled(scaled)) === value
      : !(typeof value === 'string' && /[eE]|\.\d{6}\d*[1-9]/.test(value)));
  if (scaled === undefined || !exact || scaled < 0n || (positive && scaled === 0n)) {
    fail(
      field,
      `expected a ${positive ? 'positive' : 'non-negative'} decimal with up to 6 fractional digits, got ${JSON.stringify(value)}`,
    );
  }
  return scaled as bigint;
}

/** Validates a feature against the configured meters. */
export function normalizeFeature(input: FeatureInput, meters: MeterLookup, field = 'feature'): Feature {
  const filter = { ...(input.filter ?? {}) };
  if (input.meter === undefined) {
    if (Object.keys(filter).length > 0) fail(`${field}.filter`, 'a filter needs a meter');
    return { key: input.key, ...(input.name !== undefined ? { name: input.name } : {}), filter };
  }
  const meter = meters(input.meter);
  if (!meter) return fail(`${field}.meter`, `unknown meter ${JSON.stringify(input.meter)}`);
  if (meter.aggregation !== 'SUM' && meter.aggregation !== 'COUNT') {
    fail(
      `${field}.meter`,
      `metered features need a SUM or COUNT meter (usage must add up over a period); ${meter.slug} is ${meter.aggregation}`,
    );
  }
  for (const key of Object.keys(filter)) {
    if (!meter.groupKeys.includes(key)) {
      fail(
        `${field}.filter.${key}`,
        `meter ${meter.slug} has no group-by ${JSON.stringify(key)} (it has ${JSON.stringify(meter.groupKeys)})`,
      );
    }
  }
  return {
    key: input.key,
    ...(input.name !== undefined ? { name: input.name } : {}),
    meter: meter.slug,
    filter,
  };
}

/** True when two features measure the same thing (meter and filter). */
export function sameMeasure(a: Feature, b: Feature): boolean {
  if (a.meter !== b.meter) return false;
  const ka = Object.keys(a.filter).sort();
  const kb = Object.keys(b.filter).sort();
  return ka.length === kb.length && ka.every((k, i) => k === kb[i] && a.filter[k] === b.filter[k]);
}

function parseThresholds(list: readonly ThresholdInput[], field: string): Threshold[] {
  const byId = new Map<string, Threshold>();
  list.forEach((t, i) => {
    if ('percent' in t) {
      if (!(typeof t.percent === 'number' && Number.isFinite(t.percent) && t.percent > 0)) {
        fail(`${field}[${i}].percent`, `expected a positive number, got ${JSON.stringify(t.percent)}`);
      }
      if (toScaled(t.percent) === undefined)
        fail(`${field}[${i}].percent`, `at most 6 fractional digits, got ${t.percent}`);
      const id = `p${formatScaled(toScaled(t.percent) as bigint)}`;
      byId.set(id, { id, percent: t.percent });
    } else {
      const value = parseAmount(t.value, `${field}[${i}].value`, true);
      const id = `v${formatScaled(value)}`;
      byId.set(id, { id, value });
    }
  });
  return [...byId.values()];
}

/** Validates an entitlement of `feature`; type-specific fields are required or refused here. */
export function normalizeEntitlement(
  spec: EntitlementSpecInput,
  feature: Feature,
  field = 'entitlement',
): Entitlement {
  const refuse = (names: (keyof EntitlementSpecInput)[], type: EntitlementType) => {
    for (const name of names)
      if (spec[name] !== undefined) fail(`${field}.${name}`, `not allowed for a ${type} entitlement`);
  };
  switch (spec.type) {
    case 'boolean':
      refuse(['config', 'usagePeriod', 'limit', 'limitType', 'thresholds'], 'boolean');
      return { type: 'boolean', feature };
    case 'static': {
      refuse(['usagePeriod', 'limit', 'limitType', 'thresholds'], 'static');
      if (spec.config === undefined) fail(`${field}.config`, 'required for a static entitlement');
      let json: string | undefined;
      try {
        json = JSON.stringify(spec.config);
      } catch (err) {
        throw new TallyConfigError(`${field}.config`, `must be JSON: ${(err as Error).message}`, {
          cause: err,
        });
      }
      if (json === undefined) fail(`${field}.config`, 'must be a JSON value');
      return { type: 'static', feature, config: JSON.parse(json) };
    }
    case 'metered': {
      refuse(['config'], 'metered');
      if (feature.meter === undefined)
        fail(`${field}.type`, `feature ${feature.key} has no meter, so it cannot be metered`);
      if (spec.usagePeriod === undefined) fail(`${field}.usagePeriod`, 'required for a metered entitlement');
      if (spec.limit === undefined)
        fail(`${field}.limit`, 'required for a metered entitlement (0 for grants only)');
      return {
        type: 'metered',
        feature: feature as Feature & { meter: string },
        usagePeriod: parseUsagePeriod(
          spec.usagePeriod as NonNullable<EntitlementSpecInput['usagePeriod']>,
          `${field}.usagePeriod`,
        ),
        limit: parseAmount(spec.limit, `${field}.limit`),
        limitType: spec.limitType ?? 'hard',
        thresholds: parseThresholds(spec.thresholds ?? [], `${field}.thresholds`),
      };
    }
    default:
      return fail(
        `${field}.type`,
        `expected boolean, static or metered, got ${JSON.stringify((spec as { type: unknown }).type)}`,
      );
  }
}

/**
 * True when switching from `before` to `after` must restart usage tracking: a different measure
 * (meter or filter) or a different usage period makes the stored usage meaningless.
 */
export function restartsUsage(before: Entitlement | undefined, after: Entitlement | undefined): boolean {
  if (after?.type !== 'metered') return false;
  if (before?.type !== 'metered') return true;
  return !sameMeasure(before.feature, after.feature) || before.usagePeriod.id !== after.usagePeriod.id;
}

/** A validated grant input (times as epoch ms). */
export interface GrantRequest {
  readonly id: string;
  readonly amount: bigint;
  readonly effectiveAt: number;
  readonly expiresAt: number | undefined;
  readonly priority: number;
}

function parseInstant(value: string, field: string): number {
  const t = Date.parse(value);
  if (!/^\d{4}-\d{2}-\d{2}T/.test(value) || !Number.isFinite(t)) {
    throw new TallyValidationError(
      'invalid-time',
      `${field}: expected an ISO 8601 date-time, got ${JSON.stringify(value)}`,
    );
  }
  return t;
}

export function normalizeGrant(input: GrantInput, id: string, now: number): GrantRequest {
  let amount: bigint;
  try {
    amount = parseAmount(input.amount, 'grant.amount', true);
  } catch (err) {
    throw new TallyValidationError('invalid-amount', (err as Error).message, { cause: err });
  }
  const effectiveAt =
    input.effectiveAt === undefined ? now : parseInstant(input.effectiveAt, 'grant.effectiveAt');
  const expiresAt =
    input.expiresAt === undefined ? undefined : parseInstant(input.expiresAt, 'grant.expiresAt');
  if (expiresAt !== undefined && expiresAt <= effectiveAt) {
    throw new TallyValidationError(
      'invalid-grant',
      `grant.expiresAt must be after effectiveAt, got ${input.expiresAt}`,
    );
  }
  return { id: input.id ?? id, amount, effectiveAt, expiresAt, priority: input.priority ?? DEFAULT_PRIORITY };
}

// ---- Stored formats -------------------------------------------------------------------------------

/** Field `e:<feature>` of a subject's definition hash. */
export interface StoredEntitlement {
  readonly v: 1;
  readonly feature: FeatureInput;
  readonly spec: EntitlementSpecInput;
  readonly updatedAt: number;
}

export function storedEntitlement(feature: Feature, spec: EntitlementSpecInput, updatedAt: number): string {
  const stored: StoredEntitlement = { v: 1, feature: { ...feature }, spec, updatedAt };
  return JSON.stringify(stored);
}

/** Field `g:<feature>:<id>`: `<activeFrom ms>|<json>`, the prefix written by the Lua step with Redis's clock. */
interface StoredGrant {
  readonly id: string;
  readonly amount: string;
  readonly effectiveAt: number;
  readonly expiresAt?: number;
  readonly priority: number;
  readonly createdAt: number;
}

export function storedGrant(g: GrantRequest, createdAt: number): string {
  const stored: StoredGrant = {
    id: g.id,
    amount: formatScaled(g.amount),
    effectiveAt: g.effectiveAt,
    ...(g.expiresAt !== undefined ? { expiresAt: g.expiresAt } : {}),
    priority: g.priority,
    createdAt,
  };
  return JSON.stringify(stored);
}

export function parseStoredGrant(value: string): Grant {
  const bar = value.indexOf('|');
  const activeFrom = Number(value.slice(0, bar));
  const g = JSON.parse(value.slice(bar + 1)) as StoredGrant;
  return {
    id: g.id,
    amount: toScaled(g.amount) ?? 0n,
    effectiveAt: g.effectiveAt,
    expiresAt: g.expiresAt,
    priority: g.priority,
    activeFrom,
    createdAt: g.createdAt,
  };
}

// ---- Burn-down plans ------------------------------------------------------------------------------

/** Group-by values of a rollup in the meter's (sorted) group-key order, as stored in window hashes. */
export function groupValues(
  meter: Meter,
  groupBy: Readonly<Record<string, string | null>>,
): (string | null)[] {
  return meter.groupKeys.map((k) => groupBy[k] ?? null);
}

export function matchesFilter(meter: Meter, feature: Feature, values: readonly (string | null)[]): boolean {
  for (const [key, want] of Object.entries(feature.filter)) {
    if (values[meter.groupKeys.indexOf(key)] !== want) return false;
  }
  return true;
}

/**
 * How a check finds the feature's groups in a window hash: `fixed` when the filter pins every group-by
 * key (one group per subject), else `tails` with the filter as 1-based positions into a group tail.
 */
export function groupProbe(
  meter: Meter,
  feature: Feature,
): { mode: 'fixed'; tail: string } | { mode: 'tails'; filter: string } {
  if (meter.groupKeys.every((k) => feature.filter[k] !== undefined)) {
    return { mode: 'fixed', tail: JSON.stringify(meter.groupKeys.map((k) => feature.filter[k])) };
  }
  const positions: Record<string, string> = {};
  for (const [key, want] of Object.entries(feature.filter))
    positions[String(meter.groupKeys.indexOf(key) + 1)] = want;
  return { mode: 'tails', filter: JSON.stringify(positions) };
}
