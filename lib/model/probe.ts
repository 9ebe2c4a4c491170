/**
 * The `kip/readiness-probe` Service annotation: a Pod-style readiness probe (YAML or JSON)
 * that `kip sync --manifests` runs against every endpoint of the Service.
 *
 * The value is parsed with the manifests' own parser (duplicate keys, nesting and alias bounds
 * included) and checked as the API server checks a v1 Probe, with the kubelet's defaults.
 * Manifests are untrusted, so what the API server allows but kip must not is refused: `exec`
 * (kip never runs a command from a manifest), `host` (probe traffic goes only to the
 * endpoints' own addresses), and header names or values that could split a request.
 */
import { quote } from "../util/quote.ts";
import { isIANASvcName } from "./fields.ts";
import { type Path, parseManifestText } from "./parse.ts";
import { checkUnknownFields, LIMITS, PROBE_ANNOTATION, READINESS_PROBE } from "./rules.ts";
import type { ReadinessProbe } from "./types.ts";

export { PROBE_ANNOTATION };

/** The kubelet's defaults for a probe's timing fields. */
export const PROBE_DEFAULTS = {
  initialDelaySeconds: 0,
  periodSeconds: 10,
  timeoutSeconds: 1,
  successThreshold: 1,
  failureThreshold: 3,
} as const;

/** An RFC 9110 token: what a header name may be. */
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** Visible ASCII, space and tab: what a header value or a path may hold (no CR, LF or NUL). */
const FIELD_VALUE = /^[\t\u0020-\u007e]*$/;

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

export interface ProbeReporter {
  /** `path` is inside the annotation's value (`["httpGet", "port"]`). */
  error(path: Path, message: string): void;
  warn(path: Path, message: string): void;
}

/**
 * The annotation's text → a defaulted probe, or undefined when it has errors (reported with
 * the field path inside the value).
 */
export function parseReadinessProbe(text: string, r: ProbeReporter): ReadinessProbe | undefined {
  let failed = false;
  const error = (path: Path, message: string) => {
    failed = true;
    r.error(path, message);
  };
  const parsed = parseManifestText("annotation", text);
  if (parsed.errors.length > 0) {
    const e = parsed.errors[0];
    error([], `is not a valid probe: ${e.message} (line ${e.line} of the value)`);
    return undefined;
  }
  if (parsed.docs.length !== 1) {
    error([], parsed.docs.length === 0 ? "is empty: expected a probe" : "holds several documents: expected one probe");
    return undefined;
  }
  const v = parsed.docs[0].value;
  if (!isObject(v)) {
    error([], `must be a probe (a map with tcpSocket or httpGet), not ${quote(v)}`);
    return undefined;
  }
  checkUnknownFields(READINESS_PROBE, v, [], r.warn);

  const seconds = (key: keyof typeof PROBE_DEFAULTS, min: number): number => {
    const x = v[key];
    if (x === undefined || x === null) return PROBE_DEFAULTS[key];
    if (typeof x !== "number" || !Number.isInteger(x)) {
      error([key], `${quote(x)} is not a whole number`);
      return PROBE_DEFAULTS[key];
    }
    if (x < min || x > LIMITS.probeSeconds) {
      error([key], `${x} is out of range (${min}-${LIMITS.probeSeconds})`);
      return PROBE_DEFAULTS[key];
    }
    return x;
  };
  const timing = {
    initialDelaySeconds: seconds("initialDelaySeconds", 0),
    periodSeconds: seconds("periodSeconds", 1),
    timeoutSeconds: seconds("timeoutSeconds", 1),
    successThreshold: seconds("successThreshold", 1),
    failureThreshold: seconds("failureThreshold", 1),
  };
  if (v.terminationGracePeriodSeconds !== undefined && v.terminationGracePeriodSeconds !== null)
    error(["terminationGracePeriodSeconds"], "may not be set for readiness probes");

  const present = (["exec", "grpc", "tcpSocket", "httpGet"] as const).filter(
    (k) => v[k] !== undefined && v[k] !== null,
  );
  if (present.includes("exec"))
    error(["exec"], "exec probes are not allowed: kip never runs a command from a manifest (use tcpSocket or httpGet)");
  if (present.includes("grpc")) error(["grpc"], "grpc probes are not supported (use tcpSocket or httpGet)");
  if (present.length === 0) error([], "must specify a handler: tcpSocket or httpGet");
  else if (present.length > 1) error([present[1]], `may not be set with ${present[0]}: a probe has one handler`);
  if (present.length !== 1 || present[0] === "exec" || present[0] === "grpc") return undefined;

  const kind = present[0] as "tcpSocket" | "httpGet";
  const h = v[kind];
  if (!isObject(h)) {
    error([kind], `must be an object, not ${quote(h)}`);
    return undefined;
  }
  if (h.host !== undefined && h.host !== null && h.host !== "")
    error(
      [kind, "host"],
      "may not be set: kip probes each endpoint's own address (probe traffic goes nowhere the manifests do not name)",
    );
  const port = probePort(h.port, [kind, "port"], error);
  let probe: ReadinessProbe | undefined;
  if (kind === "tcpSocket")
    probe = { handler: { type: "tcpSocket", ...(port !== undefined ? { port } : {}) }, ...timing };
  else {
    let path = "/";
    if (h.path !== undefined && h.path !== null && h.path !== "") {
      if (typeof h.path !== "string") error([kind, "path"], `${quote(h.path)} is not a string`);
      else if (!h.path.startsWith("/")) error([kind, "path"], `${quote(h.path)} must start with "/"`);
      else if (h.path.length > LIMITS.probePath)
        error([kind, "path"], `may be at most ${LIMITS.probePath} characters long`);
      else if (!/^[\u0021-\u007e]+$/.test(h.path))
        error([kind, "path"], `${quote(h.path)} may hold only visible ASCII characters (percent-encode the rest)`);
      else path = h.path;
    }
    let scheme: "HTTP" | "HTTPS" = "HTTP";
    if (h.scheme !== undefined && h.scheme !== null && h.scheme !== "") {
      if (h.scheme !== "HTTP" && h.scheme !== "HTTPS")
        error([kind, "scheme"], `${quote(h.scheme)} is not one of HTTP, HTTPS`);
      else scheme = h.scheme;
    }
    const headers: { name: string; value: string }[] = [];
    const raw = h.httpHeaders;
    if (raw !== undefined && raw !== null) {
      if (!Array.isArray(raw)) error([kind, "httpHeaders"], `must be a list, not ${quote(raw)}`);
      else if (raw.length > LIMITS.probeHeaders)
        error([kind, "httpHeaders"], `may hold at most ${LIMITS.probeHeaders} headers`);
      else
        for (const [i, x] of raw.entries()) {
          const header = readHeader(x, [kind, "httpHeaders", i], error);
          if (header) headers.push(header);
        }
    }
    probe = {
      handler: { type: "httpGet", path, scheme, headers, ...(port !== undefined ? { port } : {}) },
      ...timing,
    };
  }
  return failed ? undefined : probe;
}

/** A probe's port: a number, a port name (resolved through the EndpointSlice), or unset. */
function probePort(v: unknown, path: Path, error: (path: Path, message: string) => void): number | string | undefined {
  if (v === undefined || v === null || v === "") return undefined;
  if (typeof v === "number") {
    if (!Number.isInteger(v) || v < 1 || v > 65535) error(path, `${quote(v)} is not a port number (1-65535)`);
    else return v;
    return undefined;
  }
  if (typeof v === "string") {
    if (!isIANASvcName(v))
      error(
        path,
        `${quote(v)} is not a valid port name${/^[0-9]+$/.test(v) ? " (a port number is written without quotes)" : ""}`,
      );
    else return v;
    return undefined;
  }
  error(path, `${quote(v)} is not a port number or name`);
  return undefined;
}

/** One of httpGet.httpHeaders: a token name, a value with no control character. */
function readHeader(
  x: unknown,
  at: Path,
  error: (path: Path, message: string) => void,
): { name: string; value: string } | undefined {
  if (!isObject(x)) {
    error(at, `must be an object with name and value, not ${quote(x)}`);
    return undefined;
  }
  if (typeof x.name !== "string" || x.name === "") {
    error([...at, "name"], "is required");
    return undefined;
  }
  if (!TOKEN.test(x.name)) {
    error([...at, "name"], `${quote(x.name)} is not a valid header name`);
    return undefined;
  }
  const value = x.value === undefined || x.value === null ? "" : x.value;
  if (typeof value !== "string") {
    error([...at, "value"], `${quote(value)} is not a string`);
    return undefined;
  }
  if (!FIELD_VALUE.test(value)) {
    error([...at, "value"], `${quote(value)} may not hold control characters (CR, LF, NUL…)`);
    return undefined;
  }
  if (x.name.length + value.length > LIMITS.probeHeaderBytes) {
    error(at, `name and value may be at most ${LIMITS.probeHeaderBytes} characters together`);
    return undefined;
  }
  return { name: x.name, value };
}
