/**
 * `kip sync`: the node daemon. This file only declares the command; the daemon and its
 * dependencies (prom-client, the apiserver client) load when the command runs.
 */
import { Command, Option } from "@commander-js/extra-typings";
import type { IO } from "./io.ts";
import { addClusterFlags, addNodeFlags, type ClusterFlagValues, type NodeFlagValues } from "./node_flags.ts";

const EXAMPLES = `
Examples:
  # Bare metal, no Kubernetes: keep this node's rules true to a manifests directory
  kip sync --manifests /etc/kip/manifests --hostname-override "$(hostname)" --cluster-cidr 10.244.0.0/16

  # One sync and exit (over SSH, or from a deploy script); exit status says whether it worked
  kip sync --once --manifests ./k8s --hostname-override node1 --cluster-cidr 10.244.0.0/16

  # What would be applied, without applying it
  kip sync --once --dry-run --manifests ./k8s --hostname-override node1

  # Health-checked backends: annotate a Service with a Pod-style readiness probe, e.g.
  #   kip/readiness-probe: '{"httpGet": {"path": "/healthz"}, "periodSeconds": 2}'
  # (manifests mode only; states at /debug/endpoints on the metrics address)

  # In a cluster (DaemonSet): the in-cluster service account, or a kubeconfig
  kip sync --kubeconfig /etc/kubernetes/kube-proxy.conf --hostname-override "$NODE_NAME"

Rules are applied with iptables-restore --noflush (in consistent batches on the nft backend);
a failed restore leaves the rules as they were and is retried as a full sync. SIGTERM and
SIGINT stop the daemon and leave the rules in place, as kube-proxy does.`;

export interface SyncFlags extends NodeFlagValues, ClusterFlagValues {
  manifests?: string[];
  kubeconfig?: string;
  master?: string;
  once?: boolean;
  dryRun?: boolean;
  ipFamilies?: string;
  backend?: "nft" | "legacy";
  iptablesMinSyncPeriod?: string;
  iptablesSyncPeriod?: string;
  rescanPeriod: string;
  healthzBindAddress?: string;
  metricsBindAddress?: string;
  stateDir: string;
  logFormat: "text" | "json";
  batchChains?: string;
  manifestsMaxFileBytes: string;
  manifestsMaxTotalBytes: string;
  onceTimeout: string;
  debugFromNetwork?: boolean;
}

const collect = (v: string, prev: string[] = []) => [...prev, v];

export function syncCommand() {
  return addClusterFlags(
    addNodeFlags(
      new Command("sync").description("Keep this node's iptables rules true to the apiserver or a manifests directory"),
    ),
  )
    .option(
      "--manifests <path>",
      "watch these manifest files or directories instead of an apiserver (repeatable)",
      collect,
    )
    .option(
      "--kubeconfig <file>",
      "kubeconfig (default: $KUBECONFIG, ~/.kube/config, or the in-cluster service account)",
    )
    .option("--master <url>", "the apiserver URL, overriding the kubeconfig's")
    .option("--once", "one full sync, then exit: 0 when it worked")
    .option("--dry-run", "print the iptables-restore input(s) instead of applying them")
    .option("--ip-families <list>", "IPv4,IPv6 (default: each family whose iptables binary works)")
    .addOption(
      new Option("--backend <backend>", "iptables backend (default: the host's iptables)").choices(["nft", "legacy"]),
    )
    .option("--iptables-min-sync-period <duration>", "least time between syncs (default: --config's, else 1s)")
    .option(
      "--iptables-sync-period <duration>",
      "retry delay after a failure; canary check interval (default: --config's, else 30s)",
    )
    .option("--rescan-period <duration>", "with --manifests: rescan this often besides file events", "2s")
    .option(
      "--manifests-max-file-bytes <size>",
      "with --manifests: a larger file is skipped and reported (bytes, or with Ki/Mi/Gi)",
      "64Mi",
    )
    .option(
      "--manifests-max-total-bytes <size>",
      "with --manifests: files past this total are skipped and reported (bytes, or with Ki/Mi/Gi)",
      "256Mi",
    )
    .option(
      "--once-timeout <duration>",
      "with --once: exit 1 when the sources cannot be listed within this long",
      "30s",
    )
    .option("--healthz-bind-address <ip:port>", "/healthz and /livez (default: --config's, else 0.0.0.0:10256)")
    .option(
      "--metrics-bind-address <ip:port>",
      "/metrics, /debug/last-restore and /debug/endpoints (default: --config's, else 127.0.0.1:10249)",
    )
    .option("--state-dir <dir>", "where the last good and last failed restore payloads are kept", "/var/lib/kip")
    .option(
      "--debug-from-network",
      "answer /debug/last-restore to clients other than loopback (it lists every Service and pod IP)",
    )
    .addOption(new Option("--log-format <format>", "log lines").choices(["text", "json"]).default("text"))
    .addOption(new Option("--batch-chains <n>", "chains and rules per restore on nft (0: one transaction)").hideHelp())
    .addHelpText("after", EXAMPLES);
}

/** Run `kip sync`: the daemon and its dependencies (sync_run.ts) load now. */
export async function run(opts: SyncFlags, io: IO): Promise<number> {
  return (await import("./sync_run.ts")).runSync(opts, io);
}
