/**
 * Rescans of a manifests directory cost nothing when nothing changed: unchanged files are not
 * read (counted), a changed file is read and parsed alone, its objects alone are re-emitted;
 * a broken file is reported once per content; merging files works on their objects and agrees
 * with loading them all together.
 */
import { describe, expect, test } from "bun:test";
import { readFileSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { loadManifests } from "../../lib/model/load.ts";
import { ManifestsSource } from "../../lib/sources/manifests.ts";
import type { SourceEvent, SourceHandler } from "../../lib/sources/source.ts";
import { removeTempDir, tempDir } from "../support/tempdir.ts";

const svc = (name: string, ip: string) =>
  `apiVersion: v1
kind: Service
metadata: {name: ${name}, namespace: shop}
spec: {clusterIP: ${ip}, ports: [{port: 80}]}
`;
const slice = (name: string, addr: string) =>
  `apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: ${name}-1, namespace: shop, labels: {kubernetes.io/service-name: ${name}}}
addressType: IPv4
ports: [{port: 8080}]
endpoints: [{addresses: [${addr}]}]
`;
const endpoints = (name: string, addr: string) =>
  `apiVersion: v1
kind: Endpoints
metadata: {name: ${name}, namespace: shop}
subsets: [{addresses: [{ip: ${addr}}], ports: [{port: 8080}]}]
`;

const HOUR_AGO = new Date(Date.now() - 3600_000);

/** Write a file with an old mtime: its stat signature is trusted at once (not "racily clean"). */
function put(dir: string, name: string, text: string): void {
  writeFileSync(join(dir, name), text);
  utimesSync(join(dir, name), HOUR_AGO, HOUR_AGO);
}

function collect() {
  const events: SourceEvent[] = [];
  const problems: string[] = [];
  const handler: SourceHandler = {
    onEvent: (e) => events.push(e),
    onSynced: () => {},
    onProblem: (m) => problems.push(m),
  };
  const names = () => events.map((e) => `${e.type} ${e.kind} ${e.key}`);
  return { events, problems, handler, names };
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = tempDir("kip-rescan-");
  try {
    await fn(dir);
  } finally {
    removeTempDir(dir);
  }
}

describe("ManifestsSource rescans", () => {
  test("unchanged files are not read again; a changed file is read and parsed alone", () =>
    withDir(async (dir) => {
      put(dir, "a.yaml", `${svc("a", "10.96.0.1")}---\n${slice("a", "10.244.0.1")}`);
      put(dir, "b.yaml", `${svc("b", "10.96.0.2")}---\n${slice("b", "10.244.0.2")}`);
      put(dir, "c.yaml", `${svc("c", "10.96.0.3")}---\n${slice("c", "10.244.0.3")}`);
      const src = new ManifestsSource({ paths: [dir], nodeName: "node1", rescanMs: 0 });
      const c = collect();
      await src.start(c.handler);
      try {
        expect(src.reads).toBe(3);
        expect(src.parses).toBe(3);
        expect(c.events).toHaveLength(6);
        for (let i = 0; i < 5; i++) await src.scan();
        expect(src.reads).toBe(3);
        expect(src.parses).toBe(3);
        expect(c.events).toHaveLength(6);

        // One file changes: it alone is read and parsed; only its objects are emitted.
        put(dir, "b.yaml", `${svc("b", "10.96.0.2")}---\n${slice("b", "10.244.0.22")}`);
        await src.scan();
        expect(src.reads).toBe(4);
        expect(src.parses).toBe(4);
        expect(c.names().slice(6)).toEqual(["upsert Service shop/b", "upsert EndpointSlice shop/b-1"]);
        const slices = c.events.filter((e) => e.type === "upsert" && e.kind === "EndpointSlice");
        expect(JSON.stringify(slices.at(-1))).toContain("10.244.0.22");
        await src.scan();
        expect(src.reads).toBe(4);

        // Touched (same content, new mtime): read once to see that, not parsed, nothing emitted.
        const later = new Date(Date.now() - 1800_000);
        utimesSync(join(dir, "c.yaml"), later, later);
        await src.scan();
        await src.scan();
        expect(src.reads).toBe(5);
        expect(src.parses).toBe(4);
        expect(c.events).toHaveLength(8);

        // Removed: its objects are deleted, nothing is read.
        rmSync(join(dir, "a.yaml"));
        await src.scan();
        expect(src.reads).toBe(5);
        expect(c.names().slice(8).sort()).toEqual(["delete EndpointSlice shop/a-1", "delete Service shop/a"]);
      } finally {
        await src.stop();
      }
    }));

  test("a file written just now is read again until its mtime is old enough to trust, never parsed twice", () =>
    withDir(async (dir) => {
      writeFileSync(join(dir, "a.yaml"), svc("a", "10.96.0.1"));
      const src = new ManifestsSource({ paths: [dir], nodeName: "node1", rescanMs: 0 });
      const c = collect();
      await src.start(c.handler);
      try {
        await src.scan();
        // Same signature, but within the file system's timestamp granularity of a write: re-read.
        expect(src.reads).toBe(2);
        expect(src.parses).toBe(1);
        utimesSync(join(dir, "a.yaml"), HOUR_AGO, HOUR_AGO);
        await src.scan();
        await src.scan();
        expect(src.reads).toBe(3);
        expect(src.parses).toBe(1);
        expect(c.events).toHaveLength(1);
      } finally {
        await src.stop();
      }
    }));

  test("a broken file is reported once per content: 'not loaded' when it never loaded, else its previous content is kept", () =>
    withDir(async (dir) => {
      put(dir, "a.yaml", svc("a", "10.96.0.1"));
      put(dir, "bad.yaml", "kind: [\n");
      const src = new ManifestsSource({ paths: [dir], nodeName: "node1", rescanMs: 0 });
      const c = collect();
      await src.start(c.handler);
      try {
        for (let i = 0; i < 5; i++) await src.scan();
        expect(c.problems).toHaveLength(1);
        expect(c.problems[0]).toStartWith(`${join(dir, "bad.yaml")}:`);
        expect(c.problems[0]).toEndWith("(not loaded)");
        expect(c.names()).toEqual(["upsert Service shop/a"]);

        // A good file broken: reported once, its objects kept.
        put(dir, "a.yaml", "kind: [\n# a\n");
        for (let i = 0; i < 5; i++) await src.scan();
        expect(c.problems).toHaveLength(2);
        expect(c.problems[1]).toEndWith("(keeping the file's previous content)");
        expect(c.names()).toEqual(["upsert Service shop/a"]);

        // Fixed, then broken again the same way: that content was reported already.
        put(dir, "a.yaml", svc("a", "10.96.0.9"));
        await src.scan();
        put(dir, "a.yaml", "kind: [\n# a\n");
        for (let i = 0; i < 3; i++) await src.scan();
        expect(c.problems).toHaveLength(2);
        expect(c.names()).toEqual(["upsert Service shop/a", "upsert Service shop/a"]);
      } finally {
        await src.stop();
      }
    }));

  test("merging files works on their objects and agrees with loading them together", () =>
    withDir(async (dir) => {
      put(dir, "1-a.yaml", `${svc("a", "10.96.0.1")}---\n${slice("a", "10.244.0.1")}`);
      // Endpoints for a in another file: the EndpointSlice wins, as in one load.
      put(dir, "2-a-endpoints.yaml", endpoints("a", "10.244.9.9"));
      // Endpoints for b with no slice anywhere: mirrored.
      put(dir, "3-b.yaml", `${svc("b", "10.96.0.2")}---\n${endpoints("b", "10.244.0.2")}`);
      // c defines shop/a again: the whole file is left out, reported once with both places.
      put(dir, "4-dup.yaml", `${svc("c", "10.96.0.3")}---\n${svc("a", "10.96.0.4")}`);
      const src = new ManifestsSource({ paths: [dir], nodeName: "node1", rescanMs: 0 });
      const c = collect();
      await src.start(c.handler);
      try {
        for (let i = 0; i < 3; i++) await src.scan();
        expect(c.problems).toEqual([
          `${join(dir, "4-dup.yaml")}:8: Service shop/a: metadata.name: defined twice (first at ${join(dir, "1-a.yaml")}:1); the file is not loaded`,
        ]);
        const together = loadManifests(
          ["1-a.yaml", "2-a-endpoints.yaml", "3-b.yaml"].map((f) => ({
            file: join(dir, f),
            text: readFileSync(join(dir, f), "utf8"),
          })),
          { nodeName: "node1" },
        );
        const strip = (o: object) => JSON.stringify({ ...o, origin: undefined });
        const want = [
          ...together.state.services.map((s) => `Service ${s.namespace}/${s.name} ${strip(s)}`),
          ...together.state.endpointSlices.map((s) => `EndpointSlice ${s.namespace}/${s.name} ${strip(s)}`),
        ].sort();
        const got = c.events.map((e) => (e.type === "upsert" ? `${e.kind} ${e.key} ${strip(e.object)}` : "")).sort();
        expect(got).toEqual(want);

        // The clash resolved: the file is served.
        put(dir, "4-dup.yaml", svc("c", "10.96.0.3"));
        await src.scan();
        expect(c.names().at(-1)).toBe("upsert Service shop/c");
        expect(c.problems).toHaveLength(1);
      } finally {
        await src.stop();
      }
    }));
});
