/**
 * A manifests directory as a source, for hosts without Kubernetes: the same loader as
 * `kip render`, re-read on file-system events and on a periodic rescan (events alone are not
 * reliable across editors, bind mounts and network file systems). A file that fails to parse
 * is reported and its previous content kept, so one bad edit never tears down the rest.
 *
 * A rescan of an unchanged directory costs a listing and one stat per file: a file is read
 * only when its stat signature moved (or its mtime is too recent to trust, as git's "racily
 * clean" entries), parsed only when its content did, and each file's parsed objects are kept.
 * Merging the files (an object defined in two, Endpoints mirrored only where no EndpointSlice
 * exists) works on those objects, never by parsing again.
 *
 * No file can take the daemon down: files are read defensively (files.ts), each file is
 * loaded on its own inside a try (a loader that throws is one more problem with that file),
 * a scan never throws, and it yields to the event loop between files so /livez keeps
 * answering. A problem is reported once per content of the file, not at every rescan.
 *
 * Memory (10k Services × 10 endpoints in 100 files): the objects themselves (~20k, shared
 * with the change tracker, not copied), one signature and hash per file; no file text is
 * kept, and objects lose `origin` (whose line getter would keep the whole parsed document).
 */
import { createHash } from "node:crypto";
import { type FSWatcher, watch } from "node:fs";
import { type LoadOptions, type LoadResult, loadManifests } from "../model/load.ts";
import { type EndpointSlice, type Node, SERVICE_NAME_LABEL, type Service } from "../model/types.ts";
import {
  DEFAULT_MAX_FILE_BYTES,
  DEFAULT_MAX_TOTAL_BYTES,
  listManifestFiles,
  type ManifestEntry,
  readManifestFile,
} from "./files.ts";
import type { ObjectKind, Source, SourceEvent, SourceHandler } from "./source.ts";

export interface ManifestsSourceOptions {
  paths: string[];
  nodeName: string;
  /** The namespace of objects that name none (`-n`; default `default`). */
  namespace?: string;
  /** The cluster's ranges, enforced: kip is the only API server between a file and the host. */
  policy?: LoadOptions["policy"];
  /** Rescan this often even without file events (ms; 0 = never). */
  rescanMs: number;
  /** Size caps (bytes), per file and for all files together. */
  maxFileBytes?: number;
  maxTotalBytes?: number;
  /** Between files of a scan: give the event loop a turn (tests hold a scan here). */
  yieldFn?: () => Promise<void>;
  /** For scanRunningMs (default Date.now). */
  now?: () => number;
  /** The loader (default loadManifests; tests give one that throws). */
  loader?: typeof loadManifests;
}

type Obj = { kind: ObjectKind; key: string; object: Service | EndpointSlice | Node };
type Text = { file: string; text: string };
/** What one file loaded alone gave. */
type Objects = { services: Service[]; slices: EndpointSlice[]; node?: Node };

interface FileState {
  /** Stat signature when last read (files.ts). */
  sig: string;
  /** False while the mtime is too recent to trust `sig`: the next scan reads the file again. */
  trusted: boolean;
  /** Hash of the text last read. */
  version: string;
  /** Objects of the last version that loaded without errors (undefined: none ever did). */
  loaded?: Objects;
  /** Versions whose problems were reported (the last few). */
  reported: string[];
}

/**
 * A file modified this recently may change again within the file system's timestamp
 * granularity (a jiffy locally, seconds on some network file systems) without its signature
 * moving: read it again until it is older than this.
 */
export const RACY_MS = 2000;

/** Endpoints mirrored by the loader (lib/model/validate_endpoints.ts names them `NAME-mirror-N`). */
const MIRROR_MANAGER = "endpointslicemirroring-controller.k8s.io";
const isMirror = (s: EndpointSlice) =>
  s.labels["endpointslice.kubernetes.io/managed-by"] === MIRROR_MANAGER && /-mirror-\d+(-v6)?$/.test(s.name);

const HELM_CHART = /(^|\/)Chart\.ya?ml$/;
const hash = (s: string) => createHash("sha256").update(s).digest("base64");
const nextTurn = () => new Promise<void>((resolve) => setTimeout(resolve, 0));

export class ManifestsSource implements Source {
  private handler?: SourceHandler;
  private watchers: FSWatcher[] = [];
  private timer?: ReturnType<typeof setInterval>;
  private debounce?: ReturnType<typeof setTimeout>;
  /** Per file (as shown): what was read and loaded. */
  private files = new Map<string, FileState>();
  /** Read problems of the last scan: reported again only after they went away. */
  private readProblems = new Set<string>();
  /** Cross-file problems reported (file, version, other file, its version). */
  private crossReported = new Set<string>();
  private current = new Map<string, Obj>();
  private synced = false;
  private scanning = false;
  private scanStarted?: number;
  private again = false;
  /** Scans finished. */
  scans = 0;
  /** Files read (opened and read whole) since start: an unchanged directory adds none. */
  reads = 0;
  /** Files parsed since start. */
  parses = 0;

  constructor(private readonly o: ManifestsSourceOptions) {}

  async start(handler: SourceHandler): Promise<void> {
    this.handler = handler;
    await this.scan();
    for (const p of this.o.paths) {
      try {
        const w = watch(p, { recursive: true }, () => this.poke());
        w.on("error", () => {});
        this.watchers.push(w);
      } catch (e) {
        handler.onProblem(
          `cannot watch ${JSON.stringify(p)} (${(e as Error).message}); relying on the periodic rescan`,
        );
      }
    }
    if (this.o.rescanMs > 0) this.timer = setInterval(() => void this.scan(), this.o.rescanMs);
  }

  async stop(): Promise<void> {
    for (const w of this.watchers) w.close();
    this.watchers = [];
    if (this.timer) clearInterval(this.timer);
    if (this.debounce) clearTimeout(this.debounce);
    this.timer = undefined;
    this.handler = undefined;
  }

  /** How long the scan in progress has been running (0: none), for /livez. */
  scanRunningMs(): number {
    return this.scanStarted === undefined ? 0 : (this.o.now ?? Date.now)() - this.scanStarted;
  }

  /** A file changed: rescan soon (an editor's burst of events makes one scan). */
  private poke(): void {
    if (this.debounce) clearTimeout(this.debounce);
    this.debounce = setTimeout(() => void this.scan(), 50);
  }

  private loadOptions(): LoadOptions {
    return { nodeName: this.o.nodeName, namespace: this.o.namespace, policy: this.o.policy };
  }

  /** loadManifests, with a throw turned into an error on the first file (the loader should not throw; be sure). */
  private load(texts: Text[]): Pick<LoadResult, "state" | "errors"> {
    try {
      return (this.o.loader ?? loadManifests)(texts, this.loadOptions());
    } catch (e) {
      const message = `cannot be loaded: ${(e as Error)?.message ?? String(e)}`;
      return {
        state: { services: [], endpointSlices: [] },
        errors: texts.map((t) => ({ file: t.file, line: 1, message })),
      };
    }
  }

  /** Read what changed, keep the last good objects of broken files, emit what changed. Never throws. */
  async scan(): Promise<void> {
    const h = this.handler;
    if (!h) return;
    if (this.scanning) {
      this.again = true;
      return;
    }
    this.scanning = true;
    this.scanStarted = (this.o.now ?? Date.now)();
    try {
      await this.scanOnce(h);
    } catch (e) {
      // A bug, not a file: say so, keep the objects as they were, try again at the next scan.
      h.onProblem(`manifests scan failed: ${(e as Error)?.message ?? String(e)}; keeping the previous objects`);
    } finally {
      this.scanning = false;
      this.scanStarted = undefined;
      if (this.again) {
        this.again = false;
        void this.scan();
      }
    }
  }

  private async scanOnce(h: SourceHandler): Promise<void> {
    const maxFile = this.o.maxFileBytes ?? DEFAULT_MAX_FILE_BYTES;
    const listing = listManifestFiles(this.o.paths, {
      maxFileBytes: maxFile,
      maxTotalBytes: this.o.maxTotalBytes ?? DEFAULT_MAX_TOTAL_BYTES,
      readNamedPipes: false,
    });
    const problems = new Set(listing.errors);
    // A Helm chart's files are templates, not manifests (the loader skips them too).
    const charts = listing.entries.filter((e) => HELM_CHART.test(e.file)).map((e) => e.file.replace(HELM_CHART, "$1"));
    const entries = listing.entries.filter((e) => !charts.some((dir) => e.file.startsWith(dir)));
    const yieldFn = this.o.yieldFn ?? nextTurn;
    let changed = false;
    const present = new Set<string>();
    for (const e of entries) {
      const st = this.files.get(e.file);
      if (st?.trusted && st.sig === e.sig) {
        present.add(e.file);
        continue; // unchanged: not read, not parsed
      }
      await yieldFn();
      if (this.handler !== h) return; // stopped meanwhile
      const wall = Date.now();
      const r = readManifestFile(e, maxFile);
      this.reads++;
      if ("error" in r) {
        problems.add(r.error); // unreadable now: as if absent (its objects leave with it)
        continue;
      }
      present.add(e.file);
      const version = hash(r.text);
      const trusted = e.mtimeMs <= wall && wall - e.mtimeMs > RACY_MS;
      if (st && st.version === version) {
        st.sig = e.sig;
        st.trusted = trusted;
        continue; // touched, or rewritten the same
      }
      // A new version of the file: load it alone (its problems are its own), once.
      const alone = this.load([{ file: e.file, text: r.text }]);
      this.parses++;
      const next: FileState = st ?? { sig: "", trusted: false, version: "", reported: [] };
      next.sig = e.sig;
      next.trusted = trusted;
      next.version = version;
      this.files.set(e.file, next);
      if (alone.errors.length === 0) {
        next.loaded = objectsOf(alone.state);
        changed = true;
      } else if (!next.reported.includes(version)) {
        next.reported = [...next.reported.slice(-7), version];
        const what = next.loaded ? "keeping the file's previous content" : "not loaded";
        for (const p of alone.errors) h.onProblem(`${p.file}:${p.line}: ${p.message} (${what})`);
      }
    }
    for (const p of problems) if (!this.readProblems.has(p)) h.onProblem(p);
    this.readProblems = problems;
    // A removed (or now unreadable) file takes its objects with it.
    for (const [file, st] of this.files)
      if (!present.has(file)) {
        this.files.delete(file);
        if (st.loaded) changed = true;
      }
    if (this.synced && !changed) {
      this.scans++;
      return; // nothing changed since the last scan
    }
    const next = this.merge(
      entries.filter((e) => present.has(e.file)),
      h,
    );
    for (const [id, o] of next) {
      // Objects of files that did not change are the very same: no event for them.
      const prev = this.current.get(id);
      if (prev?.object !== o.object)
        h.onEvent({ kind: o.kind, type: "upsert", key: o.key, object: o.object } as SourceEvent);
    }
    for (const [id, o] of this.current) if (!next.has(id)) h.onEvent({ kind: o.kind, type: "delete", key: o.key });
    this.current = next;
    this.scans++;
    if (!this.synced) {
      this.synced = true;
      for (const k of ["Service", "EndpointSlice", "Node"] as const) h.onSynced(k);
    }
  }

  /**
   * Every file's objects as one set, in file order. An object defined in an earlier file
   * makes the later file a problem (reported once per pair of versions) and leaves it out
   * whole, as loading the files together would. Endpoints mirrored in one file give way to
   * an EndpointSlice of the same Service in another.
   */
  private merge(entries: ManifestEntry[], h: SourceHandler): Map<string, Obj> {
    const next = new Map<string, Obj>();
    const owner = new Map<string, string>();
    const reported = new Set<string>();
    for (const e of entries) {
      const st = this.files.get(e.file);
      const objs = st?.loaded;
      if (!st || !objs) continue;
      const ids: [string, Obj][] = [];
      for (const s of objs.services)
        ids.push([`Service ${s.namespace}/${s.name}`, { kind: "Service", key: `${s.namespace}/${s.name}`, object: s }]);
      for (const s of objs.slices)
        ids.push([
          `EndpointSlice ${s.namespace}/${s.name}`,
          { kind: "EndpointSlice", key: `${s.namespace}/${s.name}`, object: s },
        ]);
      if (objs.node) ids.push([`Node ${objs.node.name}`, { kind: "Node", key: objs.node.name, object: objs.node }]);
      const clash = ids.find(([id]) => owner.has(id));
      if (clash) {
        const other = owner.get(clash[0]) as string;
        const key = `${e.file}\0${st.version}\0${other}\0${this.files.get(other)?.version}`;
        reported.add(key);
        if (!this.crossReported.has(key)) this.reportClash(e, other, clash[0], h);
        continue;
      }
      for (const [id, o] of ids) {
        owner.set(id, e.file);
        next.set(id, o);
      }
    }
    this.crossReported = reported;
    const withSlices = new Set<string>();
    for (const o of next.values())
      if (o.kind === "EndpointSlice" && !isMirror(o.object as EndpointSlice)) withSlices.add(sliceService(o));
    for (const [id, o] of next)
      if (o.kind === "EndpointSlice" && isMirror(o.object as EndpointSlice) && withSlices.has(sliceService(o)))
        next.delete(id);
    return next;
  }

  /** The loader's own words for a clash (file:line of both), from the two files read again: rare. */
  private reportClash(e: ManifestEntry, other: string, id: string, h: SourceHandler): void {
    const maxFile = this.o.maxFileBytes ?? DEFAULT_MAX_FILE_BYTES;
    const otherEntry = listManifestFiles([other], { readNamedPipes: false }).entries[0];
    const a = otherEntry ? readManifestFile({ ...otherEntry, file: other }, maxFile) : undefined;
    const b = readManifestFile(e, maxFile);
    const errors =
      a && "text" in a && "text" in b
        ? this.load([
            { file: other, text: a.text },
            { file: e.file, text: b.text },
          ]).errors.filter((p) => p.file === e.file)
        : [];
    if (errors.length === 0)
      h.onProblem(`${e.file}: ${id} is defined twice (first in ${other}); the file is not loaded`);
    for (const p of errors) h.onProblem(`${p.file}:${p.line}: ${p.message}; the file is not loaded`);
  }
}

const sliceService = (o: Obj) => {
  const s = o.object as EndpointSlice;
  return `${s.namespace}/${s.labels[SERVICE_NAME_LABEL] ?? ""}`;
};

/** A file's objects, without `origin` (its line getter holds the whole parsed document). */
function objectsOf(state: LoadResult["state"]): Objects {
  const strip = <T extends { origin?: unknown }>(o: T): T => {
    const { origin: _o, ...rest } = o;
    return rest as T;
  };
  return {
    services: state.services.map(strip),
    slices: state.endpointSlices.map(strip),
    node: state.node,
  };
}
