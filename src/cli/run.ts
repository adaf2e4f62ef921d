// Runs one command: builds the logger (stderr, plus kmsg inside an initramfs), parses its flags, runs it,
// prints the result, and maps any error to its exit code — writing the failure record for boot steps.
import { asCvmError, CvmError } from "../errors.js";
import { RunTrace } from "../flow/run.js";
import { DEFAULT_RUN_DIR, makeFailureRecord, reportFailure } from "../log/failure.js";
import { kmsgSink, Logger, stderrSink, type Sink } from "../log/logger.js";
import { normalJit } from "../jit.js";
import { exists, openAppender } from "../native/files.js";
import { loadNative } from "../native/index.js";
import type { Native } from "../native/types.js";
import { VERSION } from "../version.js";
import type { Parsed } from "./args.js";
import type { Command, Context, Result } from "./command.js";

export interface RunIo {
  env: Readonly<Record<string, string | undefined>>;
  stdout(s: string): void;
  stderr(s: string): void;
  native?: () => Promise<Native>;
  /** Extra sinks (tests); kmsg is added automatically inside an initramfs. */
  sinks?: Sink[];
  inInitramfs?: boolean;
}

function openKmsg(): Sink | undefined {
  try {
    return kmsgSink(openAppender("/dev/kmsg"));
  } catch {
    return undefined;
  }
}

export async function runCommand(command: Command, parsed: Parsed, io: RunIo): Promise<number> {
  const native = io.native ?? loadNative;
  // A boot step opens the libc seam first: it needs it (no core dumps, the keyring), and its files then go
  // through it rather than node:fs (src/native/files.ts). Where there is none (Node), the step reports that.
  if (command.boot) await native().catch(() => undefined);
  else normalJit();
  const log = new Logger("info", [stderrSink(io.stderr), ...(io.sinks ?? [])]);
  if (io.inInitramfs ?? exists("/etc/initrd-release")) {
    const k = openKmsg();
    if (k) log.addSink(k);
  }
  const json = parsed.flags.json === true;
  const runDir = typeof parsed.flags["run-dir"] === "string" ? parsed.flags["run-dir"] : DEFAULT_RUN_DIR;
  const trace = new RunTrace();
  const ctx: Context = {
    log,
    json,
    flags: parsed.flags,
    positionals: parsed.positionals,
    env: io.env,
    trace,
    runDir,
    native,
    print: (t) => void (!json && io.stdout(t + "\n")),
  };
  try {
    const runner = await trace.run("load", () => command.load());
    const result = await runner(ctx);
    if (command.boot) log.notice(result.message, { status: result.status, elapsed_ms: trace.elapsedMs() });
    printResult(io, json, command, result, trace);
    return 0;
  } catch (e) {
    const err = asCvmError(e);
    if (!(e instanceof CvmError) && e instanceof Error) log.debug("internal error", { stack: e.stack ?? "" });
    // A boot step's config or command line failure is recorded too: at boot it is why nothing was released.
    if (command.boot && err.code !== "USAGE") {
      const ctxInfo = { version: VERSION, command: command.name, step: trace.step, attempts: trace.attempts, timings_ms: trace.timings_ms };
      reportFailure(makeFailureRecord(err, ctxInfo), runDir, log);
    } else {
      log.error(err.message, { code: err.code });
    }
    if (json) {
      const error = { code: err.code, exit: err.exitCode, message: err.message, details: err.details };
      io.stdout(JSON.stringify({ ok: false, command: command.name, error }) + "\n");
    }
    return err.exitCode;
  }
}

function printResult(io: RunIo, json: boolean, command: Command, r: Result, trace: RunTrace): void {
  if (json) {
    io.stdout(JSON.stringify({ ok: true, command: command.name, status: r.status, message: r.message, elapsed_ms: trace.elapsedMs(), ...r.data }) + "\n");
    return;
  }
  io.stdout(`${r.message}\n`);
  if (r.data) io.stdout(JSON.stringify(r.data, null, 2) + "\n");
}
