/**
 * kube-proxy's vocabulary: each comment builder's text reads back through its parser, the
 * parsers refuse what kube-proxy does not write, and the chain sets hold what the spec says.
 */
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { dumpOfTables } from "../../lib/iptables/save_parser.ts";
import { loadManifests } from "../../lib/model/load.ts";
import { buildRules } from "../../lib/proxy/build.ts";
import {
  CANARY_TABLES,
  type DestinationKind,
  destinationComment,
  ENTRY_CHAINS,
  FIXED_CHAINS,
  isKubeChain,
  isServiceChain,
  noEndpointsComment,
  ownedByKubeProxy,
  parseDestinationComment,
  parseNoEndpointsComment,
  parseServicePortNameComment,
  serviceChainKind,
} from "../../lib/proxy/chains.ts";
import { endpointChain, serviceChains } from "../../lib/proxy/names.ts";
import { defaultConfig, resolveBuildOptions } from "../../lib/proxy/options.ts";

const NAMES = ["default/nginx-svc", "ns1/svc1:p80", "kube-system/kube-dns:dns-tcp", "a/b:c"];

describe("comments round-trip", () => {
  test("destination comments", () => {
    for (const spn of NAMES)
      for (const kind of ["cluster IP", "external IP", "loadbalancer IP"] as DestinationKind[]) {
        const c = destinationComment(spn, kind);
        expect(parseDestinationComment(c)).toEqual({ servicePortName: spn, kind });
        expect(parseNoEndpointsComment(c)).toBeUndefined();
      }
    expect(destinationComment("default/nginx-svc", "cluster IP")).toBe("default/nginx-svc cluster IP");
  });

  test("no-endpoints comments", () => {
    for (const spn of NAMES)
      for (const localOnly of [false, true]) {
        const c = noEndpointsComment(spn, localOnly);
        expect(parseNoEndpointsComment(c)).toEqual({ servicePortName: spn, localOnly });
        expect(parseDestinationComment(c)).toBeUndefined();
      }
    expect(noEndpointsComment("ns/a:p", false)).toBe("ns/a:p has no endpoints");
    expect(noEndpointsComment("ns/a:p", true)).toBe("ns/a:p has no local endpoints");
  });

  test("a bare ServicePortName", () => {
    for (const spn of NAMES) expect(parseServicePortNameComment(spn)).toBe(spn);
  });

  test("the engine's KUBE-SERVICES comments read back as the ports it wrote them for", () => {
    const dir = join(import.meta.dir, "../fixtures/loadbalancer-firewall");
    const files = readdirSync(dir)
      .filter((f) => f.endsWith(".yaml"))
      .map((f) => ({ file: f, text: readFileSync(join(dir, f), "utf8") }));
    const loaded = loadManifests(files, { nodeName: "node1" });
    const rs = buildRules(loaded.state, resolveBuildOptions({ ...defaultConfig(), hostname: "node1" }, "IPv4"));
    const dump = dumpOfTables({ filter: rs.filter, nat: rs.nat });
    const spns = new Set(rs.services.map((s) => s.servicePortName));
    let read = 0;
    for (const table of ["nat", "filter"])
      for (const r of dump.tables.get(table)?.rules ?? []) {
        if (r.chain !== "KUBE-SERVICES") continue;
        const comment = r.args[r.args.indexOf("--comment") + 1];
        const spn = (parseDestinationComment(comment) ?? parseNoEndpointsComment(comment))?.servicePortName;
        if (spn === undefined) continue;
        expect(spns).toContain(spn);
        read++;
      }
    expect(read).toBeGreaterThan(0);
  });

  test("what kube-proxy does not write is refused", () => {
    for (const c of [
      "",
      "cluster IP",
      "nginx cluster IP",
      "default/nginx-svc  cluster IP",
      "default/nginx-svc cluster IPs",
      "default/nginx-svc node port",
      "kubernetes service portals",
      "default/nginx-svc has no endpoints!",
    ]) {
      expect(parseDestinationComment(c)).toBeUndefined();
      expect(parseNoEndpointsComment(c)).toBeUndefined();
    }
    for (const c of ["", "nginx", "default/nginx-svc cluster IP", "a b/c"])
      expect(parseServicePortNameComment(c)).toBeUndefined();
  });
});

describe("chain sets", () => {
  test("fixed chains per table, entry chains among nat's", () => {
    expect(FIXED_CHAINS.nat).toEqual(["KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ"]);
    expect(FIXED_CHAINS.filter).toEqual([
      "KUBE-SERVICES",
      "KUBE-EXTERNAL-SERVICES",
      "KUBE-FORWARD",
      "KUBE-NODEPORTS",
      "KUBE-PROXY-FIREWALL",
    ]);
    for (const c of ENTRY_CHAINS) expect(FIXED_CHAINS.nat).toContain(c);
    expect(CANARY_TABLES).toEqual(["mangle", "nat", "filter"]);
  });

  test("service chains: kinds, and what kube-proxy owns", () => {
    const c = serviceChains("ns/svc:http", "TCP");
    const sep = endpointChain("ns/svc:http", "TCP", "10.0.0.1:80");
    expect([c.svc, c.svl, c.ext, c.fw, sep].map(serviceChainKind)).toEqual(["SVC", "SVL", "EXT", "FW", "SEP"]);
    for (const x of [c.svc, c.svl, c.ext, c.fw, sep]) {
      expect(isServiceChain(x)).toBe(true);
      expect(isKubeChain(x)).toBe(true);
      expect(ownedByKubeProxy("nat", x)).toBe(true);
      expect(ownedByKubeProxy("filter", x)).toBe(false);
    }
    for (const x of ["KUBE-SERVICES", "KUBE-FIREWALL", "KUBE-KUBELET-CANARY", "DOCKER", "KUBE-SVC"])
      expect(serviceChainKind(x)).toBeUndefined();
    expect(ownedByKubeProxy("filter", "KUBE-FIREWALL")).toBe(false);
    expect(ownedByKubeProxy("nat", "KUBE-KUBELET-CANARY")).toBe(false);
    for (const t of CANARY_TABLES) expect(ownedByKubeProxy(t, "KUBE-PROXY-CANARY")).toBe(true);
    for (const t of ["nat", "filter"] as const)
      for (const x of FIXED_CHAINS[t]) expect(ownedByKubeProxy(t, x)).toBe(true);
  });
});
