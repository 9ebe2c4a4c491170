import { expect, test } from "bun:test";
import { createHash } from "node:crypto";
import fc from "fast-check";
import { endpointChain, hash16, serviceChains, servicePortName } from "../../lib/proxy/names.ts";

test("spec §2 vectors", () => {
  expect(hash16("ns1/svc1:p80tcp")).toBe("XPGD46QRK7WJZT7O");
  expect(hash16("ns5/svc5:p80tcp")).toBe("NUKIZ6OKUXPJNT4C");
  expect(hash16("ns1/svc1:p80tcp10.180.0.1:80")).toBe("SXIVWICOYRO3J4NJ");
  expect(hash16("ns1/svc1:p80tcp[ff06::c1]:80")).toBe("LIGRYQQLSZN4UWQ5");
  expect(hash16("ns1/svc1tcp")).toBe("AQI2S6QIMU7PVVRP");
});

test("the article's chain names", () => {
  expect(serviceChains("default/nginx-svc", "TCP").svc).toBe("KUBE-SVC-HL5LMXD5JFHQZ6LN");
  expect(serviceChains("default/nginx-svc-nodeport", "TCP").ext).toBe("KUBE-EXT-XKWTKZBTDCMU3FHC");
  expect(endpointChain("default/nginx-svc", "TCP", "10.244.1.14:80")).toBe("KUBE-SEP-U46YXJIMXXUGWXXH");
});

test("ServicePortName string: port name only when non-empty, protocol never", () => {
  expect(servicePortName("ns", "svc", "")).toBe("ns/svc");
  expect(servicePortName("ns", "svc", "http")).toBe("ns/svc:http");
  const c = serviceChains("ns/svc:http", "UDP");
  expect(c.svc.slice(9)).toBe(hash16("ns/svc:httpudp"));
  expect([c.svl, c.ext, c.fw].map((x) => x.slice(0, x.lastIndexOf("-") + 1))).toEqual([
    "KUBE-SVL-",
    "KUBE-EXT-",
    "KUBE-FW-",
  ]);
});

/** RFC 4648 base32 of node:crypto's digest, 16 chars: the spec's name, made without lib/util. */
function reference16(text: string): string {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  const bits = [...createHash("sha256").update(text).digest()].map((b) => b.toString(2).padStart(8, "0")).join("");
  let out = "";
  for (let i = 0; i < 80; i += 5) out += alphabet[Number.parseInt(bits.slice(i, i + 5), 2)];
  return out;
}

test("chain names equal the reference on random Service ports and endpoints (whichever hash runs)", () => {
  const label = fc.stringMatching(/^[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?$/);
  const proto = fc.constantFrom<"TCP" | "UDP" | "SCTP">("TCP", "UDP", "SCTP");
  const ipPort = fc.oneof(
    fc.tuple(fc.ipV4(), fc.integer({ min: 1, max: 65535 })).map(([ip, port]) => `${ip}:${port}`),
    fc.tuple(fc.ipV6(), fc.integer({ min: 1, max: 65535 })).map(([ip, port]) => `[${ip}]:${port}`),
  );
  fc.assert(
    fc.property(label, label, fc.option(label, { nil: "" }), proto, ipPort, (ns, name, port, p, ep) => {
      const spn = servicePortName(ns, name, port);
      const base = spn + p.toLowerCase();
      return (
        serviceChains(spn, p).svc === `KUBE-SVC-${reference16(base)}` &&
        endpointChain(spn, p, ep) === `KUBE-SEP-${reference16(base + ep)}`
      );
    }),
    { numRuns: 2000 },
  );
});
