/**
 * One iptables rule, as iptables-save writes it and iptables-restore reads it: one tokenizer
 * (double quotes group, a backslash inside quotes escapes the next character), one quoting to
 * write an argument back, and one parsed shape (`parseRule`) that every reader shares: the
 * normaliser, the packet walker (lib/explain), the ruleset's JSON form and the tests' tracer.
 */
import { protocolName } from "./facts.ts";

/** Split arguments the way iptables-restore does: double quotes group, backslash escapes. */
export function tokenize(s: string): string[] | undefined {
  // Most lines: plain tokens and at most a few simple quoted comments. Slices, not characters.
  const out: string[] = [];
  const n = s.length;
  let i = 0;
  while (i < n) {
    let c = s.charCodeAt(i);
    if (c === 32 || c === 9) {
      i++;
      continue;
    }
    if (c === 34 /* " */) {
      const end = s.indexOf('"', i + 1);
      if (end < 0) return undefined;
      const body = s.slice(i + 1, end);
      // A backslash inside quotes escapes the next character: take the slow path.
      if (body.includes("\\")) return tokenizeSlow(s);
      const after = s.charCodeAt(end + 1);
      if (end + 1 < n && after !== 32 && after !== 9) return tokenizeSlow(s);
      out.push(body);
      i = end + 1;
      continue;
    }
    let j = i;
    while (j < n) {
      c = s.charCodeAt(j);
      if (c === 32 || c === 9) break;
      if (c === 34) return tokenizeSlow(s);
      j++;
    }
    out.push(s.slice(i, j));
    i = j;
  }
  return out;
}

function tokenizeSlow(s: string): string[] | undefined {
  const out: string[] = [];
  let i = 0;
  const n = s.length;
  while (i < n) {
    while (i < n && (s[i] === " " || s[i] === "\t")) i++;
    if (i >= n) break;
    let arg = "";
    let quoted = false;
    while (i < n && (quoted || (s[i] !== " " && s[i] !== "\t"))) {
      const c = s[i];
      if (c === "\\" && i + 1 < n && quoted) {
        arg += s[i + 1];
        i += 2;
      } else if (c === '"') {
        quoted = !quoted;
        i++;
      } else {
        arg += c;
        i++;
      }
    }
    if (quoted) return undefined;
    out.push(arg);
  }
  return out;
}

/** Empty, or holding white space, a quote or a backslash: such an argument is written quoted. */
export function needsQuotes(t: string): boolean {
  if (t.length === 0) return true;
  for (let i = 0; i < t.length; i++) {
    const c = t.charCodeAt(i);
    if (c === 32 || c === 34 || c === 92 || c === 39 || (c >= 9 && c <= 13)) return true;
    if (c > 127 && /\s/.test(t[i])) return true;
  }
  return false;
}

/** An argument in double quotes, `"` and `\` escaped with a backslash (as iptables-save does). */
export function quoted(t: string): string {
  return `"${t.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

/** Quote an argument for restore text when it needs it. */
export function quoteArg(a: string): string {
  return needsQuotes(a) ? quoted(a) : a;
}

/** The chain a rule jumps or goes to (`-j X` / `-g X`), or undefined. */
export function ruleTarget(args: readonly string[]): string | undefined {
  for (let i = 0; i < args.length - 1; i++) if (args[i] === "-j" || args[i] === "-g") return args[i + 1];
  return undefined;
}

// ---------------------------------------------------------------------------------------
// The parsed rule

/** One option of a match: `--dport 80`, `! -s 10.0.0.0/8`, `--tcp-flags SYN,ACK SYN`. */
export interface MatchOption {
  /** As written (`--destination-port` stays so; see HEADER_ALIASES for the header's). */
  name: string;
  values: string[];
  negated: boolean;
  /** Index of its match in `ParsedRule.matches`. */
  match: number;
}

/** A `-m module` with its options, or the rule header's own options (module ""). */
export interface Match {
  /** `tcp`, `comment`, `set`…; "" for the header (`-s -d -i -o -p -f`). */
  module: string;
  /** Loaded by `-p tcp` without `-m tcp`, as iptables does for the protocol's options. */
  implicit: boolean;
  options: MatchOption[];
}

/** A target option: `--to-destination 10.0.0.1:80`, `--random-fully`. */
export interface TargetOption {
  /** "" for values before any option (not something iptables writes). */
  name: string;
  values: string[];
}

export interface ParsedRule {
  /** `-A CHAIN` when a whole line was parsed. */
  header?: { command: string; chain: string };
  /**
   * The header's options (each in a match of module "") and the `-m` matches, in the order
   * they were written; the header gets one match per option so the order is kept.
   */
  matches: Match[];
  /** Every match option in the order written, across matches. */
  options: MatchOption[];
  target?: string;
  /** `-g` rather than `-j`. */
  goto: boolean;
  targetOptions: TargetOption[];
  /** `-c PACKETS BYTES`. */
  counters?: [string, string];
}

/** The header's options in long and short form → the short form; their values (all one but -f). */
export const HEADER_ALIASES: Record<string, string> = {
  "-s": "-s",
  "--source": "-s",
  "--src": "-s",
  "-d": "-d",
  "--destination": "-d",
  "--dst": "-d",
  "-i": "-i",
  "--in-interface": "-i",
  "-o": "-o",
  "--out-interface": "-o",
  "-p": "-p",
  "--protocol": "-p",
  "-f": "-f",
  "--fragment": "-f",
};

/** The options of the match modules kip reads, with the number of values each takes. */
export const MODULE_OPTIONS: Record<string, Record<string, number>> = {
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

// The tables as Maps: prototype-safe (an option named `constructor` is no key of theirs) and fast.
const ARITY = new Map(Object.entries(MODULE_OPTIONS).map(([m, o]) => [m, new Map(Object.entries(o))]));
const HEADER = new Map(Object.entries(HEADER_ALIASES));

/** Whether kip knows the options of `module`. */
export function knownModule(module: string): boolean {
  return ARITY.has(module);
}

/** Whether `module` (one kip reads) takes `option`. */
export function moduleKnows(module: string, option: string): boolean {
  return ARITY.get(module)?.has(option) === true;
}

/** The short name of a header option (`--source` → `-s`), undefined for other options. */
export function headerOption(name: string): string | undefined {
  return HEADER.get(name);
}

/**
 * A rule's arguments (after `-A CHAIN`, or the whole line when it starts with a command) in
 * one shape. As in iptables, an option belongs to the latest loaded module that takes it, and
 * `-p tcp --dport 80` loads the protocol's module by itself. An option no loaded module is
 * known to take goes to the latest module kip does not know (else the latest one), with the
 * values up to the next option: nothing is dropped, so the arguments can be written back.
 */
export function parseRule(args: readonly string[]): ParsedRule {
  const rule: ParsedRule = { matches: [], options: [], goto: false, targetOptions: [] };
  const matches = rule.matches;
  let i = 0;
  if ((args[0] === "-A" || args[0] === "-I" || args[0] === "-D") && args.length >= 2) {
    rule.header = { command: args[0], chain: args[1] };
    i = 2;
  }
  // Matches loaded with -m, in order (the latest last).
  const loaded: Match[] = [];
  let implicit: string | undefined;
  let implicitMatch: Match | undefined;
  let neg = false;
  const add = (m: Match, name: string, values: string[], negated: boolean) => {
    const o: MatchOption = { name, values, negated, match: matches.indexOf(m) };
    m.options.push(o);
    rule.options.push(o);
  };
  const n = args.length;
  for (; i < n; i++) {
    const t = args[i];
    if (t === "!") {
      neg = true;
      continue;
    }
    const not = neg;
    neg = false;
    if (t === "-j" || t === "--jump" || t === "-g" || t === "--goto") {
      rule.target = args[++i] ?? "";
      rule.goto = t === "-g" || t === "--goto";
      for (i++; i < n; i++) {
        const a = args[i];
        const last = rule.targetOptions[rule.targetOptions.length - 1];
        if (a.startsWith("--")) rule.targetOptions.push({ name: a, values: [] });
        else if (last) last.values.push(a);
        else rule.targetOptions.push({ name: "", values: [a] });
      }
      break;
    }
    if (t === "-c" || t === "--set-counters") {
      rule.counters = [args[i + 1] ?? "", args[i + 2] ?? ""];
      i += 2;
      continue;
    }
    if (t === "-m" || t === "--match") {
      const m: Match = { module: args[++i] ?? "", implicit: false, options: [] };
      matches.push(m);
      loaded.push(m);
      continue;
    }
    const h = HEADER.get(t);
    if (h !== undefined) {
      const m: Match = { module: "", implicit: false, options: [] };
      matches.push(m);
      const values = h === "-f" ? [] : [args[++i] ?? ""];
      add(m, t, values, not);
      if (h === "-p" && !not) implicit = protocolName(values[0]);
      continue;
    }
    let at: Match | undefined;
    let arity: number | undefined;
    for (let k = loaded.length - 1; k >= 0 && arity === undefined; k--) {
      arity = ARITY.get(loaded[k].module)?.get(t);
      if (arity !== undefined) at = loaded[k];
    }
    if (arity === undefined && implicit !== undefined) {
      arity = ARITY.get(implicit)?.get(t);
      if (arity !== undefined) {
        if (!implicitMatch) matches.push((implicitMatch = { module: implicit, implicit: true, options: [] }));
        at = implicitMatch;
      }
    }
    if (at !== undefined && arity !== undefined) {
      add(at, t, args.slice(i + 1, i + 1 + arity), not);
      i += arity;
      continue;
    }
    // Not an option kip knows: its values run up to the next option.
    let end = i + 1;
    while (end < n && !args[end].startsWith("-") && args[end] !== "!") end++;
    at = loaded.findLast((m) => !ARITY.has(m.module)) ?? loaded[loaded.length - 1];
    if (at === undefined) matches.push((at = { module: "", implicit: false, options: [] }));
    add(at, t, args.slice(i + 1, end), not);
    i = end - 1;
  }
  return rule;
}

/** The values of a target option (`--to-destination`), or undefined when not given. */
export function targetOption(rule: ParsedRule, name: string): string[] | undefined {
  return rule.targetOptions.find((o) => o.name === name)?.values;
}

/** The comment of a rule (`-m comment --comment X`), or undefined. */
export function ruleComment(rule: ParsedRule): string | undefined {
  return rule.options.find((o) => o.name === "--comment" && rule.matches[o.match].module === "comment")?.values[0];
}
