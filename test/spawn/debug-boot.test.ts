// debug authenticode against Debian's pesign on the real EFI binaries of this machine (systemd-boot-efi's
// stub and boot loader) and the stored shim; debug pcrs on the reseal acceptance vector.
import { spawnSync } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { requireBin, runBin, tempDir } from "../helpers/bin.js";
import { VECTORS, vjson } from "../helpers/vectors.js";

beforeAll(requireBin);
const PE_FILES = ["/usr/lib/systemd/boot/efi/linuxx64.efi.stub", "/usr/lib/systemd/boot/efi/systemd-bootx64.efi", join(VECTORS, "pcr/binaries/shimx64-snakeoil.efi")];

describe("debug authenticode", () => {
  it.each(PE_FILES)("%s: the same SHA-256 as pesign --hash", (file) => {
    expect(existsSync(file), `${file} (scripts/setup.sh installs systemd-boot-efi)`).toBe(true);
    const p = spawnSync("pesign", ["--hash", "-i", file], { encoding: "utf8" });
    expect(p.status, p.stderr).toBe(0);
    const want = /hash: ([0-9a-f]{64})/.exec(p.stdout)![1];
    const r = runBin(["debug", "authenticode", file, "--json"]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.json.authenticode.sha256).toBe(want);
  });

  it("a file that is not a PE image: exit 8 (TPM), a clear error", () => {
    const r = runBin(["debug", "authenticode", "/etc/os-release"]);
    expect(r.status).toBe(8);
    expect(r.stderr).toMatch(/PE image: no MZ header/);
  });
});

describe("debug pcrs", () => {
  const acc = vjson("pcr/reseal-acceptance.json");
  it("replays boot 1's log, and predicts boot 2's PCR 4/7 for UKI2 as the TPM then reported them", () => {
    const dir = tempDir("pcrs-");
    writeFileSync(join(dir, "live.json"), JSON.stringify(acc.pcr_values_boot1_tpm));
    const a = acc.new_binary.authenticode;
    const r = runBin(["debug", "pcrs", "--json", "--eventlog", join(VECTORS, "pcr", acc.input_eventlog), "--live-pcrs", join(dir, "live.json"), "--uki-authenticode", `sha1:${a.sha1},sha256:${a.sha256}`]);
    expect(r.status, r.stderr).toBe(0);
    for (const bank of ["sha1", "sha256"]) {
      expect(r.json.replayed[bank]["4"]).toBe(acc.pcr_values_boot1_tpm[bank]["4"]);
      expect(r.json.predicted[bank]["4"]).toBe(acc.actual_boot2_tpm[bank]["4"]);
      expect(r.json.predicted[bank]["7"]).toBe(acc.actual_boot2_tpm[bank]["7"]);
    }
  });

  it("refuses to predict from a log that does not match the live PCRs", () => {
    const dir = tempDir("pcrs-");
    writeFileSync(join(dir, "live.json"), JSON.stringify({ sha256: { 4: "00".repeat(32) } }));
    const a = acc.new_binary.authenticode;
    const r = runBin(["debug", "pcrs", "--eventlog", join(VECTORS, "pcr", acc.input_eventlog), "--live-pcrs", join(dir, "live.json"), "--uki-authenticode", `sha1:${a.sha1},sha256:${a.sha256}`]);
    expect(r.status).toBe(8);
    expect(r.stderr).toMatch(/the event log does not match the TPM/);
  });
});
