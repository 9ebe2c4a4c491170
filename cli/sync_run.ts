/**
 * `kip sync`, the running part: host facts, runners per family, the source, the daemon, the
 * HTTP servers, signals. Loaded only when `kip sync` runs.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { networkInterfaces } from "node:os";
import { atLeast } from "../lib/iptables/exec_runner.ts";
import { cidrContains, type IPFamily, parseCIDR, parseIP } from "../lib/model/ip.ts";
import { parseDuration } from "../lib/proxy/config.ts";
import { type ProxyConfig, resolveBuildOptions } from "../lib/proxy/options.ts";
import { ChangeTracker } from "../lib/proxy/tracker.ts";
import { ManifestsSource } from "../lib/sources/manifests.ts";
import { ProbeAnnotationIgnored, ProbingSource } from "../lib/sources/probing.ts";
import type { Source } from "../lib/sources/source.ts";
import { DEFAULT_BATCH } from "../lib/sync/batch.ts";
import { cleanStaleUDP, udpTargets } from "../lib/sync/conntrack.ts";
import { bunGC, Daemon } from "../lib/sync/daemon.ts";
import { close, HealthCheckServers, HealthState, healthzServer, listen, metricsServer } from "../lib/sync/http.ts";
import { streamChainNames } from "../lib/sync/live_chains.ts";
import { createLogger } from "../lib/sync/log.ts";
import { createMetrics } from "../lib/sync/metrics.ts";
import { startSystemdNotify } from "../lib/sync/notify.ts";
import { Proxier } from "../lib/sync/proxier.ts";
import { realClock } from "../lib/sync/runner.ts";
import { UsageError } from "./errors.ts";
import type { IO } from "./io.ts";
import { familyRunners, requireRoot } from "./node.ts";
import { resolveClusterFlags, resolveNodeConfig } from "./node_flags.ts";
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

/** `64Mi`, `1Gi`, `1048576` → bytes. */
function size(flag: string, v: string): number {
  const m = /^(\d+)(Ki|Mi|Gi)?$/.exec(v.trim());
  if (!m || Number(m[1]) <= 0)
    throw new UsageError(`--${flag}: ${JSON.stringify(v)} is not a size like 1048576, 64Mi or 1Gi`);
  return Number(m[1]) * { Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, "": 1 }[m[2] ?? ""]!;
}

/**
 * Where health-check NodePort servers listen: every address if --nodeport-addresses selects
 * all of them, else the node's addresses inside the selected CIDRs (as kube-proxy does).
 */
function healthCheckBinds(config: ProxyConfig, families: IPFamily[]): string[] {
  const out = new Set<string>();
  for (const family of families) {
    const cidrs = resolveBuildOptions(config, family)
      .nodePortCIDRs.map(parseCIDR)
      .filter((c) => c !== undefined);
    if (cidrs.length === 0) return ["0.0.0.0"];
    for (const a of config.hostAddresses) {
      const ip = parseIP(a.split("/")[0]);
      if (ip && cidrs.some((c) => cidrContains(c, ip))) out.add(ip.text);
    }
  }
  return [...out];
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
    if (!opts.dryRun) requireRoot("kip sync changes iptables: run it as root (or use --dry-run)");
    const rescan = duration("rescan-period", opts.rescanPeriod);
    const onceTimeout = duration("once-timeout", opts.onceTimeout ?? "30s");
    const maxFileBytes = size("manifests-max-file-bytes", opts.manifestsMaxFileBytes ?? "64Mi");
    const maxTotalBytes = size("manifests-max-total-bytes", opts.manifestsMaxTotalBytes ?? "256Mi");
    const { proxy: config, daemon: daemonConfig } = resolveNodeConfig(opts, io);
    const cluster = resolveClusterFlags(opts);
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
    const runners = await familyRunners(
      wanted,
      opts.backend,
      "no usable iptables binary (install the iptables package)",
      opts.ipFamilies ? undefined : (family, e) => log.log("warn", `skipping ${family}: ${e.message}`),
    );
    // Host facts kube-proxy probes: --random-fully needs iptables >= 1.6.2.
    if (opts.randomFully === undefined) config.randomFully = runners.every((r) => atLeast(r.version, [1, 6, 2]));
    const batchChains = opts.batchChains === undefined ? DEFAULT_BATCH.chains : Number(opts.batchChains);
    const batch = batchChains > 0 ? { chains: batchChains, rules: batchChains } : false;

    const manifests = opts.manifests
      ? new ManifestsSource({
          paths: opts.manifests,
          nodeName: config.hostname,
          // kip is the API server here: the cluster's ranges are errors, not warnings.
          namespace: cluster.namespace,
          policy: { cluster: cluster.cluster, checkServiceCIDRs: cluster.checkServiceCIDRs, enforce: true },
          rescanMs: opts.once ? 0 : rescan,
          maxFileBytes,
          maxTotalBytes,
        })
      : undefined;
    const metrics = createMetrics();
    // Manifests: kip/readiness-probe annotations are run here. Apiserver: the kubelet's own.
    const probing = manifests
      ? new ProbingSource(manifests, {
          clock: realClock,
          log: (level, msg, fields) => log.log(level, msg, fields),
          metrics,
        })
      : undefined;
    const source: Source =
      probing ??
      new ProbeAnnotationIgnored(
        (await import("../lib/sources/apiserver.ts")).createApiserverSource({
          kubeconfig: opts.kubeconfig,
          master: opts.master,
          nodeName: config.hostname,
          env: io.env,
          onLog: (m: string) => log.log("info", m),
        }),
        (level, msg, fields) => log.log(level, msg, fields),
      );

    const proxiers = runners.map(
      (runner) =>
        new Proxier({
          family: runner.family,
          runner,
          config,
          batch,
          syncPeriodMs: syncPeriod,
          now: () => realClock.now(),
          liveChains: (table) => streamChainNames(runner.saveArgv(table), table),
          collect: bunGC(),
          dryRun: opts.dryRun
            ? (family, inputs, jumps) => {
                const tool = family === "IPv6" ? "ip6tables" : "iptables";
                if (jumps.length > 0) {
                  io.stdout(`# ${family}: jump rules, ensured (created or inserted when missing) before the restore\n`);
                  for (const argv of jumps) io.stdout(`# ${tool} ${argv.map(shellWord).join(" ")}\n`);
                }
                for (const t of inputs) io.stdout(`# ${family}: ${tool}-restore --noflush --counters\n${t}`);
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
    // Already 1 (set on the node, or by the DaemonSet's init container): no write, so kip runs
    // with /proc/sys read-only, unprivileged.
    const ROUTE_LOCALNET = "/proc/sys/net/ipv4/conf/all/route_localnet";
    if (
      !opts.dryRun &&
      resolveBuildOptions(config, "IPv4").localhostNodePorts &&
      runners.some((r) => r.family === "IPv4") &&
      readSysctl(ROUTE_LOCALNET) !== "1"
    ) {
      try {
        writeFileSync(ROUTE_LOCALNET, "1");
      } catch (e) {
        throw new Error(
          `localhost NodePorts need net.ipv4.conf.all.route_localnet=1 and it cannot be set here (${(e as Error).message}): set it on the node (sysctl -w net.ipv4.conf.all.route_localnet=1), or run with --iptables-localhost-nodeports=false`,
        );
      }
    }

    const health = new HealthState(
      runners.map((r) => r.family),
      2 * syncPeriod,
      () => realClock.now(),
    );
    // A scan stuck for this long fails /livez (scans are bounded; this is the backstop).
    const stuckMs = Math.max(2 * syncPeriod, 30_000);
    if (manifests)
      health.addCheck(() => {
        const ms = manifests.scanRunningMs();
        return ms > stuckMs ? `the manifests scan has been running for ${Math.round(ms / 1000)}s` : undefined;
      });
    const daemonOnce = opts.once === true;
    const hcBinds = healthCheckBinds(
      config,
      runners.map((r) => r.family),
    );
    if (hcBinds.length === 0 && !daemonOnce)
      log.log("warn", "no node address is inside --nodeport-addresses: health-check NodePort servers are not started");
    const healthChecks =
      daemonOnce || opts.dryRun || hcBinds.length === 0
        ? undefined
        : new HealthCheckServers(health, hcBinds, (m) => log.log("warn", m));
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
      dryRun: opts.dryRun === true,
      stateDir: opts.dryRun ? undefined : opts.stateDir,
      conntrack: opts.dryRun
        ? undefined
        : (family, state) => cleanStaleUDP(family, udpTargets(state, family, config.hostname)),
    });

    if (daemonOnce) {
      // Wait for the first list (at most --once-timeout); the daemon then makes one full sync.
      const first = daemon.nextSync();
      let timer: ReturnType<typeof setTimeout> | undefined;
      const listed = await Promise.race([
        (async () => {
          await daemon?.start();
          await daemon?.whenSynced();
          return true;
        })(),
        new Promise<false>((resolve) => {
          timer = setTimeout(() => resolve(false), onceTimeout);
        }),
      ]);
      clearTimeout(timer);
      if (!listed) {
        await daemon.stop();
        io.stderr(
          `kip: the sources were not listed within --once-timeout ${opts.onceTimeout}; nothing was applied (see the log above)\n`,
        );
        return 1;
      }
      const ok = (await first).every((o) => o.ok);
      await daemon.stop();
      if (!ok) io.stderr("kip: sync failed; the rules were left as they were (see the log above)\n");
      return ok ? 0 : 1;
    }

    const hz = healthzServer(health, metrics, () => realClock.now());
    const ms = metricsServer(
      metrics,
      () =>
        Object.fromEntries(proxiers.map((p) => [p.family, { lastSuccess: p.lastSuccess, lastFailure: p.lastFailure }])),
      { debugFromNetwork: opts.debugFromNetwork === true, endpoints: probing && (() => probing.endpoints()) },
    );
    servers.push(hz, ms);
    log.log("info", "serving", {
      healthz: await listen(hz, healthzBind),
      metrics: await listen(ms, metricsBind),
    });
    await daemon.start();
    // Under systemd (Type=notify, WatchdogSec=): ready now, then a ping while /livez would say 200.
    const notify = startSystemdNotify(
      io.env,
      () => health.healthy(),
      (m) => log.log("warn", m),
    );
    const signal = await new Promise<string>((resolve) => {
      process.once("SIGTERM", () => resolve("SIGTERM"));
      process.once("SIGINT", () => resolve("SIGINT"));
    });
    log.log("info", `${signal}: stopping; the rules stay in place`);
    notify?.stop();
    await daemon.stop();
    for (const s of servers) await close(s);
    return 0;
  } catch (e) {
    // Whatever stopped the start-up, nothing keeps running; cli/main.ts reports it.
    await daemon?.stop().catch(() => {});
    for (const s of servers) await close(s).catch(() => {});
    throw e;
  }
}

/** An argument as a shell would need it to be typed (for --dry-run's printout only). */
function shellWord(a: string): string {
  return /^[A-Za-z0-9_.,:/=+-]+$/.test(a) ? a : `'${a.replace(/'/g, "'\\''")}'`;
}
