// The compiled agent against a real cryptsetup 2.6 image whose header the host rewrote (segment cipher
// cipher_null, checksums recomputed): it refuses before it asks the broker anything, hands nothing to the
// keyring (a private session keyring), and the failure record names the cipher.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { BIN, requireBin, runInSession, tempDir } from "../helpers/bin.js";
import { makeLuksImage } from "../helpers/luks.js";
import { rewriteLuksJson } from "../helpers/luks-tamper.js";

beforeAll(requireBin);

const CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

describe("hostile LUKS header ciphers", () => {
  it.each([
    ["cipher_null-ecb", (j: any) => (j.segments["0"].encryption = "cipher_null-ecb")],
    ["aes-ecb", (j: any) => (j.segments["0"].encryption = "aes-ecb")],
    ["cipher_null-ecb", (j: any) => (Object.values<any>(j.keyslots)[0].area.encryption = "cipher_null-ecb")],
  ])("%s in the header: exit 9 before the broker, nothing in the keyring", (cipher, mutate) => {
    const dir = tempDir("cn-");
    const img = makeLuksImage("the-real-passphrase", dir);
    writeFileSync(img, rewriteLuksJson(new Uint8Array(readFileSync(img)), mutate));
    // The broker's port is closed: reaching it would be BROKER_UNREACHABLE (5), not LUKS (9).
    writeFileSync(join(dir, "config.json"), JSON.stringify({ broker: { url: "https://127.0.0.1:9", ca: CA }, deadline_s: 5, keyring: { keyring: "@s" }, volumes: [{ name: "root", device: img, resource: "cvm/luks/root" }] }));
    writeFileSync(join(dir, "cmdline"), "quiet");
    const r = runInSession(`"${BIN}" unlock --config ${dir}/config.json --cmdline ${dir}/cmdline --run-dir ${dir}/run; echo "exit=$?"; keyctl search @s user cryptsetup 2>&1 || true`);
    expect(r.stdout).toMatch(/exit=9/);
    expect(r.stdout).toMatch(/keyctl_search: Required key not available/);
    const record = JSON.parse(readFileSync(join(dir, "run/last-failure.json"), "utf8"));
    expect(record).toMatchObject({ code: "LUKS", step: "headers", details: { volume: "root" } });
    expect(record.reason).toContain(`"${cipher}"`);
    expect(record.reason).toContain("nothing is handed over");
    expect(r.stderr).not.toContain("attesting to the broker");
  });
});

describe("a damaged primary header", () => {
  it("the agent reads the secondary copy, as cryptsetup does, and says so", () => {
    const dir = tempDir("dmg-");
    const img = makeLuksImage("the-real-passphrase", dir);
    const b = new Uint8Array(readFileSync(img));
    b[4096 + 20]! ^= 0xff; // inside the primary copy's JSON: its checksum no longer matches
    writeFileSync(img, b);
    writeFileSync(join(dir, "config.json"), JSON.stringify({ broker: { url: "https://127.0.0.1:9", ca: CA }, tee: { allow_simulated: true }, deadline_s: 3, keyring: { keyring: "@s" }, volumes: [{ name: "root", device: img, resource: "cvm/luks/root" }] }));
    writeFileSync(join(dir, "cmdline"), "quiet");
    const r = runInSession(`"${BIN}" unlock --config ${dir}/config.json --cmdline ${dir}/cmdline --run-dir ${dir}/run`);
    expect(r.stderr).toMatch(/volume root: the LUKS2 header's primary copy is damaged; using the secondary one, as cryptsetup does/);
    expect(r.stderr).toContain("attesting to the broker"); // it went on with the good copy
  });
});
