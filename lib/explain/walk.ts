/**
 * One packet through a node's nat and filter tables, the way the kernel walks them: the first
 * packet of a new connection (conntrack NEW) from a pod, from the node itself or from outside.
 *
 * Pure: a parsed dump (lib/iptables/save_parser.ts), a packet and the host facts the rules
 * refer to (local addresses, routes) go in; an explanation object comes out. `-m statistic`
 * rules split the walk, so the result is a tree whose leaves carry probabilities.
 *
 * Order (netfilter hook priorities): a packet arriving on an interface meets nat PREROUTING,
 * then the routing decision, then filter INPUT and nat INPUT (local) or filter FORWARD and nat
 * POSTROUTING (forwarded). A packet the node sends meets nat OUTPUT, the routing decision,
 * filter OUTPUT and nat POSTROUTING; when its (translated) destination is local it comes back
 * in through `lo` to filter INPUT and nat INPUT.
 */

import { BUILTIN_CHAINS, type SaveDump, type SavedRule, type SavedTable } from "../iptables/save_parser.ts";
import { cidrContains, type IP, type IPFamily, isLoopback, parseCIDR, parseIP } from "../model/ip.ts";
import { KUBE_NODEPORTS, parseDestinationComment, parseServicePortNameComment } from "../proxy/chains.ts";
import { JUMP_RULES, jumpRuleArgs, jumpRuleLine } from "../proxy/jumps.ts";

export type Proto = "tcp" | "udp" | "sctp";
export type From = "pod" | "node" | "external";

export interface Packet {
  proto: Proto;
  src: string;
  dst: string;
  dport: number;
  /** The client's port; unknown (undefined) unless given, so `--sport` matches are reported. */
  sport?: number;
  from: From;
  /** The interface the packet arrives on (pod and external traffic); undefined = not known. */
  inInterface?: string;
}

/** What `ip route get DST` says: the interface a packet to DST leaves by, and its source address. */
export interface Route {
  dev: string;
  src?: string;
}

export interface HostFacts {
  /** The node's own addresses (type LOCAL for `addrtype`). Loopback ranges are always local. */
  localAddresses: string[];
  /** Routes by destination address; missing ones make `-o` matches unknown. */
  routes?: Record<string, Route>;
  /**
   * The pod interface (bridge name, or `prefix+`) when known: traffic from outside does not
   * arrive on it, so `-i` matches against it are decided even without --in-interface.
   */
  podInterface?: string;
}

export interface WalkOptions {
  /** `recent` lists that already hold this client (ClientIP affinity after a first packet). */
  recent?: string[];
}

export type Verdict = "DNAT" | "REJECT" | "DROP" | "ACCEPT" | "NONE" | "UNKNOWN";

/** One line of the walk. */
export type Event =
  | { kind: "hook"; table: string; chain: string; policy: string }
  | {
      kind: "rule";
      table: string;
      chain: string;
      /** The rule as written in the dump (`-A CHAIN …`). */
      rule: string;
      /** Line in the dump; 0 for rules kip added (jump rules) or rendered itself. */
      line: number;
      /** Why each match held; empty when the rule matches every packet. */
      why: string[];
      /** What the target did. */
      action: string;
      /** For `-m statistic`: the chance this rule is taken when the packet reaches it. */
      chance?: number;
    }
  | { kind: "route"; local: boolean; text: string }
  | { kind: "policy"; table: string; chain: string; policy: string }
  | { kind: "unknown"; table: string; chain: string; rule: string; line: number; matches: string[]; text: string };

export interface TreeNode {
  events: Event[];
  /** Where the walk splits (`-m statistic`); each child with its overall probability. */
  children: { probability: number; node: TreeNode }[];
  /** Index into `outcomes` when a path ends here. */
  outcome?: number;
}

export interface Masquerade {
  how: "MASQUERADE" | "SNAT";
  /** The new source address, when known (SNAT, or the route's source for MASQUERADE). */
  to?: string;
  /** The interface the packet leaves by, when known. */
  dev?: string;
  randomFully: boolean;
  table: string;
  chain: string;
  rule: string;
}

export interface Outcome {
  probability: number;
  verdict: Verdict;
  /** `ip:port` or `[ip]:port` after DNAT. */
  dnat?: string;
  /** The KUBE-SEP chain that did the DNAT. */
  endpointChain?: string;
  /** `ns/name[:port]`, from the comment of the kube-proxy rule that matched the destination. */
  service?: string;
  masquerade?: Masquerade;
  /** The rule (or policy) that decided a REJECT/DROP/ACCEPT/UNKNOWN. */
  decidedBy?: { table: string; chain: string; rule: string; line: number };
  rejectWith?: string;
  /** Where the packet goes after the tables: the final destination and whether it is local. */
  delivered?: { dst: string; dport: number; local: boolean };
  /** `table:CHAIN` entered, in order. */
  chains: string[];
  /** ClientIP affinity: the `recent` lists this packet was recorded in, and the next connection. */
  affinity?: {
    lists: string[];
    seconds?: number;
    next: { probability: number; verdict: Verdict; dnat?: string }[];
  };
}

export interface UnknownMatch {
  table: string;
  chain: string;
  rule: string;
  line: number;
  matches: string[];
}

export interface Explanation {
  family: IPFamily;
  packet: Packet;
  tree: TreeNode;
  /** Every way the walk ended, equal results merged, most likely first. */
  outcomes: Outcome[];
  /** Paths (same order as `paths` in the tree): each end with its probability. */
  paths: Outcome[];
  masquerade: "always" | "never" | "sometimes";
  verdict: string;
  unknown: UnknownMatch[];
  /** Destinations the walk needed a route for and did not have. */
  missingRoutes: string[];
  notes: string[];
}

// ---------------------------------------------------------------------------------------
// Jump rules

/** Whether a table declares any built-in chain (an iptables-save dump does; restore input not). */
function hasBuiltins(t: SavedTable): boolean {
  for (const c of t.chains.keys()) if (BUILTIN_CHAINS.has(c)) return true;
  return false;
}

/**
 * kube-proxy's jump rules (spec §3.1) put into the built-in chains of every nat/filter table
 * that has none (rendered rules, restore input), in a fresh node's top-down order: each is
 * inserted at the top, so later rows come first. Rows whose target chain the table lacks are
 * left out (kubelet's KUBE-FIREWALL where kube-proxy does not write it). Returns whether any
 * table got them.
 */
export function addKubeJumps(dump: SaveDump): { dump: SaveDump; added: boolean } {
  const tables = new Map(dump.tables);
  let added = false;
  for (const name of ["nat", "filter"]) {
    const t = dump.tables.get(name);
    if (!t || hasBuiltins(t)) continue;
    const builtins = name === "nat" ? ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"] : ["INPUT", "FORWARD", "OUTPUT"];
    const chains = new Map(builtins.map((c) => [c, { name: c, policy: "ACCEPT", line: 0 }]));
    for (const [k, v] of t.chains) chains.set(k, v);
    const jumps: SavedRule[] = [];
    for (const j of [...JUMP_RULES].reverse()) {
      if (j.table !== name || !t.chains.has(j.to)) continue;
      jumps.push({ op: "-A", chain: j.from, args: jumpRuleArgs(j), text: jumpRuleLine(j), line: 0 });
    }
    tables.set(name, { name, chains, rules: [...jumps, ...t.rules], deletes: t.deletes });
    added = true;
  }
  return { dump: { ...dump, tables }, added };
}

// ---------------------------------------------------------------------------------------
// Rules → conditions

interface Ctx {
  pkt: Packet;
  st: State;
  host: Host;
  /** Input/output interface names; "" when the hook has none, undefined when unknown. */
  iif: string | undefined;
  oif: string | undefined;
  table: string;
}

type Tri = boolean | undefined;
interface CondResult {
  ok: Tri;
  /** Why it held; for an unknown result, what kip could not tell. */
  why?: string;
  /** `recent --seconds` of a list that held the client. */
  seconds?: number;
}
type Cond = (c: Ctx) => CondResult;

interface Compiled {
  conds: Cond[];
  /** Matches kip does not evaluate (module or option), as written. */
  unknown: string[];
  /** `-m statistic --mode random` chances (the kernel's rounding). */
  chances: number[];
  target?: string;
  goto: boolean;
  targetOpts: Map<string, string[]>;
  /** `-m recent --set` lists. */
  recentSet: string[];
}

interface Rule {
  saved: SavedRule;
  compiled?: Compiled;
}

interface Chain {
  policy: string;
  rules: Rule[];
}

type Tables = Map<string, Map<string, Chain>>;

class Host {
  readonly local: IP[];
  readonly missingRoutes = new Set<string>();
  constructor(
    readonly facts: HostFacts,
    readonly family: IPFamily,
  ) {
    this.local = facts.localAddresses.map((a) => parseIP(a.split("/")[0])).filter((x): x is IP => x !== undefined);
  }
  isLocal(addr: string): boolean {
    const ip = parseIP(addr);
    if (!ip) return false;
    return isLoopback(ip) || this.local.some((l) => l.text === ip.text);
  }
  route(addr: string): Route | undefined {
    if (this.isLocal(addr)) return this.facts.routes?.[addr] ?? { dev: "lo", src: addr };
    const r = this.facts.routes?.[addr];
    if (!r) this.missingRoutes.add(addr);
    return r;
  }
}

const MODULE_OPTIONS: Record<string, Record<string, number>> = {
  comment: { "--comment": 1 },
  nfacct: { "--nfacct-name": 1 },
  tcp: {
    "--dport": 1,
    "--destination-port": 1,
    "--sport": 1,
    "--source-port": 1,
    "--syn": 0,
    "--tcp-flags": 2,
    "--tcp-option": 1,
  },
  udp: { "--dport": 1, "--destination-port": 1, "--sport": 1, "--source-port": 1 },
  sctp: { "--dport": 1, "--destination-port": 1, "--sport": 1, "--source-port": 1, "--chunk-types": 2 },
  multiport: {
    "--dports": 1,
    "--destination-ports": 1,
    "--sports": 1,
    "--source-ports": 1,
    "--ports": 1,
  },
  addrtype: { "--src-type": 1, "--dst-type": 1, "--limit-iface-in": 0, "--limit-iface-out": 0 },
  mark: { "--mark": 1 },
  conntrack: {
    "--ctstate": 1,
    "--ctproto": 1,
    "--ctorigsrc": 1,
    "--ctorigdst": 1,
    "--ctreplsrc": 1,
    "--ctrepldst": 1,
    "--ctorigsrcport": 1,
    "--ctorigdstport": 1,
    "--ctreplsrcport": 1,
    "--ctrepldstport": 1,
    "--ctstatus": 1,
    "--ctexpire": 1,
    "--ctdir": 1,
  },
  state: { "--state": 1 },
  statistic: { "--mode": 1, "--probability": 1, "--every": 1, "--packet": 1 },
  recent: {
    "--name": 1,
    "--set": 0,
    "--rcheck": 0,
    "--update": 0,
    "--remove": 0,
    "--seconds": 1,
    "--reap": 0,
    "--hitcount": 1,
    "--rttl": 0,
    "--rsource": 0,
    "--rdest": 0,
    "--mask": 1,
  },
  iprange: { "--src-range": 1, "--dst-range": 1 },
};

/** Targets that change nothing kip follows and never end the walk. */
const PASSIVE_TARGETS = new Set(["LOG", "NFLOG", "ULOG", "TRACE", "AUDIT"]);

const PROTO_NUMBERS: Record<string, string> = {
  "6": "tcp",
  "17": "udp",
  "132": "sctp",
  "1": "icmp",
  "58": "ipv6-icmp",
};

/** The chance the kernel gives `--probability p`: it keeps round(p × 2^31) and draws 31 bits. */
export function kernelChance(p: number): number {
  return Math.min(1, Math.max(0, Math.round(p * 0x80000000) / 0x80000000));
}

function parseAddrList(v: string): (IP | ReturnType<typeof parseCIDR>)[] | undefined {
  const out: (IP | ReturnType<typeof parseCIDR>)[] = [];
  for (const part of v.split(",")) {
    const x = part.includes("/") ? parseCIDR(part) : parseIP(part);
    if (!x) return undefined;
    out.push(x);
  }
  return out;
}

function addrIn(ip: IP, x: NonNullable<IP | ReturnType<typeof parseCIDR>>): boolean {
  if ("prefix" in x) return cidrContains(x, ip);
  return x.text === ip.text;
}

const shownAddr = (v: string) => v.replace(/\/(32|128)$/, "");

function addrCond(kind: "src" | "dst", v: string, neg: boolean): Cond | undefined {
  const list = parseAddrList(v);
  if (!list) return undefined;
  const want = shownAddr(v);
  return (c) => {
    const actual = kind === "src" ? c.st.src : c.st.dst;
    const ip = parseIP(actual);
    const hit = ip !== undefined && list.some((x) => x && addrIn(ip, x));
    const first = list.length === 1 ? list[0] : undefined;
    const single = first !== undefined && (!("prefix" in first) || first.prefix === (ip?.bytes.length ?? 0) * 8);
    const rel = hit ? (single ? "is" : "in") : single ? "is not" : "not in";
    const why = hit && single && !neg ? `${kind} ${actual}` : `${kind} ${actual} ${rel} ${want}`;
    return { ok: hit !== neg, why };
  };
}

function portSpec(v: string): ((p: number) => boolean) | undefined {
  const ranges: [number, number][] = [];
  for (const part of v.split(",")) {
    const m = /^(\d*)(?::(\d*))?$/.exec(part);
    if (!m || (m[1] === "" && m[2] === undefined)) return undefined;
    const lo = m[1] === "" ? 0 : Number(m[1]);
    const hi = m[2] === undefined ? lo : m[2] === "" ? 65535 : Number(m[2]);
    ranges.push([lo, hi]);
  }
  return (p) => ranges.some(([lo, hi]) => p >= lo && p <= hi);
}

function ifaceMatch(pattern: string, name: string): boolean {
  return pattern.endsWith("+") ? name.startsWith(pattern.slice(0, -1)) : name === pattern;
}

const TCP_FLAGS: Record<string, number> = {
  FIN: 1,
  SYN: 2,
  RST: 4,
  PSH: 8,
  ACK: 16,
  URG: 32,
  ALL: 63,
  NONE: 0,
};

function tcpFlags(list: string): number | undefined {
  let n = 0;
  for (const f of list.split(",")) {
    const v = TCP_FLAGS[f.toUpperCase()];
    if (v === undefined) return undefined;
    n |= v;
  }
  return n;
}

function num(v: string): number | undefined {
  const n = Number(v);
  return v !== "" && Number.isFinite(n) ? n >>> 0 : undefined;
}

const hex = (n: number) => `0x${(n >>> 0).toString(16)}`;

/** The conntrack state bits of the first packet at this point of the walk. */
function ctStates(c: Ctx): string[] {
  return ["NEW", ...(c.st.ctDnat ? ["DNAT"] : []), ...(c.st.ctSnat ? ["SNAT"] : [])];
}

/** Compile a rule's arguments; options kip does not evaluate are kept as `unknown`. */
export function compileRule(args: readonly string[]): Compiled {
  const out: Compiled = { conds: [], unknown: [], chances: [], goto: false, targetOpts: new Map(), recentSet: [] };
  const modules: string[] = [];
  const recent: { name: string; mode?: string; neg: boolean; seconds?: number; hitcount?: number; rdest: boolean }[] =
    [];
  let neg = false;
  let implicit: string | undefined;
  const takeValues = (i: number, n: number) => args.slice(i + 1, i + 1 + n);
  for (let i = 0; i < args.length; i++) {
    const t = args[i];
    if (t === "!") {
      neg = true;
      continue;
    }
    if (out.target !== undefined) {
      // Target options: `--opt [value…]` up to the next option.
      if (t.startsWith("--")) {
        const vals: string[] = [];
        while (i + 1 < args.length && !args[i + 1].startsWith("--")) vals.push(args[++i]);
        out.targetOpts.set(t, vals);
      }
      continue;
    }
    const v = args[i + 1];
    const not = neg;
    neg = false;
    let within = "";
    const unknown = (n: number) => {
      out.unknown.push([...(within ? ["-m", within] : []), ...(not ? ["!"] : []), t, ...takeValues(i, n)].join(" "));
      i += n;
    };
    switch (t) {
      case "-c":
      case "--set-counters":
        i += 2;
        continue;
      case "-s":
      case "--source":
      case "--src":
      case "-d":
      case "--destination":
      case "--dst": {
        const kind = t === "-s" || t === "--source" || t === "--src" ? "src" : "dst";
        const cond = addrCond(kind, v ?? "", not);
        if (cond) out.conds.push(cond);
        else out.unknown.push(`${not ? "! " : ""}${t} ${v}`);
        i++;
        continue;
      }
      case "-p":
      case "--protocol": {
        const want = PROTO_NUMBERS[v] ?? v.toLowerCase();
        if (!not) implicit = want;
        out.conds.push((c) => {
          const hit = want === "all" || want === "0" || want === c.pkt.proto;
          return { ok: hit !== not, why: not ? `protocol ${c.pkt.proto} is not ${want}` : `protocol ${c.pkt.proto}` };
        });
        i++;
        continue;
      }
      case "-i":
      case "--in-interface":
      case "-o":
      case "--out-interface": {
        const dir = t === "-i" || t === "--in-interface" ? "in" : "out";
        out.conds.push((c) => {
          const name = dir === "in" ? c.iif : c.oif;
          if (name === undefined) {
            // Outside traffic does not come in on the pod interface, whatever its name is.
            const pod = c.host.facts.podInterface;
            if (dir === "in" && c.pkt.from === "external" && pod && (pod === v || ifaceMatch(v, pod)))
              return { ok: not, why: `outside traffic does not arrive on ${v}` };
            return {
              ok: undefined,
              why: `${not ? "! " : ""}${t} ${v}: the ${dir}-interface is not known${dir === "in" ? " (give --in-interface)" : ""}`,
            };
          }
          const hit = ifaceMatch(v, name);
          const shown = name === "" ? "(none)" : name;
          return { ok: hit !== not, why: `${dir}-interface ${shown}${hit ? " matches" : " is not"} ${v}` };
        });
        i++;
        continue;
      }
      case "-f":
      case "--fragment":
        // A first packet is never a second-or-later fragment.
        out.conds.push(() => ({ ok: not, why: "not a fragment" }));
        continue;
      case "-m":
      case "--match":
        modules.unshift(v);
        i++;
        continue;
      case "-j":
      case "--jump":
      case "-g":
      case "--goto":
        out.target = v;
        out.goto = t === "-g" || t === "--goto";
        i++;
        continue;
    }
    // A module option belongs to the latest loaded module that knows it (as in iptables);
    // `-p tcp --dport 80` loads the protocol's module by itself.
    let mod = modules.find((m) => MODULE_OPTIONS[m]?.[t] !== undefined);
    if (!mod && implicit && MODULE_OPTIONS[implicit]?.[t] !== undefined) mod = implicit;
    if (!mod) {
      const known = modules.find((m) => MODULE_OPTIONS[m] === undefined);
      // An option of a module kip does not know: take its values up to the next option.
      let n = 0;
      while (i + 1 + n < args.length && !args[i + 1 + n].startsWith("-") && args[i + 1 + n] !== "!") n++;
      out.unknown.push(
        `${known ? `-m ${known} ` : ""}${[...(not ? ["!"] : []), t, ...takeValues(i, n)].join(" ")}`.trim(),
      );
      i += n;
      continue;
    }
    within = mod;
    const arity = MODULE_OPTIONS[mod][t];
    const val = arity > 0 ? (args[i + 1] ?? "") : "";
    switch (`${mod} ${t}`) {
      case "comment --comment":
      case "nfacct --nfacct-name":
        // Comments and counters never decide a match.
        i += arity;
        continue;
      case "tcp --dport":
      case "tcp --destination-port":
      case "udp --dport":
      case "udp --destination-port":
      case "sctp --dport":
      case "sctp --destination-port":
      case "multiport --dports":
      case "multiport --destination-ports": {
        const f = portSpec(val);
        if (!f) {
          unknown(arity);
          continue;
        }
        out.conds.push((c) => {
          const hit = f(c.st.dport);
          return { ok: hit !== not, why: `dport ${c.st.dport}${hit ? "" : " is not"}${hit && !not ? "" : ` ${val}`}` };
        });
        i += arity;
        continue;
      }
      case "tcp --sport":
      case "tcp --source-port":
      case "udp --sport":
      case "udp --source-port":
      case "sctp --sport":
      case "sctp --source-port":
      case "multiport --sports":
      case "multiport --source-ports":
      case "multiport --ports": {
        const f = portSpec(val);
        const both = t === "--ports";
        if (!f) {
          unknown(arity);
          continue;
        }
        out.conds.push((c) => {
          if (both && f(c.st.dport)) return { ok: !not, why: `dport ${c.st.dport} in ${val}` };
          if (c.pkt.sport === undefined)
            return { ok: undefined, why: `${not ? "! " : ""}${t} ${val}: the client's port is not known` };
          const hit = f(c.pkt.sport) || (both && f(c.st.dport));
          return { ok: hit !== not, why: `sport ${c.pkt.sport}${hit ? "" : " not"} in ${val}` };
        });
        i += arity;
        continue;
      }
      case "tcp --syn":
        // The first packet of a TCP connection is a SYN.
        out.conds.push(() => ({ ok: !not, why: "a SYN (first packet)" }));
        continue;
      case "tcp --tcp-flags": {
        const [m, s] = takeValues(i, 2);
        const mask = tcpFlags(m ?? "");
        const set = tcpFlags(s ?? "");
        if (mask === undefined || set === undefined) {
          unknown(2);
          continue;
        }
        const hit = (TCP_FLAGS.SYN & mask) === set;
        out.conds.push(() => ({ ok: hit !== not, why: `flags SYN${hit ? "" : " do not"} match ${m} ${s}` }));
        i += 2;
        continue;
      }
      case "addrtype --src-type":
      case "addrtype --dst-type": {
        const types = val.split(",");
        const which = t === "--src-type" ? "src" : "dst";
        const limited = args.includes("--limit-iface-in") || args.includes("--limit-iface-out");
        if (limited || !types.every((x) => ["LOCAL", "UNICAST", "MULTICAST", "BROADCAST"].includes(x))) {
          unknown(1);
          continue;
        }
        out.conds.push((c) => {
          const addr = which === "src" ? c.st.src : c.st.dst;
          const type = addrType(addr, c.host);
          const hit = types.includes(type);
          const what = type === "LOCAL" ? "a local address" : `${type.toLowerCase()}, not local`;
          return { ok: hit !== not, why: `${which} ${addr} is ${what}` };
        });
        i += 1;
        continue;
      }
      case "addrtype --limit-iface-in":
      case "addrtype --limit-iface-out":
        continue;
      case "mark --mark": {
        const [a, b] = val.split("/");
        const value = num(a);
        const mask = b === undefined ? 0xffffffff : num(b);
        if (value === undefined || mask === undefined) {
          unknown(1);
          continue;
        }
        out.conds.push((c) => {
          const hit = (c.st.mark & mask) >>> 0 === value;
          return {
            ok: hit !== not,
            why: `mark ${hex(c.st.mark)}${hit ? " matches" : " does not match"} ${val}`,
          };
        });
        i += 1;
        continue;
      }
      case "conntrack --ctstate":
      case "state --state": {
        const want = val.split(",");
        out.conds.push((c) => {
          const have = ctStates(c);
          const hit = want.some((s) => have.includes(s));
          const state = `ctstate ${have.join("+")}${have.length === 1 ? " (first packet)" : ""}`;
          return {
            ok: hit !== not,
            why: hit ? `${state} is in ${val}` : `${state} is none of ${val}`,
          };
        });
        i += 1;
        continue;
      }
      case "conntrack --ctdir":
        out.conds.push(() => ({ ok: (val === "ORIGINAL") !== not, why: "original direction" }));
        i += 1;
        continue;
      case "conntrack --ctproto": {
        const want = PROTO_NUMBERS[val] ?? val.toLowerCase();
        out.conds.push((c) => ({ ok: (want === c.pkt.proto) !== not, why: `ctproto ${c.pkt.proto}` }));
        i += 1;
        continue;
      }
      case "conntrack --ctorigsrc":
      case "conntrack --ctorigdst": {
        const list = parseAddrList(val);
        if (!list) {
          unknown(1);
          continue;
        }
        const which = t === "--ctorigsrc" ? "src" : "dst";
        out.conds.push((c) => {
          const a = which === "src" ? c.pkt.src : c.pkt.dst;
          const ip = parseIP(a);
          const hit = ip !== undefined && list.some((x) => x && addrIn(ip, x));
          return { ok: hit !== not, why: `original ${which} ${a}${hit ? " in" : " not in"} ${val}` };
        });
        i += 1;
        continue;
      }
      case "conntrack --ctorigdstport": {
        const f = portSpec(val);
        if (!f) {
          unknown(1);
          continue;
        }
        out.conds.push((c) => {
          const hit = f(c.pkt.dport);
          return { ok: hit !== not, why: `original dport ${c.pkt.dport}${hit ? "" : " not"} in ${val}` };
        });
        i += 1;
        continue;
      }
      case "statistic --mode":
        if (val !== "random") unknown(1);
        else i += 1;
        continue;
      case "statistic --probability": {
        const p = Number(val);
        if (!Number.isFinite(p)) {
          unknown(1);
          continue;
        }
        const k = kernelChance(p);
        out.chances.push(not ? 1 - k : k);
        i += 1;
        continue;
      }
      case "recent --name":
      case "recent --set":
      case "recent --rcheck":
      case "recent --update":
      case "recent --remove":
      case "recent --seconds":
      case "recent --reap":
      case "recent --hitcount":
      case "recent --rttl":
      case "recent --rsource":
      case "recent --rdest":
      case "recent --mask": {
        // One `-m recent` match: collect its options, evaluated below.
        let r = recent.at(-1);
        if (!r || (r.mode && ["--set", "--rcheck", "--update", "--remove"].includes(t)))
          recent.push((r = { name: "DEFAULT", neg: false, rdest: false }));
        if (t === "--name") r.name = val;
        else if (t === "--seconds") r.seconds = Number(val);
        else if (t === "--hitcount") r.hitcount = Number(val);
        else if (t === "--rdest") r.rdest = true;
        else if (["--set", "--rcheck", "--update", "--remove"].includes(t)) {
          r.mode = t;
          r.neg = not;
        }
        i += arity;
        continue;
      }
      case "iprange --src-range":
      case "iprange --dst-range": {
        const [a, b] = val.split("-");
        const lo = parseIP(a ?? "");
        const hi = parseIP(b ?? a ?? "");
        if (!lo || !hi) {
          unknown(1);
          continue;
        }
        const which = t === "--src-range" ? "src" : "dst";
        out.conds.push((c) => {
          const ip = parseIP(which === "src" ? c.st.src : c.st.dst);
          const hit =
            ip !== undefined &&
            ip.family === lo.family &&
            cmpBytes(ip.bytes, lo.bytes) >= 0 &&
            cmpBytes(ip.bytes, hi.bytes) <= 0;
          return { ok: hit !== not, why: `${which} ${ip?.text}${hit ? " in" : " not in"} ${val}` };
        });
        i += 1;
        continue;
      }
      default:
        unknown(arity);
    }
  }
  for (const r of recent) {
    const text = `-m recent --name ${r.name} ${r.mode ?? ""}`.trim();
    if (!r.mode || r.rdest || (r.hitcount !== undefined && r.hitcount > 1)) {
      out.unknown.push(text);
      continue;
    }
    if (r.mode === "--set") {
      if (r.neg) out.conds.push(() => ({ ok: false, why: `! --set never matches` }));
      else out.recentSet.push(r.name);
      continue;
    }
    out.conds.push((c) => {
      const has = c.st.recentKnown.includes(r.name);
      const why = has
        ? `recent ${r.name} holds src ${c.st.src}${r.seconds !== undefined ? ` (seen within ${r.seconds} s)` : ""}`
        : `recent ${r.name} has no entry for src ${c.st.src} yet`;
      return { ok: has !== r.neg, why, ...(has && r.seconds !== undefined ? { seconds: r.seconds } : {}) };
    });
  }
  return out;
}

function cmpBytes(a: number[], b: number[]): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return 0;
}

function addrType(addr: string, host: Host): "LOCAL" | "UNICAST" | "MULTICAST" | "BROADCAST" {
  if (host.isLocal(addr)) return "LOCAL";
  const ip = parseIP(addr);
  if (!ip) return "UNICAST";
  if (ip.family === "IPv4") {
    if (ip.bytes[0] >= 224 && ip.bytes[0] <= 239) return "MULTICAST";
    // Only the limited broadcast: subnet broadcasts would need the host's prefixes.
    if (ip.bytes.every((b) => b === 255)) return "BROADCAST";
  } else if (ip.bytes[0] === 0xff) return "MULTICAST";
  return "UNICAST";
}

// ---------------------------------------------------------------------------------------
// The walk

interface State {
  src: string;
  dst: string;
  dport: number;
  mark: number;
  ctDnat: boolean;
  ctSnat: boolean;
  dnat?: string;
  endpointChain?: string;
  service?: string;
  masquerade?: Masquerade;
  filterAccept: boolean;
  recentKnown: string[];
  recentSet: string[];
  affinitySeconds?: number;
  chains: string[];
  decidedBy?: Outcome["decidedBy"];
  rejectWith?: string;
}

/** A persistent list of events: branches share their common past. */
interface Cell {
  ev: Event;
  up?: Cell;
}

type End = "continue" | "return" | "accept" | "drop" | "reject" | "unknown";

interface Branch {
  p: number;
  st: State;
  end: End;
  trail?: Cell;
}

function commentOf(args: readonly string[]): string | undefined {
  for (let i = 0; i < args.length - 1; i++) if (args[i] === "--comment") return args[i + 1];
  return undefined;
}

class Walker {
  readonly unknown: UnknownMatch[] = [];
  private readonly seenUnknown = new Set<string>();

  constructor(
    private readonly tables: Tables,
    private readonly host: Host,
    private readonly pkt: Packet,
  ) {}

  private compiled(r: Rule): Compiled {
    if (!r.compiled) r.compiled = compileRule(r.saved.args);
    return r.compiled;
  }

  private noteUnknown(table: string, chain: string, r: Rule, matches: string[]): void {
    const key = `${table} ${r.saved.text}`;
    if (this.seenUnknown.has(key)) return;
    this.seenUnknown.add(key);
    this.unknown.push({ table, chain, rule: r.saved.text, line: r.saved.line, matches });
  }

  runChain(ctx: Omit<Ctx, "st">, chain: string, st0: State, trail: Cell | undefined, depth: number): Branch[] {
    const c = this.tables.get(ctx.table)?.get(chain);
    if (!c) throw new Error(`${ctx.table} has no chain ${chain}`);
    if (depth > 64) throw new Error(`chain loop through ${ctx.table}/${chain}`);
    const st: State = { ...st0, chains: [...st0.chains, `${ctx.table}:${chain}`] };
    const from = (i: number, s: State, tr: Cell | undefined): Branch[] => {
      // `carry`: the chance of still being here after not taking earlier `statistic` rules.
      // A loop, not recursion, so a Service with thousands of endpoints walks in linear time.
      const out: Branch[] = [];
      let carry = 1;
      for (; i < c.rules.length; i++) {
        const r = c.rules[i];
        const comp = this.compiled(r);
        const full: Ctx = { ...ctx, st: s };
        const why: string[] = [];
        const unsure = [...comp.unknown];
        let fails = false;
        let seconds: number | undefined;
        for (const cond of comp.conds) {
          const res = cond(full);
          if (res.ok === false) {
            fails = true;
            break;
          }
          if (res.ok === undefined) unsure.push(res.why ?? "?");
          else if (res.why) why.push(res.why);
          if (res.seconds !== undefined) seconds = res.seconds;
        }
        if (fails) continue;
        if (seconds !== undefined) s = { ...s, affinitySeconds: seconds };
        // Options kip does not evaluate, and interfaces it does not know: reported, not guessed.
        if (unsure.length > 0) {
          const matches = [...new Set(unsure)];
          this.noteUnknown(ctx.table, chain, r, matches);
          const passive = comp.target === undefined || PASSIVE_TARGETS.has(comp.target);
          const ev: Event = {
            kind: "unknown",
            table: ctx.table,
            chain,
            rule: r.saved.text,
            line: r.saved.line,
            matches,
            text: passive
              ? "kip cannot tell whether this matches; its target changes nothing kip follows"
              : "kip cannot tell whether this matches, and its target would decide the packet's fate",
          };
          if (passive) {
            tr = { ev, up: tr };
            continue;
          }
          out.push({
            p: carry,
            st: { ...s, decidedBy: { table: ctx.table, chain, rule: r.saved.text, line: r.saved.line } },
            end: "unknown",
            trail: { ev, up: tr },
          });
          return out;
        }
        const chance = comp.chances.reduce((a, b) => a * b, 1);
        if (chance > 0) {
          const taken = this.target(ctx, chain, r, comp, s, why, chance, tr, depth);
          const k = chance * carry;
          for (const b of taken) {
            if (b.end === "continue") for (const x of from(i + 1, b.st, b.trail)) out.push({ ...x, p: x.p * b.p * k });
            else out.push({ ...b, p: b.p * k });
          }
        }
        if (chance >= 1) return out;
        // Not taken: the walk goes on with the next rule, with the remaining chance.
        carry *= 1 - chance;
      }
      out.push({ p: carry, st: s, end: "return", trail: tr });
      return out;
    };
    return from(0, st, trail);
  }

  private target(
    ctx: Omit<Ctx, "st">,
    chain: string,
    r: Rule,
    comp: Compiled,
    s0: State,
    why: string[],
    chance: number,
    tr: Cell | undefined,
    depth: number,
  ): Branch[] {
    const t = comp.target;
    let s: State = s0;
    if (comp.recentSet.length > 0) {
      s = { ...s, recentSet: [...s.recentSet, ...comp.recentSet] };
      why.push(`records src ${s.src} in recent ${comp.recentSet.join(", ")}`);
    }
    const comment = commentOf(r.saved.args);
    const svc = comment ? parseDestinationComment(comment)?.servicePortName : undefined;
    if (svc && !s.service) s = { ...s, service: svc };
    if (
      !s.service &&
      ctx.table === "nat" &&
      chain === KUBE_NODEPORTS &&
      comment &&
      parseServicePortNameComment(comment)
    )
      s = { ...s, service: comment };
    const ruleRef = { table: ctx.table, chain, rule: r.saved.text, line: r.saved.line };
    const ev = (action: string): Cell => ({
      ev: {
        kind: "rule",
        table: ctx.table,
        chain,
        rule: r.saved.text,
        line: r.saved.line,
        why: chance < 1 ? [...why, `random: taken with chance ${fraction(chance)} at this rule`] : why,
        action,
        ...(chance < 1 ? { chance } : {}),
      },
      up: tr,
    });
    const opt = (k: string) => comp.targetOpts.get(k)?.[0];
    if (t === undefined) return [{ p: 1, st: s, end: "continue", trail: ev("no target: counted, walk goes on") }];
    switch (t) {
      case "ACCEPT":
        return [
          {
            p: 1,
            st: { ...s, ...(ctx.table === "filter" ? { filterAccept: true } : {}), decidedBy: ruleRef },
            end: "accept",
            trail: ev("ACCEPT"),
          },
        ];
      case "DROP":
        return [{ p: 1, st: { ...s, decidedBy: ruleRef }, end: "drop", trail: ev("DROP") }];
      case "REJECT": {
        const rw =
          opt("--reject-with") ?? (this.host.family === "IPv4" ? "icmp-port-unreachable" : "icmp6-port-unreachable");
        return [{ p: 1, st: { ...s, decidedBy: ruleRef, rejectWith: rw }, end: "reject", trail: ev(`REJECT (${rw})`) }];
      }
      case "RETURN":
        return [{ p: 1, st: s, end: "return", trail: ev("RETURN to the calling chain") }];
      case "MARK": {
        const before = s.mark;
        const m = markOp(comp.targetOpts, before);
        if (m === undefined) return this.unknownTarget(ctx, chain, r, s, tr, "MARK with options kip does not read");
        return [{ p: 1, st: { ...s, mark: m }, end: "continue", trail: ev(`mark ${hex(before)} → ${hex(m)}`) }];
      }
      case "DNAT": {
        if (ctx.table !== "nat") break;
        const to = opt("--to-destination");
        const parsed = to ? parseDnat(to, s.dport) : undefined;
        if (!parsed) return this.unknownTarget(ctx, chain, r, s, tr, `DNAT to ${to ?? "?"}: not a single address`);
        const dnat = parsed.ip.includes(":") ? `[${parsed.ip}]:${parsed.port}` : `${parsed.ip}:${parsed.port}`;
        return [
          {
            p: 1,
            st: {
              ...s,
              dst: parsed.ip,
              dport: parsed.port,
              dnat,
              ctDnat: true,
              endpointChain: chain.startsWith("KUBE-SEP-") ? chain : s.endpointChain,
            },
            end: "accept",
            trail: ev(`DNAT: dst ${s.dst}:${s.dport} → ${dnat}`),
          },
        ];
      }
      case "MASQUERADE":
      case "SNAT": {
        if (ctx.table !== "nat") break;
        let to: string | undefined;
        if (t === "SNAT") {
          const src = opt("--to-source") ?? "";
          to = parseDnat(src, 0)?.ip;
          if (!to) return this.unknownTarget(ctx, chain, r, s, tr, `SNAT to ${src}: not a single address`);
        } else to = ctx.oif !== undefined ? this.host.route(s.dst)?.src : undefined;
        const m: Masquerade = {
          how: t,
          to,
          dev: ctx.oif || undefined,
          randomFully: comp.targetOpts.has("--random-fully"),
          ...ruleRef,
        };
        const as = to ?? `the node's address on the interface towards ${s.dst}`;
        return [
          {
            p: 1,
            st: { ...s, masquerade: m, src: to ?? s.src, ctSnat: true },
            end: "accept",
            trail: ev(`${t}: src ${s.src} → ${as}${m.randomFully ? ", source port randomised" : ""}`),
          },
        ];
      }
    }
    if (PASSIVE_TARGETS.has(t)) return [{ p: 1, st: s, end: "continue", trail: ev(`${t} (logs only)`) }];
    const sub = this.tables.get(ctx.table)?.get(t);
    if (!sub) return this.unknownTarget(ctx, chain, r, s, tr, `target ${t} is not something kip follows`);
    const entered = ev(`${comp.goto ? "goto" : "jump to"} ${t}`);
    return this.runChain(ctx, t, s, entered, depth + 1).map((b) => {
      if (b.end !== "return") return b;
      // The end of a called chain (or RETURN) resumes the caller; after a goto, its caller.
      return comp.goto ? b : { ...b, end: "continue" };
    });
  }

  private unknownTarget(
    ctx: Omit<Ctx, "st">,
    chain: string,
    r: Rule,
    s: State,
    tr: Cell | undefined,
    text: string,
  ): Branch[] {
    this.noteUnknown(ctx.table, chain, r, [text]);
    const ev: Event = {
      kind: "unknown",
      table: ctx.table,
      chain,
      rule: r.saved.text,
      line: r.saved.line,
      matches: [text],
      text: "the packet's fate depends on this target",
    };
    return [
      {
        p: 1,
        st: { ...s, decidedBy: { table: ctx.table, chain, rule: r.saved.text, line: r.saved.line } },
        end: "unknown",
        trail: { ev, up: tr },
      },
    ];
  }

  /** A built-in chain: its rules, then its policy. Tables without the chain let the packet pass. */
  runHook(table: string, chain: string, iif: string | undefined, oif: string | undefined, b: Branch): Branch[] {
    const c = this.tables.get(table)?.get(chain);
    if (!c || (c.rules.length === 0 && c.policy !== "DROP")) return [b];
    const hook: Cell = { ev: { kind: "hook", table, chain, policy: c.policy }, up: b.trail };
    const out: Branch[] = [];
    for (const r of this.runChain({ pkt: this.pkt, host: this.host, iif, oif, table }, chain, b.st, hook, 0)) {
      const p = r.p * b.p;
      if (r.end === "continue" || r.end === "return") {
        if (c.policy === "DROP") {
          const ev: Event = { kind: "policy", table, chain, policy: c.policy };
          out.push({
            p,
            st: { ...r.st, decidedBy: { table, chain, rule: `policy ${c.policy}`, line: 0 } },
            end: "drop",
            trail: { ev, up: r.trail },
          });
        } else out.push({ ...r, p, end: "continue" });
      } else if (r.end === "accept") out.push({ ...r, p, end: "continue" });
      else out.push({ ...r, p });
    }
    return out;
  }
}

function markOp(opts: Map<string, string[]>, mark: number): number | undefined {
  const split = (v: string | undefined): [number, number] | undefined => {
    if (v === undefined) return undefined;
    const [a, b] = v.split("/");
    const value = num(a);
    const mask = b === undefined ? 0xffffffff : num(b);
    return value === undefined || mask === undefined ? undefined : [value, mask];
  };
  const one = (k: string) => opts.get(k)?.[0];
  let vm: [number, number] | undefined;
  if ((vm = split(one("--set-xmark")))) return ((mark & ~vm[1]) ^ vm[0]) >>> 0;
  if ((vm = split(one("--set-mark")))) return ((mark & ~vm[1]) | vm[0]) >>> 0;
  if ((vm = split(one("--or-mark")))) return (mark | vm[0]) >>> 0;
  if ((vm = split(one("--and-mark")))) return (mark & vm[0]) >>> 0;
  if ((vm = split(one("--xor-mark")))) return (mark ^ vm[0]) >>> 0;
  return undefined;
}

/** `10.0.0.1:80`, `10.0.0.1`, `[fd00::1]:80`, `fd00::1` → address and port (no ranges). */
function parseDnat(to: string, port: number): { ip: string; port: number } | undefined {
  let m = /^\[([^\]]+)\](?::(\d+))?$/.exec(to);
  if (!m && !to.includes("-")) {
    m = /^([^:]+)(?::(\d+))?$/.exec(to);
    if (!m && parseIP(to)) m = [to, to, undefined] as unknown as RegExpExecArray;
  }
  if (!m) return undefined;
  const ip = parseIP(m[1]);
  if (!ip) return undefined;
  return { ip: ip.text, port: m[2] !== undefined ? Number(m[2]) : port };
}

/** `1/3` for chances close to 1/n (or k/n, n ≤ 64), else a percentage. */
export function fraction(p: number): string {
  if (Math.abs(p - 1) < 1e-9) return "1";
  for (let n = 2; n <= 64; n++) {
    const k = Math.round(p * n);
    if (k > 0 && k < n && Math.abs(p - k / n) < 1e-6 && gcd(k, n) === 1) return `${k}/${n}`;
  }
  return `${(p * 100).toPrecision(3)}%`;
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

function buildTables(dump: SaveDump): Tables {
  const tables: Tables = new Map();
  for (const [name, t] of dump.tables) {
    if (name !== "nat" && name !== "filter") continue;
    const chains = new Map<string, Chain>();
    for (const c of t.chains.values()) chains.set(c.name, { policy: c.policy, rules: [] });
    for (const r of t.rules) {
      let c = chains.get(r.chain);
      if (!c) chains.set(r.chain, (c = { policy: BUILTIN_CHAINS.has(r.chain) ? "ACCEPT" : "-", rules: [] }));
      if (r.op === "-A") c.rules.push({ saved: r });
      else if (r.op === "-I") c.rules.unshift({ saved: r });
      else if (r.op === "-D") {
        const i = c.rules.findIndex((x) => x.saved.args.join("\0") === r.args.join("\0"));
        if (i >= 0) c.rules.splice(i, 1);
      }
    }
    for (const d of t.deletes) chains.delete(d);
    tables.set(name, chains);
  }
  return tables;
}

/** The family of the packet's addresses; throws when they disagree or do not parse. */
export function packetFamily(pkt: Packet): IPFamily {
  const d = parseIP(pkt.dst);
  const s = parseIP(pkt.src);
  if (!d) throw new Error(`Destination ${JSON.stringify(pkt.dst)} is not an IP address`);
  if (!s) throw new Error(`Source ${JSON.stringify(pkt.src)} is not an IP address`);
  if (d.family !== s.family) throw new Error(`Source ${s.text} and destination ${d.text} are of different families`);
  return d.family;
}

/** One walk: the paths, each with its events, probability and result. */
function walkOnce(
  dump: SaveDump,
  pkt: Packet,
  facts: HostFacts,
  opts: WalkOptions,
): { paths: { outcome: Outcome; trail?: Cell }[]; unknown: UnknownMatch[]; missing: Set<string> } {
  const family = packetFamily(pkt);
  const host = new Host(facts, family);
  const tables = buildTables(dump);
  const w = new Walker(tables, host, pkt);
  const st: State = {
    src: parseIP(pkt.src)?.text ?? pkt.src,
    dst: parseIP(pkt.dst)?.text ?? pkt.dst,
    dport: pkt.dport,
    mark: 0,
    ctDnat: false,
    ctSnat: false,
    filterAccept: false,
    recentKnown: opts.recent ?? [],
    recentSet: [],
    chains: [],
  };
  let branches: Branch[] = [{ p: 1, st, end: "continue" }];
  const step = (fn: (b: Branch) => Branch[]) => {
    branches = branches.flatMap((b) => (b.end === "continue" ? fn(b) : [b]));
  };
  const routeEvent = (b: Branch, local: boolean, text: string): Branch => ({
    ...b,
    trail: { ev: { kind: "route", local, text }, up: b.trail },
  });
  const oifFor = (dst: string) => host.route(dst)?.dev;
  const pod = pkt.from === "node" ? undefined : pkt.inInterface;
  const then = (list: Branch[], table: string, chain: string, iif: string | undefined, oif: string | undefined) =>
    list.flatMap((x) => (x.end === "continue" ? w.runHook(table, chain, iif, oif, x) : [x]));

  if (pkt.from === "node") {
    step((b) => w.runHook("nat", "OUTPUT", "", oifFor(b.st.dst), b));
    step((b) => {
      const local = host.isLocal(b.st.dst);
      const oif = local ? "lo" : oifFor(b.st.dst);
      const routed = routeEvent(
        b,
        local,
        local
          ? `routing: ${b.st.dst} is a local address: the packet loops back through lo`
          : `routing: ${b.st.dst} is not a local address: the packet leaves the node${oif ? ` via ${oif}` : ""}`,
      );
      let out = then([routed], "filter", "OUTPUT", "", oif);
      out = then(out, "nat", "POSTROUTING", "", oif);
      // Back in through lo: filter INPUT sees it (nat PREROUTING does not: conntrack knows it).
      if (local) out = then(then(out, "filter", "INPUT", "lo", ""), "nat", "INPUT", "lo", "");
      return out;
    });
  } else {
    step((b) => w.runHook("nat", "PREROUTING", pod, "", b));
    step((b) => {
      const local = host.isLocal(b.st.dst);
      const oif = local ? "" : oifFor(b.st.dst);
      const routed = routeEvent(
        b,
        local,
        local
          ? `routing: ${b.st.dst} is a local address: delivered to the node (filter INPUT)`
          : `routing: ${b.st.dst} is not a local address: forwarded${oif ? ` via ${oif}` : ""} (filter FORWARD)`,
      );
      if (local) return then(then([routed], "filter", "INPUT", pod, ""), "nat", "INPUT", pod, "");
      return then(then([routed], "filter", "FORWARD", pod, oif), "nat", "POSTROUTING", "", oif);
    });
  }

  const paths = branches
    .filter((b) => b.p > 0)
    .map((b) => {
      const s = b.st;
      let verdict: Verdict;
      if (b.end === "drop") verdict = "DROP";
      else if (b.end === "reject") verdict = "REJECT";
      else if (b.end === "unknown") verdict = "UNKNOWN";
      else verdict = s.dnat ? "DNAT" : s.filterAccept ? "ACCEPT" : "NONE";
      const outcome: Outcome = { probability: b.p, verdict, chains: s.chains };
      if (s.dnat) outcome.dnat = s.dnat;
      if (s.endpointChain) outcome.endpointChain = s.endpointChain;
      if (s.service) outcome.service = s.service;
      if (s.masquerade && verdict !== "DROP" && verdict !== "REJECT") outcome.masquerade = s.masquerade;
      if (verdict !== "DNAT" && verdict !== "NONE" && s.decidedBy) outcome.decidedBy = s.decidedBy;
      if (verdict === "REJECT" && s.rejectWith) outcome.rejectWith = s.rejectWith;
      if (verdict === "DNAT" || verdict === "NONE" || verdict === "ACCEPT")
        outcome.delivered = { dst: s.dst, dport: s.dport, local: host.isLocal(s.dst) };
      if (s.recentSet.length > 0 && verdict === "DNAT")
        outcome.affinity = {
          lists: s.recentSet,
          next: [],
          ...(s.affinitySeconds ? { seconds: s.affinitySeconds } : {}),
        };
      return { outcome, trail: b.trail };
    });
  return { paths, unknown: w.unknown, missing: host.missingRoutes };
}

interface Trie {
  cell?: Cell;
  kids: Trie[];
  outcome?: number;
  p: number;
}

function buildTree(paths: { outcome: Outcome; trail?: Cell }[]): TreeNode {
  const root: Trie = { kids: [], p: 0 };
  const nodes = new Map<Cell, Trie>();
  paths.forEach((path, idx) => {
    const cells: Cell[] = [];
    for (let c = path.trail; c; c = c.up) cells.push(c);
    cells.reverse();
    let cur = root;
    cur.p += path.outcome.probability;
    for (const c of cells) {
      let n = nodes.get(c);
      if (!n) {
        n = { cell: c, kids: [], p: 0 };
        nodes.set(c, n);
        cur.kids.push(n);
      }
      n.p += path.outcome.probability;
      cur = n;
    }
    cur.outcome = idx;
  });
  const convert = (start: Trie): TreeNode => {
    const node: TreeNode = { events: [], children: [] };
    let cur = start;
    for (;;) {
      if (cur.cell) node.events.push(cur.cell.ev);
      if (cur.outcome !== undefined || cur.kids.length !== 1) break;
      cur = cur.kids[0];
    }
    if (cur.outcome !== undefined) node.outcome = cur.outcome;
    const children: TreeNode["children"] = [];
    const lift = (t: Trie) => {
      const child = convert(t);
      // Nothing happened on this side of a split but another split: one flat N-way split.
      if (child.events.length === 0 && child.outcome === undefined && child.children.length > 0)
        children.push(...child.children);
      else children.push({ probability: t.p, node: child });
    };
    for (const k of cur.kids) lift(k);
    node.children = children;
    return node;
  };
  return convert(root);
}

const outcomeKey = (o: Outcome) =>
  JSON.stringify([o.verdict, o.dnat, o.masquerade ? (o.masquerade.to ?? "yes") : "", o.decidedBy?.rule ?? ""]);

function describeVerdict(outcomes: Outcome[], pkt: Packet): string {
  const one = (o: Outcome): string => {
    const by = o.decidedBy ? `${o.decidedBy.table}/${o.decidedBy.chain}` : "";
    const why = o.decidedBy ? commentOfRule(o.decidedBy.rule) : undefined;
    switch (o.verdict) {
      case "DNAT":
        return `DNAT to ${o.dnat}${o.service ? ` (${o.service})` : ""}`;
      case "REJECT":
        return `REJECT (${o.rejectWith ?? "icmp-port-unreachable"}) by ${by}${why ? `: ${why}` : ""}`;
      case "DROP":
        return o.decidedBy?.rule.startsWith("policy ")
          ? `DROP by the policy of ${by}`
          : `DROP by ${by}${why ? `: ${why}` : ""}`;
      case "ACCEPT":
        return `ACCEPT by ${by}${why ? ` (${why})` : ""} (no service translation)`;
      case "UNKNOWN":
        return `unknown: decided by ${by}, which uses matches kip does not evaluate`;
      default:
        return `no service: no rule translated ${pkt.dst.includes(":") ? `[${pkt.dst}]` : pkt.dst}:${pkt.dport}; the packet goes on unchanged`;
    }
  };
  if (outcomes.length === 1) return one(outcomes[0]);
  if (outcomes.every((o) => o.verdict === "DNAT")) {
    const svc =
      outcomes[0].service && outcomes.every((o) => o.service === outcomes[0].service) ? outcomes[0].service : "";
    return `DNAT to one of ${outcomes.length} endpoints${svc ? ` of ${svc}` : ""}`;
  }
  return outcomes.map((o) => `${fraction(o.probability)} ${one(o)}`).join("; ");
}

function commentOfRule(rule: string): string | undefined {
  const m = /--comment (?:"((?:[^"\\]|\\.)*)"|(\S+))/.exec(rule);
  return m ? (m[1] ?? m[2]) : undefined;
}

/**
 * Walk the first packet of a new connection through `dump` (nat and filter tables; built-in
 * chains must be present, see addKubeJumps). ClientIP affinity is followed one packet further:
 * each outcome that recorded the client says where its next connection goes.
 */
export function explain(dump: SaveDump, pkt: Packet, facts: HostFacts, opts: WalkOptions = {}): Explanation {
  const family = packetFamily(pkt);
  const first = walkOnce(dump, pkt, facts, opts);
  const missing = new Set(first.missing);
  for (const p of first.paths) {
    const a = p.outcome.affinity;
    if (!a) continue;
    const next = walkOnce(dump, pkt, facts, { recent: [...(opts.recent ?? []), ...a.lists] });
    for (const m of next.missing) missing.add(m);
    const merged = new Map<string, { probability: number; verdict: Verdict; dnat?: string }>();
    for (const n of next.paths) {
      const k = `${n.outcome.verdict} ${n.outcome.dnat ?? ""}`;
      const prev = merged.get(k);
      if (prev) prev.probability += n.outcome.probability;
      else
        merged.set(k, {
          probability: n.outcome.probability,
          verdict: n.outcome.verdict,
          ...(n.outcome.dnat ? { dnat: n.outcome.dnat } : {}),
        });
      const secs = n.outcome.affinity?.seconds;
      if (secs !== undefined) a.seconds = secs;
    }
    a.next = [...merged.values()];
  }
  // The seconds come from the rcheck rule that matched on the next packet.
  const paths = first.paths.map((p) => p.outcome);
  const merged = new Map<string, Outcome>();
  for (const o of paths) {
    const k = outcomeKey(o);
    const prev = merged.get(k);
    if (prev) prev.probability += o.probability;
    else merged.set(k, { ...o });
  }
  const outcomes = [...merged.values()].sort((a, b) => b.probability - a.probability);
  const reached = outcomes.filter((o) => o.verdict !== "DROP" && o.verdict !== "REJECT" && o.verdict !== "UNKNOWN");
  const masq = reached.filter((o) => o.masquerade).length;
  const notes: string[] = [];
  if (pkt.proto === "tcp" || pkt.proto === "sctp" || pkt.proto === "udp")
    notes.push(
      "Only the first packet of a connection goes through the nat table; conntrack gives the rest of the connection the same translation.",
    );
  return {
    family,
    packet: pkt,
    tree: buildTree(first.paths),
    outcomes,
    paths,
    masquerade: masq === 0 ? "never" : masq === reached.length ? "always" : "sometimes",
    verdict: describeVerdict(outcomes, pkt),
    unknown: first.unknown,
    missingRoutes: [...missing],
    notes,
  };
}
