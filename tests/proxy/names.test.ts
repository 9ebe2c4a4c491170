import { expect, test } from "bun:test";
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
