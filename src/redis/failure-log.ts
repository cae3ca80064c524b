import type { Logger } from 'pino';

/**
 * Logs a failing operation once, until it succeeds again, then one line saying it recovered: no log
 * storm while Redis is down, and no silence either. An operation is named by `op` and, for per-partition
 * work, its partition.
 */
export class FailureLog {
  private readonly failing = new Set<string>();

  constructor(private readonly logger: Logger) {}

  failed(
    op: string,
    partition: number | undefined,
    err: unknown,
    fields: Record<string, unknown> = {},
  ): void {
    const key = `${op}:${partition ?? ''}`;
    if (this.failing.has(key)) return;
    this.failing.add(key);
    this.logger.error(
      { err, op, ...(partition === undefined ? {} : { partition }), ...fields },
      `${op} failed; retrying`,
    );
  }

  /** The operations failing now, as `<op>:<partition>` (`<op>:` without a partition). */
  get current(): string[] {
    return [...this.failing];
  }

  succeeded(op: string, partition?: number): void {
    if (this.failing.delete(`${op}:${partition ?? ''}`)) {
      this.logger.info({ op, ...(partition === undefined ? {} : { partition }) }, `${op} recovered`);
    }
  }
}
