/**
 * One canonical form for a rule, whether it comes from kip's restore input or from either
 * backend's iptables-save, which rewrites rules: `-p`/`-s`/`-d` move to the front, addresses
 * gain `/32`, probabilities come back as the kernel stored them (`0.33333333349`), MARK
 * becomes `--set-xmark`, `recent` gains its defaults, REJECT its `--reject-with`, comments are
 * always quoted. Equal canonical text = the same rule in the kernel.
 */
import { type IPFamily, parseCIDR, parseIP } from "../model/ip.ts";
import { defaultRejectWith, kernelProbability, markNumber, protocolName, xmarkOf } from "./facts.ts";
import { headerOption, type MatchOption, needsQuotes, parseRule, quoted, tokenize } from "./rule.ts";

export { kernelProbability };

/** The header's options in iptables-save's order: -s -d -i -o -p. */
const HEADER_SLOT: Record<string, number> = { "-s": 0, "-d": 1, "-i": 2, "-o": 3, "-p": 4 };
const HEADER_FLAG = ["-s", "-d", "-i", "-o", "-p"];
const OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";
const PLAIN_V4 = new RegExp(`^${OCTET}\\.${OCTET}\\.${OCTET}\\.${OCTET}(/32)?$`);
const addressCache = new Map<string, string>();

/** `10.0.0.1` and `10.0.0.1/32` → `10.0.0.1/32`; CIDRs in network form; IPv6 canonical. */
function normAddress(v: string): string {
  const m = PLAIN_V4.exec(v);
  if (m) return m[1] ? v : `${v}/32`; // the common case, without parsing
  let out = addressCache.get(v);
  if (out !== undefined) return out;
  if (v.includes("/")) out = parseCIDR(v)?.text ?? v;
  else {
    const ip = parseIP(v);
    out = ip ? `${ip.text}/${ip.family === "IPv4" ? 32 : 128}` : v;
  }
  if (addressCache.size < 100_000) addressCache.set(v, out);
  return out;
}

function hex(v: string): string {
  const n = markNumber(v);
  return n === undefined ? v : `0x${n.toString(16)}`;
}

/** `V` or `V/M` with numbers in lowercase hex, the mask left out when it is all ones. */
function markValue(v: string): string {
  const slash = v.indexOf("/");
  if (slash < 0) return hex(v);
  const mask = v.slice(slash + 1);
  if (Number(mask) >>> 0 === 0xffffffff) return hex(v.slice(0, slash));
  return `${hex(v.slice(0, slash))}/${hex(mask)}`;
}

const RECENT_ORDER = [
  "--set",
  "--rcheck",
  "--update",
  "--remove",
  "--seconds",
  "--reap",
  "--hitcount",
  "--rttl",
  "--name",
  "--mask",
  "--rsource",
  "--rdest",
];

/** `recent` options with iptables-save's defaults filled in, in its order. */
function normalizeRecent(tokens: string[], family: IPFamily): string[] {
  const groups: string[][] = [];
  for (const t of tokens) {
    if (
      t.startsWith("--") &&
      !(groups.length > 0 && groups[groups.length - 1].length === 1 && groups[groups.length - 1][0] === "!")
    )
      groups.push([t]);
    else if (t === "!") groups.push([t]);
    else if (groups.length > 0) groups[groups.length - 1].push(t);
    else groups.push([t]);
  }
  const has = (name: string) => groups.some((g) => g.includes(name));
  if (!has("--name")) groups.push(["--name", "DEFAULT"]);
  if (!has("--mask"))
    groups.push(["--mask", family === "IPv4" ? "255.255.255.255" : "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"]);
  if (!has("--rsource") && !has("--rdest")) groups.push(["--rsource"]);
  const key = (g: string[]) => {
    const i = RECENT_ORDER.indexOf(g.find((t) => t.startsWith("--")) ?? "");
    return i < 0 ? RECENT_ORDER.length : i;
  };
  return groups.sort((a, b) => key(a) - key(b)).flat();
}

/** conntrack states in the kernel's bit order, which is how iptables-save prints them. */
const CT_STATES = ["INVALID", "NEW", "RELATED", "ESTABLISHED", "UNTRACKED", "SNAT", "DNAT"];
const ctOrder = (s: string) => {
  const i = CT_STATES.indexOf(s);
  return i < 0 ? CT_STATES.length : i;
};

/** Rewrite the option tokens body[from..] of one match in place, by module. */
function finishMatch(body: string[], module: string, from: number, family: IPFamily): void {
  switch (module) {
    case "statistic":
      for (let i = from; i < body.length - 1; i++)
        if (body[i] === "--probability") body[i + 1] = kernelProbability(body[i + 1]);
      return;
    case "mark":
      for (let i = from; i < body.length - 1; i++) if (body[i] === "--mark") body[i + 1] = markValue(body[i + 1]);
      return;
    case "conntrack":
      for (let i = from; i < body.length - 1; i++)
        if (body[i] === "--ctstate" || body[i] === "--state") {
          body[i] = "--ctstate";
          if (body[i + 1].includes(","))
            body[i + 1] = body[i + 1]
              .split(",")
              .sort((a, b) => ctOrder(a) - ctOrder(b))
              .join(",");
        }
      return;
    case "recent": {
      const opts = normalizeRecent(body.slice(from), family);
      body.length = from;
      for (const o of opts) body.push(o);
      return;
    }
  }
}

function pushTarget(out: string[], target: string, opts: string[], family: IPFamily): void {
  out.push("-j", target);
  // MARK is kept as --set-xmark V/M, whichever option wrote it.
  const xmark = target === "MARK" && opts.length >= 2 ? xmarkOf(opts[0], opts[1]) : undefined;
  if (xmark) return void out.push("--set-xmark", `0x${xmark[0].toString(16)}/0x${xmark[1].toString(16)}`);
  if (target === "REJECT" && !opts.includes("--reject-with")) {
    out.push("--reject-with", defaultRejectWith(family));
    return;
  }
  for (const o of opts) out.push(o);
}

/**
 * The canonical argument list of a rule (without `-A CHAIN`): header matches first in a fixed
 * order, then matches in their order, then the target. The rule is read by the one parser
 * (rule.ts); the header's slots and the body are filled from its matches.
 */
export function normalizeArgs(args: readonly string[], family: IPFamily): string[] {
  const rule = parseRule(args);
  const header: (string[] | undefined)[] = [undefined, undefined, undefined, undefined, undefined];
  const body: string[] = [];
  for (const m of rule.matches) {
    if (m.module !== "") {
      body.push("-m", m.module);
      const start = body.length;
      for (const o of m.options) pushOption(body, o);
      finishMatch(body, m.module, start, family);
      continue;
    }
    for (const o of m.options) {
      const h = HEADER_SLOT[headerOption(o.name) ?? ""];
      if (h === undefined) {
        pushOption(body, o);
        continue;
      }
      let v = o.values[0];
      if (h <= 1) v = normAddress(v);
      else if (h === 4) v = protocolName(v);
      // What iptables-save leaves out because it matches everything.
      if (!o.negated && ((h <= 1 && (v === "0.0.0.0/0" || v === "::/0")) || (h === 4 && v === "all"))) continue;
      header[h] = o.negated ? ["!", HEADER_FLAG[h], v] : [HEADER_FLAG[h], v];
    }
  }
  const out: string[] = [];
  for (const slot of header) if (slot) for (const t of slot) out.push(t);
  for (const t of body) out.push(t);
  if (rule.target !== undefined) {
    const targetOpts: string[] = [];
    for (const o of rule.targetOptions) {
      if (o.name !== "") targetOpts.push(o.name);
      for (const v of o.values) targetOpts.push(v);
    }
    if (rule.goto) out.push("-g", rule.target, ...targetOpts);
    else pushTarget(out, rule.target, targetOpts, family);
  }
  return out;
}

/** An option as tokens: `! --name values…`, port options under their short names. */
function pushOption(body: string[], o: MatchOption): void {
  if (o.negated) body.push("!");
  body.push(o.name === "--destination-port" ? "--dport" : o.name === "--source-port" ? "--sport" : o.name);
  for (const v of o.values) body.push(v);
}

/** The canonical rule as one line, `-A CHAIN …`, with arguments quoted as iptables-save does. */
export function normalizeRule(chain: string, args: readonly string[], family: IPFamily): string {
  const a = normalizeArgs(args, family);
  // join() gives one flat string: compared many times, a rope of += pieces costs more.
  const parts = ["-A", chain];
  for (let i = 0; i < a.length; i++) {
    const t = a[i];
    parts.push(a[i - 1] === "--comment" || needsQuotes(t) ? quoted(t) : t);
  }
  return parts.join(" ");
}

// The shapes most of kip's own rules take (SEP masquerade and DNAT, SVC/SVL dispatch), with and
// without comments (large-cluster mode). Turned into the canonical line by one regex each
// instead of tokenising: a diff normalises hundreds of thousands of them. Anything else, or
// anything with a quote or backslash inside, takes the general path.
const SEP_MASQ = /^-A (\S+)( -m comment --comment ([^\s"\\]+))? -s ([0-9a-f.:]+) -j KUBE-MARK-MASQ$/;
const SEP_DNAT =
  /^-A (\S+)( -m comment --comment ([^\s"\\]+))? -m (tcp|udp|sctp) -p \4 -j DNAT --to-destination (\S+)$/;
const DISPATCH =
  /^-A (\S+)( -m comment --comment "([^"\\]*)")?( -m statistic --mode random --probability ([0-9.]+))? -j (KUBE-\S+)$/;

const PLAIN_V4_ONLY = new RegExp(`^${OCTET}\\.${OCTET}\\.${OCTET}\\.${OCTET}$`);
const DIGITS_DOT = /^[0-9.]+$/;
const MASQ_TAIL = " -j KUBE-MARK-MASQ";
const STATISTIC = " -m statistic --mode random --probability ";
const probabilities = new Map<string, string>();

/**
 * The three shapes of a large cluster's rules (no comments: 95% of them at 10k Services), by
 * slicing instead of a regex: no match arrays, and an already canonical line comes back as
 * it is. undefined: not one of them.
 */
function largeClusterLine(line: string): string | undefined {
  const sp = line.indexOf(" ", 3);
  if (sp < 4 || line.includes("\t")) return undefined;
  // -A SEP -s IP -j KUBE-MARK-MASQ → the address gains /32.
  if (line.startsWith(" -s ", sp) && line.endsWith(MASQ_TAIL)) {
    const end = line.length - MASQ_TAIL.length;
    return PLAIN_V4_ONLY.test(line.slice(sp + 4, end)) ? `${line.slice(0, end)}/32${MASQ_TAIL}` : undefined;
  }
  // -A SEP -m tcp -p tcp -j DNAT --to-destination IP:PORT → -p first.
  for (const proto of ["tcp", "udp", "sctp"]) {
    const shape = ` -m ${proto} -p ${proto} -j DNAT --to-destination `;
    if (!line.startsWith(shape, sp)) continue;
    const to = line.slice(sp + shape.length);
    if (to === "" || to.includes(" ")) return undefined;
    return `${line.slice(0, sp)} -p ${proto} -m ${proto} -j DNAT --to-destination ${to}`;
  }
  // -A SVC [-m statistic --mode random --probability P] -j KUBE-… → P as the kernel keeps it.
  let at = sp;
  let p: string | undefined;
  if (line.startsWith(STATISTIC, sp)) {
    const pEnd = line.indexOf(" ", sp + STATISTIC.length);
    if (pEnd < 0) return undefined;
    p = line.slice(sp + STATISTIC.length, pEnd);
    if (!DIGITS_DOT.test(p)) return undefined;
    at = pEnd;
  }
  if (!line.startsWith(" -j KUBE-", at) || line.length === at + 9 || line.indexOf(" ", at + 4) >= 0) return undefined;
  if (p === undefined) return line;
  let kp = probabilities.get(p);
  if (kp === undefined) {
    kp = kernelProbability(p);
    if (probabilities.size < 10_000) probabilities.set(p, kp);
  }
  return `${line.slice(0, sp + STATISTIC.length)}${kp}${line.slice(at)}`;
}

/** normalizeRule of a whole `-A CHAIN …` line. */
export function normalizeLine(line: string, family: IPFamily): string {
  if (!line.includes("--comment")) {
    const fast = largeClusterLine(line);
    if (fast !== undefined) return fast;
  }
  // Each shape is tried only where its ending fits: three regexes per line cost more than one.
  let m = line.endsWith(" -j KUBE-MARK-MASQ") ? SEP_MASQ.exec(line) : null;
  if (m) {
    const addr = normAddress(m[4]);
    return m[2]
      ? `-A ${m[1]} -s ${addr} -m comment --comment "${m[3]}" -j KUBE-MARK-MASQ`
      : `-A ${m[1]} -s ${addr} -j KUBE-MARK-MASQ`;
  }
  m = line.includes(" -j DNAT ") ? SEP_DNAT.exec(line) : null;
  if (m) {
    const cmt = m[2] ? ` -m comment --comment "${m[3]}"` : "";
    return `-A ${m[1]} -p ${m[4]}${cmt} -m ${m[4]} -j DNAT --to-destination ${m[5]}`;
  }
  m = DISPATCH.exec(line);
  if (m) {
    const cmt = m[2] ? ` -m comment --comment "${m[3]}"` : "";
    const stat = m[4] ? ` -m statistic --mode random --probability ${kernelProbability(m[5])}` : "";
    return `-A ${m[1]}${cmt}${stat} -j ${m[6]}`;
  }
  const sp = line.indexOf(" ", 3);
  const args = tokenize(line.slice(sp + 1)) ?? [];
  return normalizeRule(line.slice(3, sp), args, family);
}
