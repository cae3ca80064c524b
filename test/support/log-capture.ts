/**
 * A pino logger whose lines are kept in memory, for tests that check what a component logs (once, with
 * which level and message) rather than only what it does.
 */
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';

export interface LogLine {
  level: number;
  msg: string;
  [field: string]: unknown;
}

/** pino's numeric levels. */
export const LogLevel = { debug: 20, info: 30, warn: 40, error: 50, fatal: 60 } as const;

export interface CapturedLogs {
  readonly logger: Logger;
  /** Every line logged so far, parsed. */
  readonly lines: LogLine[];
  /** Lines whose message matches `msg`, optionally at `level` or above. */
  matching(msg: RegExp, minLevel?: number): LogLine[];
  /** Lines at `level` or above. */
  atLeast(level: number): LogLine[];
  /** All lines as text, one per line, for failure messages. */
  dump(): string;
}

/** A logger at `level` (default debug) writing parsed lines into `lines` (synchronously). */
export function captureLogs(level: pino.LevelWithSilent = 'debug'): CapturedLogs {
  const lines: LogLine[] = [];
  const sink = new Writable({
    write(chunk: Buffer | string, _encoding, callback) {
      for (const text of chunk.toString().split('\n')) {
        if (text.trim() !== '') lines.push(JSON.parse(text) as LogLine);
      }
      callback();
    },
  });
  const logger = pino({ level }, sink);
  return {
    logger,
    lines,
    matching: (msg, minLevel = 0) => lines.filter((l) => l.level >= minLevel && msg.test(l.msg)),
    atLeast: (min) => lines.filter((l) => l.level >= min),
    dump: () => lines.map((l) => JSON.stringify(l)).join('\n'),
  };
}
