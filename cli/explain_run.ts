/**
 * `kip explain --dst IP:PORT [PATH... | --live [FILE]]`: one packet through a node's rules, as
 * the article walks it by hand: OUTPUT → KUBE-SERVICES → KUBE-SVC-… (1/3 each) → KUBE-SEP-… →
 * DNAT → POSTROUTING. Exit status: 0 explained (whatever the verdict), 2 bad input.
 */
import { explain } from "../lib/explain/explain.ts";
import { formatExplanation } from "../lib/explain/format.ts";
import { compileTables, type RuleTables } from "../lib/explain/tables.ts";
import type { Explanation, From, HostFacts, Packet, Proto, Route } from "../lib/explain/types.ts";
import { ExecRunner, execFile } from "../lib/iptables/exec_runner.ts";
import { HEADER_ALIASES, parseRule, ruleComment } from "../lib/iptables/rule.ts";
import { type Backend, IptablesUnavailable } from "../lib/iptables/runner.ts";
import { dumpOfTables, type SaveDump } from "../lib/iptables/save_parser.ts";
import { type IPFamily, isLoopback, parseCIDR, parseIP } from "../lib/model/ip.ts";
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
import { NeedsRoot, UsageError } from "./errors.ts";
import { type IO, useColor } from "./io.ts";
import { kubeChainsElsewhere, liveDump, readDumpFile, requireRoot } from "./node.ts";
import { type ClusterFlagValues, type NodeFlagValues, resolveClusterFlags, resolveProxyConfig } from "./node_flags.ts";
import { renderPaths } from "./render.ts";

export interface ExplainFlags extends NodeFlagValues, ClusterFlagValues {
  dst?: string;
  service?: string;
  proto?: string;
  src?: string;
  from: string;
  inInterface?: string;
  live?: string | boolean;
  backend?: Backend;
  ipFamily?: string;
  output: string;
  color?: boolean;
}

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

/** `10.0.0.1:80` or `[fd00::1]:80`. */
export function parseDst(s: string): { ip: string; port: number; family: IPFamily } {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(s) ?? /^([^:[\]]+):(\d+)$/.exec(s);
  const ip = m ? parseIP(m[1]) : undefined;
  if (!m || !ip) {
    const hint = s.split(":").length > 2 && !s.startsWith("[") ? " (write IPv6 as [addr]:port)" : "";
    throw new UsageError(`--dst ${JSON.stringify(s)} is not IP:PORT${hint}`);
  }
  const port = Number(m[2]);
  if (port < 1 || port > 65535)
    throw new UsageError(`--dst ${JSON.stringify(s)}: port ${port} is out of range (1-65535)`);
  return { ip: ip.text, port, family: ip.family };
}

/** The last address of a CIDR but one: a pod address unlikely to be anyone's endpoint. */
export function podAddressIn(cidr: string): string | undefined {
  const c = parseCIDR(cidr);
  if (!c) return undefined;
  const bytes = c.bytes.map((b, i) => {
    const keep = Math.max(0, Math.min(8, c.prefix - i * 8));
    return b | (0xff >> keep);
  });
  if (c.prefix < bytes.length * 8 - 1) bytes[bytes.length - 1] &= 0xfe;
  if (c.family === "IPv4") return bytes.join(".");
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i] << 8) | bytes[i + 1]).toString(16));
  return parseIP(groups.join(":"))?.text;
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

async function rulesFromLive(opts: ExplainFlags, io: IO, wanted: IPFamily | undefined): Promise<LoadedRules> {
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

/** `ns/name[:port]` → the Service port, by port name (or number), narrowed by --proto. */
export function resolveService(list: ServiceEntry[], want: string, proto?: string): ServiceEntry {
  if (!/^[^/\s]+\/[^/\s:]+(:[^\s:]+)?$/.test(want))
    throw new UsageError(`--service ${JSON.stringify(want)} is not namespace/name or namespace/name:port`);
  const [svc, port] = want.split(":") as [string, string | undefined];
  let hits = list.filter((s) => s.name === want || (port === undefined && s.name.startsWith(`${svc}:`)));
  if (hits.length === 0 && port !== undefined && /^\d+$/.test(port))
    hits = list.filter((s) => (s.name === svc || s.name.startsWith(`${svc}:`)) && s.port === Number(port));
  if (proto) hits = hits.filter((s) => s.proto === proto);
  if (hits.length === 0) {
    const names = [...new Set(list.map((s) => s.name))].sort();
    const near = names.filter((n) => n.startsWith(`${svc.split("/")[0]}/`)).slice(0, 10);
    throw new UsageError(
      `Service ${JSON.stringify(want)}${proto ? ` (${proto})` : ""} is not in the rules${near.length > 0 ? `; in namespace ${svc.split("/")[0]}: ${near.join(", ")}` : names.length > 0 ? `; known: ${names.slice(0, 10).join(", ")}${names.length > 10 ? ", …" : ""}` : ""}`,
    );
  }
  if (hits.length > 1)
    throw new UsageError(
      `--service ${JSON.stringify(want)} has ${hits.length} ports: ${hits.map((h) => `${h.name} (${h.proto}/${h.port})`).join(", ")}; name one, e.g. ${hits[0].name.includes(":") ? hits[0].name : `${hits[0].name}:${hits[0].port}`}`,
    );
  return hits[0];
}

function defaultSource(from: From, family: IPFamily, dst: string, rules: LoadedRules, route?: Route): string {
  const dstIP = parseIP(dst);
  if (from === "node") {
    if (route?.src) return route.src;
    if (dstIP && isLoopback(dstIP)) return family === "IPv4" ? "127.0.0.1" : "::1";
    const fromHost = rules.host.localAddresses.find((a) => {
      const ip = parseIP(a);
      return ip && ip.family === family && !isLoopback(ip);
    });
    const ip = rules.nodeIP && parseIP(rules.nodeIP)?.family === family ? rules.nodeIP : fromHost;
    if (!ip) throw new UsageError("--from node: kip does not know the node's address: give --src or --node-ip");
    return ip;
  }
  if (from === "pod") {
    const cidr = rules.podCIDR ? podAddressIn(rules.podCIDR) : undefined;
    if (!cidr || parseIP(cidr)?.family !== family)
      throw new UsageError(`--from pod: kip does not know the pod ${family} CIDR: give --src or --cluster-cidr`);
    return cidr;
  }
  return family === "IPv4" ? "198.18.0.1" : "2001:db8:ffff::1";
}

/** The family for the walk: from --dst, else --ip-family; undefined when neither says. */
function familyOf(opts: ExplainFlags): IPFamily | undefined {
  if (opts.dst) {
    const d = parseDst(opts.dst);
    if (opts.ipFamily && opts.ipFamily !== d.family)
      throw new UsageError(`--dst ${opts.dst} is ${d.family}, not --ip-family ${opts.ipFamily}`);
    return d.family;
  }
  return opts.ipFamily === "IPv6" ? "IPv6" : opts.ipFamily === "IPv4" ? "IPv4" : undefined;
}

/**
 * --live on this host with only --service to go by: each family whose iptables works is read,
 * and the walk takes the first that has the Service (IPv4 first, as a dual-stack Service's
 * primary family usually is); a note names the other family when it has the Service too.
 */
async function liveRulesForService(opts: ExplainFlags, io: IO, service: string): Promise<LoadedRules> {
  const loaded: LoadedRules[] = [];
  let firstError: unknown;
  for (const family of ["IPv4", "IPv6"] as const) {
    try {
      loaded.push(await rulesFromLive(opts, io, family));
    } catch (e) {
      // Not root is not a family's problem: say it once, as for one family.
      if (e instanceof NeedsRoot) throw e;
      firstError ??= e;
    }
  }
  if (loaded.length === 0) throw firstError;
  const has = loaded.filter((l) => {
    try {
      resolveService(l.services, service, opts.proto);
      return true;
    } catch {
      return false;
    }
  });
  // In no family: the error lists what each family's rules do have.
  if (has.length === 0)
    resolveService(
      loaded.flatMap((l) => l.services),
      service,
      opts.proto,
    );
  const chosen = has[0];
  for (const other of has.slice(1))
    chosen.notes.push(`${service} has ${other.family} rules too: --ip-family ${other.family} walks those.`);
  return chosen;
}

export async function explainPacket(
  paths: string[],
  opts: ExplainFlags,
  io: IO,
): Promise<{ explanation: Explanation; rules: LoadedRules }> {
  if (!opts.dst && !opts.service) throw new UsageError("say where the packet goes: --dst IP:PORT or --service ns/name");
  if (opts.dst && opts.service) throw new UsageError("--dst and --service both name the destination: give one");
  if (opts.live !== undefined && paths.length > 0)
    throw new UsageError("rules come from PATH or from --live, not both");
  if (opts.live === undefined && paths.length === 0)
    throw new UsageError("no rules: name manifests (PATH…) to render, or --live [FILE] for a node's tables");
  if (opts.live === undefined && opts.backend) throw new UsageError("--backend goes with --live");
  const from = opts.from as From;
  if (opts.inInterface !== undefined && from === "node")
    throw new UsageError("--in-interface: packets the node sends do not arrive on an interface");
  const wanted = familyOf(opts);
  const rules =
    opts.live === undefined
      ? rulesFromManifests(paths, opts, io, wanted ?? "IPv4")
      : opts.live === true && wanted === undefined && opts.service
        ? await liveRulesForService(opts, io, opts.service)
        : await rulesFromLive(opts, io, wanted);
  const family = rules.family;
  if (rules.warning) io.stderr(`kip: warning: ${rules.warning}\n`);

  let dst: { ip: string; port: number };
  let proto = (opts.proto ?? "tcp") as Proto;
  if (opts.service) {
    const s = resolveService(rules.services, opts.service, opts.proto);
    dst = { ip: s.ip, port: s.port };
    proto = s.proto;
  } else dst = parseDst(opts.dst ?? "");

  const routes: Record<string, Route> = {};
  const lookup = async (addr: string) => {
    if (!rules.routeLookup || addr in routes) return;
    const r = await rules.routeLookup(addr);
    if (r) routes[addr] = r;
  };
  let src: string;
  if (opts.src !== undefined) {
    const ip = parseIP(opts.src);
    if (!ip) throw new UsageError(`--src ${JSON.stringify(opts.src)} is not an IP address`);
    if (ip.family !== family) throw new UsageError(`--src ${opts.src} is not ${family} like the destination`);
    src = ip.text;
  } else {
    if (from === "node") await lookup(dst.ip);
    src = defaultSource(from, family, dst.ip, rules, routes[dst.ip]);
  }
  let inInterface = opts.inInterface;
  if (inInterface === undefined && from === "pod" && rules.host.podInterface)
    inInterface = rules.host.podInterface.replace(/\+$/, "0");
  const pkt: Packet = { proto, src, dst: dst.ip, dport: dst.port, from, ...(inInterface ? { inInterface } : {}) };
  const host: HostFacts = { ...rules.host, routes };
  let explanation = explain(rules.tables, pkt, host);
  // Routes decide -o matches and the masquerade address: ask the host, walk again (bounded).
  for (let i = 0; i < 3 && rules.routeLookup && explanation.missingRoutes.some((a) => !(a in routes)); i++) {
    const want = explanation.missingRoutes.filter((a) => !(a in routes));
    for (const a of want) await lookup(a);
    if (want.every((a) => !(a in routes))) break;
    explanation = explain(rules.tables, pkt, host);
  }
  explanation.notes.unshift(...rules.notes);
  return { explanation, rules };
}

export async function runExplain(paths: string[], opts: ExplainFlags, io: IO): Promise<number> {
  const { explanation, rules } = await explainPacket(paths, opts, io);
  if (opts.output === "json") io.stdout(`${JSON.stringify({ rules: rules.source, ...explanation }, null, 2)}\n`);
  else io.stdout(formatExplanation(explanation, { color: useColor(opts.color, io), source: rules.source }));
  return 0;
}
