/** lib/iptables/facts.ts: each fact kip's readers share, checked once. */
import { describe, expect, test } from "bun:test";
import {
  applyXmark,
  defaultRejectWith,
  kernelChance,
  kernelProbability,
  markValueMask,
  protocolName,
  xmarkOf,
} from "../../lib/iptables/facts.ts";

describe("facts", () => {
  test("protocol numbers by name, names in lowercase", () => {
    expect(["6", "17", "132", "1", "58", "TCP", "udp", "all", "47"].map(protocolName)).toEqual([
      "tcp",
      "udp",
      "sctp",
      "icmp",
      "ipv6-icmp",
      "tcp",
      "udp",
      "all",
      "47",
    ]);
    expect(protocolName("constructor")).toBe("constructor");
  });

  test("probability: what the kernel keeps, printed and as a chance", () => {
    expect(kernelProbability("0.3333333333")).toBe("0.33333333349");
    expect(kernelProbability("x")).toBe("x");
    expect(kernelChance(0.3333333333)).toBe(715827883 / 2 ** 31);
    expect(Number(kernelProbability("0.2000000000"))).toBeCloseTo(kernelChance(0.2), 11);
    expect([kernelChance(-1), kernelChance(2)]).toEqual([0, 1]);
  });

  test("MARK: every option as --set-xmark does what the option says", () => {
    for (const mark of [0, 0x4000, 0xffff, 0xdead4000, 0xffffffff]) {
      for (const v of [0, 0x4000, 0x8001, 0xffffffff]) {
        const hex = `0x${v.toString(16)}`;
        const x = (o: string, val = hex) => applyXmark(mark, xmarkOf(o, val) ?? [0, 0]);
        expect(x("--or-mark")).toBe((mark | v) >>> 0);
        expect(x("--xor-mark")).toBe((mark ^ v) >>> 0);
        expect(x("--and-mark")).toBe((mark & v) >>> 0);
        expect(x("--set-mark")).toBe(v);
        expect(x("--set-mark", `${hex}/0xff00`)).toBe(((mark & ~0xff00) | v) >>> 0);
        expect(x("--set-xmark", `${hex}/0xff00`)).toBe(((mark & ~0xff00) ^ v) >>> 0);
      }
    }
    expect(xmarkOf("--or-mark", "0x4000")).toEqual([0x4000, 0x4000]);
    expect(xmarkOf("--set-mark", "0x4000")).toEqual([0x4000, 0xffffffff]);
    expect(xmarkOf("--or-mark", "lots")).toBeUndefined();
    expect(xmarkOf("--nope", "1")).toBeUndefined();
    expect(markValueMask("16384/0x4000")).toEqual([0x4000, 0x4000]);
    expect(markValueMask("")).toBeUndefined();
  });

  test("REJECT's default per family", () => {
    expect(defaultRejectWith("IPv4")).toBe("icmp-port-unreachable");
    expect(defaultRejectWith("IPv6")).toBe("icmp6-port-unreachable");
  });
});
