/**
 * Manifest text → plain objects, each with a way to find the line of any field path.
 *
 * YAML goes through the `yaml` package (multi-document, duplicate keys rejected, line
 * numbers kept). JSON takes a fast path: `JSON.parse` plus a linear duplicate-key scan
 * (json_scan.ts), a large List one item at a time, and only when a line is needed (an error)
 * is the text parsed again with `yaml` to find it.
 */
import {
  type Alias,
  Composer,
  type CST,
  type Document,
  isAlias,
  isMap,
  isScalar,
  isSeq,
  Lexer,
  LineCounter,
  type Pair,
  Parser,
  parseDocument,
  Scalar,
} from "yaml";
import { escapeText, quoteString } from "../util/quote.ts";
import { type JSONScan, jsonErrorAt, scanJSON } from "./json_scan.ts";
import { LIMITS } from "./rules.ts";

export type Path = (string | number)[];

/** One top-level object from a file. */
export interface ParsedDoc {
  file: string;
  /**
   * The value (usually an object; anything else is reported by the loader). A split List's
   * item parses it on each read (parseManifestText).
   */
  readonly value: unknown;
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

function looksLikeJSON(file: string, text: string): boolean {
  if (file.endsWith(".json")) return true;
  const m = /^\s*(\S)/.exec(text);
  return m !== null && (m[1] === "{" || m[1] === "[");
}

/** Where a YAML document's lists and maps nest deeper than the limit (CST, no recursion). */
function tooDeep(doc: CST.Document): number | undefined {
  const stack: [CST.Token, number][] = doc.value ? [[doc.value, 0]] : [];
  for (let top = stack.pop(); top; top = stack.pop()) {
    const [tok, depth] = top;
    if (tok.type !== "block-map" && tok.type !== "block-seq" && tok.type !== "flow-collection") continue;
    const d = depth + 1;
    if (d > LIMITS.nestingDepth) return tok.offset;
    const flowSeq = tok.type === "flow-collection" && tok.start.source === "[";
    for (const it of tok.items) {
      // A `key: value` pair inside a flow sequence is a map of its own: one more level.
      const di = flowSeq && it.sep ? d + 1 : d;
      if (it.key) stack.push([it.key, di]);
      if (it.value) stack.push([it.value, di]);
    }
  }
  return undefined;
}

/**
 * Whether YAML text might nest deeper than the limit: many flow openers (an empty `{}` or
 * `[]` aside), or a line whose indentation and block indicators are that long. Cheap, and
 * false on real manifests, so the lexer pass below runs only on suspicious text.
 */
function mightBeDeep(text: string): boolean {
  const half = LIMITS.nestingDepth / 2;
  let run = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    // space, tab, "-", "?", ":"
    if (c === 32 || c === 9 || c === 45 || c === 63 || c === 58) {
      if (++run >= half) return true;
    } else run = 0;
  }
  let n = 0;
  for (const opener of ["[", "{"]) {
    const closer = opener === "[" ? "]" : "}";
    for (let i = text.indexOf(opener); i >= 0; i = text.indexOf(opener, i + 1))
      if (text[i + 1] !== closer && ++n >= half) return true;
  }
  return false;
}

/**
 * Where YAML text nests deeper than the limit, found with the lexer alone (a token stream,
 * little memory): the parser would build a tree as deep as the input first, which for a
 * megabyte of `[` takes seconds and gigabytes. A bound, not an exact depth: flow level plus
 * the line's indentation and block indicators.
 */
function deepYAMLAt(text: string): number | undefined {
  let flow = 0;
  let indent = 0;
  let marks = 0;
  let offset = 0;
  let lineStart = true;
  for (const tok of new Lexer().lex(text)) {
    // The lexer's own markers (document, scalar, flow end) are not source text.
    if (tok === "\u0002" || tok === "\u001f" || tok === "\u0018") continue;
    if (tok === "\n" || tok === "\r\n") {
      indent = 0;
      marks = 0;
      lineStart = true;
    } else {
      if (tok === "[" || tok === "{") flow++;
      else if (tok === "]" || tok === "}") flow = Math.max(0, flow - 1);
      else if (lineStart && tok[0] === " ") indent = tok.length;
      else if (flow === 0 && (tok === "-" || tok === "?" || tok === ":")) marks++;
      if (flow + indent + marks > LIMITS.nestingDepth) return offset;
      lineStart = false;
    }
    offset += tok.length;
  }
  return undefined;
}

/** go-yaml's share of alias-driven decoding that a document of `n` decoded nodes may have. */
function allowedAliasRatio(n: number): number {
  if (n <= 400_000) return 0.99;
  if (n >= 4_000_000) return 0.1;
  return 0.99 - 0.89 * ((n - 400_000) / 3_600_000);
}

class YAMLInputError {
  constructor(
    readonly node: { range?: [number, number, number] | null } | null | undefined,
    readonly message: string,
  ) {}
}

/**
 * A composed YAML document → plain values, as the API server's decoder (go-yaml via
 * sigs.k8s.io/yaml) sees it: a key must be a scalar; an alias must follow its anchor and
 * not sit inside it; `<<` merges maps; and aliases may not expand the document beyond
 * go-yaml's ratio (the billion-laughs bound). An alias yields the anchor's value itself (no
 * copy), so memory stays linear in the text.
 */
class YAMLConverter {
  private anchors = new Map<string, { value: unknown; size: number } | "open">();
  private decoded = 0;
  private aliased = 0;

  convert(node: unknown): unknown {
    if (node === null || node === undefined) return null; // `key:` with no value
    if (isAlias(node)) return this.alias(node);
    this.decoded++;
    const anchor = (node as { anchor?: string }).anchor;
    if (anchor) this.anchors.set(anchor, "open");
    const before = this.decoded;
    let value: unknown;
    if (isScalar(node)) value = node.value;
    else if (isSeq(node)) value = node.items.map((item) => this.convert(item));
    else if (isMap(node)) value = this.map(node.items as Pair[]);
    else throw new YAMLInputError(null, "unsupported YAML node");
    if (anchor) this.anchors.set(anchor, { value, size: this.decoded - before + 1 });
    return value;
  }

  private alias(node: Alias): unknown {
    const a = this.anchors.get(node.source);
    if (a === undefined)
      throw new YAMLInputError(node, `alias ${quoteString(`*${node.source}`)} has no anchor before it`);
    if (a === "open")
      throw new YAMLInputError(node, `alias ${quoteString(`*${node.source}`)} is inside its own anchor`);
    this.decoded += 1 + a.size;
    this.aliased += a.size;
    if (this.aliased > 100 && this.decoded > 1000 && this.aliased / this.decoded > allowedAliasRatio(this.decoded))
      throw new YAMLInputError(node, "aliases expand the document too far (excessive aliasing)");
    return a.value;
  }

  private map(items: Pair[]): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    const merges: unknown[] = [];
    for (const { key, value } of items) {
      const k = this.key(key);
      if (k === MERGE) {
        merges.push(this.convert(value));
        continue;
      }
      const v = this.convert(value);
      // `__proto__` is an ordinary key here, never the object's prototype.
      if (k === "__proto__")
        Object.defineProperty(out, k, { value: v, writable: true, enumerable: true, configurable: true });
      else out[k] = v;
    }
    // `<<: *base` (or a list of them): keys written here win, then earlier sources.
    for (const m of merges) {
      for (const src of Array.isArray(m) ? m : [m]) {
        if (typeof src !== "object" || src === null || Array.isArray(src))
          throw new YAMLInputError(null, "a merge key (<<) must name a map or a list of maps");
        for (const [k, v] of Object.entries(src))
          if (!Object.hasOwn(out, k))
            Object.defineProperty(out, k, { value: v, writable: true, enumerable: true, configurable: true });
      }
    }
    return out;
  }

  private key(key: unknown): string | typeof MERGE {
    this.decoded++;
    const k = key;
    if (isAlias(k)) {
      const a = this.anchors.get(k.source);
      if (a === undefined || a === "open") return String(this.alias(k));
      if (typeof a.value === "object" && a.value !== null)
        throw new YAMLInputError(k, "a map key must be a scalar, not a list or map");
      return a.value === null ? "" : String(a.value);
    }
    if (isScalar(k)) {
      if (k.value === "<<" && (k.type === undefined || k.type === Scalar.PLAIN)) return MERGE;
      return k.value === null || k.value === undefined ? "" : String(k.value);
    }
    if (k === null || k === undefined) return "";
    throw new YAMLInputError(
      k as { range?: [number, number, number] },
      "a map key must be a scalar, not a list or map",
    );
  }
}

const MERGE: unique symbol = Symbol("merge");

function parseYAML(file: string, text: string, docs: ParsedDoc[], errors: ParseError[]): void {
  const lc = new LineCounter();
  const parser = new Parser(lc.addNewLine);
  // logLevel "error": the library's warnings (e.g. about collection keys) never reach the
  // console; such cases are kip's own errors below.
  const composer = new Composer({ uniqueKeys: true, prettyErrors: false, logLevel: "error" });
  const lineOf = (offset: number) => lc.linePos(offset).line;
  const deep = mightBeDeep(text) ? deepYAMLAt(text) : undefined;
  if (deep !== undefined) {
    const message = `invalid YAML: lists and maps nest deeper than ${LIMITS.nestingDepth} levels`;
    errors.push({ file, line: lineAt(text, deep), message });
    return;
  }
  const take = (doc: Document.Parsed) => {
    if (doc.errors.length > 0) {
      for (const e of doc.errors)
        errors.push({
          file,
          line: e.pos ? lineOf(e.pos[0]) : 1,
          message: `invalid YAML: ${escapeText(e.message.split("\n")[0])}`,
        });
      return;
    }
    let value: unknown;
    try {
      value = new YAMLConverter().convert(doc.contents);
    } catch (e) {
      if (!(e instanceof YAMLInputError)) throw e;
      const at = e.node?.range ? e.node.range[0] : (doc.contents?.range?.[0] ?? 0);
      errors.push({ file, line: lineOf(at), message: `invalid YAML: ${e.message}` });
      return;
    }
    if (value === null || value === undefined) return; // empty document (`---` alone)
    docs.push({ file, value, base: [], line: yamlLocator(doc, lc) });
  };
  for (const token of parser.parse(text)) {
    let tok = token;
    if (tok.type === "document") {
      const deep = tooDeep(tok);
      if (deep !== undefined) {
        errors.push({
          file,
          line: lineOf(deep),
          message: `invalid YAML: lists and maps nest deeper than ${LIMITS.nestingDepth} levels`,
        });
        // Composing it would recurse that deep: an empty document stands in for it.
        tok = { ...tok, value: undefined };
      }
    }
    for (const doc of composer.next(tok)) take(doc);
  }
  for (const doc of composer.end(false, text.length)) take(doc);
}

/**
 * Thrown by a List item's `value` (parseManifestText with `splitLists`) when its text is not
 * JSON: the file is not valid JSON after all, and `errors` say where, as a whole-file parse
 * would have. Whatever the file's earlier items gave is to be dropped.
 */
export class DeferredParseError extends Error {
  constructor(readonly errors: ParseError[]) {
    super(errors[0]?.message ?? "invalid JSON");
  }
}

function invalidJSON(file: string, text: string): ParseError {
  const bad = jsonErrorAt(text);
  return { file, line: lineAt(text, bad.offset), message: `invalid JSON: ${bad.message}` };
}

/**
 * A List's items, each parsed when its `value` is read (and not kept): at 10k Services the
 * parsed items of one `kubectl get -o json` dump are ~150 MB of heap at once, one item a few
 * kilobytes. Only when the text outside `items` parses as a List, and the List's items are
 * its elements as scanJSON found them; else undefined (the caller parses the whole text).
 */
function listItems(
  file: string,
  text: string,
  items: NonNullable<JSONScan["items"]>,
  line: (path: Path) => number,
): ParsedDoc[] | undefined {
  let envelope: unknown;
  try {
    envelope = JSON.parse(`${text.slice(0, items.open)}[]${text.slice(items.close + 1)}`);
  } catch {
    return undefined;
  }
  const e = envelope as Record<string, unknown> | null;
  // What the loader would visit item by item anyway: an object with apiVersion and a List kind.
  if (typeof e !== "object" || e === null || typeof e.apiVersion !== "string" || typeof e.kind !== "string")
    return undefined;
  if (e.apiVersion === "" || !e.kind.endsWith("List")) return undefined;
  const { starts, ends } = items;
  // `[ ]`: one stretch of whitespace, no element.
  const count = starts.length === 1 && text.slice(starts[0], ends[0]).trim() === "" ? 0 : starts.length;
  const docs: ParsedDoc[] = [];
  for (let i = 0; i < count; i++) {
    const start = starts[i];
    const end = ends[i];
    docs.push({
      file,
      get value() {
        try {
          return JSON.parse(text.slice(start, end));
        } catch {
          throw new DeferredParseError([invalidJSON(file, text)]);
        }
      },
      base: ["items", i],
      line,
    });
  }
  return docs;
}

function parseJSON(file: string, text: string, docs: ParsedDoc[], errors: ParseError[], splitLists: boolean): void {
  // Before JSON.parse: nesting is bounded first, so neither it nor a later walk recurses deep.
  const scan = scanJSON(text);
  if (scan.tooDeep !== undefined) {
    errors.push({
      file,
      line: lineAt(text, scan.tooDeep),
      message: `invalid JSON: lists and maps nest deeper than ${LIMITS.nestingDepth} levels`,
    });
    return;
  }
  let locate: Locator | undefined;
  const line = (path: Path) => {
    if (!locate) {
      const lc = new LineCounter();
      locate = yamlLocator(parseDocument(text, { lineCounter: lc, uniqueKeys: false, logLevel: "error" }), lc);
    }
    return locate(path);
  };
  // (A duplicate key takes the whole parse: a syntax error, if there is one, is reported first.)
  const split = splitLists && scan.items && !scan.duplicate ? listItems(file, text, scan.items, line) : undefined;
  if (split) {
    for (const d of split) docs.push(d);
    return;
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    errors.push(invalidJSON(file, text));
    return;
  }
  if (scan.duplicate) {
    errors.push({
      file,
      line: lineAt(text, scan.duplicate.offset),
      message: `duplicate key ${quoteString(scan.duplicate.key)}`,
    });
    return;
  }
  docs.push({ file, value, base: [], line });
}

/**
 * Parse one file's text (YAML, multi-document YAML, or JSON) into documents. Never throws:
 * whatever the text holds, problems come back as errors with a line.
 *
 * With `splitLists`, a JSON List (`kubectl get -o json`) comes back as one document per item,
 * each parsed when its `value` is read: read each once, and expect a DeferredParseError from
 * it when the file turns out not to be JSON (then drop what the file's earlier items gave).
 */
export function parseManifestText(
  file: string,
  text: string,
  opts: { splitLists?: boolean } = {},
): { docs: ParsedDoc[]; errors: ParseError[] } {
  const docs: ParsedDoc[] = [];
  const errors: ParseError[] = [];
  try {
    if (looksLikeJSON(file, text)) parseJSON(file, text, docs, errors, opts.splitLists === true);
    else parseYAML(file, text, docs, errors);
  } catch (e) {
    // A parser's own failure (e.g. out of stack on input no check foresaw) is still the
    // input's problem: report it against the file rather than end the process.
    errors.push({ file, line: 1, message: `cannot parse: ${quoteString(String((e as Error)?.message ?? e))}` });
    return { docs: [], errors };
  }
  return { docs, errors };
}
