/**
 * What every validator shares: the API server's rules for names and labels, typed field
 * access that reports a wrong value against its path (Fields), and object metadata.
 *
 * Manifests are untrusted: their values end up in iptables-restore input run as root. Every
 * name, label, port, address and CIDR that can reach a rule is checked by the validators
 * (validate.ts, validate_endpoints.ts), and the model types (types.ts) only ever hold values
 * that passed.
 */
import { quote } from "../util/quote.ts";
import { parseIP } from "./ip.ts";
import type { Path } from "./parse.ts";
import { LIMITS } from "./rules.ts";

/** Receives problems with the field path they concern. */
export interface Reporter {
  error(path: Path, message: string): void;
  warn(path: Path, message: string): void;
}

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const LABEL_NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const IANA_SVC_NAME = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;
const INTERFACE_NAME = /^[A-Za-z0-9_.:@-]{1,15}$/;

/** An input value as quoted in a message: escaped, bounded (lib/util/quote.ts). */
const q = quote;

export function isDNS1123Label(s: string): boolean {
  return s.length <= 63 && DNS1123_LABEL.test(s);
}
export function isDNS1035Label(s: string): boolean {
  return s.length <= 63 && DNS1035_LABEL.test(s);
}
export function isDNS1123Subdomain(s: string): boolean {
  return s.length <= 253 && DNS1123_SUBDOMAIN.test(s);
}
export function isIANASvcName(s: string): boolean {
  return s.length <= 15 && IANA_SVC_NAME.test(s) && /[a-z]/.test(s) && !s.includes("--");
}
export function isLabelValue(s: string): boolean {
  return s === "" || (s.length <= 63 && LABEL_NAME.test(s));
}
export function isQualifiedName(s: string): boolean {
  const parts = s.split("/");
  if (parts.length > 2) return false;
  const name = parts[parts.length - 1];
  if (parts.length === 2 && (parts[0].length === 0 || !isDNS1123Subdomain(parts[0]))) return false;
  return name.length > 0 && name.length <= 63 && LABEL_NAME.test(name);
}
/** A Linux interface name as used by `-i` (bridge, prefix): no spaces, quotes or options. */
export function isInterfaceName(s: string): boolean {
  return INTERFACE_NAME.test(s) && !s.startsWith("-");
}

export const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/** Field access helpers that report type errors against a path. */
export class Fields {
  constructor(readonly r: Reporter) {}

  obj(v: unknown, path: Path): Record<string, unknown> | undefined {
    if (v === undefined || v === null) return undefined;
    if (!isObject(v)) {
      this.r.error(path, `must be an object, not ${q(v)}`);
      return undefined;
    }
    return v;
  }
  /** A list element: null is not an absent field here, it is a wrong value. */
  item(v: unknown, path: Path): Record<string, unknown> | undefined {
    if (v === null || v === undefined) {
      this.r.error(path, "must be an object, not null");
      return undefined;
    }
    return this.obj(v, path);
  }
  /** A required field: absent, null and "" are all "is required". */
  required(v: unknown, path: Path): boolean {
    if (v !== undefined && v !== null && v !== "") return true;
    this.r.error(path, "is required");
    return false;
  }
  list(v: unknown, path: Path): unknown[] {
    if (v === undefined || v === null) return [];
    if (!Array.isArray(v)) {
      this.r.error(path, `must be a list, not ${q(v)}`);
      return [];
    }
    return v;
  }
  str(v: unknown, path: Path): string | undefined {
    if (v === undefined || v === null) return undefined;
    if (typeof v !== "string") {
      this.r.error(path, `${q(v)} is not a string`);
      return undefined;
    }
    return v;
  }
  bool(v: unknown, path: Path): boolean | undefined {
    if (v === undefined || v === null) return undefined;
    if (typeof v !== "boolean") {
      this.r.error(path, `${q(v)} is not a boolean`);
      return undefined;
    }
    return v;
  }
  int(v: unknown, path: Path, min: number, max: number): number | undefined {
    if (v === undefined || v === null) return undefined;
    if (typeof v !== "number" || !Number.isInteger(v)) {
      this.r.error(path, `${q(v)} is not a whole number`);
      return undefined;
    }
    if (v < min || v > max) {
      this.r.error(path, `${v} is out of range (${min}-${max})`);
      return undefined;
    }
    return v;
  }
  oneOf<T extends string>(v: unknown, path: Path, allowed: readonly T[], dflt: T): T {
    const s = this.str(v, path);
    if (s === undefined || s === "") return dflt;
    if (!(allowed as readonly string[]).includes(s)) {
      this.r.error(path, `${q(s)} is not one of ${allowed.join(", ")}`);
      return dflt;
    }
    return s as T;
  }
  labels(v: unknown, path: Path): Record<string, string> {
    const o = this.obj(v, path);
    const out: Record<string, string> = {};
    if (!o) return out;
    for (const [k, val] of Object.entries(o)) {
      if (!isQualifiedName(k)) this.r.error([...path, k], `label key ${q(k)} is not a valid qualified name`);
      else if (typeof val !== "string") this.r.error([...path, k], `label value ${q(val)} is not a string`);
      else if (!isLabelValue(val)) this.r.error([...path, k], `label value ${q(val)} is not valid`);
      else out[k] = val;
    }
    return out;
  }
  ip(v: unknown, path: Path): string | undefined {
    const s = this.str(v, path);
    if (s === undefined) return undefined;
    const ip = parseIP(s);
    if (!ip) this.r.error(path, `${q(s)} is not a valid IP address`);
    return ip?.text;
  }
}

/** What a valid metadata.name is, in the API server's words, per naming rule. */
const NAME_RULES = {
  dns1035:
    "at most 63 lower-case letters, digits and '-', starting with a letter and ending with a letter or digit (e.g. web-app)",
  dns1123label:
    "at most 63 lower-case letters, digits and '-', starting and ending with a letter or digit (e.g. web-app)",
  subdomain:
    "at most 253 lower-case letters, digits, '-' and '.', starting and ending with a letter or digit (e.g. web-app.v1)",
} as const;

/** metadata.name / namespace / labels, common to every kind. */
export function readMeta(
  f: Fields,
  v: unknown,
  nameRule: "dns1035" | "dns1123label" | "subdomain",
  namespaced: boolean,
): { name: string; namespace: string; labels: Record<string, string>; annotations: Record<string, unknown> } {
  const m = f.obj(v, ["metadata"]) ?? {};
  const name = f.str(m.name, ["metadata", "name"]) ?? "";
  const check = { dns1035: isDNS1035Label, dns1123label: isDNS1123Label, subdomain: isDNS1123Subdomain }[nameRule];
  if (name === "") f.r.error(["metadata", "name"], "is required");
  else if (!check(name)) f.r.error(["metadata", "name"], `${q(name)} is not a valid name: ${NAME_RULES[nameRule]}`);
  let namespace = "";
  if (namespaced) {
    namespace = f.str(m.namespace, ["metadata", "namespace"]) || "default";
    if (!isDNS1123Label(namespace)) f.r.error(["metadata", "namespace"], `${q(namespace)} is not a valid namespace`);
  }
  const labels = f.labels(m.labels, ["metadata", "labels"]);
  const annotations = f.obj(m.annotations, ["metadata", "annotations"]) ?? {};
  checkAnnotations(f, annotations);
  return { name, namespace, labels, annotations };
}

/** Annotation keys are qualified names; keys and values together fit in 256 KiB. */
function checkAnnotations(f: Fields, annotations: Record<string, unknown>): void {
  let total = 0;
  for (const [k, v] of Object.entries(annotations)) {
    const path = ["metadata", "annotations", k];
    if (!isQualifiedName(k.toLowerCase())) f.r.error(path, `annotation key ${q(k)} is not a valid qualified name`);
    if (v !== null && typeof v !== "string") f.r.error(path, `annotation value ${q(v)} is not a string`);
    total += k.length + (typeof v === "string" ? v.length : 0);
  }
  // Lengths count UTF-16 units; bytes are counted only when they could matter.
  if (total * 3 > LIMITS.annotationsTotalBytes) {
    let bytes = 0;
    for (const [k, v] of Object.entries(annotations))
      bytes += Buffer.byteLength(k) + (typeof v === "string" ? Buffer.byteLength(v) : 0);
    if (bytes > LIMITS.annotationsTotalBytes)
      f.r.error(
        ["metadata", "annotations"],
        `may not be more than ${LIMITS.annotationsTotalBytes} bytes in total (keys and values), not ${bytes}`,
      );
  }
}

/** A reporter that remembers whether it was handed an error. */
export function withFailure(r: Reporter): { rep: Reporter; failed: () => boolean } {
  let failed = false;
  return {
    rep: {
      error: (p, m) => {
        failed = true;
        r.error(p, m);
      },
      warn: r.warn,
    },
    failed: () => failed,
  };
}
