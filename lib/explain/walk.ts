/**
 * One packet through a node's nat and filter tables, the way the kernel walks them: the first
 * packet of a new connection (conntrack NEW) from a pod, from the node itself or from outside.
 *
 * Order (netfilter hook priorities): a packet arriving on an interface meets nat PREROUTING,
 * then the routing decision, then filter INPUT and nat INPUT (local) or filter FORWARD and nat
 * POSTROUTING (forwarded). A packet the node sends meets nat OUTPUT, the routing decision,
 * filter OUTPUT and nat POSTROUTING; when its (translated) destination is local it comes back
 * in through `lo` to filter INPUT and nat INPUT.
 */
import { type IPFamily, parseIP } from "../model/ip.ts";
import { Host } from "./host.ts";
import type { RuleTables } from "./tables.ts";
import type { Branch, Cell, HostFacts, Outcome, Packet, State, UnknownMatch, Verdict, WalkOptions } from "./types.ts";
import { Walker } from "./walker.ts";

/** The family of the packet's addresses; throws when they disagree or do not parse. */
export function packetFamily(pkt: Packet): IPFamily {
  const d = parseIP(pkt.dst);
  const s = parseIP(pkt.src);
  if (!d) throw new Error(`Destination ${JSON.stringify(pkt.dst)} is not an IP address`);
  if (!s) throw new Error(`Source ${JSON.stringify(pkt.src)} is not an IP address`);
  if (d.family !== s.family) throw new Error(`Source ${s.text} and destination ${d.text} are of different families`);
  return d.family;
}

/** One walk: the paths, each with its events, probability and result. */
export function walkOnce(
  tables: RuleTables,
  pkt: Packet,
  facts: HostFacts,
  opts: WalkOptions,
): { paths: { outcome: Outcome; trail?: Cell }[]; unknown: UnknownMatch[]; missing: Set<string> } {
  const family = packetFamily(pkt);
  const host = new Host(facts, family);
  const w = new Walker(tables, host, pkt);
  const st: State = {
    src: parseIP(pkt.src)?.text ?? pkt.src,
    dst: parseIP(pkt.dst)?.text ?? pkt.dst,
    dport: pkt.dport,
    mark: 0,
    ctDnat: false,
    ctSnat: false,
    filterAccept: false,
    recentKnown: opts.recent ?? [],
    recentSet: [],
    chains: [],
  };
  let branches: Branch[] = [{ p: 1, st, end: "continue" }];
  const step = (fn: (b: Branch) => Branch[]) => {
    branches = branches.flatMap((b) => (b.end === "continue" ? fn(b) : [b]));
  };
  const routeEvent = (b: Branch, local: boolean, text: string): Branch => ({
    ...b,
    trail: { ev: { kind: "route", local, text }, up: b.trail },
  });
  const oifFor = (dst: string) => host.route(dst)?.dev;
  const pod = pkt.from === "node" ? undefined : pkt.inInterface;
  const then = (list: Branch[], table: string, chain: string, iif: string | undefined, oif: string | undefined) =>
    list.flatMap((x) => (x.end === "continue" ? w.runHook(table, chain, iif, oif, x) : [x]));

  if (pkt.from === "node") {
    step((b) => w.runHook("nat", "OUTPUT", "", oifFor(b.st.dst), b));
    step((b) => {
      const local = host.isLocal(b.st.dst);
      const oif = local ? "lo" : oifFor(b.st.dst);
      const routed = routeEvent(
        b,
        local,
        local
          ? `routing: ${b.st.dst} is a local address: the packet loops back through lo`
          : `routing: ${b.st.dst} is not a local address: the packet leaves the node${oif ? ` via ${oif}` : ""}`,
      );
      let out = then([routed], "filter", "OUTPUT", "", oif);
      out = then(out, "nat", "POSTROUTING", "", oif);
      // Back in through lo: filter INPUT sees it (nat PREROUTING does not: conntrack knows it).
      if (local) out = then(then(out, "filter", "INPUT", "lo", ""), "nat", "INPUT", "lo", "");
      return out;
    });
  } else {
    step((b) => w.runHook("nat", "PREROUTING", pod, "", b));
    step((b) => {
      const local = host.isLocal(b.st.dst);
      const oif = local ? "" : oifFor(b.st.dst);
      const routed = routeEvent(
        b,
        local,
        local
          ? `routing: ${b.st.dst} is a local address: delivered to the node (filter INPUT)`
          : `routing: ${b.st.dst} is not a local address: forwarded${oif ? ` via ${oif}` : ""} (filter FORWARD)`,
      );
      if (local) return then(then([routed], "filter", "INPUT", pod, ""), "nat", "INPUT", pod, "");
      return then(then([routed], "filter", "FORWARD", pod, oif), "nat", "POSTROUTING", "", oif);
    });
  }

  const paths = branches
    .filter((b) => b.p > 0)
    .map((b) => {
      const s = b.st;
      let verdict: Verdict;
      if (b.end === "drop") verdict = "DROP";
      else if (b.end === "reject") verdict = "REJECT";
      else if (b.end === "unknown") verdict = "UNKNOWN";
      else verdict = s.dnat ? "DNAT" : s.filterAccept ? "ACCEPT" : "NONE";
      const outcome: Outcome = { probability: b.p, verdict, chains: s.chains };
      if (s.dnat) outcome.dnat = s.dnat;
      if (s.endpointChain) outcome.endpointChain = s.endpointChain;
      if (s.service) outcome.service = s.service;
      if (s.masquerade && verdict !== "DROP" && verdict !== "REJECT") outcome.masquerade = s.masquerade;
      if (verdict !== "DNAT" && verdict !== "NONE" && s.decidedBy) outcome.decidedBy = s.decidedBy;
      if (verdict === "REJECT" && s.rejectWith) outcome.rejectWith = s.rejectWith;
      if (verdict === "DNAT" || verdict === "NONE" || verdict === "ACCEPT")
        outcome.delivered = { dst: s.dst, dport: s.dport, local: host.isLocal(s.dst) };
      if (s.recentSet.length > 0 && verdict === "DNAT")
        outcome.affinity = {
          lists: s.recentSet,
          next: [],
          ...(s.affinitySeconds ? { seconds: s.affinitySeconds } : {}),
        };
      return { outcome, trail: b.trail };
    });
  return { paths, unknown: w.unknown, missing: host.missingRoutes };
}
