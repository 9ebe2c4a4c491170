/**
 * The validated, defaulted subset of Kubernetes objects that the engine reads.
 *
 * Objects reach this shape only through lib/model/validate.ts and validate_endpoints.ts (or
 * the apiserver source, which uses the same converters), so every address here is canonical
 * text and every name has passed the API server's syntax rules: nothing in these types can
 * inject a rule.
 */
import type { IPFamily } from "./ip.ts";

export type { IPFamily };
/** A port's protocol. */
export type Protocol = "TCP" | "UDP" | "SCTP";
/** spec.type (default ClusterIP). ExternalName Services get no rules. */
export type ServiceType = "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName";
/** externalTrafficPolicy / internalTrafficPolicy: to any endpoint (Cluster), or to this node's only (Local). */
export type TrafficPolicy = "Cluster" | "Local";

/** Where an object came from, for messages: `file:line` or an apiserver reference. */
export interface Origin {
  /** The file, or the apiserver object's reference. */
  file: string;
  /** May be a getter: finding a line can cost a re-parse. */
  readonly line: number;
}

/** One of spec.ports. */
export interface ServicePort {
  /** "" when unnamed. */
  name: string;
  /** Default TCP. */
  protocol: Protocol;
  /** The Service's port (on the cluster IP, external and load-balancer IPs). */
  port: number;
  /** 0 when the port has no NodePort. */
  nodePort: number;
  /** The pod port: a number, a container port name, or undefined (= port). */
  targetPort?: number | string;
}

/** One of status.loadBalancer.ingress. */
export interface LoadBalancerIngress {
  /** Canonical IP, or undefined for hostname-only ingress. */
  ip?: string;
  /** `VIP` (default) or `Proxy`: with the LoadBalancerIPMode gate, a Proxy ingress gets no rules. */
  ipMode?: string;
}

/** A v1 Service, validated and defaulted as the API server would. */
export interface Service {
  /** metadata.namespace (default `default`). */
  namespace: string;
  /** metadata.name. */
  name: string;
  /** metadata.labels (`service.kubernetes.io/service-proxy-name` makes kube-proxy skip it). */
  labels: Record<string, string>;
  /** spec.type. */
  type: ServiceType;
  /** Canonical cluster IPs, `["None"]` for headless, `[]` when none was given. */
  clusterIPs: string[];
  /** Families of clusterIPs, same order; empty for headless/none. */
  ipFamilies: IPFamily[];
  /** spec.ports, in order. */
  ports: ServicePort[];
  /** Pod selector, undefined when the Service has none. */
  selector?: Record<string, string>;
  /** spec.externalIPs, canonical. */
  externalIPs: string[];
  /** Canonical network form CIDRs. */
  loadBalancerSourceRanges: string[];
  /** status.loadBalancer.ingress. */
  loadBalancerIngress: LoadBalancerIngress[];
  /** spec.sessionAffinity (default None). */
  sessionAffinity: "None" | "ClientIP";
  /** ClientIP timeout in seconds (defaulted to 10800); 0 when affinity is None. */
  affinityTimeoutSeconds: number;
  /** spec.externalTrafficPolicy (default Cluster). */
  externalTrafficPolicy: TrafficPolicy;
  /** spec.internalTrafficPolicy (default Cluster). */
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
  /** The parsed `kip/readiness-probe` annotation (manifests mode only). */
  readinessProbe?: ReadinessProbe;
  /** Where the Service was read from. */
  origin?: Origin;
}

/**
 * A Pod-style readiness probe (the kubelet's fields, defaults and meaning), for manifests
 * mode. No `exec` and no `host`: kip runs no command from a manifest and probes only the
 * endpoints' own addresses.
 */
export interface ReadinessProbe {
  /** How to probe: a TCP connect, or an HTTP(S) GET whose 200–399 status means ready. */
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
  /** Seconds before the first probe (default 0). */
  initialDelaySeconds: number;
  /** Seconds between probes (default 10). */
  periodSeconds: number;
  /** Seconds a probe may take (default 1). */
  timeoutSeconds: number;
  /** Successes in a row that make an endpoint ready (default 1). */
  successThreshold: number;
  /** Failures in a row that make it not ready (default 3). */
  failureThreshold: number;
}

/** spec.ipFamilyPolicy: one family, two when the cluster has them, or two required. */
export type IPFamilyPolicy = "SingleStack" | "PreferDualStack" | "RequireDualStack";

/** One of an EndpointSlice's ports. */
export interface EndpointPort {
  /** "" when unnamed (the API server's default); null is kept for library callers. */
  name: string | null;
  /** null when unset: kube-proxy skips such a port. */
  port: number | null;
  /** Default TCP. */
  protocol: Protocol;
}

/** One of an EndpointSlice's endpoints. */
export interface Endpoint {
  /** Canonical addresses; kube-proxy uses only the first. */
  addresses: string[];
  /** undefined = absent (treated as true for ready/serving, false for terminating). */
  ready?: boolean;
  /** conditions.serving: ready, or terminating and still serving. */
  serving?: boolean;
  /** conditions.terminating. */
  terminating?: boolean;
  /** The node the endpoint runs on (decides which endpoints are local). */
  nodeName?: string;
  /** hints.forZones names (topology-aware routing). */
  zoneHints: string[];
  /** hints.forNodes names (PreferSameNode traffic distribution). */
  nodeHints: string[];
}

/** A discovery/v1 EndpointSlice, validated. */
export interface EndpointSlice {
  /** metadata.namespace. */
  namespace: string;
  /** metadata.name. */
  name: string;
  /** metadata.labels; `kubernetes.io/service-name` names its Service. */
  labels: Record<string, string>;
  /** The addresses' type; kube-proxy reads only the family it renders, never FQDN. */
  addressType: "IPv4" | "IPv6" | "FQDN";
  /** ports: the same for every endpoint of the slice. */
  ports: EndpointPort[];
  /** endpoints, in order. */
  endpoints: Endpoint[];
  /** Where the slice was read from. */
  origin?: Origin;
}

/** One of a Node's status.addresses. */
export interface NodeAddress {
  /** `InternalIP`, `ExternalIP`, `Hostname`… */
  type: string;
  /** The address. */
  address: string;
}

/** A v1 Node, as far as kube-proxy reads it. */
export interface Node {
  /** metadata.name. */
  name: string;
  /** metadata.labels (`topology.kubernetes.io/zone` for topology hints). */
  labels: Record<string, string>;
  /** spec.podCIDRs (LocalModeNodeCIDR). */
  podCIDRs: string[];
  /** status.addresses (the node IP when none is configured). */
  addresses: NodeAddress[];
  /** Marked for deletion or tainted ToBeDeletedByClusterAutoscaler (health only). */
  unschedulable?: boolean;
}

/** Everything the engine needs from the cluster. */
export interface ClusterState {
  /** Every Service, of every namespace. */
  services: Service[];
  /** Every EndpointSlice; each names its Service by label. */
  endpointSlices: EndpointSlice[];
  /** This node, when known (zone label, pod CIDRs, addresses). */
  node?: Node;
}

export const ZONE_LABEL = "topology.kubernetes.io/zone";
export const SERVICE_NAME_LABEL = "kubernetes.io/service-name";
export const SERVICE_PROXY_NAME_LABEL = "service.kubernetes.io/service-proxy-name";
export const HEADLESS_LABEL = "service.kubernetes.io/headless";
