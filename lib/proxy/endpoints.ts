/**
 * EndpointSlices → endpoints per service port (spec §1.3): conditions, locality, hints,
 * the v1.31–v1.34 dedup rule, and the `ip:port` string order.
 */
import { type IPFamily, joinHostPort } from "../model/ip.ts";
import { type EndpointSlice, SERVICE_NAME_LABEL } from "../model/types.ts";
import { servicePortName } from "./names.ts";
import { excludedByLabels, servicePortKey } from "./serviceport.ts";

export interface EndpointInfo {
  ip: string;
  port: number;
  /** `10.0.0.1:80` / `[fd00::1]:80`: sort key, dedup key, hash input. */
  ipPort: string;
  ready: boolean;
  serving: boolean;
  terminating: boolean;
  isLocal: boolean;
  zoneHints: string[];
  nodeHints: string[];
  /** Its `KUBE-SEP-…` chain: "" until the rule builder names it (once, for every rule that needs it). */
  chain: string;
}

export interface EndpointsOptions {
  family: IPFamily;
  nodeName: string;
}

const byName = (a: EndpointSlice, b: EndpointSlice) =>
  a.namespace < b.namespace ? -1 : a.namespace > b.namespace ? 1 : a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
const byIpPort = (a: EndpointInfo, b: EndpointInfo) => (a.ipPort < b.ipPort ? -1 : a.ipPort > b.ipPort ? 1 : 0);

/**
 * byIpPort for endpoints of one slice on one port, read from their addresses: `ip:port` is a
 * rope until something reads its chars, and kept unread here a render never makes its 100k
 * flat copies (at 10k Services × 10 endpoints). Both strings end in the same `:port`
 * (`]:port` for IPv6: `end` is that first char's code), so they order as the addresses do,
 * except where one address is the other's prefix: then the shorter one's next char is `end`.
 */
function byAddress(a: EndpointInfo, b: EndpointInfo, end: number): number {
  const x = a.ip;
  const y = b.ip;
  if (x === y) return 0;
  if (x.length < y.length && y.startsWith(x)) return end - y.charCodeAt(x.length);
  if (y.length < x.length && x.startsWith(y)) return x.charCodeAt(y.length) - end;
  return x < y ? -1 : 1;
}

/** Orders endpoints that share an ip:port, so input order never decides which one is kept. */
function tieKey(e: EndpointInfo): string {
  // Ready, then serving, then not terminating sort first: the "first seen" is the most usable.
  return `${e.ready ? 0 : 1}${e.serving ? 0 : 1}${e.terminating ? 1 : 0}${e.isLocal ? 0 : 1} ${e.zoneHints.join(",")} ${e.nodeHints.join(",")}`;
}

/** One slice port's endpoints by ip:port (byAddress), then state. */
function byAddressThenState(a: EndpointInfo, b: EndpointInfo, end: number): number {
  const c = byAddress(a, b, end);
  if (c !== 0) return c;
  const ka = tieKey(a);
  const kb = tieKey(b);
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}

/**
 * Endpoints of every service port found in `slices`, keyed by servicePortKey(spn, protocol),
 * each list sorted by the `ip:port` string.
 */
export function endpointsByServicePort(
  slices: readonly EndpointSlice[],
  opts: EndpointsOptions,
): Map<string, EndpointInfo[]> {
  // Upstream's first-seen order is Go map order; kip fixes it: slices by name, endpoints by
  // ip:port and then by state (spec §1.3, §16).
  const sorted = slices.filter((s) => s.addressType === opts.family && !excludedByLabels(s.labels)).sort(byName);
  const out = new Map<string, EndpointInfo[]>();
  // Service ports fed by more than one slice: who won each ip:port so far (rare; one slice's
  // list is deduplicated in place, without a map).
  let merged: Map<string, Map<string, EndpointInfo>> | undefined;
  for (const slice of sorted) {
    const svcName = slice.labels[SERVICE_NAME_LABEL];
    if (!svcName) continue;
    for (const port of slice.ports) {
      if (port.name === null || port.port === null || port.port === 0) continue;
      const key = servicePortKey(servicePortName(slice.namespace, svcName, port.name), port.protocol);
      const eps = sliceEndpoints(slice, port.port, opts.nodeName);
      const first = out.get(key);
      if (first === undefined) {
        out.set(key, dedupSorted(eps));
        continue;
      }
      merged ??= new Map();
      let seen = merged.get(key);
      if (!seen) merged.set(key, (seen = new Map(first.map((e) => [e.ipPort, e]))));
      // v1.31–v1.34: the first one wins unless a later duplicate is local.
      for (const e of eps) if (!seen.has(e.ipPort) || e.isLocal) seen.set(e.ipPort, e);
    }
  }
  if (merged) for (const [key, seen] of merged) out.set(key, [...seen.values()].sort(byIpPort));
  return out;
}

/** One slice's endpoints on one port, sorted by ip:port and then state. */
function sliceEndpoints(slice: EndpointSlice, port: number, nodeName: string): EndpointInfo[] {
  const eps: EndpointInfo[] = [];
  // Every address is of the slice's type (validated): `ip:port`, or `[ip]:port` for IPv6.
  const end = slice.addressType === "IPv6" ? 93 /* ] */ : 58 /* : */;
  let sorted = true;
  for (const ep of slice.endpoints) {
    const ip = ep.addresses[0];
    if (ip === undefined) continue;
    const e: EndpointInfo = {
      ip,
      port,
      ipPort: joinHostPort(ip, port),
      ready: ep.ready !== false,
      serving: ep.serving !== false,
      terminating: ep.terminating === true,
      isLocal: ep.nodeName !== undefined && ep.nodeName === nodeName,
      zoneHints: ep.zoneHints,
      nodeHints: ep.nodeHints,
      chain: "",
    };
    if (sorted && eps.length > 0 && byAddressThenState(eps[eps.length - 1], e, end) > 0) sorted = false;
    eps.push(e);
  }
  // Slices often list endpoints in order already: then the sort (a comparator call per pair,
  // and more) is skipped.
  return sorted ? eps : eps.sort((a, b) => byAddressThenState(a, b, end));
}

/**
 * A sorted list with each ip:port once, in place: of equal ones the first, unless a later one
 * is local (v1.31–v1.34: then the last local one), as a first-seen map would keep.
 */
function dedupSorted(eps: EndpointInfo[]): EndpointInfo[] {
  let n = 0;
  for (const e of eps) {
    // One port: the same address is the same ip:port.
    if (n > 0 && eps[n - 1].ip === e.ip) {
      if (e.isLocal) eps[n - 1] = e;
    } else eps[n++] = e;
  }
  eps.length = n;
  return eps;
}
