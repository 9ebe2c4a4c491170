/**
 * IP and CIDR parsing as kube-proxy reads them, with canonical text output.
 *
 * IPv4 is parsed by hand because kube-proxy's parser accepts leading zeros as decimal
 * (`010.001.0.1` is 10.1.0.1) where ipaddr.js would read them as octal. IPv6 uses ipaddr.js
 * and is written in RFC 5952 form, as Go's net.IP.String() does.
 */
import ipaddr from "ipaddr.js";

/** An address family. */
export type IPFamily = "IPv4" | "IPv6";

/** A parsed address: its family, canonical text and bytes (4 or 16). */
export interface IP {
  /** Its family. */
  family: IPFamily;
  /** Canonical text: IPv4 without leading zeros, IPv6 in RFC 5952 form. */
  text: string;
  /** The address bytes, most significant first. */
  bytes: number[];
}

/** A parsed CIDR in network form (host bits cleared), e.g. `10.244.0.0/16`. */
export interface CIDR {
  /** Its family. */
  family: IPFamily;
  /** Canonical network text, `10.244.0.0/16`. */
  text: string;
  /** The network address bytes (host bits cleared), most significant first. */
  bytes: number[];
  /** The prefix length in bits. */
  prefix: number;
}

/**
 * Dotted-quad IPv4, decimal parts of 1–3 digits (leading zeros are decimal, as kube-proxy
 * reads them). One pass over the characters, no split or regex: the loader parses every
 * endpoint address with it (100k at 10k Services × 10), so it stays allocation-light.
 */
function parseV4(s: string): number[] | undefined {
  const out = [0, 0, 0, 0];
  let part = 0;
  let digits = 0;
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 46 /* . */) {
      if (digits === 0 || part === 3) return undefined;
      out[part++] = n;
      n = 0;
      digits = 0;
    } else if (c >= 48 && c <= 57 && digits < 3) {
      n = n * 10 + (c - 48);
      digits++;
    } else return undefined;
  }
  if (digits === 0 || part !== 3 || n > 255 || out[0] > 255 || out[1] > 255 || out[2] > 255) return undefined;
  out[3] = n;
  return out;
}

/** True when the text is already canonical (no leading zeros), so it can be kept as is. */
function canonicalV4(s: string): boolean {
  for (let i = 0; i < s.length - 1; i++)
    if (s.charCodeAt(i) === 48 && (i === 0 || s.charCodeAt(i - 1) === 46) && s.charCodeAt(i + 1) !== 46) return false;
  return true;
}

/** Parse an IP address; undefined when it is not one (including zones and IPv4-in-IPv6). */
export function parseIP(s: string): IP | undefined {
  if (typeof s !== "string" || s.length === 0 || s.length > 45) return undefined;
  if (!s.includes(":")) {
    const b = parseV4(s);
    if (!b) return undefined;
    // The input's own string when canonical: no second copy of every endpoint address.
    return { family: "IPv4", text: canonicalV4(s) ? s : b.join("."), bytes: b };
  }
  // Zones (`fe80::1%eth0`) and embedded dotted quads are not service addresses.
  if (s.includes("%") || s.includes(".")) return undefined;
  if (!ipaddr.IPv6.isValid(s)) return undefined;
  const v6 = ipaddr.IPv6.parse(s);
  const bytes = v6.toByteArray();
  // Go treats ::ffff:a.b.c.d as IPv4; refusing it keeps families unambiguous.
  if (v6.isIPv4MappedAddress()) return undefined;
  return { family: "IPv6", text: v6.toRFC5952String(), bytes };
}

/** Parse a CIDR; the address part may have host bits set (`10.0.0.5/8` → `10.0.0.0/8`). */
export function parseCIDR(s: string): CIDR | undefined {
  if (typeof s !== "string") return undefined;
  const slash = s.indexOf("/");
  if (slash < 0) return undefined;
  const ip = parseIP(s.slice(0, slash));
  const len = s.slice(slash + 1);
  if (!ip || !/^[0-9]{1,3}$/.test(len)) return undefined;
  const prefix = Number(len);
  const bits = ip.bytes.length * 8;
  if (prefix > bits) return undefined;
  const bytes = maskBytes(ip.bytes, prefix);
  return { family: ip.family, text: `${bytesToText(ip.family, bytes)}/${prefix}`, bytes, prefix };
}

function maskBytes(bytes: number[], prefix: number): number[] {
  return bytes.map((b, i) => {
    const keep = Math.max(0, Math.min(8, prefix - i * 8));
    return keep === 0 ? 0 : b & ((0xff << (8 - keep)) & 0xff);
  });
}

function bytesToText(family: IPFamily, bytes: number[]): string {
  if (family === "IPv4") return bytes.join(".");
  return (ipaddr.fromByteArray(bytes) as ipaddr.IPv6).toRFC5952String();
}

/** True when `ip` lies inside `cidr` (same family only). */
export function cidrContains(cidr: CIDR, ip: IP): boolean {
  if (cidr.family !== ip.family) return false;
  const masked = maskBytes(ip.bytes, cidr.prefix);
  for (let i = 0; i < masked.length; i++) if (masked[i] !== cidr.bytes[i]) return false;
  return true;
}

/** The family of an address or CIDR text, or undefined when it is neither. */
export function familyOf(s: string): IPFamily | undefined {
  return (s.includes("/") ? parseCIDR(s) : parseIP(s))?.family;
}

/** True for 127.0.0.0/8 and ::1. */
export function isLoopback(ip: IP): boolean {
  if (ip.family === "IPv4") return ip.bytes[0] === 127;
  return ip.bytes.every((b, i) => b === (i === 15 ? 1 : 0));
}

/** True for 0.0.0.0 and ::. */
export function isUnspecified(ip: IP): boolean {
  return ip.bytes.every((b) => b === 0);
}

/** `ip:port`, or `[ip]:port` for IPv6: the form kube-proxy uses in hashes and DNAT. */
export function joinHostPort(ip: string, port: number): string {
  return ip.includes(":") ? `[${ip}]:${port}` : `${ip}:${port}`;
}
