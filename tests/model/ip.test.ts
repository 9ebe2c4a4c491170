import { expect, test } from "bun:test";
import { cidrContains, joinHostPort, parseCIDR, parseIP } from "../../lib/model/ip.ts";

test("IPv4 with leading zeros is decimal, written canonically", () => {
  expect(parseIP("010.001.0.1")?.text).toBe("10.1.0.1");
  expect(parseIP("010.096.000.001")?.text).toBe("10.96.0.1");
  expect(parseIP("1.2.3.00")?.text).toBe("1.2.3.0");
  expect(parseIP("0.0.0.0")?.text).toBe("0.0.0.0");
  expect(parseIP("10.0.100.1")?.bytes).toEqual([10, 0, 100, 1]);
  expect(parseIP("255.255.255.255")?.bytes).toEqual([255, 255, 255, 255]);
});

test("a canonical IPv4 text is kept as given (the loader keeps no second copy)", () => {
  const s = ["10.128", "0.5"].join(".");
  expect(parseIP(s)?.text).toBe(s);
});

test("IPv6 in RFC 5952 form", () => {
  expect(parseIP("FD00:AB34:0000::0020")?.text).toBe("fd00:ab34::20");
  expect(parseIP("2001:db8:0:0:1:0:0:1")?.text).toBe("2001:db8::1:0:0:1");
});

test("anything that is not a plain address is refused", () => {
  for (const bad of [
    "",
    "1.2.3",
    "1.2.3.4.5",
    "1..2.3",
    "1.2.3.4.",
    ".1.2.3",
    "1.2.3.1000",
    "1.2.3.256",
    "1.256.3.4",
    "256.1.1.1",
    "1.2.3.4 ",
    " 1.2.3.4",
    "1.2.3.4\n-A X",
    "1.2.3.4/32",
    "fe80::1%eth0",
    "::ffff:1.2.3.4",
    "1::2::3",
    "0x1.2.3.4",
    "1.2.3.-4",
    '1.2.3.4"',
    "１.2.3.4",
  ])
    expect(parseIP(bad)).toBeUndefined();
});

test("CIDRs come out in network form", () => {
  expect(parseCIDR("10.1.2.3/16")?.text).toBe("10.1.0.0/16");
  expect(parseCIDR("203.0.113.0/25")?.text).toBe("203.0.113.0/25");
  expect(parseCIDR("2001:db8::1/64")?.text).toBe("2001:db8::/64");
  expect(parseCIDR("10.0.0.0/33")).toBeUndefined();
  expect(parseCIDR("10.0.0.0")).toBeUndefined();
  expect(parseCIDR("10.0.0.0/8 ")).toBeUndefined();
});

test("containment and host:port", () => {
  const c = parseCIDR("10.244.0.0/16")!;
  expect(cidrContains(c, parseIP("10.244.255.1")!)).toBe(true);
  expect(cidrContains(c, parseIP("10.245.0.1")!)).toBe(false);
  expect(cidrContains(c, parseIP("::1")!)).toBe(false);
  expect(joinHostPort("fd00::1", 80)).toBe("[fd00::1]:80");
  expect(joinHostPort("10.0.0.1", 80)).toBe("10.0.0.1:80");
});
