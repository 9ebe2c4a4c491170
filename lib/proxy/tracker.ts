/**
 * Change tracking (spec §8.1): the cluster objects as the sources last delivered them, and
 * which Services changed since the last sync. Only what kube-proxy reads counts as a change:
 * an edit of an unread label or annotation changes nothing.
 */
import { createHash } from "node:crypto";
import type { ClusterState, EndpointSlice, Node, Service } from "../model/types.ts";
import { HEADLESS_LABEL, SERVICE_NAME_LABEL, SERVICE_PROXY_NAME_LABEL, ZONE_LABEL } from "../model/types.ts";

/**
 * A fingerprint is the SHA-256 of the JSON of what the engine reads, not the JSON itself: at
 * 10k Services × 10 endpoints the JSON texts held 13 MB of the daemon's heap, the digests
 * (44 characters each) under 2 MB.
 */
const digest = (json: string) => createHash("sha256").update(json).digest("base64");

/** What of a Service the engine reads: everything but labels (only two of which matter) and origin. */
function serviceFingerprint(s: Service): string {
  const { labels, origin: _origin, ...rest } = s;
  return digest(JSON.stringify([rest, SERVICE_PROXY_NAME_LABEL in labels, HEADLESS_LABEL in labels]));
}

function sliceFingerprint(s: EndpointSlice): string {
  const { labels, origin: _origin, ...rest } = s;
  return digest(
    JSON.stringify([
      rest,
      labels[SERVICE_NAME_LABEL] ?? "",
      SERVICE_PROXY_NAME_LABEL in labels,
      HEADLESS_LABEL in labels,
    ]),
  );
}

const sliceService = (s: EndpointSlice) => `${s.namespace}/${s.labels[SERVICE_NAME_LABEL] ?? ""}`;

export class ChangeTracker {
  private services = new Map<string, { object: Service; fp: string }>();
  private slices = new Map<string, { object: EndpointSlice; fp: string }>();
  private node?: Node;
  private changed = new Set<string>();
  /** Set when something forces a full sync (the node's zone changed). */
  needFullSync = false;
  /** Counters for metrics (spec §12). */
  serviceChanges = 0;
  endpointChanges = 0;

  constructor(readonly nodeName: string) {}

  upsertService(key: string, s: Service): boolean {
    const fp = serviceFingerprint(s);
    const prev = this.services.get(key);
    this.services.set(key, { object: s, fp });
    if (prev?.fp === fp) return false;
    this.changed.add(key);
    this.serviceChanges++;
    return true;
  }

  deleteService(key: string): boolean {
    if (!this.services.delete(key)) return false;
    this.changed.add(key);
    this.serviceChanges++;
    return true;
  }

  upsertSlice(key: string, s: EndpointSlice): boolean {
    const fp = sliceFingerprint(s);
    const prev = this.slices.get(key);
    this.slices.set(key, { object: s, fp });
    if (prev?.fp === fp) return false;
    // A slice that moved to another Service changes both.
    if (prev) this.changed.add(sliceService(prev.object));
    this.changed.add(sliceService(s));
    this.endpointChanges++;
    return true;
  }

  deleteSlice(key: string): boolean {
    const prev = this.slices.get(key);
    if (!prev) return false;
    this.slices.delete(key);
    this.changed.add(sliceService(prev.object));
    this.endpointChanges++;
    return true;
  }

  /** This node's Node object: a zone change forces a full sync; other fields are read each sync. */
  setNode(node: Node | undefined): boolean {
    const before = this.node;
    this.node = node;
    const zone = (n?: Node) => n?.labels[ZONE_LABEL] ?? "";
    const changed = JSON.stringify(before ?? null) !== JSON.stringify(node ?? null);
    if (zone(before) !== zone(node)) this.needFullSync = true;
    else if (changed) this.needFullSync = true; // pod CIDRs or addresses: rules may change everywhere
    return changed;
  }

  /** Services changed since the last take(); the set is cleared. */
  takeChanged(): Set<string> {
    const out = this.changed;
    this.changed = new Set();
    return out;
  }

  /** Whether anything is waiting for a sync. */
  get pending(): boolean {
    return this.changed.size > 0 || this.needFullSync;
  }

  get pendingCount(): number {
    return this.changed.size;
  }

  state(): ClusterState {
    return {
      services: [...this.services.values()].map((v) => v.object),
      endpointSlices: [...this.slices.values()].map((v) => v.object),
      node: this.node,
    };
  }
}
