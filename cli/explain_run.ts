/**
 * `kip explain --dst IP:PORT [PATH... | --live [FILE]]`: one packet through a node's rules, as
 * the article walks it by hand: OUTPUT → KUBE-SERVICES → KUBE-SVC-… (1/3 each) → KUBE-SEP-… →
 * DNAT → POSTROUTING. Exit status: 0 explained (whatever the verdict), 2 bad input.
 */
import { explain } from "../lib/explain/explain.ts";
import { formatExplanation } from "../lib/explain/format.ts";
import type { Explanation, From, HostFacts, Packet, Proto, Route } from "../lib/explain/types.ts";
import type { Backend } from "../lib/iptables/runner.ts";
import { type IPFamily, isLoopback, parseCIDR, parseIP } from "../lib/model/ip.ts";
import { NeedsRoot, UsageError } from "./errors.ts";
import { type LoadedRules, rulesFromLive, rulesFromManifests, type ServiceEntry } from "./explain_rules.ts";
import { type IO, useColor } from "./io.ts";
import type { ClusterFlagValues, NodeFlagValues } from "./node_flags.ts";

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
