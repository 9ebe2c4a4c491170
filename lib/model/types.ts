/**
 * The validated, defaulted subset of Kubernetes objects that the engine reads.
 *
 * Objects reach this shape only through lib/model/validate.ts (or the apiserver source,
 * which uses the same converter), so every address here is canonical text and every name
 * has passed the API server's syntax rules: nothing in these types can inject a rule.
 */
import type { IPFamily } from "./ip.ts";

export type { IPFamily };
export type Protocol = "TCP" | "UDP" | "SCTP";
export type ServiceType = "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName";
export type TrafficPolicy = "Cluster" | "Local";

/** Where an object came from, for messages: `file:line` or an apiserver reference. */
export interface Origin {
  file: string;
  /** May be a getter: finding a line can cost a re-parse. */
  readonly line: number;
}

export interface ServicePort {
  /** "" when unnamed. */
  name: string;
  protocol: Protocol;
  port: number;
  /** 0 when the port has no NodePort. */
  nodePort: number;
  /** The pod port: a number, a container port name, or undefined (= port). */
  targetPort?: number | string;
}

export interface LoadBalancerIngress {
  /** Canonical IP, or undefined for hostname-only ingress. */
  ip?: string;
  ipMode?: string;
}

export interface Service {
  namespace: string;
  name: string;
  labels: Record<string, string>;
  type: ServiceType;
  /** Canonical cluster IPs, `["None"]` for headless, `[]` when none was given. */
  clusterIPs: string[];
  /** Families of clusterIPs, same order; empty for headless/none. */
  ipFamilies: IPFamily[];
  ports: ServicePort[];
  /** Pod selector, undefined when the Service has none. */
  selector?: Record<string, string>;
  externalIPs: string[];
  /** Canonical network form CIDRs. */
  loadBalancerSourceRanges: string[];
  loadBalancerIngress: LoadBalancerIngress[];
  sessionAffinity: "None" | "ClientIP";
  /** ClientIP timeout in seconds (defaulted to 10800); 0 when affinity is None. */
  affinityTimeoutSeconds: number;
  externalTrafficPolicy: TrafficPolicy;
  internalTrafficPolicy: TrafficPolicy;
  /** 0 when unset. */
  healthCheckNodePort: number;
  /** spec.ipFamilyPolicy as written; the API server defaults it to SingleStack. */
  ipFamilyPolicy?: IPFamilyPolicy;
  /** spec.ipFamilies as written (the order is the preference); read when allocating. */
  requestedIPFamilies?: IPFamily[];
  /** spec.publishNotReadyAddresses: the endpoint controller marks every address ready. */
  publishNotReadyAddresses?: boolean;
  /** spec.allocateLoadBalancerNodePorts (LoadBalancer only; default true). */
  allocateLoadBalancerNodePorts?: boolean;
  /**
   * The `kip/readiness-probe` annotation as written (validateService keeps the raw text; the
   * manifests loader parses it into `readinessProbe`). Neither is read by the engine: only
   * `kip sync --manifests` probes (lib/sources/probing.ts).
   */
  readinessProbeAnnotation?: string;
  readinessProbe?: ReadinessProbe;
  origin?: Origin;
}

/**
 * A Pod-style readiness probe (the kubelet's fields, defaults and meaning), for manifests
 * mode. No `exec` and no `host`: kip runs no command from a manifest and probes only the
 * endpoints' own addresses.
 */
export interface ReadinessProbe {
  handler:
    | { type: "tcpSocket"; port?: number | string }
    | {
        type: "httpGet";
        /** Starts with "/"; default "/". */
        path: string;
        port?: number | string;
        scheme: "HTTP" | "HTTPS";
        headers: { name: string; value: string }[];
      };
  initialDelaySeconds: number;
  periodSeconds: number;
  timeoutSeconds: number;
  successThreshold: number;
  failureThreshold: number;
}

export type IPFamilyPolicy = "SingleStack" | "PreferDualStack" | "RequireDualStack";

export interface EndpointPort {
  /** "" when unnamed (the API server's default); null is kept for library callers. */
  name: string | null;
  /** null when unset: kube-proxy skips such a port. */
  port: number | null;
  protocol: Protocol;
}

export interface Endpoint {
  /** Canonical addresses; kube-proxy uses only the first. */
  addresses: string[];
  /** undefined = absent (treated as true for ready/serving, false for terminating). */
  ready?: boolean;
  serving?: boolean;
  terminating?: boolean;
  nodeName?: string;
  zoneHints: string[];
  nodeHints: string[];
}

export interface EndpointSlice {
  namespace: string;
  name: string;
  labels: Record<string, string>;
  addressType: "IPv4" | "IPv6" | "FQDN";
  ports: EndpointPort[];
  endpoints: Endpoint[];
  origin?: Origin;
}

export interface NodeAddress {
  type: string;
  address: string;
}

export interface Node {
  name: string;
  labels: Record<string, string>;
  podCIDRs: string[];
  addresses: NodeAddress[];
  /** Marked for deletion or tainted ToBeDeletedByClusterAutoscaler (health only). */
  unschedulable?: boolean;
}

/** Everything the engine needs from the cluster. */
export interface ClusterState {
  services: Service[];
  endpointSlices: EndpointSlice[];
  /** This node, when known (zone label, pod CIDRs, addresses). */
  node?: Node;
}

export const ZONE_LABEL = "topology.kubernetes.io/zone";
export const SERVICE_NAME_LABEL = "kubernetes.io/service-name";
export const SERVICE_PROXY_NAME_LABEL = "service.kubernetes.io/service-proxy-name";
export const HEADLESS_LABEL = "service.kubernetes.io/headless";
