/**
 * Values from input, made safe to print: JSON-style escapes, so that no control character
 * (NUL, ESC, a newline before a forged `-A INPUT … -j ACCEPT`), no C1 code, no bidi override
 * and no line separator reaches a terminal or a log line, and a bounded length, so a 50 MB
 * value is not echoed back whole.
 */

/** Longest quoted text, in UTF-16 units; the rest is cut with "…". */
const MAX = 200;

/** What JSON.stringify leaves as is but a terminal or a log reader acts on. */
const EXTRA = /[\u007f-\u009f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb]/g;
/** Anything that needs an escape, or that makes a bare word ambiguous. */
const UNSAFE_BARE = /[^\u0021-\u007e]|["\\]/;

const hex = (c: string) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`;

/** `"text"`, with every control, C1, bidi and separator character escaped as `\uXXXX`. */
export function quoteString(s: string, max = MAX): string {
  const cut = s.length > max;
  const body = JSON.stringify(cut ? s.slice(0, max) : s).replace(EXTRA, hex);
  return cut ? `${body.slice(0, -1)}…" (${s.length} characters)` : body;
}

/**
 * Any input value as it may appear in a message: strings quoted and escaped, numbers and
 * booleans as they are, lists and maps as short JSON-like previews (bounded in size and
 * depth, so a shared or deep value costs little).
 */
export function quote(v: unknown): string {
  if (typeof v === "string") return quoteString(v);
  let budget = 80;
  const walk = (x: unknown, depth: number): string => {
    if (budget <= 0) return "…";
    if (typeof x === "string") {
      const s = quoteString(x, Math.max(8, budget));
      budget -= s.length;
      return s;
    }
    if (x === null || typeof x !== "object") {
      const s = typeof x === "number" || typeof x === "boolean" || typeof x === "bigint" ? String(x) : "null";
      budget -= s.length;
      return s;
    }
    if (depth >= 3) {
      budget -= 5;
      return Array.isArray(x) ? "[…]" : "{…}";
    }
    const parts: string[] = [];
    const isList = Array.isArray(x);
    const keys = isList ? [] : Object.keys(x);
    const n = isList ? x.length : keys.length;
    for (let i = 0; i < n; i++) {
      if (budget <= 0) {
        parts.push("…");
        break;
      }
      parts.push(
        isList
          ? walk(x[i], depth + 1)
          : `${quoteString(keys[i], 40)}:${walk((x as Record<string, unknown>)[keys[i]], depth + 1)}`,
      );
      budget -= 1;
    }
    return isList ? `[${parts.join(",")}]` : `{${parts.join(",")}}`;
  };
  return walk(v, 0);
}

/**
 * Text written by someone else (a library's error message) with every control, C1, bidi and
 * separator character escaped, and no quotes added.
 */
export function escapeText(s: string, max = 2 * MAX): string {
  const t = s.length > max ? `${s.slice(0, max)}…` : s;
  return JSON.stringify(t).slice(1, -1).replace(/\\"/g, '"').replace(EXTRA, hex);
}

/**
 * Text that is usually a plain word (a kind, `namespace/name`), printed bare when it is
 * printable ASCII without spaces or quotes, and quoted and escaped otherwise.
 */
export function bare(s: string): string {
  return s.length > 0 && s.length <= MAX && !UNSAFE_BARE.test(s) ? s : quoteString(s);
}

/** True when `s` holds a character a terminal or log reader acts on (what quote escapes). */
export function hasUnsafeCharacter(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if ((c < 0x20 && c !== 0x0a) || (c >= 0x7f && c <= 0x9f) || c === 0x2028 || c === 0x2029) return true;
    if ((c >= 0x202a && c <= 0x202e) || (c >= 0x2066 && c <= 0x2069) || c === 0x200e || c === 0x200f) return true;
  }
  return false;
}
