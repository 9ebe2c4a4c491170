import { expect, test } from "bun:test";
import { createHash } from "node:crypto";
import fc from "fast-check";
import { sha256, sha256Words } from "../../lib/util/sha256.ts";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const want = (s: string) => createHash("sha256").update(s).digest("hex");

test("equals node:crypto at every padding boundary and for non-ASCII text", () => {
  for (const n of [0, 1, 3, 4, 5, 54, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 200, 1000])
    expect(hex(sha256("x".repeat(n)))).toBe(want("x".repeat(n)));
  expect(hex(sha256("ns/é-ü:☃"))).toBe(want("ns/é-ü:☃"));
});

test("non-ASCII anywhere: first word, the word holding the end, a later block, at the boundaries", () => {
  // Byte lengths 55/56/63/64 (where the padding moves to a second block) reached with
  // multi-byte chars, and a non-ASCII char found only after a whole ASCII block was hashed.
  for (const n of [53, 54, 55, 56, 61, 62, 63, 64])
    for (const s of [`é${"x".repeat(n - 2)}`, `${"x".repeat(n - 2)}é`, `${"x".repeat(n - 3)}☃`])
      expect(hex(sha256(s))).toBe(want(s));
  for (const s of [`${"a".repeat(64)}é`, `${"a".repeat(130)}☃b`, "\x7f\x80\xff", "😀", "a\u0000b"])
    expect(hex(sha256(s))).toBe(want(s));
  expect(hex(sha256("é".repeat(5000)))).toBe(want("é".repeat(5000)));
});

test("sha256Words is the digest as big-endian words", () => {
  const s = "default/kubernetes:httpstcp";
  const d = createHash("sha256").update(s).digest();
  const w = sha256Words(s);
  for (let i = 0; i < 8; i++) expect(w[i]).toBe(d.readInt32BE(i * 4));
});

test("equals node:crypto on random strings", () => {
  fc.assert(fc.property(fc.string({ maxLength: 300, unit: "grapheme" }), (s) => hex(sha256(s)) === want(s)));
  fc.assert(fc.property(fc.string({ maxLength: 300 }), (s) => hex(sha256(s)) === want(s)));
  fc.assert(fc.property(fc.string({ maxLength: 300, unit: "binary" }), (s) => hex(sha256(s)) === want(s)));
});
