/**
 * The sync scheduler (spec §8.4, v1.34+ semantics): after each run wait at least
 * minInterval before the next; run at least every maxInterval; a failed run is retried after
 * retryInterval unless something else runs first; requests coalesce (at most one queued).
 * The clock is injected, so tests drive time instead of sleeping.
 */

export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const realClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
};

export interface RunnerOptions {
  minIntervalMs: number;
  maxIntervalMs: number;
  retryIntervalMs: number;
  clock: Clock;
  /** One sync; resolves true on success. Never called concurrently. */
  run: () => Promise<boolean>;
}

export class BoundedFrequencyRunner {
  private lastRun: number;
  private queued = false;
  private retryAt?: number;
  private running?: Promise<void>;
  private timer?: unknown;
  private timerAt?: number;
  private stopped = false;
  runs = 0;

  constructor(private readonly o: RunnerOptions) {
    // As if a run had just become allowed: the first request runs at once, the periodic one later.
    this.lastRun = o.clock.now() - o.minIntervalMs;
  }

  /** Ask for a run as soon as minInterval allows. */
  request(): void {
    if (this.stopped) return;
    this.queued = true;
    this.schedule();
  }

  /** Start the periodic schedule (a run every maxInterval even with no requests). */
  start(): void {
    this.schedule();
  }

  stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== undefined) this.o.clock.clearTimeout(this.timer);
    this.timer = undefined;
    return this.running ?? Promise.resolve();
  }

  /** Resolves when the run in progress (if any) is over. */
  idle(): Promise<void> {
    return this.running ?? Promise.resolve();
  }

  private nextAt(): number {
    const now = this.o.clock.now();
    const earliest = this.lastRun + this.o.minIntervalMs;
    let at = this.lastRun + this.o.maxIntervalMs;
    if (this.queued) at = Math.min(at, Math.max(now, earliest));
    if (this.retryAt !== undefined) at = Math.min(at, Math.max(this.retryAt, earliest));
    return Math.max(at, now);
  }

  private schedule(): void {
    if (this.stopped || this.running) return;
    const at = this.nextAt();
    if (this.timer !== undefined && this.timerAt === at) return;
    if (this.timer !== undefined) this.o.clock.clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = this.o.clock.setTimeout(
      () => {
        this.timer = undefined;
        this.fire();
      },
      // Overdue (a run took longer than the interval): now, without Node's negative-timeout warning.
      Math.max(0, at - this.o.clock.now()),
    );
  }

  private fire(): void {
    if (this.stopped || this.running) return;
    this.queued = false;
    this.retryAt = undefined;
    this.lastRun = this.o.clock.now();
    this.runs++;
    this.running = (async () => {
      let ok = false;
      try {
        ok = await this.o.run();
      } catch {
        ok = false;
      }
      if (!ok) this.retryAt = this.o.clock.now() + this.o.retryIntervalMs;
      this.running = undefined;
      this.schedule();
    })();
  }
}
