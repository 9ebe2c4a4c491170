/**
 * JSON text read without building it: one linear scan for what `JSON.parse` does not say (a
 * repeated key, nesting past the limit, where a List's items lie), and where a text
 * `JSON.parse` rejected first goes wrong. parse.ts uses both around its `JSON.parse`.
 */
import { quoteString } from "../util/quote.ts";
import { LIMITS } from "./rules.ts";

/** Offset and name of the first key repeated inside one JSON object, if any. */
export function findDuplicateJSONKey(text: string): { offset: number; key: string } | undefined {
  return scanJSON(text).duplicate;
}

/** What scanJSON found. */
export interface JSONScan {
  /** The first key repeated inside one object. */
  duplicate?: { offset: number; key: string };
  /** Where lists and maps first nest deeper than the limit. */
  tooDeep?: number;
  /**
   * A top-level object's `items` list: the offsets of its `[` and `]`, and of each element's
   * text (from after `[` or a comma to the next comma or `]`, whitespace included).
   */
  items?: { open: number; close: number; starts: number[]; ends: number[] };
}

/**
 * One linear pass over JSON text: the first key repeated inside one object (JSON.parse keeps
 * the last silently), and where lists and maps first nest deeper than the limit.
 *
 * Keys are compared where they lie in the text (offset and length on a stack, char by char
 * against the same object's earlier keys), not sliced into a Set per object: a 10k-Service
 * dump has ~700k keys in ~300k objects, and the Sets and slices were a quarter of loading.
 * An object with many keys, or one with an escaped key, switches to a Set of decoded keys.
 *
 * It also notes where a top-level object's `items` list lies and where each of its elements
 * begins and ends, so a large List can be parsed one item at a time (parseJSON).
 */
export function scanJSON(text: string): JSONScan {
  /** Per open list or map: -1 for a list, else the index of the map's first key in keyAt. */
  const frames: number[] = [];
  /** A map's decoded keys once it left the fast path (by depth). */
  const sets: (Set<string> | undefined)[] = [];
  let keyAt = new Int32Array(1024);
  let keyLen = new Int32Array(1024);
  let keys = 0;
  let duplicate: { offset: number; key: string } | undefined;
  let expectKey = false;
  // The top-level object's `items` list: 1 after its key, 2 inside the list, 3 once closed.
  let itemsState = 0;
  let items: JSONScan["items"];
  const n = text.length;
  const decode = (raw: string): string | undefined => {
    if (!raw.includes("\\")) return raw;
    try {
      return JSON.parse(`"${raw}"`) as string;
    } catch {
      return undefined; // a bad escape: JSON.parse reports it
    }
  };
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === 34 /* " */) {
      let j = i + 1;
      let escaped = false;
      for (;;) {
        j = text.indexOf('"', j);
        if (j < 0) return { duplicate }; // JSON.parse reports the syntax error
        let k = j - 1;
        while (text.charCodeAt(k) === 92 /* \ */) k--;
        if ((j - 1 - k) % 2 === 0) break;
        escaped = true;
        j++;
      }
      const depth = frames.length - 1;
      const base = depth >= 0 ? frames[depth] : -1;
      if (depth === 0 && base >= 0 && itemsState < 2)
        itemsState = expectKey && j - i === 6 && text.startsWith("items", i + 1) ? 1 : 0;
      if (expectKey && base >= 0 && !duplicate) {
        const start = i + 1;
        const len = j - start;
        let backslash = escaped;
        for (let y = start; y < j && !backslash; y++) backslash = text.charCodeAt(y) === 92;
        let set = sets[depth];
        if (set === undefined && (backslash || keys - base >= 16)) {
          // Off the fast path: this map's keys so far, decoded, into a Set.
          set = new Set();
          for (let x = base; x < keys; x++) set.add(decode(text.slice(keyAt[x], keyAt[x] + keyLen[x])) ?? "");
          sets[depth] = set;
        }
        if (set !== undefined) {
          const key = decode(text.slice(start, j));
          if (key === undefined) return { duplicate };
          if (set.has(key)) duplicate = { offset: i, key };
          set.add(key);
        } else {
          for (let x = base; x < keys; x++) {
            if (keyLen[x] !== len) continue;
            const at = keyAt[x];
            let y = 0;
            while (y < len && text.charCodeAt(at + y) === text.charCodeAt(start + y)) y++;
            if (y === len) {
              duplicate = { offset: i, key: text.slice(start, j) };
              break;
            }
          }
          if (keys === keyAt.length) {
            const grownAt = new Int32Array(keys * 2);
            grownAt.set(keyAt);
            keyAt = grownAt;
            const grownLen = new Int32Array(keys * 2);
            grownLen.set(keyLen);
            keyLen = grownLen;
          }
          keyAt[keys] = start;
          keyLen[keys] = len;
          keys++;
        }
      }
      expectKey = false;
      i = j;
    } else if (c === 123 /* { */ || c === 91 /* [ */) {
      if (frames.length >= LIMITS.nestingDepth) return { duplicate, tooDeep: i };
      if (itemsState === 1) {
        if (c === 91 && frames.length === 1) {
          itemsState = 2;
          items = { open: i, close: -1, starts: [i + 1], ends: [] };
        } else itemsState = 0;
      }
      frames.push(c === 123 ? keys : -1);
      sets[frames.length - 1] = undefined;
      expectKey = c === 123;
    } else if (c === 125 /* } */ || c === 93 /* ] */) {
      if (itemsState === 2 && frames.length === 2 && items) {
        // Only a `]` closes the list: a `}` there is a mismatch, which the whole parse reports.
        if (c === 93) {
          items.ends.push(i);
          items.close = i;
          itemsState = 3;
        } else itemsState = 0;
      }
      const base = frames.pop();
      // A closed map's keys leave the stack; its parent's keys below stay contiguous.
      if (base !== undefined && base >= 0) keys = base;
      if (frames.length < sets.length) sets[frames.length] = undefined;
      expectKey = false;
    } else if (c === 44 /* , */) {
      expectKey = frames.length > 0 && frames[frames.length - 1] >= 0;
      if (itemsState === 2 && frames.length === 2 && items) {
        items.ends.push(i);
        items.starts.push(i + 1);
      } else if (itemsState === 1) itemsState = 0;
    }
  }
  return itemsState === 3 ? { duplicate, items } : { duplicate };
}

/**
 * Where JSON text first goes wrong (JSON.parse under Bun reports no position). Only runs on
 * text JSON.parse rejected, so it favours being short over being fast.
 */
export function jsonErrorAt(text: string): { offset: number; message: string } {
  let i = 0;
  const fail = (message: string): never => {
    throw { offset: Math.min(i, text.length), message };
  };
  const ws = () => {
    while (i < text.length && " \t\n\r".includes(text[i])) i++;
  };
  const literal = /^(?:true|false|null|-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)/;
  const value = (): void => {
    ws();
    const c = text[i];
    if (c === "{") {
      i++;
      ws();
      if (text[i] === "}") {
        i++;
        return;
      }
      for (;;) {
        ws();
        if (text[i] !== '"') fail("expected a quoted key");
        str();
        ws();
        if (text[i] !== ":") fail('expected ":" after a key');
        i++;
        value();
        ws();
        if (text[i] === ",") i++;
        else if (text[i] === "}") {
          i++;
          return;
        } else fail('expected "," or "}"');
      }
    }
    if (c === "[") {
      i++;
      ws();
      if (text[i] === "]") {
        i++;
        return;
      }
      for (;;) {
        value();
        ws();
        if (text[i] === ",") i++;
        else if (text[i] === "]") {
          i++;
          return;
        } else fail('expected "," or "]"');
      }
    }
    if (c === '"') {
      str();
      return;
    }
    const m = literal.exec(text.slice(i, i + 400));
    if (!m) fail(i >= text.length ? "unexpected end of input" : `unexpected ${quoteString(text[i])}`);
    i += m?.[0].length ?? 0;
  };
  const str = () => {
    i++;
    while (i < text.length && text[i] !== '"') {
      if (text[i] === "\\") i++;
      else if (text.charCodeAt(i) < 0x20) fail("control character in a string");
      i++;
    }
    if (i >= text.length) fail("unterminated string");
    i++;
  };
  try {
    value();
    ws();
    if (i < text.length) fail(`unexpected ${quoteString(text[i])} after the document`);
  } catch (e) {
    if (typeof e === "object" && e !== null && "offset" in e) return e as { offset: number; message: string };
    throw e;
  }
  return { offset: 0, message: "not valid JSON" };
}
