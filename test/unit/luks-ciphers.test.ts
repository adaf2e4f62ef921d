// The cipher allowlist on the header (before any hand-off) and the live dm-crypt mapping check (after
// activation), on real headers made by cryptsetup 2.6, rewritten the way a hostile host can.
import { describe, expect, it } from "vitest";
import { parseConfig } from "../../src/config/config.js";
import { CvmError } from "../../src/errors.js";
import { checkHeaderCiphers, DEFAULT_CIPHERS, isCipherSpec } from "../../src/luks/ciphers.js";
import { parseLuks2 } from "../../src/luks/header.js";
import { mappingDifferences, parseCryptTable } from "../../src/luks/mapping.js";
import { headerBytes } from "../helpers/fixtures.js";
import { rewriteLuksJson } from "../helpers/luks-tamper.js";
import { thrown } from "../helpers/errors.js";

const tampered = (mutate: (j: any) => void) => parseLuks2(rewriteLuksJson(headerBytes("systemd-tpm2"), mutate));
const refusal = (f: () => unknown) => thrown(f) as CvmError;

describe("header cipher allowlist", () => {
  it("accepts cryptsetup's default (aes-xts-plain64, 512-bit key) and returns the expected mapping", () => {
    const h = parseLuks2(headerBytes("systemd-tpm2"));
    const want = checkHeaderCiphers("root", h, DEFAULT_CIPHERS);
    expect(want).toEqual({ volume: "root", uuid: h.uuid, cipher: "aes-xts-plain64", keyBits: 512, offsetSectors: Number(h.segments[0]!.offset) / 512, sectorSize: h.segments[0]!.sectorSize ?? 512 });
    expect(want.offsetSectors).toBeGreaterThan(0);
  });

  it.each([
    ["the segment under cipher_null", (j: any) => (j.segments["0"].encryption = "cipher_null-ecb"), /segment 0 uses "cipher_null-ecb" with a 512-bit key, which is not in the allowlist/],
    ["the segment under ecb", (j: any) => (j.segments["0"].encryption = "aes-ecb"), /segment 0 uses "aes-ecb"/],
    ["an unknown cipher", (j: any) => (j.segments["0"].encryption = "rot13-plain"), /"rot13-plain"/],
    ["a keyslot area under cipher_null", (j: any) => (j.keyslots["1"].area.encryption = "cipher_null-ecb"), /keyslot 1's area uses "cipher_null-ecb"/],
    ["a shorter volume key", (j: any) => { for (const k of Object.values<any>(j.keyslots)) k.key_size = 32; }, /with a 256-bit key, which is not in the allowlist/],
    ["an unencrypted segment", (j: any) => (j.segments["0"].type = "linear"), /segment 0 is of type "linear", not crypt/],
    ["a second segment", (j: any) => (j.segments["1"] = { ...j.segments["0"], offset: "33554432" }), /2 segments/],
    ["an odd data offset", (j: any) => (j.segments["0"].offset = "1000"), /not a whole number of sectors/],
  ])("refuses %s: typed LUKS error, nothing handed over", (_what, mutate, message) => {
    const e = refusal(() => checkHeaderCiphers("root", tampered(mutate), DEFAULT_CIPHERS));
    expect(e).toBeInstanceOf(CvmError);
    expect(e.code).toBe("LUKS");
    expect(e.message).toMatch(message);
    expect(e.message).toMatch(/^volume root: .*nothing is handed over$/);
  });

  it("follows the volume's own allowlist", () => {
    const h = tampered((j) => {
      j.segments["0"].encryption = "serpent-xts-plain64";
    });
    expect(() => checkHeaderCiphers("root", h, DEFAULT_CIPHERS)).toThrow(/serpent/);
    expect(() => checkHeaderCiphers("root", h, ["aes-xts-plain64:512", "serpent-xts-plain64:512"])).not.toThrow();
  });

  it("lets the config name only known ciphers and key sizes", () => {
    expect(isCipherSpec("aes-xts-plain64:512")).toBe(true);
    for (const bad of ["cipher_null-ecb:0", "aes-ecb:256", "aes-xts-plain64:128", "aes-xts-plain64", "rot13:512", ":512"]) expect(isCipherSpec(bad)).toBe(false);
    const ok = parseConfig({ volumes: [{ name: "r", device: "/dev/vda" }] }, "t");
    expect(ok.volumes[0]!.ciphers).toEqual(["aes-xts-plain64:512"]);
    expect(() => parseConfig({ volumes: [{ name: "r", device: "/dev/vda", ciphers: ["cipher_null-ecb:0"] }] }, "t")).toThrow(/volumes\[0\]\.ciphers\[0\]: expected "<cipher>:<key bits>"/);
    expect(() => parseConfig({ volumes: [{ name: "r", device: "/dev/vda", ciphers: [] }] }, "t")).toThrow(/ciphers/);
  });
});

describe("live dm-crypt mapping", () => {
  const uuid = "1fc44f44-f461-4372-9eba-423cadc94716";
  const dmUuid = `CRYPT-LUKS2-${uuid.replace(/-/g, "")}-luks-${uuid}`;
  const want = { volume: "root", uuid, cipher: "aes-xts-plain64", keyBits: 512, offsetSectors: 32768, sectorSize: 512, device: "254:0" };

  it("reads libcryptsetup's tables: keyring key, hex key, no key (cipher_null), sector size", () => {
    expect(parseCryptTable("r", dmUuid, `0 98304 crypt aes-xts-plain64 :64:logon:cryptsetup:${uuid}-d0 0 254:0 32768\n`)).toEqual({ name: "r", dmUuid, cipher: "aes-xts-plain64", keyBits: 512, offsetSectors: 32768, sectorSize: 512, device: "254:0" });
    expect(parseCryptTable("r", dmUuid, `0 98304 crypt aes-xts-plain64 ${"0".repeat(128)} 0 254:0 32768 1 sector_size:4096`)).toMatchObject({ keyBits: 512, sectorSize: 4096 });
    expect(parseCryptTable("r", dmUuid, "0 98304 crypt cipher_null-ecb - 0 254:0 32768")).toMatchObject({ cipher: "cipher_null-ecb", keyBits: 0 });
  });

  it("refuses tables that are not one crypt target", () => {
    expect(() => parseCryptTable("r", dmUuid, "0 10 crypt aes-xts-plain64 - 0 254:0 0\n10 10 linear 254:0 0")).toThrow(/2 targets/);
    expect(() => parseCryptTable("r", dmUuid, "0 10 linear 254:0 0")).toThrow(/not a dm-crypt target/);
    expect(() => parseCryptTable("r", dmUuid, "0 10 crypt aes-xts-plain64 zz?? 0 254:0 0")).toThrow(/key field/);
  });

  it("names every difference from what was checked", () => {
    const same = parseCryptTable("r", dmUuid, `0 98304 crypt aes-xts-plain64 :64:logon:cryptsetup:${uuid}-d0 0 254:0 32768`);
    expect(mappingDifferences(want, same)).toEqual([]);
    const swapped = parseCryptTable("r", "CRYPT-LUKS2-00000000000000000000000000000000-r", "0 98304 crypt cipher_null-ecb - 0 254:16 2048");
    const d = mappingDifferences(want, swapped);
    expect(d).toHaveLength(5);
    expect(d.join("; ")).toMatch(/dm UUID .* is not LUKS UUID.*cipher cipher_null-ecb \(checked: aes-xts-plain64\).*0-bit key \(checked: 512\).*data offset 2048 sectors \(checked: 32768\).*backing device 254:16/);
  });
});
