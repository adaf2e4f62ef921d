// The Authenticode hash and the PCR 4/7 predictor on the real vectors of shared/vectors/pcr: the booted
// shim (its hashes as pesign/osslsigncode and the firmware's PCR 4 event give them), and the reseal
// acceptance pair (boot 1's log + UKI2's hashes → the PCRs the TPM reported when UKI2 booted).
import { describe, expect, it } from "vitest";
import { hex } from "../../src/bytes.js";
import { authenticode, authenticodeRanges, PeError } from "../../src/measured-boot/authenticode.js";
import { parseEventLog } from "../../src/measured-boot/eventlog.js";
import { predictPcrs, updateReplacements } from "../../src/measured-boot/predict.js";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { CvmError } from "../../src/errors.js";
import { tempDir } from "../helpers/bin.js";
import { makeUki } from "../helpers/uki.js";
import { vbytes, vjson } from "../helpers/vectors.js";
import { thrown } from "../helpers/errors.js";

const shim = vbytes("pcr/binaries/shimx64-snakeoil.efi");
const hashes = vjson("pcr/binaries/hashes.json");
const acc = vjson("pcr/reseal-acceptance.json");

describe("Authenticode", () => {
  it("the signed shim: the firmware's PCR 4 digests (sha1 and sha256)", () => {
    const h = authenticode(shim);
    const want = hashes["binaries/shimx64-snakeoil.efi"].authenticode;
    expect({ sha1: hex(h.sha1), sha256: hex(h.sha256) }).toEqual(want);
    const ev = parseEventLog(vbytes("pcr/shim-uki-secureboot/eventlog-uki1.bin")).events[23]!;
    expect(hex(ev.digests.get("sha256")!)).toBe(want.sha256);
  });

  it("excludes the signature: the same image with another certificate table hashes the same", () => {
    const { certTable } = authenticodeRanges(shim);
    expect(certTable.size).toBeGreaterThan(0);
    const resigned = shim.slice();
    for (let i = certTable.offset + 8; i < resigned.length; i++) resigned[i] = (resigned[i]! + 1) & 0xff;
    expect(hex(authenticode(resigned).sha256)).toBe(hex(authenticode(shim).sha256));
    const code = shim.slice();
    code[authenticodeRanges(shim).ranges[3]![0] + 100]! ^= 1; // inside the first section
    expect(hex(authenticode(code).sha256)).not.toBe(hex(authenticode(shim).sha256));
  });

  const dv = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength);
  const pe = dv(shim).getUint32(0x3c, true);
  const opt = pe + 24;
  const plus = dv(shim).getUint16(opt, true) === 0x20b;
  const certDir = opt + (plus ? 112 : 96) + 32;
  const secTable = opt + dv(shim).getUint16(pe + 20, true);
  it.each([
    ["not a PE file", (b: Uint8Array) => b.fill(0, 0, 2), /no MZ header/],
    ["a certificate table past the end", (b: Uint8Array) => (dv(b).setUint32(certDir + 4, dv(b).getUint32(certDir + 4, true) + 4096, true), b), /certificate table .* is not at the end/],
    ["overlapping sections", (b: Uint8Array) => (dv(b).setUint32(secTable + 40 + 20, dv(b).getUint32(secTable + 20, true), true), b), /overlap/],
    ["a huge section count", (b: Uint8Array) => (dv(b).setUint16(pe + 6, 0xffff, true), b), /65535 sections/],
    ["a section outside the file", (b: Uint8Array) => (dv(b).setUint32(secTable + 16, 0x7fffffff, true), b), /outside the image/],
    ["truncated", (b: Uint8Array) => b.subarray(0, 300), /out of range|truncated/],
  ])("%s: a typed error", (_what, mutate: (b: Uint8Array) => Uint8Array, message) => {
    const input = mutate(shim.slice());
    const err = thrown(() => authenticode(input));
    expect(err).toBeInstanceOf(PeError);
    expect((err as PeError).code).toBe("TPM");
    expect((err as Error).message).toMatch(message);
  });

  it("no certificate table at all (an unsigned image): hashed to the end of the file", () => {
    const b = shim.slice(0, authenticodeRanges(shim).certTable.offset);
    dv(b).setUint32(certDir, 0, true);
    dv(b).setUint32(certDir + 4, 0, true);
    const r = authenticodeRanges(b);
    expect(r.ranges[r.ranges.length - 1]![1]).toBe(b.length);
    expect(hex(authenticode(b).sha256)).toHaveLength(64);
  });
});

describe("PCR 4/7 prediction (reseal acceptance vector)", () => {
  const log = parseEventLog(vbytes(`pcr/${acc.input_eventlog}`));
  const live = { sha1: acc.pcr_values_boot1_tpm.sha1, sha256: acc.pcr_values_boot1_tpm.sha256 };
  const shimHashes = hashes["binaries/shimx64-snakeoil.efi"].authenticode;
  const uki = { old: acc.old_binary.authenticode, new: acc.new_binary.authenticode };

  it("boot 1's log + UKI2's Authenticode hashes = what the TPM reported on boot 2, bank by bank", () => {
    const p = predictPcrs(log, { live: { sha1: { 4: live.sha1["4"], 7: live.sha1["7"] }, sha256: { 4: live.sha256["4"], 7: live.sha256["7"] } }, replace: [uki], known: [shimHashes] });
    for (const bank of ["sha1", "sha256"]) for (const pcr of ["4", "7"]) expect(p[bank]![Number(pcr)]).toBe(acc.actual_boot2_tpm[bank][pcr]);
  });

  it("refuses a log that does not replay to the live PCRs, an unknown boot application, and nothing to replace", () => {
    expect(() => predictPcrs(log, { live: { sha256: { 4: "00".repeat(32) } }, replace: [uki], known: [shimHashes] })).toThrow(/the event log does not match the TPM/);
    expect(() => predictPcrs(log, { live: { sha256: { 4: live.sha256["4"] } }, replace: [uki] })).toThrow(/neither known nor replaced/);
    expect(() => predictPcrs(log, { live: { sha256: { 4: live.sha256["4"] } }, replace: [{ old: { sha256: "11".repeat(32) }, new: uki.new }], known: [shimHashes, uki.old] })).toThrow(/no PCR 4 boot application event is the binary being replaced/);
  });
});

describe("a UKI booted with Secure Boot off: systemd-stub has the firmware measure the UKI's kernel too", () => {
  const log = parseEventLog(vbytes("pcr/uki-direct-no-secureboot/eventlog.bin"));
  const side = vjson("pcr/uki-direct-no-secureboot/eventlog.events.json");
  const tpm = vjson("pcr/uki-direct-no-secureboot/pcrs.json").tpm;
  const live = { sha1: { 4: tpm.sha1["4"], 7: tpm.sha1["7"] }, sha256: { 4: tpm.sha256["4"], 7: tpm.sha256["7"] } };
  // A UKI as dracut makes one (systemd's stub + objcopy) whose kernel is a real signed PE (the shim).
  const uki = new Uint8Array(readFileSync(makeUki(tempDir("uki-"), "k.efi", "console=ttyS0 x=1", shim)));
  const a = authenticode(uki);
  const next = { uki: { sha1: hex(a.sha1), sha256: hex(a.sha256) }, ukiKernel: { sha1: hex(a.kernel!.sha1), sha256: hex(a.kernel!.sha256) } };

  it("the kernel's digests are the .linux section's own Authenticode hashes (the shim's, as the firmware measured them)", () => {
    expect(a.uki).toBe(true);
    expect(next.ukiKernel).toEqual(hashes["binaries/shimx64-snakeoil.efi"].authenticode);
  });

  it("replaces both the UKI event (#22) and its kernel's (#31); every other event as the independent parser listed it", () => {
    const { replace, known } = updateReplacements(log, next);
    const p = predictPcrs(log, { live, replace, known });
    for (const bank of ["sha1", "sha256"] as const) {
      let pcr = Buffer.alloc(bank === "sha1" ? 20 : 32);
      for (const e of side.events.filter((x: any) => x.pcr === 4 && x.type !== "EV_NO_ACTION")) {
        const d = e.index === 22 ? next.uki[bank] : e.index === 31 ? next.ukiKernel[bank] : e.digests[bank];
        pcr = createHash(bank).update(Buffer.concat([pcr, Buffer.from(d, "hex")])).digest();
      }
      expect(p[bank]![4]).toBe(pcr.toString("hex"));
      expect(p[bank]![7]).toBe(tpm[bank]["7"]);
    }
  });

  it("the same UKI again predicts the live values; without the kernel's digests nothing is predicted", () => {
    const uki22 = side.events[22].digests, kernel31 = side.events[31].digests;
    const { replace, known } = updateReplacements(log, { uki: uki22, ukiKernel: kernel31 });
    expect(predictPcrs(log, { live, replace, known })).toEqual({ sha1: live.sha1, sha256: live.sha256 });
    const e = thrown(() => updateReplacements(log, { uki: next.uki })) as CvmError;
    expect([e.code, e.details.reason]).toEqual(["USAGE", "stub-kernel-event"]);
  });
});
