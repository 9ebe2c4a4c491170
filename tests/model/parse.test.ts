import { expect, test } from "bun:test";
import { findDuplicateJSONKey, parseManifestText } from "../../lib/model/parse.ts";

test("multi-document YAML, with lines for field paths", () => {
  const text = "a: 1\n---\n# two\nkind: Service\nspec:\n  ports:\n    - port: 80\n      name: x\n---\n";
  const { docs, errors } = parseManifestText("f.yaml", text);
  expect(errors).toEqual([]);
  expect(docs).toHaveLength(2);
  expect(docs[1].line(["spec", "ports", 0, "name"])).toBe(8);
  expect(docs[1].line(["spec", "ports", 0, "missing"])).toBe(7);
});

test("duplicate keys are errors in YAML and JSON", () => {
  expect(parseManifestText("f.yaml", "a: 1\nb: 2\na: 3\n").errors[0]).toMatchObject({ file: "f.yaml", line: 3 });
  const j = parseManifestText("f.json", '{"a": {"x": 1, "y": 2},\n "b": [{"x": 1}, {"x": 2}],\n "a": 0}');
  expect(j.errors).toEqual([{ file: "f.json", line: 3, message: 'duplicate key "a"' }]);
});

test("the JSON duplicate scan handles escapes and nesting", () => {
  expect(findDuplicateJSONKey('{"a\\"b": 1, "a\\"b": 2}')?.key).toBe('a"b');
  expect(findDuplicateJSONKey('{"a": "}{\\\\", "b": {"a": 1}}')).toBeUndefined();
  expect(findDuplicateJSONKey('[{"a":1},{"a":1}]')).toBeUndefined();
  expect(findDuplicateJSONKey('{"\\u0061": 1, "a": 2}')?.key).toBe("a");
});

test("JSON syntax errors carry a line", () => {
  const r = parseManifestText("f.json", '{\n  "a": 1,\n  "b": \n}');
  expect(r.docs).toEqual([]);
  expect(r.errors[0].line).toBeGreaterThan(1);
});

test("JSON field lines are found lazily", () => {
  const { docs } = parseManifestText(
    "f.json",
    '{\n "kind": "Service",\n "spec": {\n  "ports": [\n   {"port": 80}\n  ]\n }\n}',
  );
  expect(docs[0].line(["spec", "ports", 0, "port"])).toBe(5);
});

test("JSON errors name the line and what was wrong", () => {
  expect(parseManifestText("f.json", '{\n  "a": 1,\n  "b": \n}').errors).toEqual([
    { file: "f.json", line: 4, message: 'invalid JSON: unexpected "}"' },
  ]);
  expect(parseManifestText("f.json", '{\n  "a": 1,\n  "b": 2,,\n}').errors[0]).toMatchObject({ line: 3 });
  expect(parseManifestText("f.json", '{"a": "x\n"}').errors[0].message).toBe(
    "invalid JSON: control character in a string",
  );
  expect(parseManifestText("f.json", '{"a": 1} x').errors[0].message).toBe(
    'invalid JSON: unexpected "x" after the document',
  );
});
