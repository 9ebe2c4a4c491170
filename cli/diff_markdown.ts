/**
 * `kip diff --from BASE --to HEAD -o markdown`: a summary a reviewer reads in a pull-request
 * comment or a CI step summary. Exposure changes first, then Services and their endpoints,
 * then the rule diff folded away.
 */
import type { DiffResult } from "../lib/iptables/compare.ts";
import { summaryLine } from "../lib/iptables/compare.ts";
import type { Review } from "../lib/review.ts";
import { plural } from "../lib/util/text.ts";

const share = (n: number) => `${+(100 / n).toFixed(1)}%`;

function endpointsCell(e: { before?: number; after?: number }): string {
  const side = (n: number | undefined) => (n === undefined ? "—" : n === 0 ? "0 (REJECT)" : `${n} × ${share(n)}`);
  return e.before === e.after ? side(e.after) : `${side(e.before)} → ${side(e.after)}`;
}

/** A Markdown document: title, exposure changes, Services, folded rule diff. */
export function reviewMarkdown(
  review: Review,
  diff: DiffResult,
  labels: { from: string; to: string },
  simulated: boolean,
): string {
  const lines: string[] = [];
  const drift = diff.chains.length > 0;
  lines.push(`### kip diff: \`${labels.from}\` → \`${labels.to}\` (${diff.family})`, "");
  if (!drift) {
    lines.push("No change to the rules kube-proxy would write.", "");
    return `${lines.join("\n")}\n`;
  }
  const opened = review.exposure.filter((x) => x.kind === "opened");
  lines.push("#### Exposure");
  if (review.exposure.length === 0) lines.push("", "Nothing new is reachable from outside the cluster.");
  else {
    lines.push("");
    if (opened.length > 0)
      lines.push(
        `**${plural(opened.length, "change")} widen${opened.length === 1 ? "s" : ""} what is reachable from outside the cluster.**`,
        "",
      );
    const mark = { opened: "**opened**", closed: "closed", changed: "changed" } as const;
    for (const x of review.exposure) lines.push(`- ${mark[x.kind]} · \`${x.service}\`: ${x.what}`);
  }
  lines.push("", "#### Services", "");
  const count = (s: string) => review.services.filter((r) => r.status === s).length;
  lines.push(`${count("added")} added, ${count("removed")} removed, ${count("changed")} changed.`, "");
  if (review.services.length > 0) {
    lines.push("| Service | | endpoints per port (count × share) | changes |", "|---|---|---|---|");
    for (const s of review.services) {
      const eps = s.endpoints.map((e) => `${e.port}: ${endpointsCell(e)}`).join("<br>") || "—";
      lines.push(`| \`${s.service}\` | ${s.status} | ${eps} | ${s.changes.join("<br>") || ""} |`);
    }
    lines.push("");
  }
  if (simulated)
    lines.push(
      "_Cluster IPs, node ports and endpoints the manifests leave out were simulated (`--simulate`): stable per object, not the values a cluster will pick._",
      "",
    );
  lines.push(
    "<details>",
    `<summary>Rule diff: ${summaryLine(diff)}</summary>`,
    "",
    "```diff",
    ...diff.chains.flatMap((c) => c.patch.replace(/\n$/, "").split("\n")),
    "```",
    "",
    "</details>",
  );
  return `${lines.join("\n")}\n`;
}
