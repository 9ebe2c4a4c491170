/**
 * The verdict in words: one line for the whole walk ("DNAT to one of 3 endpoints of ns/svc"),
 * and chances as fractions.
 */
import { defaultRejectWith } from "../iptables/facts.ts";
import { tokenize } from "../iptables/rule.ts";
import type { Outcome, Packet } from "./types.ts";

/** `1/3` for chances close to 1/n (or k/n, n ≤ 64), else a percentage. */
export function fraction(p: number): string {
  if (Math.abs(p - 1) < 1e-9) return "1";
  for (let n = 2; n <= 64; n++) {
    const k = Math.round(p * n);
    if (k > 0 && k < n && Math.abs(p - k / n) < 1e-6 && gcd(k, n) === 1) return `${k}/${n}`;
  }
  return `${(p * 100).toPrecision(3)}%`;
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

/** Outcomes that are the same result for a person: merged, their chances added. */
export const outcomeKey = (o: Outcome) =>
  JSON.stringify([o.verdict, o.dnat, o.masquerade ? (o.masquerade.to ?? "yes") : "", o.decidedBy?.rule ?? ""]);

/** The verdict of a walk in one line, over its merged outcomes. */
export function describeVerdict(outcomes: Outcome[], pkt: Packet): string {
  const one = (o: Outcome): string => {
    const by = o.decidedBy ? `${o.decidedBy.table}/${o.decidedBy.chain}` : "";
    const why = o.decidedBy ? commentOfRule(o.decidedBy.rule) : undefined;
    switch (o.verdict) {
      case "DNAT":
        return `DNAT to ${o.dnat}${o.service ? ` (${o.service})` : ""}`;
      case "REJECT":
        return `REJECT (${o.rejectWith ?? defaultRejectWith("IPv4")}) by ${by}${why ? `: ${why}` : ""}`;
      case "DROP":
        return o.decidedBy?.rule.startsWith("policy ")
          ? `DROP by the policy of ${by}`
          : `DROP by ${by}${why ? `: ${why}` : ""}`;
      case "ACCEPT":
        return `ACCEPT by ${by}${why ? ` (${why})` : ""} (no service translation)`;
      case "UNKNOWN":
        return `unknown: decided by ${by}, which uses matches kip does not evaluate`;
      default:
        return `no service: no rule translated ${pkt.dst.includes(":") ? `[${pkt.dst}]` : pkt.dst}:${pkt.dport}; the packet goes on unchanged`;
    }
  };
  if (outcomes.length === 1) return one(outcomes[0]);
  if (outcomes.every((o) => o.verdict === "DNAT")) {
    const svc =
      outcomes[0].service && outcomes.every((o) => o.service === outcomes[0].service) ? outcomes[0].service : "";
    return `DNAT to one of ${outcomes.length} endpoints${svc ? ` of ${svc}` : ""}`;
  }
  return outcomes.map((o) => `${fraction(o.probability)} ${one(o)}`).join("; ");
}

/** The comment of a rule line (`-A CHAIN … --comment X …`); undefined for a policy. */
function commentOfRule(rule: string): string | undefined {
  const args = tokenize(rule) ?? [];
  const i = args.indexOf("--comment");
  return i < 0 ? undefined : args[i + 1];
}
