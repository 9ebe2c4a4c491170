/**
 * Manifests (text) → ClusterState, with every problem located at file:line and field path.
 */
import { bare, quote } from "../util/quote.ts";
import type { Reporter } from "./fields.ts";
import { DeferredParseError, type ParsedDoc, type Path, parseManifestText } from "./parse.ts";
import { type PolicyCheck, servicePolicyProblems } from "./policy.ts";
import { PROBE_ANNOTATION, parseReadinessProbe } from "./probe.ts";
import {
  apiVersionProblem,
  checkUnknownFields,
  KNOWN_FIELDS,
  servedVersion,
  WORKLOAD_KINDS as WORKLOAD_KIND_NAMES,
} from "./rules.ts";
import { validateWorkload, type Workload } from "./simulate.ts";
import type { ClusterState, EndpointSlice, Node, Origin, ReadinessProbe, Service } from "./types.ts";
import { validateNode, validateService } from "./validate.ts";
import { validateEndpointSlice, validateEndpoints } from "./validate_endpoints.ts";

/** Something wrong (or worth saying) in the input, located in it. */
export interface Problem {
  /** The file it is in, as the caller named it. */
  file: string;
  /** 1-based line in the file; 0 when it is about the whole file. */
  line: number;
  /** The message: the object and field path it concerns, and what is wrong. */
  message: string;
}

/** How loadManifests reads the manifests. */
export interface LoadOptions {
  /** The node whose Node object is read (zone, pod CIDRs, addresses). */
  nodeName: string;
  /** Keep Deployments, StatefulSets, ReplicaSets, DaemonSets and Pods for simulation. */
  workloads?: boolean;
  /** The namespace of objects that name none (`-n`, as kubectl); default `default`. */
  namespace?: string;
  /** Missing cluster IPs will be allocated: no "skipping this Service" warning. */
  allocates?: boolean;
  /** The cluster's node-port and service ranges: warnings, or errors when enforced. */
  policy?: PolicyCheck;
}

/** What loadManifests read: the engine's input, and what it had to say about the manifests. */
export interface LoadResult {
  /** The Services, EndpointSlices (v1 Endpoints converted) and this node: buildRules' input. */
  state: ClusterState;
  /** Every Node object read (this node is also `state.node`). */
  nodes: Node[];
  /** Workloads read for simulation (only with `workloads`). */
  workloads: Workload[];
  /** Problems that stop a render: the input is not what the API server would accept. */
  errors: Problem[];
  /** Problems that do not stop it (a node port outside the range, a Service skipped…). */
  warnings: Problem[];
  /** Things worth saying that are not problems (a kustomization.yaml skipped). */
  notes: Problem[];
  /** Objects of kinds kip does not read: `apps/v1 ConfigMap` → count. */
  skipped: Map<string, number>;
}

/** `spec.ports[0].port` from ["spec", "ports", 0, "port"]. */
export function formatPath(path: Path): string {
  let s = "";
  for (const p of path) {
    // Keys come from the input: a key that is not a plain word is quoted and escaped.
    if (typeof p === "number") s += `[${p}]`;
    else if (!PLAIN_KEY.test(p)) s += `[${quote(p)}]`;
    else s += s === "" ? p : `.${p}`;
  }
  return s;
}

const PLAIN_KEY = /^[A-Za-z0-9_./-]{1,253}$/;

const WORKLOAD_KINDS = new Set([
  "apps/v1 Deployment",
  "apps/v1 StatefulSet",
  "apps/v1 ReplicaSet",
  "apps/v1 DaemonSet",
  "v1 Pod",
]);

/** Kinds whose name may appear once in the input (a second one is an error). */
const NAMED_ONCE = new Set(["v1 Service", "discovery.k8s.io/v1 EndpointSlice", "v1 Endpoints", "v1 Node"]);

const KUSTOMIZATION = /(^|\/)(kustomization\.ya?ml|Kustomization)$/;
const HELM_CHART = /(^|\/)Chart\.ya?ml$/;

/**
 * Kustomize and Helm inputs are not manifests: a kustomization.yaml is skipped, and so is
 * every file of a Helm chart (the directory holding Chart.yaml), each with one note.
 */
function withoutBuildInputs(
  files: { file: string; text: string }[],
  notes: Problem[],
): { file: string; text: string }[] {
  const charts = files.filter((f) => HELM_CHART.test(f.file)).map((f) => f.file.replace(/Chart\.ya?ml$/, ""));
  return files.filter((f) => {
    const chart = charts.find((dir) => f.file.startsWith(dir));
    if (chart !== undefined) {
      if (HELM_CHART.test(f.file))
        notes.push({
          file: f.file,
          line: 0,
          message: `a Helm chart: skipping ${chart || "."}; render it with "helm template ... | kip render -"`,
        });
      return false;
    }
    if (KUSTOMIZATION.test(f.file)) {
      notes.push({
        file: f.file,
        line: 0,
        message: 'a kustomization: skipping it; render the overlay with "kustomize build DIR | kip render -"',
      });
      return false;
    }
    return true;
  });
}

/**
 * Where an object came from. Lazy: finding a line in JSON re-parses the file, which only an
 * error should pay for. Made outside the loader's per-object scope on purpose: a getter
 * closing over that scope kept every raw parsed object (the whole `JSON.parse` of the input,
 * 30 MB of heap at 10k Services × 10) alive as long as the model objects. This one holds the
 * file's locator and the object's path only.
 */
function lazyOrigin(file: string, locate: (path: Path) => number, base: Path): Origin {
  return {
    file,
    get line() {
      return locate(base);
    },
  };
}

/** Parse and validate manifest files. Never throws on bad input: everything goes to errors. */
export function loadManifests(files: { file: string; text: string }[], opts: LoadOptions): LoadResult {
  const errors: Problem[] = [];
  const warnings: Problem[] = [];
  const notes: Problem[] = [];
  const defaultNamespace = opts.namespace || "default";
  const services: Service[] = [];
  const slices: EndpointSlice[] = [];
  const endpoints: { slices: EndpointSlice[]; key: string }[] = [];
  const nodes: Node[] = [];
  const workloads: Workload[] = [];
  const skipped = new Map<string, number>();
  const seen = new Map<string, Origin>();
  /** Where everything stands before a file: what rolling its objects back returns to. */
  const marks = () => {
    const lists = [errors, warnings, notes, services, slices, endpoints, nodes, workloads] as unknown[][];
    const lengths = lists.map((l) => l.length);
    const seenBefore = seen.size;
    const skippedBefore = new Map(skipped);
    return {
      rollBack() {
        lists.forEach((l, i) => {
          l.length = lengths[i];
        });
        let i = 0;
        for (const key of [...seen.keys()]) if (i++ >= seenBefore) seen.delete(key);
        skipped.clear();
        for (const [k, n] of skippedBefore) skipped.set(k, n);
      },
    };
  };

  const visit = (doc: ParsedDoc, input: unknown, base: Path) => {
    let value = input;
    const at = (path: Path) => doc.line([...base, ...path]);
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      errors.push({
        file: doc.file,
        line: at([]),
        message: `${formatPath(base) || "document"}: expected a Kubernetes object`,
      });
      return;
    }
    const obj = value as Record<string, unknown>;
    const apiVersion = typeof obj.apiVersion === "string" ? obj.apiVersion : "";
    const kind = typeof obj.kind === "string" ? obj.kind : "";
    if (!kind || !apiVersion) {
      errors.push({
        file: doc.file,
        line: at([]),
        message: `${formatPath(base) || "document"}: apiVersion and kind are required`,
      });
      return;
    }
    if (kind.endsWith("List") && obj.items !== undefined && obj.items !== null) {
      if (!Array.isArray(obj.items)) {
        const message = `${bare(kind)}: items: must be a list, not ${quote(obj.items)}`;
        errors.push({ file: doc.file, line: at(["items"]), message });
        return;
      }
      for (const [i, item] of obj.items.entries()) visit(doc, item, [...base, "items", i]);
      return;
    }
    if (kind === "Kustomization") {
      notes.push({
        file: doc.file,
        line: at([]),
        message: 'a kustomization: skipping it; render the overlay with "kustomize build DIR | kip render -"',
      });
      return;
    }
    let meta = (typeof obj.metadata === "object" && obj.metadata ? obj.metadata : {}) as Record<string, unknown>;
    // Namespaced objects that name no namespace get -n's, as kubectl apply would give them.
    const noNamespace = meta.namespace === undefined || meta.namespace === null || meta.namespace === "";
    const metaIsObject =
      obj.metadata === undefined || obj.metadata === null || (meta === obj.metadata && !Array.isArray(meta));
    if (noNamespace && metaIsObject && kind !== "Node") {
      meta = { ...meta, namespace: defaultNamespace };
      value = { ...obj, metadata: meta };
    }
    const object = value as Record<string, unknown>;
    // Kind and name come from the input: printed bare only when they are plain words. Made
    // for a message only (20k objects at 10k Services, nearly all without one).
    const where = () => {
      const name = typeof meta.name === "string" || typeof meta.name === "number" ? String(meta.name) : "?";
      return `${bare(kind)} ${bare(`${typeof meta.namespace === "string" ? `${meta.namespace}/` : ""}${name}`)}`;
    };
    const reporter: Reporter = {
      error: (p, m) => errors.push({ file: doc.file, line: at(p), message: `${where()}: ${formatPath(p)}: ${m}` }),
      warn: (p, m) => warnings.push({ file: doc.file, line: at(p), message: `${where()}: ${formatPath(p)}: ${m}` }),
    };
    const origin = lazyOrigin(doc.file, doc.line, base);
    const typeKey = `${apiVersion} ${kind}`;
    // A kind kip reads under a version the API server no longer serves (EndpointSlice in
    // discovery.k8s.io/v1beta1) would otherwise vanish as "another kind".
    const versionProblem =
      opts.workloads || !WORKLOAD_KIND_NAMES.has(kind) ? apiVersionProblem(apiVersion, kind) : undefined;
    if (versionProblem) {
      reporter.error(["apiVersion"], `${quote(apiVersion)}: ${versionProblem}`);
      return;
    }
    // Unknown fields are warnings, as kubectl's field validation gives them.
    const reads = servedVersion(kind) === apiVersion && (opts.workloads || !WORKLOAD_KIND_NAMES.has(kind));
    if (reads) checkUnknownFields(KNOWN_FIELDS[kind], obj, [], reporter.warn);
    if (NAMED_ONCE.has(typeKey)) {
      const key = `${typeKey} ${kind === "Node" ? String(meta.name) : `${String(meta.namespace)}/${String(meta.name)}`}`;
      const prev = seen.get(key);
      if (prev) {
        const first = `${prev.file}:${prev.line}`;
        errors.push({
          file: doc.file,
          line: at(["metadata", "name"]),
          message: `${where()}: metadata.name: defined twice (first at ${first})`,
        });
        return;
      }
      seen.set(key, origin);
    }
    switch (typeKey) {
      case "v1 Service": {
        const svc = validateService(object, reporter);
        if (!svc) return;
        if (opts.policy) {
          const problems = servicePolicyProblems(svc, opts.policy);
          for (const p of problems) (opts.policy.enforce ? reporter.error : reporter.warn)(p.path, p.message);
          if (problems.length > 0 && opts.policy.enforce) return;
        }
        const { readinessProbeAnnotation: probeText, ...rest } = svc;
        let readinessProbe: ReadinessProbe | undefined;
        if (probeText !== undefined) {
          // Errors point at the annotation's line; the path goes on inside its value.
          const base: Path = ["metadata", "annotations", PROBE_ANNOTATION];
          let bad = false;
          readinessProbe = parseReadinessProbe(probeText, {
            error: (p, m) => {
              bad = true;
              reporter.error([...base, ...p], m);
            },
            warn: (p, m) => reporter.warn([...base, ...p], m),
          });
          if (bad) return;
        }
        if (!opts.allocates && svc.type !== "ExternalName" && svc.clusterIPs.length === 0)
          reporter.warn(
            ["spec", "clusterIP"],
            "no clusterIP: the API server would allocate one; skipping this Service",
          );
        services.push({ ...rest, ...(readinessProbe ? { readinessProbe } : {}), origin });
        return;
      }
      case "discovery.k8s.io/v1 EndpointSlice": {
        const s = validateEndpointSlice(object, reporter);
        if (s) {
          s.origin = origin; // the validator's own new object: no copy
          slices.push(s);
        }
        return;
      }
      case "v1 Endpoints": {
        const list = validateEndpoints(object, reporter);
        if (list)
          endpoints.push({
            slices: list.map((s) => ({ ...s, origin })),
            key: `${String(meta.namespace)}/${String(meta.name)}`,
          });
        return;
      }
      case "v1 Node": {
        const n = validateNode(object, reporter);
        if (n) nodes.push(n);
        return;
      }
    }
    if (opts.workloads && WORKLOAD_KINDS.has(typeKey)) {
      const w = validateWorkload(kind, object, reporter);
      if (w) workloads.push({ ...w, origin });
      return;
    }
    const skippedKey = `${bare(apiVersion)} ${bare(kind)}`;
    skipped.set(skippedKey, (skipped.get(skippedKey) ?? 0) + 1);
  };

  for (const { file, text } of withoutBuildInputs(files, notes)) {
    const parsed = parseManifestText(file, text, { splitLists: true });
    errors.push(...parsed.errors);
    const mark = marks();
    try {
      for (const doc of parsed.docs) visit(doc, doc.value, doc.base);
    } catch (e) {
      if (!(e instanceof DeferredParseError)) throw e;
      // A List's item that is not JSON: the file is not, and none of it counts.
      mark.rollBack();
      errors.push(...e.errors);
    }
  }

  // Endpoints are mirrored only where no EndpointSlice exists for the Service: a dump of a
  // live cluster holds both, and the slices are then the source of truth.
  const withSlices = new Set(slices.map((s) => `${s.namespace}/${s.labels["kubernetes.io/service-name"] ?? ""}`));
  for (const e of endpoints) if (!withSlices.has(e.key)) slices.push(...e.slices);

  const node = nodes.find((n) => n.name === opts.nodeName);
  return { state: { services, endpointSlices: slices, node }, nodes, workloads, errors, warnings, notes, skipped };
}
