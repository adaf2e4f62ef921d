// Secrets that land nowhere (#15), on the compiled agent: while it handles a passphrase — the broker's, or the
// vTPM keyslot's (base64 of the secret the fixture sealed) — every process's /proc/PID/cmdline and environ is
// sampled every few milliseconds, and afterwards its run directory (what production keeps under /run) and its
// output are searched; the passphrase appears in none of them, in plain, hex, base64 or base64url. The volumes
// use argon2id keyslots, so the keyslot check (cryptsetup, fed the passphrase on stdin) lasts long enough that
// the sampler sees it running, which the test requires: a scan that never saw the secret in flight proves nothing.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Tpm } from "../../src/tpm/commands.js";
import { swtpmTransport } from "../../src/tpm/transport.js";
import { startBroker, type RunningBroker } from "../../tools/dev-broker/server.js";
import { memoryStore } from "../../tools/dev-broker/store.js";
import { BIN, requireBin, runInSessionAsync, tempDir } from "../helpers/bin.js";
import { fixtureBytes, fixtureText, headerFile } from "../helpers/fixtures.js";
import { filesHolding, sampleProcs, secretForms } from "../helpers/leak-scan.js";
import { makeLuksImage } from "../helpers/luks.js";
import { startSwtpm, type Swtpm } from "../helpers/swtpm.js";

const PASS = "leak-scan-broker-passphrase";
let broker: RunningBroker;
let sw: Swtpm;
beforeAll(async () => {
  requireBin();
  broker = await startBroker({ store: memoryStore({ "cvm/luks/root": PASS }), policy: { allowTees: ["sample"], denyAll: false }, dev: true });
  sw = await startSwtpm();
  const t = new Tpm(await swtpmTransport("127.0.0.1", sw.port));
  await t.pcrExtend(7, "sha256", Buffer.from(JSON.parse(fixtureText("pcr.json")).extend[0], "hex")); // the PCR 7 the owner sealed to
  t.transport.close();
});
afterAll(async () => {
  await broker?.close();
  await sw?.stop();
});

describe("no secret in /proc, in the run directory or in the output", () => {
  it("control: the sampler finds a secret put in a process's argv and environment on purpose", async () => {
    const { spawn } = await import("node:child_process");
    const forms = secretForms(PASS);
    const sampler = sampleProcs(forms, "sleep");
    await new Promise<void>((res) => spawn("sh", ["-c", "sleep 0.3", "x", Buffer.from(PASS).toString("hex")], { env: { PATH: "/usr/bin:/bin", LEAK: Buffer.from(PASS).toString("base64url") } }).on("exit", () => res()));
    const s = sampler.stop();
    expect(s.watched).toBeGreaterThan(0);
    expect(s.hits.some((h) => h.endsWith("cmdline (sh)"))).toBe(true);
    expect(s.hits.some((h) => h.endsWith("environ (sh)"))).toBe(true);
  });

  it("the broker path: unlock hands an argon2id volume's passphrase to the keyring", async () => {
    const dir = tempDir("leak-");
    const image = makeLuksImage(PASS, dir, "disk.img", { argon2id: { iterTimeMs: 800 } });
    const cfg = join(dir, "config.json");
    writeFileSync(cfg, JSON.stringify({ broker: { url: broker.url, insecure_http: true }, tee: { allow_simulated: true }, deadline_s: 30, volumes: [{ name: "root", device: image, resource: "cvm/luks/root" }], keyring: { keyring: "@s" } }));
    const forms = secretForms(PASS);
    const sampler = sampleProcs(forms);
    const r = await runInSessionAsync(`${BIN} unlock --json --config ${cfg} --cmdline /dev/null --run-dir ${dir}/run; rc=$?; keyctl search @s user cryptsetup >/dev/null && echo KEY; exit $rc`);
    const s = sampler.stop();
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain("KEY");
    expect(s.watched, `${s.samples} samples`).toBeGreaterThan(0);
    expect(s.hits).toEqual([]);
    expect(filesHolding(join(dir, "run"), forms)).toEqual([]);
    for (const f of forms) expect(r.stdout + r.stderr).not.toContain(f);
  }, 60_000);

  it("the vTPM path: convert unseals the owner's secret and reseals it, the keyslot passphrase base64(secret) nowhere", async () => {
    const dir = tempDir("leak-");
    const header = headerFile("tpm2-import");
    const pass = fixtureText("tpm2-import/tpm2-passphrase.txt").trim();
    const raw = Uint8Array.from(Buffer.from(fixtureText("tpm2-import/tpm2-secret.hex").trim(), "hex"));
    const forms = secretForms(pass, raw);
    writeFileSync(join(dir, "srk.pub"), fixtureBytes("tpm2-import/srk.pub"));
    const sampler = sampleProcs(forms);
    const r = await runInSessionAsync(`${BIN} convert --device ${header} --tpm-device ${sw.spec} --srk ${dir}/srk.pub --run-dir ${dir}/run --json`);
    const s = sampler.stop();
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/"converted"/);
    expect(s.watched, `${s.samples} samples`).toBeGreaterThan(0);
    expect(s.hits).toEqual([]);
    expect(filesHolding(dir, forms).filter((f) => f !== header)).toEqual([]);
    for (const f of forms) expect(r.stdout + r.stderr).not.toContain(f);
  }, 60_000);
});
