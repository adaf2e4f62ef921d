// Child processes with a secret on stdin. In the compiled agent this is Bun.spawn (≈0.3 ms); under Node
// (tests) node:child_process, loaded only then — its first spawn costs ≈11 ms in a compiled Bun binary.
import { readFileText } from "./native/files.js";

export interface Child {
  /** Writes the bytes to stdin and closes it. */
  end(bytes: Uint8Array): void;
  kill(): void;
  /** Exit code (null when killed by a signal), the signal's name, and the first 4 KiB of stderr. */
  exited: Promise<{ code: number | null; signal: string | null; stderr: string }>;
}

const ENV = { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", LC_ALL: "C" };

type BunSpawn = (argv: string[], o: object) => {
  stdin: { write(b: Uint8Array): void; end(): void };
  stderr: ReadableStream<Uint8Array>;
  exited: Promise<number>;
  signalCode: string | null;
  kill(sig?: string): void;
};

export async function spawnWithStdin(argv: string[]): Promise<Child> {
  const bun = (globalThis as { Bun?: { spawn: BunSpawn } }).Bun;
  if (bun) {
    const p = bun.spawn(argv, { stdin: "pipe", stdout: "ignore", stderr: "pipe", env: ENV });
    const stderr = new Response(p.stderr).text().then((t) => t.slice(0, 4096));
    return {
      end(bytes) {
        try {
          p.stdin.write(bytes);
          p.stdin.end();
        } catch {
          /* the process may be gone already; its exit code says why */
        }
      },
      kill: () => p.kill("SIGKILL"),
      exited: Promise.all([p.exited, stderr]).then(([code, err]) => ({ code: p.signalCode ? null : code, signal: p.signalCode ?? null, stderr: err })),
    };
  }
  const { spawn } = await import("node:child_process");
  const c = spawn(argv[0]!, argv.slice(1), { stdio: ["pipe", "ignore", "pipe"], env: ENV });
  let stderr = "";
  c.stderr.setEncoding("utf8");
  c.stderr.on("data", (d: string) => {
    if (stderr.length < 4096) stderr += d;
  });
  c.stdin.on("error", () => {});
  const exited = new Promise<{ code: number | null; signal: string | null; stderr: string }>((resolve, reject) => {
    c.on("error", reject);
    c.on("close", (code, signal) => resolve({ code: signal ? null : code, signal: signal ?? null, stderr }));
  });
  return {
    end: (bytes) => c.stdin.end(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)),
    kill: () => void c.kill("SIGKILL"),
    exited,
  };
}

/** Runs a command with no stdin and returns its exit code (null when killed), stdout and stderr (each cut
 *  at 64 KiB). For commands whose output is data the agent reads (dmsetup table), never for secrets. */
export async function runCapture(argv: string[], timeoutMs = 10_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const bun = (globalThis as { Bun?: { spawn: (argv: string[], o: object) => { stdout: ReadableStream<Uint8Array>; stderr: ReadableStream<Uint8Array>; exited: Promise<number>; signalCode: string | null; kill(s?: string): void } } }).Bun;
  const cut = (t: string) => t.slice(0, 65536);
  if (bun) {
    const p = bun.spawn(argv, { stdin: "ignore", stdout: "pipe", stderr: "pipe", env: ENV });
    const timer = setTimeout(() => p.kill("SIGKILL"), timeoutMs);
    const [code, stdout, stderr] = await Promise.all([p.exited, new Response(p.stdout).text(), new Response(p.stderr).text()]).finally(() => clearTimeout(timer));
    return { code: p.signalCode ? null : code, stdout: cut(stdout), stderr: cut(stderr) };
  }
  const { spawnSync } = await import("node:child_process");
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: "utf8", env: ENV, timeout: timeoutMs, stdio: ["ignore", "pipe", "pipe"] });
  if (r.error && (r.error as NodeJS.ErrnoException).code === "ENOENT") throw r.error;
  return { code: r.status, stdout: cut(r.stdout ?? ""), stderr: cut(r.stderr ?? "") };
}

/** MemAvailable in MiB (from /proc/meminfo, or the text given), or undefined where it cannot be read: what a
 *  keyslot's argon2 KDF can take before the kernel's OOM killer ends it (there is no swap in an initramfs). */
export function memAvailableMiB(meminfo?: string): number | undefined {
  let t = meminfo;
  if (t === undefined) {
    try {
      t = readFileText("/proc/meminfo", 1 << 16);
    } catch {
      return undefined;
    }
  }
  const m = /^MemAvailable:\s+(\d+) kB$/m.exec(t);
  return m ? Math.floor(Number(m[1]) / 1024) : undefined;
}
