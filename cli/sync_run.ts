/**
 * `kip sync`, the running part: host facts, runners per family, the source, the daemon, the
 * HTTP servers, signals. Loaded only when `kip sync` runs.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { networkInterfaces } from "node:os";
import { atLeast, ExecRunner } from "../lib/iptables/exec_runner.ts";
import { IptablesUnavailable } from "../lib/iptables/runner.ts";
import type { IPFamily } from "../lib/model/ip.ts";
import { parseDuration } from "../lib/proxy/config.ts";
import { resolveBuildOptions } from "../lib/proxy/options.ts";
import { ChangeTracker } from "../lib/proxy/tracker.ts";
import { ManifestsSource } from "../lib/sources/manifests.ts";
import type { Source } from "../lib/sources/source.ts";
import { DEFAULT_BATCH } from "../lib/sync/batch.ts";
import { cleanStaleUDP, udpTargets } from "../lib/sync/conntrack.ts";
import { Daemon } from "../lib/sync/daemon.ts";
import { close, HealthCheckServers, HealthState, healthzServer, listen, metricsServer } from "../lib/sync/http.ts";
import { createLogger } from "../lib/sync/log.ts";
import { createMetrics } from "../lib/sync/metrics.ts";
import { Proxier } from "../lib/sync/proxier.ts";
import { realClock } from "../lib/sync/runner.ts";
import { type IO, UsageError } from "./io.ts";
import { resolveNodeConfig } from "./node_flags.ts";
import type { SyncFlags } from "./sync.ts";

function duration(flag: string, v: string): number {
  const s = parseDuration(v);
  if (s === undefined) throw new UsageError(`--${flag}: ${JSON.stringify(v)} is not a duration like 1s, 30s or 1m`);
  return s * 1000;
}

/** The node's interface addresses as IP/LEN (what kube-proxy reads for nodePortAddresses). */
function hostAddresses(): string[] {
  const out: string[] = [];
  for (const list of Object.values(networkInterfaces()))
    for (const a of list ?? []) if (a.cidr) out.push(a.cidr.replace(/%[^/]*/, ""));
  return out;
}

function readSysctl(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8").trim();
  } catch {
    return undefined;
  }
}

export async function runSync(opts: SyncFlags, io: IO): Promise<number> {
  const log = createLogger(opts.logFormat === "json" ? "json" : "text", (l) => io.stderr(l));
  let daemon: Daemon | undefined;
  const servers: import("node:http").Server[] = [];
  try {
    if (!opts.dryRun && process.getuid?.() !== 0)
      throw new UsageError("kip sync changes iptables: run it as root (or use --dry-run)");
    const rescan = duration("rescan-period", opts.rescanPeriod);
    const { proxy: config, daemon: daemonConfig } = resolveNodeConfig(opts, io);
    // Daemon settings: the flag, else the --config file's, else kube-proxy's default (spec §15).
    const seconds = (s?: number) => (s === undefined ? undefined : `${s}s`);
    const minSync = duration(
      "iptables-min-sync-period",
      opts.iptablesMinSyncPeriod ?? seconds(daemonConfig.minSyncPeriodSeconds) ?? "1s",
    );
    const syncPeriod = duration(
      "iptables-sync-period",
      opts.iptablesSyncPeriod ?? seconds(daemonConfig.syncPeriodSeconds) ?? "30s",
    );
    const healthzBind = opts.healthzBindAddress ?? daemonConfig.healthzBindAddress ?? "0.0.0.0:10256";
    const metricsBind = opts.metricsBindAddress ?? daemonConfig.metricsBindAddress ?? "127.0.0.1:10249";
    if (!opts.hostAddress) config.hostAddresses = hostAddresses();
    if (opts.conntrackTcpBeLiberal === undefined)
      config.conntrackTCPBeLiberal = (readSysctl("/proc/sys/net/netfilter/nf_conntrack_tcp_be_liberal") ?? "0") !== "0";

    // One runner per family whose iptables works.
    const wanted = (opts.ipFamilies ?? "IPv4,IPv6").split(",").map((s) => s.trim()) as IPFamily[];
    for (const f of wanted)
      if (f !== "IPv4" && f !== "IPv6") throw new UsageError(`--ip-families: ${JSON.stringify(f)} is not IPv4 or IPv6`);
    const runners: ExecRunner[] = [];
    for (const family of wanted) {
      try {
        runners.push(await ExecRunner.create(family, opts.backend));
      } catch (e) {
        if (opts.ipFamilies) throw e;
        log.log("warn", `skipping ${family}: ${(e as Error).message}`);
      }
    }
    if (runners.length === 0) throw new IptablesUnavailable("no usable iptables binary (install the iptables package)");
    // Host facts kube-proxy probes: --random-fully needs iptables >= 1.6.2.
    if (opts.randomFully === undefined) config.randomFully = runners.every((r) => atLeast(r.version, [1, 6, 2]));
    const batchChains = opts.batchChains === undefined ? DEFAULT_BATCH.chains : Number(opts.batchChains);
    const batch = batchChains > 0 ? { chains: batchChains, rules: batchChains } : false;

    const source: Source = opts.manifests
      ? new ManifestsSource({ paths: opts.manifests, nodeName: config.hostname, rescanMs: opts.once ? 0 : rescan })
      : (await import("../lib/sources/apiserver.ts")).createApiserverSource({
          kubeconfig: opts.kubeconfig,
          master: opts.master,
          nodeName: config.hostname,
          env: io.env,
          onLog: (m: string) => log.log("info", m),
        });

    const proxiers = runners.map(
      (runner) =>
        new Proxier({
          family: runner.family,
          runner,
          config,
          batch,
          syncPeriodMs: syncPeriod,
          now: () => realClock.now(),
          dryRun: opts.dryRun
            ? (family, inputs) => {
                for (const t of inputs) io.stdout(`# ${family}\n${t}`);
              }
            : undefined,
        }),
    );
    for (const r of runners) log.log("info", "iptables", { family: r.family, binary: r.describe() });
    log.log("info", "settings", {
      node: config.hostname,
      minSyncPeriodMs: minSync,
      syncPeriodMs: syncPeriod,
      source: opts.manifests ? `manifests ${opts.manifests.join(",")}` : "apiserver",
    });

    // localhost NodePorts need route_localnet (spec §7.4); kube-proxy treats a failure as fatal.
    if (
      !opts.dryRun &&
      resolveBuildOptions(config, "IPv4").localhostNodePorts &&
      runners.some((r) => r.family === "IPv4")
    ) {
      try {
        writeFileSync("/proc/sys/net/ipv4/conf/all/route_localnet", "1");
      } catch (e) {
        throw new Error(`setting net.ipv4.conf.all.route_localnet=1 for localhost NodePorts: ${(e as Error).message}`);
      }
    }

    const metrics = createMetrics();
    const health = new HealthState(
      runners.map((r) => r.family),
      2 * syncPeriod,
      () => realClock.now(),
    );
    const daemonOnce = opts.once === true;
    const healthChecks =
      daemonOnce || opts.dryRun ? undefined : new HealthCheckServers(health, "0.0.0.0", (m) => log.log("warn", m));
    daemon = new Daemon({
      source,
      tracker: new ChangeTracker(config.hostname),
      proxiers,
      clock: realClock,
      minSyncPeriodMs: minSync,
      syncPeriodMs: syncPeriod,
      log,
      metrics,
      health,
      healthChecks,
      canary: !opts.dryRun && !daemonOnce,
      stateDir: opts.dryRun ? undefined : opts.stateDir,
      conntrack: opts.dryRun
        ? undefined
        : (family, state) => cleanStaleUDP(family, udpTargets(state, family, config.hostname)),
    });

    if (daemonOnce) {
      // Wait for the first list; the daemon then makes one full sync.
      const first = daemon.nextSync();
      await daemon.start();
      const ok = (await first).every((o) => o.ok);
      await daemon.stop();
      if (!ok) io.stderr("kip: sync failed; the rules were left as they were (see the log above)\n");
      return ok ? 0 : 1;
    }

    const hz = healthzServer(health, metrics, () => realClock.now());
    const ms = metricsServer(metrics, () =>
      Object.fromEntries(proxiers.map((p) => [p.family, { lastSuccess: p.lastSuccess, lastFailure: p.lastFailure }])),
    );
    servers.push(hz, ms);
    log.log("info", "serving", {
      healthz: await listen(hz, healthzBind),
      metrics: await listen(ms, metricsBind),
    });
    await daemon.start();
    const signal = await new Promise<string>((resolve) => {
      process.once("SIGTERM", () => resolve("SIGTERM"));
      process.once("SIGINT", () => resolve("SIGINT"));
    });
    log.log("info", `${signal}: stopping; the rules stay in place`);
    await daemon.stop();
    for (const s of servers) await close(s);
    return 0;
  } catch (e) {
    await daemon?.stop().catch(() => {});
    for (const s of servers) await close(s).catch(() => {});
    io.stderr(`kip: ${(e as Error).message}\n`);
    return e instanceof UsageError || e instanceof IptablesUnavailable ? 2 : 1;
  }
}
