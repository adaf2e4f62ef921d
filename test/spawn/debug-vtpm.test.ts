// debug luks / debug tpm on the compiled binary, against the fixture headers and a real swtpm.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Tpm } from "../../src/tpm/commands.js";
import { swtpmTransport } from "../../src/tpm/transport.js";
import { requireBin, runBin, tempDir } from "../helpers/bin.js";
import { fixtureBytes, fixtureText, headerFile } from "../helpers/fixtures.js";
import { startSwtpm, type Swtpm } from "../helpers/swtpm.js";

let sw: Swtpm;
beforeAll(async () => {
  requireBin();
  sw = await startSwtpm();
});
afterAll(async () => sw?.stop());

const runAsync = async (args: string[]) => {
  const { spawn } = await import("node:child_process");
  return new Promise<{ status: number | null; json: any; stderr: string }>((res) => {
    const c = spawn(`${process.cwd()}/dist/cvm-unlock`, args, { env: { PATH: "/usr/bin:/bin" } });
    let out = "", err = "";
    c.stdout.on("data", (d) => (out += d));
    c.stderr.on("data", (d) => (err += d));
    c.on("close", (status) => res({ status, json: JSON.parse(out.trim().split("\n").pop() || "{}"), stderr: err }));
  });
};

describe("debug luks / debug tpm", () => {
  it("debug luks shows a tpm2-import token as a pending conversion", () => {
    const r = runBin(["debug", "luks", headerFile("tpm2-import"), "--tpm-device", "/nonexistent", "--json"]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.json).toMatchObject({ unlock_path: "first-boot conversion, then the vTPM", tokens: [{ type: "tpm2-import", state: "convert-pending", keyslots: ["1"] }] });
    expect(r.json.keyslots.map((k: any) => k.id)).toEqual(["0", "1"]);
  });

  it("debug luks and debug tpm tell stale from will-unseal against the live TPM", async () => {
    const hdr = headerFile("systemd-tpm2");
    let r = await runAsync(["debug", "luks", hdr, "--tpm-device", sw.spec, "--json"]);
    expect(r.json.tokens[0]).toMatchObject({ type: "systemd-tpm2", state: "stale" });
    const t = new Tpm(await swtpmTransport("127.0.0.1", sw.port));
    await t.pcrExtend(7, "sha256", Buffer.from(JSON.parse(fixtureText("pcr.json")).extend[0], "hex"));
    t.transport.close();
    r = await runAsync(["debug", "luks", hdr, "--tpm-device", sw.spec, "--json"]);
    expect(r.json).toMatchObject({ unlock_path: "the vTPM (systemd-tpm2 token)", tokens: [{ state: "will-unseal" }], lockout: { inLockout: false, maxTries: 3 } });
    const { writeFileSync } = await import("node:fs");
    const cfg = `${hdr}.json`;
    writeFileSync(cfg, JSON.stringify({ tpm: { device: sw.spec }, volumes: [{ name: "gone", device: `${hdr}.missing` }, { name: "root", device: hdr }] }));
    r = await runAsync(["debug", "tpm", "--config", cfg, "--cmdline", "/dev/null", "--json"]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.json.sha256["7"]).toBe(JSON.parse(fixtureText("pcr.json")).value);
    expect(r.json.volumes).toMatchObject([{ name: "gone", error: "device not found" }, { name: "root", next_boot: "unlocks from the vTPM" }]);
    expect(r.json.lockout).toEqual({ inLockout: false, failedTries: expect.any(Number), maxTries: 3, intervalS: expect.any(Number) }); // swtpm's defaults
  });

  it("debug tpm --srk-out writes the storage key the owner's fixture tooling sealed to, byte for byte", async () => {
    const { readFileSync } = await import("node:fs");
    const out = `${tempDir("srk-")}/srk.pub`;
    const r = await runAsync(["debug", "tpm", "--tpm-device", sw.spec, "--srk-out", out, "--json"]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.json.srk.file).toBe(out);
    expect(Buffer.compare(readFileSync(out), fixtureBytes("tpm2-import/srk.pub"))).toBe(0);
    expect((await runAsync(["debug", "tpm", "--tpm-device", sw.spec, "--srk-out", "/nonexistent/dir/srk.pub"])).status).toBe(2);
  });

  it("no TPM and a missing device are clear errors", () => {
    expect(runBin(["debug", "tpm", "--tpm-device", "/nonexistent/tpm"]).status).toBe(8);
    expect(runBin(["debug", "luks", "/nonexistent/disk"]).status).toBe(9);
  });
});
