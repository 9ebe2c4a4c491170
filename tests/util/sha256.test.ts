import { expect, test } from "bun:test";
import { createHash } from "node:crypto";
import fc from "fast-check";
import { nativeSha256, sha256, sha256Words, sha256WordsJS } from "../../lib/util/sha256.ts";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const want = (s: string) => createHash("sha256").update(s).digest("hex");
/** The JS loop's digest, whichever path sha256 takes on this runtime. */
const hexJS = (s: string) => Array.from(sha256WordsJS(s), (w) => (w >>> 0).toString(16).padStart(8, "0")).join("");
/** Both paths agree with node:crypto. */
const both = (s: string) => hex(sha256(s)) === want(s) && hexJS(s) === want(s);

test("equals node:crypto at every padding boundary and for non-ASCII text", () => {
  for (const n of [0, 1, 3, 4, 5, 54, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 200, 1000])
    expect(both("x".repeat(n))).toBe(true);
  expect(both("ns/é-ü:☃")).toBe(true);
});

test("non-ASCII anywhere: first word, the word holding the end, a later block, at the boundaries", () => {
  // Byte lengths 55/56/63/64 (where the padding moves to a second block) reached with
  // multi-byte chars, and a non-ASCII char found only after a whole ASCII block was hashed.
  for (const n of [53, 54, 55, 56, 61, 62, 63, 64])
    for (const s of [`é${"x".repeat(n - 2)}`, `${"x".repeat(n - 2)}é`, `${"x".repeat(n - 3)}☃`])
      expect(both(s)).toBe(true);
  for (const s of [`${"a".repeat(64)}é`, `${"a".repeat(130)}☃b`, "\x7f\x80\xff", "😀", "a\u0000b"])
    expect(both(s)).toBe(true);
  expect(both("é".repeat(5000))).toBe(true);
});

test("sha256Words is the digest as big-endian words", () => {
  const s = "default/kubernetes:httpstcp";
  const d = createHash("sha256").update(s).digest();
  const w = sha256Words(s);
  for (let i = 0; i < 8; i++) expect(w[i]).toBe(d.readInt32BE(i * 4));
  const j = sha256WordsJS(s);
  for (let i = 0; i < 8; i++) expect(j[i]).toBe(d.readInt32BE(i * 4));
});

test("equals node:crypto on random strings", () => {
  fc.assert(fc.property(fc.string({ maxLength: 300, unit: "grapheme" }), both));
  fc.assert(fc.property(fc.string({ maxLength: 300 }), both));
  fc.assert(fc.property(fc.string({ maxLength: 300, unit: "binary" }), both));
});

test("under Bun, the native hash is the one used", () => {
  expect(nativeSha256).toBe(typeof Bun !== "undefined");
});

test("the native hash and the JS loop agree on chain-name-like and random text", () => {
  const same = (s: string) => {
    const a = Array.from(sha256Words(s));
    return a.join() === Array.from(sha256WordsJS(s)).join();
  };
  // What chain names hash: ServicePortName + protocol (+ ip:port), IPv4 and IPv6.
  const label = fc.stringMatching(/^[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?$/);
  const spn = fc
    .tuple(label, label, fc.option(label, { nil: "" }))
    .map(([ns, n, p]) => (p ? `${ns}/${n}:${p}` : `${ns}/${n}`));
  const ipPort = fc.oneof(
    fc.tuple(fc.ipV4(), fc.integer({ min: 1, max: 65535 })).map(([ip, port]) => `${ip}:${port}`),
    fc.tuple(fc.ipV6(), fc.integer({ min: 1, max: 65535 })).map(([ip, port]) => `[${ip}]:${port}`),
  );
  const proto = fc.constantFrom("tcp", "udp", "sctp");
  fc.assert(
    fc.property(spn, proto, fc.option(ipPort, { nil: "" }), (a, b, c) => same(a + b + c)),
    { numRuns: 5000 },
  );
  fc.assert(fc.property(fc.string({ maxLength: 200, unit: "binary" }), same), { numRuns: 2000 });
  // Lone surrogates: both hash U+FFFD's bytes, as TextEncoder writes them.
  for (const s of ["\ud800", "a\udc00b", "\ud83d", `${"x".repeat(60)}\udfff`]) {
    expect(same(s)).toBe(true);
    expect(both(s)).toBe(true);
  }
});
