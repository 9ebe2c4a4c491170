/** The values matches and targets take, read: addresses, port lists, interfaces, TCP flags. */
import { type CIDR, cidrContains, type IP, parseCIDR, parseIP } from "../model/ip.ts";
import type { Host } from "./host.ts";

/** `a,b/16,…` → addresses and CIDRs; undefined when one does not parse. */
export function parseAddrList(v: string): (IP | CIDR)[] | undefined {
  const out: (IP | CIDR)[] = [];
  for (const part of v.split(",")) {
    const x = part.includes("/") ? parseCIDR(part) : parseIP(part);
    if (!x) return undefined;
    out.push(x);
  }
  return out;
}

export function addrIn(ip: IP, x: IP | CIDR): boolean {
  if ("prefix" in x) return cidrContains(x, ip);
  return x.text === ip.text;
}

/** An address as a person writes it: without a host prefix. */
export const shownAddr = (v: string) => v.replace(/\/(32|128)$/, "");

/** `80`, `80:90`, `:1024`, `1024:`, `80,443` → a test for one port. */
export function portSpec(v: string): ((p: number) => boolean) | undefined {
  const ranges: [number, number][] = [];
  for (const part of v.split(",")) {
    const m = /^(\d*)(?::(\d*))?$/.exec(part);
    if (!m || (m[1] === "" && m[2] === undefined)) return undefined;
    const lo = m[1] === "" ? 0 : Number(m[1]);
    const hi = m[2] === undefined ? lo : m[2] === "" ? 65535 : Number(m[2]);
    ranges.push([lo, hi]);
  }
  return (p) => ranges.some(([lo, hi]) => p >= lo && p <= hi);
}

/** `-i eth0`, `-i veth+` against an interface name. */
export function ifaceMatch(pattern: string, name: string): boolean {
  return pattern.endsWith("+") ? name.startsWith(pattern.slice(0, -1)) : name === pattern;
}

export const TCP_FLAGS: Record<string, number> = {
  FIN: 1,
  SYN: 2,
  RST: 4,
  PSH: 8,
  ACK: 16,
  URG: 32,
  ALL: 63,
  NONE: 0,
};

export function tcpFlags(list: string): number | undefined {
  let n = 0;
  for (const f of list.split(",")) {
    const v = TCP_FLAGS[f.toUpperCase()];
    if (v === undefined) return undefined;
    n |= v;
  }
  return n;
}

export function cmpBytes(a: number[], b: number[]): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return 0;
}

/** The `addrtype` of an address on this host. */
export function addrType(addr: string, host: Host): "LOCAL" | "UNICAST" | "MULTICAST" | "BROADCAST" {
  if (host.isLocal(addr)) return "LOCAL";
  const ip = parseIP(addr);
  if (!ip) return "UNICAST";
  if (ip.family === "IPv4") {
    if (ip.bytes[0] >= 224 && ip.bytes[0] <= 239) return "MULTICAST";
    // Only the limited broadcast: subnet broadcasts would need the host's prefixes.
    if (ip.bytes.every((b) => b === 255)) return "BROADCAST";
  } else if (ip.bytes[0] === 0xff) return "MULTICAST";
  return "UNICAST";
}

/** `10.0.0.1:80`, `10.0.0.1`, `[fd00::1]:80`, `fd00::1` → address and port (no ranges). */
export function parseDnat(to: string, port: number): { ip: string; port: number } | undefined {
  let m = /^\[([^\]]+)\](?::(\d+))?$/.exec(to);
  if (!m && !to.includes("-")) {
    m = /^([^:]+)(?::(\d+))?$/.exec(to);
    if (!m && parseIP(to)) m = [to, to, undefined] as unknown as RegExpExecArray;
  }
  if (!m) return undefined;
  const ip = parseIP(m[1]);
  if (!ip) return undefined;
  return { ip: ip.text, port: m[2] !== undefined ? Number(m[2]) : port };
}
