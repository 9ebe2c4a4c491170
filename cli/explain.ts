/**
 * `kip explain`: follow one packet through the rules. This file only declares the command; its implementation
 * (explain_run.ts) loads when the command runs, so `kip render` never pays for it.
 */
import { Command, Option } from "@commander-js/extra-typings";
import type { ExplainFlags } from "./explain_run.ts";
import type { IO } from "./io.ts";
import { addNodeFlags, addSimulationFlags } from "./node_flags.ts";

const EXAMPLES = `
Examples:
  # The article's walk: node1 of the example cluster calls nginx-svc from the node itself
  kip explain examples/seed --hostname-override node1 --cluster-cidr 10.244.0.0/16 \\
    --from node --dst 10.97.54.248:80

  # The same Service by name, from a pod, as JSON
  kip explain examples/seed --hostname-override node1 --cluster-cidr 10.244.0.0/16 \\
    --service default/nginx-svc --src 10.244.1.20 -o json

  # This host's live tables (as root): a NodePort hit from outside on eth0
  kip explain --live --from external --src 192.0.2.7 --in-interface eth0 --dst 192.168.56.11:31082

  # A dump copied from a node (iptables-save > node1.rules)
  kip explain --live node1.rules --node-ip 192.168.56.11 --from external --dst 192.168.56.11:31082

--from pod:      a pod on this node sends it (nat PREROUTING; default source: an address in --cluster-cidr)
--from node:     a process on the node sends it (nat OUTPUT; default source: the node's IP)
--from external: a client outside the node sends it (nat PREROUTING; default source 198.18.0.1)

Exit status: 0 explained (whatever the verdict), 2 bad flags, bad manifests or unknown service.`;

export function explainCommand() {
  return addSimulationFlags(
    addNodeFlags(
      new Command("explain")
        .description("Follow one packet through kube-proxy's rules: chains, endpoint chances, masquerade, verdict")
        .argument("[paths...]", "manifest files or directories to render the rules from; - for stdin"),
    ),
  )
    .option("--dst <ip:port>", "the destination: a cluster IP, external IP, LB IP or node address, and port")
    .option("--service <ns/name[:port]>", "…or a Service port, for its cluster IP and port")
    .addOption(
      new Option("--proto <proto>", "protocol (default tcp, or the Service port's)").choices(["tcp", "udp", "sctp"]),
    )
    .option("--src <ip>", "the source address (default: see below)")
    .addOption(new Option("--from <where>", "who sends the packet").choices(["pod", "node", "external"]).default("pod"))
    .option("--in-interface <name>", "the interface it arrives on (pod and external traffic)")
    .option("--live [file]", "walk this host's tables (iptables-save), or a saved dump FILE")
    .addOption(
      new Option("--backend <backend>", "with --live on the host: read this backend's tables").choices([
        "nft",
        "legacy",
      ]),
    )
    .addOption(new Option("--ip-family <family>", "the family, when --service cannot tell").choices(["IPv4", "IPv6"]))
    .addOption(new Option("-o, --output <format>", "output format").choices(["text", "json"]).default("text"))
    .option("--no-color", "no colour, even on a terminal")
    .addHelpText("after", EXAMPLES);
}

/** Run `kip explain`: its implementation (explain_run.ts) loads now. */
export async function run(paths: string[], opts: ExplainFlags, io: IO): Promise<number> {
  return (await import("./explain_run.ts")).runExplain(paths, opts, io);
}
