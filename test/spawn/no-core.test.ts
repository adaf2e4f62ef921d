// The agent makes itself non-dumpable and sets RLIMIT_CORE 0 before it touches a secret: a SIGSEGV or
// SIGABRT sent while it waits (here: for a device that never appears) leaves no core file, where the same
// Bun runtime started the same way without it (ulimit -c unlimited, core_pattern "core" in its cwd) leaves one.
import { spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { BIN, requireBin, ROOT, tempDir } from "../helpers/bin.js";

beforeAll(requireBin);

const corePattern = existsSync("/proc/sys/kernel/core_pattern") ? readFileSync("/proc/sys/kernel/core_pattern", "utf8").trim() : "";
const cores = (dir: string) => readdirSync(dir).filter((f) => f.startsWith("core"));

/** Starts `cmd` in `dir` under `ulimit -c unlimited` (the shell execs it: the PID is the process itself). */
function startIn(dir: string, cmd: string): { pid: number; done: Promise<string | null> } {
  const c = spawn("bash", ["-c", `ulimit -c unlimited; exec ${cmd}`], { cwd: dir, env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin" }, stdio: "ignore" });
  return { pid: c.pid!, done: new Promise((r) => c.on("exit", (_code, sig) => r(sig))) };
}
const waitFor = async (f: () => boolean, ms = 10_000) => {
  for (const t0 = Date.now(); Date.now() - t0 < ms; ) {
    if (f()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
};

// Only where the kernel writes cores into the process's cwd (Debian's default); a pipe pattern would hand
// them to a collector this test cannot see.
describe.runIf(corePattern === "core")("no core file from the agent", () => {
  it.each(["SIGSEGV", "SIGABRT"] as const)("%s: the bare Bun runtime dumps core here, the agent does not", async (sig) => {
    const control = tempDir("core-ctl-");
    const c = startIn(control, `${join(ROOT, "node_modules/.bin/bun")} -e "setTimeout(() => {}, 30000)"`);
    await new Promise((r) => setTimeout(r, 700));
    process.kill(c.pid, sig);
    expect(await c.done).toBe(sig);
    expect(await waitFor(() => cores(control).length > 0)).toBe(true);
    rmSync(control, { recursive: true, force: true }); // a sparse core of several GB

    const dir = tempDir("core-agent-");
    writeFileSync(join(dir, "config.json"), JSON.stringify({ broker: { url: "http://127.0.0.1:9", insecure_http: true }, deadline_s: 60, volumes: [{ name: "root", device: join(dir, "never-appears"), resource: "a/b/c" }] }));
    writeFileSync(join(dir, "cmdline"), "quiet");
    const a = startIn(dir, `${BIN} unlock --config ${dir}/config.json --cmdline ${dir}/cmdline --run-dir ${dir}/run`);
    // It is waiting for the device once its limits say so: RLIMIT_CORE 0 in /proc/PID/limits.
    expect(await waitFor(() => {
      try {
        return /^Max core file size\s+0\s+0\s/m.test(readFileSync(`/proc/${a.pid}/limits`, "utf8"));
      } catch {
        return false;
      }
    })).toBe(true);
    process.kill(a.pid, sig);
    expect(await a.done).toBe(sig);
    await new Promise((r) => setTimeout(r, 300));
    expect(cores(dir)).toEqual([]);
  });
});
