/**
 * An explanation as a person reads it: the walk as a tree (one line per rule that matched,
 * with why it matched and what it did), then every destination with its probability, the
 * masquerade decision and the verdict. Colour is optional (ANSI, for terminals).
 */
import { defaultRejectWith } from "../iptables/facts.ts";
import { fraction } from "./prose.ts";
import type { Event, Explanation, Outcome, TreeNode } from "./types.ts";

export interface FormatOptions {
  color: boolean;
  /** Where the rules came from, for the header ("rendered from examples/seed", "iptables-nft-save"). */
  source?: string;
}

type Paint = (code: string, s: string) => string;

/** `1/3 (33.3%)`, or just the percentage when it is not a simple fraction. */
export function chanceText(p: number): string {
  const f = fraction(p);
  if (f === "1") return "100%";
  return f.endsWith("%") ? f : `${f} (${(p * 100).toFixed(1)}%)`;
}

const FROM: Record<string, string> = {
  pod: "from a pod",
  node: "from the node itself",
  external: "from outside the node",
};

/** The rule without its `-A CHAIN` head. */
function body(rule: string): string {
  const m = /^-[AI] \S+ ?/.exec(rule);
  return m ? rule.slice(m[0].length) : rule;
}

function masqText(o: Outcome): string {
  const m = o.masquerade;
  if (!m) return "not masqueraded";
  const to = m.to ?? "the node's address on the interface the packet leaves by";
  return `${m.how === "SNAT" ? "SNAT" : "masqueraded"} to ${to}${m.dev ? ` (${m.dev})` : ""}`;
}

/** A one-line result: `DNAT to 10.244.1.14:80, masqueraded to 10.244.1.1`. */
export function outcomeText(o: Outcome): string {
  const where = o.decidedBy ? `${o.decidedBy.table}/${o.decidedBy.chain}` : "";
  switch (o.verdict) {
    case "DNAT":
      return `DNAT to ${o.dnat}${o.endpointChain ? ` (${o.endpointChain})` : ""}, ${masqText(o)}`;
    case "REJECT":
      return `REJECT (${o.rejectWith ?? defaultRejectWith("IPv4")}) in ${where}`;
    case "DROP":
      return o.decidedBy?.rule.startsWith("policy ") ? `DROP by the policy of ${where}` : `DROP in ${where}`;
    case "ACCEPT":
      return `ACCEPT in ${where}, no translation, ${masqText(o)}`;
    case "UNKNOWN":
      return `unknown: ${where} uses matches kip does not evaluate`;
    default:
      return `no service: not translated, ${o.delivered?.local ? "delivered to the node" : "routed on"} as it is, ${masqText(o)}`;
  }
}

function eventLine(ev: Event, paint: Paint): string {
  switch (ev.kind) {
    case "hook":
      return paint("1", `${ev.table} ${ev.chain}${ev.policy !== "ACCEPT" ? ` (policy ${ev.policy})` : ""}`);
    case "rule": {
      const why = ev.why.length > 0 ? ev.why.join(", ") : "every packet";
      const what = /^jump to |^goto /.test(ev.action) ? "" : `; ${paint("33", ev.action)}`;
      return `  ${paint("36", `${ev.table}/${ev.chain}`)}: ${body(ev.rule)}  ${paint("2", `← ${why}`)}${what}`;
    }
    case "route":
      return paint("1", ev.text);
    case "policy":
      return `  ${paint("36", `${ev.table}/${ev.chain}`)}: ${paint("31", `policy ${ev.policy}`)}`;
    case "unknown":
      return `  ${paint("35", `? ${ev.table}/${ev.chain}`)}: ${body(ev.rule)}  ${paint("35", `← ${ev.matches.join("; ")}: ${ev.text}`)}`;
  }
}

function leaves(node: TreeNode): number[] {
  const out: number[] = node.outcome !== undefined ? [node.outcome] : [];
  for (const c of node.children) out.push(...leaves(c.node));
  return out;
}

function verdictColor(o: Outcome): string {
  return o.verdict === "DNAT" || o.verdict === "ACCEPT"
    ? "32"
    : o.verdict === "NONE"
      ? "33"
      : o.verdict === "UNKNOWN"
        ? "35"
        : "31";
}

function printTree(node: TreeNode, ex: Explanation, prefix: string, lines: string[], paint: Paint): void {
  for (const ev of node.events) lines.push(`${prefix}${eventLine(ev, paint)}`);
  if (node.outcome !== undefined) {
    const o = ex.paths[node.outcome];
    lines.push(`${prefix}${paint(verdictColor(o), `⇒ ${outcomeText(o)}`)}`);
  }
  node.children.forEach((ch, i) => {
    const last = i === node.children.length - 1;
    const under = leaves(ch.node).map((k) => ex.paths[k]);
    const head =
      under.length === 1 && under[0].verdict === "DNAT"
        ? `→ ${under[0].dnat}`
        : under.length === 1
          ? `→ ${under[0].verdict}`
          : "";
    lines.push(`${prefix}${last ? "└─ " : "├─ "}${paint("35", chanceText(ch.probability))} ${head}`.trimEnd());
    printTree(ch.node, ex, `${prefix}${last ? "   " : "│  "}`, lines, paint);
  });
}

export function formatExplanation(ex: Explanation, opts: FormatOptions): string {
  const paint: Paint = (code, s) => (opts.color ? `\x1b[${code}m${s}\x1b[0m` : s);
  const p = ex.packet;
  const lines: string[] = [];
  const dst = p.dst.includes(":") ? `[${p.dst}]:${p.dport}` : `${p.dst}:${p.dport}`;
  lines.push(
    paint(
      "1",
      `kip explain: ${p.proto} ${p.src} → ${dst} ${FROM[p.from]}${p.inInterface && p.from !== "node" ? ` (in on ${p.inInterface})` : ""}, the first packet of a connection (conntrack NEW)`,
    ),
  );
  if (opts.source) lines.push(`rules: ${opts.source}`);
  lines.push("");
  printTree(ex.tree, ex, "", lines, paint);
  lines.push("");

  lines.push(paint("1", "Destinations:"));
  for (const o of ex.outcomes) {
    let line = `  ${paint("35", chanceText(o.probability).padEnd(12))} ${paint(verdictColor(o), outcomeText(o))}`;
    if (o.service && o.verdict === "DNAT") line += `  [${o.service}]`;
    lines.push(line);
    const a = o.affinity;
    if (a && a.next.length > 0) {
      const next = a.next
        .map(
          (n) =>
            (n.verdict === "DNAT" ? n.dnat : n.verdict) + (a.next.length > 1 ? ` (${fraction(n.probability)})` : ""),
        )
        .join(", ");
      const same = a.next.length === 1 && a.next[0].dnat === o.dnat;
      lines.push(
        `  ${" ".repeat(12)}   next connection from ${p.src}${a.seconds ? ` within ${a.seconds} s` : ""}: ${next}${same ? ` again (ClientIP affinity, recent list ${a.lists.join(", ")})` : ""}`,
      );
    }
  }
  const reached = ex.outcomes.filter((o) => o.verdict !== "DROP" && o.verdict !== "REJECT" && o.verdict !== "UNKNOWN");
  if (reached.length > 0) {
    const m = reached.find((o) => o.masquerade)?.masquerade;
    const how = m
      ? ` (${m.table}/${m.chain}: ${m.how}${m.randomFully ? " --random-fully" : ""}${m.to ? `, source becomes ${m.to}` : ", source becomes the node's address on the outgoing interface"})`
      : "";
    const what =
      ex.masquerade === "always"
        ? `yes${how}`
        : ex.masquerade === "never"
          ? reached.some((o) => o.verdict === "DNAT")
            ? `no: the endpoint sees the client's own address ${p.src}`
            : `no: the source stays ${p.src}`
          : `on some paths only${how}`;
    lines.push(`${paint("1", "Masquerade:")} ${what}`);
  }
  const allGood = ex.outcomes.every((o) => o.verdict === "DNAT" || o.verdict === "ACCEPT");
  const verdictColour = allGood
    ? "32"
    : ex.outcomes.every((o) => o.verdict === "DROP" || o.verdict === "REJECT")
      ? "31"
      : "33";
  lines.push(`${paint("1", "Verdict:")} ${paint(verdictColour, ex.verdict)}`);
  if (ex.unknown.length > 0) {
    lines.push("");
    lines.push(paint("35", "Not evaluated (matches kip does not implement, or facts it was not given):"));
    for (const u of ex.unknown)
      lines.push(
        `  ${u.table}/${u.chain}${u.line ? ` (line ${u.line})` : ""}: ${body(u.rule)}  ← ${u.matches.join("; ")}`,
      );
  }
  for (const n of ex.notes) lines.push(paint("2", n));
  return `${lines.join("\n")}\n`;
}
