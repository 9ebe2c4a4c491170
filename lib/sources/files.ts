/**
 * Manifest paths → file texts: files, directories (recursive: .yaml, .yml, .json, in name
 * order) and `-` for standard input.
 *
 * A manifests directory may hold files nobody meant kip to read, or be writable by someone
 * who should not decide what root reads. So every file is opened defensively:
 * - below a directory, a symlink must resolve inside that directory (a link to `/etc/shadow` or
 *   to `/` is refused), and the file actually opened is checked again through /proc;
 * - opened non-blocking and without following a last-moment symlink, then checked to be a
 *   regular file with fstat: a FIFO swapped in between the check and the read cannot freeze
 *   the process;
 * - capped in size, per file and in total.
 */

import type { BigIntStats } from "node:fs";
import {
  closeSync,
  constants,
  fstatSync,
  lstatSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  readSync,
  realpathSync,
  statSync,
} from "node:fs";
import { join, sep } from "node:path";

export interface ManifestFile {
  file: string;
  text: string;
}

/** Caps on what is read (bytes); unset = no cap. */
export interface ReadLimits {
  maxFileBytes?: number;
  maxTotalBytes?: number;
  /**
   * A path named on the command line that is a pipe (`kip render <(kubectl get …)`) is read
   * to its end, as stdin is (default). The daemon sets false: it rescans, and must not block.
   */
  readNamedPipes?: boolean;
}

/** kip sync's defaults: ample for a 30k-Service `kubectl get -o json` dump, small enough for a node. */
export const DEFAULT_MAX_FILE_BYTES = 64 * 1024 * 1024;
export const DEFAULT_MAX_TOTAL_BYTES = 256 * 1024 * 1024;

const EXTENSIONS = [".yaml", ".yml", ".json"];
const OPEN_FLAGS = constants.O_RDONLY | constants.O_NONBLOCK;

const inside = (root: string, p: string) => p === root || p.startsWith(root.endsWith(sep) ? root : root + sep);

/** Why a path cannot be read, for one message. */
class Refused extends Error {}

/**
 * One manifest file found by a listing, not read yet. `sig` changes whenever the file's
 * content may have (device, inode, size, mtime and ctime in ns): a rescan reads only the files
 * whose signature moved. ctime cannot be set back by `touch -d` or `cp -p`, so a rewrite is
 * never hidden behind an old mtime.
 */
export interface ManifestEntry {
  /** As shown in messages (below the path given). */
  file: string;
  /** `file` for stdin (`-`) and for a pipe named on the command line, read whole each time. */
  kind: "file" | "stdin" | "pipe";
  /** The resolved path to open. */
  path: string;
  /** The directory that must contain what is opened (below a directory only). */
  root?: string;
  size: number;
  mtimeMs: number;
  sig: string;
}

/**
 * Every manifest file below `paths`, in name order, with stat signatures and nothing read.
 * With `maxFileBytes` / `maxTotalBytes`, files over the caps (by their stat size) are left out
 * and reported, as reading them would.
 */
export function listManifestFiles(
  paths: readonly string[],
  limits: ReadLimits = {},
): { entries: ManifestEntry[]; errors: string[] } {
  const entries: ManifestEntry[] = [];
  const errors: string[] = [];
  const visited = new Set<string>();
  const maxFile = limits.maxFileBytes ?? Number.POSITIVE_INFINITY;
  const maxTotal = limits.maxTotalBytes ?? Number.POSITIVE_INFINITY;
  let total = 0;
  let overTotal = false;

  const add = (file: string, path: string, st: BigIntStats, root?: string) => {
    if (overTotal) return;
    const size = Number(st.size);
    if (size > maxFile) {
      errors.push(
        `Cannot read ${JSON.stringify(file)}: ${size} bytes is over the ${maxFile}-byte limit per file (skipped)`,
      );
      return;
    }
    if (total + size > maxTotal) {
      overTotal = true;
      errors.push(`Cannot read ${JSON.stringify(file)}: ${overTotalMessage(maxTotal)}`);
      return;
    }
    total += size;
    const sig = `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
    entries.push({ file, kind: "file", path, root, size, mtimeMs: Number(st.mtimeMs), sig });
  };

  /** `dir` is below (or is) `root`, a real path. */
  const walk = (dir: string, real: string, root: string) => {
    if (visited.has(real)) return; // a symlink loop
    visited.add(real);
    let names: string[];
    try {
      names = readdirSync(real).sort();
    } catch (e) {
      errors.push(`Cannot read directory ${JSON.stringify(dir)}: ${(e as Error).message}`);
      return;
    }
    for (const name of names) {
      if (name.startsWith(".")) continue;
      const p = join(dir, name);
      const wanted = EXTENSIONS.some((x) => name.endsWith(x));
      let st: BigIntStats;
      try {
        st = lstatSync(join(real, name), { bigint: true });
      } catch {
        continue; // removed meanwhile
      }
      let target = join(real, name);
      if (st.isSymbolicLink()) {
        try {
          target = realpathSync(target);
          st = statSync(target, { bigint: true });
        } catch {
          continue; // a dangling symlink
        }
        if (!inside(root, target)) {
          if (wanted || st.isDirectory())
            errors.push(`Cannot read ${JSON.stringify(p)}: a symlink to outside ${JSON.stringify(root)} (skipped)`);
          continue;
        }
      }
      if (st.isDirectory()) walk(p, target, root);
      else if (!wanted) continue;
      else if (!st.isFile()) errors.push(`Cannot read ${JSON.stringify(p)}: not a regular file (skipped)`);
      else add(p, target, st, root);
    }
  };

  for (const p of paths) {
    if (p === "-") {
      entries.push({ file: "<stdin>", kind: "stdin", path: p, size: 0, mtimeMs: 0, sig: "" });
      continue;
    }
    let st: BigIntStats;
    let real: string;
    try {
      st = statSync(p, { bigint: true });
      real = realpathSync(p);
    } catch {
      errors.push(`Cannot read ${JSON.stringify(p)}: no such file or directory`);
      continue;
    }
    // A path named on the command line is followed: whoever runs kip chose it.
    if (st.isDirectory()) walk(p, real, real);
    else if (!st.isFile() && limits.readNamedPipes !== false)
      entries.push({ file: p, kind: "pipe", path: p, size: 0, mtimeMs: 0, sig: "" });
    else add(p, real, st);
  }
  return { entries, errors };
}

const overTotalMessage = (maxTotal: number) =>
  `the manifests are over the ${maxTotal}-byte limit in total; this file and the ones after it are skipped`;

/**
 * Open a listed regular file safely and read it: non-blocking, no last-moment symlink below a
 * directory, a regular file by fstat, still inside its root by /proc, at most `maxFileBytes`.
 */
export function readManifestFile(
  e: ManifestEntry,
  maxFileBytes = Number.POSITIVE_INFINITY,
): { text: string; bytes: number } | { error: string } {
  const maxFile = maxFileBytes;
  const root = e.root;
  let fd: number | undefined;
  try {
    // Below a directory the path is already resolved: a symlink now is a swap, refused.
    fd = openSync(e.path, OPEN_FLAGS | (root ? constants.O_NOFOLLOW : 0));
    const st = fstatSync(fd);
    if (!st.isFile()) throw new Refused("not a regular file (skipped)");
    if (root) {
      // A directory on the way swapped for a symlink: what the kernel opened says where we are.
      let opened: string | undefined;
      try {
        opened = readlinkSync(`/proc/self/fd/${fd}`);
      } catch {
        opened = undefined; // no /proc: the checks above stand alone
      }
      if (opened !== undefined && !inside(root, opened))
        throw new Refused(`opened outside ${JSON.stringify(root)} (skipped)`);
    }
    if (st.size > maxFile) throw new Refused(`${st.size} bytes is over the ${maxFile}-byte limit per file (skipped)`);
    // One buffer of the size fstat gave (and a byte more, to see the end), grown only when
    // the file grew meanwhile: a 20 MB dump is read with no chunks to join.
    let buf = Buffer.allocUnsafe(Math.min(Number(st.size) + 1, maxFile + 1));
    let size = 0;
    for (;;) {
      if (size === buf.length) {
        if (size > maxFile) throw new Refused(`over the ${maxFile}-byte limit per file (skipped)`);
        const grown = Buffer.allocUnsafe(Math.min(Math.max(size * 2, 1 << 16), maxFile + 1));
        buf.copy(grown, 0, 0, size);
        buf = grown;
      }
      let n: number;
      try {
        n = readSync(fd, buf, size, buf.length - size, null);
      } catch (err) {
        // A regular file never says EAGAIN; anything that does is not one.
        if ((err as NodeJS.ErrnoException).code === "EAGAIN") throw new Refused("would block (skipped)");
        throw err;
      }
      if (n === 0) break;
      size += n;
    }
    return { text: buf.toString("utf8", 0, size), bytes: size };
  } catch (err) {
    const why =
      err instanceof Refused
        ? err.message
        : (err as NodeJS.ErrnoException).code === "ELOOP"
          ? "it became a symlink (skipped)"
          : (err as Error).message;
    return { error: `Cannot read ${JSON.stringify(e.file)}: ${why}` };
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** Every manifest file below `paths`, read; problems (missing paths, unreadable files) in errors. */
export function readManifestPaths(
  paths: readonly string[],
  readStdin: () => string,
  limits: ReadLimits = {},
): { files: ManifestFile[]; errors: string[] } {
  const maxTotal = limits.maxTotalBytes ?? Number.POSITIVE_INFINITY;
  // The total is counted on what is read (a file may grow after the listing).
  const { entries, errors: listed } = listManifestFiles(paths, { ...limits, maxTotalBytes: undefined });
  const files: ManifestFile[] = [];
  const errors: string[] = [];
  let total = 0;
  let overTotal = false;
  for (const e of entries) {
    if (e.kind === "stdin") {
      files.push({ file: e.file, text: readStdin() });
      continue;
    }
    if (e.kind === "pipe") {
      try {
        files.push({ file: e.file, text: readFileSync(e.path, "utf8") });
      } catch (err) {
        errors.push(`Cannot read ${JSON.stringify(e.file)}: ${(err as Error).message}`);
      }
      continue;
    }
    if (overTotal) continue;
    const r = readManifestFile(e, limits.maxFileBytes);
    if ("error" in r) {
      errors.push(r.error);
      continue;
    }
    const size = r.bytes;
    if (total + size > maxTotal) {
      overTotal = true;
      errors.push(`Cannot read ${JSON.stringify(e.file)}: ${overTotalMessage(maxTotal)}`);
      continue;
    }
    total += size;
    files.push({ file: e.file, text: r.text });
  }
  // (Listing problems first: sizes over the per-file cap, links out, FIFOs; then reads.)
  return { files, errors: [...listed, ...errors] };
}
