/**
 * What each match means for the first packet of a connection: one small function per
 * `module option` (the rule header's own options under HEADER), each adding a condition to
 * the compiled rule or saying it cannot be evaluated. compileRule reads a rule through the
 * one parser (lib/iptables/rule.ts) and hands each option to its function.
 */
import { kernelChance, markValueMask, protocolName } from "../iptables/facts.ts";
import {
  headerOption,
  knownModule,
  type Match,
  type MatchOption,
  MODULE_OPTIONS,
  moduleKnows,
  type ParsedRule,
  parseRule,
  ruleComment,
} from "../iptables/rule.ts";
import { parseIP } from "../model/ip.ts";
import type { Compiled, Cond, Ctx } from "./types.ts";
import {
  addrIn,
  addrType,
  cmpBytes,
  ifaceMatch,
  parseAddrList,
  portSpec,
  shownAddr,
  TCP_FLAGS,
  tcpFlags,
} from "./values.ts";

/** One `-m recent` match, its options collected and evaluated once the rule is read. */
interface Recent {
  match: number;
  name: string;
  mode?: string;
  neg: boolean;
  seconds?: number;
  hitcount?: number;
  rdest: boolean;
}

/** One option being compiled. */
interface OptionCall {
  /** As written. */
  name: string;
  values: string[];
  /** The first value, "" when none. */
  val: string;
  not: boolean;
  option: MatchOption;
  rule: ParsedRule;
  out: Compiled;
  recent: Recent[];
  /** Report the option (with its values) as one kip does not evaluate. */
  unknown(): void;
}

type OptionFn = (o: OptionCall) => void;

const hex = (n: number) => `0x${(n >>> 0).toString(16)}`;

/** The conntrack state bits of the first packet at this point of the walk. */
function ctStates(c: Ctx): string[] {
  return ["NEW", ...(c.st.ctDnat ? ["DNAT"] : []), ...(c.st.ctSnat ? ["SNAT"] : [])];
}

function addrCond(kind: "src" | "dst", v: string, neg: boolean): Cond | undefined {
  const list = parseAddrList(v);
  if (!list) return undefined;
  const want = shownAddr(v);
  return (c) => {
    const actual = kind === "src" ? c.st.src : c.st.dst;
    const ip = parseIP(actual);
    const hit = ip !== undefined && list.some((x) => addrIn(ip, x));
    const first = list.length === 1 ? list[0] : undefined;
    const single = first !== undefined && (!("prefix" in first) || first.prefix === (ip?.bytes.length ?? 0) * 8);
    const rel = hit ? (single ? "is" : "in") : single ? "is not" : "not in";
    const why = hit && single && !neg ? `${kind} ${actual}` : `${kind} ${actual} ${rel} ${want}`;
    return { ok: hit !== neg, why };
  };
}

// ---------------------------------------------------------------------------------------
// The rule header: -s -d -p -i -o -f

const address: OptionFn = (o) => {
  const kind = headerOption(o.name) === "-s" ? "src" : "dst";
  const cond = addrCond(kind, o.val, o.not);
  if (cond) o.out.conds.push(cond);
  else o.out.unknown.push(`${o.not ? "! " : ""}${o.name} ${o.values[0]}`);
};

const protocol: OptionFn = ({ val, not, out }) => {
  const want = protocolName(val);
  out.conds.push((c) => {
    const hit = want === "all" || want === "0" || want === c.pkt.proto;
    return { ok: hit !== not, why: not ? `protocol ${c.pkt.proto} is not ${want}` : `protocol ${c.pkt.proto}` };
  });
};

const iface: OptionFn = ({ name, val: v, not, out }) => {
  const dir = headerOption(name) === "-i" ? "in" : "out";
  out.conds.push((c) => {
    const name2 = dir === "in" ? c.iif : c.oif;
    if (name2 === undefined) {
      // Outside traffic does not come in on the pod interface, whatever its name is.
      const pod = c.host.facts.podInterface;
      if (dir === "in" && c.pkt.from === "external" && pod && (pod === v || ifaceMatch(v, pod)))
        return { ok: not, why: `outside traffic does not arrive on ${v}` };
      return {
        ok: undefined,
        why: `${not ? "! " : ""}${name} ${v}: the ${dir}-interface is not known${dir === "in" ? " (give --in-interface)" : ""}`,
      };
    }
    const hit = ifaceMatch(v, name2);
    const shown = name2 === "" ? "(none)" : name2;
    return { ok: hit !== not, why: `${dir}-interface ${shown}${hit ? " matches" : " is not"} ${v}` };
  });
};

// A first packet is never a second-or-later fragment.
const fragment: OptionFn = ({ not, out }) => out.conds.push(() => ({ ok: not, why: "not a fragment" }));

/** The header's options by their short name. */
const HEADER: Record<string, OptionFn> = {
  "-s": address,
  "-d": address,
  "-p": protocol,
  "-i": iface,
  "-o": iface,
  "-f": fragment,
};

// ---------------------------------------------------------------------------------------
// Match modules

// Comments and counters never decide a match.
const ignore: OptionFn = () => {};

const dport: OptionFn = (o) => {
  const f = portSpec(o.val);
  if (!f) return o.unknown();
  const { val, not } = o;
  o.out.conds.push((c) => {
    const hit = f(c.st.dport);
    return { ok: hit !== not, why: `dport ${c.st.dport}${hit ? "" : " is not"}${hit && !not ? "" : ` ${val}`}` };
  });
};

const sport: OptionFn = (o) => {
  const f = portSpec(o.val);
  if (!f) return o.unknown();
  const { name, val, not } = o;
  const both = name === "--ports";
  o.out.conds.push((c) => {
    if (both && f(c.st.dport)) return { ok: !not, why: `dport ${c.st.dport} in ${val}` };
    if (c.pkt.sport === undefined)
      return { ok: undefined, why: `${not ? "! " : ""}${name} ${val}: the client's port is not known` };
    const hit = f(c.pkt.sport) || (both && f(c.st.dport));
    return { ok: hit !== not, why: `sport ${c.pkt.sport}${hit ? "" : " not"} in ${val}` };
  });
};

// The first packet of a TCP connection is a SYN.
const syn: OptionFn = ({ not, out }) => out.conds.push(() => ({ ok: !not, why: "a SYN (first packet)" }));

const tcpFlagsMatch: OptionFn = (o) => {
  const [m, s] = o.values;
  const mask = tcpFlags(m ?? "");
  const set = tcpFlags(s ?? "");
  if (mask === undefined || set === undefined) return o.unknown();
  const hit = (TCP_FLAGS.SYN & mask) === set;
  const not = o.not;
  o.out.conds.push(() => ({ ok: hit !== not, why: `flags SYN${hit ? "" : " do not"} match ${m} ${s}` }));
};

const addrtype: OptionFn = (o) => {
  const types = o.val.split(",");
  const which = o.name === "--src-type" ? "src" : "dst";
  const limited = o.rule.options.some((x) => x.name === "--limit-iface-in" || x.name === "--limit-iface-out");
  if (limited || !types.every((x) => ["LOCAL", "UNICAST", "MULTICAST", "BROADCAST"].includes(x))) return o.unknown();
  const not = o.not;
  o.out.conds.push((c) => {
    const addr = which === "src" ? c.st.src : c.st.dst;
    const type = addrType(addr, c.host);
    const hit = types.includes(type);
    const what = type === "LOCAL" ? "a local address" : `${type.toLowerCase()}, not local`;
    return { ok: hit !== not, why: `${which} ${addr} is ${what}` };
  });
};

const mark: OptionFn = (o) => {
  const vm = markValueMask(o.val);
  if (!vm) return o.unknown();
  const [value, mask] = vm;
  const { val, not } = o;
  o.out.conds.push((c) => {
    const hit = (c.st.mark & mask) >>> 0 === value;
    return { ok: hit !== not, why: `mark ${hex(c.st.mark)}${hit ? " matches" : " does not match"} ${val}` };
  });
};

const ctstate: OptionFn = ({ val, not, out }) => {
  const want = val.split(",");
  out.conds.push((c) => {
    const have = ctStates(c);
    const hit = want.some((s) => have.includes(s));
    const state = `ctstate ${have.join("+")}${have.length === 1 ? " (first packet)" : ""}`;
    return { ok: hit !== not, why: hit ? `${state} is in ${val}` : `${state} is none of ${val}` };
  });
};

const ctdir: OptionFn = ({ val, not, out }) =>
  out.conds.push(() => ({ ok: (val === "ORIGINAL") !== not, why: "original direction" }));

const ctproto: OptionFn = ({ val, not, out }) => {
  const want = protocolName(val);
  out.conds.push((c) => ({ ok: (want === c.pkt.proto) !== not, why: `ctproto ${c.pkt.proto}` }));
};

const ctorigaddr: OptionFn = (o) => {
  const list = parseAddrList(o.val);
  if (!list) return o.unknown();
  const which = o.name === "--ctorigsrc" ? "src" : "dst";
  const { val, not } = o;
  o.out.conds.push((c) => {
    const a = which === "src" ? c.pkt.src : c.pkt.dst;
    const ip = parseIP(a);
    const hit = ip !== undefined && list.some((x) => addrIn(ip, x));
    return { ok: hit !== not, why: `original ${which} ${a}${hit ? " in" : " not in"} ${val}` };
  });
};

const ctorigdstport: OptionFn = (o) => {
  const f = portSpec(o.val);
  if (!f) return o.unknown();
  const { val, not } = o;
  o.out.conds.push((c) => {
    const hit = f(c.pkt.dport);
    return { ok: hit !== not, why: `original dport ${c.pkt.dport}${hit ? "" : " not"} in ${val}` };
  });
};

const statisticMode: OptionFn = (o) => {
  if (o.val !== "random") o.unknown();
};

const probability: OptionFn = (o) => {
  const p = Number(o.val);
  if (!Number.isFinite(p)) return o.unknown();
  const k = kernelChance(p);
  o.out.chances.push(o.not ? 1 - k : k);
};

const RECENT_MODES = ["--set", "--rcheck", "--update", "--remove"];

/** One `-m recent` match: its options collected, evaluated by finishRecent. */
const recent: OptionFn = ({ name, val, not, option, recent: list }) => {
  let r = list.at(-1);
  if (r?.match !== option.match) r = undefined;
  if (!r || (r.mode && RECENT_MODES.includes(name)))
    list.push((r = { match: option.match, name: "DEFAULT", neg: false, rdest: false }));
  if (name === "--name") r.name = val;
  else if (name === "--seconds") r.seconds = Number(val);
  else if (name === "--hitcount") r.hitcount = Number(val);
  else if (name === "--rdest") r.rdest = true;
  else if (RECENT_MODES.includes(name)) {
    r.mode = name;
    r.neg = not;
  }
};

const iprange: OptionFn = (o) => {
  const [a, b] = o.val.split("-");
  const lo = parseIP(a ?? "");
  const hi = parseIP(b ?? a ?? "");
  if (!lo || !hi) return o.unknown();
  const which = o.name === "--src-range" ? "src" : "dst";
  const { val, not } = o;
  o.out.conds.push((c) => {
    const ip = parseIP(which === "src" ? c.st.src : c.st.dst);
    const hit =
      ip !== undefined &&
      ip.family === lo.family &&
      cmpBytes(ip.bytes, lo.bytes) >= 0 &&
      cmpBytes(ip.bytes, hi.bytes) <= 0;
    return { ok: hit !== not, why: `${which} ${ip?.text}${hit ? " in" : " not in"} ${val}` };
  });
};

/** `module option` → its meaning. Options the modules take but kip does not read are unknown. */
const MATCHES: Record<string, OptionFn> = {
  "comment --comment": ignore,
  "nfacct --nfacct-name": ignore,
  "addrtype --limit-iface-in": ignore,
  "addrtype --limit-iface-out": ignore,
  "tcp --syn": syn,
  "tcp --tcp-flags": tcpFlagsMatch,
  "addrtype --src-type": addrtype,
  "addrtype --dst-type": addrtype,
  "mark --mark": mark,
  "conntrack --ctstate": ctstate,
  "state --state": ctstate,
  "conntrack --ctdir": ctdir,
  "conntrack --ctproto": ctproto,
  "conntrack --ctorigsrc": ctorigaddr,
  "conntrack --ctorigdst": ctorigaddr,
  "conntrack --ctorigdstport": ctorigdstport,
  "statistic --mode": statisticMode,
  "statistic --probability": probability,
  "iprange --src-range": iprange,
  "iprange --dst-range": iprange,
  "multiport --dports": dport,
  "multiport --destination-ports": dport,
  "multiport --sports": sport,
  "multiport --source-ports": sport,
  "multiport --ports": sport,
};
for (const proto of ["tcp", "udp", "sctp"]) {
  MATCHES[`${proto} --dport`] = MATCHES[`${proto} --destination-port`] = dport;
  MATCHES[`${proto} --sport`] = MATCHES[`${proto} --source-port`] = sport;
}
for (const opt of Object.keys(MODULE_OPTIONS.recent)) MATCHES[`recent ${opt}`] = recent;

/** The recent matches of a rule, once all their options are read. */
function finishRecent(list: Recent[], out: Compiled): void {
  for (const r of list) {
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
}

/** The text of an option kip does not evaluate, with the module it belongs to when that is known. */
function unknownText(m: Match, o: MatchOption): string {
  const known = m.module !== "" && moduleKnows(m.module, o.name);
  // An option of a module kip does not know is shown with it; one no module takes, alone.
  const prefix = known || (m.module !== "" && !knownModule(m.module)) ? `-m ${m.module} ` : "";
  return `${prefix}${[...(o.negated ? ["!"] : []), o.name, ...o.values].join(" ")}`.trim();
}

/** Compile a rule's arguments; options kip does not evaluate are kept as `unknown`. */
export function compileRule(args: readonly string[]): Compiled {
  const rule = parseRule(args);
  const out: Compiled = { conds: [], unknown: [], chances: [], goto: rule.goto, targetOpts: new Map(), recentSet: [] };
  if (rule.target !== undefined) out.target = rule.target;
  for (const t of rule.targetOptions) if (t.name !== "") out.targetOpts.set(t.name, t.values);
  const comment = ruleComment(rule);
  if (comment !== undefined) out.comment = comment;
  const recentList: Recent[] = [];
  for (const option of rule.options) {
    const m = rule.matches[option.match];
    const header = m.module === "" ? HEADER[headerOption(option.name) ?? ""] : undefined;
    const fn =
      header ??
      (m.module !== "" && moduleKnows(m.module, option.name) ? MATCHES[`${m.module} ${option.name}`] : undefined);
    const call: OptionCall = {
      name: option.name,
      values: option.values,
      val: option.values[0] ?? "",
      not: option.negated,
      option,
      rule,
      out,
      recent: recentList,
      unknown: () => void out.unknown.push(unknownText(m, option)),
    };
    if (fn) fn(call);
    else call.unknown();
  }
  finishRecent(recentList, out);
  return out;
}
