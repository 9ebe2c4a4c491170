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
}

export interface EndpointsOptions {
  family: IPFamily;
  nodeName: string;
}

const byName = (a: EndpointSlice, b: EndpointSlice) =>
  a.namespace < b.namespace ? -1 : a.namespace > b.namespace ? 1 : a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
const byIpPort = (a: EndpointInfo, b: EndpointInfo) => (a.ipPort < b.ipPort ? -1 : a.ipPort > b.ipPort ? 1 : 0);

/** Orders endpoints that share an ip:port, so input order never decides which one is kept. */
function tieKey(e: EndpointInfo): string {
  // Ready, then serving, then not terminating sort first: the "first seen" is the most usable.
  return `${e.ready ? 0 : 1}${e.serving ? 0 : 1}${e.terminating ? 1 : 0}${e.isLocal ? 0 : 1} ${e.zoneHints.join(",")} ${e.nodeHints.join(",")}`;
}

const byIpPortThenState = (a: EndpointInfo, b: EndpointInfo) => {
  const c = byIpPort(a, b);
  if (c !== 0) return c;
  const ka = tieKey(a);
  const kb = tieKey(b);
  return ka < kb ? -1 : ka > kb ? 1 : 0;
};

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
  const byKey = new Map<string, Map<string, EndpointInfo>>();
  // Service ports fed by more than one slice need a final merge sort; one slice is sorted.
  const merged = new Set<string>();
  for (const slice of sorted) {
    const svcName = slice.labels[SERVICE_NAME_LABEL];
    if (!svcName) continue;
    for (const port of slice.ports) {
      if (port.name === null || port.port === null || port.port === 0) continue;
      const spn = servicePortName(slice.namespace, svcName, port.name);
      const key = servicePortKey(spn, port.protocol);
      let seen = byKey.get(key);
      if (!seen) byKey.set(key, (seen = new Map()));
      else merged.add(key);
      const eps: EndpointInfo[] = [];
      for (const ep of slice.endpoints) {
        const ip = ep.addresses[0];
        if (ip === undefined) continue;
        eps.push({
          ip,
          port: port.port,
          ipPort: joinHostPort(ip, port.port),
          ready: ep.ready !== false,
          serving: ep.serving !== false,
          terminating: ep.terminating === true,
          isLocal: ep.nodeName !== undefined && ep.nodeName === opts.nodeName,
          zoneHints: ep.zoneHints,
          nodeHints: ep.nodeHints,
        });
      }
      eps.sort(byIpPortThenState);
      for (const e of eps) {
        // v1.31–v1.34: the first one wins unless a later duplicate is local.
        if (!seen.has(e.ipPort) || e.isLocal) seen.set(e.ipPort, e);
      }
    }
  }
  const out = new Map<string, EndpointInfo[]>();
  for (const [key, m] of byKey) {
    const list = [...m.values()];
    out.set(key, merged.has(key) ? list.sort(byIpPort) : list);
  }
  return out;
}
