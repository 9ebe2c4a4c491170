/**
 * The node flags shared by render, diff and explain: kube-proxy's names, plus the host facts
 * kube-proxy probes at run time and that an offline render must be told.
 */
import { type Command, Option, type OptionValues } from "@commander-js/extra-typings";
import {
  type ClusterPolicy,
  DEFAULT_NODE_PORT_RANGE,
  DEFAULT_SERVICE_CIDR,
  parsePortRange,
  parseServiceCIDRs,
} from "../lib/model/allocate.ts";
import { isDNS1123Label } from "../lib/model/fields.ts";
import { check, type DaemonConfig, parseKubeProxyConfiguration } from "../lib/proxy/config.ts";
import { defaultConfig, type ProxyConfig } from "../lib/proxy/options.ts";
import { UsageError } from "./errors.ts";
import { type IO, readFlagFile } from "./io.ts";

const collect = (v: string, prev: string[] = []) => [...prev, v];
const commaList = (v: string, prev: string[] = []) => [
  ...prev,
  ...v
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean),
];

/** Boolean flags that also take kube-proxy's `--flag=true|false` form. */
export const BOOLEAN_FLAGS = [
  "masquerade-all",
  "iptables-localhost-nodeports",
  "random-fully",
  "nfacct",
  "conntrack-tcp-be-liberal",
  "simulate",
  "simulate-endpoints",
  "strict",
  "canonical",
];

/** `--flag=false` → `--no-flag`, `--flag=true` → `--flag`, for the boolean flags above. */
export function normalizeBooleanFlags(argv: string[]): string[] {
  const out: string[] = [];
  for (const [i, a] of argv.entries()) {
    if (a === "--") return [...out, ...argv.slice(i)];
    const m = /^--([a-z-]+)=(.*)$/.exec(a);
    if (m && BOOLEAN_FLAGS.includes(m[1])) {
      const v = m[2].toLowerCase();
      if (v === "true" || v === "1") out.push(`--${m[1]}`);
      else if (v === "false" || v === "0") out.push(`--no-${m[1]}`);
      else throw new UsageError(`--${m[1]} takes true or false, not ${JSON.stringify(m[2])}`);
    } else out.push(a);
  }
  return out;
}

export function addNodeFlags<A extends unknown[], O extends OptionValues, G extends OptionValues>(
  cmd: Command<A, O, G>,
) {
  return (
    cmd
      .option("--config <file>", "a KubeProxyConfiguration (v1alpha1) file; flags override it")
      .option("--hostname-override <name>", "this node's name: decides which endpoints are local (default: hostname)")
      .option("--node-ip <ip>", "this node's IP, one per family (repeatable)", collect)
      .option("--cluster-cidr <cidrs>", "pod CIDRs, comma-separated, at most one per family")
      .option("--detect-local-mode <mode>", "ClusterCIDR | NodeCIDR | BridgeInterface | InterfaceNamePrefix")
      .option("--pod-bridge-interface <name>", "bridge for --detect-local-mode BridgeInterface")
      .option("--pod-interface-name-prefix <prefix>", "prefix for --detect-local-mode InterfaceNamePrefix")
      .option("--masquerade-all", "SNAT all traffic to cluster IPs")
      .addOption(new Option("--no-masquerade-all").hideHelp())
      .option("--iptables-masquerade-bit <bit>", "fwmark bit for SNAT (0-31, default 14)")
      .option("--iptables-localhost-nodeports", "allow NodePorts on 127.0.0.1 (default on)")
      .addOption(new Option("--no-iptables-localhost-nodeports").hideHelp())
      .option(
        "--nodeport-addresses <cidrs>",
        'CIDRs NodePorts listen on, or "primary" (comma-separated, repeatable)',
        commaList,
      )
      .option(
        "--host-address <ip/len>",
        "an interface address of the node (repeatable; default: node IPs + loopback)",
        collect,
      )
      .option("--random-fully", "MASQUERADE --random-fully, as for iptables >= 1.6.2 (default on)")
      .addOption(new Option("--no-random-fully").hideHelp())
      .option("--nfacct", "write the nfacct counter matches (default off)")
      .addOption(new Option("--no-nfacct").hideHelp())
      .option("--conntrack-tcp-be-liberal", "nf_conntrack_tcp_be_liberal is on: omit the INVALID drop")
      .addOption(new Option("--no-conntrack-tcp-be-liberal").hideHelp())
      // The parser only fixes the type: extra-typings reads "...>" as a variadic option, commander does not.
      .option(
        "--feature-gates <k=v,...>",
        "PreferSameTrafficDistribution, LoadBalancerIPMode (default true)",
        (v: string) => v,
      )
  );
}

export interface NodeFlagValues {
  config?: string;
  hostnameOverride?: string;
  nodeIp?: string[];
  clusterCidr?: string;
  detectLocalMode?: string;
  podBridgeInterface?: string;
  podInterfaceNamePrefix?: string;
  masqueradeAll?: boolean;
  iptablesMasqueradeBit?: string;
  iptablesLocalhostNodeports?: boolean;
  nodeportAddresses?: string[];
  hostAddress?: string[];
  randomFully?: boolean;
  nfacct?: boolean;
  conntrackTcpBeLiberal?: boolean;
  featureGates?: string;
}

function must(err: string | undefined, flag: string): void {
  if (err) throw new UsageError(`${flag}: ${err}`);
}

/** Defaults, then --config, then flags given on the command line. */
export function resolveProxyConfig(o: NodeFlagValues, io: IO): ProxyConfig {
  return resolveNodeConfig(o, io).proxy;
}

/** resolveProxyConfig, plus the daemon settings (sync periods, bind addresses) --config holds. */
export function resolveNodeConfig(o: NodeFlagValues, io: IO): { proxy: ProxyConfig; daemon: DaemonConfig } {
  const cfg = defaultConfig();
  let daemon: DaemonConfig = {};
  if (o.config) {
    const parsed = parseKubeProxyConfiguration(o.config, readFlagFile(io, "--config", o.config));
    if (parsed.errors.length > 0)
      throw new UsageError(parsed.errors.map((e) => `${e.file}:${e.line}: ${e.message}`).join("\n"));
    Object.assign(cfg, parsed.proxy);
    daemon = parsed.daemon;
  }
  if (o.hostnameOverride !== undefined) {
    must(check.hostname(o.hostnameOverride), "--hostname-override");
    cfg.hostname = o.hostnameOverride;
  }
  if (!cfg.hostname) cfg.hostname = io.hostname();
  if (o.nodeIp) {
    for (const ip of o.nodeIp) must(check.nodeIP(ip), "--node-ip");
    cfg.nodeIPs = o.nodeIp;
  }
  if (o.clusterCidr !== undefined) {
    must(check.clusterCIDR(o.clusterCidr), "--cluster-cidr");
    cfg.clusterCIDR = o.clusterCidr;
  }
  if (o.detectLocalMode !== undefined) {
    const modes = ["ClusterCIDR", "NodeCIDR", "BridgeInterface", "InterfaceNamePrefix"];
    if (!modes.includes(o.detectLocalMode))
      throw new UsageError(
        `--detect-local-mode: ${JSON.stringify(o.detectLocalMode)} is not one of ${modes.join(", ")}`,
      );
    cfg.detectLocalMode = o.detectLocalMode as ProxyConfig["detectLocalMode"];
  }
  if (o.podBridgeInterface !== undefined) {
    must(check.interfaceName(o.podBridgeInterface), "--pod-bridge-interface");
    cfg.bridgeInterface = o.podBridgeInterface;
  }
  if (o.podInterfaceNamePrefix !== undefined) {
    must(check.interfaceName(o.podInterfaceNamePrefix), "--pod-interface-name-prefix");
    cfg.interfaceNamePrefix = o.podInterfaceNamePrefix;
  }
  if (cfg.detectLocalMode === "BridgeInterface" && !cfg.bridgeInterface)
    throw new UsageError("--detect-local-mode BridgeInterface needs --pod-bridge-interface");
  if (cfg.detectLocalMode === "InterfaceNamePrefix" && !cfg.interfaceNamePrefix)
    throw new UsageError("--detect-local-mode InterfaceNamePrefix needs --pod-interface-name-prefix");
  if (o.masqueradeAll !== undefined) cfg.masqueradeAll = o.masqueradeAll;
  if (o.iptablesMasqueradeBit !== undefined) {
    const n = /^[0-9]+$/.test(o.iptablesMasqueradeBit) ? Number(o.iptablesMasqueradeBit) : Number.NaN;
    must(check.masqueradeBit(n), "--iptables-masquerade-bit");
    cfg.masqueradeBit = n;
  }
  if (o.iptablesLocalhostNodeports !== undefined) cfg.localhostNodePorts = o.iptablesLocalhostNodeports;
  if (o.nodeportAddresses) {
    must(check.nodePortAddresses(o.nodeportAddresses), "--nodeport-addresses");
    cfg.nodePortAddresses = o.nodeportAddresses;
  }
  if (o.hostAddress) {
    for (const a of o.hostAddress) must(check.hostAddress(a), "--host-address");
    cfg.hostAddresses = o.hostAddress;
  }
  if (o.randomFully !== undefined) cfg.randomFully = o.randomFully;
  if (o.nfacct !== undefined) cfg.nfacct = o.nfacct;
  if (o.conntrackTcpBeLiberal !== undefined) cfg.conntrackTCPBeLiberal = o.conntrackTcpBeLiberal;
  if (o.featureGates !== undefined) {
    for (const kv of o.featureGates.split(",").filter(Boolean)) {
      const [k, v] = kv.split("=");
      if (!(k in cfg.featureGates) || (v !== "true" && v !== "false"))
        throw new UsageError(`--feature-gates: ${JSON.stringify(kv)} is not Name=true|false for a gate kip reads`);
      cfg.featureGates[k as keyof ProxyConfig["featureGates"]] = v === "true";
    }
  }
  return { proxy: cfg, daemon };
}

/**
 * The cluster's own settings (kube-apiserver's flag names) and the namespace of objects that
 * name none: what an API server would have applied to manifests before kube-proxy saw them.
 */
export function addClusterFlags<A extends unknown[], O extends OptionValues, G extends OptionValues>(
  cmd: Command<A, O, G>,
) {
  return cmd
    .option("-n, --namespace <ns>", "the namespace of objects that name none, as kubectl's -n", "default")
    .option(
      "--service-cluster-ip-range <cidrs>",
      `the cluster's service CIDRs, one per family (kube-apiserver's flag; default: "${DEFAULT_SERVICE_CIDR}")`,
    )
    .option(
      "--service-node-port-range <range>",
      "the cluster's NodePort range (kube-apiserver's flag)",
      DEFAULT_NODE_PORT_RANGE,
    );
}

/** addClusterFlags, plus --simulate (and its older name --simulate-endpoints). */
export function addSimulationFlags<A extends unknown[], O extends OptionValues, G extends OptionValues>(
  cmd: Command<A, O, G>,
) {
  return addClusterFlags(cmd)
    .option(
      "--simulate",
      "do what the cluster would: allocate missing cluster IPs and node ports, make endpoints from workloads",
    )
    .addOption(new Option("--no-simulate").hideHelp())
    .addOption(new Option("--simulate-endpoints", "the older name of --simulate").hideHelp())
    .addOption(new Option("--no-simulate-endpoints").hideHelp());
}

export interface ClusterFlagValues {
  namespace?: string;
  serviceClusterIpRange?: string;
  serviceNodePortRange?: string;
  simulate?: boolean;
  simulateEndpoints?: boolean;
}

export interface ClusterSettings {
  namespace: string;
  cluster: ClusterPolicy;
  /** --service-cluster-ip-range was given: cluster IPs outside it are reported. */
  checkServiceCIDRs: boolean;
  simulate: boolean;
}

/** Checked values of the cluster flags; bad ones are usage errors naming the flag. */
export function resolveClusterFlags(o: ClusterFlagValues): ClusterSettings {
  const namespace = o.namespace ?? "default";
  if (!isDNS1123Label(namespace))
    throw new UsageError(
      `--namespace: ${JSON.stringify(namespace)} is not a valid namespace (lowercase letters, digits and "-", at most 63)`,
    );
  const cidrs = parseServiceCIDRs(o.serviceClusterIpRange ?? DEFAULT_SERVICE_CIDR);
  if (typeof cidrs === "string") throw new UsageError(`--service-cluster-ip-range: ${cidrs}`);
  const nodePorts = parsePortRange(o.serviceNodePortRange ?? DEFAULT_NODE_PORT_RANGE);
  if (typeof nodePorts === "string") throw new UsageError(`--service-node-port-range: ${nodePorts}`);
  return {
    namespace,
    cluster: { serviceCIDRs: cidrs, nodePorts },
    checkServiceCIDRs: o.serviceClusterIpRange !== undefined,
    simulate: o.simulate === true || o.simulateEndpoints === true,
  };
}
