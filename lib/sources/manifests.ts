/**
 * A manifests directory as a source, for hosts without Kubernetes: the same loader as
 * `kip render`, re-read on file-system events and on a periodic rescan (events alone are not
 * reliable across editors, bind mounts and network file systems). A file that fails to parse
 * is reported and its previous content kept, so one bad edit never tears down the rest.
 */
import { type FSWatcher, watch } from "node:fs";
import { loadManifests } from "../model/load.ts";
import type { EndpointSlice, Node, Service } from "../model/types.ts";
import { readManifestPaths } from "./files.ts";
import type { ObjectKind, Source, SourceEvent, SourceHandler } from "./source.ts";

export interface ManifestsSourceOptions {
  paths: string[];
  nodeName: string;
  /** Rescan this often even without file events (ms; 0 = never). */
  rescanMs: number;
}

type Obj = { kind: ObjectKind; key: string; object: Service | EndpointSlice | Node; fp: string };

export class ManifestsSource implements Source {
  private handler?: SourceHandler;
  private watchers: FSWatcher[] = [];
  private timer?: ReturnType<typeof setInterval>;
  private debounce?: ReturnType<typeof setTimeout>;
  /** Last good text of every file, so a broken edit keeps the previous objects. */
  private good = new Map<string, string>();
  private current = new Map<string, Obj>();
  private synced = false;
  private scanning = false;
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

  /** A file changed: rescan soon (an editor's burst of events makes one scan). */
  private poke(): void {
    if (this.debounce) clearTimeout(this.debounce);
    this.debounce = setTimeout(() => void this.scan(), 50);
  }

  /** Read everything, keep the last good text of broken files, emit what changed. */
  async scan(): Promise<void> {
    const h = this.handler;
    if (!h) return;
    if (this.scanning) {
      this.again = true;
      return;
    }
    this.scanning = true;
    try {
      const { files, errors } = readManifestPaths(this.o.paths, () => "");
      for (const e of errors) h.onProblem(e);
      const seen = new Set(files.map((f) => f.file));
      // A removed file takes its objects with it; a broken one keeps its last good text.
      for (const f of [...this.good.keys()]) if (!seen.has(f)) this.good.delete(f);
      const texts: { file: string; text: string }[] = [];
      for (const f of files) {
        const alone = loadManifests([f], { nodeName: this.o.nodeName });
        if (alone.errors.length === 0) {
          this.good.set(f.file, f.text);
          texts.push(f);
          continue;
        }
        for (const p of alone.errors)
          h.onProblem(`${p.file}:${p.line}: ${p.message} (keeping the file's previous content)`);
        const prev = this.good.get(f.file);
        if (prev !== undefined) texts.push({ file: f.file, text: prev });
      }
      let loaded = loadManifests(texts, { nodeName: this.o.nodeName });
      // Errors across files (an object defined in two): drop the files named, keep the rest.
      for (let round = 0; loaded.errors.length > 0 && round < 5; round++) {
        const bad = new Set(loaded.errors.map((e) => e.file));
        for (const p of loaded.errors) h.onProblem(`${p.file}:${p.line}: ${p.message}`);
        loaded = loadManifests(
          texts.filter((t) => !bad.has(t.file)),
          { nodeName: this.o.nodeName },
        );
      }
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
    } finally {
      this.scanning = false;
      if (this.again) {
        this.again = false;
        void this.scan();
      }
    }
  }
}
