/**
 * Model objects for tests, with the API server's defaults: override what a test is about.
 */
import type { EndpointSlice, Service } from "../../lib/model/types.ts";

/** A ClusterIP Service `ns/name` on `ip`, one TCP port "http" 80. */
export function modelService(namespace: string, name: string, ip: string, over: Partial<Service> = {}): Service {
  return {
    namespace,
    name,
    labels: {},
    type: "ClusterIP",
    clusterIPs: [ip],
    ipFamilies: ["IPv4"],
    ports: [{ name: "http", protocol: "TCP", port: 80, nodePort: 0 }],
    externalIPs: [],
    loadBalancerSourceRanges: [],
    loadBalancerIngress: [],
    sessionAffinity: "None",
    affinityTimeoutSeconds: 0,
    externalTrafficPolicy: "Cluster",
    internalTrafficPolicy: "Cluster",
    healthCheckNodePort: 0,
    ...over,
  };
}

/** An IPv4 slice `name` for Service `service`, port "http" `port`, one endpoint per IP. */
export function modelSlice(
  namespace: string,
  name: string,
  service: string,
  ips: string[],
  port = 8080,
): EndpointSlice {
  return {
    namespace,
    name,
    labels: { "kubernetes.io/service-name": service },
    addressType: "IPv4",
    ports: [{ name: "http", port, protocol: "TCP" }],
    endpoints: ips.map((ip) => ({ addresses: [ip], zoneHints: [], nodeHints: [] })),
  };
}
