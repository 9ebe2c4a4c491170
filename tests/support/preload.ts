/**
 * Runs once before any test (bunfig.toml): builds dist/kip if it is missing or older than the
 * sources, so no test spends its own time budget on a build.
 */
import { ensureBinary } from "./binary.ts";

ensureBinary();
