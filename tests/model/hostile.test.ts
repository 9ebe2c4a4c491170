/**
 * Manifests as hostile input (issue 10): each class of malformed or hostile input is refused
 * the way the API server refuses it, with file:line and the field path, and no value is
 * echoed with a raw control character.
 */
import { describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { type LoadOptions, loadManifests } from "../../lib/model/load.ts";
import { parseManifestText } from "../../lib/model/parse.ts";
import { bare, hasUnsafeCharacter, quote, quoteString } from "../../lib/util/quote.ts";
import { kip } from "../support/binary.ts";
import { tempDir } from "../support/tempdir.ts";

const load = (text: string, opts: Partial<LoadOptions> = {}, file = "m.yaml") =>
  loadManifests([{ file, text }], { nodeName: "node1", allocates: true, ...opts });
const errors = (text: string, opts: Partial<LoadOptions> = {}) =>
  load(text, opts).errors.map((e) => `${e.line}: ${e.message}`);
const warnings = (text: string, opts: Partial<LoadOptions> = {}) =>
  load(text, opts).warnings.map((e) => `${e.line}: ${e.message}`);

const SVC = (spec: string, meta = "{name: web, namespace: shop}") =>
  `apiVersion: v1\nkind: Service\nmetadata: ${meta}\nspec:\n${spec}`;
const SLICE = (endpoints: string, extra = "addressType: IPv4\n") =>
  `apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: web-1, namespace: shop, labels: {kubernetes.io/service-name: web}}\n${extra}ports: [{name: http, port: 8080}]\nendpoints:\n${endpoints}`;

describe("1. endpoint addresses the API server refuses", () => {
  const cases: [string, string, string][] = [
    ["IPv4", "169.254.169.254", "may not be in the link-local range (169.254.0.0/16, fe80::/10)"],
    ["IPv4", "127.0.0.1", "may not be in the loopback range (127.0.0.0/8, ::1/128)"],
    ["IPv4", "0.0.0.0", "may not be unspecified"],
    ["IPv4", "224.0.0.5", "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)"],
    ["IPv6", "::1", "may not be in the loopback range (127.0.0.0/8, ::1/128)"],
    ["IPv6", "::", "may not be unspecified"],
    ["IPv6", "fe80::1", "may not be in the link-local range (169.254.0.0/16, fe80::/10)"],
    ["IPv6", "ff02::1", "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)"],
  ];
  for (const [family, ip, why] of cases)
    test(`EndpointSlice ${ip}`, () => {
      const text = SLICE(`  - addresses: ["${ip}"]\n`, `addressType: ${family}\n`);
      expect(errors(text)).toEqual([`7: EndpointSlice shop/web-1: endpoints[0].addresses[0]: "${ip}" ${why}`]);
    });
  test("v1 Endpoints, ready and not ready", () => {
    const text =
      "apiVersion: v1\nkind: Endpoints\nmetadata: {name: web, namespace: shop}\nsubsets:\n" +
      "  - addresses: [{ip: 169.254.169.254}]\n    notReadyAddresses: [{ip: '::1'}]\n    ports: [{port: 80}]\n";
    expect(errors(text)).toEqual([
      '5: Endpoints shop/web: subsets[0].addresses[0].ip: "169.254.169.254" may not be in the link-local range (169.254.0.0/16, fe80::/10)',
      '6: Endpoints shop/web: subsets[0].notReadyAddresses[0].ip: "::1" may not be in the loopback range (127.0.0.0/8, ::1/128)',
    ]);
  });
  test("ordinary pod addresses pass", () => {
    expect(errors(SLICE('  - addresses: ["10.244.1.5"]\n'))).toEqual([]);
    expect(errors(SLICE('  - addresses: ["fd00::5"]\n', "addressType: IPv6\n"))).toEqual([]);
  });
});

describe("2. required fields given as null", () => {
  test("Service port", () => {
    expect(errors(SVC("  clusterIP: 10.96.0.10\n  ports: [{name: http, port: null}]\n"))).toEqual([
      "6: Service shop/web: spec.ports[0].port: is required",
    ]);
  });
  test("a null list element", () => {
    expect(errors(SVC("  clusterIP: 10.96.0.10\n  ports: [null]\n"))).toEqual([
      "6: Service shop/web: spec.ports[0]: must be an object, not null",
    ]);
  });
  test("Endpoints port and ip, EndpointSlice addressType", () => {
    const ep =
      "apiVersion: v1\nkind: Endpoints\nmetadata: {name: web, namespace: shop}\nsubsets:\n" +
      "  - addresses: [{ip: null}]\n    ports: [{port: null}]\n";
    expect(errors(ep)).toEqual([
      "6: Endpoints shop/web: subsets[0].ports[0].port: is required",
      "5: Endpoints shop/web: subsets[0].addresses[0].ip: is required",
    ]);
    expect(errors(SLICE('  - addresses: ["10.0.0.1"]\n', "addressType: null\n"))).toEqual([
      "4: EndpointSlice shop/web-1: addressType: is required",
    ]);
  });
  test("optional fields given as null are absent, as the API server reads them", () => {
    const text = SVC(
      "  clusterIP: 10.96.0.10\n  type: null\n  ipFamilyPolicy: null\n  ports: [{port: 80, targetPort: null, protocol: null}]\n",
    );
    expect(errors(text)).toEqual([]);
    expect(load(text).state.services[0]).toMatchObject({ type: "ClusterIP", ports: [{ port: 80, protocol: "TCP" }] });
  });
});

describe("3. enumerations", () => {
  const cases: [string, string][] = [
    [
      "  ipFamilyPolicy: DualStack\n",
      'spec.ipFamilyPolicy: "DualStack" is not one of SingleStack, PreferDualStack, RequireDualStack',
    ],
    [
      "  type: Loadbalancer\n",
      'spec.type: "Loadbalancer" is not one of ClusterIP, NodePort, LoadBalancer, ExternalName',
    ],
    ["  sessionAffinity: clientip\n", 'spec.sessionAffinity: "clientip" is not one of None, ClientIP'],
    ["  internalTrafficPolicy: local\n", 'spec.internalTrafficPolicy: "local" is not one of Cluster, Local'],
    ["  ipFamilies: [IPv5]\n", 'spec.ipFamilies[0]: "IPv5" is not one of IPv4, IPv6'],
  ];
  for (const [line, message] of cases)
    test(message.split(":")[0], () => {
      const errs = errors(SVC(`  clusterIP: 10.96.0.10\n${line}  ports: [{port: 80}]\n`));
      expect(errs).toEqual([`6: Service shop/web: ${message}`]);
    });
  test("trafficDistribution is not read by the rules: an unknown value warns, the Service stays", () => {
    const text = SVC("  clusterIP: 10.96.0.10\n  trafficDistribution: Nearby\n  ports: [{port: 80}]\n");
    expect(errors(text)).toEqual([]);
    expect(warnings(text)).toEqual([
      '6: Service shop/web: spec.trafficDistribution: "Nearby" is not one of PreferClose, PreferSameZone, PreferSameNode',
    ]);
    expect(load(text).state.services).toHaveLength(1);
  });
  test("headless and selectorless with two families and no policy: the API server defaults RequireDualStack", () => {
    expect(errors(SVC("  clusterIP: None\n  ipFamilies: [IPv4, IPv6]\n  ports: [{port: 80}]\n"))).toEqual([]);
    expect(
      errors(SVC("  clusterIP: None\n  selector: {app: x}\n  ipFamilies: [IPv4, IPv6]\n  ports: [{port: 80}]\n")),
    ).toEqual([
      "5: Service shop/web: spec.ipFamilyPolicy: must be RequireDualStack or PreferDualStack when multiple IP families are specified (unset means SingleStack)",
    ]);
  });
  test("ipFamilyPolicy against the number of cluster IPs and families", () => {
    const two = '  clusterIPs: [10.96.0.10, "fd00::10"]\n  clusterIP: 10.96.0.10\n';
    expect(errors(SVC(`${two}  ports: [{port: 80}]\n`))).toEqual([
      "5: Service shop/web: spec.ipFamilyPolicy: must be RequireDualStack or PreferDualStack when multiple cluster IPs are specified (unset means SingleStack)",
    ]);
    expect(errors(SVC(`${two}  ipFamilyPolicy: SingleStack\n  ports: [{port: 80}]\n`))).toEqual([
      "7: Service shop/web: spec.ipFamilyPolicy: must be RequireDualStack or PreferDualStack when multiple cluster IPs are specified",
    ]);
    expect(errors(SVC("  ipFamilies: [IPv4, IPv6]\n  ipFamilyPolicy: SingleStack\n  ports: [{port: 80}]\n"))).toEqual([
      "6: Service shop/web: spec.ipFamilyPolicy: must be RequireDualStack or PreferDualStack when multiple IP families are specified",
    ]);
    expect(errors(SVC(`${two}  ipFamilyPolicy: RequireDualStack\n  ports: [{port: 80}]\n`))).toEqual([]);
    expect(
      load(SVC(`${two}  ipFamilyPolicy: PreferDualStack\n  ports: [{port: 80}]\n`)).state.services[0].ipFamilyPolicy,
    ).toBe("PreferDualStack");
    expect(
      errors(SVC("  type: ExternalName\n  externalName: db.example.com\n  ipFamilyPolicy: SingleStack\n")),
    ).toEqual(["7: Service shop/web: spec.ipFamilyPolicy: may not be set for ExternalName services"]);
  });
  test("EndpointSlice addressType and ingress ipMode", () => {
    expect(errors(SLICE('  - addresses: ["10.0.0.1"]\n', "addressType: ipv4\n"))).toEqual([
      '4: EndpointSlice shop/web-1: addressType: "ipv4" is not one of IPv4, IPv6, FQDN',
    ]);
    const lb = `${SVC("  type: LoadBalancer\n  clusterIP: 10.96.0.10\n  ports: [{port: 80}]\n")}status: {loadBalancer: {ingress: [{ip: 192.0.2.1, ipMode: proxy}]}}\n`;
    expect(errors(lb)).toEqual([
      '8: Service shop/web: status.loadBalancer.ingress[0].ipMode: "proxy" is not one of VIP, Proxy',
    ]);
  });
});

describe("4. a string targetPort is a port name", () => {
  test('"8080" is refused', () => {
    expect(errors(SVC('  clusterIP: 10.96.0.10\n  ports: [{port: 80, targetPort: "8080"}]\n'))).toEqual([
      '6: Service shop/web: spec.ports[0].targetPort: "8080" is not a valid port name (a port number is written without quotes)',
    ]);
  });
  test("names and numbers pass", () => {
    const ok = load(
      SVC(
        "  clusterIP: 10.96.0.10\n  ports: [{name: a, port: 80, targetPort: http-alt}, {name: b, port: 81, targetPort: 8081}]\n",
      ),
    );
    expect(ok.errors).toEqual([]);
    expect(ok.state.services[0].ports.map((p) => p.targetPort)).toEqual(["http-alt", 8081]);
  });
});

describe("5. topology hints", () => {
  test("zone names are label values; no repeats", () => {
    const text = SLICE(
      '  - addresses: ["10.0.0.1"]\n    hints: {forZones: [{name: "zone-a\\n-A INPUT -j ACCEPT"}, {name: zone-b}, {name: zone-b}]}\n',
    );
    expect(errors(text)).toEqual([
      '8: EndpointSlice shop/web-1: endpoints[0].hints.forZones[0].name: "zone-a\\n-A INPUT -j ACCEPT" is not a valid zone name',
      '8: EndpointSlice shop/web-1: endpoints[0].hints.forZones[2].name: duplicate zone "zone-b"',
    ]);
  });
  test("node hints are node names", () => {
    const text = SLICE('  - addresses: ["10.0.0.1"]\n    hints: {forNodes: [{name: "Node_1"}]}\n');
    expect(errors(text)).toEqual([
      '8: EndpointSlice shop/web-1: endpoints[0].hints.forNodes[0].name: "Node_1" is not a valid node name',
    ]);
  });
});

describe("6. removed API versions", () => {
  test("an EndpointSlice under discovery.k8s.io/v1beta1 is an error naming apiVersion", () => {
    const text = SLICE('  - addresses: ["10.0.0.1"]\n').replace("discovery.k8s.io/v1", "discovery.k8s.io/v1beta1");
    expect(errors(text)).toEqual([
      '1: EndpointSlice shop/web-1: apiVersion: "discovery.k8s.io/v1beta1": the API server does not serve EndpointSlice under this apiVersion (removed or unknown); use discovery.k8s.io/v1',
    ]);
  });
  test("a workload under extensions/v1beta1 is an error when workloads are read", () => {
    const text = "apiVersion: extensions/v1beta1\nkind: Deployment\nmetadata: {name: web, namespace: shop}\nspec: {}\n";
    expect(errors(text, { workloads: true })[0]).toContain(
      'apiVersion: "extensions/v1beta1": the API server does not serve Deployment',
    );
    expect(errors(text)).toEqual([]);
  });
  test("another group's kind of the same name is a custom resource, skipped", () => {
    const text = "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {name: web}\nspec: {template: {}}\n";
    const r = load(text);
    expect(r.errors).toEqual([]);
    expect([...r.skipped.keys()]).toEqual(["serving.knative.dev/v1 Service"]);
  });
});

describe("7. a List whose items is not a list", () => {
  test("is an error", () => {
    expect(errors("apiVersion: v1\nkind: List\nitems:\n  a: 1\n")).toEqual([
      '4: List: items: must be a list, not {"a":1}',
    ]);
  });
});

describe("8. size limits", () => {
  test("annotations: 256 KiB in total", () => {
    const big = "x".repeat(300 * 1024);
    const errs = errors(
      SVC(
        "  clusterIP: 10.96.0.10\n  ports: [{port: 80}]\n",
        `{name: web, namespace: shop, annotations: {a: "${big}"}}`,
      ),
    );
    expect(errs).toEqual([
      "3: Service shop/web: metadata.annotations: may not be more than 262144 bytes in total (keys and values), not 307201",
    ]);
  });
  test("annotation keys are qualified names, values strings", () => {
    const errs = errors(
      SVC(
        "  clusterIP: 10.96.0.10\n  ports: [{port: 80}]\n",
        '{name: web, namespace: shop, annotations: {"a b": x, "prometheus.io/port": 8080}}',
      ),
    );
    expect(errs).toEqual([
      '3: Service shop/web: metadata.annotations["a b"]: annotation key "a b" is not a valid qualified name',
      "3: Service shop/web: metadata.annotations.prometheus.io/port: annotation value 8080 is not a string",
    ]);
  });
  test("names and label keys and values", () => {
    const long = "a".repeat(64);
    expect(
      errors(SVC("  clusterIP: 10.96.0.10\n  ports: [{port: 80}]\n", `{name: ${long}, namespace: shop}`))[0],
    ).toContain("metadata.name: ");
    expect(
      errors(
        SVC("  clusterIP: 10.96.0.10\n  ports: [{port: 80}]\n", `{name: web, namespace: shop, labels: {app: ${long}}}`),
      )[0],
    ).toContain("label value");
    expect(
      errors(
        SVC("  clusterIP: 10.96.0.10\n  ports: [{port: 80}]\n", `{name: web, namespace: shop, labels: {${long}: x}}`),
      )[0],
    ).toContain("label key");
  });
  test("a slice past the endpoint limit is refused without reading every endpoint", () => {
    const eps = Array.from({ length: 1001 }, (_, i) => `  - addresses: ["10.0.${i >> 8}.${i & 255}"]\n`).join("");
    expect(errors(SLICE(eps))).toEqual(["7: EndpointSlice shop/web-1: endpoints: may hold at most 1000 endpoints"]);
  });
});

describe("9. YAML failures are manifest errors, fast, in bounded memory; parsing never throws", () => {
  const bomb =
    'a: &a ["x","x","x","x","x","x","x","x","x"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n' +
    "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n" +
    "g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\nh: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\ni: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]\n";
  const cases: [string, string, string, string][] = [
    ["undefined alias", "m.yaml", "a: 1\nports: *tp\n", '2: invalid YAML: alias "*tp" has no anchor before it'],
    ["alias bomb", "m.yaml", bomb, "4: invalid YAML: aliases expand the document too far (excessive aliasing)"],
    [
      "an alias inside its own anchor",
      "m.yaml",
      "a: &a {b: *a}\n",
      '1: invalid YAML: alias "*a" is inside its own anchor',
    ],
    ["deep JSON", "m.json", "[".repeat(200_000), "1: invalid JSON: lists and maps nest deeper than 1000 levels"],
    [
      "deep JSON, closed",
      "m.json",
      `${"[".repeat(200_000)}${"]".repeat(200_000)}`,
      "1: invalid JSON: lists and maps nest deeper than 1000 levels",
    ],
    [
      "deep YAML flow",
      "m.yaml",
      `a: ${"[".repeat(200_000)}`,
      "1: invalid YAML: lists and maps nest deeper than 1000 levels",
    ],
    [
      "deep YAML block",
      "m.yaml",
      `${"- ".repeat(200_000)}x\n`,
      "1: invalid YAML: lists and maps nest deeper than 1000 levels",
    ],
    [
      "a collection as a key",
      "m.yaml",
      "? [a, b]\n: 1\n",
      "1: invalid YAML: a map key must be a scalar, not a list or map",
    ],
  ];
  for (const [name, file, text, message] of cases)
    test(name, () => {
      const t0 = performance.now();
      const r = parseManifestText(file, text);
      expect(performance.now() - t0).toBeLessThan(2000);
      expect(r.errors.map((e) => `${e.line}: ${e.message}`)).toEqual([message]);
      expect(r.docs).toEqual([]);
    });
  test("aliases and merge keys that real files use still work", () => {
    const text = `base: &l {app: web, tier: front}\nitems:\n${"  - *l\n".repeat(500)}merged:\n  <<: *l\n  tier: back\n`;
    const r = parseManifestText("m.yaml", text);
    expect(r.errors).toEqual([]);
    expect((r.docs[0].value as { merged: unknown }).merged).toEqual({ app: "web", tier: "back" });
  });
  test("keys named like Object.prototype's members are unknown fields, not shapes", () => {
    const keys = ["__proto__", "toString", "constructor", "hasOwnProperty", "valueOf"];
    const spec = `  clusterIP: 10.96.0.1\n  ports: [{port: 80}]\n${keys.map((k) => `  ${k}: {a: 1}\n`).join("")}`;
    const endpoint = `  - addresses: ["10.0.0.1"]\n${keys.map((k) => `    ${k}: [1]\n`).join("")}`;
    const got = warnings(`${SVC(spec)}---\n${SLICE(endpoint)}`);
    expect(got).toEqual([
      ...keys.map((k, i) => `${7 + i}: Service shop/web: spec.${k}: unknown field`),
      ...keys.map((k, i) => `${20 + i}: EndpointSlice shop/web-1: endpoints[0].${k}: unknown field`),
    ]);
    // The same in JSON, where JSON.parse makes "__proto__" an own key too.
    const json = JSON.stringify({
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: "web", namespace: "shop" },
      spec: { clusterIP: "10.96.0.1", ports: [{ port: 80 }], toString: 1, constructor: {} },
    }).replace('"toString"', '"__proto__":{"x":1},"toString"');
    const fromJSON = load(json, {}, "m.json").warnings.map((w) => w.message);
    expect(fromJSON).toEqual(
      ["__proto__", "toString", "constructor"].map((k) => `Service shop/web: spec.${k}: unknown field`),
    );
  });
  test("__proto__ is a key like any other", () => {
    const v = parseManifestText("m.yaml", "__proto__: {polluted: true}\n").docs[0].value as Record<string, unknown>;
    expect(Object.keys(v)).toEqual(["__proto__"]);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});

describe("10. no raw control character in a message", () => {
  test("quote and bare escape C0, DEL, C1, bidi and separators, and bound length", () => {
    expect(quote("a\u0000b\u001b[31m\n-A INPUT\u007f\u009b\u202e\u2028")).toBe(
      '"a\\u0000b\\u001b[31m\\n-A INPUT\\u007f\\u009b\\u202e\\u2028"',
    );
    expect(quoteString("x".repeat(1000))).toMatch(/^"x{200}…" \(1000 characters\)$/);
    expect(bare("shop/web")).toBe("shop/web");
    expect(bare("shop/we\u001bb")).toBe('"shop/we\\u001bb"');
    expect(quote({ a: [1, "\u0007"], b: null })).toBe('{"a":[1,"\\u0007"],"b":null}');
    expect(quote(Number.NaN)).toBe("NaN");
  });
  test("a name with a newline and a forged rule, in every message about the object", () => {
    const text = SVC(
      "  clusterIP: 10.96.0.10\n  ports: [{port: 70000}]\n",
      '{name: "x\\n-A INPUT -j ACCEPT\\u001b[2J", namespace: shop}',
    );
    const r = load(text);
    expect(r.errors.length).toBeGreaterThan(0);
    for (const e of r.errors) expect(hasUnsafeCharacter(e.message) || e.message.includes("\n")).toBe(false);
    expect(r.errors[0].message).toStartWith('Service "shop/x\\n-A INPUT -j ACCEPT\\u001b[2J": ');
  });
  test("an unknown kind with control characters is escaped in the skipped summary", () => {
    const r = load('apiVersion: v1\nkind: "Con\\u001bfig"\nmetadata: {name: x}\n');
    expect([...r.skipped.keys()]).toEqual(['v1 "Con\\u001bfig"']);
  });
});

describe("11. an object defined twice", () => {
  test("names metadata.name and the first definition", () => {
    const one = SVC("  clusterIP: 10.96.0.10\n  ports: [{port: 80}]\n");
    expect(errors(`${one}---\n${one}`)).toEqual([
      "10: Service shop/web: metadata.name: defined twice (first at m.yaml:1)",
    ]);
  });
});

describe("12. the YAML library's own warnings never reach the console", () => {
  test("collection keys, unresolved tags", () => {
    const original = process.emitWarning;
    const seen: unknown[] = [];
    process.emitWarning = ((w: unknown) => seen.push(w)) as typeof process.emitWarning;
    try {
      parseManifestText("m.yaml", "? [a, b]\n: 1\n---\na: !custom x\n---\n{[a]: 1}\n");
      parseManifestText("m.json", '{"a": 1, "a": 2}');
    } finally {
      process.emitWarning = original;
    }
    expect(seen).toEqual([]);
  });
});

describe("13. unknown fields are warnings", () => {
  test("a misspelled field, and a field at the wrong level", () => {
    const text = SVC(
      "  clusterIP: 10.96.0.10\n  ports:\n    - port: 80\n      targetport: 8080\n      externalIPs: [1.2.3.4]\n",
    );
    expect(warnings(text)).toEqual([
      '8: Service shop/web: spec.ports[0].targetport: unknown field (did you mean "targetPort"?)',
      "9: Service shop/web: spec.ports[0].externalIPs: unknown field",
    ]);
  });
  test("EndpointSlice, Endpoints and Node", () => {
    expect(warnings(SLICE('  - addresses: ["10.0.0.1"]\n    condition: {ready: true}\n'))).toEqual([
      '8: EndpointSlice shop/web-1: endpoints[0].condition: unknown field (did you mean "conditions"?)',
    ]);
    const ep = "apiVersion: v1\nkind: Endpoints\nmetadata: {name: web, namespace: shop}\nsubset: []\n";
    expect(warnings(ep)).toEqual(['4: Endpoints shop/web: subset: unknown field (did you mean "subsets"?)']);
    const node =
      "apiVersion: v1\nkind: Node\nmetadata: {name: node1}\nspec: {podCIDRS: [10.244.1.0/24]}\nstatus: {nodeInfo: {}, addresses: [{type: InternalIP, adress: 10.0.0.1}]}\n";
    expect(warnings(node)).toEqual([
      '4: Node node1: spec.podCIDRS: unknown field (did you mean "podCIDRs"?)',
      '5: Node node1: status.addresses[0].adress: unknown field (did you mean "address"?)',
    ]);
  });
  test("workloads: the fields simulation reads", () => {
    const text =
      "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}\nspec:\n  replica: 2\n" +
      "  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers: [{name: c, image: x, ports: [{containerport: 80}]}]\n";
    expect(warnings(text, { workloads: true })).toEqual([
      '9: Deployment shop/web: spec.template.spec.containers[0].ports[0].containerport: unknown field (did you mean "containerPort"?)',
    ]);
  });
  test("a live cluster's objects, as kubectl prints them, give no warning", () => {
    const meta =
      '"metadata": {"name": "web", "namespace": "shop", "uid": "u", "resourceVersion": "1", "generation": 2, "creationTimestamp": "2024-01-01T00:00:00Z",' +
      ' "labels": {"app": "web"}, "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},' +
      ' "managedFields": [{"manager": "kubectl", "operation": "Apply", "fieldsV1": {"f:spec": {}}}], "ownerReferences": [], "finalizers": ["x"]}';
    const svc = `{"apiVersion": "v1", "kind": "Service", ${meta}, "spec": {"clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
      "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "internalTrafficPolicy": "Cluster", "sessionAffinity": "None", "type": "LoadBalancer",
      "externalTrafficPolicy": "Local", "healthCheckNodePort": 31000, "allocateLoadBalancerNodePorts": true, "loadBalancerClass": "x.io/lb",
      "trafficDistribution": "PreferClose", "publishNotReadyAddresses": false, "selector": {"app": "web"},
      "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http", "nodePort": 30080, "appProtocol": "http"}]},
      "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1", "ipMode": "VIP", "ports": [{"port": 80, "protocol": "TCP"}]}]}, "conditions": []}}`;
    const slice = `{"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", ${meta.replace('"name": "web"', '"name": "web-abc"')}, "addressType": "IPv4",
      "ports": [{"name": "http", "port": 8080, "protocol": "TCP", "appProtocol": "http"}],
      "endpoints": [{"addresses": ["10.244.1.5"], "conditions": {"ready": true, "serving": true, "terminating": false}, "hostname": "h",
        "nodeName": "node1", "zone": "a", "targetRef": {"kind": "Pod", "name": "p", "namespace": "shop", "uid": "u"},
        "hints": {"forZones": [{"name": "a"}], "forNodes": [{"name": "node1"}]}, "deprecatedTopology": {"x": "y"}}]}`;
    const node = `{"apiVersion": "v1", "kind": "Node", ${meta.replace('"namespace": "shop", ', "")}, "spec": {"podCIDR": "10.244.1.0/24",
      "podCIDRs": ["10.244.1.0/24"], "providerID": "aws://x", "taints": [{"key": "k", "effect": "NoSchedule"}], "unschedulable": false},
      "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}, {"type": "Hostname", "address": "node1"}],
      "capacity": {"cpu": "4"}, "conditions": [], "nodeInfo": {}, "images": [], "daemonEndpoints": {}, "futureField": 1}}`;
    const r = load(`{"apiVersion": "v1", "kind": "List", "items": [${svc}, ${slice}, ${node}]}`, {}, "dump.json");
    expect(r.errors).toEqual([]);
    expect(r.warnings).toEqual([]);
  });
});

describe("the compiled binary", () => {
  const dir = tempDir("kip-hostile-");
  const run = (name: string, text: string, extra: string[] = []) => {
    writeFileSync(join(dir, name), text);
    return kip(["render", join(dir, name), "--hostname-override", "node1", ...extra]);
  };
  test("an alias bomb: exit 2 with file:line, nothing on stdout, no stack", () => {
    const lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'];
    for (let i = 1; i < 9; i++) {
      const prev = String.fromCharCode(96 + i);
      lines.push(
        `${String.fromCharCode(97 + i)}: &${String.fromCharCode(97 + i)} [${Array(9).fill(`*${prev}`).join(",")}]`,
      );
    }
    const r = run("bomb.yaml", `${lines.join("\n")}\n`);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain(`${join(dir, "bomb.yaml")}:4: invalid YAML: aliases expand the document too far`);
    expect(r.stderr).not.toContain("    at ");
  });
  test("a name with ESC and a newline: escaped on stderr", () => {
    const r = run(
      "esc.yaml",
      SVC(
        "  clusterIP: 10.96.0.10\n  ports: [{port: 80}]\n",
        '{name: "a\\u001b]0;pwned\\u0007\\n-A INPUT -j ACCEPT", namespace: shop}',
      ),
    );
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    expect(hasUnsafeCharacter(r.stderr)).toBe(false);
    expect(r.stderr).toContain('Service "shop/a\\u001b]0;pwned\\u0007\\n-A INPUT -j ACCEPT": metadata.name: ');
  });
  test("an unknown field under --strict: exit 1, nothing on stdout", () => {
    const text = SVC("  clusterIP: 10.96.0.10\n  ports: [{port: 80, targetport: 8080}]\n");
    const r = run("typo.yaml", text, ["--strict"]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain('spec.ports[0].targetport: unknown field (did you mean "targetPort"?)');
    expect(run("typo.yaml", text).code).toBe(0);
  });
  test("collection keys: a kip error, not the library's warning", () => {
    const r = run("key.yaml", "? [a, b]\n: 1\n");
    expect(r.code).toBe(2);
    expect(r.stderr).not.toContain("Warning");
    expect(r.stderr).toContain("key.yaml:1: invalid YAML: a map key must be a scalar, not a list or map");
  });
});
