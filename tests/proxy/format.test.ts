import { expect, test } from "bun:test";
import { markString, probability } from "../../lib/proxy/format.ts";

/** 1/n to 10 places, ties to even, from the double's exact value: Go's %0.10f, in BigInt. */
function exact(n: number): string {
  const p = 1 / n;
  // Decompose the double exactly: p = m × 2^e.
  const buf = new DataView(new ArrayBuffer(8));
  buf.setFloat64(0, p);
  const bits = buf.getBigUint64(0);
  const exp = Number((bits >> 52n) & 0x7ffn) - 1075;
  const mant = (bits & ((1n << 52n) - 1n)) | (1n << 52n);
  // value × 10^10 = mant × 10^10 / 2^-exp
  const num = mant * 10n ** 10n;
  const den = 1n << BigInt(-exp);
  let q = num / den;
  const r = num % den;
  if (r * 2n > den || (r * 2n === den && q % 2n === 1n)) q++;
  const s = q.toString().padStart(11, "0");
  return `${s.slice(0, -10)}.${s.slice(-10)}`;
}

test("spec §5.4 table", () => {
  expect([2, 3, 4, 5, 6, 7, 8, 9, 10].map(probability)).toEqual([
    "0.5000000000",
    "0.3333333333",
    "0.2500000000",
    "0.2000000000",
    "0.1666666667",
    "0.1428571429",
    "0.1250000000",
    "0.1111111111",
    "0.1000000000",
  ]);
  expect(probability(2048)).toBe("0.0004882812");
});

test("Go's ties-to-even formatting for every n up to 20000", () => {
  for (let n = 2; n <= 20000; n++)
    if (probability(n) !== exact(n)) expect(`${n}: ${probability(n)}`).toBe(`${n}: ${exact(n)}`);
});

test("mark as Go %#08x: 0x + 8 hex digits", () => {
  expect(markString(14)).toBe("0x00004000");
  expect(markString(0)).toBe("0x00000001");
  expect(markString(31)).toBe("0x80000000");
});
