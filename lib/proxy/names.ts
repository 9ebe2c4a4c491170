/**
 * Chain names: `KUBE-SVC-` + the first 16 characters of base32(sha256(text)) (spec §2); the
 * prefixes are in chains.ts.
 */
import type { Protocol } from "../model/types.ts";
import { sha256Words } from "../util/sha256.ts";
import { EXT_PREFIX, FW_PREFIX, SEP_PREFIX, SVC_PREFIX, SVL_PREFIX } from "./chains.ts";

/** RFC 4648 base32's alphabet, as character codes. */
const B32 = new Uint8Array([..."ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"].map((c) => c.charCodeAt(0)));

/** A chain prefix and its char codes (`KUBE-SVC-` → [75, 85, …]), for named. */
interface Prefix {
  text: string;
  codes: number[];
}
const prefix = (text: string): Prefix => ({ text, codes: Array.from(text, (c) => c.charCodeAt(0)) });
const SVC = prefix(SVC_PREFIX);
const SVL = prefix(SVL_PREFIX);
const EXT = prefix(EXT_PREFIX);
const FW = prefix(FW_PREFIX);
const SEP = prefix(SEP_PREFIX);

/** Char code of base32 digit `i` of the digest `h`: its 5 bits from bit 5i, big-endian. */
function digit(h: Int32Array, i: number): number {
  const bit = i * 5;
  const w = bit >>> 5;
  const off = bit & 31;
  // Digits 6 and 12 (bits 30–34, 60–64) straddle two words.
  return B32[(off <= 27 ? h[w] >>> (27 - off) : (h[w] << (off - 27)) | (h[w + 1] >>> (59 - off))) & 31];
}

/** The first 16 chars of RFC 4648 base32 of the digest `h` (80 bits). */
function digits16(h: Int32Array): string {
  // biome-ignore format: eight to a line
  return String.fromCharCode(
    digit(h, 0), digit(h, 1), digit(h, 2), digit(h, 3), digit(h, 4), digit(h, 5), digit(h, 6), digit(h, 7),
    digit(h, 8), digit(h, 9), digit(h, 10), digit(h, 11), digit(h, 12), digit(h, 13), digit(h, 14), digit(h, 15),
  );
}

/**
 * `prefix` + digits16(h), made by one String.fromCharCode: a flat string. `prefix + digits`
 * would be a rope, copied flat again by the first Set, Map or join that reads it (110k chain
 * names at 10k Services × 10 endpoints). The codes go as arguments: an array through
 * `apply` took twice as long.
 */
function named(prefix: Prefix, h: Int32Array): string {
  const p = prefix.codes;
  // KUBE-SVC-, -SVL-, -EXT- and -SEP- have nine chars; KUBE-FW- (eight) is rare.
  if (p.length !== 9) return prefix.text + digits16(h);
  // biome-ignore format: the prefix, then the digits eight to a line
  return String.fromCharCode(
    p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8],
    digit(h, 0), digit(h, 1), digit(h, 2), digit(h, 3), digit(h, 4), digit(h, 5), digit(h, 6), digit(h, 7),
    digit(h, 8), digit(h, 9), digit(h, 10), digit(h, 11), digit(h, 12), digit(h, 13), digit(h, 14), digit(h, 15),
  );
}

/** First 16 chars of RFC 4648 base32 of SHA-256 (spec §2). */
export function hash16(text: string): string {
  return digits16(sha256Words(text));
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
  return { svc: named(SVC, h), svl: named(SVL, h), ext: named(EXT, h), fw: named(FW, h) };
}

/** `KUBE-SEP-…` for one endpoint (`ipPort` is `10.0.0.1:80` or `[fd00::1]:80`). */
export function endpointChain(spn: string, protocol: Protocol, ipPort: string): string {
  return endpointChainOf(spn + protocol.toLowerCase(), ipPort);
}

/** endpointChain with `spn + protocol.toLowerCase()` made once per service port (`base`). */
export function endpointChainOf(base: string, ipPort: string): string {
  return named(SEP, sha256Words(base + ipPort));
}
