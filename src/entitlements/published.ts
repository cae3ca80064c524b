import { createHash } from 'node:crypto';
import { hostname } from 'node:os';
import type { TallyConfig } from '../config/index.js';
import { formatScaled, MeterIndex } from '../meters/index.js';
import { EntitlementScripts, TallyKeys, type RedisClient } from '../redis/index.js';
import { formatIsoUtc } from '../windows/index.js';
import type { EntitlementsConfig } from './config.js';
import { normalizeEntitlement, normalizeFeature, type Entitlement, type Feature } from './model.js';
import type { EntitlementSpecInput, FeatureInput } from './schema.js';

/**
 * The entitlement definitions applied at run time (one source of truth for every process of a prefix).
 *
 * The features and defaults of a config are published to Redis, versioned, when an evaluator starts (a
 * role of `tally worker`). Evaluators and checkers read them from there, not from their own config, so a
 * check never answers from definitions no evaluator applies. Until something is published, a process
 * falls back to its own config's definitions (`source: 'config'`) and says so.
 */
export interface DefinitionCatalog {
  /** `published`: read from Redis; `config`: nothing published yet, this process's config. */
  readonly source: 'published' | 'config';
  /** Published version (1, 2, ...); 0 for `config`. */
  readonly version: number;
  /** Fingerprint of the canonical document: equal fingerprints, equal definitions. */
  readonly fingerprint: string;
  readonly publishedAt?: number;
  readonly publishedBy?: string;
  readonly features: ReadonlyMap<string, Feature>;
  readonly defaults: ReadonlyMap<string, Entitlement>;
  /** Published entries this process cannot use (e.g. their meter is not in its config), with the reason. */
  readonly invalid: readonly { readonly field: string; readonly reason: string }[];
}

/** The published document: canonical (sorted, normalized), so equal definitions have equal JSON. */
interface DefinitionDocument {
  readonly v: 1;
  readonly features: readonly FeatureInput[];
  readonly defaults: readonly (EntitlementSpecInput & { readonly feature: string })[];
}

export interface PublishResult {
  /**
   * `older`: the config's definitions were published before and replaced since (an older config, e.g.
   * during a rolling deploy): nothing changed, the published ones stay.
   */
  readonly status: 'published' | 'unchanged' | 'older';
  readonly version: number;
  readonly publishedAt: number;
  readonly publishedBy: string;
  /** What it replaced (`published` only, and only if something was published before). */
  readonly previous?: {
    readonly version: number;
    readonly publishedAt: number;
    readonly publishedBy: string;
  };
  /** `older` only: the version the config's definitions were published as. */
  readonly supersededVersion?: number;
}

const byKey = <T>(a: [string, T], b: [string, T]) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0);

/** JSON with object keys sorted at every level: the form fingerprints are taken of. */
function stableJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(stableJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined);
    return `{${entries
      .sort(byKey)
      .map(([k, v]) => `${JSON.stringify(k)}:${stableJson(v)}`)
      .join(',')}}`;
  }
  return JSON.stringify(value);
}

function featureInput(f: Feature): FeatureInput {
  const filter = Object.fromEntries(Object.entries(f.filter).sort(byKey));
  return {
    key: f.key,
    ...(f.name !== undefined ? { name: f.name } : {}),
    ...(f.meter !== undefined ? { meter: f.meter } : {}),
    ...(Object.keys(filter).length > 0 ? { filter } : {}),
  };
}

function specInput(e: Entitlement): EntitlementSpecInput {
  if (e.type === 'boolean') return { type: 'boolean' };
  if (e.type === 'static') return { type: 'static', config: e.config };
  const { interval, anchor, timeZone } = e.usagePeriod;
  return {
    type: 'metered',
    usagePeriod: { interval, anchor, timeZone },
    limit: formatScaled(e.limit),
    limitType: e.limitType,
    thresholds: [...e.thresholds]
      .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
      .map((t) =>
        t.value !== undefined ? { value: formatScaled(t.value) } : { percent: t.percent as number },
      ),
  };
}

function documentOf(settings: Pick<EntitlementsConfig, 'features' | 'defaults'>): {
  doc: DefinitionDocument;
  json: string;
  fingerprint: string;
} {
  const doc: DefinitionDocument = {
    v: 1,
    features: [...settings.features].sort(byKey).map(([, f]) => featureInput(f)),
    defaults: [...settings.defaults].sort(byKey).map(([feature, e]) => ({ feature, ...specInput(e) })),
  };
  const json = stableJson(doc);
  return { doc, json, fingerprint: createHash('sha256').update(json).digest('hex').slice(0, 16) };
}

/** True when the config declares entitlement features (only then does an evaluator publish). */
export function hasDefinitions(config: TallyConfig): boolean {
  return config.entitlements.features.size > 0;
}

/** The config's own definitions, as used until a version is published. */
export function configCatalog(config: TallyConfig): DefinitionCatalog {
  const { features, defaults } = config.entitlements;
  return {
    source: 'config',
    version: 0,
    fingerprint: documentOf(config.entitlements).fingerprint,
    features,
    defaults,
    invalid: [],
  };
}

/** Fingerprint of the config's definitions, to compare with a catalog's. */
export function configFingerprint(config: TallyConfig): string {
  return documentOf(config.entitlements).fingerprint;
}

/** `<host>-<pid>`: who published, for the log lines and `check`'s note. */
export function defaultPublisher(): string {
  return `${hostname()}-${process.pid}`;
}

/**
 * Publishes the config's features and defaults as the prefix's definitions: a new version if they
 * differ from what is published, else nothing changes. Definitions published before and replaced since
 * are not published again (`older`): the catalog only moves forward.
 */
export async function publishDefinitions(
  client: RedisClient,
  config: TallyConfig,
  publisher = defaultPublisher(),
): Promise<PublishResult> {
  const { json, fingerprint } = documentOf(config.entitlements);
  const reply = await new EntitlementScripts(client, new TallyKeys(config.prefix)).publishDefinitions(
    fingerprint,
    json,
    publisher,
  );
  const [status, version, at, by, prevVersion = '0', prevAt = '', prevBy = ''] = reply;
  if (status === 'older')
    return {
      status,
      version: Number(version),
      publishedAt: Number(at),
      publishedBy: by ?? '',
      supersededVersion: Number(prevVersion),
    };
  return {
    status: status === 'published' ? 'published' : 'unchanged',
    version: Number(version),
    publishedAt: Number(at),
    publishedBy: by ?? '',
    ...(status === 'published' && prevVersion !== '0'
      ? { previous: { version: Number(prevVersion), publishedAt: Number(prevAt), publishedBy: prevBy } }
      : {}),
  };
}

/** The published version, 0 when nothing is published: one HGET, to tell whether a reload is due. */
export async function publishedVersion(client: RedisClient, config: TallyConfig): Promise<number> {
  return Number((await client.hget(new TallyKeys(config.prefix).entitlementDefinitions(), 'ver')) ?? 0);
}

/**
 * Reads the published definitions and validates them against this process's meters; undefined when
 * nothing is published. Entries that do not validate are left out and listed in `invalid`.
 */
export async function readPublished(
  client: RedisClient,
  config: TallyConfig,
  meters: MeterIndex = new MeterIndex(config.meters),
): Promise<DefinitionCatalog | undefined> {
  const flat = await client.hgetall(new TallyKeys(config.prefix).entitlementDefinitions());
  if (flat.doc === undefined || flat.ver === undefined) return undefined;
  const doc = JSON.parse(flat.doc) as DefinitionDocument;
  const lookup = (slug: string) => meters.bySlug(slug);
  const features = new Map<string, Feature>();
  const defaults = new Map<string, Entitlement>();
  const invalid: { field: string; reason: string }[] = [];
  doc.features.forEach((input, i) => {
    try {
      features.set(input.key, normalizeFeature(input, lookup, `features[${i}]`));
    } catch (err) {
      invalid.push({ field: `features[${i}]`, reason: (err as Error).message });
    }
  });
  doc.defaults.forEach(({ feature: key, ...spec }, i) => {
    const feature = features.get(key);
    try {
      if (!feature)
        throw new Error(`defaults[${i}].feature: feature ${JSON.stringify(key)} is not usable here`);
      defaults.set(key, normalizeEntitlement(spec, feature, `defaults[${i}]`));
    } catch (err) {
      invalid.push({ field: `defaults[${i}]`, reason: (err as Error).message });
    }
  });
  return {
    source: 'published',
    version: Number(flat.ver),
    fingerprint: flat.fp ?? '',
    publishedAt: Number(flat.at),
    publishedBy: flat.by ?? '',
    features,
    defaults,
    invalid,
  };
}

/** `v3, published 2026-12-03T10:00:00.000Z by host-123` */
export function describeVersion(
  catalog: Pick<DefinitionCatalog, 'version' | 'publishedAt' | 'publishedBy'>,
): string {
  const at =
    catalog.publishedAt !== undefined && Number.isFinite(catalog.publishedAt)
      ? formatIsoUtc(catalog.publishedAt)
      : '?';
  return `v${catalog.version}, published ${at} by ${catalog.publishedBy ?? '?'}`;
}

/**
 * One line when the definitions a process uses are not its config's (`what` names the config, e.g. its
 * file): another version is published, or nothing is published at all. Undefined when they agree.
 */
export function definitionsNote(
  catalog: DefinitionCatalog,
  config: TallyConfig,
  what = 'the config',
): string | undefined {
  const own = hasDefinitions(config);
  if (catalog.source === 'config') {
    const where = `this Redis (prefix ${config.prefix})`;
    if (!own) return `no entitlement definitions in ${what} or in ${where}: no feature exists`;
    return (
      `no evaluator has published entitlement definitions to ${where}: checking with ${what}'s; ` +
      `usage counts only windows still read live until \`tally worker\` runs with it`
    );
  }
  if (catalog.fingerprint === configFingerprint(config)) return undefined;
  return `${what} ${own ? 'has other entitlement definitions than' : 'has no entitlement definitions; using'} those the workers apply (${describeVersion(catalog)})${own ? ': checking with theirs' : ''}`;
}
