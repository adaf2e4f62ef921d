// vitest globalSetup: every test's temporary files go under one directory of this run (TMPDIR, which the
// workers inherit and os.tmpdir() reads), removed when the run ends, pass or fail.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export default function setup(): () => void {
  const root = mkdtempSync(join(tmpdir(), "cvm-unlock-tests-"));
  process.env.TMPDIR = root;
  return () => rmSync(root, { recursive: true, force: true });
}
