/**
 * The typed layer over the registry scripts (registerMeters, deleteMeter, syncPartitionRegistry):
 * keys, argument order and reply decoding in one place. src/registry builds on it.
 */
import type { TallyKeys } from './keys.js';
import { runScript, type RedisClient } from './scripts.js';

export type RegisterReply =
  | { readonly status: 'ok'; readonly version: number; readonly added: readonly string[] }
  | { readonly status: 'partitions'; readonly stored: number }
  | { readonly status: 'conflict'; readonly slug: string; readonly stored: string }
  | { readonly status: 'exists'; readonly slug: string };

export interface MeterRegistration {
  readonly slug: string;
  /** Canonical definition JSON (registry/definition.ts). */
  readonly definition: string;
  /** Id, name and description as JSON, kept from the first registration on. */
  readonly info: string;
}

export type SyncReply =
  | { readonly status: 'ok'; readonly version: number; readonly fields: Readonly<Record<string, string>> }
  | { readonly status: 'newer'; readonly version: number };

export class RegistryScripts {
  constructor(
    private readonly client: RedisClient,
    private readonly keys: TallyKeys,
  ) {}

  /** registerMeters.lua: adds (or reactivates) meters and records the partition count. */
  async register(
    partitions: number,
    mode: 'declare' | 'create',
    meters: readonly MeterRegistration[],
  ): Promise<RegisterReply> {
    const reply = (await runScript(
      this.client,
      'registerMeters',
      [this.keys.registry()],
      [partitions, mode, ...meters.flatMap((m) => [m.slug, m.definition, m.info])],
    )) as string[];
    const [status, a = '', b = ''] = reply;
    switch (status) {
      case 'ok':
        return { status, version: Number(a), added: reply.slice(2) };
      case 'partitions':
        return { status, stored: Number(a) };
      case 'conflict':
        return { status, slug: a, stored: b };
      default:
        return { status: 'exists', slug: a };
    }
  }

  /** deleteMeter.lua: the registry version after the deletion, or undefined for an unknown slug. */
  async deleteMeter(slug: string): Promise<number | undefined> {
    const [status, version] = (await runScript(this.client, 'deleteMeter', [this.keys.registry()], [
      slug,
    ])) as string[];
    return status === 'ok' ? Number(version) : undefined;
  }

  /** syncPartitionRegistry.lua: brings a partition to `version` with these active meters (slug, activation version). */
  async syncPartition(
    partition: number,
    version: number,
    active: readonly (readonly [slug: string, since: number])[],
  ): Promise<SyncReply> {
    const reply = (await runScript(
      this.client,
      'syncPartitionRegistry',
      [this.keys.partitionRegistry(partition), this.keys.events(partition)],
      [version, ...active.flatMap(([slug, since]) => [slug, since])],
    )) as string[];
    if (reply[0] === 'newer') return { status: 'newer', version: Number(reply[1]) };
    const fields: Record<string, string> = {};
    for (let i = 2; i + 1 < reply.length; i += 2) fields[reply[i] as string] = reply[i + 1] as string;
    return { status: 'ok', version: Number(reply[1]), fields };
  }
}
