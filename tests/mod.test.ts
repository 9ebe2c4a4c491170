import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import * as api from "../mod.ts";

test("mod.ts's doc example runs and renders the DNAT it promises", () => {
  const src = readFileSync(new URL("../mod.ts", import.meta.url), "utf8");
  const code = (/```ts\n([\s\S]*?)```/.exec(src)?.[1] ?? "")
    .split("\n")
    .map((l) => l.replace(/^ \* ?/, ""))
    .join("\n")
    .replace(/^import \{([^}]*)\} from "\.\/mod\.ts";$/m, "const {$1} = api;")
    .replace("console.log(", "lines.push(");
  const lines: string[] = [];
  new Function("api", "lines", code)(api, lines);
  expect(lines).toHaveLength(1);
  expect(lines[0].startsWith("*filter\n")).toBe(true);
  expect(lines[0]).toContain("-j DNAT --to-destination 10.244.1.5:8080");
});
