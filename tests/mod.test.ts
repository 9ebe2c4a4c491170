/**
 * mod.ts as a library user sees it: the documented pipelines (render → explain, render →
 * compare, render → cleanup, load → build → write) run through mod.ts's exports only, and its
 * doc example runs as written.
 */
import { describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import * as api from "../mod.ts";
import {
  buildRules,
  canonicalize,
  compareDumps,
  compileTables,
  defaultConfig,
  dumpOfTables,
  explain,
  JUMP_RULES,
  loadManifests,
  type Packet,
  parseSave,
  planCleanup,
  type Ruleset,
  renderManifests,
  resolveBuildOptions,
  reviewChanges,
  serviceChains,
  servicePortName,
  summarize,
  toJSON,
  toRestore,
  VERSION,
} from "../mod.ts";
import { removeTempDir, tempDir } from "./support/tempdir.ts";

const read = (name: string) => readFileSync(new URL(`../${name}`, import.meta.url), "utf8");

/** The `ts` examples of mod.ts's doc, each as a function of the api and a console. */
function docExamples(): ((api: object, lines: string[]) => void)[] {
  const transpiler = new Bun.Transpiler({ loader: "ts" });
  return [...read("mod.ts").matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => {
    const ts = m[1]
      .split("\n")
      .map((l) => l.replace(/^ \* ?/, ""))
      .join("\n")
      .replace(/^import \{([^}]*)\} from "\.\/mod\.ts";$/m, (_, names: string) => {
        const values = names.split(",").filter((n) => !n.trim().startsWith("type "));
        return `const {${values.join(",")}} = api;`;
      })
      .replaceAll("console.log(", "lines.push(");
    return new Function("api", "lines", transpiler.transformSync(ts)) as (api: object, lines: string[]) => void;
  });
}

test("mod.ts's doc example runs: the DNAT it promises, and explain's verdict over the rendered rules", () => {
  const examples = docExamples();
  expect(examples).toHaveLength(1);
  const lines: string[] = [];
  examples[0](api, lines);
  expect(lines).toHaveLength(2);
  expect(lines[0].startsWith("*filter\n")).toBe(true);
  expect(lines[0]).toContain("-j DNAT --to-destination 10.244.1.5:8080");
  expect(lines[1]).toBe("DNAT to 10.244.1.5:8080 (default/web)");
});

test("README's Library example runs as written from the checkout: render, explain, diff, cleanup", () => {
  const readme = read("README.md");
  const section = readme.slice(readme.indexOf("\n## Library\n"), readme.indexOf("\n## Development\n"));
  const code = /```ts\n([\s\S]*?)```/.exec(section)?.[1] ?? "";
  expect(code).toContain('from "./mod.ts";');
  const mod = fileURLToPath(new URL("../mod.ts", import.meta.url));
  const dir = tempDir("kip-readme-");
  try {
    const file = join(dir, "pipeline.ts");
    writeFileSync(file, code.replace('from "./mod.ts";', `from ${JSON.stringify(mod)};`));
    const run = Bun.spawnSync([process.execPath, file], { cwd: fileURLToPath(new URL("..", import.meta.url)) });
    expect(run.stderr.toString()).toBe("");
    expect(run.exitCode).toBe(0);
    const out = run.stdout.toString();
    expect(out).toContain("services: 4,");
    expect(out).toContain("0.333 10.244.1.14:80\n0.333 10.244.1.16:80\n0.333 10.244.1.17:80\n");
    expect(out).toContain("DNAT to one of 3 endpoints of default/nginx-svc\nno drift\n");
    expect(out).toContain("-X KUBE-SERVICES");
  } finally {
    removeTempDir(dir);
  }
});

test("the package's entry points are mod.ts, and deno.json's version is kip's", () => {
  expect(JSON.parse(read("package.json")).exports).toEqual({ ".": "./mod.ts" });
  const deno = JSON.parse(read("deno.json"));
  expect(deno.exports).toBe("./mod.ts");
  expect(deno.version).toBe(VERSION);
});

test("sync and cache plumbing stays inside: mod.ts exports none of it", () => {
  for (const name of ["hash16", "SyncContext", "ChangeTracker", "simulateEndpoints", "newBuildCache"])
    expect(Object.keys(api)).not.toContain(name);
});

const service = (endpoints: string[]) => `
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {type: NodePort, clusterIP: 10.96.0.20, ports: [{name: http, port: 80, nodePort: 30080}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: shop, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints: [${endpoints.map((a) => `{addresses: [${a}], nodeName: node2}`).join(", ")}]
`;

const CONFIG = { ...defaultConfig(), hostname: "node1", clusterCIDR: "10.244.0.0/16" };
const HOST = { localAddresses: ["192.168.0.10"] };
const FROM_POD: Packet = { proto: "tcp", src: "10.244.2.9", dst: "10.96.0.20", dport: 80, from: "pod" };
const THREE = ["10.244.1.5", "10.244.1.6", "10.244.1.7"];

function render(endpoints = THREE): Ruleset {
  const r = renderManifests([{ file: "web.yaml", text: service(endpoints) }], CONFIG, { family: "IPv4" });
  expect(r.errors).toEqual([]);
  if (!r.ruleset) throw new Error("no ruleset");
  return r.ruleset;
}

const dumpOf = (rs: Ruleset) => dumpOfTables({ filter: rs.filter, nat: rs.nat });

describe("render → explain", () => {
  test("a pod's packet to the cluster IP lands on each endpoint with probability 1/3", () => {
    const ex = explain(dumpOf(render()), FROM_POD, HOST);
    expect(ex.verdict).toBe("DNAT to one of 3 endpoints of shop/web:http");
    expect(ex.outcomes.map((o) => o.dnat).sort()).toEqual(THREE.map((a) => `${a}:8080`));
    for (const o of ex.outcomes) {
      expect(o.verdict).toBe("DNAT");
      expect(o.service).toBe("shop/web:http");
      // The kernel rounds --probability to 1/2^32: 1/3 to about nine places.
      expect(o.probability).toBeCloseTo(1 / 3, 8);
    }
    expect(ex.outcomes.reduce((sum, o) => sum + o.probability, 0)).toBeCloseTo(1, 12);
    // The endpoint chains are the ones kube-proxy would name.
    const spn = servicePortName("shop", "web", "http");
    expect(ex.outcomes[0].endpointChain).toStartWith("KUBE-SEP-");
    expect(ex.outcomes[0].chains).toContain(`nat:${serviceChains(spn, "TCP").svc}`);
  });

  test("the same over the restore text, and over tables compiled once", () => {
    const rs = render();
    const ex = explain(dumpOf(rs), FROM_POD, HOST);
    expect(explain(parseSave(toRestore(rs)), FROM_POD, HOST).outcomes).toEqual(ex.outcomes);
    const tables = compileTables(dumpOf(rs));
    expect(tables.addedJumps).toBe(true);
    expect(explain(tables, FROM_POD, HOST)).toEqual(ex);
    // From outside, through the node port.
    const viaNodePort = explain(
      tables,
      { ...FROM_POD, src: "203.0.113.7", dst: "192.168.0.10", dport: 30080, from: "external" },
      HOST,
    );
    expect(viaNodePort.outcomes.map((o) => o.verdict)).toEqual(["DNAT", "DNAT", "DNAT"]);
    expect(viaNodePort.masquerade).toBe("always");
  });

  test("a Service without endpoints: REJECT", () => {
    const ex = explain(dumpOf(render([])), FROM_POD, HOST);
    expect(ex.outcomes.map((o) => o.verdict)).toEqual(["REJECT"]);
  });
});

describe("render → compareDumps", () => {
  const options = { family: "IPv4", jumps: false } as const;

  test("a ruleset against itself loaded and saved: no drift", () => {
    const rs = render();
    const result = compareDumps(parseSave(toRestore(rs)), dumpOf(rs), options);
    expect(result.chains).toEqual([]);
    expect(result.summary).toEqual({ missing: 0, extra: 0, changed: 0, rulesAdded: 0, rulesRemoved: 0 });
  });

  test("against a node that lost an endpoint: the missing chain and the changed rules", () => {
    const live = parseSave(toRestore(render(THREE.slice(0, 2))));
    const result = compareDumps(live, dumpOf(render()), options);
    expect(result.summary.missing).toBe(1);
    expect(result.summary.changed).toBeGreaterThan(0);
    const missing = result.chains.find((c) => c.status === "missing");
    expect(missing?.table).toBe("nat");
    expect(missing?.chain).toStartWith("KUBE-SEP-");
    expect(missing?.added.join("\n")).toContain("--to-destination 10.244.1.7:8080");
    expect(missing?.patch).toContain("+++ desired nat/");
  });

  test("with jumps: a node without kube-proxy's jump rules drifts in the built-in chains", () => {
    const rs = render();
    const result = compareDumps(parseSave(toRestore(rs)), dumpOf(rs), { ...options, jumps: true });
    const builtins = result.chains.map((c) => `${c.table}/${c.chain}`);
    const expected = new Set(
      JUMP_RULES.filter((j) => j.table === "filter" || j.table === "nat").map((j) => `${j.table}/${j.from}`),
    );
    expect(new Set(builtins)).toEqual(expected);
    expect(result.summary.rulesAdded).toBe(JUMP_RULES.length);
  });
});

describe("render → planCleanup", () => {
  test("every KUBE-* chain goes, and the jumps to them from the built-in chains", () => {
    const restore = toRestore(render());
    // What a node would save: the rules with one of kube-proxy's jumps in place.
    const saved = parseSave(
      restore.replace(
        "*nat\n",
        '*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES\n',
      ),
    );
    const plans = planCleanup(saved, { ownedOnly: false });
    expect(plans.map((p) => p.table)).toEqual(["nat", "filter"]);
    const nat = plans[0];
    const declared = [...(saved.tables.get("nat")?.chains.keys() ?? [])].filter((c) => c.startsWith("KUBE-"));
    expect(nat.chains).toEqual(declared.sort());
    expect(nat.jumps.map((r) => r.chain)).toEqual(["PREROUTING"]);
    expect(nat.inputs).toHaveLength(1);
    expect(nat.inputs[0]).toContain('-D PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES');
    expect(nat.inputs[0]).toContain("-X KUBE-SERVICES");
  });
});

describe("load → build → write", () => {
  test("the steps renderManifests takes, one by one: the same rules", () => {
    const loaded = loadManifests([{ file: "web.yaml", text: service(THREE) }], { nodeName: "node1" });
    expect(loaded.errors).toEqual([]);
    const rs = buildRules(loaded.state, resolveBuildOptions(CONFIG, "IPv4", loaded.state.node));
    expect(toRestore(rs)).toBe(toRestore(render()));
    expect(summarize(rs)).toEqual({
      services: 1,
      servicePorts: 1,
      endpoints: 3,
      chains: expect.any(Number),
      rules: expect.any(Number),
    });
    expect(toJSON(rs)).toMatchObject({ family: "IPv4", summary: summarize(rs) });
    expect(canonicalize(toRestore(rs))).toContain("*nat");
  });

  test("reviewChanges between two renders: the endpoint that went", () => {
    const side = (endpoints: string[]) => {
      const r = renderManifests([{ file: "web.yaml", text: service(endpoints) }], CONFIG, { family: "IPv4" });
      return { services: r.loaded.state.services, ports: r.ruleset?.services ?? [] };
    };
    const review = reviewChanges(side(THREE), side(THREE.slice(0, 2)));
    expect(review.exposure).toEqual([]);
    expect(review.services).toEqual([
      { service: "shop/web", status: "changed", changes: [], endpoints: [{ port: "http/TCP", before: 3, after: 2 }] },
    ]);
  });
});
