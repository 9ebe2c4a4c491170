/**
 * A JSON List is loaded one item at a time (parseManifestText's `splitLists`): the same
 * documents, values, errors and lines as parsing the whole text, and a file that turns out
 * not to be JSON halfway through gives nothing but its error.
 */
import { expect, test } from "bun:test";
import fc from "fast-check";
import { loadManifests } from "../../lib/model/load.ts";
import { DeferredParseError, type ParseError, type Path, parseManifestText } from "../../lib/model/parse.ts";

const svc = (name: string, ip: string) =>
  `{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "${name}", "namespace": "ns"},\n` +
  ` "spec": {"clusterIP": "${ip}", "ports": [{"port": 80, "protocol": "TCP"}]}}`;
const list = (items: string[]) => `{"apiVersion": "v1", "kind": "List",\n "items": [\n${items.join(",\n")}\n]}\n`;

/** What a text gives as [base, value] pairs, or its errors: through the split path. */
function viaSplit(text: string): { docs: [Path, unknown][] } | { errors: ParseError[] } {
  const parsed = parseManifestText("f.json", text, { splitLists: true });
  if (parsed.errors.length > 0) return { errors: parsed.errors };
  try {
    return { docs: parsed.docs.map((d) => [d.base, d.value]) };
  } catch (e) {
    if (e instanceof DeferredParseError) return { errors: e.errors };
    throw e;
  }
}

/** The same through one JSON.parse, a List's items taken apart as the loader does. */
function viaWhole(text: string): { docs: [Path, unknown][] } | { errors: ParseError[] } {
  const parsed = parseManifestText("f.json", text);
  if (parsed.errors.length > 0) return { errors: parsed.errors };
  const docs: [Path, unknown][] = [];
  for (const d of parsed.docs) {
    const v = d.value as { apiVersion?: unknown; kind?: unknown; items?: unknown };
    const isList =
      typeof v === "object" &&
      v !== null &&
      typeof v.apiVersion === "string" &&
      v.apiVersion !== "" &&
      typeof v.kind === "string" &&
      v.kind.endsWith("List") &&
      Array.isArray(v.items);
    if (!isList) docs.push([d.base, d.value]);
    else for (const [i, item] of (v.items as unknown[]).entries()) docs.push([["items", i], item]);
  }
  return { docs };
}

test("a List's items come one document each, parsed when read, with the whole file's lines", () => {
  const text = list([svc("a", "10.96.0.1"), svc("b", "10.96.0.2"), svc("c", "10.96.0.3")]);
  const { docs, errors } = parseManifestText("f.json", text, { splitLists: true });
  expect(errors).toEqual([]);
  expect(docs.map((d) => d.base)).toEqual([
    ["items", 0],
    ["items", 1],
    ["items", 2],
  ]);
  expect((docs[1].value as { metadata: { name: string } }).metadata.name).toBe("b");
  // Each read is a fresh parse: nothing of the item is kept by the document.
  expect(docs[1].value).not.toBe(docs[1].value);
  expect(docs[2].line(["items", 2, "spec", "clusterIP"])).toBe(8);
  expect(viaSplit(text)).toEqual(viaWhole(text));
});

test("empty lists, non-List kinds and a duplicate key take the whole-text path's answer", () => {
  for (const text of [
    '{"apiVersion": "v1", "kind": "List", "items": []}',
    '{"apiVersion": "v1", "kind": "List", "items": [ \n ]}',
    '{"apiVersion": "v1", "kind": "Service", "items": [1, 2]}',
    '{"apiVersion": "", "kind": "List", "items": [1, 2]}',
    '{"kind": "List", "items": [1, 2]}',
    '{"apiVersion": "v1", "kind": "List", "items": [{"a": 1, "a": 2}]}',
    '{"apiVersion": "v1", "kind": "List", "items": [1], "items": [2]}',
    '{"apiVersion": "v1", "kind": "List", "items": {"a": [1]}}',
    '{"apiVersion": "v1", "kind": "List", "meta": {"items": [1]}, "items": [[1, [2]], {"x": [3]}]}',
    '[{"apiVersion": "v1", "kind": "List", "items": [1]}]',
    // The list closed by a `}`: a mismatch, not an end.
    '{"apiVersion": "v1", "kind": "List", "items": [{"a": 1}}',
    '{"apiVersion": "v1", "kind": "List", "items": [{"a": 1}}}',
  ])
    expect([text, viaSplit(text)]).toEqual([text, viaWhole(text)]);
});

test("an item that is not JSON: the file gives its error and none of its objects", () => {
  const good = list([svc("a", "10.96.0.1")]);
  for (const broken of [
    list([svc("b", "10.96.0.2"), svc("c", "10.96.0.3").replace('"port": 80', '"port": 8o')]),
    list([svc("b", "10.96.0.2"), svc("c", "10.96.0.3")]).replace("},\n{", "}\n{"),
    list([svc("b", "10.96.0.2"), svc("c", "10.96.0.3"), ""]),
    list([svc("b", "10.96.0.2"), "", svc("c", "10.96.0.3")]),
  ]) {
    const whole = parseManifestText("bad.json", broken).errors;
    expect(whole).toHaveLength(1);
    // The good file before and after: its Service loads once, never "defined twice".
    const r = loadManifests(
      [
        { file: "good.json", text: good },
        { file: "bad.json", text: broken },
        { file: "again.json", text: list([svc("b", "10.96.0.2")]) },
      ],
      { nodeName: "n" },
    );
    expect(r.errors).toEqual(whole);
    expect(r.warnings).toEqual([]);
    expect(r.state.services.map((s) => s.name)).toEqual(["a", "b"]);
  }
});

test("property: any edit of a List's text gives the same documents or the same errors either way", () => {
  const base = list([svc("a", "10.96.0.1"), svc("b", "10.96.0.2"), '{"x": [1, {"y": "],\\"["}]}']);
  const pieces = ["", ",", "[", "]", "{", "}", '"', "\\", " ", ":", "1", '"items"', '{"a":1}'];
  fc.assert(
    fc.property(
      fc.array(fc.record({ at: fc.nat(base.length), cut: fc.nat(3), put: fc.constantFrom(...pieces) }), {
        minLength: 1,
        maxLength: 3,
      }),
      (edits) => {
        let text = base;
        for (const e of edits) {
          const at = e.at % (text.length + 1);
          text = text.slice(0, at) + e.put + text.slice(at + e.cut);
        }
        expect([text, viaSplit(text)]).toEqual([text, viaWhole(text)]);
      },
    ),
    { numRuns: 20000 },
  );
});
