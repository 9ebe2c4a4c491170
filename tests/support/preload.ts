/**
 * Runs once before any test (bunfig.toml): builds dist/kip if it is missing or older than the
 * sources, so no test spends its own time budget on a build. After the last test (whatever
 * failed or timed out: `bun test` emits no process "exit"), removes the temp directories and
 * network namespaces the tests left.
 */
import { afterAll } from "bun:test";
import { ensureBinary } from "./binary.ts";
import { deleteLiveNetns } from "./netns.ts";
import { removeTempDirs } from "./tempdir.ts";

ensureBinary();

afterAll(() => {
  removeTempDirs();
  deleteLiveNetns();
});
