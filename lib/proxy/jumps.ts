/**
 * kube-proxy's jump rules from the built-in chains into its own (spec §3.1), in the order it
 * ensures them. Installed with `iptables -N`/`-C`/`-I`, never through restore.
 */
import {
  KUBE_EXTERNAL_SERVICES,
  KUBE_FIREWALL,
  KUBE_FORWARD,
  KUBE_NODEPORTS,
  KUBE_POSTROUTING,
  KUBE_PROXY_FIREWALL,
  KUBE_SERVICES,
} from "./chains.ts";

/** The tables a jump rule can be in. */
export type Table = "filter" | "nat" | "mangle" | "raw";

/** One jump rule kube-proxy keeps in a built-in chain (spec §3.1). */
export interface JumpRule {
  /** The table. */
  table: Table;
  /** The built-in chain the rule sits in. */
  from: string;
  /** Match arguments before the comment. */
  extraArgs: string[];
  /** "" = no comment. */
  comment: string;
  /** The chain it jumps to. */
  to: string;
  /** Rows 13–14 mirror kubelet's KUBE-FIREWALL jumps: kube-proxy's cleanup leaves them. */
  kubelet: boolean;
}

const NEW = ["-m", "conntrack", "--ctstate", "NEW"];

function row(table: Table, from: string, extraArgs: string[], comment: string, to: string, kubelet = false): JumpRule {
  return { table, from, extraArgs, comment, to, kubelet };
}

/** Rows 1–14 of spec §3.1, in order. */
export const JUMP_RULES: readonly JumpRule[] = [
  row("filter", "INPUT", NEW, "kubernetes externally-visible service portals", KUBE_EXTERNAL_SERVICES),
  row("filter", "FORWARD", NEW, "kubernetes externally-visible service portals", KUBE_EXTERNAL_SERVICES),
  row("filter", "INPUT", [], "kubernetes health check service ports", KUBE_NODEPORTS),
  row("filter", "FORWARD", NEW, "kubernetes service portals", KUBE_SERVICES),
  row("filter", "OUTPUT", NEW, "kubernetes service portals", KUBE_SERVICES),
  row("filter", "FORWARD", [], "kubernetes forwarding rules", KUBE_FORWARD),
  row("filter", "INPUT", NEW, "kubernetes load balancer firewall", KUBE_PROXY_FIREWALL),
  row("filter", "OUTPUT", NEW, "kubernetes load balancer firewall", KUBE_PROXY_FIREWALL),
  row("filter", "FORWARD", NEW, "kubernetes load balancer firewall", KUBE_PROXY_FIREWALL),
  row("nat", "OUTPUT", [], "kubernetes service portals", KUBE_SERVICES),
  row("nat", "PREROUTING", [], "kubernetes service portals", KUBE_SERVICES),
  row("nat", "POSTROUTING", [], "kubernetes postrouting rules", KUBE_POSTROUTING),
  row("filter", "INPUT", [], "", KUBE_FIREWALL, true),
  row("filter", "OUTPUT", [], "", KUBE_FIREWALL, true),
];

/** The rule's arguments after `-A/-I/-C/-D <chain>`: extra args, comment (one argv element), jump. */
export function jumpRuleArgs(j: JumpRule): string[] {
  return [...j.extraArgs, ...(j.comment ? ["-m", "comment", "--comment", j.comment] : []), "-j", j.to];
}

/** The rule as an iptables-restore line (`-A FROM … -j TO`), comment quoted. */
export function jumpRuleLine(j: JumpRule): string {
  const comment = j.comment ? ` -m comment --comment "${j.comment}"` : "";
  const extra = j.extraArgs.length > 0 ? ` ${j.extraArgs.join(" ")}` : "";
  return `-A ${j.from}${extra}${comment} -j ${j.to}`;
}
