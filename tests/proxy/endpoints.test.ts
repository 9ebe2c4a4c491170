/**
 * endpointsByServicePort against a plain reference (a first-seen map per service port, every
 * slice's endpoints sorted by ip:port then state): the same lists, the same objects' fields.
 */
import { expect, test } from "bun:test";
import fc from "fast-check";
import type { Endpoint, EndpointSlice } from "../../lib/model/types.ts";
import { type EndpointInfo, endpointsByServicePort } from "../../lib/proxy/endpoints.ts";

const stateKey = (e: EndpointInfo) =>
  `${e.ready ? 0 : 1}${e.serving ? 0 : 1}${e.terminating ? 1 : 0}${e.isLocal ? 0 : 1} ${e.zoneHints.join(",")} ${e.nodeHints.join(",")}`;
const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

function reference(slices: EndpointSlice[], nodeName: string): Map<string, EndpointInfo[]> {
  const byKey = new Map<string, Map<string, EndpointInfo>>();
  const sorted = [...slices].sort((a, b) => cmp(a.namespace, b.namespace) || cmp(a.name, b.name));
  for (const s of sorted)
    for (const port of s.ports) {
      if (port.name === null || port.port === null || port.port === 0) continue;
      const spn = port.name ? `${s.namespace}/${s.labels["kubernetes.io/service-name"]}:${port.name}` : "";
      const key = `${spn || `${s.namespace}/${s.labels["kubernetes.io/service-name"]}`} ${port.protocol}`;
      const eps = s.endpoints.map((ep) => ({
        ip: ep.addresses[0],
        port: port.port as number,
        ipPort: ep.addresses[0].includes(":") ? `[${ep.addresses[0]}]:${port.port}` : `${ep.addresses[0]}:${port.port}`,
        ready: ep.ready !== false,
        serving: ep.serving !== false,
        terminating: ep.terminating === true,
        isLocal: ep.nodeName === nodeName,
        zoneHints: ep.zoneHints,
        nodeHints: ep.nodeHints,
        chain: "",
      }));
      eps.sort((a, b) => cmp(a.ipPort, b.ipPort) || cmp(stateKey(a), stateKey(b)));
      let seen = byKey.get(key);
      if (!seen) byKey.set(key, (seen = new Map()));
      for (const e of eps) if (!seen.has(e.ipPort) || e.isLocal) seen.set(e.ipPort, e);
    }
  return new Map([...byKey].map(([k, m]) => [k, [...m.values()].sort((a, b) => cmp(a.ipPort, b.ipPort))]));
}

// Addresses that are others' prefixes (10.0.0.1 of 10.0.0.10, fd00::1 of fd00::1:0 and fd00::1a):
// `ip:port` order is not the addresses' order there.
const ADDRESSES = {
  IPv4: ["10.0.0.1", "10.0.0.10", "10.0.0.2", "10.0.1.1", "9.0.0.1", "10.0.0.100"],
  IPv6: ["fd00::1", "fd00::10", "fd00::1:0", "fd00::1a", "fd00::2", "fd00::a", "fd00::"],
};

const endpoint = (family: "IPv4" | "IPv6"): fc.Arbitrary<Endpoint> =>
  fc.record({
    addresses: fc.tuple(fc.constantFrom(...ADDRESSES[family])),
    ready: fc.option(fc.boolean(), { nil: undefined }),
    serving: fc.option(fc.boolean(), { nil: undefined }),
    terminating: fc.option(fc.boolean(), { nil: undefined }),
    nodeName: fc.option(fc.constantFrom("node-a", "node-b"), { nil: undefined }),
    zoneHints: fc.constantFrom([], ["z1"]),
    nodeHints: fc.constantFrom([], ["node-a"]),
  });

const slice = (family: "IPv4" | "IPv6"): fc.Arbitrary<EndpointSlice> =>
  fc.record({
    namespace: fc.constantFrom("ns1", "ns2"),
    name: fc.constantFrom("s-a", "s-b", "s-c"),
    labels: fc.constant({ "kubernetes.io/service-name": "svc" }),
    addressType: fc.constant(family),
    ports: fc.array(
      fc.record({
        name: fc.constantFrom("", "http"),
        port: fc.constantFrom(80, 8080),
        protocol: fc.constantFrom("TCP" as const, "UDP" as const),
      }),
      { minLength: 1, maxLength: 2 },
    ),
    endpoints: fc.array(endpoint(family), { maxLength: 8 }),
  });

test.each(["IPv4", "IPv6"] as const)(
  "%s: equals a first-seen map over slices by name, endpoints by ip:port then state",
  (family) => {
    fc.assert(
      fc.property(fc.array(slice(family), { maxLength: 5 }), (slices) => {
        // Distinct slice names per namespace, as the API server has them.
        const named = slices.map((s, i) => ({ ...s, name: `${s.name}-${i}` }));
        const got = endpointsByServicePort(named, { family, nodeName: "node-a" });
        expect(got).toEqual(reference(named, "node-a"));
      }),
      { numRuns: 500 },
    );
  },
);
