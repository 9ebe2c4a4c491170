import { expect, test } from "bun:test";
import type { EndpointSlice, Service } from "../../lib/model/types.ts";
import { ChangeTracker } from "../../lib/proxy/tracker.ts";
import { modelService, modelSlice } from "../support/objects.ts";

const svc = (name: string, over: Partial<Service> = {}): Service =>
  modelService("ns", name, "10.96.0.1", { ports: [{ name: "", protocol: "TCP", port: 80, nodePort: 0 }], ...over });
const slice = (name: string, service: string, ip: string): EndpointSlice => ({
  ...modelSlice("ns", name, service, [ip], 80),
  ports: [{ name: "", port: 80, protocol: "TCP" }],
});

test("only what kube-proxy reads is a change (spec §8.1)", () => {
  const t = new ChangeTracker("node1");
  expect(t.upsertService("ns/a", svc("a"))).toBe(true);
  expect([...t.takeChanged()]).toEqual(["ns/a"]);
  expect(t.upsertService("ns/a", svc("a", { labels: { app: "x" } }))).toBe(false);
  expect(t.upsertService("ns/a", svc("a", { labels: { "service.kubernetes.io/headless": "" } }))).toBe(true);
  expect(t.upsertService("ns/a", svc("a", { clusterIPs: ["10.96.0.2"] }))).toBe(true);
  expect([...t.takeChanged()]).toEqual(["ns/a"]);
  expect(t.pending).toBe(false);
});

test("a slice changes the Service it belongs to, both of them when it moves", () => {
  const t = new ChangeTracker("node1");
  t.upsertSlice("ns/s1", slice("s1", "a", "10.1.0.1"));
  expect([...t.takeChanged()]).toEqual(["ns/a"]);
  t.upsertSlice("ns/s1", {
    ...slice("s1", "a", "10.1.0.1"),
    labels: { "kubernetes.io/service-name": "a", other: "x" },
  });
  expect(t.pending).toBe(false);
  t.upsertSlice("ns/s1", slice("s1", "b", "10.1.0.1"));
  expect([...t.takeChanged()].sort()).toEqual(["ns/a", "ns/b"]);
  t.deleteSlice("ns/s1");
  expect([...t.takeChanged()]).toEqual(["ns/b"]);
  expect(t.deleteSlice("ns/s1")).toBe(false);
});

test("a node zone change forces a full sync", () => {
  const t = new ChangeTracker("node1");
  const node = { name: "node1", labels: { "topology.kubernetes.io/zone": "a" }, podCIDRs: [], addresses: [] };
  t.setNode(node);
  t.needFullSync = false;
  expect(t.setNode({ ...node })).toBe(false);
  expect(t.needFullSync).toBe(false);
  t.setNode({ ...node, labels: { "topology.kubernetes.io/zone": "b" } });
  expect(t.needFullSync).toBe(true);
});
