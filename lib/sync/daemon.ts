/**
 * The node daemon: a source's events go into the change tracker, the bounded-frequency runner
 * turns them into syncs of every family's proxier, and the canary chains catch a third party
 * flushing the tables. Health, metrics and the last restore payloads are kept up to date.
 */
import { closeSync, constants, fchmodSync, mkdirSync, openSync, renameSync, unlinkSync, writeSync } from "node:fs";
import { join } from "node:path";
import type { IPFamily } from "../model/ip.ts";
import { type ClusterState, SERVICE_NAME_LABEL } from "../model/types.ts";
import { KUBE_PROXY_CANARY as CANARY, CANARY_TABLES } from "../proxy/chains.ts";
import type { ChangeTracker } from "../proxy/tracker.ts";
import type { ObjectKind, Source, SourceEvent } from "../sources/source.ts";
import type { HealthCheckServers, HealthState } from "./http.ts";
import type { Logger } from "./log.ts";
import type { Metrics } from "./metrics.ts";
import {
  eachInput,
  FULL_SYNC_PERIOD_MS,
  inputCount,
  type Proxier,
  type RestoreRecord,
  type SyncOutcome,
} from "./proxier.ts";
import { BoundedFrequencyRunner, type Clock } from "./runner.ts";

export interface DaemonOptions {
  source: Source;
  tracker: ChangeTracker;
  proxiers: Proxier[];
  clock: Clock;
  minSyncPeriodMs: number;
  syncPeriodMs: number;
  log: Logger;
  metrics?: Metrics;
  health?: HealthState;
  healthChecks?: HealthCheckServers;
  /** Watch the KUBE-PROXY-CANARY chains (off for --dry-run). */
  canary: boolean;
  /** Nothing is applied (--dry-run): syncs are logged as "dry run", never "synced". */
  dryRun?: boolean;
  /** Where to keep the last good and last failed restore payloads. */
  stateDir?: string;
  /** When to collect garbage (default: Bun's GC, GC_BUDGET_BYTES of RSS growth). */
  collector?: Collector;
  /** Called after every sync (tests wait on it). */
  onSync?: (outcomes: SyncOutcome[]) => void;
  /**
   * Deletes stale UDP flows (spec §10); undefined: no conntrack cleanup. It runs in the
   * background after the sync that asked for it, one pass at a time: `more` asks for another
   * pass (the work per pass is bounded), with the latest state.
   */
  conntrack?: (
    family: IPFamily,
    state: ClusterState,
    changed: ReadonlySet<string>,
  ) => Promise<number | { deleted: number; more: boolean }>;
}

/** Bun's full (or, `full` false, young-generation), synchronous garbage collection; undefined elsewhere. */
export function bunGC(full = true): (() => void) | undefined {
  const bun = (globalThis as { Bun?: { gc?: (force: boolean) => void } }).Bun;
  return bun?.gc ? () => bun.gc?.(full) : undefined;
}

const minorGC = bunGC(false);

/**
 * Garbage the state file's writer may leave before a young-generation collection (bytes).
 * Writing a full sync's payload unpacks it one input at a time (gunzip buffer, its text):
 * at 10k × 10 that was ~65 MB of garbage made within 0.2 s, collected only by the collection
 * after the sync, and it lifted the daemon's peak RSS by ~90 MB above the sync's own.
 */
const STATE_WRITE_GARBAGE_BYTES = 8 * 1024 * 1024;

/**
 * RSS the syncs may add before a full collection (bytes). Measured at 10k × 10: each partial
 * sync leaves ~10 MB of garbage (the sorted service ports, the entry rules, their restore
 * text), which JSC collects only when its heap has about doubled: RSS climbed from 360 to
 * 720 MB over 40 one-endpoint changes. A full collection there costs ~0.1–0.2 s, after the
 * sync (never before its restore), at most once per ~6 changes at that size.
 */
export const GC_BUDGET_BYTES = 64 * 1024 * 1024;

/**
 * When to collect: after a full sync (it leaves ~300 MB of garbage: restore text, rule arrays),
 * and after a sync that took RSS more than the budget above the lowest RSS seen since the last
 * collection. Memory budget of the daemon's steady state = what it keeps (see Proxier, the
 * build cache, the sources) + at most GC_BUDGET_BYTES of garbage.
 */
export class Collector {
  private low = Number.POSITIVE_INFINITY;
  private pending = false;
  collections = 0;

  constructor(
    private readonly o: {
      rss: () => number;
      gc?: () => void;
      budgetBytes: number;
      /** Runs `fn` once the sync's frames are gone (default: a timer of 0, unref'd). */
      defer?: (fn: () => void) => void;
    },
  ) {}

  afterSync(full: boolean): void {
    if (!this.o.gc || this.pending) return;
    const rss = this.o.rss();
    this.low = Math.min(this.low, rss);
    if (!full && rss - this.low <= this.o.budgetBytes) return;
    this.pending = true;
    const run = () => {
      this.pending = false;
      this.o.gc?.();
      this.collections++;
      this.low = this.o.rss();
    };
    if (this.o.defer) this.o.defer(run);
    else setTimeout(run, 0).unref?.();
  }
}

/**
 * writeSync until all of `text` is written (a regular file may take it in parts). The string
 * is written as is (no Buffer copy of it for the collector to find later); only a short write
 * falls back to bytes, for the rest.
 */
function writeAll(fd: number, text: string): void {
  const written = writeSync(fd, text);
  if (written >= Buffer.byteLength(text, "utf8")) return;
  const buf = Buffer.from(text, "utf8");
  for (let off = written; off < buf.length; ) off += writeSync(fd, buf, off, buf.length - off);
}

export class Daemon {
  private synced = new Set<ObjectKind>();
  private runner: BoundedFrequencyRunner;
  private canaryTimer?: unknown;
  private liveTimer?: unknown;
  private forceFull = false;
  private stopped = false;
  private waiters: ((outcomes: SyncOutcome[]) => void)[] = [];
  /** Conntrack work asked for and not started yet, per family; and the pass in progress. */
  private conntrackWanted = new Map<IPFamily, { state: ClusterState; changed: Set<string> }>();
  private conntrackRunning?: Promise<void>;
  syncs = 0;
  readonly collector: Collector;

  constructor(private readonly o: DaemonOptions) {
    this.collector =
      o.collector ?? new Collector({ rss: () => process.memoryUsage.rss(), gc: bunGC(), budgetBytes: GC_BUDGET_BYTES });
    this.runner = new BoundedFrequencyRunner({
      minIntervalMs: o.minSyncPeriodMs,
      maxIntervalMs: FULL_SYNC_PERIOD_MS,
      retryIntervalMs: o.syncPeriodMs,
      clock: o.clock,
      run: () => this.syncAll(),
    });
  }

  get ready(): boolean {
    return this.synced.size === 3;
  }

  private readyWaiters: (() => void)[] = [];

  /** Resolves once every kind has been listed (at once if it has been). */
  whenSynced(): Promise<void> {
    if (this.ready) return Promise.resolve();
    return new Promise((resolve) => this.readyWaiters.push(resolve));
  }

  async start(): Promise<void> {
    if (this.o.canary) await this.makeCanaries().catch((e) => this.canaryFailed(e));
    await this.o.source.start({
      onEvent: (e) => this.onEvent(e),
      onSynced: (kind) => {
        this.synced.add(kind);
        if (this.ready) {
          this.o.log.log("info", "sources synced", { services: this.o.tracker.state().services.length });
          this.runner.request();
          for (const w of this.readyWaiters.splice(0)) w();
        }
      },
      onProblem: (message) => this.o.log.log("warn", message),
    });
    this.runner.start();
    if (this.o.canary) this.scheduleCanary();
    if (!this.o.dryRun) this.scheduleLiveRead();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.canaryTimer !== undefined) this.o.clock.clearTimeout(this.canaryTimer);
    this.canaryTimer = undefined;
    if (this.liveTimer !== undefined) this.o.clock.clearTimeout(this.liveTimer);
    this.liveTimer = undefined;
    await this.o.source.stop();
    await this.runner.stop();
    await this.conntrackRunning;
    await this.o.healthChecks?.stop();
  }

  /** Resolves when no conntrack cleanup is running or waiting. */
  async conntrackIdle(): Promise<void> {
    while (this.conntrackRunning) await this.conntrackRunning;
  }

  /** Resolves with the outcomes of the next sync that finishes. */
  nextSync(): Promise<SyncOutcome[]> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Resolves when no sync is running. */
  idle(): Promise<void> {
    return this.runner.idle();
  }

  private onEvent(e: SourceEvent): void {
    const t = this.o.tracker;
    let changed = false;
    if (e.kind === "Service") changed = e.type === "upsert" ? t.upsertService(e.key, e.object) : t.deleteService(e.key);
    else if (e.kind === "EndpointSlice")
      changed = e.type === "upsert" ? t.upsertSlice(e.key, e.object) : t.deleteSlice(e.key);
    else if (e.key === t.nodeName) changed = t.setNode(e.type === "upsert" ? e.object : undefined);
    if (!changed) return;
    if (e.kind === "Node" && e.type === "upsert" && this.o.health) this.o.health.nodeEligible = !e.object.unschedulable;
    const m = this.o.metrics;
    if (m) {
      if (e.kind === "Service") m.serviceChanges.inc();
      if (e.kind === "EndpointSlice") m.endpointChanges.inc();
      m.serviceChangesPending.set(t.pendingCount);
      for (const p of this.o.proxiers) m.lastQueued.set({ ip_family: p.family }, this.o.clock.now() / 1000);
    }
    this.o.health?.queued();
    if (this.ready) this.runner.request();
  }

  private async syncAll(): Promise<boolean> {
    const t = this.o.tracker;
    const changed = t.takeChanged();
    const forceFull = this.forceFull || t.needFullSync;
    this.forceFull = false;
    t.needFullSync = false;
    const state = t.state();
    const outcomes: SyncOutcome[] = [];
    for (const p of this.o.proxiers) {
      const out = await p.sync(state, changed, forceFull);
      outcomes.push(out);
      this.record(p, out);
    }
    this.syncs++;
    this.cleanConntrack(state, changed, outcomes);
    if (this.o.healthChecks && outcomes.some((o) => o.ok))
      await this.o.healthChecks
        .sync(this.healthCheckPorts())
        .catch((e) => this.o.log.log("warn", "health-check servers not updated", { error: (e as Error).message }));
    this.o.metrics?.serviceChangesPending.set(t.pendingCount);
    this.o.onSync?.(outcomes);
    for (const w of this.waiters.splice(0)) w(outcomes);
    this.collector.afterSync(outcomes.some((o) => o.full));
    return outcomes.every((o) => o.ok);
  }

  private record(p: Proxier, out: SyncOutcome): void {
    const family = p.family;
    const m = this.o.metrics;
    const fields = {
      family,
      type: out.full ? "full" : "partial",
      ok: out.ok,
      buildMs: Math.round(out.buildMs),
      applyMs: Math.round(out.applyMs),
      restores: out.restores,
      natChains: out.natChains,
      natRules: out.natRules,
      filterRules: out.filterRules,
      staleChains: out.staleChains,
    };
    if (out.ok) {
      this.o.log.log("info", this.o.dryRun ? "dry run" : "synced", fields);
      this.o.health?.updated(family);
      if (m) {
        const secs = (out.buildMs + out.applyMs) / 1000;
        m.syncDuration.observe({ ip_family: family }, secs);
        (out.full ? m.syncFullDuration : m.syncPartialDuration).observe({ ip_family: family }, secs);
        m.lastTimestamp.set({ ip_family: family }, this.o.clock.now() / 1000);
        m.iptablesLast.set({ table: "filter", ip_family: family }, p.lastCounts.filter);
        m.iptablesLast.set({ table: "nat", ip_family: family }, p.lastCounts.nat);
        m.iptablesTotal.set({ table: "filter", ip_family: family }, p.lastCounts.filter);
        m.iptablesTotal.set({ table: "nat", ip_family: family }, p.lastCounts.natTotal);
        const nle = out.ruleset?.noLocalEndpoints;
        if (nle) {
          m.noLocalEndpoints.set({ traffic_policy: "internal", ip_family: family }, nle.internal);
          m.noLocalEndpoints.set({ traffic_policy: "external", ip_family: family }, nle.external);
        }
      }
      this.keep(family, "last-restore", p.lastSuccess);
    } else {
      // The payload first: an operator reading the log line finds the file already there.
      this.keep(family, "last-failed-restore", p.lastFailure);
      m?.restoreFailures.inc({ ip_family: family });
      if (!out.full) m?.partialRestoreFailures.inc({ ip_family: family });
      this.o.log.log("error", "sync failed; rules left as they were, retrying as a full sync", {
        ...fields,
        error: out.error,
        failedLine: p.lastFailure?.failedLineText,
      });
    }
  }

  /**
   * After a successful sync that touched a UDP Service: delete flows to endpoints that left.
   * In the background: the rules are already in place, and the next sync must not wait for
   * the conntrack tool (spec §10 puts this after the restore, not before the next one).
   */
  private cleanConntrack(state: ClusterState, changed: ReadonlySet<string>, outcomes: SyncOutcome[]): void {
    if (!this.o.conntrack || changed.size === 0) return;
    const udp = state.services.some(
      (s) => changed.has(`${s.namespace}/${s.name}`) && s.ports.some((p) => p.protocol === "UDP"),
    );
    if (!udp) return;
    for (const out of outcomes) {
      if (!out.ok) continue;
      const w = this.conntrackWanted.get(out.family);
      this.conntrackWanted.set(out.family, { state, changed: new Set([...(w?.changed ?? []), ...changed]) });
    }
    if (!this.conntrackRunning && this.conntrackWanted.size > 0) {
      this.conntrackRunning = this.conntrackWork().finally(() => {
        this.conntrackRunning = undefined;
      });
    }
  }

  private async conntrackWork(): Promise<void> {
    const clean = this.o.conntrack;
    if (!clean) return;
    for (;;) {
      const next = this.conntrackWanted.entries().next();
      if (next.done || this.stopped) return;
      const [family, { state, changed }] = next.value;
      this.conntrackWanted.delete(family);
      const t0 = performance.now();
      try {
        const r = await clean(family, state, changed);
        const { deleted, more } = typeof r === "number" ? { deleted: r, more: false } : r;
        if (deleted > 0)
          this.o.log.log("info", "stale UDP conntrack entries deleted", {
            family,
            deleted,
            ms: Math.round(performance.now() - t0),
            ...(more ? { more: true } : {}),
          });
        // Bounded passes: what is left goes in the next one, unless newer work replaced it.
        if (more && !this.conntrackWanted.has(family)) this.conntrackWanted.set(family, { state, changed });
      } catch (e) {
        this.o.log.log("warn", "conntrack cleanup failed", { family, error: (e as Error).message });
      }
    }
  }

  /**
   * The last good and last failed payloads, readable by an operator (state directory): mode
   * 0600 (they list every Service and pod IP), written to a new file and renamed into place,
   * so a symlink planted at the name is replaced, never followed.
   */
  private keep(family: IPFamily, name: string, r?: RestoreRecord): void {
    if (!this.o.stateDir || !r) return;
    const file = join(this.o.stateDir, `${name}-${family}.txt`);
    const tmp = join(this.o.stateDir, `.${name}-${family}.txt.tmp`);
    try {
      mkdirSync(this.o.stateDir, { recursive: true, mode: 0o700 });
      const header = [
        `# kip ${name} (${family}), ${new Date(r.at).toISOString()}, ${r.full ? "full" : "partial"} sync`,
        ...(r.error ? [`# error: ${r.error}`] : []),
        ...(r.failedLineText ? [`# failing line: ${r.failedLineText}`] : []),
      ];
      const count = inputCount(r);
      try {
        unlinkSync(tmp); // left by a crash, or planted: either way not ours to follow
      } catch {}
      const fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
      try {
        fchmodSync(fd, 0o600); // whatever the umask
        // Piece by piece: a 33 MB payload is not copied once more into one string.
        writeAll(fd, `${header.join("\n")}\n`);
        // One input at a time: a large payload is kept gzipped, and never unpacked whole here.
        let i = 0;
        let garbage = 0;
        for (const input of eachInput(r)) {
          writeAll(fd, `# restore ${++i} of ${count}\n`);
          writeAll(fd, input);
          garbage += input.length;
          if (garbage >= STATE_WRITE_GARBAGE_BYTES && minorGC) {
            minorGC();
            garbage = 0;
          }
        }
      } finally {
        closeSync(fd);
      }
      renameSync(tmp, file);
    } catch (e) {
      this.o.log.log("warn", "cannot write to the state directory", {
        dir: this.o.stateDir,
        error: (e as Error).message,
      });
    }
  }

  /** healthCheckNodePort → service and its local, ready, not terminating endpoint IPs (spec §11.1). */
  private healthCheckPorts(): Map<number, { service: string; localEndpoints: number }> {
    const state = this.o.tracker.state();
    const out = new Map<number, { service: string; localEndpoints: number }>();
    for (const s of state.services) {
      if (s.type !== "LoadBalancer" || s.externalTrafficPolicy !== "Local" || s.healthCheckNodePort === 0) continue;
      const ips = new Set<string>();
      for (const sl of state.endpointSlices) {
        if (sl.namespace !== s.namespace || sl.labels[SERVICE_NAME_LABEL] !== s.name) continue;
        for (const e of sl.endpoints)
          if (e.nodeName === this.o.tracker.nodeName && e.ready !== false && e.terminating !== true && e.addresses[0])
            ips.add(e.addresses[0]);
      }
      out.set(s.healthCheckNodePort, { service: `${s.namespace}/${s.name}`, localEndpoints: ips.size });
    }
    return out;
  }

  /**
   * Once per sync period, each proxier reads the live nat table outside any sync (large
   * clusters: lib/sync/proxier.ts); a stale chain found there asks for a sync that deletes it.
   */
  private scheduleLiveRead(): void {
    this.liveTimer = this.o.clock.setTimeout(() => void this.readLive(), this.o.syncPeriodMs);
  }

  private async readLive(): Promise<void> {
    let stale = false;
    for (const p of this.o.proxiers)
      stale =
        (await p.readLive().catch((e: Error) => {
          this.o.log.log("warn", "reading the live nat table failed; trying again later", {
            family: p.family,
            error: e?.message ?? String(e),
          });
          return false;
        })) || stale;
    if (this.stopped) return;
    if (stale && this.ready) this.runner.request();
    this.scheduleLiveRead();
  }

  private async makeCanaries(): Promise<void> {
    for (const p of this.o.proxiers)
      for (const table of CANARY_TABLES) {
        await p.o.runner.ensureChain(table, CANARY).catch((e: Error) => {
          this.o.log.log("warn", "cannot create the canary chain", { family: p.family, table, error: e.message });
        });
      }
  }

  private scheduleCanary(): void {
    this.canaryTimer = this.o.clock.setTimeout(
      () =>
        void this.checkCanary().catch((e) => {
          this.canaryFailed(e);
          if (!this.stopped && this.o.canary) this.scheduleCanary();
        }),
      this.o.syncPeriodMs,
    );
  }

  /** iptables could not even be started (out of file descriptors…): log, try again next period. */
  private canaryFailed(e: unknown): void {
    this.o.log.log("warn", "canary check failed; trying again later", { error: (e as Error)?.message ?? String(e) });
  }

  /**
   * A canary gone = someone flushed the tables: recreate them and resync everything.
   * kube-proxy watches mangle only (a whole-firewall flush takes it first); kip checks nat and
   * filter too, so `iptables -t nat -F; iptables -t nat -X` alone is repaired as well.
   */
  async checkCanary(): Promise<boolean> {
    let flushed = false;
    for (const p of this.o.proxiers)
      for (const table of CANARY_TABLES) {
        // A held lock or any other trouble rejects: not a flush (canaryFailed says why).
        if (!(await p.o.runner.chainExists(table, CANARY))) flushed = true;
      }
    if (flushed) {
      this.o.log.log("warn", "iptables flush detected (canary chain gone): recreating rules with a full sync");
      await this.makeCanaries();
      this.forceFull = true;
      this.runner.request();
    }
    if (!this.stopped && this.o.canary) this.scheduleCanary();
    return flushed;
  }
}
