/**
 * `explain`: the first packet of a new connection through a node's rules, as a tree of what
 * each rule did, every destination with its probability, the masquerade decision and the
 * verdict. Pure: a dump (iptables-save, or rendered rules), a packet and the host facts the
 * rules refer to (local addresses, routes) go in; an explanation object comes out.
 */
import type { SaveDump } from "../iptables/save_parser.ts";
import { describeVerdict, outcomeKey } from "./prose.ts";
import { compileTables, isRuleTables, type RuleTables } from "./tables.ts";
import { buildTree } from "./tree.ts";
import type { Explanation, HostFacts, Outcome, Packet, Verdict, WalkOptions } from "./types.ts";
import { packetFamily, walkOnce } from "./walk.ts";

export { compileTables, type RuleTables } from "./tables.ts";

/**
 * Walk the first packet of a new connection through the nat and filter tables of `rules`: an
 * iptables-save dump, rendered rules (`dumpOfTables`) or restore input, or tables compiled
 * once with `compileTables` to walk many packets. A dump without built-in chains gets
 * kube-proxy's jump rules into them (spec §3.1), as on a node. ClientIP affinity is followed
 * one packet further: each outcome that recorded the client says where its next connection
 * goes.
 */
export function explain(
  rules: SaveDump | RuleTables,
  pkt: Packet,
  facts: HostFacts,
  opts: WalkOptions = {},
): Explanation {
  const family = packetFamily(pkt);
  const tables = isRuleTables(rules) ? rules : compileTables(rules);
  const first = walkOnce(tables, pkt, facts, opts);
  const missing = new Set(first.missing);
  for (const p of first.paths) {
    const a = p.outcome.affinity;
    if (!a) continue;
    const next = walkOnce(tables, pkt, facts, { recent: [...(opts.recent ?? []), ...a.lists] });
    for (const m of next.missing) missing.add(m);
    const merged = new Map<string, { probability: number; verdict: Verdict; dnat?: string }>();
    for (const n of next.paths) {
      const k = `${n.outcome.verdict} ${n.outcome.dnat ?? ""}`;
      const prev = merged.get(k);
      if (prev) prev.probability += n.outcome.probability;
      else
        merged.set(k, {
          probability: n.outcome.probability,
          verdict: n.outcome.verdict,
          ...(n.outcome.dnat ? { dnat: n.outcome.dnat } : {}),
        });
      const secs = n.outcome.affinity?.seconds;
      if (secs !== undefined) a.seconds = secs;
    }
    a.next = [...merged.values()];
  }
  // The seconds come from the rcheck rule that matched on the next packet.
  const paths = first.paths.map((p) => p.outcome);
  const merged = new Map<string, Outcome>();
  for (const o of paths) {
    const k = outcomeKey(o);
    const prev = merged.get(k);
    if (prev) prev.probability += o.probability;
    else merged.set(k, { ...o });
  }
  const outcomes = [...merged.values()].sort((a, b) => b.probability - a.probability);
  const reached = outcomes.filter((o) => o.verdict !== "DROP" && o.verdict !== "REJECT" && o.verdict !== "UNKNOWN");
  const masq = reached.filter((o) => o.masquerade).length;
  const notes = [
    "Only the first packet of a connection goes through the nat table; conntrack gives the rest of the connection the same translation.",
  ];
  return {
    family,
    packet: pkt,
    tree: buildTree(first.paths),
    outcomes,
    paths,
    masquerade: masq === 0 ? "never" : masq === reached.length ? "always" : "sometimes",
    verdict: describeVerdict(outcomes, pkt),
    unknown: first.unknown,
    missingRoutes: [...missing],
    notes,
  };
}
