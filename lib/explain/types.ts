/**
 * The shapes of an explanation (what `explain` returns) and of the walk inside it: the packet,
 * the host facts, the events, outcomes and tree; the walker's state, branches and compiled
 * rules.
 */
import type { IPFamily } from "../model/ip.ts";
import type { Host } from "./host.ts";

/** The packet's protocol, as iptables' `-p` names it. */
export type Proto = "tcp" | "udp" | "sctp";
/**
 * Where the packet starts: a pod on this node (arrives on the pod interface, nat PREROUTING), the node
 * itself (nat OUTPUT), or outside the node (arrives on an outside interface, nat PREROUTING).
 */
export type From = "pod" | "node" | "external";

/** The first packet of a new connection: what `explain` walks through the rules. */
export interface Packet {
  /** Protocol. */
  proto: Proto;
  /** Source address (a pod's, the node's, or an outside client's). */
  src: string;
  /** Destination address: a cluster IP, node IP, external or load-balancer IP… */
  dst: string;
  /** Destination port. */
  dport: number;
  /** The client's port; unknown (undefined) unless given, so `--sport` matches are reported. */
  sport?: number;
  /** Where the packet starts (decides the hooks it passes). */
  from: From;
  /** The interface the packet arrives on (pod and external traffic); undefined = not known. */
  inInterface?: string;
}

/** What `ip route get DST` says: the interface a packet to DST leaves by, and its source address. */
export interface Route {
  /** The interface the packet leaves by (`lo` for the node's own addresses). */
  dev: string;
  /** The source address the kernel picks for it (what MASQUERADE rewrites to). */
  src?: string;
}

/** What the rules refer to on the host: its addresses (`addrtype`), its routes (`-o`) and pod interface (`-i`). */
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

/** What the walk knows about earlier packets of the same client. */
export interface WalkOptions {
  /** `recent` lists that already hold this client (ClientIP affinity after a first packet). */
  recent?: string[];
}

/**
 * How one path through the rules ends: translated (DNAT), refused (REJECT, DROP), accepted by a rule
 * (ACCEPT), passed on untouched (NONE), or decided by a match kip cannot evaluate (UNKNOWN).
 */
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

/** The walk as a tree: a stretch of events, then a split (`-m statistic`) or the end of a path. */
export interface TreeNode {
  /** What happened on this stretch, in order. */
  events: Event[];
  /** Where the walk splits (`-m statistic`); each child with its overall probability. */
  children: { probability: number; node: TreeNode }[];
  /** Index into the explanation's `paths` when a path ends here. */
  outcome?: number;
}

/** Source NAT on the way out: which rule did it, and how. */
export interface Masquerade {
  /** MASQUERADE (the outgoing interface's address) or SNAT (a fixed address). */
  how: "MASQUERADE" | "SNAT";
  /** The new source address, when known (SNAT, or the route's source for MASQUERADE). */
  to?: string;
  /** The interface the packet leaves by, when known. */
  dev?: string;
  /** `--random-fully` was given (random source ports). */
  randomFully: boolean;
  /** The table of the rule that did it. */
  table: string;
  /** Its chain. */
  chain: string;
  /** The rule, as written in the dump. */
  rule: string;
}

/** One way the packet's walk can end, with its probability. */
export interface Outcome {
  /** 0–1: the share of new connections that end this way. */
  probability: number;
  /** How the walk ended. */
  verdict: Verdict;
  /** `ip:port` or `[ip]:port` after DNAT. */
  dnat?: string;
  /** The KUBE-SEP chain that did the DNAT. */
  endpointChain?: string;
  /** `ns/name[:port]`, from the comment of the kube-proxy rule that matched the destination. */
  service?: string;
  /** Source NAT on the way out, when the packet is masqueraded. */
  masquerade?: Masquerade;
  /** The rule (or policy) that decided a REJECT/DROP/ACCEPT/UNKNOWN. */
  decidedBy?: { table: string; chain: string; rule: string; line: number };
  /** The ICMP error a REJECT sends (`--reject-with`, e.g. `icmp-port-unreachable`). */
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

/**
 * A rule the walk reached whose matches kip cannot evaluate (a module or option it does not
 * read, an interface it does not know). A path that would be decided by such a rule ends UNKNOWN.
 */
export interface UnknownMatch {
  /** The rule's table. */
  table: string;
  /** Its chain. */
  chain: string;
  /** The rule, as written in the dump. */
  rule: string;
  /** Its line in the dump; 0 for rules kip added (jump rules) or rendered itself. */
  line: number;
  /** What kip could not evaluate: the matches as written, or why an interface is unknown. */
  matches: string[];
}

/** What `explain` found: every way the packet's first connection can go, and why. */
export interface Explanation {
  /** The family of the packet's addresses (and so of the rules walked). */
  family: IPFamily;
  /** The packet walked. */
  packet: Packet;
  /** The walk, rule by rule, split where the rules split. */
  tree: TreeNode;
  /** Every way the walk ended, equal results merged, most likely first. */
  outcomes: Outcome[];
  /** Paths (same order as `paths` in the tree): each end with its probability. */
  paths: Outcome[];
  /** Whether the packets that get through are masqueraded: all, none, or some of the paths. */
  masquerade: "always" | "never" | "sometimes";
  /** One sentence, e.g. `DNAT to one of 2 endpoints of default/web`. */
  verdict: string;
  /** Rules whose matches kip could not evaluate. */
  unknown: UnknownMatch[];
  /** Destinations the walk needed a route for and did not have. */
  missingRoutes: string[];
  /** Things worth knowing that the walk does not show (conntrack, for one). */
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
