// The LUKS2 reader against real headers made by cryptsetup 2.6 and systemd-cryptenroll 252.
import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { CvmError } from "../../src/errors.js";
import { luksModel, parseLuks2 } from "../../src/luks/header.js";
import { fixtureText, headerBytes } from "../helpers/fixtures.js";

describe("LUKS2 header reader", () => {
  it("reads the systemd-tpm2 fixture: keyslots, the token exactly as cryptsetup exports it, segments, digests", () => {
    const h = parseLuks2(headerBytes("systemd-tpm2"));
    expect(h.copies).toEqual({ primary: true, secondary: true });
    expect(h.keyslots.map((k) => [k.id, k.kdf.type, k.kdf.hash, k.kdf.iterations])).toEqual([["0", "pbkdf2", "sha256", 1000], ["1", "pbkdf2", "sha512", 1000]]);
    expect(h.tokens).toHaveLength(1);
    expect(h.tokens[0]!.json).toEqual(JSON.parse(fixtureText("systemd-tpm2/token.json")));
    expect(h.segments[0]).toMatchObject({ type: "crypt" });
    expect(h.digests[0]!.keyslots.sort()).toEqual(["0", "1"]);
    expect(h.uuid).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("reads the tpm2-import fixtures", () => {
    for (const set of ["tpm2-import", "tpm2-import-unique"]) {
      const h = parseLuks2(headerBytes(set));
      expect(h.tokens[0]!.json).toEqual(JSON.parse(fixtureText(`${set}/token.json`)));
      expect(h.tokens[0]!.type).toBe("tpm2-import");
    }
  });

  it("falls back to the secondary copy when the primary is damaged, and says so", () => {
    const img = headerBytes("systemd-tpm2");
    img[4096 + 10]! ^= 0xff; // inside the primary's JSON area
    const h = parseLuks2(img);
    expect(h.copies).toEqual({ primary: false, secondary: true });
    expect(h.tokens[0]!.type).toBe("systemd-tpm2");
  });

  it("takes the valid copy with the higher seqid, the primary on a tie (as cryptsetup does)", () => {
    // The secondary copy (at hdr_size 16 KiB) made different, its checksum made right again.
    const variant = (seqidDelta: bigint) => {
      const img = headerBytes("systemd-tpm2");
      const off = 16384;
      const dv = new DataView(img.buffer, img.byteOffset);
      dv.setBigUint64(off + 16, dv.getBigUint64(off + 16, false) + seqidDelta, false);
      const json = img.subarray(off + 4096, off + 16384);
      const at = Buffer.from(json).indexOf('"type":"systemd-tpm2"');
      json.set(Buffer.from('"type":"systemd-tpm3"'), at);
      const area = img.slice(off, off + 16384);
      area.fill(0, 448, 512);
      img.set(createHash("sha256").update(area).digest(), off + 448);
      return img;
    };
    const newer = parseLuks2(variant(1n));
    expect(newer.copies).toEqual({ primary: true, secondary: true });
    expect(newer.tokens[0]!.type).toBe("systemd-tpm3");
    const tie = parseLuks2(variant(0n));
    expect(tie.tokens[0]!.type).toBe("systemd-tpm2");
    expect(tie.seqid).toBe(newer.seqid - 1n);
  });

  it("refuses an image with both copies damaged, a non-LUKS image and truncation — typed LUKS errors", () => {
    const img = headerBytes("systemd-tpm2");
    img[4096 + 10]! ^= 0xff;
    img[16384 + 4096 + 10]! ^= 0xff;
    expect(() => parseLuks2(img)).toThrow(/no valid header copy.*checksum mismatch/);
    expect(() => parseLuks2(new Uint8Array(65536))).toThrow(CvmError);
    expect(() => parseLuks2(headerBytes("systemd-tpm2").subarray(0, 5000))).toThrow(/truncated/);
  });

  it("JSON values that are objects where text belongs are typed errors, not the host's toString", () => {
    const j = { keyslots: {}, tokens: {}, segments: { "0": { type: "crypt", offset: "16777216", size: "dynamic" } }, digests: {} };
    expect(luksModel(j).segments[0]).toMatchObject({ type: "crypt", offset: "16777216", size: "dynamic" });
    for (const [where, patch] of [
      ["segment 0.type", (m: any) => (m.segments["0"].type = { toString: false })],
      ["segment 0.offset", (m: any) => (m.segments["0"].offset = { valueOf: 1, toString: 2 })],
      ["digest 0.type", (m: any) => (m.digests["0"] = { type: ["pbkdf2"], keyslots: [], segments: [] })],
    ] as const) {
      const m = structuredClone(j);
      patch(m);
      const e = (() => {
        try {
          luksModel(m);
        } catch (err) {
          return err;
        }
      })();
      expect(e, where).toBeInstanceOf(CvmError);
      expect((e as CvmError).message).toContain(`${where} is not a string`);
    }
  });
});
