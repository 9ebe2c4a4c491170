/**
 * lib/explain/explain.ts as a library: explain over a rendered ruleset (no built-in chains, no
 * jump rules) adds kube-proxy's jumps itself, and tables compiled once serve every walk.
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { compileTables } from "../../lib/explain/explain.ts";
import { addKubeJumps } from "../../lib/explain/jumps.ts";
import { defaultConfig, dumpOfTables, explain, parseSave, renderManifests } from "../../mod.ts";

const MANIFEST = `
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec: {clusterIP: 10.96.0.20, ports: [{port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: default, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{port: 8080}]
endpoints: [{addresses: [10.244.1.5]}, {addresses: [10.244.1.6]}]
`;

function rendered() {
  const config = { ...defaultConfig(), hostname: "node1", clusterCIDR: "10.244.0.0/16" };
  const r = renderManifests([{ file: "web.yaml", text: MANIFEST }], config, { family: "IPv4" });
  expect(r.errors).toEqual([]);
  const rs = r.ruleset;
  if (!rs) throw new Error("no ruleset");
  return dumpOfTables({ filter: rs.filter, nat: rs.nat });
}

const HOST = { localAddresses: ["192.168.0.10"] };
const FROM_POD = { proto: "tcp", src: "10.244.2.9", dst: "10.96.0.20", dport: 80, from: "pod" } as const;

describe("explain over rendered rules", () => {
  test("mod.ts's pipeline: render → dumpOfTables → explain finds the Service (jumps added by explain)", () => {
    const dump = rendered();
    expect(dump.tables.get("nat")?.chains.has("PREROUTING")).toBe(false);
    const ex = explain(dump, FROM_POD, HOST);
    expect(ex.verdict).toBe("DNAT to one of 2 endpoints of default/web");
    expect(ex.outcomes.map((o) => [o.dnat, o.probability])).toEqual([
      ["10.244.1.5:8080", 0.5],
      ["10.244.1.6:8080", 0.5],
    ]);
    expect(ex.paths[0].chains.slice(0, 2)).toEqual(["nat:PREROUTING", "nat:KUBE-SERVICES"]);
    // The same walk as over the rules with the jumps put in by hand.
    expect(explain(addKubeJumps(dump).dump, FROM_POD, HOST)).toEqual(ex);
  });

  test("compileTables says whether it added the jumps; a saved dump keeps its own", () => {
    expect(compileTables(rendered()).addedJumps).toBe(true);
    const saved = parseSave(
      readFileSync(join(import.meta.dir, "..", "fixtures-live", "seed-iptables-nft.rules"), "utf8"),
    );
    expect(compileTables(saved).addedJumps).toBe(false);
  });

  test("tables compiled once serve every walk, each rule compiled once", () => {
    const dump = rendered();
    const tables = compileTables(dump);
    const first = explain(tables, FROM_POD, HOST);
    const rule = tables.tables.get("nat")?.get("KUBE-SERVICES")?.rules[0];
    const compiled = rule?.compiled;
    expect(compiled).toBeDefined();
    const node = { ...FROM_POD, src: "192.168.0.10", from: "node" } as const;
    expect(explain(tables, node, HOST)).toEqual(explain(dump, node, HOST));
    expect(explain(tables, FROM_POD, HOST)).toEqual(first);
    expect(rule?.compiled).toBe(compiled);
  });
});
