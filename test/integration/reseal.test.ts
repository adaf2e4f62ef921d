// reseal on the real parts: swtpm (the fixtures' state) whose PCRs are brought to boot 1 of the reseal
// acceptance vector by extending every event of its real event log, a systemd-tpm2 token enrolled by
// systemd 252's own systemd-cryptenroll to PCR 4+7, the compiled binary resealing for UKI2, and then
// "boot 2": a fresh swtpm extended with boot 2's real log, where systemd's own token plugin unlocks the
// volume from the new token (and the old token alone does not).
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { hex } from "../../src/bytes.js";
import { parseLuks2 } from "../../src/luks/header.js";
import { requireBin, runBin, tempDir } from "../helpers/bin.js";
import { FIXTURES } from "../helpers/fixtures.js";
import { bootedSwtpm, enrolled, pcrsOf } from "../helpers/booted.js";
import { pluginUnlocks } from "../helpers/plugin.js";
import type { Swtpm } from "../helpers/swtpm.js";
import { VECTORS, vjson } from "../helpers/vectors.js";
import { spawn } from "node:child_process";
import { startBroker } from "../../tools/dev-broker/server.js";
import { memoryStore } from "../../tools/dev-broker/store.js";
import { Tpm } from "../../src/tpm/commands.js";
import { swtpmTransport } from "../../src/tpm/transport.js";
import { BIN } from "../helpers/bin.js";

/** The compiled agent, without blocking this process (an in-process broker answers it meanwhile). */
function runBinAsync(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const c = spawn(BIN, args, { env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin" } });
    let stdout = "", stderr = "";
    c.stdout.on("data", (d) => (stdout += d));
    c.stderr.on("data", (d) => (stderr += d));
    const t = setTimeout(() => c.kill("SIGKILL"), 120_000);
    c.on("close", (status) => (clearTimeout(t), resolve({ status, stdout, stderr })));
  });
}
async function withSwtpm(port: number, fn: (t: Tpm) => Promise<unknown>) {
  const t = new Tpm(await swtpmTransport("127.0.0.1", port));
  try {
    await fn(t);
  } finally {
    t.transport.close();
  }
}

const acc = vjson("pcr/reseal-acceptance.json");
const LOG1 = join(VECTORS, "pcr/shim-uki-secureboot/eventlog-uki1.bin");
const LOG2 = join(VECTORS, "pcr/shim-uki-secureboot/eventlog-uki2.bin");
const SRK = join(FIXTURES, "tpm2-import/srk.pub");
const UKI2 = `sha1:${acc.new_binary.authenticode.sha1},sha256:${acc.new_binary.authenticode.sha256}`;
let sw: Swtpm | undefined;
afterEach(async () => {
  await sw?.stop();
  sw = undefined;
});
beforeAll(requireBin);

const tokens = (img: string) => parseLuks2(new Uint8Array(readFileSync(img))).tokens;

describe("reseal (swtpm, systemd-cryptenroll, systemd 252's plugin)", () => {
  it("boot 1's PCRs, UKI2's hashes → a second token that systemd's plugin unlocks on boot 2, and nothing else changes", async () => {
    sw = await bootedSwtpm(LOG1);
    expect(hex((await pcrsOf(sw.port, "sha256")).get(4)!)).toBe(acc.pcr_values_boot1_tpm.sha256["4"]);
    const img = enrolled(sw.port);
    expect(pluginUnlocks(img, sw.port)).toBe(true);
    const before = readFileSync(img);

    const dry = runBin(["reseal", "--json", "--dry-run", "--device", img, "--tpm-device", sw.spec, "--eventlog", LOG1, "--uki-authenticode", UKI2, "--srk", SRK]);
    expect(dry.status, dry.stderr).toBe(0);
    expect(dry.json.results[0].plans[0]).toMatchObject({ action: "add", bank: "sha256", pcrs: [4, 7], next: { 4: acc.actual_boot2_tpm.sha256["4"], 7: acc.actual_boot2_tpm.sha256["7"] } });
    expect(readFileSync(img).equals(before)).toBe(true);

    const r = runBin(["reseal", "--json", "--device", img, "--tpm-device", sw.spec, "--eventlog", LOG1, "--uki-authenticode", UKI2, "--srk", SRK]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.json).toMatchObject({ status: "done" });
    const t = tokens(img).filter((x) => x.type === "systemd-tpm2");
    expect(t).toHaveLength(2);
    expect(t.map((x) => x.keyslots[0])).toEqual(["1", "1"]); // the same keyslot: no new keyslot, no PBKDF
    expect(t[1]!.json["tpm2-policy-hash"]).toBe(r.json.results[0].plans[0].policy);
    expect(pluginUnlocks(img, sw.port)).toBe(true); // this boot still unlocks (the old token)
    expect(r.stdout + r.stderr).not.toContain("recovery-passphrase");

    const again = runBin(["reseal", "--json", "--device", img, "--tpm-device", sw.spec, "--eventlog", LOG1, "--uki-authenticode", UKI2, "--srk", SRK]);
    expect(again.json).toMatchObject({ status: "nothing-to-do" });
    expect(tokens(img).filter((x) => x.type === "systemd-tpm2")).toHaveLength(2);

    await sw.stop();
    sw = await bootedSwtpm(LOG2); // boot 2: UKI2
    expect(hex((await pcrsOf(sw.port, "sha256")).get(4)!)).toBe(acc.actual_boot2_tpm.sha256["4"]);
    expect(pluginUnlocks(img, sw.port)).toBe(true);
    // …from the new token: without it the old one no longer unseals on this boot.
    const oldOnly = join(tempDir("reseal-old-"), "old.img");
    writeFileSync(oldOnly, readFileSync(img));
    expect(spawnSync("cryptsetup", ["token", "remove", "--token-id", t[1]!.id, oldOnly]).status).toBe(0);
    expect(pluginUnlocks(oldOnly, sw.port)).toBe(false);
  }, 180_000);

  it("a log that does not replay to this TPM, no pinned key, a TPM substituted: typed errors, the header byte-identical", async () => {
    sw = await bootedSwtpm(LOG2); // the TPM is at boot 2, the log is boot 1's
    const img = enrolled(sw.port);
    const before = readFileSync(img);
    let r = runBin(["reseal", "--device", img, "--tpm-device", sw.spec, "--eventlog", LOG1, "--uki-authenticode", UKI2, "--srk", SRK]);
    expect(r.status).toBe(8);
    expect(r.stderr).toMatch(/the event log does not match the TPM/);
    // Back to UKI1 from boot 2 (a rollback): a new token is needed, and its secret must not cross unprotected.
    const UKI1 = `sha1:${acc.old_binary.authenticode.sha1},sha256:${acc.old_binary.authenticode.sha256}`;
    r = runBin(["reseal", "--device", img, "--tpm-device", sw.spec, "--eventlog", LOG2, "--uki-authenticode", UKI1]);
    expect(r.status).toBe(8);
    expect(r.stderr).toMatch(/no pinned storage key/);
    r = runBin(["reseal", "--device", img, "--tpm-device", sw.spec, "--eventlog", LOG2, "--uki-authenticode", UKI1, "--srk", join(FIXTURES, "tpm2-import-unique/srk.pub")]);
    expect(r.status).toBe(8);
    expect(r.stderr).toMatch(/not the pinned/);
    expect(readFileSync(img).equals(before)).toBe(true);
    r = runBin(["reseal", "--json", "--device", img, "--tpm-device", sw.spec, "--eventlog", LOG2, "--uki-authenticode", UKI1, "--srk", SRK]);
    expect(r.status, r.stderr).toBe(0); // and with the right pin it reseals
    expect(r.json.results[0].plans[0].next["4"]).toBe(acc.pcr_values_boot1_tpm.sha256["4"]);
  }, 180_000);

  it("no token unseals now and the config names a broker: its passphrase adds a keyslot sealed to the prediction, which systemd's plugin opens on boot 2", async () => {
    // The token was sealed to other PCRs (a junk PCR 4), so on this boot (boot 1's log) nothing unseals.
    sw = await bootedSwtpm(LOG1);
    await withSwtpm(sw.port, (t) => t.pcrExtend(4, "sha256", new Uint8Array(32).fill(7)));
    const img = enrolled(sw.port);
    await sw.stop();
    sw = await bootedSwtpm(LOG1);
    const broker = await startBroker({ store: memoryStore({ "cvm/luks/root": "recovery-passphrase" }), policy: { allowTees: ["sample"], denyAll: false }, dev: true });
    try {
      const dir = tempDir("reseal-broker-");
      const cfg = join(dir, "config.json");
      writeFileSync(cfg, JSON.stringify({ broker: { url: broker.url, insecure_http: true }, tee: { allow_simulated: true }, deadline_s: 30, tpm: { device: sw.spec, srk: readFileSync(SRK).toString("base64") }, volumes: [{ name: "root", device: img, resource: "cvm/luks/root" }] }));
      const before = parseLuks2(new Uint8Array(readFileSync(img)));
      const r = await runBinAsync(["reseal", "--json", "--config", cfg, "--cmdline", "/dev/null", "--eventlog", LOG1, "--uki-authenticode", UKI2]);
      expect(r.status, r.stderr).toBe(0);
      expect(broker.stats.auth).toBe(1);
      const after = parseLuks2(new Uint8Array(readFileSync(img)));
      const added = after.keyslots.filter((k) => !before.keyslots.some((b) => b.id === k.id));
      expect(added).toHaveLength(1);
      expect(JSON.parse(r.stdout.trim().split("\n").pop()!).results[0].written).toEqual([added[0]!.id]);
      expect(after.tokens.filter((t) => t.type === "systemd-tpm2").map((t) => t.keyslots)).toEqual([["1"], [added[0]!.id]]);
      expect(r.stdout + r.stderr).not.toContain("recovery-passphrase");
    } finally {
      await broker.close();
    }
    await sw.stop();
    sw = await bootedSwtpm(LOG2);
    expect(pluginUnlocks(img, sw.port)).toBe(true);
  }, 180_000);
});
