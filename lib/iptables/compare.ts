/**
 * Desired rules vs live rules, over what one program owns only: its chains in filter and nat,
 * and its jump rules in the built-in chains (spec §3.1). Both sides are normalised first
 * (normalize.ts), so iptables-save's rewriting is not drift. What that program owns is handed
 * in (ChainOwner): this module knows no chain but the built-in ones. lib/kube_iptables.ts
 * hands it kube-proxy's.
 */
import { structuredPatch } from "diff";
import type { IPFamily } from "../model/ip.ts";
import { plural } from "../util/text.ts";
import { normalizeLine, normalizeRule } from "./normalize.ts";
import { ruleTarget } from "./rule.ts";
import { BUILTIN_CHAINS, type SaveDump, type SavedRule } from "./save_parser.ts";

/** A jump rule the owner keeps in a built-in chain: the arguments after `-A <from>`. */
export interface OwnedJump {
  table: string;
  from: string;
  args: readonly string[];
}

/** What compare must be told of the program whose rules it compares. */
export interface ChainOwner {
  /** Its name, in patch labels: `filter/INPUT (${owner.name} jumps)`. */
  name: string;
  /** Chains declared in every restore: one on the node is compared even when desired lacks it. */
  fixedChains: Readonly<Record<"filter" | "nat", readonly string[]>>;
  /**
   * Chains of its kind, its neighbours' included (kube-proxy: every KUBE-* chain): a desired
   * chain outside it is not compared.
   */
  isKindred(chain: string): boolean;
  /**
   * Chains it creates per object and deletes when stale: one on the node that desired lacks is
   * drift ("extra"). Each is also isKindred.
   */
  collects(chain: string): boolean;
  /** Its jump rules from the built-in chains (compared with `jumps`). */
  jumps: readonly OwnedJump[];
}

/** One chain that differs between the live and the desired rules. */
export interface ChainDiff {
  /** The chain's table. */
  table: "filter" | "nat";
  /** An owned chain, or a built-in chain (the owner's jump rules only). */
  chain: string;
  /** `missing`: desired has it, live does not; `extra`: the reverse; `changed`: both, with other rules. */
  status: "missing" | "extra" | "changed";
  /** Rules only on the desired side (would be added). */
  added: string[];
  /** Rules only on the live side (would be removed). */
  removed: string[];
  /** Unified diff (live → desired) of the chain's rules. */
  patch: string;
}

/** Counts over every chain that differs. */
export interface DiffSummary {
  /** Chains desired has and live lacks. */
  missing: number;
  /** Chains live has and desired lacks (stale service chains). */
  extra: number;
  /** Chains on both sides with different rules. */
  changed: number;
  /** Rules only on the desired side. */
  rulesAdded: number;
  /** Rules only on the live side. */
  rulesRemoved: number;
}

/** What a comparison found: the chains that differ, and counts. No chains: no drift. */
export interface DiffResult {
  /** The family of both dumps. */
  family: IPFamily;
  /** Each chain that differs, sorted by table, then by name. */
  chains: ChainDiff[];
  /** The counts. */
  summary: DiffSummary;
}

export interface CompareOptions {
  family: IPFamily;
  /** Whose chains and jump rules are compared. */
  owner: ChainOwner;
  /** Compare the owner's jump rules in the built-in chains (off for two renders). */
  jumps: boolean;
  oldLabel?: string;
  newLabel?: string;
}

/** One table's rules by chain: the declared chains in order, each with its `-A` rules. */
export interface ChainRules<V> {
  chains: Map<string, V[]>;
  /** Rules of chains the table does not declare (a hand-made dump; never the engine's). */
  undeclared: Map<string, V[]>;
}

/**
 * The desired side, normalised once: per table, its declared chains (in order), each with its
 * `-A` rules in canonical form. Made straight from the engine's rule lines, it holds one
 * canonical string per rule and nothing else: the caller can drop the engine's lines after.
 */
export interface DesiredTables {
  tables: Map<string, ChainRules<string>>;
}

/**
 * Group rules by chain in one pass. Rules of a chain come one after another (in the engine's
 * output and in iptables-save's), so the last chain's list is kept at hand: at 10k Services a
 * map lookup per rule was most of the grouping's cost.
 */
function byChain<R, V>(
  declared: Iterable<string>,
  rules: readonly R[],
  chainOf: (r: R) => string | undefined,
  toValue: (r: R) => V,
): ChainRules<V> {
  const chains = new Map<string, V[]>();
  for (const c of declared) if (!chains.has(c)) chains.set(c, []);
  const undeclared = new Map<string, V[]>();
  let lastChain = "";
  let last: V[] | undefined;
  for (const r of rules) {
    const chain = chainOf(r);
    if (chain === undefined) continue;
    if (chain !== lastChain || !last) {
      lastChain = chain;
      last = chains.get(chain) ?? undeclared.get(chain);
      if (!last) undeclared.set(chain, (last = []));
    }
    last.push(toValue(r));
  }
  return { chains, undeclared };
}

const lineChain = (line: string) => {
  if (!line.startsWith("-A ")) return undefined; // -X: chains this ruleset deletes
  const sp = line.indexOf(" ", 3);
  return sp < 0 ? line.slice(3) : line.slice(3, sp);
};
const appendOnly = (r: SavedRule) => (r.op === "-A" ? r.chain : undefined);

/** Desired tables from the engine's output (`-A CHAIN …` lines per table), normalised. */
export function normalizeDesired(
  tables: Record<string, { chains: readonly string[]; rules: readonly string[] }>,
  family: IPFamily,
): DesiredTables {
  const out: DesiredTables = { tables: new Map() };
  for (const [name, t] of Object.entries(tables))
    out.tables.set(
      name,
      byChain(t.chains, t.rules, lineChain, (line) => normalizeLine(line, family)),
    );
  return out;
}

/** A parsed dump as desired tables (two renders compared, tests). */
function desiredOfDump(d: SaveDump, family: IPFamily): DesiredTables {
  const out: DesiredTables = { tables: new Map() };
  for (const [name, t] of d.tables)
    out.tables.set(
      name,
      byChain(t.chains.keys(), t.rules, appendOnly, (r) => normalizeLine(r.text, family)),
    );
  return out;
}

const NO_RULES: readonly never[] = [];

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

/**
 * Compare two dumps; `old` is the live side (or --from), `desired` the new one, parsed or
 * already normalised (normalizeDesired).
 */
export function compareDumps(old: SaveDump, desired: SaveDump | DesiredTables, o: CompareOptions): DiffResult {
  // The chains a settled dump let go are equal to those of the rules it was settled against,
  // and no others: against any other rules it cannot be compared.
  if (old.settle && old.settle.against !== desired)
    throw new Error("the live dump was settled against other desired rules than those it is compared with");
  const wanted = "errors" in desired ? desiredOfDump(desired, o.family) : desired;
  const chains: ChainDiff[] = [];
  for (const table of ["filter", "nat"] as const) {
    const d = wanted.tables.get(table);
    const l = old.tables.get(table);
    const have: ChainRules<SavedRule> = l
      ? byChain(l.chains.keys(), l.rules, appendOnly, (r) => r)
      : { chains: new Map(), undeclared: new Map() };
    const liveRules = (chain: string) => have.chains.get(chain) ?? have.undeclared.get(chain) ?? NO_RULES;
    /** One owned chain: `want` is undefined when desired does not declare it. */
    const visit = (chain: string, declared: string[] | undefined, live: SavedRule[] | undefined) => {
      const inDesired = declared !== undefined;
      const inLive = live !== undefined;
      if (!inDesired && !inLive) return;
      const want = declared ?? d?.undeclared.get(chain) ?? [];
      const rules = live ?? have.undeclared.get(chain) ?? NO_RULES;
      // The live side is iptables-save output, whose lines are already in canonical form as a
      // rule: compared as written first, and normalised only where that finds a difference.
      let same = rules.length === want.length;
      for (let i = 0; same && i < rules.length; i++) same = rules[i].text === want[i];
      if (same && inDesired && inLive) return;
      const haveLines = same ? want : rules.map((r) => normalizeRule(r.chain, r.args, o.family));
      if (inDesired && inLive && sameLines(want, haveLines)) return;
      // A chain that appears or goes away shows its declaration too, so an empty one is not
      // a bare pair of ---/+++ headers.
      const decl = `:${chain} - [0:0]`;
      chains.push({
        table,
        chain,
        status: !inLive ? "missing" : !inDesired ? "extra" : "changed",
        added: minus(want, haveLines),
        removed: minus(haveLines, want),
        patch: !inLive
          ? patchOf(`${table}/${chain}`, [], [decl, ...want], o)
          : !inDesired
            ? patchOf(`${table}/${chain}`, [decl, ...haveLines], [], o)
            : patchOf(`${table}/${chain}`, haveLines, want, o),
      });
    };
    // What the owner owns: its fixed chains, the chains desired declares, and stale collected
    // chains on the node (kube-proxy: KUBE-FIREWALL, kubelet's too, only where desired has it).
    const owner = o.owner;
    for (const c of owner.fixedChains[table]) if (!d?.chains.has(c)) visit(c, undefined, have.chains.get(c));
    let matched = 0;
    const visitDesired = (c: string, want: string[]) => {
      if (!owner.isKindred(c)) return;
      const live = have.chains.get(c);
      if (live) matched++;
      visit(c, want, live);
    };
    // A settled dump (SaveDump.settle) holds neither the declarations nor the rules of the
    // chains the parser found equal while reading: only the others are looked at, and a
    // settled chain is in neither `matched` nor `have`.
    const unsettled = old.settle?.unsettled.get(table);
    if (unsettled) {
      for (const c of unsettled) {
        const want = d?.chains.get(c);
        if (want) visitDesired(c, want);
      }
    } else for (const [c, want] of d?.chains ?? []) visitDesired(c, want);
    // Every live kindred chain matched a desired one (the usual case): no stale chain to look for.
    let liveKindred = 0;
    for (const c of have.chains.keys()) if (owner.isKindred(c)) liveKindred++;
    if (matched < liveKindred)
      for (const [c, live] of have.chains) if (!d?.chains.has(c) && owner.collects(c)) visit(c, undefined, live);
    if (!o.jumps) continue;
    // The owner's jump rules: it only ensures they exist, so position is not drift.
    for (const from of [...BUILTIN_CHAINS].sort()) {
      const want = owner.jumps
        .filter((j) => j.table === table && j.from === from)
        .map((j) => normalizeRule(from, j.args, o.family));
      const targets = new Set(owner.jumps.filter((j) => j.table === table).map((j) => ruleTarget(j.args)));
      const have = liveRules(from)
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
        patch: patchOf(`${table}/${from} (${owner.name} jumps)`, [...have].sort(), [...want].sort(), o),
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
  return `${r.family}: ${plural(s.missing, "chain")} missing, ${s.extra} extra, ${s.changed} changed; rules +${s.rulesAdded} -${s.rulesRemoved}`;
}
