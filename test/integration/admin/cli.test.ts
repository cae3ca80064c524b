import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import type { DeadLetter, TallyStatus } from '../../../src/index.js';
import { Harness } from '../../support/tally.js';

const run = promisify(execFile);
const CLI = resolve(import.meta.dirname, '../../../dist/src/cli/main.js');
const meters = [
  { slug: 'tokens', eventType: 'llm', aggregation: 'SUM', valueProperty: '$.tokens', windowSize: '1m' },
];

async function tally(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, ...args], {
      env: { ...process.env, LOG_LEVEL: 'silent' },
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe('tally status and tally dead-letter (the built CLI)', () => {
  let harness: Harness | undefined;
  let dir: string | undefined;
  afterEach(async () => {
    await harness?.close();
    harness = undefined;
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  // Each CLI run costs ~1.5 s of Node start-up and module loading on the 2-core box.
  it('prints the status and lists, dry-runs and replays dead letters', { timeout: 60_000 }, async () => {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build first`);
    harness = new Harness({ meters, label: 'cli' });
    dir = mkdtempSync(join(tmpdir(), 'tally-admin-'));
    const file = join(dir, 'tally.yaml');
    writeFileSync(file, stringify(harness.raw));
    const time = new Date(Date.now() - 3 * 60_000).toISOString();
    await harness
      .producer()
      .send({ id: 'c-1', source: 'cli', type: 'llm', subject: 'acme', time, data: { tokens: 'lots' } });
    const worker = await harness.startWorker();
    await harness.settle();

    const json = await tally('status', '--config', file, '--json');
    expect(json.code).toBe(0);
    const s = JSON.parse(json.stdout) as TallyStatus;
    expect(s.partitions[0]).toMatchObject({
      streamLength: 1,
      deadLetters: 1,
      group: { lag: 0 },
      pending: { count: 0 },
    });

    const text = await tally('status', '--config', file);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain(`prefix ${harness.prefix}`);
    expect(text.stdout).toMatch(/Streams\n\s+partition\s+length\s+lag/);
    expect(text.stdout).toContain(worker.consumer);
    expect(text.stdout).toContain('partition 0: 1 dead letters');

    const listed = await tally('dead-letter', 'list', '--config', file, '--json');
    const [dl] = JSON.parse(listed.stdout) as DeadLetter[];
    expect(dl).toMatchObject({ reason: 'invalid-value', event: { id: 'c-1' } });
    const table = await tally('dead-letter', 'list', '--config', file, '--reason', 'invalid-value');
    expect(table.stdout).toContain(dl!.ref);
    expect(table.stdout).toContain('cli/c-1');

    const dry = await tally('dead-letter', 'replay', '--config', file, '--id', dl!.ref, '--dry-run');
    expect(dry.stdout).toContain(`would replay ${dl!.ref} [invalid-value] cli/c-1 → partition 0`);
    const none = await tally('dead-letter', 'replay', '--config', file);
    expect(none.code).toBe(1);
    expect(none.stderr).toContain('exactly one of --id');

    const replay = await tally('dead-letter', 'replay', '--config', file, '--all');
    expect(replay.code).toBe(0);
    expect(replay.stdout).toContain('1 replayed, 0 skipped, 0 not found, 0 failed');
    await harness.settle();
    const after = JSON.parse(
      (await tally('dead-letter', 'list', '--config', file, '--json')).stdout,
    ) as DeadLetter[];
    expect(after.map((d) => [d.event?.id, d.id === dl!.id])).toEqual([['c-1', false]]);
  });
});

describe('the CLI answers --help and reports mistakes in one line', () => {
  const commands = [
    ['demo'],
    ['worker'],
    ['produce'],
    ['demo-producer'],
    ['usage'],
    ['check'],
    ['status'],
    ['dead-letter'],
    ['dead-letter', 'list'],
    ['dead-letter', 'replay'],
  ];

  it('prints usage for every command', { timeout: 60_000 }, async () => {
    const top = await tally('--help');
    expect(top.code).toBe(0);
    for (const [name] of commands) expect(top.stdout).toContain(`  ${name!}`);
    for (const command of commands) {
      const help = await tally(...command, '--help');
      expect(help.code, command.join(' ')).toBe(0);
      expect(help.stdout, command.join(' ')).toContain(`Usage: tally ${command.join(' ')}`);
      expect(help.stderr).toBe('');
    }
  });

  const oneLine = async (args: string[], message: RegExp, env: NodeJS.ProcessEnv = {}) => {
    const before = { ...process.env };
    Object.assign(process.env, env);
    try {
      const r = await tally(...args);
      expect(r.code, args.join(' ')).not.toBe(0);
      const lines = r.stderr
        .trim()
        .split('\n')
        .filter((l) => !l.startsWith('tally: Redis '));
      expect(lines, args.join(' ')).toHaveLength(1);
      expect(lines[0]).toMatch(message);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    } finally {
      process.env = before;
    }
  };

  it(
    'rejects an unknown command, a missing config, a bad number and an unreachable Redis',
    { timeout: 60_000 },
    async () => {
      const config = resolve(import.meta.dirname, '../../../config/tally.yaml');
      await oneLine(['frobnicate'], /^tally: unknown command 'frobnicate'/);
      await oneLine(['status'], /^tally: required option '-c, --config <file>' not specified/);
      await oneLine(['status', '--config', '/nonexistent/tally.yaml'], /^tally: config: cannot read/);
      await oneLine(
        ['dead-letter', 'list', '--config', config, '--limit', 'ten'],
        /argument 'ten' is invalid. expected an integer/,
      );
      await oneLine(['worker', '--config', config, '--partitions', '0,x'], /expected an integer, got "x"/);
      await oneLine(['demo', '--duration', 'soon'], /--duration/);
      const down = { REDIS_URL: 'redis://127.0.0.1:1' };
      await oneLine(
        ['status', '--config', config],
        /^tally: cannot reach Redis at redis:\/\/127\.0\.0\.1:1: .*ECONNREFUSED/,
        down,
      );
      await oneLine(['check', '--config', config, 'acme', 'gpt5_tokens'], /^tally: cannot reach Redis/, down);
      const from = new Date(Date.now() - 3_600_000).toISOString();
      await oneLine(
        [
          'usage',
          '--config',
          config,
          '--meter',
          'llm_tokens',
          '--from',
          from,
          '--to',
          new Date().toISOString(),
        ],
        /^tally: cannot reach Redis/,
        down,
      );
    },
  );
});
