import { randomUUID } from 'node:crypto';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import type { TallyConfig } from '../config/index.js';
import { ErrorCode, TallyConfigError, TallyError, TallyValidationError } from '../errors/index.js';
import { formatScaled } from '../meters/index.js';
import { RedisComponent, type DefineOp } from '../redis/index.js';
import { formatIsoUtc, windowsBetween } from '../windows/index.js';
import { Definitions, type SubjectDefinition } from './definitions.js';
import {
  normalizeEntitlement,
  normalizeFeature,
  normalizeGrant,
  restartsUsage,
  sameMeasure,
  storedEntitlement,
  storedGrant,
  type Entitlement,
  type Feature,
  type Grant,
} from './model.js';
import type { EntitlementsOptions } from './options.js';
import { periodAt } from './period.js';
import {
  EntitlementSpecSchema,
  FeatureSchema,
  GrantInputSchema,
  type EntitlementSpecInput,
  type FeatureInput,
  type GrantInput,
} from './schema.js';

const featureChecker = TypeCompiler.Compile(FeatureSchema);
const specChecker = TypeCompiler.Compile(EntitlementSpecSchema);
const grantChecker = TypeCompiler.Compile(GrantInputSchema);
const MAX_ATTEMPTS = 5;
/** Candidate window starts around now for a usage restart (the Lua step picks by Redis's clock). */
const RESTART_SLACK_MS = 10 * 60_000;

export interface GrantView {
  readonly id: string;
  readonly amount: string;
  readonly effectiveAt: string;
  readonly expiresAt?: string;
  readonly priority: number;
  /** When it starts covering usage: max(effectiveAt, when it was added). */
  readonly activeFrom: string;
}

/** An entitlement as `list` reports it. */
export interface EntitlementView {
  readonly subject: string;
  readonly feature: Feature;
  readonly source: 'explicit' | 'default';
  readonly type: Entitlement['type'];
  readonly config?: unknown;
  readonly usagePeriod?: { readonly interval: string; readonly anchor: string; readonly timeZone: string };
  readonly limit?: string;
  readonly limitType?: 'hard' | 'soft';
  readonly thresholds?: readonly {
    readonly id: string;
    readonly percent?: number;
    readonly value?: string;
  }[];
  readonly grants: readonly GrantView[];
}

function validate<T>(
  checker: { Check(v: unknown): boolean; Errors(v: unknown): Iterable<{ path: string; message: string }> },
  value: unknown,
  what: string,
): T {
  if (checker.Check(value)) return value as T;
  const first = [...checker.Errors(value)][0];
  throw new TallyValidationError(
    `invalid-${what}`,
    `${what}${first?.path ?? ''}: ${first?.message ?? 'invalid'}`,
  );
}

/** Config errors of API input are validation errors of that input. */
function asValidation<T>(reason: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof TallyConfigError) throw new TallyValidationError(reason, err.message, { cause: err });
    throw err;
  }
}

export function grantView(g: Grant): GrantView {
  return {
    id: g.id,
    amount: formatScaled(g.amount),
    effectiveAt: formatIsoUtc(g.effectiveAt),
    ...(g.expiresAt !== undefined ? { expiresAt: formatIsoUtc(g.expiresAt) } : {}),
    priority: g.priority,
    activeFrom: formatIsoUtc(g.activeFrom),
  };
}

/**
 * The entitlement model in Redis: features (config plus API-created), and per subject its own
 * entitlements and grants, overriding the config defaults. Every change is one Lua step
 * (defineEntitlement.lua) guarded by the subject's definition version.
 */
export class EntitlementStore extends RedisComponent {
  readonly definitions: Definitions;
  private readonly config: TallyConfig;

  constructor(options: EntitlementsOptions) {
    super(options.config.redis, options, { component: 'entitlement-store' });
    this.config = options.config;
    this.definitions = new Definitions(this.client, this.config, options.meters);
  }

  /** Throws once closed; else brings the features and defaults up to the published version. */
  private async ready(): Promise<void> {
    if (this.isClosing) throw new TallyError(ErrorCode.Closed, 'EntitlementStore is closed');
    await this.definitions.refreshCatalog();
  }

  /**
   * Creates a feature, or updates its name. Its measure (meter and filter) cannot change once created
   * (usage recorded under it would become meaningless): create a new feature instead.
   */
  async upsertFeature(input: FeatureInput): Promise<Feature> {
    await this.ready();
    const valid = validate<FeatureInput>(featureChecker, input, 'feature');
    const feature = asValidation('invalid-feature', () =>
      normalizeFeature(valid, (slug) => this.definitions.meter(slug)),
    );
    const configured = this.definitions.catalog.features.get(feature.key);
    if (configured) {
      if (!sameMeasure(configured, feature)) throw immutable(feature.key);
      return configured;
    }
    const key = this.definitions.keys.entitlementFeatures();
    const json = JSON.stringify(feature);
    if ((await this.client.hsetnx(key, feature.key, json)) === 0) {
      const existing = await this.getFeature(feature.key);
      if (existing && !sameMeasure(existing, feature)) throw immutable(feature.key);
      await this.client.hset(key, feature.key, json);
    }
    return feature;
  }

  /** A feature by key: from the published definitions (or the config's), else from the API-created ones. */
  async getFeature(key: string): Promise<Feature | undefined> {
    await this.ready();
    const configured = this.definitions.catalog.features.get(key);
    if (configured) return configured;
    const json = await this.client.hget(this.definitions.keys.entitlementFeatures(), key);
    return json === null ? undefined : (JSON.parse(json) as Feature);
  }

  async listFeatures(): Promise<Feature[]> {
    await this.ready();
    const stored = await this.client.hgetall(this.definitions.keys.entitlementFeatures());
    const all = new Map<string, Feature>(
      Object.entries(stored).map(([k, v]) => [k, JSON.parse(v) as Feature]),
    );
    for (const [k, f] of this.definitions.catalog.features) all.set(k, f);
    return [...all.values()].sort((a, b) => (a.key < b.key ? -1 : 1));
  }

  /**
   * Sets the subject's own entitlement to a feature (replacing the config default or its previous
   * one). Changing the limit, limit type or thresholds keeps the period's usage; a new metered
   * entitlement, or one with another usage period, starts counting at the current window.
   */
  async setEntitlement(
    subject: string,
    featureKey: string,
    spec: EntitlementSpecInput,
  ): Promise<EntitlementView> {
    await this.ready();
    const valid = validate<EntitlementSpecInput>(specChecker, spec, 'entitlement');
    const feature = await this.requireFeature(featureKey);
    const ent = asValidation('invalid-entitlement', () => normalizeEntitlement(valid, feature));
    const json = storedEntitlement(feature, valid, Date.now());
    const def = await this.change(subject, featureKey, (d) => {
      const before = this.definitions.effective(d, featureKey)?.entitlement;
      const mode = restartsUsage(before, ent)
        ? 'restart'
        : ent.type !== 'metered' && before?.type === 'metered'
          ? 'drop'
          : 'keep';
      return ['set', json, ...this.usageArgs(ent, mode)];
    });
    return this.view(def, featureKey) as EntitlementView;
  }

  /** Removes the subject's own entitlement (and its grants); the config default applies again, if any. */
  async removeEntitlement(subject: string, featureKey: string): Promise<boolean> {
    await this.ready();
    let removed = false;
    await this.change(subject, featureKey, (d) => {
      const before = d.explicit.get(featureKey);
      removed = before !== undefined;
      if (!before) return undefined;
      const after = this.definitions.catalog.defaults.get(featureKey);
      const mode = restartsUsage(before, after)
        ? 'restart'
        : after?.type !== 'metered' && before.type === 'metered'
          ? 'drop'
          : 'keep';
      return ['set', '', ...this.usageArgs(after, mode)];
    });
    return removed;
  }

  /** Adds a grant to the subject's metered entitlement to the feature (own or default). */
  async addGrant(subject: string, featureKey: string, input: GrantInput): Promise<GrantView> {
    await this.ready();
    const valid = validate<GrantInput>(grantChecker, input, 'grant');
    const request = normalizeGrant(valid, randomUUID(), Date.now());
    let activeFrom = 0;
    await this.change(
      subject,
      featureKey,
      (d) => {
        const eff = this.definitions.effective(d, featureKey);
        if (eff?.entitlement.type !== 'metered') {
          throw new TallyValidationError(
            'not-metered',
            `${JSON.stringify(subject)} has no metered entitlement to ${JSON.stringify(featureKey)}`,
          );
        }
        return [
          'grant',
          request.id,
          request.effectiveAt,
          request.expiresAt ?? '',
          storedGrant(request, Date.now()),
        ];
      },
      (reply) => {
        if (reply[0] === 'exists')
          throw new TallyValidationError(
            'grant-exists',
            `grant ${JSON.stringify(request.id)} already exists`,
          );
        if (reply[0] === 'expired')
          throw new TallyValidationError(
            'grant-expired',
            `grant ${JSON.stringify(request.id)} expires before it could cover any usage`,
          );
        activeFrom = Number(reply[2]);
      },
    );
    return grantView({ ...request, activeFrom, createdAt: Date.now() });
  }

  async removeGrant(subject: string, featureKey: string, grantId: string): Promise<boolean> {
    await this.ready();
    let removed = true;
    await this.change(
      subject,
      featureKey,
      () => ['ungrant', grantId],
      (reply) => {
        if (reply[0] === 'missing') removed = false;
      },
    );
    return removed;
  }

  /** The subject's entitlements: its own and the config defaults it has, with grants. */
  async list(subject: string): Promise<EntitlementView[]> {
    await this.ready();
    const def = await this.definitions.load(subject);
    if (def.invalid.length > 0)
      this.logger.warn(
        { subject, invalid: def.invalid },
        'stored entitlements that no longer validate are ignored',
      );
    return this.definitions.featureKeys(def).flatMap((key) => this.view(def, key) ?? []);
  }

  private view(def: SubjectDefinition, featureKey: string): EntitlementView | undefined {
    const eff = this.definitions.effective(def, featureKey);
    if (!eff) return undefined;
    const ent = eff.entitlement;
    const base = {
      subject: def.subject,
      feature: ent.feature,
      source: eff.source,
      type: ent.type,
      grants: this.definitions.grantsOf(def, featureKey).map(grantView),
    };
    if (ent.type === 'static') return { ...base, config: ent.config };
    if (ent.type === 'boolean') return base;
    const { interval, anchor, timeZone } = ent.usagePeriod;
    return {
      ...base,
      usagePeriod: { interval, anchor, timeZone },
      limit: formatScaled(ent.limit),
      limitType: ent.limitType,
      thresholds: ent.thresholds.map((t) => ({
        id: t.id,
        ...(t.percent !== undefined ? { percent: t.percent } : {}),
        ...(t.value !== undefined ? { value: formatScaled(t.value) } : {}),
      })),
    };
  }

  private async requireFeature(key: string): Promise<Feature> {
    const feature = await this.getFeature(key);
    if (!feature)
      throw new TallyValidationError(
        'unknown-feature',
        `unknown feature ${JSON.stringify(key)}: declare it in the config or with upsertFeature`,
      );
    return asValidation('invalid-feature', () =>
      normalizeFeature(feature, (slug) => this.definitions.meter(slug), `feature ${key}`),
    );
  }

  /** Usage mode, reset schedule score, usage expiry and restart candidates for defineEntitlement. */
  private usageArgs(ent: Entitlement | undefined, mode: 'keep' | 'restart' | 'drop'): (string | number)[] {
    if (ent?.type !== 'metered') return [mode, '', 0, 0];
    const now = Date.now();
    const period = periodAt(ent.usagePeriod, now);
    const meter = this.definitions.meter(ent.feature.meter);
    const candidates = meter
      ? [...windowsBetween(meter.window, now - RESTART_SLACK_MS, now + RESTART_SLACK_MS)].map((w) => w.start)
      : [];
    return [mode, period.end, period.end + this.config.windows.retentionMs, candidates.length, ...candidates];
  }

  /**
   * Runs one defineEntitlement step built from a fresh definition, retrying while the definition
   * changes under it; `build` returns the op arguments (or undefined: nothing to do).
   */
  private async change(
    subject: string,
    featureKey: string,
    build: (def: SubjectDefinition) => DefineOp | undefined,
    onReply?: (reply: string[]) => void,
  ): Promise<SubjectDefinition> {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const def = await this.definitions.load(subject);
      const op = build(def);
      if (!op) return def;
      const target = { partition: def.partition, subject, feature: featureKey, version: def.version };
      const reply = await this.definitions.scripts.define(target, op);
      if (reply === 'stale') continue;
      onReply?.(reply);
      return this.definitions.load(subject);
    }
    throw new TallyError(
      ErrorCode.State,
      `the entitlements of ${JSON.stringify(subject)} kept changing; try again`,
    );
  }

  /** Nothing of its own to stop; RedisComponent.close closes the connection if it opened it. */
  protected shutdown(): Promise<void> {
    return Promise.resolve();
  }
}

function immutable(key: string): TallyValidationError {
  return new TallyValidationError(
    'feature-immutable',
    `feature ${JSON.stringify(key)} already exists with another meter or filter; its measure cannot change (create a new feature)`,
  );
}
