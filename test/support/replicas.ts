/**
 * Worker replicas as child processes for chaos tests: starts them through a spawn function (e.g.
 * Harness.spawnWorker), SIGKILLs them on demand, and tells killed-by-us apart from exits nobody asked
 * for (a crash is a finding). Every child is SIGKILLed by `killAll()`, and as a last resort when this
 * process exits.
 */
import type { ChildProcess } from 'node:child_process';

export class Replicas {
  private readonly live = new Set<ChildProcess>();
  private readonly doomed = new WeakSet<ChildProcess>();
  /** Exits nobody asked for: `pid <n>: code <c> signal <s>`. */
  readonly crashes: string[] = [];
  kills = 0;
  started = 0;
  private readonly onExit = (): void => this.killAll();

  constructor(private readonly spawnOne: () => ChildProcess) {
    process.once('exit', this.onExit);
  }

  get count(): number {
    return this.live.size;
  }

  start(): ChildProcess {
    const child = this.spawnOne();
    this.started++;
    this.live.add(child);
    child.once('exit', (code, signal) => {
      this.live.delete(child);
      if (!this.doomed.has(child)) this.crashes.push(`pid ${child.pid}: code ${code} signal ${signal}`);
    });
    return child;
  }

  /** SIGKILLs one live replica chosen by `rnd` and waits until it is gone. */
  async killOne(rnd: () => number): Promise<void> {
    const list = [...this.live];
    const victim = list[Math.floor(rnd() * list.length)];
    if (!victim) return;
    const exited = new Promise((resolve) => victim.once('exit', resolve));
    this.doomed.add(victim);
    victim.kill('SIGKILL');
    await exited;
    this.kills++;
  }

  /** SIGKILLs one given replica and waits until it is gone. */
  async kill(victim: ChildProcess): Promise<void> {
    if (!this.live.has(victim)) return;
    const exited = new Promise((resolve) => victim.once('exit', resolve));
    this.doomed.add(victim);
    victim.kill('SIGKILL');
    await exited;
    this.kills++;
  }

  /** SIGKILLs every replica still running (synchronous: usable from an exit hook). Idempotent. */
  killAll(): void {
    for (const child of this.live) {
      this.doomed.add(child);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  }

  /** Kills all and waits for their exits; detaches the exit hook. */
  async stop(): Promise<void> {
    const exits = [...this.live].map((c) => new Promise((resolve) => c.once('exit', resolve)));
    this.killAll();
    await Promise.all(exits);
    process.off('exit', this.onExit);
  }
}
