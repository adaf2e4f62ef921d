// main() in-process with the fake native layer: dispatch, output forms and exit codes.
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { main } from "../../src/main.js";
import { FakeNative } from "../../src/native/fake.js";

async function run(argv: string[], native = new FakeNative()) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main({ argv, env: {}, stdout: (s) => void out.push(s), stderr: (s) => void err.push(s), native: async () => native, inInitramfs: false });
  return { code, out: out.join(""), err: err.join(""), native };
}

describe("main", () => {
  it("selfcheck round-trips through the fake keyring and leaves it empty", async () => {
    const r = await run(["debug", "selfcheck", "--json"]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out)).toMatchObject({ ok: true, status: "done", native: "fake", tee: "none" });
    expect(r.native.keys.size).toBe(0);
    expect(r.native.calls).toContain("add_key");
  });

  it("a keyring failure is exit 10 with the errno", async () => {
    const n = new FakeNative();
    n.failNext.set("add_key", 122);
    const r = await run(["debug", "selfcheck"], n);
    expect(r.code).toBe(10);
    expect(r.err).toContain("EDQUOT");
  });

  it("usage errors come before anything runs", async () => {
    const r = await run(["debug", "keyring", "--keyring"]);
    expect(r.code).toBe(2);
    expect(r.err).toContain("--keyring needs a value");
    expect(r.native.calls).toEqual([]);
    expect((await run(["debug", "keyring", "--keyring", "@x"])).code).toBe(2);
  });

  it("a failing boot step writes the failure record; debug commands do not", async () => {
    const dir = mkdtempSync(join(tmpdir(), "main-"));
    writeFileSync(join(dir, "c.json"), JSON.stringify({ broker: { url: "http://127.0.0.1:9", insecure_http: true }, volumes: [{ name: "r", device: "/dev/null", resource: "a/b/c" }] }));
    writeFileSync(join(dir, "cmdline"), "");
    const r = await run(["unlock", "--config", join(dir, "c.json"), "--cmdline", join(dir, "cmdline"), "--run-dir", join(dir, "run")]);
    expect(r.code).not.toBe(0);
    expect(r.err).toMatch(/cvm-unlock: failure \{.*"command":"unlock"/);
    const rec = JSON.parse(readFileSync(join(dir, "run/last-failure.json"), "utf8"));
    expect(rec).toMatchObject({ v: 1, command: "unlock", exit: r.code });
    expect(typeof rec.timings_ms.config).toBe("number");
  });
});
