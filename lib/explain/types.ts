/**
 * The shapes of an explanation (what `explain` returns) and of the walk inside it: the packet,
 * the host facts, the events, outcomes and tree; the walker's state, branches and compiled
 * rules.
 */
import type { IPFamily } from "../model/ip.ts";
import type { Host } from "./host.ts";

export type Proto = "tcp" | "udp" | "sctp";
export type From = "pod" | "node" | "external";

export interface Packet {
  proto: Proto;
  src: string;
  dst: string;
  dport: number;
  /** The client's port; unknown (undefined) unless given, so `--sport` matches are reported. */
  sport?: number;
  from: From;
  /** The interface the packet arrives on (pod and external traffic); undefined = not known. */
  inInterface?: string;
}

/** What `ip route get DST` says: the interface a packet to DST leaves by, and its source address. */
export interface Route {
  dev: string;
  src?: string;
}

export interface HostFacts {
  /** The node's own addresses (type LOCAL for `addrtype`). Loopback ranges are always local. */
  localAddresses: string[];
  /** Routes by destination address; missing ones make `-o` matches unknown. */
  routes?: Record<string, Route>;
  /**
   * The pod interface (bridge name, or `prefix+`) when known: traffic from outside does not
   * arrive on it, so `-i` matches against it are decided even without --in-interface.
   */
  podInterface?: string;
}

export interface WalkOptions {
  /** `recent` lists that already hold this client (ClientIP affinity after a first packet). */
  recent?: string[];
}

export type Verdict = "DNAT" | "REJECT" | "DROP" | "ACCEPT" | "NONE" | "UNKNOWN";

/** One line of the walk. */
export type Event =
  | { kind: "hook"; table: string; chain: string; policy: string }
  | {
      kind: "rule";
      table: string;
      chain: string;
      /** The rule as written in the dump (`-A CHAIN …`). */
      rule: string;
      /** Line in the dump; 0 for rules kip added (jump rules) or rendered itself. */
      line: number;
      /** Why each match held; empty when the rule matches every packet. */
      why: string[];
      /** What the target did. */
      action: string;
      /** For `-m statistic`: the chance this rule is taken when the packet reaches it. */
      chance?: number;
    }
  | { kind: "route"; local: boolean; text: string }
  | { kind: "policy"; table: string; chain: string; policy: string }
  | { kind: "unknown"; table: string; chain: string; rule: string; line: number; matches: string[]; text: string };

export interface TreeNode {
  events: Event[];
  /** Where the walk splits (`-m statistic`); each child with its overall probability. */
  children: { probability: number; node: TreeNode }[];
  /** Index into `outcomes` when a path ends here. */
  outcome?: number;
}

export interface Masquerade {
  how: "MASQUERADE" | "SNAT";
  /** The new source address, when known (SNAT, or the route's source for MASQUERADE). */
  to?: string;
  /** The interface the packet leaves by, when known. */
  dev?: string;
  randomFully: boolean;
  table: string;
  chain: string;
  rule: string;
}

export interface Outcome {
  probability: number;
  verdict: Verdict;
  /** `ip:port` or `[ip]:port` after DNAT. */
  dnat?: string;
  /** The KUBE-SEP chain that did the DNAT. */
  endpointChain?: string;
  /** `ns/name[:port]`, from the comment of the kube-proxy rule that matched the destination. */
  service?: string;
  masquerade?: Masquerade;
  /** The rule (or policy) that decided a REJECT/DROP/ACCEPT/UNKNOWN. */
  decidedBy?: { table: string; chain: string; rule: string; line: number };
  rejectWith?: string;
  /** Where the packet goes after the tables: the final destination and whether it is local. */
  delivered?: { dst: string; dport: number; local: boolean };
  /** `table:CHAIN` entered, in order. */
  chains: string[];
  /** ClientIP affinity: the `recent` lists this packet was recorded in, and the next connection. */
  affinity?: {
    lists: string[];
    seconds?: number;
    next: { probability: number; verdict: Verdict; dnat?: string }[];
  };
}

export interface UnknownMatch {
  table: string;
  chain: string;
  rule: string;
  line: number;
  matches: string[];
}

export interface Explanation {
  family: IPFamily;
  packet: Packet;
  tree: TreeNode;
  /** Every way the walk ended, equal results merged, most likely first. */
  outcomes: Outcome[];
  /** Paths (same order as `paths` in the tree): each end with its probability. */
  paths: Outcome[];
  masquerade: "always" | "never" | "sometimes";
  verdict: string;
  unknown: UnknownMatch[];
  /** Destinations the walk needed a route for and did not have. */
  missingRoutes: string[];
  notes: string[];
}

// ---------------------------------------------------------------------------------------
// Inside the walk

/** What a match sees: the packet, the walk's state at this rule, the host and the hook. */
export interface Ctx {
  pkt: Packet;
  st: State;
  host: Host;
  /** Input/output interface names; "" when the hook has none, undefined when unknown. */
  iif: string | undefined;
  oif: string | undefined;
  table: string;
}

/** The part of Ctx one hook fixes. */
export type HookCtx = Omit<Ctx, "st">;

export type Tri = boolean | undefined;
export interface CondResult {
  ok: Tri;
  /** Why it held; for an unknown result, what kip could not tell. */
  why?: string;
  /** `recent --seconds` of a list that held the client. */
  seconds?: number;
}
export type Cond = (c: Ctx) => CondResult;

/** A rule turned into what the walker evaluates. */
export interface Compiled {
  conds: Cond[];
  /** Matches kip does not evaluate (module or option), as written. */
  unknown: string[];
  /** `-m statistic --mode random` chances (the kernel's rounding). */
  chances: number[];
  target?: string;
  goto: boolean;
  targetOpts: Map<string, string[]>;
  /** `-m recent --set` lists. */
  recentSet: string[];
  /** `-m comment --comment`, when there is one. */
  comment?: string;
}

export interface State {
  src: string;
  dst: string;
  dport: number;
  mark: number;
  ctDnat: boolean;
  ctSnat: boolean;
  dnat?: string;
  endpointChain?: string;
  service?: string;
  masquerade?: Masquerade;
  filterAccept: boolean;
  recentKnown: string[];
  recentSet: string[];
  affinitySeconds?: number;
  chains: string[];
  decidedBy?: Outcome["decidedBy"];
  rejectWith?: string;
}

/** A persistent list of events: branches share their common past. */
export interface Cell {
  ev: Event;
  up?: Cell;
}

export type End = "continue" | "return" | "accept" | "drop" | "reject" | "unknown";

/** One way the walk can go from here, with its probability. */
export interface Branch {
  p: number;
  st: State;
  end: End;
  trail?: Cell;
}
