/**
 * Stale UDP conntrack entries (spec §10). After a sync that touched a UDP Service, flows to
 * its cluster IP, LoadBalancer IPs, external IPs or NodePort whose reply comes from an
 * address that is no longer a serving endpoint are deleted, so clients stop sending into a
 * pod that is gone. Selection is pure; the `conntrack` tool lists and deletes.
 */

import { execFile } from "../iptables/exec_runner.ts";
import type { IPFamily } from "../model/ip.ts";
import type { ClusterState } from "../model/types.ts";
import { endpointsByServicePort } from "../proxy/endpoints.ts";
import { servicePortKey, servicePorts } from "../proxy/serviceport.ts";

export interface Flow {
  origSrc: string;
  origDst: string;
  origSport: number;
  origDport: number;
  replySrc: string;
  replySport: number;
}

/** One UDP service port: where clients send, and who may answer. */
interface UDPTarget {
  vips: Set<string>;
  port: number;
  nodePort: number;
  allowed: Set<string>;
}

export function udpTargets(
  state: ClusterState,
  family: IPFamily,
  nodeName: string,
  only?: ReadonlySet<string>,
): UDPTarget[] {
  const eps = endpointsByServicePort(state.endpointSlices, { family, nodeName });
  const out: UDPTarget[] = [];
  for (const svc of state.services)
    for (const sp of servicePorts(svc, { family, loadBalancerIPMode: true })) {
      if (sp.protocol !== "UDP" || (only && !only.has(sp.serviceKey))) continue;
      const serving = (eps.get(servicePortKey(sp.spn, sp.protocol)) ?? []).filter((e) => e.serving);
      // A UDP Service with no serving endpoint is left alone (spec §10).
      if (serving.length === 0) continue;
      out.push({
        vips: new Set([sp.clusterIP, ...sp.loadBalancerVIPs, ...sp.externalIPs]),
        port: sp.port,
        nodePort: sp.nodePort,
        allowed: new Set(serving.map((e) => `${e.ip}:${e.port}`)),
      });
    }
  return out;
}

/** The flows to delete: to a target, answered by an address not allowed for it. */
export function staleFlows(flows: readonly Flow[], targets: readonly UDPTarget[]): Flow[] {
  const out: Flow[] = [];
  for (const f of flows)
    for (const t of targets) {
      const toService =
        (t.vips.has(f.origDst) && f.origDport === t.port) || (t.nodePort !== 0 && f.origDport === t.nodePort);
      if (toService && !t.allowed.has(`${f.replySrc}:${f.replySport}`)) {
        out.push(f);
        break;
      }
    }
  return out;
}

/** `conntrack -L` text → UDP flows. */
export function parseConntrack(text: string): Flow[] {
  const out: Flow[] = [];
  for (const line of text.split("\n")) {
    if (!/^\s*(ipv[46]\s+\d+\s+)?udp\s/.test(line)) continue;
    const src = [...line.matchAll(/\bsrc=(\S+)/g)].map((m) => m[1]);
    const dst = [...line.matchAll(/\bdst=(\S+)/g)].map((m) => m[1]);
    const sport = [...line.matchAll(/\bsport=(\d+)/g)].map((m) => Number(m[1]));
    const dport = [...line.matchAll(/\bdport=(\d+)/g)].map((m) => Number(m[1]));
    if (src.length < 2 || dst.length < 1 || sport.length < 2 || dport.length < 1) continue;
    out.push({
      origSrc: src[0],
      origDst: dst[0],
      origSport: sport[0],
      origDport: dport[0],
      replySrc: src[1],
      replySport: sport[1],
    });
  }
  return out;
}

/** Stale flows that one `conntrack -D` removes together: same destination, same stale answerer. */
export interface StaleGroup {
  origDst: string;
  origDport: number;
  replySrc: string;
  replySport: number;
  flows: number;
}

/** Stale flows → one group per (Service address and port, stale endpoint), largest first. */
export function staleGroups(flows: readonly Flow[]): StaleGroup[] {
  const groups = new Map<string, StaleGroup>();
  for (const f of flows) {
    const key = `${f.origDst} ${f.origDport} ${f.replySrc} ${f.replySport}`;
    const g = groups.get(key);
    if (g) g.flows++;
    else groups.set(key, { ...f, flows: 1 });
  }
  return [...groups.values()].sort((a, b) => b.flows - a.flows);
}

/** At most this many `conntrack -D` per pass; the rest waits for the next pass. */
export const MAX_DELETES_PER_PASS = 64;

/**
 * List with the conntrack tool, then delete: one `conntrack -D` per stale Service address and
 * endpoint (filtered by address, port and protocol), not one per flow. Each deletion walks
 * the whole table, so per-flow deletion was quadratic (5,000 flows: 84 s). At most
 * `maxDeletes` deletions run per call; `more` says some were left for another pass.
 */
export async function cleanStaleUDP(
  family: IPFamily,
  targets: readonly UDPTarget[],
  opts: { maxDeletes?: number; prefix?: string[] } = {},
): Promise<{ deleted: number; more: boolean }> {
  if (targets.length === 0) return { deleted: 0, more: false };
  const f = family === "IPv4" ? "ipv4" : "ipv6";
  const prefix = opts.prefix ?? [];
  const list = await execFile([...prefix, "conntrack", "-L", "-f", f, "-p", "udp"]);
  if (list.code !== 0) throw new Error(`conntrack -L: ${list.stderr.trim()}`);
  const groups = staleGroups(staleFlows(parseConntrack(list.stdout), targets));
  const max = opts.maxDeletes ?? MAX_DELETES_PER_PASS;
  let deleted = 0;
  for (const g of groups.slice(0, max)) {
    const r = await execFile([
      ...prefix,
      "conntrack",
      "-D",
      "-f",
      f,
      "-p",
      "udp",
      "--orig-dst",
      g.origDst,
      "--orig-port-dst",
      String(g.origDport),
      "--reply-src",
      g.replySrc,
      "--reply-port-src",
      String(g.replySport),
    ]);
    // "conntrack v1.4.7 (conntrack-tools): 5000 flow entries have been deleted."
    const n = /(\d+) flow entr(?:y|ies) ha(?:s|ve) been deleted/.exec(r.stderr);
    deleted += n ? Number(n[1]) : r.code === 0 ? g.flows : 0;
  }
  return { deleted, more: groups.length > max };
}
