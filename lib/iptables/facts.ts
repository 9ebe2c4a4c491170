/**
 * What the kernel and iptables do to a rule's values, each written once: protocol numbers,
 * the statistic match's probability rounding, MARK arithmetic and REJECT's default. The
 * normaliser (canonical text), the packet walker (lib/explain) and the tests read them here.
 */
import type { IPFamily } from "../model/ip.ts";

const PROTOCOL_NUMBERS: Record<string, string> = {
  "1": "icmp",
  "6": "tcp",
  "17": "udp",
  "58": "ipv6-icmp",
  "132": "sctp",
};

/** `-p` as iptables-save prints it: numbers of known protocols by name, names in lowercase. */
export function protocolName(p: string): string {
  return Object.hasOwn(PROTOCOL_NUMBERS, p) ? PROTOCOL_NUMBERS[p] : p.toLowerCase();
}

/**
 * The chance the kernel gives `--probability p`: it keeps round(p × 2^31) and draws 31 bits.
 * Not clamped: 0 and 1 bound what iptables accepts.
 */
export function kernelRound(p: number): number {
  return Math.round(p * 2 ** 31) / 2 ** 31;
}

/** A probability as iptables-save prints it back: the kernel's value with 11 decimals. */
export function kernelProbability(p: string): string {
  const n = Number(p);
  if (!Number.isFinite(n)) return p;
  return kernelRound(n).toFixed(11);
}

/** The chance a packet takes a `--probability p` rule (the kernel's rounding, within 0..1). */
export function kernelChance(p: number): number {
  return Math.min(1, Math.max(0, kernelRound(p)));
}

/** A mark or mask value (`0x4000`, `16384`) as an unsigned 32-bit number; undefined if not one. */
export function markNumber(v: string): number | undefined {
  const n = Number(v);
  return v !== "" && Number.isFinite(n) ? n >>> 0 : undefined;
}

/** `V` or `V/M` → [value, mask]; the mask is all ones when left out. */
export function markValueMask(v: string): [number, number] | undefined {
  const slash = v.indexOf("/");
  const value = markNumber(slash < 0 ? v : v.slice(0, slash));
  const mask = slash < 0 ? 0xffffffff : markNumber(v.slice(slash + 1));
  return value === undefined || mask === undefined ? undefined : [value, mask];
}

/** The MARK target's options, in the order the walker looks for them. */
export const MARK_OPTIONS = ["--set-xmark", "--set-mark", "--or-mark", "--and-mark", "--xor-mark"] as const;

/**
 * A MARK target option as the kernel keeps it, `--set-xmark V/M`: new = (mark & ~M) ^ V.
 * `--set-mark V/M` is stored as V/(V|M), `--or-mark V` as V/V, `--xor-mark V` as V/0,
 * `--and-mark V` as 0/~V. undefined: not a MARK option, or not a number.
 */
export function xmarkOf(option: string, v: string): [number, number] | undefined {
  const vm = markValueMask(v);
  if (!vm) return undefined;
  const [value, mask] = vm;
  switch (option) {
    case "--set-xmark":
      return [value, mask];
    case "--set-mark":
      return [value, (mask | value) >>> 0];
    case "--or-mark":
      return [value, value];
    case "--xor-mark":
      return [value, 0];
    case "--and-mark":
      return [0, ~value >>> 0];
  }
  return undefined;
}

/** A packet's mark after `--set-xmark V/M`. */
export function applyXmark(mark: number, [value, mask]: [number, number]): number {
  return ((mark & ~mask) ^ value) >>> 0;
}

/** REJECT's `--reject-with` when none is given, as iptables-save prints it. */
export function defaultRejectWith(family: IPFamily): string {
  return family === "IPv4" ? "icmp-port-unreachable" : "icmp6-port-unreachable";
}
