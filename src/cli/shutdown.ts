/**
 * How a long-running command (`tally worker`) stops on SIGTERM/SIGINT: the first signal closes its
 * components gracefully, but for at most `timeoutMs` (`worker.shutdownTimeout`): a close that hangs,
 * e.g. on commands waiting for an unreachable Redis, ends in exit code 1 with the unfinished work left
 * pending (the next owner of each partition applies it). A second signal exits at once (128 + signal
 * number), for an operator who does not want to wait.
 */
import { constants } from 'node:os';
import type { Logger } from 'pino';

export interface Closable {
  close(): Promise<void>;
}

export class SignalShutdown {
  private readonly components: Closable[] = [];
  private begun = false;

  constructor(
    private readonly logger: Logger,
    private readonly timeoutMs: number,
    private readonly exit: (code: number) => void = (code) => process.exit(code),
  ) {
    for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => this.onSignal(signal));
  }

  /** True once a signal asked the command to stop. */
  get stopping(): boolean {
    return this.begun;
  }

  /** Closes `component` on shutdown (at once if shutdown has begun already). */
  add(component: Closable | undefined): void {
    if (!component) return;
    this.components.push(component);
    if (this.begun) void component.close();
  }

  private onSignal(signal: NodeJS.Signals): void {
    if (this.begun) {
      this.logger.warn(
        { signal },
        'second signal: exiting at once; unfinished entries stay pending for the next owner',
      );
      this.exit(128 + (constants.signals[signal] ?? 0));
      return;
    }
    this.begun = true;
    this.logger.info({ signal, timeoutMs: this.timeoutMs }, 'shutting down');
    const timer = setTimeout(() => {
      this.logger.error(
        { timeoutMs: this.timeoutMs },
        'shutdown did not finish within worker.shutdownTimeout (is Redis reachable?): exiting; unfinished entries stay pending for the next owner',
      );
      this.exit(1);
    }, this.timeoutMs);
    void Promise.all(this.components.map((c) => c.close())).then(() => {
      clearTimeout(timer);
      this.exit(0);
    });
  }
}
