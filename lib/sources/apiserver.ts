/**
 * The apiserver source: informers (list + watch, @kubernetes/client-node's ListWatch) for v1
 * Services and discovery.k8s.io/v1 EndpointSlices with the proxy label selector of spec §1.1,
 * and for this node's v1 Node, turned into validated model objects.
 *
 * The client library is big and only `kip sync` needs it, so it is loaded with a dynamic
 * import when the source starts: importing this file costs nothing, and `kip render` never
 * loads it. Only type imports of the client appear here, and they are erased.
 */
import { existsSync } from "node:fs";
import { homedir } from "node:os";
import { delimiter, join } from "node:path";
import type {
  Cluster,
  CoreV1Api,
  DiscoveryV1Api,
  KubeConfig,
  KubernetesListObject,
  KubernetesObject,
  Watch,
} from "@kubernetes/client-node";
import type { Reporter } from "../model/fields.ts";
import { formatPath } from "../model/load.ts";
import type { Path } from "../model/parse.ts";
import { validateNode, validateService } from "../model/validate.ts";
import { validateEndpointSlice } from "../model/validate_endpoints.ts";
import { type ObjectKind, PROXY_LABEL_SELECTOR, type Source, type SourceEvent, type SourceHandler } from "./source.ts";

type Client = typeof import("@kubernetes/client-node");

export interface ApiserverSourceOptions {
  /** `--kubeconfig`: wins over KUBECONFIG, ~/.kube/config and the in-cluster service account. */
  kubeconfig?: string;
  /** `--master`: the apiserver URL, overriding the kubeconfig's server. */
  master?: string;
  /** This node's name: only the Node of that name is watched. */
  nodeName: string;
  /** Environment for KUBECONFIG, HOME and KUBERNETES_SERVICE_HOST/_PORT (default: process.env). */
  env?: Record<string, string | undefined>;
  /** Progress worth a log line (which kubeconfig, lists done, watches renewed, warnings). */
  onLog?: (message: string) => void;
  /** Delay before retrying a failed list or watch: starts at initialMs, doubles up to maxMs (default 1 s → 30 s). */
  retry?: { initialMs?: number; maxMs?: number };
  /** Items per list request; larger lists are read in chunks (limit/continue). Default 500. */
  listPageSize?: number;
  /** Where the in-cluster service account lives (default /var/run/secrets/kubernetes.io/serviceaccount). */
  serviceAccountDir?: string;
  /** The server ends each watch after this long and it is renewed (default 5-10 min, as client-go). */
  watchTimeoutSeconds?: number;
}

const SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";
const LIST_TIMEOUT_MS = 60_000;
/** A watch that the server does not end within its timeout plus this is considered dead. */
const WATCH_GRACE_MS = 30_000;
/** A watch ending cleanly faster than this without any event is treated as a failure (no hot loop). */
const WATCH_MIN_LIFE_MS = 1_000;
/** A watch that lived this long counts as healthy: the next failure starts the backoff afresh. */
const WATCH_HEALTHY_MS = 10_000;

/** Which kubeconfig was chosen, and the client config made from it. */
export interface ResolvedKubeconfig {
  config: KubeConfig;
  /** For a log line: `--kubeconfig /path`, `KUBECONFIG=…`, `~/.kube/config (/path)`, `in-cluster service account`, `--master only`. */
  from: string;
  server: string;
}

/**
 * Find the client configuration: `--kubeconfig`, then KUBECONFIG (files merged, missing ones
 * skipped, as kubectl does), then ~/.kube/config, then the in-cluster service account. `master`
 * replaces the server URL; alone it is enough (no credentials). Throws an Error that says what
 * was tried when nothing fits.
 */
export function resolveKubeconfig(
  k: Pick<Client, "KubeConfig">,
  opts: Pick<ApiserverSourceOptions, "kubeconfig" | "master" | "env" | "serviceAccountDir">,
): ResolvedKubeconfig {
  const env = opts.env ?? process.env;
  const kc = new k.KubeConfig();
  const load = (file: string, into = kc) => {
    try {
      into.loadFromFile(file);
    } catch (e) {
      throw new Error(`Cannot load kubeconfig ${JSON.stringify(file)}: ${errorText(e)}`);
    }
  };
  let from: string;
  const home = env.HOME || homedir();
  const homeConfig = join(home, ".kube", "config");
  const saDir = opts.serviceAccountDir ?? SERVICE_ACCOUNT_DIR;
  if (opts.kubeconfig) {
    load(opts.kubeconfig);
    from = `--kubeconfig ${opts.kubeconfig}`;
  } else if (env.KUBECONFIG) {
    const files = env.KUBECONFIG.split(delimiter).filter((f) => f !== "" && existsSync(f));
    if (files.length === 0)
      throw new Error(`KUBECONFIG=${JSON.stringify(env.KUBECONFIG)} names no kubeconfig file that exists`);
    load(files[0]);
    for (const f of files.slice(1)) {
      const more = new k.KubeConfig();
      load(f, more);
      kc.mergeConfig(more, true);
    }
    from = `KUBECONFIG=${env.KUBECONFIG}`;
  } else if (existsSync(homeConfig)) {
    load(homeConfig);
    from = `~/.kube/config (${homeConfig})`;
  } else if (env.KUBERNETES_SERVICE_HOST && env.KUBERNETES_SERVICE_PORT && existsSync(join(saDir, "token"))) {
    const host = env.KUBERNETES_SERVICE_HOST.includes(":")
      ? `[${env.KUBERNETES_SERVICE_HOST}]`
      : env.KUBERNETES_SERVICE_HOST;
    // As the client's own loadFromCluster, but with our env and directory; the token file is
    // re-read by the client, so rotated (bound) tokens keep working.
    kc.loadFromClusterAndUser(
      {
        name: "in-cluster",
        server: `https://${host}:${env.KUBERNETES_SERVICE_PORT}`,
        caFile: join(saDir, "ca.crt"),
        skipTLSVerify: false,
      },
      { name: "in-cluster", authProvider: { name: "tokenFile", config: { tokenFile: join(saDir, "token") } } },
    );
    from = `in-cluster service account (${saDir})`;
  } else if (opts.master) {
    kc.loadFromClusterAndUser({ name: "master", server: opts.master, skipTLSVerify: false }, { name: "anonymous" });
    from = "--master only";
  } else {
    throw new Error(
      "No kubeconfig found: pass --kubeconfig, set KUBECONFIG, create ~/.kube/config, or run in a pod with a service account",
    );
  }
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error(`The kubeconfig from ${from} has no current context with a cluster`);
  if (opts.master) {
    let u: URL;
    try {
      u = new URL(opts.master);
    } catch {
      throw new Error(`--master ${JSON.stringify(opts.master)} is not a URL`);
    }
    if (u.protocol !== "https:" && u.protocol !== "http:")
      throw new Error(`--master ${JSON.stringify(opts.master)} must be an https:// or http:// URL`);
    const server = opts.master.replace(/\/+$/, "");
    kc.clusters = kc.clusters.map((c: Cluster) => (c.name === cluster.name ? { ...c, server } : c));
  }
  return { config: kc, from, server: kc.getCurrentCluster()!.server };
}

/**
 * What is unsafe about how the apiserver will be reached: TLS verification turned off by the
 * kubeconfig (`insecure-skip-tls-verify: true`), or plain HTTP. Anyone on the path could then
 * feed kip the objects that become the node's rules: worth a warning at every start.
 */
export function transportWarnings(r: ResolvedKubeconfig): string[] {
  const out: string[] = [];
  if (r.config.getCurrentCluster()?.skipTLSVerify)
    out.push(
      `The kubeconfig (${r.from}) disables TLS verification (insecure-skip-tls-verify): the apiserver's identity is not checked; give its CA (certificate-authority-data) instead`,
    );
  if (/^http:\/\//i.test(r.server))
    out.push(`The apiserver is reached over plain HTTP (${r.server}): nothing is encrypted or authenticated`);
  return out;
}

/** A failure with what was being done, for one log line. */
class InformerError extends Error {
  constructor(
    what: string,
    readonly reason: unknown,
  ) {
    super(`${what} failed: ${errorText(reason)}`);
  }
}

/** One line about an error from the client: HTTP status and the server's message, or the network error. */
export function errorText(e: unknown): string {
  if (e === null || e === undefined) return String(e);
  if (typeof e !== "object") return String(e);
  const err = e as { code?: unknown; statusCode?: unknown; body?: unknown; message?: unknown; name?: unknown };
  if (typeof err.code === "number" && "body" in err) {
    // An ApiException: the body is the server's Status (a string or parsed).
    let body: any = err.body;
    if (typeof body === "string") {
      try {
        body = JSON.parse(body);
      } catch {
        // not JSON: keep the text
      }
    }
    const detail = typeof body === "object" && body?.message ? body.message : typeof body === "string" ? body : "";
    if (detail) return `HTTP ${err.code}: ${JSON.stringify(detail)}`;
    // Without a body, the client's own message line may still name the status ("Unauthorized").
    const named = typeof err.message === "string" ? /^Message: (.*)$/m.exec(err.message)?.[1] : undefined;
    return named && !named.startsWith("Unknown API Status") ? `HTTP ${err.code} ${named}` : `HTTP ${err.code}`;
  }
  // Bun's fetch appends a hint about its own `verbose` option: not useful in a log line.
  const msg =
    typeof err.message === "string"
      ? err.message.split("\n")[0].replace(/\s*For more information, pass `verbose: true`.*$/, "")
      : String(e);
  if (typeof err.statusCode === "number") return `HTTP ${err.statusCode} ${msg}`;
  if (typeof err.code === "string" && !msg.includes(err.code)) return `${msg} (${err.code})`;
  return msg;
}

interface InformerSpec {
  kind: ObjectKind;
  /** Plural resource name, for messages. */
  resource: string;
  path: string;
  apiVersion: string;
  labelSelector?: string;
  fieldSelector?: string;
  list(
    params: { labelSelector?: string; fieldSelector?: string; limit?: number; _continue?: string },
    options: object,
  ): Promise<KubernetesListObject<KubernetesObject>>;
}

const VALIDATORS = {
  Service: validateService,
  EndpointSlice: validateEndpointSlice,
  Node: validateNode,
} as const;

/**
 * A Source reading the apiserver. Nothing is loaded or connected until start(); start()
 * rejects when no kubeconfig can be found or loaded (a usage problem), and everything after
 * that (refused connections, dropped watches, 410 Gone, bad objects) goes to onProblem and is
 * retried or skipped, never thrown.
 */
export function createApiserverSource(opts: ApiserverSourceOptions): Source {
  const log = opts.onLog ?? (() => {});
  const initialDelay = opts.retry?.initialMs ?? 1_000;
  const maxDelay = opts.retry?.maxMs ?? 30_000;
  const pageSize = opts.listPageSize ?? 500;
  let started = false;
  let stopped = false;
  let handler: SourceHandler | undefined;
  const timers = new Set<ReturnType<typeof setTimeout>>();
  const inflight = new Set<AbortController>();
  /** Work that must finish before stop() resolves: lists being aborted, watches being closed. */
  const pending = new Set<Promise<unknown>>();
  const informers: { stop(): Promise<void> }[] = [];

  const later = (ms: number, fn: () => void) => {
    const t = setTimeout(() => {
      timers.delete(t);
      fn();
    }, ms);
    timers.add(t);
    return t;
  };
  const cancel = (t: ReturnType<typeof setTimeout> | undefined) => {
    if (t === undefined) return;
    clearTimeout(t);
    timers.delete(t);
  };

  const deliver = (spec: InformerSpec, obj: KubernetesObject, deleted: boolean) => {
    if (stopped || !handler) return;
    const meta = (obj?.metadata ?? {}) as { name?: string; namespace?: string };
    const key = spec.kind === "Node" ? String(meta.name ?? "") : `${meta.namespace || "default"}/${meta.name ?? ""}`;
    if (deleted) {
      emit({ kind: spec.kind, type: "delete", key });
      return;
    }
    const where = `${spec.kind} ${key}`;
    const errors: string[] = [];
    const at = (p: Path) => (p.length > 0 ? `${formatPath(p)}: ` : "");
    const reporter: Reporter = {
      error: (p, m) => errors.push(`${where}: ${at(p)}${m}`),
      warn: (p, m) => log(`warning: ${where}: ${at(p)}${m}`),
    };
    // Plain JSON here: watch objects are parsed JSON, and listFn turned list items into JSON.
    const model = VALIDATORS[spec.kind](obj as unknown as Record<string, unknown>, reporter);
    if (!model) {
      for (const e of errors.length > 0 ? errors : [`${where}: not valid`]) handler.onProblem(`${e} (object ignored)`);
      // A previous good version must not linger in the engine.
      emit({ kind: spec.kind, type: "delete", key });
      return;
    }
    emit({ kind: spec.kind, type: "upsert", key, object: model } as SourceEvent);
    leanCached(obj);
  };
  // The client swallows exceptions thrown from watch callbacks: a failing handler must at least be heard.
  const emit = (e: SourceEvent) => {
    try {
      handler?.onEvent(e);
    } catch (err) {
      handler?.onProblem(`The handler failed on ${e.type} of ${e.kind} ${e.key}: ${errorText(err)}`);
    }
  };

  const runInformer = (k: Client, kc: KubeConfig, spec: InformerSpec) => {
    const realWatch: Watch = new k.Watch(kc);
    const watchTimeout = opts.watchTimeoutSeconds ?? 300 + Math.floor(Math.random() * 300);
    let delay = initialDelay;
    let synced = false;
    let retryTimer: ReturnType<typeof setTimeout> | undefined;

    const listFn = async (): Promise<KubernetesListObject<KubernetesObject>> => {
      if (stopped) throw new InformerError(`List of ${spec.resource}`, new Error("stopped"));
      const ctrl = new AbortController();
      inflight.add(ctrl);
      const timeout = later(LIST_TIMEOUT_MS, () => ctrl.abort());
      // The object-parameter API takes the Observable form of middleware (the client's stub).
      const middleware = {
        pre: (ctx: { setSignal(s: AbortSignal): void }) => {
          ctx.setSignal(ctrl.signal);
          return new k.Observable(Promise.resolve(ctx));
        },
        post: (r: unknown) => new k.Observable(Promise.resolve(r)),
      };
      const work = (async () => {
        const items: KubernetesObject[] = [];
        let resourceVersion = "";
        let cont: string | undefined;
        let pages = 0;
        do {
          const page = await spec.list(
            {
              labelSelector: spec.labelSelector,
              fieldSelector: spec.fieldSelector,
              limit: pageSize,
              _continue: cont,
            },
            { middleware: [middleware], middlewareMergeStrategy: "append" },
          );
          pages++;
          // The client deserialises list items into class instances with Date fields (watch
          // objects stay parsed JSON); the validators and the cache get plain JSON either way.
          for (const item of page.items ?? []) items.push(JSON.parse(JSON.stringify(item)));
          // Every chunk is cut from one snapshot: its resourceVersion is the list's.
          resourceVersion = page.metadata?.resourceVersion ?? resourceVersion;
          cont = page.metadata?._continue || undefined;
        } while (cont && !stopped);
        log(
          `Listed ${items.length} ${spec.resource} at resourceVersion ${resourceVersion}${pages > 1 ? ` in ${pages} chunks` : ""}`,
        );
        return { apiVersion: spec.apiVersion, kind: `${spec.kind}List`, metadata: { resourceVersion }, items };
      })();
      pending.add(work);
      try {
        return await work;
      } catch (e) {
        throw new InformerError(`List of ${spec.resource}`, ctrl.signal.aborted && !stopped ? "timed out" : e);
      } finally {
        pending.delete(work);
        cancel(timeout);
        inflight.delete(ctrl);
      }
    };

    // ListWatch calls watch() after each successful list and to renew a watch. This wrapper
    // asks for bookmarks and a server-side timeout, reports ERROR events, turns a watch that
    // ends at once into a failure (so it backs off), and aborts a watch gone silent.
    const watchProxy = {
      watch: async (
        path: string,
        query: Record<string, unknown>,
        callback: (phase: string, obj: any, raw: any) => void,
        done: (err: unknown) => void,
      ): Promise<AbortController> => {
        if (stopped) return new AbortController();
        if (!synced) {
          // watch() follows the first successful list, whose objects are already delivered.
          synced = true;
          handler?.onSynced(spec.kind);
        }
        const startedAt = Date.now();
        let events = 0;
        let errorEvent: { code?: number; message?: string; reason?: string } | undefined;
        let watchdog: ReturnType<typeof setTimeout> | undefined;
        let silent = false;
        let finished!: () => void;
        const closed = new Promise<void>((r) => (finished = r));
        pending.add(closed);
        let ended = false;
        const end = (err: unknown) => {
          if (ended) return;
          ended = true;
          cancel(watchdog);
          pending.delete(closed);
          finished();
          if (stopped) return done(err);
          const lived = Date.now() - startedAt;
          if (events > 0 || lived >= WATCH_HEALTHY_MS) delay = initialDelay;
          if (err) {
            const status = (err as { statusCode?: number }).statusCode;
            if (status === 410) {
              handler?.onProblem(`Watch of ${spec.resource}: resourceVersion is too old (410 Gone); relisting`);
              return done(err); // ListWatch relists at once
            }
            return done(
              new InformerError(
                `Watch of ${spec.resource}`,
                silent ? `no data and no end for ${watchTimeout}s + ${WATCH_GRACE_MS / 1000}s` : err,
              ),
            );
          }
          if (errorEvent) {
            if (errorEvent.code === 410) {
              // ListWatch has cleared its resourceVersion: a clean end makes it relist.
              handler?.onProblem(
                `Watch of ${spec.resource}: ${errorEvent.message ?? "resourceVersion is too old"} (410 Gone); relisting`,
              );
              return done(null);
            }
            return done(
              new InformerError(
                `Watch of ${spec.resource}`,
                `ERROR event ${errorEvent.code ?? ""} ${errorEvent.reason ?? ""}: ${JSON.stringify(errorEvent.message ?? "")}`,
              ),
            );
          }
          if (events === 0 && lived < WATCH_MIN_LIFE_MS)
            return done(new InformerError(`Watch of ${spec.resource}`, `the server ended it after ${lived} ms`));
          log(`Watch of ${spec.resource} ended after ${Math.round(lived / 1000)}s; renewing`);
          done(null);
        };
        const ctrl = await realWatch.watch(
          path,
          { ...query, allowWatchBookmarks: true, timeoutSeconds: watchTimeout },
          (phase, obj, raw) => {
            if (stopped || ended) return;
            if (phase === "ERROR") errorEvent = obj ?? {};
            else events++;
            callback(phase, obj, raw);
          },
          end,
        );
        // stop() came while this watch was connecting: ListWatch could not abort it yet.
        if (stopped) ctrl.abort();
        if (!ended) {
          watchdog = later(watchTimeout * 1000 + WATCH_GRACE_MS, () => {
            silent = true;
            ctrl.abort();
            end(new Error("watchdog"));
          });
        }
        return ctrl;
      },
    };

    const lw = new k.ListWatch<KubernetesObject>(
      spec.path,
      watchProxy as unknown as Watch,
      listFn,
      false,
      spec.labelSelector,
      spec.fieldSelector,
    );
    lw.on("add", (o) => deliver(spec, o, false));
    lw.on("update", (o) => deliver(spec, o, false));
    lw.on("delete", (o) => deliver(spec, o, true));
    const restart = () => {
      if (stopped) return;
      lw.start().catch(onError);
    };
    const onError = (err: unknown) => {
      if (stopped) return;
      const message = err instanceof InformerError ? err.message : `${spec.resource}: ${errorText(err)}`;
      const wait = delay;
      delay = Math.min(delay * 2, maxDelay);
      handler?.onProblem(`${message}; retrying in ${formatDelay(wait)}`);
      cancel(retryTimer);
      retryTimer = later(wait, restart);
    };
    lw.on("error", onError);
    informers.push({
      stop: async () => {
        cancel(retryTimer);
        await lw.stop();
      },
    });
    restart();
  };

  return {
    async start(h) {
      if (started) throw new Error("The apiserver source was already started");
      started = true;
      handler = h;
      const k: Client = await import("@kubernetes/client-node");
      const resolved = resolveKubeconfig(k, opts);
      log(`Reading from the API server at ${resolved.server} (kubeconfig: ${resolved.from})`);
      for (const w of transportWarnings(resolved)) h.onProblem(w);
      if (stopped) return;
      const core: CoreV1Api = resolved.config.makeApiClient(k.CoreV1Api);
      const discovery: DiscoveryV1Api = resolved.config.makeApiClient(k.DiscoveryV1Api);
      const specs: InformerSpec[] = [
        {
          kind: "Service",
          resource: "services",
          path: "/api/v1/services",
          apiVersion: "v1",
          labelSelector: PROXY_LABEL_SELECTOR,
          list: (p, o) => core.listServiceForAllNamespaces(p, o),
        },
        {
          kind: "EndpointSlice",
          resource: "endpointslices",
          path: "/apis/discovery.k8s.io/v1/endpointslices",
          apiVersion: "discovery.k8s.io/v1",
          labelSelector: PROXY_LABEL_SELECTOR,
          list: (p, o) => discovery.listEndpointSliceForAllNamespaces(p, o),
        },
        {
          kind: "Node",
          resource: "nodes",
          path: "/api/v1/nodes",
          apiVersion: "v1",
          fieldSelector: `metadata.name=${opts.nodeName}`,
          list: (p, o) => core.listNode(p, o),
        },
      ];
      for (const spec of specs) runInformer(k, resolved.config, spec);
    },

    async stop() {
      if (stopped) return;
      stopped = true;
      for (const t of timers) clearTimeout(t);
      timers.clear();
      for (const c of inflight) c.abort();
      await Promise.all(informers.map((i) => i.stop()));
      // Aborted lists and watches settle quickly; wait for them so no socket outlives stop().
      if (pending.size > 0) {
        let giveUp: ReturnType<typeof setTimeout> | undefined;
        await Promise.race([
          Promise.allSettled([...pending]),
          new Promise<void>((r) => {
            giveUp = setTimeout(r, 5_000);
          }),
        ]);
        clearTimeout(giveUp);
      }
    },
  };
}

/**
 * ListWatch keeps the object it hands to add/update in its cache, by reference, and reads only
 * metadata.namespace, name and resourceVersion from it afterwards (to match a relist and to
 * skip an unchanged version). Once the object is turned into kip's model, everything else
 * goes. Memory budget: the model objects (the tracker's) plus ~100 bytes per object here,
 * instead of a second, raw copy of every Service and EndpointSlice (~40 MB at 10k × 10).
 */
export function leanCached(obj: KubernetesObject): void {
  const o = obj as unknown as Record<string, unknown>;
  const meta = (o.metadata ?? {}) as { name?: string; namespace?: string; resourceVersion?: string };
  for (const k of Object.keys(o)) if (k !== "metadata") delete o[k];
  o.metadata = { name: meta.name, namespace: meta.namespace, resourceVersion: meta.resourceVersion };
}

function formatDelay(ms: number): string {
  return ms >= 1000 ? `${+(ms / 1000).toFixed(1)}s` : `${ms}ms`;
}
