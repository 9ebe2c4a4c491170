/**
 * Cleanup planning (pure): from one iptables-save dump, the restore input per table that
 * removes the chains the caller names (`removable`: kip's are in lib/kube_iptables.ts) and
 * every rule, anywhere, that jumps to one of them. Nothing else is named in the input, so with
 * `--noflush` every other chain and rule stays as it was.
 */

import { quoteArg, ruleTarget } from "./rule.ts";
import type { SaveDump, SavedRule } from "./save_parser.ts";

/** The tables a plan looks at. */
export const CLEANUP_TABLES = ["nat", "filter", "mangle", "raw"] as const;

/** What cleanup does to one table: the chains it deletes, the jumps to them it removes, and the restore inputs. */
export interface TablePlan {
  /** `nat`, `filter`, `mangle` or `raw`. */
  table: string;
  /** Chains to delete, sorted. */
  chains: string[];
  /** Rules in other chains that jump to one of them. */
  jumps: SavedRule[];
  /** iptables-restore inputs to apply in order (with --noflush); each leaves a consistent table. */
  inputs: string[];
}

export interface CleanupOptions {
  /** Whether a chain of `table` goes (the caller's policy: all KUBE-* chains, or kube-proxy's). */
  removable(table: string, chain: string): boolean;
  /**
   * Chains per restore. Unset: one transaction per table (right for legacy, which re-uploads
   * the whole table per restore). On nft a large `--noflush` transaction is super-linear
   * (pitfalls: 110k chain declarations take 148 s at once, 2.5 s in batches of 5k).
   */
  batchSize?: number;
}

/** The batch size kip uses on the nft backend. */
export const NFT_BATCH = 5000;

export function planCleanup(dump: SaveDump, o: CleanupOptions): TablePlan[] {
  const plans: TablePlan[] = [];
  for (const table of CLEANUP_TABLES) {
    const t = dump.tables.get(table);
    if (!t) continue;
    const chains = [...t.chains.keys()].filter((c) => o.removable(table, c)).sort();
    if (chains.length === 0) continue;
    const doomed = new Set(chains);
    // A rule inside a doomed chain goes with its chain's flush; elsewhere it is deleted
    // by its own text, whatever other arguments it was added with.
    const jumps = t.rules.filter((r) => r.op === "-A" && !doomed.has(r.chain) && doomed.has(ruleTarget(r.args) ?? ""));
    const tx = (lines: string[]) => `*${table}\n${lines.join("\n")}\nCOMMIT\n`;
    const flushes = chains.map((c) => `:${c} - [0:0]`);
    const deletes = jumps.map((r) => ["-D", r.chain, ...r.args.map(quoteArg)].join(" "));
    const drops = chains.map((c) => `-X ${c}`);
    let inputs: string[];
    if (!o.batchSize || chains.length <= o.batchSize) inputs = [tx([...flushes, ...deletes, ...drops])];
    else {
      // First nothing outside jumps in any more; then every doomed chain is emptied; then
      // deleted. Each step is whole on its own, so a failure between steps leaves a working
      // table (unreferenced doomed chains at worst), never a dangling jump.
      inputs = [];
      if (deletes.length > 0) inputs.push(tx(deletes));
      for (let i = 0; i < chains.length; i += o.batchSize) inputs.push(tx(flushes.slice(i, i + o.batchSize)));
      for (let i = 0; i < chains.length; i += o.batchSize) inputs.push(tx(drops.slice(i, i + o.batchSize)));
    }
    plans.push({ table, chains, jumps, inputs });
  }
  return plans;
}
