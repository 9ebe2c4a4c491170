/**
 * One canonical form for a rule, whether it comes from kip's restore input or from either
 * backend's iptables-save, which rewrites rules: `-p`/`-s`/`-d` move to the front, addresses
 * gain `/32`, probabilities come back as the kernel stored them (`0.33333333349`), MARK
 * becomes `--set-xmark`, `recent` gains its defaults, REJECT its `--reject-with`, comments are
 * always quoted. Equal canonical text = the same rule in the kernel.
 */
import { type IPFamily, parseCIDR, parseIP } from "../model/ip.ts";
import { quoteArg } from "./save_parser.ts";

const HEADER: Record<string, string> = {
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
};
const HEADER_ORDER = ["-s", "-d", "-i", "-o", "-p"];

interface Match {
  module: string;
  opts: string[][];
}

function normAddress(v: string): string {
  if (v.includes("/")) {
    const c = parseCIDR(v);
    return c ? c.text : v;
  }
  const ip = parseIP(v);
  if (!ip) return v;
  return `${ip.text}/${ip.family === "IPv4" ? 32 : 128}`;
}

function hex(v: string): string {
  const n = Number(v);
  return Number.isFinite(n) ? `0x${(n >>> 0).toString(16)}` : v;
}

/** `V` or `V/M` with numbers in lowercase hex, the mask left out when it is all ones. */
function markValue(v: string): string {
  const [val, mask] = v.split("/");
  if (mask === undefined || Number(mask) >>> 0 === 0xffffffff) return hex(val);
  return `${hex(val)}/${hex(mask)}`;
}

/** The kernel keeps round(p × 2^31); iptables-save prints that back with 11 decimals. */
export function kernelProbability(p: string): string {
  const n = Number(p);
  if (!Number.isFinite(n)) return p;
  return (Math.round(n * 2 ** 31) / 2 ** 31).toFixed(11);
}

function normalizeMatch(m: Match, family: IPFamily): string[] {
  const out: string[] = ["-m", m.module];
  let opts = m.opts.map((o) => [...o]);
  switch (m.module) {
    case "statistic":
      for (const o of opts) if (o.at(-2) === "--probability") o[o.length - 1] = kernelProbability(o[o.length - 1]);
      break;
    case "mark":
      for (const o of opts) if (o.at(-2) === "--mark") o[o.length - 1] = markValue(o[o.length - 1]);
      break;
    case "conntrack":
      for (const o of opts)
        if (o.at(-2) === "--ctstate" || o.at(-2) === "--state") {
          o[o.length - 2] = "--ctstate";
          o[o.length - 1] = o[o.length - 1].split(",").sort().join(",");
        }
      break;
    case "recent": {
      // Fill the defaults iptables-save prints and put options in one order.
      const has = (name: string) => opts.some((o) => o.includes(name));
      if (!has("--name")) opts.push(["--name", "DEFAULT"]);
      if (!has("--mask"))
        opts.push(["--mask", family === "IPv4" ? "255.255.255.255" : "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"]);
      if (!has("--rsource") && !has("--rdest")) opts.push(["--rsource"]);
      const order = [
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
      const key = (o: string[]) => {
        const i = order.indexOf(o.find((t) => t.startsWith("--")) ?? "");
        return i < 0 ? order.length : i;
      };
      opts = [...opts].sort((a, b) => key(a) - key(b));
      break;
    }
  }
  for (const o of opts) out.push(...o);
  return out;
}

function normalizeTarget(target: string, opts: string[], family: IPFamily): string[] {
  const out = ["-j", target];
  if (target === "MARK") {
    const [flag, v] = opts;
    const n = (x: string) => Number(x) >>> 0;
    const xmark = (val: number, mask: number) => `0x${val.toString(16)}/0x${mask.toString(16)}`;
    if (flag === "--or-mark") return [...out, "--set-xmark", xmark(n(v), n(v))];
    if (flag === "--xor-mark") return [...out, "--set-xmark", xmark(n(v), 0)];
    if (flag === "--and-mark") return [...out, "--set-xmark", xmark(0, ~n(v) >>> 0)];
    if (flag === "--set-mark" || flag === "--set-xmark") {
      const [val, mask] = v.split("/");
      return [...out, "--set-xmark", xmark(n(val), mask === undefined ? 0xffffffff : n(mask))];
    }
  }
  if (target === "REJECT" && !opts.includes("--reject-with"))
    return [...out, "--reject-with", family === "IPv4" ? "icmp-port-unreachable" : "icmp6-port-unreachable"];
  return [...out, ...opts];
}

/**
 * The canonical argument list of a rule (without `-A CHAIN`): header matches first in a fixed
 * order, then matches in their order, then the target.
 */
export function normalizeArgs(args: readonly string[], family: IPFamily): string[] {
  const header = new Map<string, string[]>();
  const matches: Match[] = [];
  let cur: Match | undefined;
  let target: string | undefined;
  const targetOpts: string[] = [];
  let neg = false;
  let proto: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "!") {
      neg = true;
      continue;
    }
    const h = HEADER[a];
    if (h && target === undefined) {
      let v = args[++i] ?? "";
      if (h === "-s" || h === "-d") v = normAddress(v);
      if (h === "-p") proto = v = v.toLowerCase();
      header.set(h, neg ? ["!", h, v] : [h, v]);
      neg = false;
      continue;
    }
    if ((a === "-m" || a === "--match") && target === undefined) {
      cur = { module: args[++i] ?? "", opts: [] };
      matches.push(cur);
      neg = false;
      continue;
    }
    if (a === "-j" || a === "--jump" || a === "-g" || a === "--goto") {
      target = args[++i] ?? "";
      if (a === "-g" || a === "--goto") target = `goto:${target}`;
      continue;
    }
    if (a === "-c" && target === undefined) {
      i += 2; // per-rule counters
      continue;
    }
    if (target !== undefined) {
      targetOpts.push(a);
      continue;
    }
    if (a.startsWith("-")) {
      // An option of the current match; `--dport` after `-p tcp` without `-m tcp` belongs to
      // the protocol's implicit match, as iptables loads it.
      if (!cur && proto && ["tcp", "udp", "sctp"].includes(proto)) {
        cur = { module: proto, opts: [] };
        matches.push(cur);
      }
      const opt = neg ? ["!", a] : [a];
      neg = false;
      while (i + 1 < args.length && !args[i + 1].startsWith("-") && args[i + 1] !== "!") opt.push(args[++i]);
      if (cur) cur.opts.push(opt);
      else matches.push({ module: "", opts: [opt] });
      continue;
    }
    // A stray value: keep it where it stands.
    if (cur) cur.opts.push([a]);
  }
  const out: string[] = [];
  for (const h of HEADER_ORDER) out.push(...(header.get(h) ?? []));
  for (const m of matches) out.push(...(m.module ? normalizeMatch(m, family) : m.opts.flat()));
  if (target !== undefined) {
    if (target.startsWith("goto:")) out.push("-g", target.slice(5), ...targetOpts);
    else out.push(...normalizeTarget(target, targetOpts, family));
  }
  return out;
}

/** The canonical rule as one line, `-A CHAIN …`, with arguments quoted as iptables-save does. */
export function normalizeRule(chain: string, args: readonly string[], family: IPFamily): string {
  return [
    "-A",
    chain,
    ...normalizeArgs(args, family).map((a, i, all) =>
      all[i - 1] === "--comment" ? `"${a.replace(/[\\"]/g, (c) => `\\${c}`)}"` : quoteArg(a),
    ),
  ].join(" ");
}
