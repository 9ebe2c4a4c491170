/**
 * Health-checked backends for `kip sync --manifests`: a Source around the manifests source
 * that probes the endpoints of every Service annotated `kip/readiness-probe` (lib/model/
 * probe.ts) and passes their EndpointSlices on with `ready`/`serving` turned off while an
 * endpoint fails its probe. Everything else goes through untouched, so a probe result is one
 * more EndpointSlice change for the tracker: a partial sync of that Service, and kube-proxy's
 * own rules for what follows (terminating fallback, else REJECT when nothing is left).
 *
 * Per endpoint (its first address, as kube-proxy uses) the probe's port is: the probe's
 * `port` (a number, or a name looked up in the slice's ports); else each TCP port of the
 * slice that serves one of the Service's ports. The endpoint is ready while every one of
 * them passes. A probe only ever takes an endpoint out: one that the file marks not ready
 * stays so (an operator's drain wins).
 *
 * Until an endpoint's first probe passes it is not ready, as a Pod is: so the first "synced"
 * is held until every endpoint has had its first probe (or a deadline passes), and a
 * restarted kip does not send traffic to a dead backend, nor reject everything meanwhile.
 */
import type { ReadinessProbe, Service } from "../model/types.ts";
import { type EndpointSlice, SERVICE_NAME_LABEL } from "../model/types.ts";
import type { Level } from "../sync/log.ts";
import type { Metrics } from "../sync/metrics.ts";
import { networkCheck } from "../sync/probe_check.ts";
import { type Check, DEFAULT_MAX_CONCURRENT, Prober, type ProbeTarget, type TargetState } from "../sync/prober.ts";
import type { Clock } from "../sync/runner.ts";
import type { ObjectKind, Source, SourceEvent, SourceHandler } from "./source.ts";

export interface ProbingSourceOptions {
  clock: Clock;
  log: (level: Level, msg: string, fields?: Record<string, unknown>) => void;
  /** The network check (default: lib/sync/probe_check.ts). */
  check?: Check;
  maxConcurrent?: number;
  metrics?: Pick<Metrics, "probeReady" | "probeDuration">;
  /** Hold the first "synced" at most this long for first probe results (default: the longest timeout + 1 s). */
  firstResultsMs?: number;
}

/** One endpoint's probe state, as /debug/endpoints lists it. */
export interface EndpointProbeInfo {
  namespace: string;
  service: string;
  endpoint: string;
  probe: "tcpSocket" | "httpGet";
  ready: boolean;
  probes: number;
  lastResult?: "success" | "failure";
  consecutive: number;
  reason: string;
  lastProbe?: string;
  since: string;
}

const ALL_KINDS: ObjectKind[] = ["Service", "EndpointSlice", "Node"];

const serviceOf = (s: EndpointSlice) => `${s.namespace}/${s.labels[SERVICE_NAME_LABEL] ?? ""}`;
const hostPort = (address: string, port: number) => `${address.includes(":") ? `[${address}]` : address}:${port}`;

/** A Service as the engine gets it: the probe is this source's business. */
function strip(s: Service): Service {
  const { readinessProbe: _p, readinessProbeAnnotation: _a, ...rest } = s;
  return rest;
}

export class ProbingSource implements Source {
  private handler?: SourceHandler;
  private readonly prober: Prober;
  /** Services with a probe, by `ns/name`. */
  private probed = new Map<string, Service & { readinessProbe: ReadinessProbe }>();
  /** Every slice as the inner source gave it, and the text of what was passed on. */
  private slices = new Map<string, EndpointSlice>();
  private emitted = new Map<string, string>();
  private innerSynced = new Set<ObjectKind>();
  private synced = false;
  private firstTimer?: unknown;
  /** Problems already reported (a port that cannot be resolved), so each is said once. */
  private said = new Set<string>();

  constructor(
    private readonly inner: Source,
    private readonly o: ProbingSourceOptions,
  ) {
    const m = o.metrics;
    this.prober = new Prober({
      clock: o.clock,
      check: o.check ?? networkCheck,
      maxConcurrent: o.maxConcurrent ?? DEFAULT_MAX_CONCURRENT,
      onAdded: (s) => m?.probeReady.set(labels(s.target), 0),
      onRemoved: (t) => m?.probeReady.remove(labels(t)),
      onResult: (t, seconds, ok) => {
        m?.probeDuration.observe({ probe: t.probe.handler.type, result: ok ? "success" : "failure" }, seconds);
        if (!this.synced) this.maybeSynced();
      },
      onTransition: (s) => {
        m?.probeReady.set(labels(s.target), s.ready ? 1 : 0);
        const t = s.target;
        this.o.log(s.ready ? "info" : "warn", s.ready ? "endpoint ready" : "endpoint not ready", {
          service: `${t.namespace}/${t.service}`,
          endpoint: hostPort(t.address, t.port),
          reason: s.reason,
          ...(s.ready ? {} : { failures: s.run }),
        });
        this.refresh(new Set([`${t.namespace}/${t.service}`]));
      },
    });
  }

  async start(handler: SourceHandler): Promise<void> {
    this.handler = handler;
    await this.inner.start({
      onEvent: (e) => this.onEvent(e),
      onSynced: (kind) => {
        this.innerSynced.add(kind);
        if (this.innerSynced.size === ALL_KINDS.length) this.maybeSynced();
      },
      onProblem: (m) => handler.onProblem(m),
    });
  }

  async stop(): Promise<void> {
    if (this.firstTimer !== undefined) this.o.clock.clearTimeout(this.firstTimer);
    this.firstTimer = undefined;
    this.prober.stop();
    await this.inner.stop();
    this.handler = undefined;
  }

  /** Every probed endpoint's state, for GET /debug/endpoints. */
  endpoints(): EndpointProbeInfo[] {
    const iso = (ms?: number) => (ms === undefined ? undefined : new Date(ms).toISOString());
    return this.prober
      .list()
      .map((s) => ({
        namespace: s.target.namespace,
        service: s.target.service,
        endpoint: hostPort(s.target.address, s.target.port),
        probe: s.target.probe.handler.type,
        ready: s.ready,
        probes: s.probes,
        ...(s.last ? { lastResult: s.last } : {}),
        consecutive: s.run,
        reason: s.reason,
        ...(s.lastProbeAt !== undefined ? { lastProbe: iso(s.lastProbeAt) } : {}),
        since: iso(s.since) as string,
      }))
      .sort((a, b) =>
        `${a.namespace}/${a.service} ${a.endpoint}`.localeCompare(`${b.namespace}/${b.service} ${b.endpoint}`),
      );
  }

  private onEvent(e: SourceEvent): void {
    const h = this.handler;
    if (!h) return;
    if (e.kind === "Service") {
      const before = this.probed.get(e.key);
      if (e.type === "upsert") {
        const probe = e.object.readinessProbe;
        if (probe) this.probed.set(e.key, { ...e.object, readinessProbe: probe });
        else this.probed.delete(e.key);
        h.onEvent({ ...e, object: strip(e.object) });
      } else {
        this.probed.delete(e.key);
        h.onEvent(e);
      }
      const after = this.probed.get(e.key);
      if (before !== undefined || after !== undefined) this.refresh(new Set([e.key]));
      return;
    }
    if (e.kind === "EndpointSlice") {
      if (e.type === "upsert") {
        const prev = this.slices.get(e.key);
        this.slices.set(e.key, e.object);
        const services = new Set([serviceOf(e.object)]);
        if (prev) services.add(serviceOf(prev));
        if (this.probed.has(serviceOf(e.object)) || (prev && this.probed.has(serviceOf(prev)))) this.refresh(services);
        else this.emit(e.key, e.object);
      } else {
        const prev = this.slices.get(e.key);
        this.slices.delete(e.key);
        this.emitted.delete(e.key);
        h.onEvent(e);
        if (prev && this.probed.has(serviceOf(prev))) this.refresh(new Set([serviceOf(prev)]));
      }
      return;
    }
    h.onEvent(e);
  }

  /** Pass a slice on unless it is what was passed on last. */
  private emit(key: string, slice: EndpointSlice): void {
    const { origin: _o, ...rest } = slice;
    const text = JSON.stringify(rest);
    if (this.emitted.get(key) === text) return;
    this.emitted.set(key, text);
    this.handler?.onEvent({ kind: "EndpointSlice", type: "upsert", key, object: slice });
  }

  /** Targets for every probed Service; then the slices of `services` passed on again as probed. */
  private refresh(services: Set<string>): void {
    const targets: ProbeTarget[] = [];
    const perEndpoint = new Map<string, { slice: string; keys: string[] | undefined }[]>();
    for (const [key, slice] of this.slices) {
      const svc = this.probed.get(serviceOf(slice));
      if (!svc || slice.addressType === "FQDN") continue;
      const list: { slice: string; keys: string[] | undefined }[] = [];
      for (const ep of slice.endpoints) {
        const address = ep.addresses[0];
        if (address === undefined) {
          list.push({ slice: key, keys: undefined });
          continue;
        }
        const ports = this.portsFor(svc, slice);
        if (ports === undefined) {
          list.push({ slice: key, keys: undefined });
          continue;
        }
        const keys: string[] = [];
        for (const port of ports) {
          const t: ProbeTarget = {
            key: `${svc.namespace}/${svc.name} ${hostPort(address, port)}`,
            namespace: svc.namespace,
            service: svc.name,
            address,
            port,
            probe: svc.readinessProbe,
          };
          targets.push(t);
          keys.push(t.key);
        }
        list.push({ slice: key, keys });
      }
      perEndpoint.set(key, list);
    }
    this.prober.set(targets);
    for (const [key, slice] of this.slices) {
      if (!services.has(serviceOf(slice))) continue;
      const list = perEndpoint.get(key);
      if (!list) {
        this.emit(key, slice);
        continue;
      }
      const endpoints = slice.endpoints.map((ep, i) => {
        const keys = list[i]?.keys;
        if (keys === undefined) return ep; // nothing to probe: as written
        const ready = keys.length > 0 && keys.every((k) => this.prober.get(k)?.ready === true);
        return ready ? ep : { ...ep, ready: false, serving: false };
      });
      this.emit(key, { ...slice, endpoints });
    }
  }

  /**
   * The ports to probe on each endpoint of `slice`: [] when the probe names a port the slice
   * does not have (never ready, as the kubelet fails such a probe); undefined when there is
   * nothing a TCP probe can reach (a UDP-only Service without a probe port: left as written).
   */
  private portsFor(svc: Service & { readinessProbe: ReadinessProbe }, slice: EndpointSlice): number[] | undefined {
    const svcKey = `${svc.namespace}/${svc.name}`;
    const want = svc.readinessProbe.handler.port;
    if (typeof want === "number") return [want];
    if (typeof want === "string") {
      const p = slice.ports.find((x) => x.name === want && x.port !== null && x.protocol === "TCP");
      if (p?.port) return [p.port];
      this.sayOnce(
        `${svcKey} ${slice.name} ${want}`,
        `Service ${svcKey}: kip/readiness-probe port ${JSON.stringify(want)} is not a TCP port of EndpointSlice ${slice.namespace}/${slice.name}: its endpoints stay not ready`,
      );
      return [];
    }
    const out = new Set<number>();
    for (const sp of svc.ports) {
      if (sp.protocol !== "TCP") continue;
      const p = slice.ports.find((x) => (x.name ?? "") === sp.name && x.protocol === "TCP" && x.port !== null);
      if (p?.port) out.add(p.port);
    }
    if (out.size > 0) return [...out].sort((a, b) => a - b);
    this.sayOnce(
      `${svcKey} ${slice.name} none`,
      `Service ${svcKey}: kip/readiness-probe has no TCP port to probe in EndpointSlice ${slice.namespace}/${slice.name} (set the probe's port): its endpoints are not probed`,
    );
    return undefined;
  }

  private sayOnce(key: string, message: string): void {
    if (this.said.has(key)) return;
    this.said.add(key);
    this.handler?.onProblem(message);
  }

  /** Say "synced" once the inner source has, and every endpoint due at once has had its first probe. */
  private maybeSynced(): void {
    if (this.synced || this.innerSynced.size < ALL_KINDS.length) return;
    const waiting = this.prober.list().filter((s) => s.probes === 0 && s.target.probe.initialDelaySeconds === 0);
    if (waiting.length > 0) {
      if (this.firstTimer === undefined) {
        const ms =
          this.o.firstResultsMs ?? Math.max(...waiting.map((s) => s.target.probe.timeoutSeconds)) * 1000 + 1000;
        this.firstTimer = this.o.clock.setTimeout(() => {
          this.firstTimer = undefined;
          this.forwardSynced();
        }, ms);
      }
      return;
    }
    this.forwardSynced();
  }

  private forwardSynced(): void {
    if (this.synced) return;
    this.synced = true;
    if (this.firstTimer !== undefined) this.o.clock.clearTimeout(this.firstTimer);
    this.firstTimer = undefined;
    for (const k of ALL_KINDS) this.handler?.onSynced(k);
  }
}

function labels(t: ProbeTarget): { namespace: string; service: string; endpoint: string } {
  return { namespace: t.namespace, service: t.service, endpoint: hostPort(t.address, t.port) };
}

/**
 * The apiserver source with `kip/readiness-probe` ignored (the kubelet owns readiness in a
 * cluster): the annotation is dropped from every Service, and said once in the log.
 */
export class ProbeAnnotationIgnored implements Source {
  private said = false;

  constructor(
    private readonly inner: Source,
    private readonly log: (level: Level, msg: string, fields?: Record<string, unknown>) => void,
  ) {}

  start(handler: SourceHandler): Promise<void> {
    return this.inner.start({
      ...handler,
      onSynced: (k) => handler.onSynced(k),
      onProblem: (m) => handler.onProblem(m),
      onEvent: (e) => {
        if (e.kind === "Service" && e.type === "upsert" && e.object.readinessProbeAnnotation !== undefined) {
          if (!this.said) {
            this.said = true;
            this.log(
              "info",
              "kip/readiness-probe is ignored with an apiserver: the kubelet's readiness probes own endpoint readiness",
              {
                service: e.key,
              },
            );
          }
          return handler.onEvent({ ...e, object: strip(e.object) });
        }
        handler.onEvent(e);
      },
    });
  }

  stop(): Promise<void> {
    return this.inner.stop();
  }
}

export type { TargetState };
