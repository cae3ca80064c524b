import type { Logger } from 'pino';
import type { TallyConfig } from '../config/index.js';
import { MeterIndex } from '../meters/index.js';
import { TallyKeys, type RedisClient } from '../redis/index.js';
import { sleep } from '../time/index.js';
import { definitionOf, meterInputOf } from './definition.js';
import {
  MeterRegistry,
  type PartitionView,
  type RegisteredMeter,
  type RegistrySnapshot,
} from './registry.js';

export interface FollowerOptions {
  /** What this process is, for `tally status` (worker, evaluator, serve). */
  readonly role: string;
  /** This process's name in `tally status`. */
  readonly name: string;
  /**
   * How often the registry version is read (one HGET).
   * @defaultValue 1000
   */
  readonly intervalMs?: number;
}

/** How often a follower says which version it follows, and how long `tally status` shows it after. */
const FOLLOWER_HEARTBEAT_MS = 5_000;

/**
 * A process's side of the meter registry (registry.ts). At start it declares its config's meters
 * (refusing to start, in one line, when they contradict the registry), then follows the registry's
 * version, so a meter added or deleted anywhere reaches this process within about `intervalMs`:
 * its `index` (shared with every component of the process) is updated in place. It also says, every
 * few seconds, which version it follows (`tally status` shows it), and registers what it follows again
 * if Redis lost the registry.
 */
export class RegistryFollower {
  readonly registry: MeterRegistry;
  /** The registry's meters; updated in place when the registry changes. */
  readonly index: MeterIndex;
  private current: RegistrySnapshot | undefined;
  private readonly keys: TallyKeys;
  private readonly intervalMs: number;
  private readonly stop = new AbortController();
  private loop: Promise<void> | undefined;
  private lastHeartbeat = 0;
  private readonly views = new Map<number, PartitionView>();

  constructor(
    private readonly client: RedisClient,
    private readonly config: TallyConfig,
    private readonly logger: Logger,
    private readonly options: FollowerOptions,
  ) {
    this.keys = new TallyKeys(config.prefix);
    this.registry = new MeterRegistry(client, this.keys);
    this.index = new MeterIndex(config.meters);
    this.intervalMs = options.intervalMs ?? 1_000;
  }

  /** The registry as last read. */
  get snapshot(): RegistrySnapshot {
    if (!this.current) throw new Error('RegistryFollower: start() first');
    return this.current;
  }

  get version(): number {
    return this.current?.version ?? 0;
  }

  /** True once the registry was read (`start`). */
  get started(): boolean {
    return this.current !== undefined;
  }

  /**
   * The registered meters: the active ones (deleted ones too with `includeDeleted`); before the
   * registry was read, the config's, with their slug as id and no creation time.
   */
  registered(includeDeleted = false): RegisteredMeter[] {
    if (!this.current)
      return this.config.data.meters.map((m) => ({
        definition: definitionOf(m),
        info: { id: m.slug, ...(m.description !== undefined ? { description: m.description } : {}) },
        activeSince: 0,
        createdAt: 0,
      }));
    return this.current.meters.filter((m) => includeDeleted || m.deletedAt === undefined);
  }

  /**
   * Declares the config's meters and partition count (throws a TallyConfigError when they contradict
   * the registry), reads the registry and starts following it.
   */
  async start(): Promise<RegistrySnapshot> {
    const { version, added } = await this.registry.declare(this.config);
    await this.take(await this.registry.read());
    if (added.length > 0) {
      // Every partition records where the new meters start now, not when a worker next syncs it.
      await this.activate();
      this.logger.info({ version, meters: added }, 'meters of the config registered: they count from now on');
    }
    const own = new Set(this.config.meters.map((m) => m.slug));
    const others = this.snapshot.active.filter((m) => !own.has(m.slug)).map((m) => m.slug);
    if (others.length > 0)
      this.logger.info(
        { meters: others },
        'meters registered by other processes or the API are applied here too (the registry is what runs; `tally meters delete` removes one)',
      );
    this.loop ??= this.follow();
    return this.snapshot;
  }

  /**
   * Reads the registry version and takes up a change (one HGET when nothing changed). Returns true when
   * the version changed. A missing registry (Redis lost its data) is registered again from what this
   * process followed.
   */
  async refresh(): Promise<boolean> {
    const version = await this.registry.version();
    if (version === 0 && this.current) {
      await this.restore(this.current);
    } else if (version === this.current?.version) {
      await this.heartbeat(false);
      return false;
    }
    const before = this.current?.version;
    await this.take(await this.registry.read());
    return this.current?.version !== before;
  }

  /**
   * The partition's view at the followed version, brought there first if need be (syncPartition).
   * When the partition is already at a later version, the registry is read again.
   */
  async partitionView(partition: number): Promise<PartitionView> {
    for (;;) {
      const cached = this.views.get(partition);
      if (cached && cached.version === this.version) return cached;
      const view = await this.registry.syncPartition(partition, this.snapshot);
      if (view !== 'newer') {
        this.views.set(partition, view);
        return view;
      }
      await this.refresh();
    }
  }

  /**
   * Brings every partition to the followed version, so meters added by this process start counting
   * there now (their activation points are recorded) rather than when a worker next syncs it.
   */
  async activate(): Promise<void> {
    for (let p = 0; p < this.config.partitions; p++) {
      // A partition that cannot be brought there now (a key of the wrong type) is brought there when a
      // worker next applies entries in it; it must not keep this process from starting.
      await this.partitionView(p).catch((err: unknown) =>
        this.logger.warn(
          { err, partition: p },
          'could not record where the new meters start in this partition yet',
        ),
      );
    }
  }

  /** Forgets a partition's view (applyBatch found the partition at another version). */
  invalidate(partition: number): void {
    this.views.delete(partition);
  }

  /** Stops following. Idempotent. */
  async close(): Promise<void> {
    this.stop.abort();
    await this.loop;
    await this.client.hdel(this.keys.registryFollowers(), this.options.name).catch(() => undefined);
  }

  private async take(snapshot: RegistrySnapshot): Promise<void> {
    const previous = this.current;
    this.current = snapshot;
    this.index.reset(snapshot.active, snapshot.inactive);
    if (previous && previous.version !== snapshot.version) {
      const before = new Set(previous.active.map((m) => m.slug));
      const after = new Set(snapshot.active.map((m) => m.slug));
      this.logger.info(
        {
          version: snapshot.version,
          previous: previous.version,
          added: [...after].filter((s) => !before.has(s)),
          deleted: [...before].filter((s) => !after.has(s)),
        },
        'meter registry changed: following the new version',
      );
    }
    await this.heartbeat(true);
  }

  /** Registers again what this process followed, after Redis lost the registry. */
  private async restore(snapshot: RegistrySnapshot): Promise<void> {
    const meters = snapshot.meters.filter((m) => m.deletedAt === undefined);
    const config = {
      ...this.config,
      data: {
        ...this.config.data,
        meters: meters.map((m) => meterInputOf(m.definition, m.info.description)),
      },
    };
    const { version } = await this.registry.declare(config);
    this.views.clear();
    this.logger.warn(
      { version, meters: meters.map((m) => m.definition.slug) },
      'the meter registry was missing (Redis lost its data?): registered the meters this process followed again',
    );
  }

  private async heartbeat(changed: boolean): Promise<void> {
    const now = Date.now();
    if (!changed && now - this.lastHeartbeat < FOLLOWER_HEARTBEAT_MS) return;
    this.lastHeartbeat = now;
    await this.client.hset(
      this.keys.registryFollowers(),
      this.options.name,
      JSON.stringify({ role: this.options.role, version: this.version, at: now }),
    );
  }

  private async follow(): Promise<void> {
    while (!this.stop.signal.aborted) {
      await sleep(this.intervalMs, this.stop.signal);
      if (this.stop.signal.aborted) return;
      try {
        await this.refresh();
      } catch (err) {
        this.logger.debug({ err }, 'reading the meter registry failed; trying again');
      }
    }
  }
}
