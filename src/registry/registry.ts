import type { TallyConfig } from '../config/index.js';
import { TallyConfigError } from '../errors/index.js';
import { compileMeters, MeterIndex, type Meter, type MeterInput } from '../meters/index.js';
import { RegistryScripts, TallyKeys, type MeterRegistration, type RedisClient } from '../redis/index.js';
import {
  definitionJson,
  definitionOf,
  firstDifference,
  meterInputOf,
  newUlid,
  parseDefinition,
  type MeterDefinition,
} from './definition.js';

/**
 * The meter registry: what every running worker, evaluator and `serve` of a prefix obeys, whatever its
 * own config says (docs/operations.md, "Changing meters and partitions safely").
 *
 * - It lives in one Redis hash (`<prefix>:registry`), versioned; the first process that starts records
 *   the partition count and its config's meters, later ones add the meters their config adds.
 * - A meter's definition is immutable per slug, and the partition count is fixed: a process whose
 *   config disagrees refuses to start (`declare` throws a TallyConfigError naming what differs).
 * - Each partition is brought to a version by `syncPartition`, which records where each meter starts
 *   counting in it; applyBatch refuses a call prepared at another version than its partition's, so a
 *   replica whose view lags never applies events without the meters that count them.
 *
 * This is the one module the HTTP management API calls to create and delete meters.
 */

/** Id, name and description: what may be said of a meter without changing what it counts. */
export interface MeterInfo {
  readonly id: string;
  readonly name?: string;
  readonly description?: string;
}

export interface RegisteredMeter {
  readonly definition: MeterDefinition;
  readonly info: MeterInfo;
  /** The registry version at which it (last) became active. */
  readonly activeSince: number;
  readonly createdAt: number;
  /** When it was deleted (epoch ms); undefined while active. */
  readonly deletedAt?: number;
}

export interface RegistrySnapshot {
  /** 0 when nothing is registered yet. */
  readonly version: number;
  readonly partitions: number | undefined;
  /** Every registered meter, deleted ones included, by slug. */
  readonly meters: readonly RegisteredMeter[];
  readonly active: readonly Meter[];
  readonly inactive: readonly Meter[];
}

/** One partition at one registry version: the meters that count its entries, and from where. */
export class PartitionView {
  readonly index: MeterIndex;
  /** Entries after this id count in every active meter; before it, only in meters whose point is older. */
  private readonly latestFrom: readonly [number, number];

  constructor(
    readonly version: number,
    meters: readonly Meter[],
    /** Per active meter, the id of the last entry it does not count (`0-0`: counts all). */
    readonly from: ReadonlyMap<string, string>,
  ) {
    this.index = new MeterIndex(meters);
    let latest: [number, number] = [0, 0];
    for (const id of from.values()) {
      const parsed = parseId(id);
      if (compareIds(parsed, latest) > 0) latest = parsed;
    }
    this.latestFrom = latest;
  }

  /** The meters of an event type that count an entry with this id. */
  metersFor(type: string, entryId: string): readonly Meter[] | undefined {
    const meters = this.index.forType(type);
    if (meters === undefined) return undefined;
    const id = parseId(entryId);
    if (compareIds(id, this.latestFrom) > 0) return meters;
    const counting = meters.filter((m) => compareIds(id, parseId(this.from.get(m.slug) ?? '0-0')) > 0);
    return counting.length > 0 ? counting : undefined;
  }
}

function parseId(id: string): [number, number] {
  const dash = id.indexOf('-');
  return dash < 0 ? [Number(id), 0] : [Number(id.slice(0, dash)), Number(id.slice(dash + 1))];
}

function compareIds(a: readonly [number, number], b: readonly [number, number]): number {
  return a[0] !== b[0] ? a[0] - b[0] : a[1] - b[1];
}

/** One line refusing a config whose meter disagrees with the registry's. */
function conflictMessage(prefix: string, wanted: MeterDefinition, storedJson: string): string {
  const diff = firstDifference(parseDefinition(storedJson), wanted);
  const what = diff
    ? `${diff.field} is ${diff.stored} in the registry but ${diff.wanted} here`
    : 'its definition differs from the registry';
  return (
    `meter ${JSON.stringify(wanted.slug)}: ${what} (prefix ${prefix}); a meter's definition never ` +
    `changes, since its stored windows keep the old meaning: give the new definition a new slug ` +
    `(e.g. ${wanted.slug}_v2) and delete the old meter when it is no longer needed`
  );
}

export class MeterRegistry {
  private readonly scripts: RegistryScripts;

  constructor(
    private readonly client: RedisClient,
    private readonly keys: TallyKeys,
  ) {
    this.scripts = new RegistryScripts(client, keys);
  }

  static forConfig(client: RedisClient, config: TallyConfig): MeterRegistry {
    return new MeterRegistry(client, new TallyKeys(config.prefix));
  }

  /** The registry version (one HGET); 0 when there is no registry. */
  async version(): Promise<number> {
    return Number((await this.client.hget(this.keys.registry(), 'version')) ?? 0);
  }

  /** The whole registry, its meters compiled. */
  async read(): Promise<RegistrySnapshot> {
    const flat = await this.client.hgetall(this.keys.registry());
    const meters: RegisteredMeter[] = [];
    for (const [field, value] of Object.entries(flat)) {
      if (!field.startsWith('d:')) continue;
      const slug = field.slice(2);
      const deleted = flat[`x:${slug}`];
      meters.push({
        definition: parseDefinition(value),
        info: JSON.parse(flat[`i:${slug}`] ?? '{"id":""}') as MeterInfo,
        activeSince: Number(flat[`v:${slug}`] ?? 0),
        createdAt: Number(flat[`c:${slug}`] ?? 0),
        ...(deleted !== undefined ? { deletedAt: Number(deleted) } : {}),
      });
    }
    meters.sort((a, b) => a.createdAt - b.createdAt || (a.definition.slug < b.definition.slug ? -1 : 1));
    const compile = (list: RegisteredMeter[]) =>
      compileMeters(list.map((m) => meterInputOf(m.definition, m.info.description)));
    return {
      version: Number(flat.version ?? 0),
      partitions: flat.partitions === undefined ? undefined : Number(flat.partitions),
      meters,
      active: compile(meters.filter((m) => m.deletedAt === undefined)),
      inactive: compile(meters.filter((m) => m.deletedAt !== undefined)),
    };
  }

  /**
   * Registers a config's partition count and meters: new slugs become active at a new version, slugs
   * registered with the same definition stay as they are (a deleted one is activated again). Throws a
   * TallyConfigError, in one line, when the config's partition count or a meter's definition differs
   * from the registry's; nothing is written then.
   */
  async declare(config: TallyConfig): Promise<{ version: number; added: readonly string[] }> {
    const reply = await this.scripts.register(
      config.partitions,
      'declare',
      config.data.meters.map((m) => this.registration(m)),
    );
    if (reply.status === 'partitions') {
      throw new TallyConfigError(
        'streams.partitions',
        `is ${config.partitions} here, but this Redis (prefix ${config.prefix}) was set up with ${reply.stored} partitions; ` +
          `every process of a prefix must use the same count: see "Changing meters and partitions safely" in docs/operations.md`,
      );
    }
    if (reply.status === 'conflict') {
      const input = config.data.meters.find((m) => m.slug === reply.slug) as MeterInput;
      const i = config.data.meters.indexOf(input);
      throw new TallyConfigError(`meters[${i}]`, conflictMessage(config.prefix, definitionOf(input), reply.stored));
    }
    if (reply.status !== 'ok') throw new Error(`registerMeters: unexpected reply ${reply.status}`);
    return { version: reply.version, added: reply.added };
  }

  /**
   * Creates one meter (the management API): a 'conflict' when the slug is registered with another
   * definition, 'exists' when it is registered and active.
   */
  async create(
    input: MeterInput,
    partitions: number,
    info: Omit<MeterInfo, 'id'> = {},
  ): Promise<
    | { status: 'created'; version: number }
    | { status: 'exists' }
    | { status: 'conflict'; message: string }
    | { status: 'partitions'; stored: number }
  > {
    compileMeters([input]); // throws a TallyConfigError naming a bad field
    const reply = await this.scripts.register(partitions, 'create', [this.registration(input, info)]);
    switch (reply.status) {
      case 'ok':
        return { status: 'created', version: reply.version };
      case 'conflict':
        return { status: 'conflict', message: conflictMessage(this.keys.prefix, definitionOf(input), reply.stored) };
      case 'partitions':
        return { status: 'partitions', stored: reply.stored };
      default:
        return { status: 'exists' };
    }
  }

  /** Deletes a meter: it stops counting at the next version. Undefined for an unknown slug. */
  delete(slug: string): Promise<number | undefined> {
    return this.scripts.deleteMeter(slug);
  }

  /**
   * Brings a partition to the snapshot's version (recording where newly active meters start) and
   * returns its view; 'newer' when the partition is at a later version than the snapshot.
   */
  async syncPartition(partition: number, snapshot: RegistrySnapshot): Promise<PartitionView | 'newer'> {
    const since = new Map(snapshot.meters.map((m) => [m.definition.slug, m.activeSince]));
    const reply = await this.scripts.syncPartition(
      partition,
      snapshot.version,
      snapshot.active.map((m) => [m.slug, since.get(m.slug) ?? 0] as const),
    );
    if (reply.status === 'newer') return 'newer';
    const from = new Map<string, string>();
    for (const m of snapshot.active) from.set(m.slug, reply.fields[`from:${m.slug}`] ?? '0-0');
    return new PartitionView(reply.version, snapshot.active, from);
  }

  private registration(input: MeterInput, info: Omit<MeterInfo, 'id'> = {}): MeterRegistration {
    const description = info.description ?? input.description;
    const meterInfo: MeterInfo = {
      id: newUlid(),
      ...(info.name !== undefined ? { name: info.name } : {}),
      ...(description !== undefined ? { description } : {}),
    };
    return {
      slug: input.slug,
      definition: definitionJson(definitionOf(input)),
      info: JSON.stringify(meterInfo),
    };
  }
}
