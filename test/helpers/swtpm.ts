// A real swtpm for a test: a copy of the fixture TPM state, server and control ports on 127.0.0.1,
// started with startup-clear, stopped by its PID.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdirSync } from "node:fs";
import { createConnection, createServer } from "node:net";
import { join } from "node:path";
import { tempDir } from "./bin.js";
import { FIXTURES } from "./fixtures.js";

const bindable = (port: number) =>
  new Promise<boolean>((res) => {
    const s = createServer();
    s.once("error", () => res(false));
    s.listen(port, "127.0.0.1", () => s.close(() => res(true)));
  });

/** Two adjacent free ports (server, control). Another test can still take one before swtpm binds it:
 *  startSwtpm sees swtpm exit and tries again with a new pair. */
async function freePortPair(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const p = await new Promise<number>((res) => {
      const s = createServer().listen(0, "127.0.0.1", () => {
        const port = (s.address() as { port: number }).port;
        s.close(() => res(port));
      });
    });
    if (p < 65000 && (await bindable(p + 1))) return p;
  }
  throw new Error("no free port pair");
}

export interface Swtpm {
  port: number;
  spec: string;
  proc: ChildProcess;
  stop(): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const connects = (port: number) =>
  new Promise<boolean>((res) => {
    const s = createConnection({ host: "127.0.0.1", port }, () => {
      s.destroy();
      res(true);
    });
    s.on("error", () => res(false));
  });

export async function startSwtpm(): Promise<Swtpm> {
  const dir = tempDir("swtpm-");
  mkdirSync(join(dir, "state"));
  const untar = spawnSync("tar", ["-C", join(dir, "state"), "-xzf", join(FIXTURES, "tpm-state.tar.gz")]);
  if (untar.status !== 0) throw new Error(`untar: ${untar.stderr}`);
  const { Tpm } = await import("../../src/tpm/commands.js");
  const { swtpmTransport } = await import("../../src/tpm/transport.js");
  const failures: string[] = [];
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePortPair();
    const proc = spawn("swtpm", ["socket", "--tpm2", "--tpmstate", `dir=${join(dir, "state")}`,
      "--server", `type=tcp,port=${port},bindaddr=127.0.0.1`, "--ctrl", `type=tcp,port=${port + 1},bindaddr=127.0.0.1`,
      "--flags", "not-need-init,startup-clear"], { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    proc.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
    const exited = () => proc.exitCode !== null || proc.signalCode !== null;
    const stop = () =>
      new Promise<void>((res) => {
        if (exited()) return res();
        proc.once("exit", () => res());
        proc.kill("SIGTERM");
      });
    // Ready means the server port answers a TPM command. Probe the control port first: a bare probe on the
    // server port races swtpm re-listening after the probe closes. A swtpm that exits (a port taken between
    // our check and its bind) is started again on new ports.
    const deadline = Date.now() + 30_000;
    let ready = false;
    while (!exited() && Date.now() < deadline && !(await connects(port + 1))) await sleep(50);
    while (!exited() && Date.now() < deadline) {
      try {
        const t = new Tpm(await swtpmTransport("127.0.0.1", port));
        await t.getRandom(1);
        t.transport.close();
        ready = true;
        break;
      } catch {
        await sleep(100);
      }
    }
    if (ready) return { port, spec: `swtpm:host=127.0.0.1,port=${port}`, proc, stop };
    await stop();
    failures.push(`ports ${port}/${port + 1}: ${stderr.trim() || (exited() ? `exited ${proc.exitCode ?? proc.signalCode}` : "not ready in 30 s")}`);
  }
  throw new Error(`swtpm did not start: ${failures.join("; ")}`);
}
