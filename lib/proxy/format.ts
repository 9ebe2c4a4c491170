/**
 * Number formatting exactly as kube-proxy writes it.
 */

/**
 * `prob(n)`: 1/n with exactly 10 fractional digits, correctly rounded from the double's exact
 * binary value with ties to even (Go `%0.10f`). `toFixed` agrees except on exact ties, where
 * it rounds away from zero (n = 2048 is the only one up to 200000): those are fixed here.
 */
export function probability(n: number): string {
  let s = cache[n];
  if (s === undefined) cache[n] = s = format(n);
  return s;
}

const cache: string[] = [];

function format(n: number): string {
  const p = 1 / n;
  const fixed = p.toFixed(10);
  // An exact tie needs the double to be a multiple of 5e-11 exactly; check with the digits
  // toFixed(20) gives (exact for doubles of this size) and round half to even by hand.
  const wide = p.toFixed(20);
  const tail = wide.slice(12);
  if (tail !== "5000000000") return fixed;
  const digits = wide.slice(0, 12);
  const last = Number(digits[11]);
  if (last % 2 === 1) return fixed; // toFixed rounded up to an even digit already
  return digits;
}

/** The masquerade mark as Go's `%#08x` prints `1 << bit`: `0x00004000` for bit 14. */
export function markString(bit: number): string {
  return `0x${((1 << bit) >>> 0).toString(16).padStart(8, "0")}`;
}
