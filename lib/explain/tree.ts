/**
 * The walk's paths as a tree: the events they share once, a split where `-m statistic` (or a
 * later split) sends them different ways, each side with its probability.
 */
import type { Cell, Outcome, TreeNode } from "./types.ts";

interface Trie {
  cell?: Cell;
  kids: Trie[];
  outcome?: number;
  p: number;
}

export function buildTree(paths: { outcome: Outcome; trail?: Cell }[]): TreeNode {
  const root: Trie = { kids: [], p: 0 };
  const nodes = new Map<Cell, Trie>();
  paths.forEach((path, idx) => {
    const cells: Cell[] = [];
    for (let c = path.trail; c; c = c.up) cells.push(c);
    cells.reverse();
    let cur = root;
    cur.p += path.outcome.probability;
    for (const c of cells) {
      let n = nodes.get(c);
      if (!n) {
        n = { cell: c, kids: [], p: 0 };
        nodes.set(c, n);
        cur.kids.push(n);
      }
      n.p += path.outcome.probability;
      cur = n;
    }
    cur.outcome = idx;
  });
  const convert = (start: Trie): TreeNode => {
    const node: TreeNode = { events: [], children: [] };
    let cur = start;
    for (;;) {
      if (cur.cell) node.events.push(cur.cell.ev);
      if (cur.outcome !== undefined || cur.kids.length !== 1) break;
      cur = cur.kids[0];
    }
    if (cur.outcome !== undefined) node.outcome = cur.outcome;
    const children: TreeNode["children"] = [];
    const lift = (t: Trie) => {
      const child = convert(t);
      // Nothing happened on this side of a split but another split: one flat N-way split.
      if (child.events.length === 0 && child.outcome === undefined && child.children.length > 0)
        children.push(...child.children);
      else children.push({ probability: t.p, node: child });
    };
    for (const k of cur.kids) lift(k);
    node.children = children;
    return node;
  };
  return convert(root);
}
