/**
 * KubeProxyConfiguration (kubeproxy.config.k8s.io/v1alpha1) → the settings kip reads, and the
 * checks shared by config files and flags (every value here can end up in a rule).
 */

import { Fields, isDNS1123Subdomain, isInterfaceName, type Reporter } from "../model/fields.ts";
import { parseCIDR, parseIP } from "../model/ip.ts";
import { formatPath, type Problem } from "../model/load.ts";
import { parseManifestText } from "../model/parse.ts";
import type { DetectLocalMode, ProxyConfig } from "./options.ts";

/** Daemon settings from the same file (used by `kip sync`). */
export interface DaemonConfig {
  /** `syncPeriod`, in seconds: the longest time between full syncs. */
  syncPeriodSeconds?: number;
  /** `minSyncPeriod`, in seconds: the shortest time between syncs. */
  minSyncPeriodSeconds?: number;
  /** `healthzBindAddress`, `IP:PORT`. */
  healthzBindAddress?: string;
  /** `metricsBindAddress`, `IP:PORT`. */
  metricsBindAddress?: string;
}

export const DETECT_LOCAL_MODES = ["ClusterCIDR", "NodeCIDR", "BridgeInterface", "InterfaceNamePrefix"] as const;

/** Go duration text (`30s`, `1m30s`, `500ms`, `1h`) → seconds. */
export function parseDuration(s: string): number | undefined {
  if (s === "0") return 0;
  const re = /([0-9]+(?:\.[0-9]+)?)(h|ms|m|s)/g;
  let total = 0;
  let consumed = 0;
  for (let m = re.exec(s); m; m = re.exec(s)) {
    if (m.index !== consumed) return undefined;
    consumed += m[0].length;
    const n = Number(m[1]);
    total += m[2] === "h" ? n * 3600 : m[2] === "m" ? n * 60 : m[2] === "ms" ? n / 1000 : n;
  }
  return consumed === s.length && consumed > 0 ? total : undefined;
}

/** Checks on settings that reach rules; each returns an error message or undefined. */
export const check = {
  hostname: (s: string) =>
    isDNS1123Subdomain(s) ? undefined : `hostname ${JSON.stringify(s)} is not a valid node name`,
  clusterCIDR(s: string): string | undefined {
    const seen = new Set<string>();
    for (const part of s.split(",")) {
      const c = parseCIDR(part.trim());
      if (!c) return `cluster CIDR ${JSON.stringify(part)} is not a valid CIDR`;
      if (seen.has(c.family)) return `cluster CIDR ${JSON.stringify(s)} has more than one ${c.family} CIDR`;
      seen.add(c.family);
    }
    return undefined;
  },
  nodeIP: (s: string) => (parseIP(s) ? undefined : `node IP ${JSON.stringify(s)} is not a valid IP address`),
  interfaceName: (s: string) => (isInterfaceName(s) ? undefined : `interface name ${JSON.stringify(s)} is not valid`),
  nodePortAddresses(list: string[]): string | undefined {
    if (list.includes("primary") && list.length > 1)
      return '"primary" may not be combined with CIDRs in nodePortAddresses';
    for (const s of list)
      if (s !== "primary" && !parseCIDR(s)) return `nodePortAddresses entry ${JSON.stringify(s)} is not a valid CIDR`;
    return undefined;
  },
  hostAddress(s: string): string | undefined {
    return parseCIDR(s) && s.includes("/") ? undefined : `host address ${JSON.stringify(s)} is not IP/LEN`;
  },
  masqueradeBit: (n: number) =>
    Number.isInteger(n) && n >= 0 && n <= 31 ? undefined : `masquerade bit ${n} is out of range (0-31)`,
};

/** What parseKubeProxyConfiguration read; apply `proxy` over defaultConfig(). */
export interface ConfigResult {
  /** The proxy settings the file sets (only those). */
  proxy: Partial<ProxyConfig>;
  /** The daemon settings the file sets. */
  daemon: DaemonConfig;
  /** Problems, at file:line; nothing should be used when there are any. */
  errors: Problem[];
}

/** Parse a KubeProxyConfiguration file's text. */
export function parseKubeProxyConfiguration(file: string, text: string): ConfigResult {
  const proxy: Partial<ProxyConfig> = {};
  const daemon: DaemonConfig = {};
  const { docs, errors } = parseManifestText(file, text);
  const out: ConfigResult = { proxy, daemon, errors: [...errors] };
  const doc = docs[0];
  if (!doc) return out;
  const r: Reporter = {
    error: (p, m) => out.errors.push({ file, line: doc.line(p), message: `${formatPath(p)}: ${m}` }),
    warn: () => {},
  };
  const f = new Fields(r);
  const o = f.obj(doc.value, []) ?? {};
  if (o.kind !== "KubeProxyConfiguration" || o.apiVersion !== "kubeproxy.config.k8s.io/v1alpha1") {
    r.error([], "expected apiVersion kubeproxy.config.k8s.io/v1alpha1, kind KubeProxyConfiguration");
    return out;
  }
  const mode = f.str(o.mode, ["mode"]);
  if (mode && mode !== "iptables") r.error(["mode"], `${JSON.stringify(mode)}: kip implements the iptables mode only`);
  const setStr = (
    key: "hostname" | "clusterCIDR" | "bindAddress",
    v: unknown,
    path: string[],
    c?: (s: string) => string | undefined,
  ) => {
    const s = f.str(v, path);
    if (s === undefined || s === "") return;
    const e = c?.(s);
    if (e) r.error(path, e);
    else proxy[key] = s;
  };
  setStr("hostname", o.hostnameOverride, ["hostnameOverride"], check.hostname);
  setStr("clusterCIDR", o.clusterCIDR, ["clusterCIDR"], check.clusterCIDR);
  setStr("bindAddress", o.bindAddress, ["bindAddress"], check.nodeIP);
  const dlm = f.str(o.detectLocalMode, ["detectLocalMode"]);
  if (dlm) {
    if ((DETECT_LOCAL_MODES as readonly string[]).includes(dlm)) proxy.detectLocalMode = dlm as DetectLocalMode;
    else r.error(["detectLocalMode"], `${JSON.stringify(dlm)} is not one of ${DETECT_LOCAL_MODES.join(", ")}`);
  }
  const dl = f.obj(o.detectLocal, ["detectLocal"]) ?? {};
  for (const [key, field] of [
    ["bridgeInterface", "bridgeInterface"],
    ["interfaceNamePrefix", "interfaceNamePrefix"],
  ] as const) {
    const s = f.str(dl[field], ["detectLocal", field]);
    if (s) {
      const e = check.interfaceName(s);
      if (e) r.error(["detectLocal", field], e);
      else proxy[key] = s;
    }
  }
  const ipt = f.obj(o.iptables, ["iptables"]) ?? {};
  const ma = f.bool(ipt.masqueradeAll, ["iptables", "masqueradeAll"]);
  if (ma !== undefined) proxy.masqueradeAll = ma;
  const mb = f.int(ipt.masqueradeBit, ["iptables", "masqueradeBit"], 0, 31);
  if (mb !== undefined) proxy.masqueradeBit = mb;
  const lnp = f.bool(ipt.localhostNodePorts, ["iptables", "localhostNodePorts"]);
  if (lnp !== undefined) proxy.localhostNodePorts = lnp;
  for (const [key, field] of [
    ["syncPeriodSeconds", "syncPeriod"],
    ["minSyncPeriodSeconds", "minSyncPeriod"],
  ] as const) {
    const s = f.str(ipt[field], ["iptables", field]);
    if (s === undefined) continue;
    const d = parseDuration(s);
    if (d === undefined) r.error(["iptables", field], `${JSON.stringify(s)} is not a duration like 30s`);
    else daemon[key] = d;
  }
  const npa = f.list(o.nodePortAddresses, ["nodePortAddresses"]).filter((v): v is string => typeof v === "string");
  if (npa.length > 0) {
    const e = check.nodePortAddresses(npa);
    if (e) r.error(["nodePortAddresses"], e);
    else proxy.nodePortAddresses = npa;
  }
  const ct = f.obj(o.conntrack, ["conntrack"]) ?? {};
  const liberal = f.bool(ct.tcpBeLiberal, ["conntrack", "tcpBeLiberal"]);
  if (liberal !== undefined) proxy.conntrackTCPBeLiberal = liberal;
  const gates = f.obj(o.featureGates, ["featureGates"]) ?? {};
  const fg = { PreferSameTrafficDistribution: true, LoadBalancerIPMode: true };
  for (const [k, v] of Object.entries(gates)) {
    if (k in fg && typeof v === "boolean") fg[k as keyof typeof fg] = v;
  }
  proxy.featureGates = fg;
  const hz = f.str(o.healthzBindAddress, ["healthzBindAddress"]);
  if (hz) daemon.healthzBindAddress = hz;
  const mz = f.str(o.metricsBindAddress, ["metricsBindAddress"]);
  if (mz) daemon.metricsBindAddress = mz;
  return out;
}
