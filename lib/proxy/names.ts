/**
 * Chain names: `KUBE-SVC-` + the first 16 characters of base32(sha256(text)) (spec §2); the
 * prefixes are in chains.ts.
 */
import type { Protocol } from "../model/types.ts";
import { sha256Words } from "../util/sha256.ts";
import { EXT_PREFIX, FW_PREFIX, SEP_PREFIX, SVC_PREFIX, SVL_PREFIX } from "./chains.ts";

const B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/** First 16 chars of RFC 4648 base32 of SHA-256: 80 bits, so only 10 digest bytes matter. */
export function hash16(text: string): string {
  const h = sha256Words(text);
  return (
    b32x8(h[0] >>> 24, h[0] >>> 16, h[0] >>> 8, h[0], h[1] >>> 24) +
    b32x8(h[1] >>> 16, h[1] >>> 8, h[1], h[2] >>> 24, h[2] >>> 16)
  );
}

/** Five bytes (low 8 bits of each argument) → eight base32 digits. */
function b32x8(a: number, b: number, c: number, d: number, e: number): string {
  a &= 255;
  b &= 255;
  c &= 255;
  d &= 255;
  e &= 255;
  return (
    B32[a >> 3] +
    B32[((a & 7) << 2) | (b >> 6)] +
    B32[(b >> 1) & 31] +
    B32[((b & 1) << 4) | (c >> 4)] +
    B32[((c & 15) << 1) | (d >> 7)] +
    B32[(d >> 2) & 31] +
    B32[((d & 3) << 3) | (e >> 5)] +
    B32[e & 31]
  );
}

/** `namespace/name` plus `:portName` when the port is named: kube-proxy's ServicePortName string. */
export function servicePortName(namespace: string, name: string, portName: string): string {
  return portName ? `${namespace}/${name}:${portName}` : `${namespace}/${name}`;
}

/** The per-service-port chain names (spec §2). */
export interface ServiceChains {
  /** `KUBE-SVC-…`: the Service port's cluster-wide endpoints. */
  svc: string;
  /** `KUBE-SVL-…`: its local endpoints (traffic policy Local). */
  svl: string;
  /** `KUBE-EXT-…`: traffic from outside (node ports, external and load-balancer IPs). */
  ext: string;
  /** `KUBE-FW-…`: load-balancer source ranges. */
  fw: string;
}

/**
 * The chain names of one Service port, from its ServicePortName string (`servicePortName`) and
 * protocol.
 */
export function serviceChains(spn: string, protocol: Protocol): ServiceChains {
  const base = hash16(spn + protocol.toLowerCase());
  return { svc: SVC_PREFIX + base, svl: SVL_PREFIX + base, ext: EXT_PREFIX + base, fw: FW_PREFIX + base };
}

/** `KUBE-SEP-…` for one endpoint (`ipPort` is `10.0.0.1:80` or `[fd00::1]:80`). */
export function endpointChain(spn: string, protocol: Protocol, ipPort: string): string {
  return SEP_PREFIX + hash16(spn + protocol.toLowerCase() + ipPort);
}
