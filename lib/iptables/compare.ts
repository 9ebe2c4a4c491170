/**
 * Desired rules vs live rules, over what kube-proxy owns only: its chains in filter and nat,
 * and its jump rules in the built-in chains (spec §3.1). Both sides are normalised first
 * (normalize.ts), so iptables-save's rewriting is not drift.
 */
import { structuredPatch } from "diff";
import type { IPFamily } from "../model/ip.ts";
import { isServiceChain } from "../proxy/names.ts";
import { JUMP_RULES, jumpRuleArgs } from "./jumps.ts";
import { normalizeLine, normalizeRule } from "./normalize.ts";
import { BUILTIN_CHAINS, ruleTarget, type SaveDump, type SavedRule, type SavedTable } from "./save_parser.ts";

/** Chains kube-proxy declares in every restore, per table (spec §4.1). */
export const FIXED_CHAINS: Record<"filter" | "nat", readonly string[]> = {
  filter: ["KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-FORWARD", "KUBE-NODEPORTS", "KUBE-PROXY-FIREWALL"],
  nat: ["KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ"],
};

export interface ChainDiff {
  table: "filter" | "nat";
  /** A KUBE chain, or a built-in chain (its kube-proxy jump rules only). */
  chain: string;
  status: "missing" | "extra" | "changed";
  /** Rules only on the desired side (would be added). */
  added: string[];
  /** Rules only on the live side (would be removed). */
  removed: string[];
  /** Unified diff (live → desired) of the chain's rules. */
  patch: string;
}

export interface DiffSummary {
  missing: number;
  extra: number;
  changed: number;
  rulesAdded: number;
  rulesRemoved: number;
}

export interface DiffResult {
  family: IPFamily;
  chains: ChainDiff[];
  summary: DiffSummary;
}

export interface CompareOptions {
  family: IPFamily;
  /** Compare kube-proxy's jump rules in the built-in chains (off for two renders). */
  jumps: boolean;
  oldLabel?: string;
  newLabel?: string;
}

/** The chains of a table that kube-proxy owns, given what the desired side declares. */
function ownedChains(table: "filter" | "nat", desired?: SavedTable, live?: SavedTable): string[] {
  const out: string[] = [];
  for (const c of FIXED_CHAINS[table]) if (!desired?.chains.has(c)) out.push(c);
  for (const c of desired?.chains.keys() ?? []) if (c.startsWith("KUBE-")) out.push(c);
  // Stale service chains on the node; KUBE-FIREWALL (kubelet's too) only where desired has it.
  for (const c of live?.chains.keys() ?? []) if (!desired?.chains.has(c) && isServiceChain(c)) out.push(c);
  return out;
}

/** `-A` rules of every chain of a table, grouped in one pass: normalised, or as written. */
function rulesByChain(
  t: SavedTable | undefined,
  family: IPFamily,
  normalize: boolean,
): Map<string, SavedRule[] | string[]> {
  const out = new Map<string, string[]>();
  const raw = new Map<string, SavedRule[]>();
  for (const r of t?.rules ?? []) {
    if (r.op !== "-A") continue;
    if (normalize) {
      const line = normalizeLine(r.text, family);
      const list = out.get(r.chain);
      if (list) list.push(line);
      else out.set(r.chain, [line]);
    } else {
      const list = raw.get(r.chain);
      if (list) list.push(r);
      else raw.set(r.chain, [r]);
    }
  }
  return normalize ? out : raw;
}

const sameLines = (a: readonly string[], b: readonly string[]) =>
  a.length === b.length && a.every((x, i) => x === b[i]);

/** Multiset difference a − b. */
function minus(a: readonly string[], b: readonly string[]): string[] {
  const counts = new Map<string, number>();
  for (const x of b) counts.set(x, (counts.get(x) ?? 0) + 1);
  const out: string[] = [];
  for (const x of a) {
    const n = counts.get(x) ?? 0;
    if (n > 0) counts.set(x, n - 1);
    else out.push(x);
  }
  return out;
}

/** A hunk's range as diff(1) writes it: `-0,0` for an empty side, `-5` for one line. */
function hunkRange(start: number, count: number): string {
  // jsdiff counts an empty side as starting at line 1; diff(1) names the line before it.
  if (count === 0) return `${Math.max(0, start - 1)},0`;
  return count === 1 ? `${start}` : `${start},${count}`;
}

function patchOf(name: string, oldLines: string[], newLines: string[], o: CompareOptions): string {
  const p = structuredPatch(
    `${o.oldLabel ?? "live"} ${name}`,
    `${o.newLabel ?? "desired"} ${name}`,
    oldLines.length ? `${oldLines.join("\n")}\n` : "",
    newLines.length ? `${newLines.join("\n")}\n` : "",
    undefined,
    undefined,
    { context: 3 },
  );
  const out = [`--- ${p.oldFileName}`, `+++ ${p.newFileName}`];
  for (const h of p.hunks)
    out.push(`@@ -${hunkRange(h.oldStart, h.oldLines)} +${hunkRange(h.newStart, h.newLines)} @@`, ...h.lines);
  return out.join("\n");
}

/** Compare two dumps; `old` is the live side (or --from), `desired` the new one. */
export function compareDumps(old: SaveDump, desired: SaveDump, o: CompareOptions): DiffResult {
  const chains: ChainDiff[] = [];
  for (const table of ["filter", "nat"] as const) {
    const d = desired.tables.get(table);
    const l = old.tables.get(table);
    const wantByChain = rulesByChain(d, o.family, true) as Map<string, string[]>;
    // The live side is iptables-save output, whose lines are already in canonical form as a
    // rule: compared as written first, and normalised only where that finds a difference.
    const rawHave = rulesByChain(l, o.family, false) as Map<string, SavedRule[]>;
    const haveOf = (chain: string, want: readonly string[]): string[] => {
      const rules = rawHave.get(chain) ?? [];
      let same = rules.length === want.length;
      for (let i = 0; same && i < rules.length; i++) same = rules[i].text === want[i];
      if (same) return want as string[];
      return rules.map((r) => normalizeRule(r.chain, r.args, o.family));
    };
    for (const chain of ownedChains(table, d, l)) {
      const inDesired = d?.chains.has(chain) ?? false;
      const inLive = l?.chains.has(chain) ?? false;
      if (!inDesired && !inLive) continue;
      const want = wantByChain.get(chain) ?? [];
      const have = haveOf(chain, want);
      if (inDesired && inLive && sameLines(want, have)) continue;
      // A chain that appears or goes away shows its declaration too, so an empty one is not
      // a bare pair of ---/+++ headers.
      const decl = `:${chain} - [0:0]`;
      chains.push({
        table,
        chain,
        status: !inLive ? "missing" : !inDesired ? "extra" : "changed",
        added: minus(want, have),
        removed: minus(have, want),
        patch: !inLive
          ? patchOf(`${table}/${chain}`, [], [decl, ...want], o)
          : !inDesired
            ? patchOf(`${table}/${chain}`, [decl, ...have], [], o)
            : patchOf(`${table}/${chain}`, have, want, o),
      });
    }
    if (!o.jumps) continue;
    // kube-proxy's jump rules: it only ensures they exist, so position is not drift.
    for (const from of [...BUILTIN_CHAINS].sort()) {
      const want = JUMP_RULES.filter((j) => j.table === table && j.from === from).map((j) =>
        normalizeRule(from, jumpRuleArgs(j), o.family),
      );
      const targets = new Set(JUMP_RULES.filter((j) => j.table === table).map((j) => j.to));
      const have = (rawHave.get(from) ?? [])
        .filter((r) => targets.has(ruleTarget(r.args) ?? ""))
        .map((r) => normalizeRule(from, r.args, o.family));
      const added = minus(want, have);
      const removed = minus(have, want);
      if (added.length === 0 && removed.length === 0) continue;
      chains.push({
        table,
        chain: from,
        status: "changed",
        added,
        removed,
        patch: patchOf(`${table}/${from} (kube-proxy jumps)`, [...have].sort(), [...want].sort(), o),
      });
    }
  }
  chains.sort((a, b) =>
    a.table !== b.table ? (a.table < b.table ? -1 : 1) : a.chain < b.chain ? -1 : a.chain > b.chain ? 1 : 0,
  );
  const summary: DiffSummary = { missing: 0, extra: 0, changed: 0, rulesAdded: 0, rulesRemoved: 0 };
  for (const c of chains) {
    summary[c.status]++;
    summary.rulesAdded += c.added.length;
    summary.rulesRemoved += c.removed.length;
  }
  return { family: o.family, chains, summary };
}

export function summaryLine(r: DiffResult): string {
  const s = r.summary;
  if (r.chains.length === 0) return `${r.family}: no drift`;
  return `${r.family}: ${s.missing} chain${s.missing === 1 ? "" : "s"} missing, ${s.extra} extra, ${s.changed} changed; rules +${s.rulesAdded} -${s.rulesRemoved}`;
}
