/**
 * A dump's nat and filter tables as the walker reads them, built once: chains with their
 * policies and rules (`-I`, `-D` and `-X` of restore input applied), each rule compiled on
 * first use and kept, so every walk over the same tables (affinity's next connection, the
 * CLI's walks again with more routes) reuses the work.
 */
import { BUILTIN_CHAINS, type SaveDump, type SavedRule } from "../iptables/save_parser.ts";
import { addKubeJumps } from "./jumps.ts";
import { compileRule } from "./matches.ts";
import type { Compiled } from "./types.ts";

export class Rule {
  private compiledRule?: Compiled;
  constructor(readonly saved: SavedRule) {}
  get compiled(): Compiled {
    if (!this.compiledRule) this.compiledRule = compileRule(this.saved.args);
    return this.compiledRule;
  }
}

export interface Chain {
  policy: string;
  rules: Rule[];
}

/** The walkable tables of a dump; make them with `compileTables`. */
export interface RuleTables {
  /** table → chain → its rules. */
  readonly tables: Map<string, Map<string, Chain>>;
  /** Whether kube-proxy's jump rules were added (the dump had no built-in chains). */
  readonly addedJumps: boolean;
}

/**
 * The nat and filter tables of `dump`, ready to walk. A dump without built-in chains (rendered
 * rules, restore input) gets kube-proxy's jump rules into them first (see addKubeJumps).
 */
export function compileTables(dump: SaveDump): RuleTables {
  const { dump: withJumps, added } = addKubeJumps(dump);
  const tables = new Map<string, Map<string, Chain>>();
  for (const [name, t] of withJumps.tables) {
    if (name !== "nat" && name !== "filter") continue;
    const chains = new Map<string, Chain>();
    for (const c of t.chains.values()) chains.set(c.name, { policy: c.policy, rules: [] });
    for (const r of t.rules) {
      let c = chains.get(r.chain);
      if (!c) chains.set(r.chain, (c = { policy: BUILTIN_CHAINS.has(r.chain) ? "ACCEPT" : "-", rules: [] }));
      if (r.op === "-A") c.rules.push(new Rule(r));
      else if (r.op === "-I") c.rules.unshift(new Rule(r));
      else if (r.op === "-D") {
        const i = c.rules.findIndex((x) => x.saved.args.join("\0") === r.args.join("\0"));
        if (i >= 0) c.rules.splice(i, 1);
      }
    }
    for (const d of t.deletes) chains.delete(d);
    tables.set(name, chains);
  }
  return { tables, addedJumps: added };
}

/** Tables given as a dump or already compiled. */
export function isRuleTables(x: SaveDump | RuleTables): x is RuleTables {
  return "addedJumps" in x;
}
