/**
 * The manifests source against a directory of hostile files: no file stops a scan, the good
 * files' objects still arrive, each problem is reported once per version of its file, and a
 * scan that does not finish shows in scanRunningMs (which /livez reads).
 */
import { describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { loadManifests } from "../../lib/model/load.ts";
import { ManifestsSource } from "../../lib/sources/manifests.ts";
import type { SourceEvent, SourceHandler } from "../../lib/sources/source.ts";
import { GOOD, hostileFiles, REPORTED } from "../support/hostile.ts";
import { tempDir } from "../support/tempdir.ts";

function collect() {
  const events: SourceEvent[] = [];
  const problems: string[] = [];
  const synced: string[] = [];
  const handler: SourceHandler = {
    onEvent: (e) => events.push(e),
    onSynced: (k) => synced.push(k),
    onProblem: (m) => problems.push(m),
  };
  return { events, problems, synced, handler };
}

describe("ManifestsSource", () => {
  test("a directory of hostile files: the good file is served, each bad one reported once per version", async () => {
    const dir = tempDir("kip-hostile-");
    const outside = tempDir("kip-outside-");
    writeFileSync(join(dir, "good.yaml"), GOOD);
    hostileFiles(dir, outside);
    const src = new ManifestsSource({ paths: [dir], nodeName: "node1", rescanMs: 0, maxFileBytes: 1024 * 1024 });
    const c = collect();
    await src.start(c.handler);
    try {
      expect(c.synced).toEqual(["Service", "EndpointSlice", "Node"]);
      expect(c.events.map((e) => `${e.type} ${e.kind} ${e.key}`)).toEqual([
        "upsert Service shop/web",
        "upsert EndpointSlice shop/web-1",
      ]);
      // (120 aliases of a scalar may be accepted by the parser: no problem required for it.)
      for (const name of REPORTED)
        expect(c.problems.filter((p) => p.includes(join(dir, name))).length).toBeGreaterThanOrEqual(1);
      expect(c.problems.join("\n")).not.toContain("s3cr3t");
      const first = c.problems.length;
      // Rescans of the same files: nothing new to say, nothing re-emitted.
      for (let i = 0; i < 3; i++) await src.scan();
      expect(c.problems.length).toBe(first);
      expect(c.events.length).toBe(2);
      // A new version of a broken file is reported again (once); a fixed one is served.
      writeFileSync(join(dir, "deep.json"), "[".repeat(200_001));
      await src.scan();
      await src.scan();
      expect(c.problems.slice(first).filter((p) => p.includes("deep.json")).length).toBeGreaterThanOrEqual(1);
      const second = c.problems.length;
      await src.scan();
      expect(c.problems.length).toBe(second);
      writeFileSync(join(dir, "alias.yaml"), GOOD.replaceAll("web", "api").replace("10.96.0.40", "10.96.0.41"));
      await src.scan();
      expect(c.events.slice(2).map((e) => `${e.type} ${e.kind} ${e.key}`)).toEqual([
        "upsert Service shop/api",
        "upsert EndpointSlice shop/api-1",
      ]);
    } finally {
      await src.stop();
    }
  });

  test("a loader that throws is one more problem with that file, reported once; the others are served", async () => {
    const dir = tempDir("kip-throw-");
    writeFileSync(join(dir, "boom.yaml"), "kind: Boom\n");
    writeFileSync(join(dir, "good.yaml"), GOOD);
    const loader: typeof loadManifests = (files, opts) => {
      if (files.some((f) => f.file.endsWith("boom.yaml"))) throw new RangeError("Maximum call stack size exceeded");
      return loadManifests(files, opts);
    };
    const src = new ManifestsSource({ paths: [dir], nodeName: "node1", rescanMs: 0, loader });
    const c = collect();
    await src.start(c.handler);
    for (let i = 0; i < 3; i++) await src.scan();
    await src.stop();
    expect(c.problems).toEqual([
      `${join(dir, "boom.yaml")}:1: cannot be loaded: Maximum call stack size exceeded (not loaded)`,
    ]);
    expect(c.events.map((e) => e.key)).toEqual(["shop/web", "shop/web-1"]);
  });

  test("a scan that does not finish shows in scanRunningMs; a finished one reads 0", async () => {
    const dir = tempDir("kip-stuck-");
    writeFileSync(join(dir, "good.yaml"), GOOD);
    let now = 1000;
    let release!: () => void;
    const held = new Promise<void>((r) => {
      release = r;
    });
    const src = new ManifestsSource({
      paths: [dir],
      nodeName: "node1",
      rescanMs: 0,
      now: () => now,
      yieldFn: () => held,
    });
    const c = collect();
    const started = src.start(c.handler);
    now += 45_000;
    expect(src.scanRunningMs()).toBe(45_000);
    release();
    await started;
    expect(src.scanRunningMs()).toBe(0);
    expect(c.events).toHaveLength(2);
    await src.stop();
  });
});
