/**
 * A manifests directory as a source, for hosts without Kubernetes: the same loader as
 * `kip render`, re-read on file-system events and on a periodic rescan (events alone are not
 * reliable across editors, bind mounts and network file systems). A file that fails to parse
 * is reported and its previous content kept, so one bad edit never tears down the rest.
 *
 * No file can take the daemon down: files are read defensively (files.ts), each file is
 * loaded on its own inside a try (a loader that throws is one more problem with that file),
 * a scan never throws, and it yields to the event loop between files so /livez keeps
 * answering. A problem is reported once per version of the file, not at every rescan.
 */
import { createHash } from "node:crypto";
import { type FSWatcher, watch } from "node:fs";
import { type LoadOptions, type LoadResult, loadManifests } from "../model/load.ts";
import type { EndpointSlice, Node, Service } from "../model/types.ts";
import { DEFAULT_MAX_FILE_BYTES, DEFAULT_MAX_TOTAL_BYTES, readManifestPaths } from "./files.ts";
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

type Obj = { kind: ObjectKind; key: string; object: Service | EndpointSlice | Node; fp: string };
type Text = { file: string; text: string };

const hash = (s: string) => createHash("sha256").update(s).digest("base64");
const nextTurn = () => new Promise<void>((resolve) => setTimeout(resolve, 0));

export class ManifestsSource implements Source {
  private handler?: SourceHandler;
  private watchers: FSWatcher[] = [];
  private timer?: ReturnType<typeof setInterval>;
  private debounce?: ReturnType<typeof setTimeout>;
  /** Last good text of every file, so a broken edit keeps the previous objects. */
  private good = new Map<string, string>();
  /** The last text seen per file (as a hash) and whether it loaded alone without errors. */
  private checked = new Map<string, { hash: string; ok: boolean }>();
  /** What the last scan loaded (file → text hash): an unchanged set is not loaded again. */
  private lastInput = "";
  /** Read problems of the last scan: reported again only after they went away. */
  private readProblems = new Set<string>();
  private current = new Map<string, Obj>();
  private synced = false;
  private scanning = false;
  private scanStarted?: number;
  private again = false;
  scans = 0;

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

  /** Read everything, keep the last good text of broken files, emit what changed. Never throws. */
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
    const { files, errors } = readManifestPaths(this.o.paths, () => "", {
      maxFileBytes: this.o.maxFileBytes ?? DEFAULT_MAX_FILE_BYTES,
      maxTotalBytes: this.o.maxTotalBytes ?? DEFAULT_MAX_TOTAL_BYTES,
      readNamedPipes: false,
    });
    const readProblems = new Set(errors);
    for (const e of errors) if (!this.readProblems.has(e)) h.onProblem(e);
    this.readProblems = readProblems;
    const seen = new Set(files.map((f) => f.file));
    // A removed file takes its objects with it; a broken one keeps its last good text.
    for (const f of [...this.good.keys()]) if (!seen.has(f)) this.good.delete(f);
    for (const f of [...this.checked.keys()]) if (!seen.has(f)) this.checked.delete(f);
    const texts: Text[] = [];
    const versions = new Map<string, string>();
    const yieldFn = this.o.yieldFn ?? nextTurn;
    for (const f of files) {
      const version = hash(f.text);
      versions.set(f.file, version);
      const before = this.checked.get(f.file);
      if (before?.hash !== version) {
        // A new version of the file: load it alone (its problems are its own), once.
        await yieldFn();
        if (this.handler !== h) return; // stopped meanwhile
        const alone = this.load([f]);
        this.checked.set(f.file, { hash: version, ok: alone.errors.length === 0 });
        if (alone.errors.length === 0) this.good.set(f.file, f.text);
        else
          for (const p of alone.errors)
            h.onProblem(`${p.file}:${p.line}: ${p.message} (keeping the file's previous content)`);
      }
      if (this.checked.get(f.file)?.ok) texts.push(f);
      else {
        const prev = this.good.get(f.file);
        if (prev !== undefined) texts.push({ file: f.file, text: prev });
        versions.set(f.file, `previous ${prev === undefined ? "" : hash(prev)}`);
      }
    }
    const input = texts.map((t) => `${t.file}\0${versions.get(t.file)}`).join("\n");
    if (this.synced && input === this.lastInput) {
      this.scans++;
      return; // nothing changed since the last scan
    }
    await yieldFn();
    if (this.handler !== h) return;
    let loaded = this.load(texts);
    // Errors across files (an object defined in two): drop the files named, keep the rest.
    for (let round = 0; loaded.errors.length > 0 && round < 5; round++) {
      const bad = new Set(loaded.errors.map((e) => e.file));
      for (const p of loaded.errors) h.onProblem(`${p.file}:${p.line}: ${p.message}`);
      loaded = this.load(texts.filter((t) => !bad.has(t.file)));
    }
    this.lastInput = input;
    const next = new Map<string, Obj>();
    const put = (kind: ObjectKind, key: string, object: Service | EndpointSlice | Node) => {
      const { origin: _o, ...rest } = object as Service;
      next.set(`${kind} ${key}`, { kind, key, object, fp: JSON.stringify(rest) });
    };
    for (const s of loaded.state.services) put("Service", `${s.namespace}/${s.name}`, s);
    for (const s of loaded.state.endpointSlices) put("EndpointSlice", `${s.namespace}/${s.name}`, s);
    if (loaded.state.node) put("Node", loaded.state.node.name, loaded.state.node);
    for (const [id, o] of next) {
      const prev = this.current.get(id);
      if (prev?.fp !== o.fp) h.onEvent({ kind: o.kind, type: "upsert", key: o.key, object: o.object } as SourceEvent);
    }
    for (const [id, o] of this.current) if (!next.has(id)) h.onEvent({ kind: o.kind, type: "delete", key: o.key });
    this.current = next;
    this.scans++;
    if (!this.synced) {
      this.synced = true;
      for (const k of ["Service", "EndpointSlice", "Node"] as const) h.onSynced(k);
    }
  }
}
