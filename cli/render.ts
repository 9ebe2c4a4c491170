/**
 * `kip render [PATH...]`: manifests → the iptables-restore input kube-proxy would write.
 */
import { Command, Option } from "@commander-js/extra-typings";
import { allocationSummary } from "../lib/model/allocate.ts";
import type { IPFamily } from "../lib/model/ip.ts";
import type { Problem } from "../lib/model/load.ts";
import { canonicalize } from "../lib/proxy/canonical.ts";
import { type Ruleset, restorePieces, summarize, toJSON } from "../lib/proxy/ruleset.ts";
import { type RenderResult, renderManifests } from "../lib/render.ts";
import { readManifestPaths } from "../lib/sources/files.ts";
import { bare } from "../lib/util/quote.ts";
import { plural } from "../lib/util/text.ts";
import { ManifestErrors, UsageError } from "./errors.ts";
import type { IO } from "./io.ts";
import {
  addNodeFlags,
  addSimulationFlags,
  type ClusterFlagValues,
  type NodeFlagValues,
  resolveClusterFlags,
  resolveProxyConfig,
} from "./node_flags.ts";

const EXAMPLES = `
Examples:
  # The rules kube-proxy would write for the bundled example, on node1
  kip render examples/seed --hostname-override node1 --cluster-cidr 10.244.0.0/16

  # An app repo in CI: cluster IPs, node ports and endpoints made up as the cluster would
  kip render k8s/ --simulate --strict > rules.txt

  # Kustomize or Helm output, with the namespace the deploy would use
  kustomize build overlays/prod | kip render - --simulate -n shop --strict

  # A live cluster's objects, from stdin, IPv6 rules, as JSON
  kubectl get svc,endpointslices -A -o json | kip render - --ip-family IPv6 -o json

  # Canonical order (spec §16), as upstream's golden tests compare
  kip render examples/seed --canonical

Boolean flags also take --no-FLAG and kube-proxy's --FLAG=false.
Exit status: 0 rendered, 1 warnings under --strict, 2 bad flags or bad manifests (nothing on stdout).`;

export function renderCommand() {
  return addSimulationFlags(
    addNodeFlags(
      new Command("render")
        .description("Print the iptables-restore input kube-proxy (iptables mode) would write for these manifests")
        .argument("[paths...]", "manifest files or directories (.yaml, .yml, .json); - for stdin"),
    ),
  )
    .addOption(new Option("--ip-family <family>", "which family's rules").choices(["IPv4", "IPv6"]).default("IPv4"))
    .addOption(new Option("-o, --output <format>", "output format").choices(["restore", "json"]).default("restore"))
    .option("--canonical", "print in the canonical order of upstream's golden tests (spec §16)")
    .option("--strict", "exit 1 when there are warnings")
    .addHelpText("after", EXAMPLES);
}

function printProblems(io: IO, label: string, list: Problem[]): void {
  for (const p of list) io.stderr(`${label}: ${p.file ? `${bare(p.file)}:${p.line}: ` : ""}${p.message}\n`);
}

export interface RenderFlags extends NodeFlagValues, ClusterFlagValues {
  ipFamily: IPFamily;
  output: "restore" | "json";
  canonical?: boolean;
  strict?: boolean;
}

/**
 * Read PATHs and render them with the node flags: the pipeline render, diff and explain share.
 * `summaries` false: the ruleset has no per-port summaries (a caller that only writes the rules).
 */
export function renderPaths(
  paths: string[],
  opts: NodeFlagValues & ClusterFlagValues,
  io: IO,
  family: "IPv4" | "IPv6",
  summaries = true,
): RenderResult & { ruleset: Ruleset } {
  if (paths.length === 0) throw new UsageError("no manifests given: name files or directories, or - for stdin");
  const config = resolveProxyConfig(opts, io);
  const c = resolveClusterFlags(opts);
  const { files, errors: readErrors } = readManifestPaths(paths, io.readStdin);
  if (readErrors.length > 0) throw new UsageError(readErrors.join("\n"));
  const result = renderManifests(files, config, {
    family,
    simulate: c.simulate,
    namespace: c.namespace,
    cluster: c.cluster,
    checkServiceCIDRs: c.checkServiceCIDRs,
    summaries,
  });
  for (const n of result.loaded.notes) io.stderr(`kip: note: ${bare(n.file)}: ${n.message}\n`);
  if (result.errors.length === 0 && result.loaded.state.services.length === 0)
    result.warnings.push({ file: "", line: 0, message: `no Services in ${paths.map(bare).join(" ")}` });
  printProblems(io, "warning", result.warnings);
  if (
    !c.simulate &&
    result.warnings.some((w) =>
      w.message.endsWith("no clusterIP: the API server would allocate one; skipping this Service"),
    )
  )
    io.stderr("kip: hint: --simulate allocates cluster IPs and node ports as the API server would\n");
  if (result.errors.length > 0 || !result.ruleset) {
    printProblems(io, "error", result.errors);
    throw new ManifestErrors(`${plural(result.errors.length, "error")} in the manifests; nothing rendered`);
  }
  if (result.loaded.skipped.size > 0) {
    const kinds = [...result.loaded.skipped].map(([k, n]) => `${k} (${n})`).join(", ");
    const total = [...result.loaded.skipped.values()].reduce((a, b) => a + b, 0);
    io.stderr(`kip: skipped ${plural(total, "object")} of kinds kip does not read: ${kinds}\n`);
  }
  if (result.allocated.length > 0) io.stderr(`kip: simulated: ${allocationSummary(result.allocated)}\n`);
  // Not a spread copy: that would read `restore`, which is made only when asked for.
  return result as RenderResult & { ruleset: Ruleset };
}

/**
 * `-o json` with what the simulation made up marked: per service port `simulated` lists the
 * fields that were allocated (`clusterIP`, `nodePort`) and `endpoints` when they were made
 * from workloads; a top-level `simulated` lists every allocated value.
 */
function withSimulated(json: object, r: RenderResult): object {
  if (r.allocated.length === 0 && r.simulatedEndpoints.size === 0) return json;
  const j = json as { services: { service: string; port: number; protocol: string; simulated?: string[] }[] };
  const services = j.services.map((sp) => {
    const marks: string[] = [];
    for (const a of r.allocated) {
      if (a.service !== sp.service) continue;
      if (a.field === "clusterIP" && !marks.includes("clusterIP")) marks.push("clusterIP");
      if (a.field === "nodePort" && a.port === sp.port && a.protocol === sp.protocol) marks.push("nodePort");
      if (a.field === "healthCheckNodePort") marks.push("healthCheckNodePort");
    }
    if (r.simulatedEndpoints.has(sp.service)) marks.push("endpoints");
    return marks.length > 0 ? { ...sp, simulated: marks } : sp;
  });
  return { ...json, services, simulated: { allocated: r.allocated, endpointsFor: [...r.simulatedEndpoints].sort() } };
}

export function runRender(paths: string[], opts: RenderFlags, io: IO): number {
  const family = opts.ipFamily;
  // Per-port summaries are read by -o json and the summary line on a terminal only.
  const result = renderPaths(paths, opts, io, family, opts.output === "json" || io.stderrIsTTY);
  if (opts.strict && result.warnings.length > 0) {
    io.stderr(`kip: ${plural(result.warnings.length, "warning")} under --strict; nothing rendered\n`);
    return 1;
  }
  const rs = result.ruleset;
  if (opts.output === "json") io.stdout(`${JSON.stringify(withSimulated(toJSON(rs), result), null, 2)}\n`);
  else if (opts.canonical) io.stdout(canonicalize(result.restore));
  // In pieces: a large cluster's 30+ MB of text is never one string.
  else for (const piece of restorePieces(rs)) io.stdout(piece);
  if (io.stderrIsTTY) {
    const s = summarize(rs);
    io.stderr(
      `kip: ${family}: ${s.services} services (${s.servicePorts} ports), ${s.endpoints} endpoints, ${s.chains} chains, ${s.rules} rules\n`,
    );
  }
  return 0;
}
