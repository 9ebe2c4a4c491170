/**
 * kube-proxy's metrics (spec §12), with its names, labels and buckets, on a prom-client
 * registry of kip's own (nothing global, so tests and several daemons do not collide).
 */
import client from "prom-client";

const BUCKETS = Array.from({ length: 15 }, (_, k) => 0.001 * 2 ** k);

export function createMetrics() {
  const registry = new client.Registry();
  const p = "kubeproxy_";
  const hist = (name: string, help: string) =>
    new client.Histogram({ name: p + name, help, labelNames: ["ip_family"], buckets: BUCKETS, registers: [registry] });
  const gauge = (name: string, help: string, labelNames: string[]) =>
    new client.Gauge({ name: p + name, help, labelNames, registers: [registry] });
  const counter = (name: string, help: string, labelNames: string[]) =>
    new client.Counter({ name: p + name, help, labelNames, registers: [registry] });
  return {
    registry,
    syncDuration: hist("sync_proxy_rules_duration_seconds", "SyncProxyRules latency in seconds"),
    syncFullDuration: hist(
      "sync_full_proxy_rules_duration_seconds",
      "SyncProxyRules latency in seconds for full resyncs",
    ),
    syncPartialDuration: hist(
      "sync_partial_proxy_rules_duration_seconds",
      "SyncProxyRules latency in seconds for partial resyncs",
    ),
    networkProgramming: hist(
      "network_programming_duration_seconds",
      "In Cluster Network Programming Latency in seconds",
    ),
    lastTimestamp: gauge(
      "sync_proxy_rules_last_timestamp_seconds",
      "The last time proxy rules were successfully synced",
      ["ip_family"],
    ),
    lastQueued: gauge(
      "sync_proxy_rules_last_queued_timestamp_seconds",
      "The last time a sync of proxy rules was queued",
      ["ip_family"],
    ),
    iptablesTotal: gauge("sync_proxy_rules_iptables_total", "Total number of iptables rules owned by kube-proxy", [
      "table",
      "ip_family",
    ]),
    iptablesLast: gauge(
      "sync_proxy_rules_iptables_last",
      "Number of iptables rules written by kube-proxy in last sync",
      ["table", "ip_family"],
    ),
    noLocalEndpoints: gauge(
      "sync_proxy_rules_no_local_endpoints_total",
      "Number of services with a Local traffic policy and no endpoints",
      ["traffic_policy", "ip_family"],
    ),
    endpointChangesPending: gauge(
      "sync_proxy_rules_endpoint_changes_pending",
      "Pending proxy rules Endpoint changes",
      [],
    ),
    serviceChangesPending: gauge("sync_proxy_rules_service_changes_pending", "Pending proxy rules Service changes", []),
    endpointChanges: counter("sync_proxy_rules_endpoint_changes_total", "Cumulative proxy rules Endpoint changes", []),
    serviceChanges: counter("sync_proxy_rules_service_changes_total", "Cumulative proxy rules Service changes", []),
    restoreFailures: counter(
      "sync_proxy_rules_iptables_restore_failures_total",
      "Cumulative proxy iptables restore failures",
      ["ip_family"],
    ),
    partialRestoreFailures: counter(
      "sync_proxy_rules_iptables_partial_restore_failures_total",
      "Cumulative proxy iptables partial restore failures",
      ["ip_family"],
    ),
    healthz: counter("proxy_healthz_total", "Cumulative proxy healthz HTTP status", ["code"]),
    livez: counter("proxy_livez_total", "Cumulative proxy livez HTTP status", ["code"]),
    // kip's own (kip sync --manifests with kip/readiness-probe): not kube-proxy metrics.
    probeReady: new client.Gauge({
      name: "kip_endpoint_probe_ready",
      help: "Whether the endpoint passes its Service's kip/readiness-probe (1) or not (0)",
      labelNames: ["namespace", "service", "endpoint"],
      registers: [registry],
    }),
    probeDuration: new client.Histogram({
      name: "kip_endpoint_probe_duration_seconds",
      help: "Duration of kip/readiness-probe probes in seconds",
      labelNames: ["probe", "result"],
      buckets: BUCKETS,
      registers: [registry],
    }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
