// The owner's side: `cvm-unlock seal` (compiled binary, offline, no TPM) makes a tpm2-import token for the
// target's storage key; both our converter and the RHEL tpm2-tools sequence accept it on the target (swtpm
// with the fixtures' state), and systemd 252's own plugin then unlocks the volume.
import { spawnSync } from "node:child_process";
import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseLuks2 } from "../../src/luks/header.js";
import { BIN, requireBin, tempDir } from "../helpers/bin.js";
import { FIXTURES, fixtureText } from "../helpers/fixtures.js";
import { makeLuksImage } from "../helpers/luks.js";
import { pluginUnlocks } from "../helpers/plugin.js";
import { startSwtpm, type Swtpm } from "../helpers/swtpm.js";

let sw: Swtpm;
const pcr = JSON.parse(fixtureText("pcr.json"));
const env = { PATH: "/usr/sbin:/usr/bin:/sbin:/bin" };
const tokens = (f: string) => parseLuks2(new Uint8Array(readFileSync(f))).tokens.map((t) => t.type);

beforeAll(async () => {
  requireBin();
  sw = await startSwtpm();
  const r = spawnSync("tpm2_pcrextend", [`7:sha256=${pcr.extend[0]}`], { env: { ...env, TPM2TOOLS_TCTI: `swtpm:host=127.0.0.1,port=${sw.port}` } });
  expect(r.status, String(r.stderr)).toBe(0);
});
afterAll(async () => sw?.stop());

function sealed(opts: { set?: string; value?: string; unique?: boolean; existing?: string } = {}) {
  const dir = tempDir("seal-");
  const img = makeLuksImage("owner-recovery", dir);
  writeFileSync(join(dir, "pcr.json"), JSON.stringify({ bank: "sha256", pcrs: { "7": opts.value ?? pcr.value } }));
  const set = opts.set ?? "tpm2-import";
  const args = ["seal", "--srk", join(FIXTURES, set, "srk.pub"), "--pcr-values", join(dir, "pcr.json"), "--enroll", img, "--json"];
  if (opts.unique) args.push("--unique", join(FIXTURES, set, "unique.dat"));
  const r = spawnSync(BIN, args, { input: opts.existing ?? "owner-recovery", encoding: "utf8", env });
  return { img, dir, r, json: JSON.parse(r.stdout.trim().split("\n").pop() || "{}") };
}
const convert = (img: string) => spawnSync(BIN, ["convert", "--device", img, "--tpm-device", `swtpm:host=127.0.0.1,port=${sw.port}`, "--srk", join(FIXTURES, "tpm2-import/srk.pub"), "--json", "--run-dir", `${img}.run`], { encoding: "utf8", env });

describe("seal (owner side) → convert (guest) → systemd 252 unlocks", () => {
  it("our converter accepts the sealed token; systemd's plugin unlocks the result", () => {
    const s = sealed();
    expect(s.r.status, s.r.stderr).toBe(0);
    expect(s.json).toMatchObject({ keyslot: "1", bank: "sha256", pcrs: [7], policy: JSON.parse(fixtureText("systemd-tpm2/token.json"))["tpm2-policy-hash"] });
    expect(tokens(s.img)).toEqual(["tpm2-import"]);
    const token = parseLuks2(new Uint8Array(readFileSync(s.img))).tokens[0]!.json;
    expect(Object.keys(token)).toEqual(Object.keys(JSON.parse(fixtureText("tpm2-import/token.json"))));
    const c = convert(s.img);
    expect(c.status, c.stderr).toBe(0);
    expect(tokens(s.img)).toEqual(["systemd-tpm2"]);
    expect(pluginUnlocks(s.img, sw.port)).toBe(true);
  });

  it("the RHEL tpm2-tools sequence accepts it too", () => {
    const s = sealed();
    const copy = `${s.img}.rhel`;
    copyFileSync(s.img, copy);
    const r = spawnSync("bash", [join(FIXTURES, "convert-tpm2-tools.sh"), copy], { env: { ...env, TPM2TOOLS_TCTI: `swtpm:host=127.0.0.1,port=${sw.port}` }, encoding: "utf8" });
    expect(r.status, r.stderr).toBe(0);
    expect(pluginUnlocks(copy, sw.port)).toBe(true);
  });

  it("with unique_dat, for a storage key made with a unique value", () => {
    const s = sealed({ set: "tpm2-import-unique", unique: true });
    expect(s.r.status, s.r.stderr).toBe(0);
    expect(convert(s.img).status).toBe(0);
    expect(pluginUnlocks(s.img, sw.port)).toBe(true);
  });

  it("sealed to other PCR values: the guest refuses (PCR mismatch), nothing changes", () => {
    const s = sealed({ value: "11".repeat(32) });
    const before = readFileSync(s.img);
    const c = convert(s.img);
    expect(c.status).toBe(8);
    expect(c.stderr).toMatch(/PCR mismatch/);
    expect(readFileSync(s.img).equals(before)).toBe(true);
  });

  it("a wrong existing passphrase, bad PCR values or a non-storage key are clear errors; the image is untouched", () => {
    const dir = tempDir("seal-bad-");
    const img = makeLuksImage("owner-recovery", dir);
    const before = readFileSync(img);
    writeFileSync(join(dir, "pcr.json"), JSON.stringify({ bank: "sha256", pcrs: { "7": pcr.value } }));
    let r = spawnSync(BIN, ["seal", "--srk", join(FIXTURES, "tpm2-import/srk.pub"), "--pcr-values", join(dir, "pcr.json"), "--enroll", img], { input: "wrong", encoding: "utf8", env });
    expect(r.status).toBe(9);
    expect(r.stderr).toMatch(/existing passphrase is wrong/);
    writeFileSync(join(dir, "bad.json"), JSON.stringify({ bank: "sha256", pcrs: { "7": "abcd" } }));
    r = spawnSync(BIN, ["seal", "--srk", join(FIXTURES, "tpm2-import/srk.pub"), "--pcr-values", join(dir, "bad.json"), "--enroll", img], { input: "owner-recovery", encoding: "utf8", env });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/32-byte hex value/);
    r = spawnSync(BIN, ["seal", "--srk", join(FIXTURES, "tpm2-import/token.json"), "--pcr-values", join(dir, "pcr.json"), "--enroll", img], { input: "owner-recovery", encoding: "utf8", env });
    expect(r.status).toBe(2);
    expect(readFileSync(img).equals(before)).toBe(true);
    expect(spawnSync(BIN, ["seal", "--srk", "x"], { encoding: "utf8", env }).status).toBe(2);
  });
});

describe("seal --secret-file (test build only, for the leak scans)", () => {
  it("the test build seals the given 32 bytes (the keyslot opens with their base64); the production binary has no such flag", async () => {
    const { BIN_TEST } = await import("../helpers/bin.js");
    const { opens } = await import("../helpers/luks.js");
    const dir = tempDir("seal-");
    const img = makeLuksImage("owner-recovery", dir);
    const secret = Buffer.alloc(32, 7);
    writeFileSync(join(dir, "secret"), secret);
    writeFileSync(join(dir, "pcr.json"), JSON.stringify({ bank: "sha256", pcrs: { "7": pcr.value } }));
    const args = ["seal", "--srk", join(FIXTURES, "tpm2-import/srk.pub"), "--pcr-values", join(dir, "pcr.json"), "--enroll", img, "--secret-file", join(dir, "secret")];
    const t = spawnSync(BIN_TEST, args, { input: "owner-recovery", encoding: "utf8", env });
    expect(t.status, t.stderr).toBe(0);
    expect(opens(img, secret.toString("base64"))).toBe(true);
    const p = spawnSync(BIN, args, { input: "owner-recovery", encoding: "utf8", env });
    expect([p.status, p.stderr]).toEqual([2, expect.stringMatching(/unknown flag --secret-file/)]);
    expect(readFileSync(BIN).includes("secret-file")).toBe(false); // not even its name is in the production binary
  });
});
