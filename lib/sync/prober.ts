/**
 * Readiness probing for `kip sync --manifests`, with the kubelet's semantics (pkg/kubelet/
 * prober/worker.go): a target starts not ready; it is probed `initialDelaySeconds` after it
 * appears, then every `periodSeconds`; `successThreshold` passes in a row make it ready,
 * `failureThreshold` failures in a row make it not ready; a probe that has not answered
 * within `timeoutSeconds` failed.
 *
 * Bounded: one worker per target and never two probes of it in flight, at most
 * `maxConcurrent` probes in flight in all (the rest wait their turn), every probe cut at its
 * timeout. The clock is injected and the network check is a parameter, so tests drive time
 * and results by hand (tests/sync/prober.test.ts); lib/sync/probe_check.ts is the real check.
 */
import type { ReadinessProbe } from "../model/types.ts";
import type { Clock } from "./runner.ts";

export interface ProbeTarget {
  /** Unique per target: `namespace/service address:port`. */
  key: string;
  namespace: string;
  service: string;
  /** An endpoint address from the manifests (canonical text). */
  address: string;
  port: number;
  probe: ReadinessProbe;
}

export interface CheckResult {
  ok: boolean;
  /** Why, in a few words: `HTTP 200`, `connection refused`, `timeout after 1s`. */
  reason: string;
}

/** One probe of `target`; aborted through `signal` at the timeout. Should not throw. */
export type Check = (target: ProbeTarget, signal: AbortSignal) => Promise<CheckResult>;

export interface TargetState {
  target: ProbeTarget;
  ready: boolean;
  /** Probes completed (0: no result yet). */
  probes: number;
  /** The last result, and how many results in a row were the same. */
  last?: "success" | "failure";
  run: number;
  reason: string;
  /** When the last probe finished, and when `ready` last changed (clock ms). */
  lastProbeAt?: number;
  since: number;
  inFlight: boolean;
}

export interface ProberOptions {
  clock: Clock;
  check: Check;
  /** Probes in flight at once, over every target. */
  maxConcurrent: number;
  /** `ready` changed (not called for the initial not-ready state). */
  onTransition?(state: TargetState): void;
  /** Every finished probe, with its duration in seconds. */
  onResult?(target: ProbeTarget, seconds: number, ok: boolean): void;
  /** A target was added (state: not ready) or removed. */
  onAdded?(state: TargetState): void;
  onRemoved?(target: ProbeTarget): void;
}

interface Worker {
  state: TargetState;
  timer?: unknown;
  queued: boolean;
  removed: boolean;
  abort?: AbortController;
}

export const DEFAULT_MAX_CONCURRENT = 32;

export class Prober {
  private workers = new Map<string, Worker>();
  private queue: Worker[] = [];
  private running = 0;
  private stopped = false;

  constructor(private readonly o: ProberOptions) {}

  /** Make the targets exactly `targets`: new ones start, gone ones stop, changed ones keep their state. */
  set(targets: Iterable<ProbeTarget>): void {
    if (this.stopped) return;
    const want = new Map<string, ProbeTarget>();
    for (const t of targets) want.set(t.key, t);
    for (const [key, w] of this.workers) if (!want.has(key)) this.remove(w);
    for (const [key, t] of want) {
      const w = this.workers.get(key);
      if (!w) this.add(t);
      else if (JSON.stringify(w.state.target) !== JSON.stringify(t)) {
        // A new spec (timing, path): the next probe uses it; the state carries over, so an
        // edit of the probe does not take every endpoint out of service.
        const periodChanged = w.state.target.probe.periodSeconds !== t.probe.periodSeconds;
        w.state.target = t;
        if (periodChanged && !w.state.inFlight && !w.queued) this.schedule(w, t.probe.periodSeconds * 1000);
      }
    }
  }

  get(key: string): TargetState | undefined {
    return this.workers.get(key)?.state;
  }

  list(): TargetState[] {
    return [...this.workers.values()].map((w) => w.state);
  }

  /** Probes in flight now (tests check the cap). */
  get inFlight(): number {
    return this.running;
  }

  stop(): void {
    this.stopped = true;
    for (const w of this.workers.values()) this.remove(w);
  }

  private add(t: ProbeTarget): void {
    const w: Worker = {
      state: {
        target: t,
        ready: false,
        probes: 0,
        run: 0,
        reason: "not probed yet",
        since: this.o.clock.now(),
        inFlight: false,
      },
      queued: false,
      removed: false,
    };
    this.workers.set(t.key, w);
    this.o.onAdded?.(w.state);
    this.schedule(w, t.probe.initialDelaySeconds * 1000);
  }

  private remove(w: Worker): void {
    w.removed = true;
    if (w.timer !== undefined) this.o.clock.clearTimeout(w.timer);
    w.timer = undefined;
    w.abort?.abort();
    if (w.queued) this.queue = this.queue.filter((x) => x !== w);
    w.queued = false;
    this.workers.delete(w.state.target.key);
    this.o.onRemoved?.(w.state.target);
  }

  private schedule(w: Worker, ms: number): void {
    if (w.timer !== undefined) this.o.clock.clearTimeout(w.timer);
    w.timer = this.o.clock.setTimeout(() => {
      w.timer = undefined;
      this.due(w);
    }, ms);
  }

  /** Time for a probe: run it when a slot is free, else wait in line (one place per worker). */
  private due(w: Worker): void {
    if (w.removed || this.stopped || w.state.inFlight || w.queued) return;
    w.queued = true;
    this.queue.push(w);
    this.pump();
  }

  private pump(): void {
    while (this.running < this.o.maxConcurrent && this.queue.length > 0) {
      const w = this.queue.shift() as Worker;
      w.queued = false;
      if (!w.removed) this.run(w);
    }
  }

  private run(w: Worker): void {
    const clock = this.o.clock;
    const target = w.state.target;
    const started = clock.now();
    const abort = new AbortController();
    w.abort = abort;
    w.state.inFlight = true;
    this.running++;
    let done = false;
    const finish = (r: CheckResult) => {
      if (done) return;
      done = true;
      clock.clearTimeout(timeout);
      abort.abort();
      this.running--;
      w.state.inFlight = false;
      w.abort = undefined;
      if (!w.removed && !this.stopped) {
        this.record(w, r);
        this.o.onResult?.(target, (clock.now() - started) / 1000, r.ok);
        // A ticker, as the kubelet's: the next probe one period after this one started.
        const next = started + w.state.target.probe.periodSeconds * 1000;
        this.schedule(w, Math.max(0, next - clock.now()));
      }
      this.pump();
    };
    const seconds = target.probe.timeoutSeconds;
    const timeout = clock.setTimeout(() => finish({ ok: false, reason: `timeout after ${seconds}s` }), seconds * 1000);
    let p: Promise<CheckResult>;
    try {
      p = this.o.check(target, abort.signal);
    } catch (e) {
      p = Promise.resolve({ ok: false, reason: (e as Error)?.message ?? String(e) });
    }
    p.then(finish, (e) => finish({ ok: false, reason: (e as Error)?.message ?? String(e) }));
  }

  /** The kubelet's thresholds: a state changes only after enough equal results in a row. */
  private record(w: Worker, r: CheckResult): void {
    const s = w.state;
    const result = r.ok ? "success" : "failure";
    s.probes++;
    s.lastProbeAt = this.o.clock.now();
    if (s.last === result) s.run++;
    else {
      s.last = result;
      s.run = 1;
    }
    s.reason = r.reason;
    const p = s.target.probe;
    const flip = s.ready
      ? result === "failure" && s.run >= p.failureThreshold
      : result === "success" && s.run >= p.successThreshold;
    if (!flip) return;
    s.ready = !s.ready;
    s.since = s.lastProbeAt;
    this.o.onTransition?.(s);
  }
}
