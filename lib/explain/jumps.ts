/**
 * kube-proxy's jump rules from the built-in chains (spec §3.1), put into a dump that has no
 * built-in chains: rendered rules and restore input, which a walk could not enter otherwise.
 */

import { BUILTIN_CHAINS, type SaveDump, type SavedRule, type SavedTable } from "../iptables/save_parser.ts";
import { JUMP_RULES, jumpRuleArgs, jumpRuleLine } from "../proxy/jumps.ts";

/** Whether a table declares any built-in chain (an iptables-save dump does; restore input not). */
function hasBuiltins(t: SavedTable): boolean {
  for (const c of t.chains.keys()) if (BUILTIN_CHAINS.has(c)) return true;
  return false;
}

/**
 * kube-proxy's jump rules (spec §3.1) put into the built-in chains of every nat/filter table
 * that has none (rendered rules, restore input), in a fresh node's top-down order: each is
 * inserted at the top, so later rows come first. Rows whose target chain the table lacks are
 * left out (kubelet's KUBE-FIREWALL where kube-proxy does not write it). Returns whether any
 * table got them.
 */
export function addKubeJumps(dump: SaveDump): { dump: SaveDump; added: boolean } {
  const tables = new Map(dump.tables);
  let added = false;
  for (const name of ["nat", "filter"]) {
    const t = dump.tables.get(name);
    if (!t || hasBuiltins(t)) continue;
    const builtins = name === "nat" ? ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"] : ["INPUT", "FORWARD", "OUTPUT"];
    const chains = new Map(builtins.map((c) => [c, { name: c, policy: "ACCEPT", line: 0 }]));
    for (const [k, v] of t.chains) chains.set(k, v);
    const jumps: SavedRule[] = [];
    for (const j of [...JUMP_RULES].reverse()) {
      if (j.table !== name || !t.chains.has(j.to)) continue;
      jumps.push({ op: "-A", chain: j.from, args: jumpRuleArgs(j), text: jumpRuleLine(j), line: 0 });
    }
    tables.set(name, { name, chains, rules: [...jumps, ...t.rules], deletes: t.deletes });
    added = true;
  }
  return { dump: { ...dump, tables }, added };
}
