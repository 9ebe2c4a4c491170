/**
 * Service → per-port entries for one IP family (spec §1.1, §1.2).
 */
import { familyOf, type IPFamily } from "../model/ip.ts";
import { HEADLESS_LABEL, type Protocol, SERVICE_PROXY_NAME_LABEL, type Service } from "../model/types.ts";
import { type ServiceChains, serviceChains, servicePortName } from "./names.ts";

/** Everything the rule builder needs about one service port in one family. */
export interface ServicePortInfo {
  /** `namespace/name`: the unit of change tracking. */
  serviceKey: string;
  /** ServicePortName string, `ns/name:port` or `ns/name`. */
  spn: string;
  /** servicePortKey(spn, protocol): what its endpoints (and a sync's cached rules) are kept under. */
  key: string;
  namespace: string;
  name: string;
  portName: string;
  protocol: Protocol;
  /** Lowercase protocol, as written after `-m` and `-p`. */
  proto: string;
  port: number;
  nodePort: number;
  clusterIP: string;
  externalIPs: string[];
  loadBalancerVIPs: string[];
  loadBalancerSourceRanges: string[];
  /** ClientIP affinity timeout in seconds; 0 = no affinity. */
  affinitySeconds: number;
  healthCheckNodePort: number;
  externalPolicyLocal: boolean;
  internalPolicyLocal: boolean;
  externallyAccessible: boolean;
  usesClusterEndpoints: boolean;
  usesLocalEndpoints: boolean;
  chains: ServiceChains;
}

/** The key endpoints are stored under: ServicePortName string plus protocol. */
export function servicePortKey(spn: string, protocol: Protocol): string {
  return `${spn} ${protocol}`;
}

/** True when kube-proxy's informer selector would leave the object out (spec §1.1). */
export function excludedByLabels(labels: Record<string, string>): boolean {
  return SERVICE_PROXY_NAME_LABEL in labels || HEADLESS_LABEL in labels;
}

export interface ServicePortOptions {
  family: IPFamily;
  /** Gate LoadBalancerIPMode (GA): ingress with an ipMode other than VIP is skipped. */
  loadBalancerIPMode: boolean;
}

/** The service's ports in this family, or [] when the family's proxier would not see it. */
export function servicePorts(svc: Service, opts: ServicePortOptions): ServicePortInfo[] {
  if (excludedByLabels(svc.labels)) return [];
  if (svc.type === "ExternalName") return [];
  const first = svc.clusterIPs[0];
  if (first === undefined || first === "" || first === "None") return [];
  let clusterIP: string | undefined;
  if (svc.ipFamilies.length === 0) {
    if (familyOf(first) === opts.family) clusterIP = first;
  } else {
    const i = svc.ipFamilies.indexOf(opts.family);
    if (i >= 0) clusterIP = svc.clusterIPs[i];
  }
  if (!clusterIP) return [];

  const inFamily = (s: string) => familyOf(s) === opts.family;
  const externalIPs = svc.externalIPs.filter(inFamily);
  const loadBalancerVIPs: string[] = [];
  for (const ing of svc.loadBalancerIngress) {
    if (!ing.ip) continue;
    if (opts.loadBalancerIPMode && ing.ipMode && ing.ipMode !== "VIP") continue;
    if (inFamily(ing.ip)) loadBalancerVIPs.push(ing.ip);
  }
  const loadBalancerSourceRanges = svc.loadBalancerSourceRanges.filter(inFamily);
  const isLB = svc.type === "LoadBalancer";
  const etpLocal =
    svc.externalTrafficPolicy === "Local" &&
    (isLB || svc.type === "NodePort" || (svc.type === "ClusterIP" && svc.externalIPs.length > 0));
  const itpLocal = svc.internalTrafficPolicy === "Local";
  const serviceKey = `${svc.namespace}/${svc.name}`;

  return svc.ports.map((p) => {
    const spn = servicePortName(svc.namespace, svc.name, p.name);
    const externallyAccessible = p.nodePort !== 0 || loadBalancerVIPs.length > 0 || externalIPs.length > 0;
    return {
      serviceKey,
      spn,
      key: servicePortKey(spn, p.protocol),
      namespace: svc.namespace,
      name: svc.name,
      portName: p.name,
      protocol: p.protocol,
      proto: p.protocol.toLowerCase(),
      port: p.port,
      nodePort: p.nodePort,
      clusterIP,
      externalIPs,
      loadBalancerVIPs,
      loadBalancerSourceRanges,
      affinitySeconds: svc.sessionAffinity === "ClientIP" ? svc.affinityTimeoutSeconds || 10800 : 0,
      healthCheckNodePort: isLB && svc.externalTrafficPolicy === "Local" ? svc.healthCheckNodePort : 0,
      externalPolicyLocal: etpLocal,
      internalPolicyLocal: itpLocal,
      externallyAccessible,
      usesClusterEndpoints: !itpLocal || externallyAccessible,
      usesLocalEndpoints: itpLocal || (etpLocal && externallyAccessible),
      chains: serviceChains(spn, p.protocol),
    };
  });
}
