// The failure record: what failed, where, why, after how many attempts and how long — never a secret.
// Written to <run-dir>/last-failure.json (0600) and printed as one line "cvm-unlock: failure {…}" on
// stderr and kmsg, so it survives on the serial console after the VM powers off.
import { writeFileReplacing } from "../native/files.js";
import { ERROR_CODES, type CvmError } from "../errors.js";
import { KMSG_MAX, utf8Length, type Logger } from "./logger.js";
import { scrubSecrets } from "./secret.js";

export const DEFAULT_RUN_DIR = "/run/cvm-unlock";
export const FAILURE_FILE = "last-failure.json";
export const FAILURE_PREFIX = "cvm-unlock: failure ";

export interface FailureRecord {
  v: 1;
  time: string;
  version: string;
  command: string;
  step: string;
  code: string;
  exit: number;
  reason: string;
  attempts: number;
  timings_ms: Record<string, number>;
  details: Record<string, string | number | boolean>;
}

export function makeFailureRecord(
  err: CvmError,
  ctx: { version: string; command: string; step: string; attempts: number; timings_ms: Record<string, number> },
): FailureRecord {
  return {
    v: 1,
    time: new Date().toISOString(),
    version: ctx.version,
    command: ctx.command,
    step: ctx.step,
    code: err.code,
    exit: ERROR_CODES[err.code].exit,
    reason: scrubSecrets(err.message).slice(0, 400),
    attempts: ctx.attempts,
    timings_ms: ctx.timings_ms,
    details: err.details,
  };
}

/** The record as one console line that fits one kmsg record, so it parses back from a serial log: when the whole
 *  record is longer, the step timings go first (all but the total), then the reason is shortened. The file keeps
 *  the whole record. */
export function consoleLine(record: FailureRecord): string {
  const fits = (r: FailureRecord) => {
    const line = FAILURE_PREFIX + scrubSecrets(JSON.stringify(r));
    return utf8Length(line) + 4 <= KMSG_MAX ? line : undefined; // 4: the "<3>" priority and the newline
  };
  const total = record.timings_ms.total;
  const lean: FailureRecord = { ...record, timings_ms: total === undefined ? {} : { total } };
  let line = fits(record) ?? fits(lean);
  for (let n = 300; !line && n >= 0; n -= 50) line = fits({ ...lean, reason: record.reason.slice(0, n) + "…", details: n > 0 ? record.details : {} });
  return line ?? FAILURE_PREFIX + JSON.stringify({ v: 1, code: record.code, exit: record.exit, step: record.step });
}

/** Writes the record file (best effort: a read-only /run must not hide the console line) and logs the line. */
export function reportFailure(record: FailureRecord, runDir: string, log: Logger): string | undefined {
  const json = scrubSecrets(JSON.stringify(record));
  log.raw("error", consoleLine(record));
  try {
    return writeFileReplacing(runDir, FAILURE_FILE, json + "\n", 0o600);
  } catch (e) {
    log.warn("cannot write the failure record file", { dir: runDir, error: (e as NodeJS.ErrnoException).code ?? String(e) });
    return undefined;
  }
}

/** Finds the last failure line in text (a journal or kmsg dump) and parses it. */
export function parseFailureLine(text: string): FailureRecord | undefined {
  const lines = text.split("\n").filter((l) => l.includes(FAILURE_PREFIX));
  for (let i = lines.length - 1; i >= 0; i--) {
    const json = lines[i]!.slice(lines[i]!.indexOf(FAILURE_PREFIX) + FAILURE_PREFIX.length).trim();
    try {
      const r = JSON.parse(json) as FailureRecord;
      if (r && r.v === 1 && typeof r.code === "string") return r;
    } catch {
      /* a cut kmsg line; try an earlier one */
    }
  }
  return undefined;
}
