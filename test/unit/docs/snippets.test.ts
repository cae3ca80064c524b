/**
 * Code a reader copies honours REDIS_URL (issue 23): a Redis address in a README or docs snippet, or
 * in examples/, is only the fallback of `REDIS_URL`, since the README tells people to set it.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '../../..');
const ADDRESS = /rediss?:\/\/|host: ['"]127\.0\.0\.1['"]|port: 6379/;

/** Lines of the fenced code blocks in a language of `langs`, with their line numbers. */
function codeLines(file: string, langs: readonly string[]): { line: number; text: string }[] {
  const out: { line: number; text: string }[] = [];
  let inBlock = false;
  readFileSync(resolve(ROOT, file), 'utf8')
    .split('\n')
    .forEach((text, i) => {
      const fence = /^\s*```(\w*)/.exec(text);
      if (fence) inBlock = !inBlock && langs.includes(fence[1] ?? '');
      else if (inBlock) out.push({ line: i + 1, text });
    });
  return out;
}

describe('snippets honour REDIS_URL', () => {
  const langs = ['ts', 'typescript', 'js', 'javascript', 'python', 'py'];
  const files = ['README.md', ...readdirSync(resolve(ROOT, 'docs')).map((f) => `docs/${f}`)].filter((f) =>
    f.endsWith('.md'),
  );

  it('in README.md and docs/*.md code blocks', () => {
    const found = files.flatMap((file) => codeLines(file, langs).map((l) => ({ file, ...l })));
    expect(found.length).toBeGreaterThan(20); // the blocks were read
    const hardcoded = found.filter((l) => ADDRESS.test(l.text) && !l.text.includes('REDIS_URL'));
    expect(hardcoded.map((l) => `${l.file}:${l.line}: ${l.text.trim()}`)).toEqual([]);
  });

  it('in examples/', () => {
    for (const file of readdirSync(resolve(ROOT, 'examples')).filter((f) => f.endsWith('.ts'))) {
      const lines = readFileSync(resolve(ROOT, 'examples', file), 'utf8').split('\n');
      const hardcoded = lines.filter((l) => ADDRESS.test(l) && !l.includes('REDIS_URL'));
      expect(hardcoded, file).toEqual([]);
    }
  });
});
