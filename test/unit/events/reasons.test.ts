import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DeadLetterReasons } from '../../../src/events/index.js';

const ROOT = resolve(import.meta.dirname, '../../..');

/** The reason codes of docs/contract.md's "Reason codes" table, in order. */
function documentedReasons(): string[] {
  const doc = readFileSync(resolve(ROOT, 'docs/contract.md'), 'utf8');
  const start = doc.indexOf('Reason codes:');
  const table = doc.slice(start, doc.indexOf('\n\n', doc.indexOf('| ---', start)));
  return [...table.matchAll(/^\| `([a-z-]+)` +\|/gm)].map((m) => m[1] as string);
}

describe('dead-letter reasons', () => {
  it('are the ones docs/contract.md documents, in its order', () => {
    expect(documentedReasons()).toEqual([...DeadLetterReasons]);
  });

  it('cover every reason the Lua scripts write', () => {
    const lua = ['applyBatch-8.lua', 'deadLetterEntries-3.lua']
      .map((f) => readFileSync(resolve(ROOT, 'src/redis/lua', f), 'utf8'))
      .join('\n');
    // Literal reasons passed to deadLetter(...) or written as the `reason` field.
    const written = new Set(
      [
        ...lua.matchAll(
          /'reason', '([a-z-]+)'|deadLetter\([^)]*?'([a-z-]+)'|return '([a-z-]+)', '(?:too old|late)/g,
        ),
      ]
        .flatMap((m) => m.slice(1))
        .filter((x): x is string => x !== undefined),
    );
    for (const reason of ['late', 'beyond-retention', 'sum-overflow', 'poison'])
      expect(written).toContain(reason);
    for (const reason of written) expect(DeadLetterReasons).toContain(reason);
  });
});
