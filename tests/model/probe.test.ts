/**
 * The kip/readiness-probe annotation through the manifests loader: defaults, both handlers,
 * YAML and JSON values, and bad specs reported at the annotation's file:line with the field
 * path inside the value.
 */
import { describe, expect, test } from "bun:test";
import { loadManifests } from "../../lib/model/load.ts";
import { PROBE_DEFAULTS } from "../../lib/model/probe.ts";
import { validateService } from "../../lib/model/validate.ts";

/** A Service file with the annotation's value written as `value` (YAML, indented under the key). */
function serviceFile(value: string, block = true): string {
  const annotation = block
    ? `    kip/readiness-probe: |\n${value
        .split("\n")
        .map((l) => `      ${l}`)
        .join("\n")}\n`
    : `    kip/readiness-probe: ${JSON.stringify(value)}\n`;
  return `apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: default
  annotations:
${annotation}spec:
  clusterIP: 10.96.0.50
  ports: [{ name: http, port: 80, targetPort: 9090 }]
`;
}

function load(text: string) {
  return loadManifests([{ file: "svc.yaml", text }], { nodeName: "n1" });
}

const errors = (text: string) => load(text).errors.map((e) => `${e.file}:${e.line}: ${e.message}`);

describe("kip/readiness-probe in manifests", () => {
  test("tcpSocket with the kubelet's defaults", () => {
    const r = load(serviceFile("tcpSocket: {}"));
    expect(r.errors).toEqual([]);
    expect(r.state.services[0].readinessProbe).toEqual({ handler: { type: "tcpSocket" }, ...PROBE_DEFAULTS });
    expect(PROBE_DEFAULTS).toEqual({
      initialDelaySeconds: 0,
      periodSeconds: 10,
      timeoutSeconds: 1,
      successThreshold: 1,
      failureThreshold: 3,
    });
    expect(r.state.services[0].readinessProbeAnnotation).toBeUndefined();
  });

  test("httpGet, every field, as JSON on one line", () => {
    const value = JSON.stringify({
      httpGet: {
        path: "/healthz?full=1",
        port: "http",
        scheme: "HTTPS",
        httpHeaders: [{ name: "X-Probe", value: "kip" }],
      },
      periodSeconds: 2,
      timeoutSeconds: 3,
      successThreshold: 2,
      failureThreshold: 4,
      initialDelaySeconds: 5,
    });
    const r = load(serviceFile(value, false));
    expect(r.errors).toEqual([]);
    expect(r.state.services[0].readinessProbe).toEqual({
      handler: {
        type: "httpGet",
        path: "/healthz?full=1",
        port: "http",
        scheme: "HTTPS",
        headers: [{ name: "X-Probe", value: "kip" }],
      },
      periodSeconds: 2,
      timeoutSeconds: 3,
      successThreshold: 2,
      failureThreshold: 4,
      initialDelaySeconds: 5,
    });
  });

  test("httpGet defaults: path /, scheme HTTP, no headers; port from the endpoint", () => {
    const r = load(serviceFile("httpGet: {}"));
    expect(r.state.services[0].readinessProbe?.handler).toEqual({
      type: "httpGet",
      path: "/",
      scheme: "HTTP",
      headers: [],
    });
  });

  test("a Service without the annotation has no probe", () => {
    const text = serviceFile("tcpSocket: {}").replace(/ {2}annotations:\n.*\n.*\n/, "");
    const r = load(text);
    expect(r.errors).toEqual([]);
    expect(r.state.services[0].readinessProbe).toBeUndefined();
  });

  const P = "Service default/web: metadata.annotations.kip/readiness-probe";
  test.each([
    [
      "exec: { command: [rm, -rf, /] }",
      `${P}.exec: exec probes are not allowed: kip never runs a command from a manifest (use tcpSocket or httpGet)`,
    ],
    ["grpc: { port: 9090 }", `${P}.grpc: grpc probes are not supported (use tcpSocket or httpGet)`],
    ["periodSeconds: 5", `${P}: must specify a handler: tcpSocket or httpGet`],
    ["tcpSocket: {}\nhttpGet: {}", `${P}.httpGet: may not be set with tcpSocket: a probe has one handler`],
    [
      "tcpSocket: { host: 169.254.169.254 }",
      `${P}.tcpSocket.host: may not be set: kip probes each endpoint's own address (probe traffic goes nowhere the manifests do not name)`,
    ],
    ["tcpSocket: { port: 0 }", `${P}.tcpSocket.port: 0 is not a port number (1-65535)`],
    [
      'tcpSocket: { port: "8080" }',
      `${P}.tcpSocket.port: "8080" is not a valid port name (a port number is written without quotes)`,
    ],
    ["tcpSocket: {}\nperiodSeconds: 0", `${P}.periodSeconds: 0 is out of range (1-86400)`],
    ["tcpSocket: {}\ntimeoutSeconds: 1.5", `${P}.timeoutSeconds: 1.5 is not a whole number`],
    ["tcpSocket: {}\nsuccessThreshold: 0", `${P}.successThreshold: 0 is out of range (1-86400)`],
    ["tcpSocket: {}\nfailureThreshold: -1", `${P}.failureThreshold: -1 is out of range (1-86400)`],
    ["tcpSocket: {}\ninitialDelaySeconds: -1", `${P}.initialDelaySeconds: -1 is out of range (0-86400)`],
    [
      "tcpSocket: {}\nterminationGracePeriodSeconds: 5",
      `${P}.terminationGracePeriodSeconds: may not be set for readiness probes`,
    ],
    ["httpGet: { path: healthz }", `${P}.httpGet.path: "healthz" must start with "/"`],
    [
      'httpGet: { path: "/a b" }',
      `${P}.httpGet.path: "/a b" may hold only visible ASCII characters (percent-encode the rest)`,
    ],
    ["httpGet: { scheme: FTP }", `${P}.httpGet.scheme: "FTP" is not one of HTTP, HTTPS`],
    [
      'httpGet: { httpHeaders: [{ name: "X-A", value: "a\\r\\nHost: evil" }] }',
      `${P}.httpGet.httpHeaders[0].value: "a\\r\\nHost: evil" may not hold control characters (CR, LF, NUL…)`,
    ],
    [
      'httpGet: { httpHeaders: [{ name: "X A", value: "a" }] }',
      `${P}.httpGet.httpHeaders[0].name: "X A" is not a valid header name`,
    ],
    ["- tcpSocket", `${P}: must be a probe (a map with tcpSocket or httpGet), not ["tcpSocket"]`],
    ["[tcpSocket]", `${P}: is not a valid probe: invalid JSON: unexpected "t" (line 1 of the value)`],
    [
      "tcpSocket: {}\ntcpSocket: {}",
      `${P}: is not a valid probe: invalid YAML: Map keys must be unique (line 2 of the value)`,
    ],
  ])("%p is refused", (value, message) => {
    // Every error points at the annotation's line (7), whatever line of the value it is on.
    expect(errors(serviceFile(value))).toEqual([`svc.yaml:7: ${message}`]);
  });

  test("a bad probe drops the Service (an error, as any bad field), and an unknown field is a warning", () => {
    expect(load(serviceFile("exec: {}")).state.services).toEqual([]);
    const r = load(serviceFile("tcpSocket: {}\nperiodSecond: 2"));
    expect(r.errors).toEqual([]);
    expect(r.warnings.map((w) => `${w.line}: ${w.message}`)).toEqual([
      `7: ${P}.periodSecond: unknown field (did you mean "periodSeconds"?)`,
    ]);
  });

  test("validateService keeps the raw text only (the apiserver source never parses it)", () => {
    const svc = validateService(
      {
        metadata: { name: "web", namespace: "default", annotations: { "kip/readiness-probe": "exec: {}" } },
        spec: { clusterIP: "10.96.0.50", ports: [{ port: 80 }] },
      },
      { error: () => {}, warn: () => {} },
    );
    expect(svc?.readinessProbeAnnotation).toBe("exec: {}");
    expect(svc?.readinessProbe).toBeUndefined();
  });
});
