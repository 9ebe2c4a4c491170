/**
 * kube-proxy's vocabulary (spec §2, §3, §5): the chains it writes, which of them each table
 * holds, and the comments on its rules, each with the parser that reads it back from a dump.
 * Every module that names a KUBE-* chain or reads a kube-proxy comment takes it from here;
 * lib/iptables knows none of it and is handed what it needs (see ownedByKubeProxy).
 */

// The fixed chains (spec §3), as kube-proxy's typed constants name them.
export const KUBE_SERVICES = "KUBE-SERVICES";
export const KUBE_EXTERNAL_SERVICES = "KUBE-EXTERNAL-SERVICES";
export const KUBE_NODEPORTS = "KUBE-NODEPORTS";
export const KUBE_POSTROUTING = "KUBE-POSTROUTING";
export const KUBE_MARK_MASQ = "KUBE-MARK-MASQ";
export const KUBE_FORWARD = "KUBE-FORWARD";
export const KUBE_PROXY_FIREWALL = "KUBE-PROXY-FIREWALL";
/** kubelet's chain: kube-proxy declares it and writes its localnet rule (IPv4, localhost NodePorts). */
export const KUBE_FIREWALL = "KUBE-FIREWALL";
/** Empty, never in a restore input: its absence means someone flushed the tables (spec §3.2). */
export const KUBE_PROXY_CANARY = "KUBE-PROXY-CANARY";

export type FixedChain =
  | typeof KUBE_SERVICES
  | typeof KUBE_EXTERNAL_SERVICES
  | typeof KUBE_NODEPORTS
  | typeof KUBE_POSTROUTING
  | typeof KUBE_MARK_MASQ
  | typeof KUBE_FORWARD
  | typeof KUBE_PROXY_FIREWALL
  | typeof KUBE_FIREWALL;

/** The two tables kube-proxy restores. */
export type KubeTable = "filter" | "nat";

/**
 * Chains declared in every restore input, in kube-proxy's order (spec §4.1). filter also
 * declares KUBE_FIREWALL when localhost NodePorts are in effect (IPv4).
 */
export const FIXED_CHAINS: Readonly<Record<KubeTable, readonly FixedChain[]>> = {
  filter: [KUBE_SERVICES, KUBE_EXTERNAL_SERVICES, KUBE_FORWARD, KUBE_NODEPORTS, KUBE_PROXY_FIREWALL],
  nat: [KUBE_SERVICES, KUBE_NODEPORTS, KUBE_POSTROUTING, KUBE_MARK_MASQ],
};

/**
 * nat's entry chains: service dispatch, which jumps into the per-service chains. A batched
 * restore writes them last (the switch-over), after every chain they jump to.
 */
export const ENTRY_CHAINS: readonly FixedChain[] = [KUBE_SERVICES, KUBE_NODEPORTS];

/** Tables holding a canary, in the order kube-proxy creates them (spec §3.2). */
export const CANARY_TABLES = ["mangle", "nat", "filter"] as const;

/**
 * What `kube-proxy --cleanup` removes besides service chains, per table (spec §14): the fixed
 * chains and the canaries; never kubelet's KUBE-FIREWALL or KUBE-KUBELET-CANARY.
 */
export const OWNED_CHAINS: Readonly<Record<string, readonly string[]>> = {
  nat: [...FIXED_CHAINS.nat, KUBE_PROXY_CANARY],
  filter: [...FIXED_CHAINS.filter, KUBE_PROXY_CANARY],
  mangle: [KUBE_PROXY_CANARY],
  raw: [],
};

// Per-service and per-endpoint chains (spec §2): prefix + hash16 (names.ts).
export const SVC_PREFIX = "KUBE-SVC-";
export const SVL_PREFIX = "KUBE-SVL-";
export const EXT_PREFIX = "KUBE-EXT-";
export const FW_PREFIX = "KUBE-FW-";
export const SEP_PREFIX = "KUBE-SEP-";

/** Prefixes of the chains kube-proxy creates per service and garbage-collects (spec §2). */
export const SERVICE_CHAIN_PREFIXES = [SVC_PREFIX, SVL_PREFIX, SEP_PREFIX, FW_PREFIX, EXT_PREFIX] as const;

export function isServiceChain(chain: string): boolean {
  return SERVICE_CHAIN_PREFIXES.some((p) => chain.startsWith(p));
}

export type ServiceChainKind = "SVC" | "SVL" | "EXT" | "FW" | "SEP";

/** Which kind of service chain `chain` is, or undefined for any other chain. */
export function serviceChainKind(chain: string): ServiceChainKind | undefined {
  if (!chain.startsWith("KUBE-")) return undefined;
  if (chain.startsWith(SEP_PREFIX)) return "SEP";
  if (chain.startsWith(SVC_PREFIX)) return "SVC";
  if (chain.startsWith(SVL_PREFIX)) return "SVL";
  if (chain.startsWith(EXT_PREFIX)) return "EXT";
  if (chain.startsWith(FW_PREFIX)) return "FW";
  return undefined;
}

/** Whether kube-proxy owns `chain` in `table`: what `kube-proxy --cleanup` removes. */
export function ownedByKubeProxy(table: string, chain: string): boolean {
  if (table === "nat" && isServiceChain(chain)) return true;
  return OWNED_CHAINS[table]?.includes(chain) ?? false;
}

/** Prefix of every Kubernetes chain, kube-proxy's and kubelet's alike. */
export const KUBE_CHAIN_PREFIX = "KUBE-";

export function isKubeChain(chain: string): boolean {
  return chain.startsWith(KUBE_CHAIN_PREFIX);
}

// Rule comments (spec §5): the text, without quotes. `spn` is a ServicePortName string
// (`ns/name` or `ns/name:port`), which never holds a space.

/** Where a Service port is reached: the comment on its KUBE-SERVICES rules. */
export type DestinationKind = "cluster IP" | "external IP" | "loadbalancer IP";

/** `ns/name:port cluster IP` (also on the SVC/SVL masquerade rule), `… external IP`, `… loadbalancer IP`. */
export function destinationComment(spn: string, kind: DestinationKind): string {
  return `${spn} ${kind}`;
}

const DESTINATION = /^(\S+\/\S+) (cluster IP|external IP|loadbalancer IP)$/;

/** The Service port and destination kind of a destinationComment, or undefined. */
export function parseDestinationComment(
  comment: string,
): { servicePortName: string; kind: DestinationKind } | undefined {
  const m = DESTINATION.exec(comment);
  return m ? { servicePortName: m[1], kind: m[2] as DestinationKind } : undefined;
}

/** The REJECT (none at all) or DROP (none local under a Local policy) rules' comment. */
export function noEndpointsComment(spn: string, localOnly: boolean): string {
  return localOnly ? `${spn} has no local endpoints` : `${spn} has no endpoints`;
}

const NO_ENDPOINTS = /^(\S+\/\S+) has no (local )?endpoints$/;

/** The Service port of a noEndpointsComment, and whether it was the local-only form. */
export function parseNoEndpointsComment(comment: string): { servicePortName: string; localOnly: boolean } | undefined {
  const m = NO_ENDPOINTS.exec(comment);
  return m ? { servicePortName: m[1], localOnly: m[2] !== undefined } : undefined;
}

const SERVICE_PORT_NAME = /^\S+\/\S+$/;

/**
 * A comment that is a bare ServicePortName (KUBE-NODEPORTS and SEP rules, written without
 * quotes): the name, or undefined.
 */
export function parseServicePortNameComment(comment: string): string | undefined {
  return SERVICE_PORT_NAME.test(comment) ? comment : undefined;
}

/** SVC/SVL rules: `ns/name:port -> 10.0.0.1:80` (left out in large clusters). */
export function endpointComment(spn: string, ipPort: string): string {
  return `${spn} -> ${ipPort}`;
}

export function healthCheckNodePortComment(spn: string): string {
  return `${spn} health check node port`;
}

/** KUBE-PROXY-FIREWALL's DROP of a VIP whose source ranges the FW chain did not accept. */
export function firewallDropComment(spn: string, fwChain: string): string {
  return `${spn} traffic not accepted by ${fwChain}`;
}

/** The FW chain's last rule (no target: the packet falls through to KUBE-PROXY-FIREWALL). */
export function firewallFallThroughComment(spn: string): string {
  return `other traffic to ${spn} will be dropped by ${KUBE_PROXY_FIREWALL}`;
}

/** The EXT chain's rules: cluster policy masquerades all, Local policy only what the node sends. */
export type ExternalRule = "masquerade" | "pod" | "masquerade LOCAL" | "route LOCAL";

export function externalComment(spn: string, rule: ExternalRule): string {
  return `${rule} traffic for ${spn} external destinations`;
}

// Fixed comments of the fixed chains (spec §7).
export const SNAT_COMMENT = "kubernetes service traffic requiring SNAT";
export const LOCALNET_COMMENT = "block incoming localnet connections";
export const NODEPORTS_TAIL_COMMENT = "kubernetes service nodeports; NOTE: this must be the last rule in this chain";
export const FORWARD_COMMENT = "kubernetes forwarding rules";
export const FORWARD_CONNTRACK_COMMENT = "kubernetes forwarding conntrack rule";
