/**
 * The cluster's own rules for a Service, beyond its syntax: node ports inside the node-port
 * range, cluster IPs inside the service range, and no loopback, link-local, multicast or
 * unspecified address where traffic is accepted.
 *
 * In a cluster the API server enforces these. `kip sync --manifests` has no API server in
 * front of it, so there they are errors (a manifest must not open port 22 of the host);
 * `kip render` works offline on someone else's cluster settings, so there they are warnings.
 */

import type { ClusterPolicy } from "./allocate.ts";
import { formatPortRange } from "./allocate.ts";
import { cidrContains, type IP, isLoopback, isUnspecified, parseIP } from "./ip.ts";
import type { Path } from "./parse.ts";
import type { Service } from "./types.ts";

/** The cluster's policy checks on Services, and whether breaking one is an error. */
export interface PolicyCheck {
  /** The cluster's node-port and service ranges. */
  cluster: ClusterPolicy;
  /** Cluster IPs must lie in `cluster.serviceCIDRs` (only when the range was given). */
  checkServiceCIDRs: boolean;
  /** Problems are errors (sync --manifests), else warnings (render). */
  enforce: boolean;
}

/** Link-local (169.254/16, fe80::/10) or multicast (224/4, ff00::/8). */
export function isLinkLocalOrMulticast(ip: IP): boolean {
  const b = ip.bytes;
  return ip.family === "IPv4"
    ? (b[0] === 169 && b[1] === 254) || b[0] >= 224
    : (b[0] === 0xfe && (b[1] & 0xc0) === 0x80) || b[0] === 0xff;
}

/** Each problem of a validated Service under the cluster's policy, with its field path. */
export function servicePolicyProblems(svc: Service, p: PolicyCheck): { path: Path; message: string }[] {
  const out: { path: Path; message: string }[] = [];
  const range = p.cluster.nodePorts;
  const inRange = (port: number) => port >= range.base && port < range.base + range.size;
  const rangeText = formatPortRange(range);
  svc.ports.forEach((port, i) => {
    if (port.nodePort !== 0 && !inRange(port.nodePort))
      out.push({
        path: ["spec", "ports", i, "nodePort"],
        message: `${port.nodePort} is outside the node-port range ${rangeText} (--service-node-port-range)`,
      });
  });
  if (
    svc.type === "LoadBalancer" &&
    svc.externalTrafficPolicy === "Local" &&
    svc.healthCheckNodePort !== 0 &&
    !inRange(svc.healthCheckNodePort)
  )
    out.push({
      path: ["spec", "healthCheckNodePort"],
      message: `${svc.healthCheckNodePort} is outside the node-port range ${rangeText} (--service-node-port-range)`,
    });
  svc.clusterIPs.forEach((text, i) => {
    const ip = parseIP(text);
    if (!ip) return; // "None"
    const path = svc.clusterIPs.length > 1 ? ["spec", "clusterIPs", i] : ["spec", "clusterIP"];
    if (isLinkLocalOrMulticast(ip) || isLoopback(ip) || isUnspecified(ip))
      out.push({ path, message: `"${text}" may not be loopback, link-local, multicast or unspecified` });
    else if (p.checkServiceCIDRs) {
      const cidr = p.cluster.serviceCIDRs.find((c) => c.family === ip.family);
      if (!cidr || !cidrContains(cidr, ip))
        out.push({
          path,
          message: `"${text}" is outside the service range ${cidr?.text ?? `(no ${ip.family} range)`} (--service-cluster-ip-range)`,
        });
    }
  });
  svc.loadBalancerIngress.forEach((ing, i) => {
    const ip = ing.ip ? parseIP(ing.ip) : undefined;
    if (ip && (isLinkLocalOrMulticast(ip) || isLoopback(ip) || isUnspecified(ip)))
      out.push({
        path: ["status", "loadBalancer", "ingress", i, "ip"],
        message: `"${ing.ip}" may not be loopback, link-local, multicast or unspecified`,
      });
  });
  return out;
}
