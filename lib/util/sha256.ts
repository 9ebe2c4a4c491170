/**
 * SHA-256 over a string. Chain names hash short strings (~40 bytes) hundreds of thousands of
 * times per render (110k at 10k Services × 10 endpoints). Under Bun, its native
 * `Bun.SHA256.hash(text, into)` does that in ~30 ms; elsewhere (Deno, Node) a plain JS loop
 * does it in ~120–150 ms cold, which beats a per-call node:crypto hash object (~140 ms, ~2.3 µs
 * a call). Both verified against node:crypto, and against each other, in
 * tests/util/sha256.test.ts.
 */
const K = new Int32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
  0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
  0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
  0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
  0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
  0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
  0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
  0xc67178f2,
]);
/** The message schedule; W[0..15] is the block being hashed. */
const W = new Int32Array(64);
const H = new Int32Array(8);
const encoder = new TextEncoder();

/** Bun's native SHA-256, typed here so that lib/ needs no Bun types (and Deno checks it). */
interface NativeSha256 {
  /** Writes the digest of the UTF-8 bytes of `input` into `hashInto` (≥ 32 bytes). */
  hash(input: string, hashInto: Uint8Array): Uint8Array;
}
const native: NativeSha256 | undefined = (globalThis as { Bun?: { SHA256?: NativeSha256 } }).Bun?.SHA256;
/** The native digest's bytes, reused by every call. */
const D = new Uint8Array(32);

/** True when sha256Words runs on Bun's native hash (the JS loop otherwise). */
export const nativeSha256: boolean = native !== undefined;

/** The 32-byte SHA-256 digest of the UTF-8 bytes of `text`. */
export function sha256(text: string): Uint8Array {
  const h = sha256Words(text);
  const out = new Uint8Array(32);
  for (let i = 0; i < 8; i++) {
    out[i * 4] = h[i] >>> 24;
    out[i * 4 + 1] = h[i] >>> 16;
    out[i * 4 + 2] = h[i] >>> 8;
    out[i * 4 + 3] = h[i];
  }
  return out;
}

/**
 * The digest as eight big-endian 32-bit words, in a buffer reused by the next call: no
 * allocation, for hot loops that read a few bits and move on.
 */
export function sha256Words(text: string): Int32Array {
  if (native === undefined) return sha256WordsJS(text);
  native.hash(text, D);
  for (let i = 0; i < 8; i++) H[i] = (D[i * 4] << 24) | (D[i * 4 + 1] << 16) | (D[i * 4 + 2] << 8) | D[i * 4 + 3];
  return H;
}

/** sha256Words in plain JS on every runtime: what runs without Bun, and what tests compare the native hash with. */
export function sha256WordsJS(text: string): Int32Array {
  // ASCII (every chain name's input) is read straight from its char codes, in the same pass
  // that hashes it; other text is hashed again from its UTF-8 bytes, one char per byte.
  if (!hashCodes(text, 0x7f)) hashCodes(byteString(encoder.encode(text)), 0xff);
  return H;
}

/** A string with one char per byte, so the bytes can be hashed as char codes. */
function byteString(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 4096) s += String.fromCharCode(...bytes.subarray(i, i + 4096));
  return s;
}

/**
 * SHA-256 of the char codes of `text` as bytes, into H; false (H undefined) at the first code
 * above `max`. One function, compression inline: at 110k calls a render runs this mostly in
 * lower JIT tiers, where a call per block and a byte buffer filled per call both cost.
 */
function hashCodes(text: string, max: number): boolean {
  const n = text.length;
  const end = (((n + 8) >> 6) + 1) * 64;
  H[0] = 0x6a09e667;
  H[1] = 0xbb67ae85;
  H[2] = 0x3c6ef372;
  H[3] = 0xa54ff53a;
  H[4] = 0x510e527f;
  H[5] = 0x9b05688c;
  H[6] = 0x1f83d9ab;
  H[7] = 0x5be0cd19;
  for (let off = 0; off < end; off += 64) {
    // The block's 16 big-endian words: the text, the 0x80 that ends it, zeros.
    for (let i = 0; i < 16; i++) {
      const p = off + i * 4;
      let w = 0;
      if (p + 3 < n) {
        const c0 = text.charCodeAt(p);
        const c1 = text.charCodeAt(p + 1);
        const c2 = text.charCodeAt(p + 2);
        const c3 = text.charCodeAt(p + 3);
        if ((c0 | c1 | c2 | c3) > max) return false;
        w = (c0 << 24) | (c1 << 16) | (c2 << 8) | c3;
      } else if (p <= n) {
        for (let q = p; q < p + 4; q++) {
          const c = q < n ? text.charCodeAt(q) : q === n ? 0x80 : 0;
          if (q < n && c > max) return false;
          w = (w << 8) | c;
        }
      }
      W[i] = w;
    }
    if (off + 64 === end) {
      // The last block ends with the length in bits, as a 64-bit big-endian number.
      W[14] = Math.floor(n / 2 ** 29);
      W[15] = n << 3;
    }
    for (let i = 16; i < 64; i++) {
      const w15 = W[i - 15];
      const w2 = W[i - 2];
      const s0 = ((w15 >>> 7) | (w15 << 25)) ^ ((w15 >>> 18) | (w15 << 14)) ^ (w15 >>> 3);
      const s1 = ((w2 >>> 17) | (w2 << 15)) ^ ((w2 >>> 19) | (w2 << 13)) ^ (w2 >>> 10);
      W[i] = (W[i - 16] + s0 + W[i - 7] + s1) | 0;
    }
    let a = H[0];
    let b = H[1];
    let c = H[2];
    let d = H[3];
    let e = H[4];
    let f = H[5];
    let g = H[6];
    let h = H[7];
    for (let i = 0; i < 64; i++) {
      const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
      const ch = (e & f) ^ (~e & g);
      const t1 = (h + S1 + ch + K[i] + W[i]) | 0;
      const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
      const maj = (a & b) ^ (a & c) ^ (b & c);
      const t2 = (S0 + maj) | 0;
      h = g;
      g = f;
      f = e;
      e = (d + t1) | 0;
      d = c;
      c = b;
      b = a;
      a = (t1 + t2) | 0;
    }
    H[0] = (H[0] + a) | 0;
    H[1] = (H[1] + b) | 0;
    H[2] = (H[2] + c) | 0;
    H[3] = (H[3] + d) | 0;
    H[4] = (H[4] + e) | 0;
    H[5] = (H[5] + f) | 0;
    H[6] = (H[6] + g) | 0;
    H[7] = (H[7] + h) | 0;
  }
  return true;
}
