import { compileTables, type RuleTables } from "../lib/explain/tables.ts";
import type { HostFacts, Proto, Route } from "../lib/explain/types.ts";
import { ExecRunner, execFile } from "../lib/iptables/exec_runner.ts";
import { HEADER_ALIASES, parseRule, ruleComment } from "../lib/iptables/rule.ts";
import { IptablesUnavailable } from "../lib/iptables/runner.ts";
import { dumpOfTables, type SaveDump } from "../lib/iptables/save_parser.ts";
import { type IPFamily, isLoopback, parseIP } from "../lib/model/ip.ts";
import {
  KUBE_MARK_MASQ,
  KUBE_SERVICES,
  parseDestinationComment,
  parseNoEndpointsComment,
  SVC_PREFIX,
} from "../lib/proxy/chains.ts";
import { type BuildOptions, resolveBuildOptions } from "../lib/proxy/options.ts";
import { DEFAULT_SIMULATED_POD_CIDRS } from "../lib/render.ts";
import { plural } from "../lib/util/text.ts";
import { UsageError } from "./errors.ts";
import type { ExplainFlags } from "./explain_run.ts";
import type { IO } from "./io.ts";
import { kubeChainsElsewhere, liveDump, readDumpFile, requireRoot } from "./node.ts";
import { type ClusterFlagValues, type NodeFlagValues, resolveClusterFlags, resolveProxyConfig } from "./node_flags.ts";
import { renderPaths } from "./render.ts";

/** A Service port the destination may be named by. */
export interface ServiceEntry {
  /** ServicePortName: `ns/name` or `ns/name:port`. */
  name: string;
  ip: string;
  port: number;
  proto: Proto;
}

/** Rules to walk, and what the walk needs to know about the host they are on. */
export interface LoadedRules {
  /** The family of these rules. */
  family: IPFamily;
  /** Something about the rules that makes any answer doubtful, for stderr. */
  warning?: string;
  dump: SaveDump;
  /** `dump` ready to walk, compiled once for every walk (kube-proxy's jump rules added if missing). */
  tables: RuleTables;
  host: HostFacts;
  services: ServiceEntry[];
  /** The pod CIDR of this family, for a default pod source. */
  podCIDR?: string;
  /** This family's node IP, for a default node source. */
  nodeIP?: string;
  source: string;
  notes: string[];
  /** `ip route get` on this host; undefined offline. */
  routeLookup?: (addr: string) => Promise<Route | undefined>;
}

/** Host facts from the node flags: the node IPs and --host-address, plus loopback. */
function hostFromOptions(o: BuildOptions, podInterface?: string): HostFacts {
  const local = new Set([...o.hostIPs, ...(parseIP(o.nodeIP) ? [o.nodeIP] : [])]);
  return { localAddresses: [...local], ...(podInterface ? { podInterface } : {}) };
}

function podInterfaceOf(o: BuildOptions): string | undefined {
  const d = o.localDetector;
  return d.mode === "BridgeInterface" ? d.bridge : d.mode === "InterfaceNamePrefix" ? `${d.prefix}+` : undefined;
}

/** Rules rendered from manifests, with kube-proxy's jump rules in the built-in chains. */
export function rulesFromManifests(
  paths: string[],
  opts: NodeFlagValues & ClusterFlagValues,
  io: IO,
  family: IPFamily,
): LoadedRules {
  const r = renderPaths(paths, opts, io, family);
  const o = r.options;
  if (!o) throw new Error("render returned no options");
  const dump = dumpOfTables({ filter: r.ruleset.filter, nat: r.ruleset.nat });
  const services: ServiceEntry[] = r.ruleset.services
    .filter((s) => parseIP(s.clusterIP))
    .map((s) => ({ name: s.servicePortName, ip: s.clusterIP, port: s.port, proto: s.protocol.toLowerCase() as Proto }));
  const d = o.localDetector;
  const nodeIP = parseIP(o.nodeIP);
  return {
    family,
    dump,
    tables: compileTables(dump),
    host: hostFromOptions(o, podInterfaceOf(o)),
    services,
    // Simulated pods live in the default pod CIDRs when --cluster-cidr names none.
    podCIDR:
      d.mode === "ClusterCIDR" || d.mode === "NodeCIDR"
        ? d.cidr
        : resolveClusterFlags(opts).simulate
          ? DEFAULT_SIMULATED_POD_CIDRS.find((c) => c.includes(":") === (family === "IPv6"))
          : undefined,
    nodeIP: nodeIP && !isLoopback(nodeIP) ? o.nodeIP : o.hostIPs.find((a) => !isLoopback(parseIP(a)!)),
    source: `rendered from ${paths.join(" ")} for node ${o.nodeName} (${family}), with kube-proxy's jump rules in the built-in chains`,
    notes: [],
  };
}

/** Services named in a live dump: nat KUBE-SERVICES "<spn> cluster IP", filter "<spn> has no endpoints". */
export function servicesOfDump(dump: SaveDump): ServiceEntry[] {
  const out: ServiceEntry[] = [];
  const seen = new Set<string>();
  const scan = (table: string, parse: (comment: string) => { servicePortName: string } | undefined) => {
    for (const r of dump.tables.get(table)?.rules ?? []) {
      if (r.chain !== KUBE_SERVICES) continue;
      const rule = parseRule(r.args);
      const value = (short: string) => rule.options.find((o) => HEADER_ALIASES[o.name] === short)?.values[0];
      const m = parse(ruleComment(rule) ?? "");
      const ip = parseIP((value("-d") ?? "").replace(/\/(32|128)$/, ""));
      const port = Number(rule.options.find((o) => o.name === "--dport" || o.name === "--destination-port")?.values[0]);
      const proto = (value("-p") ?? "tcp").toLowerCase();
      if (!m || !ip || !port || rule.options.some((o) => o.negated)) continue;
      const key = `${m.servicePortName} ${proto}`;
      if (seen.has(key)) continue;
      seen.add(key);
      out.push({ name: m.servicePortName, ip: ip.text, port, proto: proto as Proto });
    }
  };
  scan("nat", (c) => {
    const d = parseDestinationComment(c);
    return d?.kind === "cluster IP" ? d : undefined;
  });
  scan("filter", parseNoEndpointsComment);
  return out;
}

/** What kube-proxy's rules in a dump say about pods: the detector CIDR or interface. */
function podFactsOfDump(dump: SaveDump): { cidr?: string; iface?: string } {
  for (const r of dump.tables.get("nat")?.rules ?? []) {
    if (!r.chain.startsWith(SVC_PREFIX)) continue;
    const rule = parseRule(r.args);
    if (rule.target !== KUBE_MARK_MASQ) continue;
    for (const o of rule.options) {
      if (!o.negated) continue;
      if (HEADER_ALIASES[o.name] === "-s") return { cidr: o.values[0] };
      if (HEADER_ALIASES[o.name] === "-i") return { iface: o.values[0] };
    }
  }
  return {};
}

/** A saved dump and its family: the one asked for (checked against the generator line), else the dump's own. */
function readLiveFile(file: string, io: IO, family: IPFamily | undefined): { dump: SaveDump; family: IPFamily } {
  const { dump, family: fromDump } = readDumpFile(io, file);
  if (family && fromDump && fromDump !== family)
    throw new UsageError(`${file} was written by ${dump.generator}: it has no ${family} rules`);
  if (!dump.tables.has("nat") && !dump.tables.has("filter")) throw new UsageError(`${file} has no nat or filter table`);
  return { dump, family: family ?? fromDump ?? "IPv4" };
}

/** Whether kube-proxy (or kip sync) has written anything into these tables. */
function hasKubeProxyRules(dump: SaveDump): boolean {
  return ["nat", "filter"].some((t) => dump.tables.get(t)?.chains.has(KUBE_SERVICES));
}

/** `ip -o addr`: this host's addresses. */
async function hostAddresses(): Promise<string[]> {
  const r = await execFile(["ip", "-o", "addr", "show"]).catch(() => undefined);
  if (r?.code !== 0)
    throw new IptablesUnavailable("cannot read this host's addresses (ip -o addr): give --host-address instead");
  const out: string[] = [];
  for (const line of r.stdout.split("\n")) {
    const m = /\sinet6?\s+([0-9a-fA-F.:]+)\/\d+/.exec(line);
    if (m) out.push(m[1]);
  }
  return out;
}

/** `ip -o route get ADDR`: the interface and source address the host would use. */
async function routeGet(addr: string): Promise<Route | undefined> {
  const r = await execFile(["ip", ...(addr.includes(":") ? ["-6"] : []), "-o", "route", "get", addr]).catch(
    () => undefined,
  );
  if (r?.code !== 0) return undefined;
  const dev = /\sdev\s+(\S+)/.exec(r.stdout)?.[1];
  const src = /\ssrc\s+(\S+)/.exec(r.stdout)?.[1];
  return dev ? { dev, ...(src ? { src } : {}) } : undefined;
}

export async function rulesFromLive(opts: ExplainFlags, io: IO, wanted: IPFamily | undefined): Promise<LoadedRules> {
  let family: IPFamily = wanted ?? "IPv4";
  let fileDump: SaveDump | undefined;
  if (typeof opts.live === "string") {
    if (opts.backend) throw new UsageError("--backend reads this host's tables: not with --live FILE");
    ({ dump: fileDump, family } = readLiveFile(opts.live, io, wanted));
  }
  const config = resolveProxyConfig(opts, io);
  const o = resolveBuildOptions(config, family);
  const flagsGiveHost = (opts.hostAddress?.length ?? 0) > 0 || (opts.nodeIp?.length ?? 0) > 0;
  let dump: SaveDump;
  let source: string;
  let host: HostFacts;
  let routeLookup: LoadedRules["routeLookup"];
  if (typeof opts.live === "string" && fileDump) {
    dump = fileDump;
    source = `${opts.live}${dump.generator ? ` (${dump.generator})` : ""}`;
    host = hostFromOptions(o);
  } else {
    requireRoot("reading the live tables needs root (iptables-save): run as root, or give --live FILE");
    const runner = await ExecRunner.create(family, opts.backend);
    dump = await liveDump(runner);
    const other = hasKubeProxyRules(dump) ? undefined : await kubeChainsElsewhere(runner);
    if (other)
      io.stderr(
        `kip: warning: kube-proxy's chains are in the ${other} backend, not ${runner.backend}: try --backend ${other}\n`,
      );
    source = `this host's tables, ${runner.describe()}`;
    host = flagsGiveHost ? hostFromOptions(o) : { localAddresses: await hostAddresses() };
    routeLookup = routeGet;
  }
  const notes: string[] = [];
  let warning: string | undefined;
  if (!hasKubeProxyRules(dump)) {
    // Every packet would walk through untouched: say why, or "no service" reads as an answer.
    const where = typeof opts.live === "string" ? opts.live : `this host's ${family} tables`;
    const note = `${where} hold${typeof opts.live === "string" ? "s" : ""} no kube-proxy rules (no KUBE-SERVICES chain): kube-proxy or kip sync has not written ${family} rules there, so no Service is translated`;
    warning = note;
    notes.push(`No kube-proxy rules: ${note}.`);
  }
  const tables = compileTables(dump);
  if (tables.addedJumps)
    notes.push("The dump has no built-in chains (restore input?): kube-proxy's jump rules were added.");
  const others = [...dump.tables.values()].filter((t) => t.name !== "nat" && t.name !== "filter" && t.rules.length > 0);
  if (others.length > 0)
    notes.push(
      `Not walked (kip follows nat and filter only): ${others.map((t) => `${t.name} (${plural(t.rules.length, "rule")})`).join(", ")}.`,
    );
  const pods = podFactsOfDump(dump);
  const d = o.localDetector;
  const podCIDR = d.mode === "ClusterCIDR" || d.mode === "NodeCIDR" ? d.cidr : pods.cidr;
  const podInterface = podInterfaceOf(o) ?? pods.iface;
  if (podInterface) host.podInterface = podInterface;
  const nodeIP = parseIP(o.nodeIP);
  return {
    family,
    ...(warning ? { warning } : {}),
    dump,
    tables,
    host,
    services: servicesOfDump(dump),
    podCIDR,
    nodeIP: nodeIP && !isLoopback(nodeIP) ? nodeIP.text : undefined,
    source,
    notes,
    routeLookup,
  };
}
