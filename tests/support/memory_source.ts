/**
 * A Source the test drives by hand: it emits the events the test gives it and says "synced"
 * when told, as an informer or a manifests scan would.
 */
import type { Source, SourceEvent, SourceHandler } from "../../lib/sources/source.ts";

export class MemorySource implements Source {
  h?: SourceHandler;
  async start(h: SourceHandler) {
    this.h = h;
  }
  async stop() {
    this.h = undefined;
  }
  emit(e: SourceEvent) {
    this.h?.onEvent(e);
  }
  syncedAll() {
    for (const k of ["Service", "EndpointSlice", "Node"] as const) this.h?.onSynced(k);
  }
}
