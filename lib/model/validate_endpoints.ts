/**
 * Validation and defaulting of discovery.k8s.io/v1 EndpointSlices and v1 Endpoints, as the API
 * server would do them; Endpoints are converted as the EndpointSlice mirroring controller
 * would. The hot loop of loading: 100k endpoints at 10k Services × 10.
 */
import { quote } from "../util/quote.ts";
import {
  Fields,
  isDNS1123Label,
  isDNS1123Subdomain,
  isLabelValue,
  isObject,
  type Reporter,
  readMeta,
  withFailure,
} from "./fields.ts";
import { type IPFamily, parseIP } from "./ip.ts";
import type { Path } from "./parse.ts";
import { ENUMS, LIMITS, specialIPProblem } from "./rules.ts";
import type { Endpoint, EndpointPort, EndpointSlice, Protocol } from "./types.ts";

const q = quote;
const PROTOCOLS = ENUMS.protocol;

/** Topology hints: zone names are label values, node names are node names; no repeats. */
function hintNames(f: Fields, v: unknown, path: Path, of: "zone" | "node"): string[] {
  const list = f.list(v, path);
  const max = of === "zone" ? LIMITS.zoneHints : LIMITS.nodeHints;
  if (list.length > max) {
    f.r.error(path, `may hold at most ${max} entries`);
    return [];
  }
  const out: string[] = [];
  list.forEach((h, i) => {
    const o = f.item(h, [...path, i]);
    const name = o ? f.str(o.name, [...path, i, "name"]) : undefined;
    if (name === undefined || name === "") f.r.error([...path, i, "name"], "is required");
    else if (of === "zone" ? !isLabelValue(name) : !isDNS1123Subdomain(name))
      f.r.error([...path, i, "name"], `${q(name)} is not a valid ${of} name`);
    else if (out.includes(name)) f.r.error([...path, i, "name"], `duplicate ${of} ${q(name)}`);
    else out.push(name);
  });
  return out;
}

/**
 * The topology hints of an endpoint that has none: one shared, frozen empty list (two lists
 * per endpoint were 200k arrays, ~6 MB of heap, at 10k Services × 10). Read-only by contract.
 */
const NO_HINTS: string[] = Object.freeze([]) as unknown as string[];

/**
 * Node names seen valid, each kept once: an endpoint's nodeName is the same few strings over
 * and over (one per node), so the model holds one copy per node instead of one per endpoint
 * (100k strings at 10k × 10), and the regex runs once per name. Bounded: cleared at 10,000.
 */
const nodeNames = new Map<string, string>();

/** `s` as the shared copy when it is a valid node name, else undefined. */
function nodeNameOf(s: string): string | undefined {
  const known = nodeNames.get(s);
  if (known !== undefined) return known;
  if (!isDNS1123Subdomain(s)) return undefined;
  if (nodeNames.size >= 10_000) nodeNames.clear();
  nodeNames.set(s, s);
  return s;
}

/** An endpoint condition: a boolean, or absent. */
function condition(f: Fields, v: unknown, path: Path, key: string): boolean | undefined {
  return typeof v === "boolean" ? v : f.bool(v, [...path, "conditions", key]);
}

/** Validate and default a discovery.k8s.io/v1 EndpointSlice. */
export function validateEndpointSlice(obj: Record<string, unknown>, r: Reporter): EndpointSlice | undefined {
  const { rep, failed } = withFailure(r);
  const f = new Fields(rep);
  const meta = readMeta(f, obj.metadata, "subdomain", true);
  const addressType = f.oneOf(obj.addressType, ["addressType"], ENUMS.addressType, "IPv4");
  f.required(obj.addressType, ["addressType"]);
  const ports: EndpointPort[] = [];
  let rawPorts = f.list(obj.ports, ["ports"]);
  if (rawPorts.length > LIMITS.portsPerSlice) {
    f.r.error(["ports"], `may hold at most ${LIMITS.portsPerSlice} ports`);
    rawPorts = [];
  }
  const names = new Set<string>();
  rawPorts.forEach((raw, i) => {
    const p = f.item(raw, ["ports", i]);
    if (!p) return;
    // The API server defaults a missing name to "" and protocol to TCP.
    const name = f.str(p.name, ["ports", i, "name"]) ?? "";
    if (name !== "" && !isDNS1123Label(name)) f.r.error(["ports", i, "name"], `${q(name)} is not a valid port name`);
    if (names.has(name)) f.r.error(["ports", i, "name"], `duplicate port name ${q(name)}`);
    names.add(name);
    const port = f.int(p.port, ["ports", i, "port"], 0, 65535) ?? null;
    const protocol = f.oneOf<Protocol>(p.protocol, ["ports", i, "protocol"], PROTOCOLS, "TCP");
    ports.push({ name, port, protocol });
  });
  const endpoints: Endpoint[] = [];
  let rawEps = f.list(obj.endpoints, ["endpoints"]);
  // Past a limit the API server stops there; so does kip (an alias can make lists long).
  if (rawEps.length > LIMITS.endpointsPerSlice) {
    f.r.error(["endpoints"], `may hold at most ${LIMITS.endpointsPerSlice} endpoints`);
    rawEps = [];
  }
  // The hot loop of loading (100k endpoints at 10k Services × 10): field paths are made only
  // for a problem, well-typed values are taken as they are, and absent hints share one list.
  for (let i = 0; i < rawEps.length; i++) {
    const raw = rawEps[i];
    const path = ["endpoints", i];
    const e = isObject(raw) ? raw : f.item(raw, path);
    if (!e) continue;
    let addrs = Array.isArray(e.addresses) ? e.addresses : f.list(e.addresses, [...path, "addresses"]);
    if (addrs.length === 0 || addrs.length > LIMITS.addressesPerEndpoint) {
      f.r.error([...path, "addresses"], `must hold 1 to ${LIMITS.addressesPerEndpoint} addresses`);
      addrs = [];
    }
    const addresses: string[] = [];
    for (let j = 0; j < addrs.length; j++) {
      const a = addrs[j];
      const s = typeof a === "string" ? a : f.str(a, [...path, "addresses", j]);
      if (s === undefined) continue;
      if (addressType === "FQDN") {
        if (!isDNS1123Subdomain(s)) f.r.error([...path, "addresses", j], `${q(s)} is not a valid FQDN`);
        else addresses.push(s);
        continue;
      }
      const ip = parseIP(s);
      if (!ip) f.r.error([...path, "addresses", j], `${q(s)} is not a valid IP address`);
      else if (ip.family !== addressType)
        f.r.error([...path, "addresses", j], `${q(s)} is not an ${addressType} address`);
      else {
        const special = specialIPProblem(ip);
        if (special) f.r.error([...path, "addresses", j], `${q(s)} ${special}`);
        else addresses.push(ip.text);
      }
    }
    const c = (isObject(e.conditions) ? e.conditions : f.obj(e.conditions, [...path, "conditions"])) ?? {};
    const rawNode = e.nodeName;
    const nodeName = typeof rawNode === "string" ? nodeNameOf(rawNode) : f.str(rawNode, [...path, "nodeName"]);
    if (nodeName === undefined && typeof rawNode === "string")
      f.r.error([...path, "nodeName"], `${q(rawNode)} is not a valid node name`);
    const hints = e.hints === undefined ? undefined : f.obj(e.hints, [...path, "hints"]);
    endpoints.push({
      addresses,
      ready: condition(f, c.ready, path, "ready"),
      serving: condition(f, c.serving, path, "serving"),
      terminating: condition(f, c.terminating, path, "terminating"),
      nodeName,
      zoneHints:
        hints?.forZones == null ? NO_HINTS : hintNames(f, hints.forZones, [...path, "hints", "forZones"], "zone"),
      nodeHints:
        hints?.forNodes == null ? NO_HINTS : hintNames(f, hints.forNodes, [...path, "hints", "forNodes"], "node"),
    });
  }
  if (failed()) return undefined;
  return { namespace: meta.namespace, name: meta.name, labels: meta.labels, addressType, ports, endpoints };
}

/**
 * Validate a v1 Endpoints object and convert it as the EndpointSlice mirroring controller
 * would: one slice per subset and address family, `addresses` ready, `notReadyAddresses` not.
 */
export function validateEndpoints(obj: Record<string, unknown>, r: Reporter): EndpointSlice[] | undefined {
  const { rep, failed } = withFailure(r);
  const f = new Fields(rep);
  const meta = readMeta(f, obj.metadata, "subdomain", true);
  const slices: EndpointSlice[] = [];
  f.list(obj.subsets, ["subsets"]).forEach((raw, si) => {
    const s = f.item(raw, ["subsets", si]);
    if (!s) return;
    const ports: EndpointPort[] = [];
    f.list(s.ports, ["subsets", si, "ports"]).forEach((rp, pi) => {
      const path = ["subsets", si, "ports", pi];
      const p = f.item(rp, path);
      if (!p) return;
      const name = f.str(p.name, [...path, "name"]) ?? "";
      if (name !== "" && !isDNS1123Label(name)) f.r.error([...path, "name"], `${q(name)} is not a valid port name`);
      const port = f.required(p.port, [...path, "port"]) ? f.int(p.port, [...path, "port"], 1, 65535) : undefined;
      const protocol = f.oneOf<Protocol>(p.protocol, [...path, "protocol"], PROTOCOLS, "TCP");
      if (port !== undefined) ports.push({ name, port, protocol });
    });
    const byFamily: Record<IPFamily, Endpoint[]> = { IPv4: [], IPv6: [] };
    for (const [key, ready] of [
      ["addresses", true],
      ["notReadyAddresses", false],
    ] as const) {
      f.list(s[key], ["subsets", si, key]).forEach((ra, ai) => {
        const path = ["subsets", si, key, ai];
        const a = f.item(ra, path);
        if (!a) return;
        const ipText = f.required(a.ip, [...path, "ip"]) ? f.ip(a.ip, [...path, "ip"]) : undefined;
        const nodeName = f.str(a.nodeName, [...path, "nodeName"]);
        if (nodeName !== undefined && !isDNS1123Subdomain(nodeName))
          f.r.error([...path, "nodeName"], `${q(nodeName)} is not a valid node name`);
        const ip = ipText ? parseIP(ipText) : undefined;
        if (!ip) return;
        const special = specialIPProblem(ip);
        if (special) {
          f.r.error([...path, "ip"], `${q(a.ip)} ${special}`);
          return;
        }
        byFamily[ip.family].push({
          addresses: [ip.text],
          ready,
          serving: ready,
          nodeName,
          zoneHints: [],
          nodeHints: [],
        });
      });
    }
    for (const fam of ["IPv4", "IPv6"] as const) {
      if (byFamily[fam].length === 0) continue;
      slices.push({
        namespace: meta.namespace,
        name: `${meta.name}-mirror-${si}${fam === "IPv6" ? "-v6" : ""}`,
        labels: {
          "kubernetes.io/service-name": meta.name,
          "endpointslice.kubernetes.io/managed-by": "endpointslicemirroring-controller.k8s.io",
        },
        addressType: fam,
        ports,
        endpoints: byFamily[fam],
      });
    }
  });
  return failed() ? undefined : slices;
}
