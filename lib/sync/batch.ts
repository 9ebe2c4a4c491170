/**
 * A ruleset as several iptables-restore inputs, for the nft backend, where one large
 * `--noflush` transaction is super-linear (pitfalls: 2k Services × 10 endpoints take 26 s in one
 * transaction, 2.7 s in ten). Batches go in an order that keeps every intermediate state whole:
 * a chain is written (declared and filled in one batch) before anything new jumps to it, and
 * the switch-over of the entry chains (nat KUBE-SERVICES, KUBE-NODEPORTS, and the filter
 * table) is the last batch. Stale chains are emptied, then deleted, after it.
 */
import { ENTRY_CHAINS, KUBE_MARK_MASQ, KUBE_POSTROUTING, serviceChainKind } from "../proxy/chains.ts";
import { type Ruleset, type TableName, type TableRules, toRestore, writeTable } from "../proxy/ruleset.ts";

export interface BatchOptions {
  /** Most chains per batch. */
  chains: number;
  /** Most rule lines per batch. */
  rules: number;
  /** Batch only above this many nat chains or rules (default BATCH_THRESHOLD). */
  threshold?: number;
}

/**
 * Measured on iptables-nft 1.8.9 here, loading 10k Services × 10 endpoints (320k nat rules)
 * into an empty table: about 2000 rules per restore is the sweet spot (16.4 s in 158
 * restores); 8000 rules per restore took 26.9 s, 20000 took 62.3 s, 500 took 29.6 s. Each
 * --noflush restore pays for the table it lands in, and for its own size super-linearly.
 */
export const DEFAULT_BATCH: BatchOptions = { chains: 2000, rules: 2000 };

/** Below this many nat rules one transaction is cheap enough: no batches. */
export const BATCH_THRESHOLD = 10_000;

const ENTRY: ReadonlySet<string> = new Set(ENTRY_CHAINS);

/** Stage of a nat chain: what it jumps to must be written in an earlier stage. */
function stage(chain: string): number {
  if (chain === KUBE_MARK_MASQ || chain === KUBE_POSTROUTING) return 0;
  switch (serviceChainKind(chain)) {
    case "SEP":
      return 1;
    case "SVC":
    case "SVL":
      return 2;
    case "EXT":
      return 3;
    case "FW":
      return 4;
  }
  if (ENTRY.has(chain)) return 6;
  return 5; // anything else kube-proxy might add: before the switch-over
}

function tx(table: TableName, chains: string[], rules: string[]): string {
  return writeTable(table, { chains, rules });
}

/** Whether a ruleset is worth splitting at all. */
export function needsBatches(rs: Pick<Ruleset, "nat">, o: BatchOptions = DEFAULT_BATCH): boolean {
  const threshold = o.threshold ?? BATCH_THRESHOLD;
  return rs.nat.chains.length > threshold || rs.nat.rules.length > threshold;
}

/** The restore inputs, in order. A small ruleset comes back as one input. */
export function batchRestore(rs: Pick<Ruleset, "filter" | "nat">, o: BatchOptions = DEFAULT_BATCH): string[] {
  if (!needsBatches(rs, o)) return [toRestore(rs)];
  const nat: TableRules = rs.nat;
  // Rules per declared chain, in order; -X lines for stale chains.
  const rulesOf = new Map<string, string[]>();
  const stale: string[] = [];
  for (const r of nat.rules) {
    const sp = r.indexOf(" ", 3);
    const chain = r.slice(3, sp < 0 ? undefined : sp);
    if (r.startsWith("-X ")) {
      stale.push(chain);
      continue;
    }
    const list = rulesOf.get(chain);
    if (list) list.push(r);
    else rulesOf.set(chain, [r]);
  }
  const staleSet = new Set(stale);
  const stages: string[][] = [[], [], [], [], [], [], []];
  for (const c of nat.chains) if (!staleSet.has(c)) stages[stage(c)].push(c);

  const out: string[] = [];
  let chains: string[] = [];
  let rules: string[] = [];
  const flush = () => {
    if (chains.length > 0) out.push(tx("nat", chains, rules));
    chains = [];
    rules = [];
  };
  for (let s = 0; s < 6; s++) {
    for (const c of stages[s]) {
      const rs = rulesOf.get(c) ?? [];
      if (chains.length >= o.chains || (rules.length > 0 && rules.length + rs.length > o.rules)) flush();
      chains.push(c);
      for (const r of rs) rules.push(r);
    }
    flush(); // a stage never shares a batch with the next: its chains are whole first
  }
  // The switch-over: filter and the nat entry chains together, in one call (two commits).
  const entry = stages[6];
  const entryRules = entry.flatMap((c) => rulesOf.get(c) ?? []);
  out.push(tx("filter", rs.filter.chains, rs.filter.rules) + tx("nat", entry, entryRules));
  // Stale chains: nothing outside them jumps in any more; empty them all, then delete.
  for (let i = 0; i < stale.length; i += o.chains) out.push(tx("nat", stale.slice(i, i + o.chains), []));
  for (let i = 0; i < stale.length; i += o.chains)
    out.push(
      tx(
        "nat",
        [],
        stale.slice(i, i + o.chains).map((c) => `-X ${c}`),
      ),
    );
  return out;
}
