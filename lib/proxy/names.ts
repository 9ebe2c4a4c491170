/**
 * Chain names: `KUBE-SVC-` + the first 16 characters of base32(sha256(text)) (spec §2); the
 * prefixes are in chains.ts.
 */
import type { Protocol } from "../model/types.ts";
import { sha256Words } from "../util/sha256.ts";
import { EXT_PREFIX, FW_PREFIX, SEP_PREFIX, SVC_PREFIX, SVL_PREFIX } from "./chains.ts";

/** RFC 4648 base32's alphabet, as character codes. */
const B32 = new Uint8Array([..."ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"].map((c) => c.charCodeAt(0)));

/** The char codes of a name being made, one array per prefix length: the prefix, 16 digits. */
const codes: number[][] = [];

/**
 * `prefix` + the first 16 chars of RFC 4648 base32 of the digest `h` (80 bits: only the
 * first two and a half words matter), made by one fromCharCode: a flat string. `prefix + hash`
 * would be a rope, copied flat again by the first Set, Map or join that reads it (110k
 * chain names at 10k Services × 10 endpoints).
 */
function named(prefix: string, h: Int32Array): string {
  const n = prefix.length;
  let c = codes[n];
  if (c === undefined) codes[n] = c = new Array<number>(n + 16).fill(0);
  for (let i = 0; i < n; i++) c[i] = prefix.charCodeAt(i);
  const w0 = h[0];
  const w1 = h[1];
  const w2 = h[2];
  c[n] = B32[w0 >>> 27];
  c[n + 1] = B32[(w0 >>> 22) & 31];
  c[n + 2] = B32[(w0 >>> 17) & 31];
  c[n + 3] = B32[(w0 >>> 12) & 31];
  c[n + 4] = B32[(w0 >>> 7) & 31];
  c[n + 5] = B32[(w0 >>> 2) & 31];
  c[n + 6] = B32[((w0 & 3) << 3) | (w1 >>> 29)];
  c[n + 7] = B32[(w1 >>> 24) & 31];
  c[n + 8] = B32[(w1 >>> 19) & 31];
  c[n + 9] = B32[(w1 >>> 14) & 31];
  c[n + 10] = B32[(w1 >>> 9) & 31];
  c[n + 11] = B32[(w1 >>> 4) & 31];
  c[n + 12] = B32[((w1 & 15) << 1) | (w2 >>> 31)];
  c[n + 13] = B32[(w2 >>> 26) & 31];
  c[n + 14] = B32[(w2 >>> 21) & 31];
  c[n + 15] = B32[(w2 >>> 16) & 31];
  return String.fromCharCode.apply(null, c);
}

/** First 16 chars of RFC 4648 base32 of SHA-256 (spec §2). */
export function hash16(text: string): string {
  return named("", sha256Words(text));
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
  const h = sha256Words(spn + protocol.toLowerCase());
  return { svc: named(SVC_PREFIX, h), svl: named(SVL_PREFIX, h), ext: named(EXT_PREFIX, h), fw: named(FW_PREFIX, h) };
}

/** `KUBE-SEP-…` for one endpoint (`ipPort` is `10.0.0.1:80` or `[fd00::1]:80`). */
export function endpointChain(spn: string, protocol: Protocol, ipPort: string): string {
  return endpointChainOf(spn + protocol.toLowerCase(), ipPort);
}

/** endpointChain with `spn + protocol.toLowerCase()` made once per service port (`base`). */
export function endpointChainOf(base: string, ipPort: string): string {
  return named(SEP_PREFIX, sha256Words(base + ipPort));
}
