/**
 * The engine's output: per table, the chain lines and rule lines in the order kube-proxy
 * writes them, and the exact iptables-restore text made from them.
 */
// rule.ts is the text form of a rule only (no runner, no I/O): the engine reads its own
// lines back with the tokenizer iptables-restore's rules are read with.
import { tokenize } from "../iptables/rule.ts";
import type { IPFamily } from "../model/ip.ts";

export type TableName = "filter" | "nat";

/** One table's part of a ruleset. */
export interface TableRules {
  /** Chains declared (`:NAME - [0:0]`), in write order. */
  chains: string[];
  /** Rule lines (`-A …`, and `-X …` for deleted chains), in write order. */
  rules: string[];
}

/** What one service port became: for `-o json`, explain and change tracking. */
export interface ServicePortSummary {
  /** `namespace/name`. */
  service: string;
  /** kube-proxy's ServicePortName: `namespace/name`, plus `:port-name` when the port is named. */
  servicePortName: string;
  /** `TCP`, `UDP` or `SCTP`. */
  protocol: string;
  /** The Service's port. */
  port: number;
  /** The cluster IP of this family. */
  clusterIP: string;
  /** 0 when none. */
  nodePort: number;
  /** spec.externalIPs of this family. */
  externalIPs: string[];
  /** Load-balancer ingress IPs of this family that get rules. */
  loadBalancerIPs: string[];
  /** Chains written for this port (SVC/SVL/EXT/FW), in write order. */
  chains: string[];
  /** Each endpoint with a KUBE-SEP chain: its `ip:port`, chain, conditions, and whether it is on this node. */
  endpoints: {
    address: string;
    chain: string;
    ready: boolean;
    serving: boolean;
    terminating: boolean;
    local: boolean;
  }[];
  /** `REJECT` (no endpoints), `DROP` (no local endpoints), or "" when traffic is forwarded. */
  internalVerdict: "" | "REJECT" | "DROP";
  /** The same for traffic from outside (node ports, external and load-balancer IPs). */
  externalVerdict: "" | "REJECT" | "DROP";
}

/** The engine's output for one family: the filter and nat tables kube-proxy restores, and a summary per Service port. */
export interface Ruleset {
  /** The family of every address in the rules. */
  family: IPFamily;
  /** The filter table. */
  filter: TableRules;
  /** The nat table. */
  nat: TableRules;
  /** One summary per Service port, in write order. */
  services: ServicePortSummary[];
  /** Every nat chain the current services own (written or not): stale-chain GC keeps these. */
  activeNatChains: Set<string>;
  /** Stale service chains this ruleset deletes (`-X`), sorted. */
  deletedNatChains: string[];
  /** Comments on SEP/SVC/SVL rules are left out above 1000 endpoints (spec §8.3). */
  largeCluster: boolean;
  /** Endpoints over every Service port (decides `largeCluster`). */
  totalEndpoints: number;
  /** Nat rule lines of unchanged services a partial sync did not write (spec §8.5). */
  skippedNatRules: number;
  /** Service ports whose traffic policy found no local endpoint (metrics, spec §12). */
  noLocalEndpoints: { internal: number; external: number };
}

/** Rule lines that are `-A` (not `-X`). */
export function countRules(t: TableRules): number {
  let n = 0;
  for (const r of t.rules) if (r.charCodeAt(1) === 65 /* A */) n++;
  return n;
}

/** Lines per piece of restorePieces: few writes, and no piece large. */
const LINES_PER_PIECE = 8192;

/**
 * One table section of restore input (`*name`, chain lines, rule lines, `COMMIT`) in pieces
 * of whole lines, in order: a large cluster's text can be written without ever being one string.
 */
export function* tablePieces(name: TableName, t: TableRules, lines = LINES_PER_PIECE): Generator<string> {
  yield `*${name}\n`;
  for (let i = 0; i < t.chains.length; i += lines) {
    const part = t.chains.slice(i, i + lines);
    yield `:${part.join(" - [0:0]\n:")} - [0:0]\n`;
  }
  const rules = t.rules;
  for (let i = 0; i < rules.length; i += lines) {
    // Concatenated, not joined: a join first copies each rule (a rope) flat, short-lived
    // copies that raised the peak RSS of a 10k Services × 10 endpoints render by ~20 MB; a
    // piece made of the ropes is copied once, when it is written.
    let piece = "";
    const end = Math.min(rules.length, i + lines);
    for (let j = i; j < end; j++) piece = `${piece}${rules[j]}\n`;
    yield piece;
  }
  yield "COMMIT\n";
}

/** The iptables-restore input in pieces: `*filter` then `*nat`, each with chains, rules, COMMIT. */
export function* restorePieces(rs: Pick<Ruleset, "filter" | "nat">, lines = LINES_PER_PIECE): Generator<string> {
  yield* tablePieces("filter", rs.filter, lines);
  yield* tablePieces("nat", rs.nat, lines);
}

/** One table section of restore input: `*name`, chain lines, rule lines, `COMMIT`. */
export function writeTable(name: TableName, t: TableRules): string {
  // One join (not tablePieces joined: 30–40% slower at 10k Services), the same text.
  let chains = "";
  for (const c of t.chains) chains += `:${c} - [0:0]\n`;
  return `*${name}\n${chains}${t.rules.length > 0 ? `${t.rules.join("\n")}\n` : ""}COMMIT\n`;
}

/** The iptables-restore input: `*filter` then `*nat`, each with chains, rules, COMMIT. */
export function toRestore(rs: Pick<Ruleset, "filter" | "nat">): string {
  return writeTable("filter", rs.filter) + writeTable("nat", rs.nat);
}

/** Tables → chains → rules (as argument lists), for `-o json`. */
export function toJSON(rs: Ruleset): object {
  const table = (t: TableRules) => {
    const chains = new Map<string, string[][]>(t.chains.map((c) => [c, []]));
    const deleted: string[] = [];
    for (const r of t.rules) {
      const args = tokenize(r);
      // The engine quotes what it writes: a line that does not split is a bug, not input.
      if (!args) throw new Error(`Cannot split rule line ${JSON.stringify(r)}`);
      if (args[0] === "-X") {
        deleted.push(args[1]);
        chains.delete(args[1]);
        continue;
      }
      const list = chains.get(args[1]);
      if (list) list.push(args.slice(2));
      else chains.set(args[1], [args.slice(2)]);
    }
    return { chains: [...chains].map(([name, rules]) => ({ name, rules })), deletedChains: deleted };
  };
  return {
    family: rs.family,
    tables: { filter: table(rs.filter), nat: table(rs.nat) },
    services: rs.services,
    summary: summarize(rs),
  };
}

/** Counts of a ruleset, as `kip render` prints them. */
export interface Summary {
  /** Distinct Services. */
  services: number;
  /** Service ports. */
  servicePorts: number;
  /** Endpoints, over every Service port. */
  endpoints: number;
  /** Chains declared, filter and nat. */
  chains: number;
  /** `-A` rules, filter and nat. */
  rules: number;
}

/** The counts of a ruleset. */
export function summarize(rs: Ruleset): Summary {
  return {
    services: new Set(rs.services.map((s) => s.service)).size,
    servicePorts: rs.services.length,
    endpoints: rs.totalEndpoints,
    chains: rs.filter.chains.length + rs.nat.chains.length,
    rules: countRules(rs.filter) + countRules(rs.nat),
  };
}
