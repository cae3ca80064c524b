/** The problem types of the HTTP API are one public list: src/http/problems.ts and docs/http-api.md agree. */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ProblemTypes } from '../../../src/http/problems.js';

describe('problem types', () => {
  it('are documented in docs/http-api.md, each with its title, and no other', () => {
    const doc = readFileSync(resolve(import.meta.dirname, '../../../docs/http-api.md'), 'utf8');
    const section = doc.slice(
      doc.indexOf('### Problem types'),
      doc.indexOf('\n## ', doc.indexOf('### Problem types')),
    );
    const rows = [...section.matchAll(/^\| `(urn:[^`]+)` +\| `([^`]+)` +\| (\d{3}) /gm)].map(
      ([, type, title]) => ({ type, title }),
    );
    expect(rows.length).toBeGreaterThan(0);
    expect(rows).toEqual(Object.values(ProblemTypes).map(({ type, title }) => ({ type, title })));
  });
});
