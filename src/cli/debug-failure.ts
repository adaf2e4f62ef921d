// debug last-failure: why the last boot step failed. The record is in /run/cvm-unlock/last-failure.json
// while that boot lasts (and after switch-root, since /run moves along); after a VM powered itself off it
// survives only as the "cvm-unlock: failure {…}" line on the serial console or in a journal — pass that
// dump with --from FILE, or let the command ask journalctl for the previous boot.
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { CvmError } from "../errors.js";
import { DEFAULT_RUN_DIR, FAILURE_FILE, parseFailureLine, type FailureRecord } from "../log/failure.js";
import type { Runner } from "./command.js";

function fromJournal(): { record?: FailureRecord; source: string } {
  const r = spawnSync("journalctl", ["-b", "-1", "-o", "cat", "--no-pager", "-g", "cvm-unlock: failure"], { encoding: "utf8", timeout: 10_000 });
  if (r.error || r.status !== 0) return { source: "journalctl (previous boot): not available" };
  return { record: parseFailureLine(r.stdout), source: "journalctl -b -1" };
}

export const debugLastFailure: Runner = async (ctx) => {
  let record: FailureRecord | undefined;
  let source: string;
  const runDir = typeof ctx.flags["run-dir"] === "string" ? ctx.flags["run-dir"] : DEFAULT_RUN_DIR;
  if (typeof ctx.flags.from === "string") {
    let text: string;
    try {
      text = readFileSync(ctx.flags.from, "utf8");
    } catch (e) {
      throw new CvmError("USAGE", `cannot read ${ctx.flags.from} (${(e as NodeJS.ErrnoException).code})`);
    }
    record = parseFailureLine(text);
    source = ctx.flags.from;
  } else if (existsSync(`${runDir}/${FAILURE_FILE}`)) {
    source = `${runDir}/${FAILURE_FILE}`;
    record = parseFailureLine(`cvm-unlock: failure ${readFileSync(source, "utf8").trim()}`);
    if (!record) throw new CvmError("INTERNAL", `${source} is not a failure record`);
  } else {
    ({ record, source } = fromJournal());
  }
  if (!record) return { status: "nothing-to-do", message: `no failure recorded (looked in ${source})`, data: { source } };
  const step = `${record.command} failed at step "${record.step}" after ${record.attempts} attempt(s): ${record.code} (exit ${record.exit})`;
  return { status: "done", message: `${step}: ${record.reason}`, data: { source, record } };
};
