/**
 * Canonical ordering of iptables-restore text (spec §16), the form upstream's own golden tests
 * compare in: tables by name, chains KUBE-NODEPORTS, KUBE-SERVICES, other KUBE-* and then the
 * rest alphabetically, rules grouped by chain, KUBE-SERVICES/KUBE-NODEPORTS rules stable-sorted
 * by the service named in their comment, the nodeports tail rule last.
 */
import { tokenize } from "../iptables/rule.ts";
import { isKubeChain, KUBE_NODEPORTS, KUBE_SERVICES } from "./chains.ts";

interface Table {
  name: string;
  chains: string[];
  rules: Map<string, string[]>;
  deletes: string[];
}

function chainRank(c: string): [number, string] {
  if (c === KUBE_NODEPORTS) return [0, ""];
  if (c === KUBE_SERVICES) return [1, ""];
  return [isKubeChain(c) ? 2 : 3, c];
}

function compareChains(a: string, b: string): number {
  const [ra, na] = chainRank(a);
  const [rb, nb] = chainRank(b);
  return ra !== rb ? ra - rb : na < nb ? -1 : na > nb ? 1 : 0;
}

/** The service a rule's comment names: text up to the first space or colon. */
function commentService(rule: string): string {
  if (!rule.includes("--comment ")) return "";
  const args = tokenize(rule) ?? [];
  const i = args.indexOf("--comment");
  return i < 0 ? "" : (/^[^ :"]*/.exec(args[i + 1] ?? "")?.[0] ?? "");
}

/** Rewrite restore text in canonical order. Lines other than tables, chains, rules are dropped. */
export function canonicalize(restore: string): string {
  const tables: Table[] = [];
  let cur: Table | undefined;
  for (const line of restore.split("\n")) {
    if (line.startsWith("*")) {
      cur = { name: line.slice(1), chains: [], rules: new Map(), deletes: [] };
      tables.push(cur);
    } else if (!cur) {
    } else if (line.startsWith(":")) {
      cur.chains.push(line.slice(1).split(" ")[0]);
    } else if (line.startsWith("-A ")) {
      const chain = line.slice(3).split(" ")[0];
      const list = cur.rules.get(chain);
      if (list) list.push(line);
      else cur.rules.set(chain, [line]);
    } else if (line.startsWith("-X ")) {
      cur.deletes.push(line);
    }
  }
  tables.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const out: string[] = [];
  for (const t of tables) {
    out.push(`*${t.name}`);
    const chains = [...new Set(t.chains)].sort(compareChains);
    for (const c of chains) out.push(`:${c} - [0:0]`);
    const ruleChains = [...new Set([...chains, ...t.rules.keys()])].sort(compareChains);
    for (const c of ruleChains) {
      let rules = t.rules.get(c) ?? [];
      if (c === KUBE_SERVICES || c === KUBE_NODEPORTS) {
        const last = rules.filter((r) => r.includes("must be the last rule"));
        const rest = rules.filter((r) => !r.includes("must be the last rule"));
        const keyed = rest.map((r, i) => ({ r, i, k: commentService(r) }));
        keyed.sort((a, b) => (a.k < b.k ? -1 : a.k > b.k ? 1 : a.i - b.i));
        rules = [...keyed.map((x) => x.r), ...last];
      }
      out.push(...rules);
    }
    out.push(...[...t.deletes].sort());
    out.push("COMMIT");
  }
  return `${out.join("\n")}\n`;
}
