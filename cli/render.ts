/**
 * `kip render [PATH...]`: manifests → the iptables-restore input kube-proxy would write.
 */
import { Command, Option } from "@commander-js/extra-typings";
import { canonicalize } from "../lib/iptables/canonical.ts";
import type { Problem } from "../lib/model/load.ts";
import { type Ruleset, summarize, toJSON } from "../lib/proxy/ruleset.ts";
import { type RenderResult, renderManifests } from "../lib/render.ts";
import { readManifestPaths } from "../lib/sources/files.ts";
import { type IO, UsageError } from "./io.ts";
import { addNodeFlags, type NodeFlagValues, resolveProxyConfig } from "./node_flags.ts";

const EXAMPLES = `
Examples:
  # The rules kube-proxy would write for the bundled example, on node1
  kip render examples/seed --hostname-override node1 --cluster-cidr 10.244.0.0/16

  # A whole manifest directory in CI, endpoints made up from the Deployments in it
  kip render k8s/ --simulate-endpoints --cluster-cidr 10.244.0.0/16 --strict > rules.txt

  # A live cluster's objects, from stdin, IPv6 rules, as JSON
  kubectl get svc,endpointslices -A -o json | kip render - --ip-family IPv6 -o json

  # Canonical order (spec §16), as upstream's golden tests compare
  kip render examples/seed --canonical

Boolean flags also take --no-FLAG and kube-proxy's --FLAG=false.
Exit status: 0 rendered, 1 warnings under --strict, 2 bad flags or bad manifests (nothing on stdout).`;

export function renderCommand(io: IO, setExit: (code: number) => void) {
  const cmd = addNodeFlags(
    new Command("render")
      .description("Print the iptables-restore input kube-proxy (iptables mode) would write for these manifests")
      .argument("[paths...]", "manifest files or directories (.yaml, .yml, .json); - for stdin"),
  )
    .addOption(new Option("--ip-family <family>", "which family's rules").choices(["IPv4", "IPv6"]).default("IPv4"))
    .addOption(new Option("-o, --output <format>", "output format").choices(["restore", "json"]).default("restore"))
    .option("--canonical", "print in the canonical order of upstream's golden tests (spec §16)")
    .option(
      "--simulate-endpoints",
      "make ready endpoints from matching Deployments/StatefulSets/… for Services without EndpointSlices",
    )
    .option("--strict", "exit 1 when there are warnings")
    .addHelpText("after", EXAMPLES)
    .action((...args) => {
      const [paths, opts] = args as unknown as [string[], RenderFlags];
      setExit(runRender(paths, opts, io));
    });
  return cmd;
}

function printProblems(io: IO, label: string, list: Problem[]): void {
  for (const p of list) io.stderr(`${label}: ${p.file ? `${p.file}:${p.line}: ` : ""}${p.message}\n`);
}

export interface RenderFlags extends NodeFlagValues {
  ipFamily: string;
  output: string;
  canonical?: boolean;
  simulateEndpoints?: boolean;
  strict?: boolean;
}

/** Read PATHs and render them with the node flags: the pipeline render and diff share. */
export function renderPaths(
  paths: string[],
  opts: NodeFlagValues & { simulateEndpoints?: boolean },
  io: IO,
  family: "IPv4" | "IPv6",
): RenderResult & { ruleset: Ruleset } {
  if (paths.length === 0) throw new UsageError("no manifests given: name files or directories, or - for stdin");
  const config = resolveProxyConfig(opts, io);
  if (opts.simulateEndpoints && !config.clusterCIDR)
    throw new UsageError("--simulate-endpoints needs --cluster-cidr to place pod IPs in");
  const { files, errors: readErrors } = readManifestPaths(paths, io.readStdin);
  if (readErrors.length > 0) throw new UsageError(readErrors.join("\n"));
  const result = renderManifests(files, config, { family, simulateEndpoints: opts.simulateEndpoints });
  printProblems(io, "warning", result.warnings);
  if (result.errors.length > 0 || !result.ruleset) {
    printProblems(io, "error", result.errors);
    const n = result.errors.length;
    throw new UsageError(`${n} error${n === 1 ? "" : "s"} in the manifests; nothing rendered`);
  }
  if (result.loaded.skipped.size > 0) {
    const kinds = [...result.loaded.skipped].map(([k, n]) => `${k} (${n})`).join(", ");
    const total = [...result.loaded.skipped.values()].reduce((a, b) => a + b, 0);
    io.stderr(`kip: skipped ${total} object${total === 1 ? "" : "s"} of kinds kip does not read: ${kinds}\n`);
  }
  return { ...result, ruleset: result.ruleset };
}

export function runRender(paths: string[], opts: RenderFlags, io: IO): number {
  const family = opts.ipFamily === "IPv6" ? "IPv6" : "IPv4";
  const result = renderPaths(paths, opts, io, family);
  if (opts.strict && result.warnings.length > 0) {
    io.stderr(
      `kip: ${result.warnings.length} warning${result.warnings.length === 1 ? "" : "s"} under --strict; nothing rendered\n`,
    );
    return 1;
  }
  const rs = result.ruleset;
  if (opts.output === "json") io.stdout(`${JSON.stringify(toJSON(rs), null, 2)}\n`);
  else io.stdout(opts.canonical ? canonicalize(result.restore) : result.restore);
  if (io.stderrIsTTY) {
    const s = summarize(rs);
    io.stderr(
      `kip: ${family}: ${s.services} services (${s.servicePorts} ports), ${s.endpoints} endpoints, ${s.chains} chains, ${s.rules} rules\n`,
    );
  }
  return 0;
}
