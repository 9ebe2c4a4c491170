/**
 * One interface for where cluster objects come from: the apiserver (informers) or a manifests
 * directory. Sources hand over validated model objects only (lib/model/validate*.ts), so the
 * sync engine never sees an unchecked value; a bad object is reported and skipped.
 */
import type { EndpointSlice, Node, Service } from "../model/types.ts";

export type ObjectKind = "Service" | "EndpointSlice" | "Node";

export type SourceEvent =
  | { kind: "Service"; type: "upsert"; key: string; object: Service }
  | { kind: "EndpointSlice"; type: "upsert"; key: string; object: EndpointSlice }
  | { kind: "Node"; type: "upsert"; key: string; object: Node }
  | { kind: ObjectKind; type: "delete"; key: string };

export interface SourceHandler {
  /** An object was added or changed (upsert) or removed (delete). `key` is `ns/name` or, for a Node, `name`. */
  onEvent(e: SourceEvent): void;
  /** The initial list of `kind` is complete: the engine may sync once every kind is synced. */
  onSynced(kind: ObjectKind): void;
  /** Something to log: a bad object skipped, a connection lost and retried, a file that failed to parse. */
  onProblem(message: string): void;
}

export interface Source {
  /** Starts delivering events; resolves once listening (not necessarily synced). */
  start(handler: SourceHandler): Promise<void>;
  /** Stops delivering events and releases watches, timers and sockets. */
  stop(): Promise<void>;
}

/** The informer label selector of spec §1.1, for Services and EndpointSlices alike. */
export const PROXY_LABEL_SELECTOR = "!service.kubernetes.io/service-proxy-name,!service.kubernetes.io/headless";
