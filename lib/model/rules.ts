/**
 * The API server's rules for the objects kip reads, in one table: enumerations, size limits,
 * served API versions, the addresses an endpoint may not have, and the known fields of each
 * kind. validate.ts, validate_endpoints.ts and load.ts apply them; README's "What is read,
 * and how it is checked" lists them.
 *
 * Sources: k8s.io/api (core/v1, discovery/v1, apps/v1 types), k8s.io/apimachinery validation
 * (names, labels, annotations) and k8s.io/kubernetes pkg/apis/{core,discovery}/validation.
 */
import type { IP } from "./ip.ts";

/** The values each enumeration field accepts (an empty string takes the field's default). */
export const ENUMS = {
  serviceType: ["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"],
  protocol: ["TCP", "UDP", "SCTP"],
  trafficPolicy: ["Cluster", "Local"],
  sessionAffinity: ["None", "ClientIP"],
  ipFamily: ["IPv4", "IPv6"],
  ipFamilyPolicy: ["SingleStack", "PreferDualStack", "RequireDualStack"],
  addressType: ["IPv4", "IPv6", "FQDN"],
  ipMode: ["VIP", "Proxy"],
  trafficDistribution: ["PreferClose", "PreferSameZone", "PreferSameNode"],
} as const;

/** Size limits, as the API server applies them. */
export const LIMITS = {
  /** DNS-1123/1035 label: namespaces, Service names, port names. */
  dnsLabel: 63,
  /** DNS-1123 subdomain: EndpointSlice, Node and workload names, label key prefixes. */
  dnsSubdomain: 253,
  /** Label values and the name part of a label or annotation key. */
  labelValue: 63,
  /** Sum of the lengths (bytes) of every annotation key and value of one object. */
  annotationsTotalBytes: 256 * 1024,
  /** IANA service name: a named targetPort or container port. */
  portName: 15,
  clusterIPs: 2,
  ipFamilies: 2,
  endpointsPerSlice: 1000,
  addressesPerEndpoint: 100,
  portsPerSlice: 20000,
  zoneHints: 8,
  nodeHints: 8,
  affinityTimeoutSeconds: 86400,
  /** kip's bound on a readiness probe's seconds fields (the kubelet's is int32). */
  probeSeconds: 86400,
  /** An httpGet probe's path, and its headers (count, and name + value length). */
  probePath: 2048,
  probeHeaders: 32,
  probeHeaderBytes: 4096,
  /**
   * Nesting of lists and maps in one document. Go's decoders stop at 10000; kip stops at
   * 1000, far beyond any real manifest, so that parsing stays within the stack.
   */
  nestingDepth: 1000,
} as const;

/** The apiVersion kip reads for each kind it reads. */
export const SERVED: Readonly<Record<string, string>> = {
  Service: "v1",
  Endpoints: "v1",
  Node: "v1",
  EndpointSlice: "discovery.k8s.io/v1",
  Pod: "v1",
  Deployment: "apps/v1",
  StatefulSet: "apps/v1",
  ReplicaSet: "apps/v1",
  DaemonSet: "apps/v1",
};

/** The apiVersion kip reads `kind` under, or undefined for a kind kip does not read. */
export function servedVersion(kind: string): string | undefined {
  return Object.hasOwn(SERVED, kind) ? SERVED[kind] : undefined;
}

export const WORKLOAD_KINDS: ReadonlySet<string> = new Set([
  "Pod",
  "Deployment",
  "StatefulSet",
  "ReplicaSet",
  "DaemonSet",
]);

/**
 * API groups built into Kubernetes where one of these kinds may appear under an old version
 * (`discovery.k8s.io/v1beta1`, `extensions/v1beta1`, `apps/v1beta2`). Another group's kind of
 * the same name (Knative's `serving.knative.dev/v1 Service`) is a custom resource: skipped.
 */
const BUILTIN_GROUPS = new Set(["", "core", "apps", "extensions", "discovery.k8s.io"]);

/**
 * Why `apiVersion` does not serve `kind`, when kind is one kip reads and apiVersion belongs to
 * a built-in group; undefined when it does, or when the object is someone else's resource.
 */
export function apiVersionProblem(apiVersion: string, kind: string): string | undefined {
  const want = servedVersion(kind);
  if (want === undefined || apiVersion === want) return undefined;
  const slash = apiVersion.indexOf("/");
  const group = slash < 0 ? "" : apiVersion.slice(0, slash);
  if (!BUILTIN_GROUPS.has(group)) return undefined;
  return `the API server does not serve ${kind} under this apiVersion (removed or unknown); use ${want}`;
}

/**
 * Why an endpoint address is refused (k8s ValidateEndpointIP, also used for external IPs):
 * unspecified, loopback, link-local (169.254.169.254 is a cloud metadata server) or
 * link-local multicast, in both families.
 */
export function specialIPProblem(ip: IP): string | undefined {
  const b = ip.bytes;
  if (b.every((x) => x === 0)) return "may not be unspecified";
  if (ip.family === "IPv4") {
    if (b[0] === 127) return "may not be in the loopback range (127.0.0.0/8, ::1/128)";
    if (b[0] === 169 && b[1] === 254) return "may not be in the link-local range (169.254.0.0/16, fe80::/10)";
    if (b[0] === 224 && b[1] === 0 && b[2] === 0)
      return "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)";
    return undefined;
  }
  if (b.every((x, i) => x === (i === 15 ? 1 : 0))) return "may not be in the loopback range (127.0.0.0/8, ::1/128)";
  if (b[0] === 0xfe && (b[1] & 0xc0) === 0x80) return "may not be in the link-local range (169.254.0.0/16, fe80::/10)";
  if (b[0] === 0xff && (b[1] & 0x0f) === 0x02)
    return "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)";
  return undefined;
}

// ---------------------------------------------------------------------------------------
// Known fields, for unknown-field warnings (as kubectl's field validation gives them).

/**
 * A field's shape: `ANY` (any value; not looked into), `MAP` (free keys: labels,
 * annotations, selectors), a closed object (only these fields), an open object (these
 * fields are looked into, others are accepted: the large specs kip reads a little of), or a
 * list of one of those. Objects' fields have no prototype (made by `obj` and `open` only), so
 * that a key is looked up in them directly.
 */
export type Shape = "any" | "map" | { fields: Readonly<Record<string, Shape>>; open?: boolean } | { list: Shape };

const ANY = "any" as const;
const MAP = "map" as const;
/** Fields without a prototype, so that `fields[key]` is only ever a field (no `toString`, no `__proto__`). */
const own = (fields: Record<string, Shape>) => Object.assign(Object.create(null), fields) as Record<string, Shape>;
const obj = (fields: Record<string, Shape>): Shape => ({ fields: own(fields) });
const open = (fields: Record<string, Shape>): Shape => ({ fields: own(fields), open: true });
const list = (of: Shape): Shape => ({ list: of });

const OBJECT_META = obj({
  name: ANY,
  generateName: ANY,
  namespace: ANY,
  selfLink: ANY,
  uid: ANY,
  resourceVersion: ANY,
  generation: ANY,
  creationTimestamp: ANY,
  deletionTimestamp: ANY,
  deletionGracePeriodSeconds: ANY,
  labels: MAP,
  annotations: MAP,
  ownerReferences: ANY,
  finalizers: ANY,
  managedFields: ANY,
});

const TYPE_META = { apiVersion: ANY, kind: ANY, metadata: OBJECT_META };

const SERVICE_PORT = obj({ name: ANY, protocol: ANY, appProtocol: ANY, port: ANY, targetPort: ANY, nodePort: ANY });

const SERVICE = obj({
  ...TYPE_META,
  spec: obj({
    ports: list(SERVICE_PORT),
    selector: MAP,
    clusterIP: ANY,
    clusterIPs: ANY,
    type: ANY,
    externalIPs: ANY,
    sessionAffinity: ANY,
    loadBalancerIP: ANY,
    loadBalancerSourceRanges: ANY,
    externalName: ANY,
    externalTrafficPolicy: ANY,
    healthCheckNodePort: ANY,
    publishNotReadyAddresses: ANY,
    sessionAffinityConfig: obj({ clientIP: obj({ timeoutSeconds: ANY }) }),
    ipFamilies: ANY,
    ipFamilyPolicy: ANY,
    allocateLoadBalancerNodePorts: ANY,
    loadBalancerClass: ANY,
    internalTrafficPolicy: ANY,
    trafficDistribution: ANY,
  }),
  status: obj({
    loadBalancer: obj({
      ingress: list(
        obj({ ip: ANY, hostname: ANY, ipMode: ANY, ports: list(obj({ port: ANY, protocol: ANY, error: ANY })) }),
      ),
    }),
    conditions: ANY,
  }),
});

const ENDPOINT_PORT = obj({ name: ANY, protocol: ANY, port: ANY, appProtocol: ANY });

const ENDPOINT_SLICE = obj({
  ...TYPE_META,
  addressType: ANY,
  endpoints: list(
    obj({
      addresses: ANY,
      conditions: obj({ ready: ANY, serving: ANY, terminating: ANY }),
      hostname: ANY,
      targetRef: ANY,
      deprecatedTopology: MAP,
      nodeName: ANY,
      zone: ANY,
      hints: obj({ forZones: list(obj({ name: ANY })), forNodes: list(obj({ name: ANY })) }),
    }),
  ),
  ports: list(ENDPOINT_PORT),
});

const ENDPOINT_ADDRESS = obj({ ip: ANY, hostname: ANY, nodeName: ANY, targetRef: ANY });

const ENDPOINTS = obj({
  ...TYPE_META,
  subsets: list(
    obj({ addresses: list(ENDPOINT_ADDRESS), notReadyAddresses: list(ENDPOINT_ADDRESS), ports: list(ENDPOINT_PORT) }),
  ),
});

const NODE = obj({
  ...TYPE_META,
  spec: obj({
    podCIDR: ANY,
    podCIDRs: ANY,
    providerID: ANY,
    unschedulable: ANY,
    taints: ANY,
    configSource: ANY,
    externalID: ANY,
  }),
  // Status grows a field most releases; kip reads only the addresses.
  status: open({ addresses: list(obj({ type: ANY, address: ANY })) }),
});

const CONTAINER_PORT = obj({ name: ANY, hostPort: ANY, containerPort: ANY, protocol: ANY, hostIP: ANY });
/** A pod spec is large and grows every release: only what simulation reads is looked into. */
const POD_SPEC = open({ containers: list(open({ ports: list(CONTAINER_PORT) })) });
const POD = obj({ ...TYPE_META, spec: POD_SPEC, status: open({ podIP: ANY, podIPs: list(obj({ ip: ANY })) }) });
const WORKLOAD = obj({
  ...TYPE_META,
  spec: open({ replicas: ANY, template: obj({ metadata: OBJECT_META, spec: POD_SPEC }) }),
  status: ANY,
});

/** The Service annotation that holds a readiness probe for `kip sync --manifests` (probe.ts). */
export const PROBE_ANNOTATION = "kip/readiness-probe";

/**
 * The `kip/readiness-probe` annotation's value: a v1 Probe (core/v1 types). `exec`, `grpc`,
 * `host` and `terminationGracePeriodSeconds` are known, so that probe.ts refuses them by name
 * rather than warn that they are unknown.
 */
export const READINESS_PROBE: Shape = obj({
  exec: ANY,
  grpc: ANY,
  tcpSocket: obj({ port: ANY, host: ANY }),
  httpGet: obj({ path: ANY, port: ANY, host: ANY, scheme: ANY, httpHeaders: list(obj({ name: ANY, value: ANY })) }),
  initialDelaySeconds: ANY,
  periodSeconds: ANY,
  timeoutSeconds: ANY,
  successThreshold: ANY,
  failureThreshold: ANY,
  terminationGracePeriodSeconds: ANY,
});

/** The known fields of each kind kip reads. */
export const KNOWN_FIELDS: Readonly<Record<string, Shape>> = {
  Service: SERVICE,
  EndpointSlice: ENDPOINT_SLICE,
  Endpoints: ENDPOINTS,
  Node: NODE,
  Pod: POD,
  Deployment: WORKLOAD,
  StatefulSet: WORKLOAD,
  ReplicaSet: WORKLOAD,
  DaemonSet: WORKLOAD,
};

/**
 * Warn about each field `shape` does not know, with its path: `spec.ports[0].targetport:
 * unknown field (did you mean "targetPort"?)`. Visits only the known structure, once. The
 * path is one array pushed and popped on the way down (copied only for a warning): every
 * endpoint of every slice is visited, and a new array per field was a tenth of loading.
 */
export function checkUnknownFields(
  shape: Shape,
  value: unknown,
  path: (string | number)[],
  warn: (path: (string | number)[], message: string) => void,
): void {
  visitFields(shape, value, [...path], warn);
}

function visitFields(
  shape: Shape,
  value: unknown,
  path: (string | number)[],
  warn: (path: (string | number)[], message: string) => void,
): void {
  if (shape === "any" || shape === "map" || typeof value !== "object" || value === null) return;
  if ("list" in shape) {
    if (!Array.isArray(value) || shape.list === "any") return;
    for (let i = 0; i < value.length; i++) {
      path.push(i);
      visitFields(shape.list, value[i], path, warn);
      path.pop();
    }
    return;
  }
  if (Array.isArray(value)) return;
  const fields = shape.fields;
  // Object.keys, not for-in: the same keys (a parsed object's own, all enumerable), and the
  // engine keeps one key list per object shape, which 100k endpoints of one shape share.
  const keys = Object.keys(value);
  for (let k = 0; k < keys.length; k++) {
    const key = keys[k];
    const sub = fields[key] as Shape | undefined;
    if (sub === undefined) {
      if (shape.open) continue;
      const known = Object.keys(fields);
      const lower = key.toLowerCase();
      const near = known.find((k) => k.toLowerCase() === lower) ?? known.find((k) => nearlyEqual(k, key));
      warn([...path, key], `unknown field${near ? ` (did you mean "${near}"?)` : ""}`);
    } else if (sub !== "any" && sub !== "map") {
      path.push(key);
      visitFields(sub, (value as Record<string, unknown>)[key], path, warn);
      path.pop();
    }
  }
}

/** Same but for case, or one character added, dropped or changed: `targetport`, `condition`. */
function nearlyEqual(known: string, typed: string): boolean {
  const a = known.toLowerCase();
  const b = typed.toLowerCase();
  if (a === b) return true;
  if (Math.abs(a.length - b.length) > 1 || Math.min(a.length, b.length) < 4) return false;
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  // After the first difference the rest must match with one character skipped on either side.
  return a.slice(i + 1) === b.slice(i + 1) || a.slice(i + 1) === b.slice(i) || a.slice(i) === b.slice(i + 1);
}
