/**
 * lib/iptables' comparer and cleanup planner, told what kube-proxy owns (lib/proxy/chains.ts,
 * lib/proxy/jumps.ts), which lib/iptables never imports: its compare and cleanup know no
 * kube-proxy chain. These are the forms kip's commands and the library (mod.ts) use.
 */
import { planCleanup as planTableCleanup, type TablePlan } from "./iptables/cleanup.ts";
import {
  type ChainOwner,
  compareDumps as compareOwnedDumps,
  type DesiredTables,
  type DiffResult,
} from "./iptables/compare.ts";
import type { SaveDump } from "./iptables/save_parser.ts";
import type { IPFamily } from "./model/ip.ts";

import { FIXED_CHAINS, isKubeChain, isServiceChain, ownedByKubeProxy } from "./proxy/chains.ts";
import { JUMP_RULES, jumpRuleArgs } from "./proxy/jumps.ts";

export type { DiffResult, TablePlan };

/** kube-proxy as compare sees it: its fixed chains, its service chains, its jump rules. */
export const KUBE_PROXY_OWNER: ChainOwner = {
  name: "kube-proxy",
  fixedChains: FIXED_CHAINS,
  isKindred: isKubeChain,
  collects: isServiceChain,
  jumps: JUMP_RULES.map((j) => ({ table: j.table, from: j.from, args: jumpRuleArgs(j) })),
};

/** How compareDumps compares: lib/iptables/compare.ts's options, the owner being kube-proxy. */
export interface CompareOptions {
  /** The family of both dumps (how addresses in rules are normalised). */
  family: IPFamily;
  /** Compare kube-proxy's jump rules in the built-in chains too: on for a node, off for two renders. */
  jumps: boolean;
  /** The live side's name in patch headers (default `live`). */
  oldLabel?: string;
  /** The desired side's name in patch headers (default `desired`). */
  newLabel?: string;
}

/**
 * Compare two dumps over what kube-proxy owns; `old` is the live side (or --from), `desired`
 * the new one, parsed or already normalised (normalizeDesired).
 */
export function compareDumps(old: SaveDump, desired: SaveDump | DesiredTables, o: CompareOptions): DiffResult {
  return compareOwnedDumps(old, desired, { ...o, owner: KUBE_PROXY_OWNER });
}

/** What planCleanup removes. */
export interface CleanupOptions {
  /** Only what kube-proxy owns: leaves kubelet's KUBE-FIREWALL, KUBE-KUBELET-CANARY… */
  ownedOnly: boolean;
  /** Chains per restore (see lib/iptables/cleanup.ts); unset: one transaction per table. */
  batchSize?: number;
}

const anyKubeChain = (_table: string, chain: string) => isKubeChain(chain);

/** What `kip cleanup` removes: every KUBE-* chain, or with ownedOnly kube-proxy's (spec §14). */
export function planCleanup(dump: SaveDump, o: CleanupOptions): TablePlan[] {
  return planTableCleanup(dump, {
    removable: o.ownedOnly ? ownedByKubeProxy : anyKubeChain,
    batchSize: o.batchSize,
  });
}
