/**
 * What each target does to the walk: decide the packet's fate (ACCEPT, DROP, REJECT), change
 * it (MARK, DNAT, MASQUERADE/SNAT) and go on, hand it to another chain, or stop the walk where
 * kip cannot follow. One function per target.
 */

import { applyXmark, defaultRejectWith, MARK_OPTIONS, xmarkOf } from "../iptables/facts.ts";
import { KUBE_NODEPORTS, parseDestinationComment, parseServicePortNameComment } from "../proxy/chains.ts";
import { fraction } from "./prose.ts";
import type { Rule } from "./tables.ts";
import type { Branch, Cell, Compiled, Event, HookCtx, Masquerade, Outcome, State } from "./types.ts";
import { parseDnat } from "./values.ts";
import type { Walker } from "./walker.ts";

/** Targets that change nothing kip follows and never end the walk. */
export const PASSIVE_TARGETS = new Set(["LOG", "NFLOG", "ULOG", "TRACE", "AUDIT"]);

/** A rule whose matches held, about to act. */
export interface TargetCall {
  hook: HookCtx;
  chain: string;
  rule: Rule;
  st: State;
  /** Why its matches held. */
  why: string[];
  /** The chance it is taken (`-m statistic`). */
  chance: number;
  trail: Cell | undefined;
  depth: number;
}

/** What a target function gets: the call, its walker, the state so far and the event maker. */
interface Act {
  w: Walker;
  c: TargetCall;
  comp: Compiled;
  s: State;
  ruleRef: NonNullable<Outcome["decidedBy"]>;
  /** The event of this rule with what its target did, on the trail. */
  ev(action: string): Cell;
  opt(k: string): string | undefined;
}

/** undefined: the target does not apply here (DNAT outside nat…); the walk looks further. */
type TargetFn = (a: Act) => Branch[] | undefined;

const hex = (n: number) => `0x${(n >>> 0).toString(16)}`;

function unknownTarget(a: Act, text: string): Branch[] {
  const { w, c } = a;
  const r = c.rule;
  w.noteUnknown(c.hook.table, c.chain, r, [text]);
  const ev: Event = {
    kind: "unknown",
    table: c.hook.table,
    chain: c.chain,
    rule: r.saved.text,
    line: r.saved.line,
    matches: [text],
    text: "the packet's fate depends on this target",
  };
  return [{ p: 1, st: { ...a.s, decidedBy: a.ruleRef }, end: "unknown", trail: { ev, up: c.trail } }];
}

/** The new mark after a MARK target's options; undefined when they are not ones kip reads. */
function markOp(opts: Map<string, string[]>, mark: number): number | undefined {
  for (const k of MARK_OPTIONS) {
    const v = opts.get(k)?.[0];
    if (v === undefined) continue;
    const xmark = xmarkOf(k, v);
    if (xmark) return applyXmark(mark, xmark);
  }
  return undefined;
}

const TARGETS: Record<string, TargetFn> = {
  ACCEPT: ({ c, s, ruleRef, ev }) => [
    {
      p: 1,
      st: { ...s, ...(c.hook.table === "filter" ? { filterAccept: true } : {}), decidedBy: ruleRef },
      end: "accept",
      trail: ev("ACCEPT"),
    },
  ],
  DROP: ({ s, ruleRef, ev }) => [{ p: 1, st: { ...s, decidedBy: ruleRef }, end: "drop", trail: ev("DROP") }],
  REJECT: ({ w, s, ruleRef, ev, opt }) => {
    const rw = opt("--reject-with") ?? defaultRejectWith(w.host.family);
    return [{ p: 1, st: { ...s, decidedBy: ruleRef, rejectWith: rw }, end: "reject", trail: ev(`REJECT (${rw})`) }];
  },
  RETURN: ({ s, ev }) => [{ p: 1, st: s, end: "return", trail: ev("RETURN to the calling chain") }],
  MARK: (a) => {
    const before = a.s.mark;
    const m = markOp(a.comp.targetOpts, before);
    if (m === undefined) return unknownTarget(a, "MARK with options kip does not read");
    return [{ p: 1, st: { ...a.s, mark: m }, end: "continue", trail: a.ev(`mark ${hex(before)} → ${hex(m)}`) }];
  },
  DNAT: (a) => {
    const { c, s } = a;
    if (c.hook.table !== "nat") return undefined;
    const to = a.opt("--to-destination");
    const parsed = to ? parseDnat(to, s.dport) : undefined;
    if (!parsed) return unknownTarget(a, `DNAT to ${to ?? "?"}: not a single address`);
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
          endpointChain: c.chain.startsWith("KUBE-SEP-") ? c.chain : s.endpointChain,
        },
        end: "accept",
        trail: a.ev(`DNAT: dst ${s.dst}:${s.dport} → ${dnat}`),
      },
    ];
  },
  MASQUERADE: (a) => sourceNat(a, "MASQUERADE"),
  SNAT: (a) => sourceNat(a, "SNAT"),
};

function sourceNat(a: Act, t: "MASQUERADE" | "SNAT"): Branch[] | undefined {
  const { c, s } = a;
  if (c.hook.table !== "nat") return undefined;
  let to: string | undefined;
  if (t === "SNAT") {
    const src = a.opt("--to-source") ?? "";
    to = parseDnat(src, 0)?.ip;
    if (!to) return unknownTarget(a, `SNAT to ${src}: not a single address`);
  } else to = c.hook.oif !== undefined ? a.w.host.route(s.dst)?.src : undefined;
  const m: Masquerade = {
    how: t,
    to,
    dev: c.hook.oif || undefined,
    randomFully: a.comp.targetOpts.has("--random-fully"),
    ...a.ruleRef,
  };
  const as = to ?? `the node's address on the interface towards ${s.dst}`;
  return [
    {
      p: 1,
      st: { ...s, masquerade: m, src: to ?? s.src, ctSnat: true },
      end: "accept",
      trail: a.ev(`${t}: src ${s.src} → ${as}${m.randomFully ? ", source port randomised" : ""}`),
    },
  ];
}

/** The rule's target acting on the walk: the branches that leave it. */
export function runTarget(w: Walker, c: TargetCall): Branch[] {
  const comp = c.rule.compiled;
  const { table } = c.hook;
  const { chain, why, chance } = c;
  const saved = c.rule.saved;
  let s: State = c.st;
  if (comp.recentSet.length > 0) {
    s = { ...s, recentSet: [...s.recentSet, ...comp.recentSet] };
    why.push(`records src ${s.src} in recent ${comp.recentSet.join(", ")}`);
  }
  const comment = comp.comment;
  const svc = comment ? parseDestinationComment(comment)?.servicePortName : undefined;
  if (svc && !s.service) s = { ...s, service: svc };
  if (!s.service && table === "nat" && chain === KUBE_NODEPORTS && comment && parseServicePortNameComment(comment))
    s = { ...s, service: comment };
  const a: Act = {
    w,
    c,
    comp,
    s,
    ruleRef: { table, chain, rule: saved.text, line: saved.line },
    ev: (action) => ({
      ev: {
        kind: "rule",
        table,
        chain,
        rule: saved.text,
        line: saved.line,
        why: chance < 1 ? [...why, `random: taken with chance ${fraction(chance)} at this rule`] : why,
        action,
        ...(chance < 1 ? { chance } : {}),
      },
      up: c.trail,
    }),
    opt: (k) => comp.targetOpts.get(k)?.[0],
  };
  const t = comp.target;
  if (t === undefined) return [{ p: 1, st: s, end: "continue", trail: a.ev("no target: counted, walk goes on") }];
  const done = Object.hasOwn(TARGETS, t) ? TARGETS[t](a) : undefined;
  if (done) return done;
  if (PASSIVE_TARGETS.has(t)) return [{ p: 1, st: s, end: "continue", trail: a.ev(`${t} (logs only)`) }];
  if (!w.tables.tables.get(table)?.has(t)) return unknownTarget(a, `target ${t} is not something kip follows`);
  const entered = a.ev(`${comp.goto ? "goto" : "jump to"} ${t}`);
  return w.runChain(c.hook, t, s, entered, c.depth + 1).map((b) => {
    if (b.end !== "return") return b;
    // The end of a called chain (or RETURN) resumes the caller; after a goto, its caller.
    return comp.goto ? b : { ...b, end: "continue" };
  });
}
