import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { TallyConfigError } from '../errors/index.js';
import type { RedisTls } from '../redis/index.js';

/** `redis.tls` as written: file paths. */
export interface TlsInput {
  readonly ca?: string | undefined;
  readonly cert?: string | undefined;
  readonly key?: string | undefined;
  readonly servername?: string | undefined;
}

function readPem(path: string, field: string, baseDir: string): Buffer {
  const file = resolve(baseDir, path);
  try {
    return readFileSync(file);
  } catch (err) {
    throw new TallyConfigError(field, `cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * Resolves `redis.tls` (file paths, relative to `baseDir`: the config file's directory) into what
 * the connection needs, reading the files now so a wrong path fails at start, naming the field.
 * TLS settings need a `rediss://` URL, and a client certificate needs its key (and the reverse).
 */
export function resolveTls(tls: TlsInput | undefined, url: string, baseDir: string): RedisTls | undefined {
  if (tls === undefined) return undefined;
  if (!url.startsWith('rediss://')) {
    throw new TallyConfigError(
      'redis.tls',
      `applies to a rediss:// URL only, got ${JSON.stringify(url.replace(/\/\/[^@/]*@/, '//***@'))}`,
    );
  }
  if ((tls.cert === undefined) !== (tls.key === undefined)) {
    throw new TallyConfigError(
      tls.cert === undefined ? 'redis.tls.cert' : 'redis.tls.key',
      'a client certificate (mutual TLS) needs both cert and key',
    );
  }
  return {
    ...(tls.ca !== undefined ? { ca: readPem(tls.ca, 'redis.tls.ca', baseDir) } : {}),
    ...(tls.cert !== undefined ? { cert: readPem(tls.cert, 'redis.tls.cert', baseDir) } : {}),
    ...(tls.key !== undefined ? { key: readPem(tls.key, 'redis.tls.key', baseDir) } : {}),
    ...(tls.servername !== undefined ? { servername: tls.servername } : {}),
  };
}
