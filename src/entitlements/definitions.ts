import type { TallyConfig } from '../config/index.js';
import { MeterIndex, type Meter } from '../meters/index.js';
import { partitionOf } from '../producer/index.js';
import { EntitlementScripts, TallyKeys, type RedisClient } from '../redis/index.js';
import type { EntitlementsConfig } from './config.js';
import {
  matchesFilter,
  normalizeEntitlement,
  normalizeFeature,
  parseStoredGrant,
  type Entitlement,
  type Grant,
  type MeteredEntitlement,
  type StoredEntitlement,
} from './model.js';
import { configCatalog, publishedVersion, readPublished, type DefinitionCatalog } from './published.js';

/** A subject's entitlement definitions as stored in its definition hash, parsed. */
export interface SubjectDefinition {
  readonly subject: string;
  readonly partition: number;
  /** `ver` of the hash ('0' when it does not exist): every Lua step compares it. */
  readonly version: string;
  /** Entitlements set through the API, by feature key. */
  readonly explicit: ReadonlyMap<string, Entitlement>;
  /** Grants by feature key. */
  readonly grants: ReadonlyMap<string, readonly Grant[]>;
  /** Stored fields that no longer validate (e.g. their meter left the config), with the reason. */
  readonly invalid: readonly { readonly field: string; readonly reason: string }[];
}

export interface EffectiveEntitlement {
  readonly entitlement: Entitlement;
  readonly source: 'explicit' | 'default';
}

export interface MeteredTarget {
  readonly entitlement: MeteredEntitlement;
  readonly source: 'explicit' | 'default';
}

/**
 * Reads and interprets subject definitions: the explicit entitlements and grants stored in Redis, and
 * the default entitlements that apply where no explicit entitlement exists. Features and defaults come
 * from the catalog: the definitions published in Redis (see published.ts), else the config's.
 */
export class Definitions {
  readonly keys: TallyKeys;
  /** The entitlement scripts, on this catalog's connection. */
  readonly scripts: EntitlementScripts;
  readonly meters: MeterIndex;
  /** Evaluator and check settings (lookback, live windows...): always this process's config. */
  readonly settings: EntitlementsConfig;
  private readonly partitions: number;
  private current: DefinitionCatalog;
  /** The meters' revision the catalog was validated against (a registry change re-reads it). */
  private metersRevision: number;

  constructor(
    private readonly client: RedisClient,
    private readonly config: TallyConfig,
    /** The process's meters, as it follows the registry; default: the config's. */
    meters?: MeterIndex,
  ) {
    this.keys = new TallyKeys(config.prefix);
    this.scripts = new EntitlementScripts(client, this.keys);
    this.meters = meters ?? new MeterIndex(config.meters);
    this.metersRevision = this.meters.revision;
    this.settings = config.entitlements;
    this.partitions = config.partitions;
    this.current = configCatalog(config);
  }

  /** The features and defaults in use: the last ones `refreshCatalog` read. */
  get catalog(): DefinitionCatalog {
    return this.current;
  }

  /**
   * Reads the published definitions if their version differs from the catalog's (one HGET when it does
   * not). Returns the catalog and whether it changed.
   */
  async refreshCatalog(): Promise<{ catalog: DefinitionCatalog; changed: boolean }> {
    const version = await publishedVersion(this.client, this.config);
    // Version 0 is the config's catalog (nothing published), published ones start at 1. A change of
    // the meters (the registry) validates the same version anew: a feature may have become usable.
    if (version === this.current.version && this.metersRevision === this.meters.revision)
      return { catalog: this.current, changed: false };
    this.metersRevision = this.meters.revision;
    const published = await readPublished(this.client, this.config, this.meters);
    const next = published ?? configCatalog(this.config);
    const changed = next.source !== this.current.source || next.version !== this.current.version;
    this.current = next;
    return { catalog: next, changed };
  }

  /** The subject's home partition: its windows and its entitlement state share its slot. */
  partitionOf(subject: string): number {
    return partitionOf(subject, this.partitions);
  }

  meter(slug: string): Meter | undefined {
    return this.meters.bySlug(slug);
  }

  async load(subject: string): Promise<SubjectDefinition> {
    const partition = this.partitionOf(subject);
    const flat = await this.client.hgetall(this.keys.entitlementDefinition(partition, subject));
    return this.parse(subject, partition, flat);
  }

  parse(subject: string, partition: number, flat: Readonly<Record<string, string>>): SubjectDefinition {
    const explicit = new Map<string, Entitlement>();
    const grants = new Map<string, Grant[]>();
    const invalid: { field: string; reason: string }[] = [];
    const lookup = (slug: string) => this.meters.bySlug(slug);
    for (const [field, value] of Object.entries(flat)) {
      try {
        if (field.startsWith('e:')) {
          const stored = JSON.parse(value) as StoredEntitlement;
          const feature = normalizeFeature(stored.feature, lookup, field);
          explicit.set(field.slice(2), normalizeEntitlement(stored.spec, feature, field));
        } else if (field.startsWith('g:')) {
          const rest = field.slice(2);
          const feature = rest.slice(0, rest.indexOf(':'));
          const list = grants.get(feature) ?? [];
          list.push(parseStoredGrant(value));
          grants.set(feature, list);
        }
      } catch (err) {
        invalid.push({ field, reason: (err as Error).message });
      }
    }
    for (const list of grants.values())
      list.sort((a, b) => a.activeFrom - b.activeFrom || (a.id < b.id ? -1 : 1));
    return { subject, partition, version: flat.ver ?? '0', explicit, grants, invalid };
  }

  /** The entitlement of the subject to a feature: its own, else the config default. */
  effective(def: SubjectDefinition, feature: string): EffectiveEntitlement | undefined {
    const own = def.explicit.get(feature);
    if (own) return { entitlement: own, source: 'explicit' };
    const fallback = this.current.defaults.get(feature);
    return fallback ? { entitlement: fallback, source: 'default' } : undefined;
  }

  /** Feature keys the subject has an entitlement to (own or default). */
  featureKeys(def: SubjectDefinition): string[] {
    return [...new Set([...def.explicit.keys(), ...this.current.defaults.keys()])].sort();
  }

  /** The metered entitlements a rollup of `meter` with these group values counts for. */
  meteredFor(def: SubjectDefinition, meter: Meter, values: readonly (string | null)[]): MeteredTarget[] {
    const out: MeteredTarget[] = [];
    for (const key of this.featureKeys(def)) {
      const eff = this.effective(def, key);
      if (eff?.entitlement.type !== 'metered') continue;
      const ent = eff.entitlement;
      if (ent.feature.meter !== meter.slug || !matchesFilter(meter, ent.feature, values)) continue;
      out.push({ entitlement: ent, source: eff.source });
    }
    return out;
  }

  grantsOf(def: SubjectDefinition, feature: string): readonly Grant[] {
    return def.grants.get(feature) ?? [];
  }
}
