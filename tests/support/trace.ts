/**
 * A packet tracer over iptables-restore text: an oracle independent of lib/proxy (it reads
 * only the rendered rules). It follows the first packet of a new connection through the
 * chains kube-proxy hooks into the built-in ones (spec §3.1), in the kernel's order:
 * nat PREROUTING (or OUTPUT for node traffic) → KUBE-SERVICES; filter INPUT, FORWARD or
 * OUTPUT; nat POSTROUTING → KUBE-POSTROUTING. `-m statistic` rules branch the walk, so the
 * result is a probability distribution over outcomes.
 *
 * It reads rules as every reader of kip does, with lib/iptables/rule.ts's tokenizer and parser
 * and lib/iptables/facts.ts's MARK arithmetic; what a rule means for the packet is its own.
 *
 * Not modelled: anything outside the KUBE-* chains, routing beyond "is the destination local"
 * (the host's addresses plus loopback), and packets after the first one.
 */
import ipaddr from "ipaddr.js";
import { applyXmark, markValueMask, xmarkOf } from "../../lib/iptables/facts.ts";
import { parseRule as parseArgs, tokenize as tokenizeLine } from "../../lib/iptables/rule.ts";

export interface Packet {
  src: string;
  dst: string;
  dport: number;
  proto: "tcp" | "udp" | "sctp";
  from: "pod" | "node" | "external";
  /** Input interface (`-i`); none for node traffic. */
  inInterface?: string;
}

export interface Host {
  localAddresses: string[];
}

export type Verdict = "DNAT" | "REJECT" | "DROP" | "ACCEPT" | "NONE";

export interface Outcome {
  probability: number;
  verdict: Verdict;
  /** `ip:port` or `[v6]:port`. */
  dnat?: string;
  masquerade: boolean;
  /** Chains entered, in order, as `table:CHAIN`. */
  chains: string[];
}

export interface TraceResult {
  outcomes: Outcome[];
}

type Cond =
  | { kind: "src" | "dst"; neg: boolean; cidr: [ipaddr.IPv4 | ipaddr.IPv6, number] }
  | { kind: "proto" | "iface" | "dport" | "dsttype" | "srctype" | "ctstate"; neg: boolean; value: string }
  | { kind: "mark"; neg: boolean; value: number; mask: number }
  | { kind: "prob"; p: number }
  | { kind: "never" };

interface Rule {
  conds: Cond[];
  target?: string;
  targetArgs: Map<string, string>;
}

type Table = Map<string, Rule[]>;

interface State {
  dst: string;
  dport: number;
  mark: number;
  dnat?: string;
  chains: string[];
}

/** How a walk ended: a terminating target, or "continue" (fell off the chain or RETURN). */
interface Branch {
  p: number;
  st: State;
  end: "continue" | "return" | "DNAT" | "REJECT" | "DROP" | "ACCEPT" | "MASQUERADE";
}

/** Split a line into tokens with the one tokenizer (lib/iptables/rule.ts); throws when it cannot. */
export function tokenize(line: string): string[] {
  const out = tokenizeLine(line);
  if (!out) throw new Error(`cannot split ${line}`);
  return out;
}

const MODULES = new Set([
  "comment",
  "tcp",
  "udp",
  "sctp",
  "addrtype",
  "mark",
  "statistic",
  "recent",
  "conntrack",
  "nfacct",
]);
/** Target options without a value. */
const FLAGS = new Set(["--random-fully"]);

function parseCIDR(s: string): [ipaddr.IPv4 | ipaddr.IPv6, number] {
  if (s.includes("/")) return ipaddr.parseCIDR(s);
  const a = ipaddr.parse(s);
  return [a, a.kind() === "ipv4" ? 32 : 128];
}

/** A rule read by the one parser (lib/iptables/rule.ts); what the tracer does not model is an error. */
function parseRule(tokens: string[]): Rule {
  const parsed = parseArgs(tokens);
  const rule: Rule = { conds: [], targetArgs: new Map() };
  const loaded = parsed.matches.filter((m) => m.module !== "" && !m.implicit).map((m) => m.module);
  for (const m of parsed.matches) {
    if (m.module === "" || m.implicit) continue;
    if (!MODULES.has(m.module)) throw new Error(`unknown match module: ${m.module}`);
    // `-m tcp` matches the protocol too.
    if (m.module === "tcp" || m.module === "udp" || m.module === "sctp")
      rule.conds.push({ kind: "proto", neg: false, value: m.module });
  }
  for (const o of parsed.options) {
    const m = parsed.matches[o.match];
    const v = o.values[0] ?? "";
    const neg = o.negated;
    if (m.module === "" && (o.name === "-s" || o.name === "-d"))
      rule.conds.push({ kind: o.name === "-s" ? "src" : "dst", neg, cidr: parseCIDR(v) });
    else if (m.module === "" && o.name === "-p") rule.conds.push({ kind: "proto", neg, value: v });
    else if (m.module === "" && o.name === "-i") rule.conds.push({ kind: "iface", neg, value: v });
    else if (m.module === "" || m.implicit || !moduleOption(rule, m.module, o.name, v, neg))
      throw new Error(
        `unsupported option ${neg ? "! " : ""}${o.name} (modules: ${loaded.reverse().join(",") || "none"})`,
      );
  }
  rule.target = parsed.target;
  for (const t of parsed.targetOptions) {
    if (!t.name.startsWith("--")) throw new Error(`unexpected token after target: ${t.values[0]}`);
    if (t.values.length !== (FLAGS.has(t.name) ? 0 : 1))
      throw new Error(`unexpected token after target: ${t.values[1] ?? t.name}`);
    rule.targetArgs.set(t.name, t.values[0] ?? "");
  }
  return rule;
}

/** Add the condition for `opt` of `module`; false when the module has no such option. */
function moduleOption(rule: Rule, module: string, opt: string, v: string, neg: boolean): boolean {
  const bad = () => new Error(`unsupported use of ${neg ? "! " : ""}${opt} ${v} (module ${module})`);
  switch (`${module} ${opt}`) {
    case "comment --comment":
    case "nfacct --nfacct-name":
    case "recent --name":
    case "recent --set":
    case "recent --seconds":
    case "recent --reap":
    case "statistic --mode":
      if (neg || (opt === "--mode" && v !== "random")) throw bad();
      return true;
    case "recent --rcheck":
      if (neg) throw bad();
      rule.conds.push({ kind: "never" });
      return true;
    case "statistic --probability":
      if (neg) throw bad();
      rule.conds.push({ kind: "prob", p: Number(v) });
      return true;
    case "tcp --dport":
    case "udp --dport":
    case "sctp --dport":
      if (!/^[0-9]+$/.test(v)) throw bad();
      rule.conds.push({ kind: "dport", neg, value: v });
      return true;
    case "addrtype --dst-type":
    case "addrtype --src-type":
      if (v !== "LOCAL") throw bad();
      rule.conds.push({ kind: opt === "--dst-type" ? "dsttype" : "srctype", neg, value: v });
      return true;
    case "mark --mark": {
      const vm = markValueMask(v);
      if (!vm) throw bad();
      rule.conds.push({ kind: "mark", neg, value: vm[0], mask: vm[1] });
      return true;
    }
    case "conntrack --ctstate":
      rule.conds.push({ kind: "ctstate", neg, value: v });
      return true;
    default:
      return false;
  }
}

/** Parse restore text into tables of chains. `-X` removes a chain. */
export function parseRestore(text: string): Map<string, Table> {
  const tables = new Map<string, Table>();
  let table: Table | undefined;
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#") || line === "COMMIT") continue;
    if (line.startsWith("*")) {
      table = new Map();
      tables.set(line.slice(1), table);
      continue;
    }
    if (!table) throw new Error(`line outside a table: ${line}`);
    if (line.startsWith(":")) {
      table.set(line.slice(1).split(" ")[0], []);
      continue;
    }
    const tokens = tokenize(line);
    const rules = table.get(tokens[1]);
    if (!rules) throw new Error(`rule for undeclared chain: ${line}`);
    if (tokens[0] === "-X") table.delete(tokens[1]);
    else if (tokens[0] === "-A") rules.push(parseRule(tokens.slice(2)));
    else throw new Error(`unsupported line: ${line}`);
  }
  return tables;
}

const BUILTIN = new Set(["DNAT", "REJECT", "DROP", "ACCEPT", "MASQUERADE", "RETURN", "MARK"]);

/** Trace the first packet of a new connection; outcomes with equal results are merged. */
export function trace(restoreText: string, pkt: Packet, host: Host): TraceResult {
  const tables = parseRestore(restoreText);
  const nat = tables.get("nat") ?? new Map();
  const filter = tables.get("filter") ?? new Map();
  const localSet = new Set(host.localAddresses.map((a) => ipaddr.parse(a).toString()));
  const isLocal = (ip: string) => {
    const a = ipaddr.parse(ip);
    return localSet.has(a.toString()) || a.range() === "loopback";
  };
  const iface = pkt.from === "node" ? "" : (pkt.inInterface ?? "");

  const matches = (c: Cond, st: State, tableName: string): boolean => {
    switch (c.kind) {
      case "src":
      case "dst": {
        const a = ipaddr.parse(c.kind === "src" ? pkt.src : st.dst);
        if (a.kind() !== c.cidr[0].kind()) throw new Error(`address family mismatch: ${a} vs ${c.cidr[0]}`);
        return a.match(c.cidr) !== c.neg;
      }
      case "proto":
        return (pkt.proto === c.value) !== c.neg;
      case "dport":
        return (st.dport === Number(c.value)) !== c.neg;
      case "iface": {
        const hit = c.value.endsWith("+") ? iface.startsWith(c.value.slice(0, -1)) : iface === c.value;
        return hit !== c.neg;
      }
      case "dsttype":
        return isLocal(st.dst) !== c.neg;
      case "srctype":
        return (pkt.from === "node" || isLocal(pkt.src)) !== c.neg;
      case "mark":
        return ((st.mark & c.mask) >>> 0 === c.value) !== c.neg;
      case "ctstate": {
        // A first packet is NEW; the DNAT status is set once nat has translated it.
        const states = ["NEW", ...(st.dnat && tableName === "filter" ? ["DNAT"] : [])];
        return c.value.split(",").some((s) => states.includes(s)) !== c.neg;
      }
      case "never":
        return false;
      case "prob":
        return true;
    }
  };

  const runChain = (table: Table, tableName: string, chain: string, st0: State, depth: number): Branch[] => {
    const rules = table.get(chain);
    if (!rules) throw new Error(`unknown chain ${tableName}:${chain}`);
    if (depth > 50) throw new Error(`chain loop at ${chain}`);
    const st = { ...st0, chains: [...st0.chains, `${tableName}:${chain}`] };
    const from = (i: number, s: State): Branch[] => {
      for (; i < rules.length; i++) {
        const r = rules[i];
        if (!r.conds.every((c) => matches(c, s, tableName))) continue;
        const p = r.conds.reduce((acc, c) => (c.kind === "prob" ? acc * c.p : acc), 1);
        const out: Branch[] = [];
        for (const b of target(r, s)) {
          if (b.end === "continue") for (const c of from(i + 1, b.st)) out.push({ ...c, p: c.p * b.p * p });
          else out.push({ ...b, p: b.p * p });
        }
        if (p < 1) for (const c of from(i + 1, s)) out.push({ ...c, p: c.p * (1 - p) });
        return out;
      }
      return [{ p: 1, st: s, end: "continue" }];
    };
    const target = (r: Rule, s: State): Branch[] => {
      const t = r.target;
      if (t === undefined) return [{ p: 1, st: s, end: "continue" }];
      if (!BUILTIN.has(t)) {
        // A user chain: RETURN or the end of it resumes here.
        return runChain(table, tableName, t, s, depth + 1).map((b) =>
          b.end === "return" ? { ...b, end: "continue" } : b,
        );
      }
      switch (t) {
        case "RETURN":
          return [{ p: 1, st: s, end: "return" }];
        case "MARK": {
          const opt = r.targetArgs.has("--or-mark") ? "--or-mark" : "--xor-mark";
          const xmark = xmarkOf(opt, r.targetArgs.get(opt) ?? "");
          if (!xmark) throw new Error("MARK without --or-mark/--xor-mark");
          return [{ p: 1, st: { ...s, mark: applyXmark(s.mark, xmark) }, end: "continue" }];
        }
        case "DNAT": {
          const to = r.targetArgs.get("--to-destination");
          if (!to) throw new Error("DNAT without --to-destination");
          const m = /^\[(.+)\]:(\d+)$/.exec(to) ?? /^([^:]+):(\d+)$/.exec(to);
          if (!m) throw new Error(`bad --to-destination ${to}`);
          return [{ p: 1, st: { ...s, dst: m[1], dport: Number(m[2]), dnat: to }, end: "DNAT" }];
        }
        default:
          return [{ p: 1, st: s, end: t as Branch["end"] }];
      }
    };
    // Falling off the end of a user chain returns to the caller.
    return from(0, st).map((b) => (b.end === "continue" ? { ...b, end: "return" } : b));
  };

  /** Walk built-in chain `hooks` (jumps to KUBE-* chains in kernel order); "return" = policy. */
  const runHook = (table: Table, tableName: string, hooks: string[], st: State): Branch[] => {
    let branches: Branch[] = [{ p: 1, st, end: "continue" }];
    for (const chain of hooks) {
      if (!table.has(chain)) continue;
      const next: Branch[] = [];
      for (const b of branches) {
        if (b.end !== "continue") next.push(b);
        else
          for (const c of runChain(table, tableName, chain, b.st, 0))
            next.push({ ...c, p: c.p * b.p, end: c.end === "return" ? "continue" : c.end });
      }
      branches = next;
    }
    return branches;
  };

  const outcomes = new Map<string, Outcome>();
  const start: State = { dst: pkt.dst, dport: pkt.dport, mark: 0, chains: [] };
  for (const n of runHook(nat, "nat", ["KUBE-SERVICES"], start)) {
    if (n.end !== "DNAT" && n.end !== "continue") throw new Error(`unexpected nat verdict ${n.end}`);
    // Filter, in the order kube-proxy's jumps sit on a fresh host (spec §3.1).
    let hooks = ["KUBE-FIREWALL", "KUBE-PROXY-FIREWALL", "KUBE-SERVICES"];
    if (pkt.from !== "node")
      hooks = isLocal(n.st.dst)
        ? ["KUBE-FIREWALL", "KUBE-PROXY-FIREWALL", "KUBE-NODEPORTS", "KUBE-EXTERNAL-SERVICES"]
        : ["KUBE-PROXY-FIREWALL", "KUBE-FORWARD", "KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES"];
    for (const f of runHook(filter, "filter", hooks, n.st)) {
      const p = n.p * f.p;
      if (p === 0) continue;
      let verdict: Verdict = f.end === "REJECT" || f.end === "DROP" ? f.end : n.st.dnat ? "DNAT" : "NONE";
      if (verdict === "NONE" && f.end === "ACCEPT") verdict = "ACCEPT";
      let masquerade = false;
      let chains = f.st.chains;
      if (verdict !== "REJECT" && verdict !== "DROP") {
        const post = runHook(nat, "nat", ["KUBE-POSTROUTING"], f.st);
        if (post.length !== 1) throw new Error("KUBE-POSTROUTING must not branch");
        masquerade = post[0].end === "MASQUERADE";
        chains = post[0].st.chains;
      }
      const o: Outcome = { probability: p, verdict, masquerade, chains };
      if (n.st.dnat) o.dnat = n.st.dnat;
      const key = JSON.stringify([verdict, o.dnat, masquerade, chains]);
      const prev = outcomes.get(key);
      if (prev) prev.probability += p;
      else outcomes.set(key, o);
    }
  }
  return { outcomes: [...outcomes.values()] };
}
