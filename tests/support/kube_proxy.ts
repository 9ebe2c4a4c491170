/**
 * Put rules into a test namespace the way kube-proxy does: one `iptables-restore --noflush
 * --counters` of the rendered rules, then the jump rules of spec §3.1 with `-N` and `-I`.
 */

import type { IPFamily } from "../../lib/model/ip.ts";
import { JUMP_RULES, jumpRuleArgs } from "../../lib/proxy/jumps.ts";
import type { Exec } from "./netns.ts";

export type RunInNs = (argv: string[], input?: string) => Exec;

export function tool(family: IPFamily, backend: "nft" | "legacy", suffix = ""): string {
  return `${family === "IPv4" ? "iptables" : "ip6tables"}-${backend}${suffix}`;
}

/** Load `restore` and install kube-proxy's jumps; throws with iptables' message on failure. */
export function loadLikeKubeProxy(run: RunInNs, family: IPFamily, backend: "nft" | "legacy", restore: string): void {
  const r = run([tool(family, backend, "-restore"), "--noflush", "--counters"], restore);
  if (r.code !== 0) throw new Error(`restore failed: ${r.stderr}`);
  for (const j of JUMP_RULES) {
    run([tool(family, backend), "-t", j.table, "-N", j.to]); // "already exists" is fine
    const c = run([tool(family, backend), "-t", j.table, "-C", j.from, ...jumpRuleArgs(j)]);
    if (c.code === 0) continue;
    const i = run([tool(family, backend), "-t", j.table, "-I", j.from, ...jumpRuleArgs(j)]);
    if (i.code !== 0) throw new Error(`jump ${j.from} -> ${j.to}: ${i.stderr}`);
  }
}
