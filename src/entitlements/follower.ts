import type { Logger } from 'pino';
import type { TallyConfig } from '../config/index.js';
import type { RedisClient } from '../redis/index.js';
import type { Definitions } from './definitions.js';
import { describeVersion, hasDefinitions, publishDefinitions, type DefinitionCatalog } from './published.js';

/**
 * The evaluator's side of the published entitlement definitions (published.ts): at start it publishes
 * its config's features and defaults (a new version if they differ from the published ones), then it
 * follows the published version, so every evaluator of a prefix applies the same definitions, and
 * it tells whether there is anything to apply rollups to at all.
 */
export class DefinitionsFollower {
  constructor(
    private readonly client: RedisClient,
    private readonly config: TallyConfig,
    private readonly definitions: Definitions,
    private readonly logger: Logger,
    private readonly publisher: string,
  ) {}

  /** Publishes the config's definitions (if it has any) and reads the published ones. */
  async start(): Promise<DefinitionCatalog> {
    if (hasDefinitions(this.config)) {
      const r = await publishDefinitions(this.client, this.config, this.publisher);
      const version = describeVersion(r);
      if (r.status === 'older')
        this.logger.warn(
          { version: r.version, superseded: r.supersededVersion },
          `the config's entitlement definitions were published as v${r.supersededVersion ?? '?'} and replaced since: applying the published ones (${version}); the catalog only moves forward, so change the config to publish a new version`,
        );
      else if (r.status === 'unchanged')
        this.logger.info(
          { version: r.version },
          `entitlement definitions of the config are the published ones (${version})`,
        );
      else if (r.previous) {
        this.logger.warn(
          { version: r.version, previous: r.previous.version },
          `published the config's entitlement definitions as v${r.version}, replacing ${describeVersion(r.previous)}; every evaluator and check now applies them`,
        );
      } else
        this.logger.info(
          { version: r.version },
          `published the config's entitlement definitions (${version})`,
        );
    }
    const { catalog } = await this.definitions.refreshCatalog();
    if (!hasDefinitions(this.config) && catalog.source === 'published') {
      this.logger.info(
        { version: catalog.version },
        `the config has no entitlement features: applying those published in Redis (${describeVersion(catalog)})`,
      );
    }
    this.warnInvalid(catalog);
    return catalog;
  }

  /**
   * Follows the published version (one HGET); logs a change. Returns true when it changed. When the
   * published definitions vanished (Redis lost its data), publishes the config's again.
   */
  async refresh(): Promise<boolean> {
    let { catalog, changed } = await this.definitions.refreshCatalog();
    if (changed && catalog.source === 'config' && hasDefinitions(this.config)) {
      const r = await publishDefinitions(this.client, this.config, this.publisher);
      this.logger.warn(
        { version: r.version },
        `the published entitlement definitions were missing (Redis lost its data?): published the config's again (${describeVersion(r)})`,
      );
      ({ catalog, changed } = await this.definitions.refreshCatalog());
      changed = true;
    }
    if (changed) {
      this.logger.info(
        { version: catalog.version },
        `entitlement definitions changed: applying ${catalog.source === 'published' ? describeVersion(catalog) : "the config's"}`,
      );
      this.warnInvalid(catalog);
    }
    return changed;
  }

  /**
   * True when some feature exists: in the published definitions (or the config's), or created through
   * the API. Without one no rollup can count for anything, and consuming would only drop them.
   */
  async anyFeature(): Promise<boolean> {
    if (this.definitions.catalog.features.size > 0) return true;
    return (await this.client.hlen(this.definitions.keys.entitlementFeatures())) > 0;
  }

  /** Says why the evaluator does not consume `queue`, and what to do. */
  warnWaiting(queue: string): void {
    this.logger.warn(
      { queue },
      `no entitlement features (none in the config, none published in Redis, none created through the API): not consuming ${queue}; ` +
        `its rollups wait there until an evaluator starts with a config that declares entitlements (or remove ${queue} from rollups.queues if you do not use them)`,
    );
  }

  private warnInvalid(catalog: DefinitionCatalog): void {
    if (catalog.invalid.length === 0) return;
    this.logger.warn(
      { invalid: catalog.invalid },
      'published entitlement definitions that do not validate with this config are ignored',
    );
  }
}
