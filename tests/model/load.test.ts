/** The loader's lean shapes (lib/model/load.ts, validate.ts): what they share, and that nothing is lost. */
import { expect, test } from "bun:test";
import { loadManifests } from "../../lib/model/load.ts";

const slice = (name: string, endpoints: object[]) => ({
  apiVersion: "discovery.k8s.io/v1",
  kind: "EndpointSlice",
  metadata: { name, namespace: "shop", labels: { "kubernetes.io/service-name": "web" } },
  addressType: "IPv4",
  endpoints,
});

test("endpoints without hints share one frozen empty list; hints given are kept", () => {
  const text = JSON.stringify({
    apiVersion: "v1",
    kind: "List",
    items: [
      slice("a", [
        { addresses: ["10.0.0.1"], nodeName: "node-1" },
        { addresses: ["10.0.0.2"], nodeName: "node-1", hints: { forZones: [{ name: "z1" }] } },
      ]),
      slice("b", [{ addresses: ["010.0.0.3"], conditions: { ready: false } }]),
    ],
  });
  const r = loadManifests([{ file: "m.json", text }], { nodeName: "node-1" });
  expect(r.errors).toEqual([]);
  const [a, b] = r.state.endpointSlices;
  expect(a.endpoints[0].zoneHints).toEqual([]);
  expect(Object.isFrozen(a.endpoints[0].zoneHints)).toBe(true);
  expect(a.endpoints[0].nodeHints).toBe(b.endpoints[0].zoneHints);
  expect(a.endpoints[1].zoneHints).toEqual(["z1"]);
  expect(a.endpoints[1].nodeHints).toEqual([]);
  expect(b.endpoints[0]).toMatchObject({ addresses: ["10.0.0.3"], ready: false, nodeName: undefined });
  expect(a.endpoints.map((e) => e.nodeName)).toEqual(["node-1", "node-1"]);
});

test("bad endpoint fields are still reported at their own path", () => {
  const text = JSON.stringify(
    slice("a", [
      { addresses: ["10.0.0.1"], conditions: { ready: "yes" } },
      { addresses: [7], nodeName: "Node_1" },
      { addresses: ["10.0.0.3"], hints: { forNodes: [{ name: "a b" }] }, condition: {} },
    ]),
    null,
    1,
  );
  const r = loadManifests([{ file: "m.json", text }], { nodeName: "node-1" });
  expect(r.errors.map((e) => e.message)).toEqual([
    'EndpointSlice shop/a: endpoints[0].conditions.ready: "yes" is not a boolean',
    "EndpointSlice shop/a: endpoints[1].addresses[0]: 7 is not a string",
    'EndpointSlice shop/a: endpoints[1].nodeName: "Node_1" is not a valid node name',
    'EndpointSlice shop/a: endpoints[2].hints.forNodes[0].name: "a b" is not a valid node name',
  ]);
  // Unknown fields: the path walked down and back up for every endpoint.
  expect(r.warnings.map((w) => w.message)).toEqual([
    'EndpointSlice shop/a: endpoints[2].condition: unknown field (did you mean "conditions"?)',
  ]);
});

test("an object's origin finds its line after the load, from the file's locator alone", () => {
  const items = [0, 1, 2].map((i) => ({
    apiVersion: "v1",
    kind: "Service",
    metadata: { name: `s${i}`, namespace: "shop" },
    spec: { clusterIP: `10.96.0.${i + 1}`, ports: [{ port: 80 }] },
  }));
  const text = JSON.stringify({ apiVersion: "v1", kind: "List", items }, null, 1);
  const r = loadManifests([{ file: "m.json", text }], { nodeName: "n" });
  const lines = text.split("\n");
  for (const svc of r.state.services) {
    const line = svc.origin?.line ?? 0;
    // The line of the item's opening brace: the next lines name it.
    expect(lines.slice(line - 1, line + 5).join("\n")).toContain(`"name": "${svc.name}"`);
  }
});
