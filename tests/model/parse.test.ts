import { expect, test } from "bun:test";
import { findDuplicateJSONKey } from "../../lib/model/json_scan.ts";
import { parseManifestText } from "../../lib/model/parse.ts";

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
  expect(findDuplicateJSONKey('{"ab": 1, "a\\u0062": 2}')?.key).toBe("ab");
});

test("the JSON duplicate scan: keys after a nested map, prefixes, and maps with many keys", () => {
  // The nested map's keys leave the stack; the outer map's keys around it are still compared.
  const at = (t: string) => findDuplicateJSONKey(t);
  expect(at('{"a": {"b": 1, "c": 2}, "b": 3, "a": 4}')).toEqual({ offset: 32, key: "a" });
  expect(at('{"a": {"b": 1, "c": 2}, "b": 3}')).toBeUndefined();
  expect(at('{"ab": 1, "a": 2, "abc": 3, "b": 4}')).toBeUndefined();
  expect(at('{"a": [{"a": 1}, {"a": 2}], "b": {"a": {"a": 1}}}')).toBeUndefined();
  // Past 16 keys a map is checked with a Set: before and after the switch.
  const many = (extra: string) => `{${Array.from({ length: 20 }, (_, i) => `"k${i}": ${i}`).join(", ")}${extra}}`;
  expect(at(many(""))).toBeUndefined();
  expect(at(many(', "k3": 0'))?.key).toBe("k3");
  expect(at(many(', "k19": 0'))?.key).toBe("k19");
  expect(at(many(', "k\\u0031": 0'))?.key).toBe("k1");
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
