/**
 * Chain names: `KUBE-SVC-` + the first 16 characters of base32(sha256(text)) (spec §2); the
 * prefixes are in chains.ts.
 */
import type { Protocol } from "../model/types.ts";
import { sha256Words } from "../util/sha256.ts";
import { EXT_PREFIX, FW_PREFIX, SEP_PREFIX, SVC_PREFIX, SVL_PREFIX } from "./chains.ts";

/** RFC 4648 base32's alphabet, as character codes. */
const B32 = new Uint8Array([..."ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"].map((c) => c.charCodeAt(0)));

/**
 * First 16 chars of RFC 4648 base32 of SHA-256: 80 bits, so only the first two and a half
 * digest words matter. One fromCharCode call makes a flat string (16 concatenations made a
 * rope that every later Map lookup of the name flattened again).
 */
export function hash16(text: string): string {
  const h = sha256Words(text);
  const w0 = h[0];
  const w1 = h[1];
  const w2 = h[2];
  return String.fromCharCode(
    B32[w0 >>> 27],
    B32[(w0 >>> 22) & 31],
    B32[(w0 >>> 17) & 31],
    B32[(w0 >>> 12) & 31],
    B32[(w0 >>> 7) & 31],
    B32[(w0 >>> 2) & 31],
    B32[((w0 & 3) << 3) | (w1 >>> 29)],
    B32[(w1 >>> 24) & 31],
    B32[(w1 >>> 19) & 31],
    B32[(w1 >>> 14) & 31],
    B32[(w1 >>> 9) & 31],
    B32[(w1 >>> 4) & 31],
    B32[((w1 & 15) << 1) | (w2 >>> 31)],
    B32[(w2 >>> 26) & 31],
    B32[(w2 >>> 21) & 31],
    B32[(w2 >>> 16) & 31],
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
