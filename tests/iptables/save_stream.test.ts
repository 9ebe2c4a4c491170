/**
 * Reading iptables-save as it is written (kip diff): SaveParser fed in pieces gives parseSave's
 * dump whatever the cuts (mid-line, mid-CRLF, one character at a time), and execToFile hands
 * over a program's whole output, while it runs, with its exit code and stderr.
 */
import { expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import { execToFile } from "../../lib/iptables/exec_runner.ts";
import { IptablesUnavailable } from "../../lib/iptables/runner.ts";
import { parseSave, type SaveDump, SaveParser } from "../../lib/iptables/save_parser.ts";
import { tempDir } from "../support/tempdir.ts";

const DUMPS = join(import.meta.dir, "dumps");
const texts = readdirSync(DUMPS).map((f) => readFileSync(join(DUMPS, f), "utf8"));

/** A dump as plain data, rules with their (lazily split) arguments. */
const plain = (d: SaveDump) => ({
  generator: d.generator,
  errors: d.errors,
  tables: [...d.tables].map(([name, t]) => ({
    name,
    chains: [...t.chains.values()],
    deletes: t.deletes,
    rules: t.rules.map((r) => ({ op: r.op, chain: r.chain, text: r.text, line: r.line, args: r.args })),
  })),
});

function inPieces(text: string, cuts: number[]): SaveDump {
  const p = new SaveParser();
  let at = 0;
  for (const c of [...new Set(cuts)].sort((a, b) => a - b)) {
    p.push(text.slice(at, c));
    at = c;
  }
  p.push(text.slice(at));
  return p.finish();
}

test("every hand-written dump, cut anywhere, parses as in one piece", () => {
  for (const text of texts) {
    const whole = plain(parseSave(text));
    expect(plain(inPieces(text, [...Array(text.length).keys()]))).toEqual(whole);
    fc.assert(
      fc.property(fc.array(fc.nat({ max: text.length }), { maxLength: 20 }), (cuts) => {
        expect(plain(inPieces(text, cuts))).toEqual(whole);
      }),
      { numRuns: 50 },
    );
  }
});

test("a dump without a final newline, and a cut-off one, as parseSave", () => {
  for (const text of ["*nat\n:KUBE-X - [0:0]\n-A KUBE-X -j RETURN\nCOMMIT", "*nat\n-A KUBE-X -j RETURN\n"])
    expect(plain(inPieces(text, [3, 10, 11]))).toEqual(plain(parseSave(text)));
});

test("execToFile hands over the whole output as it is written, and the exit code", async () => {
  let text = "";
  let pieces = 0;
  const r = await execToFile(["seq", "1", "200000"]).read((t) => {
    text += t;
    pieces++;
  });
  expect(r.code).toBe(0);
  expect(text).toBe(`${Array.from({ length: 200000 }, (_, i) => i + 1).join("\n")}\n`);
  expect(pieces).toBeGreaterThan(0);
});

test("execToFile: a failing program's code and stderr; a missing one is IptablesUnavailable", async () => {
  const r = await execToFile(["ls", "/nonexistent-kip-test"]).read(() => {});
  expect(r.code).not.toBe(0);
  expect(r.stderr).toContain("nonexistent-kip-test");
  await expect(execToFile(["kip-no-such-program"]).read(() => {})).rejects.toBeInstanceOf(IptablesUnavailable);
});

test("execToFile out of file descriptors: an Error naming the program, and no scratch directory left in TMPDIR", () => {
  // A daemon short of descriptors retries every sync: each attempt must not leave a directory.
  const dir = tempDir("kip-emfile-");
  const scratch = join(dir, "tmp");
  mkdirSync(scratch);
  const script = join(dir, "emfile.ts");
  writeFileSync(
    script,
    [
      `import { closeSync, openSync, readdirSync } from "node:fs";`,
      `import { execToFile } from ${JSON.stringify(join(import.meta.dir, "..", "..", "lib", "iptables", "exec_runner.ts"))};`,
      `const fds: number[] = [];`,
      `try { for (;;) fds.push(openSync("/dev/null", "r")); } catch {}`,
      `let error = "";`,
      `try { await execToFile(["true"]).read(() => {}); } catch (e) { error = (e as Error).message; }`,
      `for (const fd of fds) closeSync(fd);`,
      `console.log(JSON.stringify({ fds: fds.length, error, left: readdirSync(process.env.TMPDIR as string) }));`,
    ].join("\n"),
  );
  const r = spawnSync("sh", ["-c", 'ulimit -n 256 && exec "$0" "$1"', process.execPath, script], {
    env: { ...process.env, TMPDIR: scratch },
    encoding: "utf8",
    timeout: 30_000,
  });
  expect(r.stderr).toBe("");
  const out = JSON.parse(r.stdout) as { fds: number; error: string; left: string[] };
  expect(out.fds).toBeGreaterThan(0);
  expect(out.error).toStartWith("Cannot run true: ");
  expect(out.left).toEqual([]);
});
