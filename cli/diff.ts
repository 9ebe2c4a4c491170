/**
 * `kip diff`: desired rules vs a node's live rules, over what kube-proxy owns. This file only declares the command; its implementation
 * (diff_run.ts) loads when the command runs, so `kip render` never pays for it.
 */
import { Command, Option } from "@commander-js/extra-typings";
import type { DiffFlags } from "./diff_run.ts";
import type { IO } from "./io.ts";
import { addNodeFlags, addSimulationFlags } from "./node_flags.ts";

const EXAMPLES = `
Examples:
  # Is this node's service routing what the manifests say? (as root, on the node;
  # IPv4 and IPv6, each family whose iptables works, one summary line each)
  kip diff cluster-dump.json --hostname-override "$(hostname)" --cluster-cidr 10.244.0.0/16

  # Offline, against a dump copied from a node (iptables-save > node1.rules)
  kip diff examples/seed --live node1.rules --hostname-override node1 --cluster-cidr 10.244.0.0/16

  # What changes on the nodes if this PR merges?
  kip diff --from main/k8s --to pr/k8s --simulate -o markdown

Only kube-proxy's chains (KUBE-SERVICES, KUBE-SVC-…, KUBE-SEP-…, …) in filter and nat, and
its jump rules in the built-in chains, are compared; everything else on the node is ignored.
Both sides are normalised first, so iptables-save's rewriting (/32, -p order, 0.33333333349,
--set-xmark, quoting) is not drift.

Exit status, the worst over the families: 0 no drift, 1 drift, 2 trouble (bad flags, bad
manifests, iptables unusable).`;

const collect = (v: string, prev: string[] = []) => [...prev, v];

export function diffCommand() {
  return addSimulationFlags(
    addNodeFlags(
      new Command("diff")
        .description("Compare the rules kube-proxy would write for these manifests with a node's live rules")
        .argument("[paths...]", "manifest files or directories; - for stdin"),
    ),
  )
    .option("--live <file>", "compare with this iptables-save dump instead of the host's tables")
    .option("--from <path>", "compare two manifest sets: the old one (repeatable)", collect)
    .option("--to <path>", "…and the new one (repeatable)", collect)
    .addOption(
      new Option(
        "--ip-family <family>",
        "compare this family only (default: every family whose iptables works; a --live dump's own; IPv4 for --from/--to)",
      ).choices(["IPv4", "IPv6"]),
    )
    .addOption(
      new Option("--backend <backend>", "read this backend's tables (default: the host's iptables)").choices([
        "nft",
        "legacy",
      ]),
    )
    .addOption(
      new Option("-o, --output <format>", "output format").choices(["text", "json", "markdown"]).default("text"),
    )
    .option("--no-color", "no colour, even on a terminal")
    .addHelpText("after", EXAMPLES);
}

/** Run `kip diff`: its implementation (diff_run.ts) loads now. */
export async function run(paths: string[], opts: DiffFlags, io: IO): Promise<number> {
  return (await import("./diff_run.ts")).runDiff(paths, opts, io);
}
