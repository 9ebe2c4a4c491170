/** The host a walk runs on: its local addresses and routes, and the routes it lacked. */
import { type IP, type IPFamily, isLoopback, parseIP } from "../model/ip.ts";
import type { HostFacts, Route } from "./types.ts";

export class Host {
  readonly local: IP[];
  readonly missingRoutes = new Set<string>();
  constructor(
    readonly facts: HostFacts,
    readonly family: IPFamily,
  ) {
    this.local = facts.localAddresses.map((a) => parseIP(a.split("/")[0])).filter((x): x is IP => x !== undefined);
  }
  isLocal(addr: string): boolean {
    const ip = parseIP(addr);
    if (!ip) return false;
    return isLoopback(ip) || this.local.some((l) => l.text === ip.text);
  }
  route(addr: string): Route | undefined {
    if (this.isLocal(addr)) return this.facts.routes?.[addr] ?? { dev: "lo", src: addr };
    const r = this.facts.routes?.[addr];
    if (!r) this.missingRoutes.add(addr);
    return r;
  }
}
