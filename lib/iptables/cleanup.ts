/**
 * Cleanup planning (pure): from one iptables-save dump, the restore input per table that
 * removes every KUBE-* chain (or, with ownedOnly, just kube-proxy's, spec §14) and every rule,
 * anywhere, that jumps to one of them. Nothing else is named in the input, so with `--noflush`
 * every other chain and rule stays as it was.
 */
import { isServiceChain } from "../proxy/names.ts";
import { quoteArg, ruleTarget, type SaveDump, type SavedRule } from "./save_parser.ts";

export const CLEANUP_TABLES = ["nat", "filter", "mangle", "raw"] as const;

/** What `kube-proxy --cleanup` removes besides service chains (spec §14). */
const KUBE_PROXY_CHAINS: Record<string, readonly string[]> = {
  nat: ["KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ", "KUBE-PROXY-CANARY"],
  filter: [
    "KUBE-SERVICES",
    "KUBE-EXTERNAL-SERVICES",
    "KUBE-FORWARD",
    "KUBE-NODEPORTS",
    "KUBE-PROXY-FIREWALL",
    "KUBE-PROXY-CANARY",
  ],
  mangle: ["KUBE-PROXY-CANARY"],
  raw: [],
};

export interface TablePlan {
  table: string;
  /** Chains to delete, sorted. */
  chains: string[];
  /** Rules in other chains that jump to one of them. */
  jumps: SavedRule[];
  /** The iptables-restore input (use with --noflush). */
  input: string;
}

export interface CleanupOptions {
  /** Only what kube-proxy owns: leaves kubelet's KUBE-FIREWALL, KUBE-KUBELET-CANARY… */
  ownedOnly: boolean;
}

function removable(table: string, chain: string, o: CleanupOptions): boolean {
  if (!o.ownedOnly) return chain.startsWith("KUBE-");
  if (table === "nat" && isServiceChain(chain)) return true;
  return KUBE_PROXY_CHAINS[table]?.includes(chain) ?? false;
}

export function planCleanup(dump: SaveDump, o: CleanupOptions): TablePlan[] {
  const plans: TablePlan[] = [];
  for (const table of CLEANUP_TABLES) {
    const t = dump.tables.get(table);
    if (!t) continue;
    const chains = [...t.chains.keys()].filter((c) => removable(table, c, o)).sort();
    if (chains.length === 0) continue;
    const doomed = new Set(chains);
    // A rule inside a doomed chain goes with its chain's flush; elsewhere it is deleted
    // by its own text, whatever other arguments it was added with.
    const jumps = t.rules.filter((r) => r.op === "-A" && !doomed.has(r.chain) && doomed.has(ruleTarget(r.args) ?? ""));
    const lines = [`*${table}`];
    for (const c of chains) lines.push(`:${c} - [0:0]`);
    for (const r of jumps) lines.push(["-D", r.chain, ...r.args.map(quoteArg)].join(" "));
    for (const c of chains) lines.push(`-X ${c}`);
    lines.push("COMMIT");
    plans.push({ table, chains, jumps, input: `${lines.join("\n")}\n` });
  }
  return plans;
}
