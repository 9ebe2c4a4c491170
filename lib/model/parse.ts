/**
 * Manifest text → plain objects, each with a way to find the line of any field path.
 *
 * YAML goes through the `yaml` package (multi-document, duplicate keys rejected, line
 * numbers kept). JSON takes a fast path: `JSON.parse` plus a linear duplicate-key scan, and
 * only when a line is needed (an error) is the text parsed again with `yaml` to find it.
 */
import { type Document, LineCounter, parseAllDocuments, parseDocument } from "yaml";

export type Path = (string | number)[];

/** One top-level object from a file. */
export interface ParsedDoc {
  file: string;
  /** The value (usually an object; anything else is reported by the loader). */
  value: unknown;
  /** Path prefix inside the document (`["items", 3]` for List items). */
  base: Path;
  /** 1-based line of a field path (relative to `base`), or of its nearest existing parent. */
  line(path: Path): number;
}

export interface ParseError {
  file: string;
  line: number;
  message: string;
}

type Locator = (path: Path) => number;

function yamlLocator(doc: Document.Parsed, lc: LineCounter): Locator {
  return (path) => {
    for (let n = path.length; n >= 0; n--) {
      const node = doc.getIn(path.slice(0, n), true) as { range?: [number, number, number] } | undefined;
      if (node && typeof node === "object" && node.range) return lc.linePos(node.range[0]).line;
    }
    return doc.contents?.range ? lc.linePos(doc.contents.range[0]).line : 1;
  };
}

function lineAt(text: string, offset: number): number {
  let line = 1;
  for (let i = text.indexOf("\n"); i >= 0 && i < offset; i = text.indexOf("\n", i + 1)) line++;
  return line;
}

/** Offset and name of the first key repeated inside one JSON object, if any. */
export function findDuplicateJSONKey(text: string): { offset: number; key: string } | undefined {
  const stack: (Set<string> | null)[] = [];
  let expectKey = false;
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === 34 /* " */) {
      let j = i + 1;
      let escaped = false;
      for (;;) {
        j = text.indexOf('"', j);
        if (j < 0) return undefined; // JSON.parse reports the syntax error
        let k = j - 1;
        while (text.charCodeAt(k) === 92 /* \ */) k--;
        if ((j - 1 - k) % 2 === 0) break;
        escaped = true;
        j++;
      }
      const top = stack[stack.length - 1];
      if (expectKey && top) {
        const raw = text.slice(i + 1, j);
        const key = escaped || raw.includes("\\") ? (JSON.parse(`"${raw}"`) as string) : raw;
        if (top.has(key)) return { offset: i, key };
        top.add(key);
        expectKey = false;
      }
      i = j;
    } else if (c === 123 /* { */) {
      stack.push(new Set());
      expectKey = true;
    } else if (c === 91 /* [ */) {
      stack.push(null);
      expectKey = false;
    } else if (c === 125 /* } */ || c === 93 /* ] */) {
      stack.pop();
      expectKey = false;
    } else if (c === 44 /* , */) {
      expectKey = stack[stack.length - 1] !== null && stack.length > 0;
    }
  }
  return undefined;
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
    if (!m) fail(i >= text.length ? "unexpected end of input" : `unexpected ${JSON.stringify(text[i])}`);
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
    if (i < text.length) fail(`unexpected ${JSON.stringify(text[i])} after the document`);
  } catch (e) {
    if (typeof e === "object" && e !== null && "offset" in e) return e as { offset: number; message: string };
    throw e;
  }
  return { offset: 0, message: "not valid JSON" };
}

function looksLikeJSON(file: string, text: string): boolean {
  if (file.endsWith(".json")) return true;
  const m = /^\s*(\S)/.exec(text);
  return m !== null && (m[1] === "{" || m[1] === "[");
}

function parseYAML(file: string, text: string, docs: ParsedDoc[], errors: ParseError[]): void {
  const lc = new LineCounter();
  const parsed = parseAllDocuments(text, { lineCounter: lc, uniqueKeys: true, prettyErrors: false });
  const list = Array.isArray(parsed) ? parsed : [parsed];
  for (const doc of list) {
    if (doc.errors.length > 0) {
      for (const e of doc.errors) {
        const line = e.pos ? lc.linePos(e.pos[0]).line : 1;
        errors.push({ file, line, message: `invalid YAML: ${e.message.split("\n")[0]}` });
      }
      continue;
    }
    const value = doc.toJS({ maxAliasCount: 100 });
    if (value === null || value === undefined) continue; // empty document (`---` alone)
    const locate = yamlLocator(doc, lc);
    docs.push({ file, value, base: [], line: locate });
  }
}

function parseJSON(file: string, text: string, docs: ParsedDoc[], errors: ParseError[]): void {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    const bad = jsonErrorAt(text);
    errors.push({ file, line: lineAt(text, bad.offset), message: `invalid JSON: ${bad.message}` });
    return;
  }
  const dup = findDuplicateJSONKey(text);
  if (dup) {
    errors.push({ file, line: lineAt(text, dup.offset), message: `duplicate key "${dup.key}"` });
    return;
  }
  let locate: Locator | undefined;
  const line = (path: Path) => {
    if (!locate) {
      const lc = new LineCounter();
      locate = yamlLocator(parseDocument(text, { lineCounter: lc, uniqueKeys: false }), lc);
    }
    return locate(path);
  };
  docs.push({ file, value, base: [], line });
}

/** Parse one file's text (YAML, multi-document YAML, or JSON) into documents. */
export function parseManifestText(file: string, text: string): { docs: ParsedDoc[]; errors: ParseError[] } {
  const docs: ParsedDoc[] = [];
  const errors: ParseError[] = [];
  if (looksLikeJSON(file, text)) parseJSON(file, text, docs, errors);
  else parseYAML(file, text, docs, errors);
  return { docs, errors };
}
