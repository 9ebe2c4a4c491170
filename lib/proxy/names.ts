/**
 * Chain names: `KUBE-SVC-` + the first 16 characters of base32(sha256(text)) (spec §2).
 */
import type { Protocol } from "../model/types.ts";
import { sha256 } from "../util/sha256.ts";

const B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/** First 16 chars of RFC 4648 base32 of SHA-256: 80 bits, so only 10 digest bytes matter. */
export function hash16(text: string): string {
  const d = sha256(text);
  let out = "";
  // Two groups of 5 bytes = 40 bits = 8 base32 digits each.
  for (let g = 0; g < 10; g += 5) {
    const hi = d[g]; // top 8 bits
    const lo = ((d[g + 1] << 24) | (d[g + 2] << 16) | (d[g + 3] << 8) | d[g + 4]) >>> 0;
    const v = hi * 2 ** 32 + lo;
    for (let s = 35; s >= 0; s -= 5) out += B32[Math.floor(v / 2 ** s) % 32];
  }
  return out;
}

/** `namespace/name` plus `:portName` when the port is named: kube-proxy's ServicePortName string. */
export function servicePortName(namespace: string, name: string, portName: string): string {
  return portName ? `${namespace}/${name}:${portName}` : `${namespace}/${name}`;
}

/** The per-service-port chain names (spec §2). */
export interface ServiceChains {
  svc: string;
  svl: string;
  ext: string;
  fw: string;
}

export function serviceChains(spn: string, protocol: Protocol): ServiceChains {
  const base = hash16(spn + protocol.toLowerCase());
  return { svc: `KUBE-SVC-${base}`, svl: `KUBE-SVL-${base}`, ext: `KUBE-EXT-${base}`, fw: `KUBE-FW-${base}` };
}

/** `KUBE-SEP-…` for one endpoint (`ipPort` is `10.0.0.1:80` or `[fd00::1]:80`). */
export function endpointChain(spn: string, protocol: Protocol, ipPort: string): string {
  return `KUBE-SEP-${hash16(spn + protocol.toLowerCase() + ipPort)}`;
}

/** Prefixes of the chains kube-proxy creates per service and garbage-collects (spec §2). */
export const SERVICE_CHAIN_PREFIXES = ["KUBE-SVC-", "KUBE-SVL-", "KUBE-SEP-", "KUBE-FW-", "KUBE-EXT-"] as const;

export function isServiceChain(chain: string): boolean {
  return SERVICE_CHAIN_PREFIXES.some((p) => chain.startsWith(p));
}
