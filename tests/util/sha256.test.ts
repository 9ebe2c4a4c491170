import { expect, test } from "bun:test";
import { createHash } from "node:crypto";
import fc from "fast-check";
import { sha256 } from "../../lib/util/sha256.ts";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

test("equals node:crypto at every padding boundary and for non-ASCII text", () => {
  for (const n of [0, 1, 55, 56, 63, 64, 65, 119, 120, 200, 1000])
    expect(hex(sha256("x".repeat(n)))).toBe(createHash("sha256").update("x".repeat(n)).digest("hex"));
  expect(hex(sha256("ns/é-ü:☃"))).toBe(createHash("sha256").update("ns/é-ü:☃").digest("hex"));
});

test("equals node:crypto on random strings", () => {
  fc.assert(
    fc.property(
      fc.string({ maxLength: 300, unit: "grapheme" }),
      (s) => hex(sha256(s)) === createHash("sha256").update(s).digest("hex"),
    ),
  );
});
