// A real swtpm for a test: a copy of the fixture TPM state, server and control ports on 127.0.0.1,
// started with startup-clear, stopped by its PID.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdirSync } from "node:fs";
import { createConnection, createServer } from "node:net";
import { join } from "node:path";
import { tempDir } from "./bin.js";
import { FIXTURES } from "./fixtures.js";

async function freePortPair(): Promise<number> {
  for (let i = 0; i < 20; i++) {
    const p = await new Promise<number>((res) => {
      const s = createServer().listen(0, "127.0.0.1", () => {
        const port = (s.address() as { port: number }).port;
        s.close(() => res(port));
      });
    });
    if (p < 65000) return p;
  }
  throw new Error("no free port pair");
}

export interface Swtpm {
  port: number;
  spec: string;
  proc: ChildProcess;
  stop(): Promise<void>;
}

export async function startSwtpm(): Promise<Swtpm> {
  const dir = tempDir("swtpm-");
  mkdirSync(join(dir, "state"));
  const untar = spawnSync("tar", ["-C", join(dir, "state"), "-xzf", join(FIXTURES, "tpm-state.tar.gz")]);
  if (untar.status !== 0) throw new Error(`untar: ${untar.stderr}`);
  const port = await freePortPair();
  const proc = spawn("swtpm", ["socket", "--tpm2", "--tpmstate", `dir=${join(dir, "state")}`,
    "--server", `type=tcp,port=${port},bindaddr=127.0.0.1`, "--ctrl", `type=tcp,port=${port + 1},bindaddr=127.0.0.1`,
    "--flags", "not-need-init,startup-clear"], { stdio: "ignore" });
  // Probe the control port: a probe on the server port races swtpm re-listening after the probe closes.
  for (let i = 0; i < 100; i++) {
    const up = await new Promise<boolean>((res) => {
      const s = createConnection({ host: "127.0.0.1", port: port + 1 }, () => {
        s.destroy();
        res(true);
      });
      s.on("error", () => res(false));
    });
    if (up) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  // Ready means the server port answers a TPM command (it can lag the control port on a loaded machine).
  const { Tpm } = await import("../../src/tpm/commands.js");
  const { swtpmTransport } = await import("../../src/tpm/transport.js");
  for (let i = 0; ; i++) {
    try {
      const t = new Tpm(await swtpmTransport("127.0.0.1", port));
      await t.getRandom(1);
      t.transport.close();
      break;
    } catch (e) {
      if (i >= 20) throw e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return {
    port,
    spec: `swtpm:host=127.0.0.1,port=${port}`,
    proc,
    stop: () =>
      new Promise((res) => {
        if (proc.exitCode !== null) return res();
        proc.once("exit", () => res());
        proc.kill("SIGTERM");
      }),
  };
}
