// JWE and JCS against the KBS vectors (shared/vectors/kbs, ids in each case name).
import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { vjson } from "../helpers/vectors.js";
import { b64Decode, b64urlDecode, hex } from "../../src/jose/b64.js";
import { jcs } from "../../src/jose/jcs.js";
import { encryptJwe } from "../../src/jose/jwe-encrypt.js";
import { concatKdf, decryptJwe, generateTeeKey, importPrivateJwk } from "../../src/jose/jwe.js";
import { CvmError } from "../../src/errors.js";
import type { Secret } from "../../src/log/secret.js";

const load = (f: string) => vjson(`kbs/${f}`);
const ec = load("jwe-ecdh-es-a256kw-p256.json");
const neg = load("jwe-negative.json");
const rd = load("report-data.json");
const sk = () => importPrivateJwk(ec.tee_private_jwk);
const text = (s: Secret) => s.use((b) => new TextDecoder().decode(b));

describe("JCS (kbs-report-data-001)", () => {
  it("canonicalizes the runtime-data object exactly", () => {
    expect(jcs(rd.runtime_data_object)).toBe(rd.canonical_json);
    expect(createHash("sha384").update(jcs(rd.runtime_data_object)).digest("hex")).toBe(rd.canonical_json_sha384_hex);
  });
  it("matches Trustee's own unit test anchor", () => {
    const h = createHash("sha384").update(jcs({ b: 1, a: "test", c: { d: "e" } })).digest("hex");
    expect(h).toBe("e71ce8e70d814ba6639c3612ebee0ff1f76f650f8dbb5e47157e0f3f525cd22c4597480a186427c813ca941da78870c3");
  });
});

describe("JWE ECDH-ES+A256KW (kbs-jwe-ecdh-es-a256kw-p256-001)", () => {
  it("derives the vector's KEK from its Z", () => {
    expect(hex(concatKdf(Buffer.from(ec.intermediate.z_hex, "hex"), "ECDH-ES+A256KW"))).toBe(ec.intermediate.kek_hex);
  });
  it("decrypts the Trustee-shaped vector", async () => {
    expect(text(await decryptJwe(ec.jwe, await sk()))).toBe(ec.plaintext_utf8);
  });
  it("round-trips encrypt → decrypt with a fresh key, header in Trustee's member order", async () => {
    const k = await generateTeeKey();
    const jwe = encryptJwe(new TextEncoder().encode("s3cret passphrase"), k.publicJwk);
    expect(Object.keys(jwe)).toEqual(["protected", "encrypted_key", "iv", "ciphertext", "tag"]);
    const header = new TextDecoder().decode(b64urlDecode(jwe.protected, "p"));
    expect(header).toMatch(/^\{"alg":"ECDH-ES\+A256KW","enc":"A256GCM","epk":\{"crv":"P-256","kty":"EC","x":"[^"]+","y":"[^"]+"\}\}$/);
    expect(text(await decryptJwe(jwe, k.privateKey))).toBe("s3cret passphrase");
    expect(k.privateKey.extractable).toBe(false);
  });
  it("fresh keys differ and the JWK has fixed-width coordinates", async () => {
    const a = await generateTeeKey(), b = await generateTeeKey();
    expect(a.publicJwk.x).not.toBe(b.publicJwk.x);
    expect(b64urlDecode(a.publicJwk.x, "x").length).toBe(32);
    expect(Object.keys(a.publicJwk)).toEqual(["kty", "crv", "alg", "x", "y"]);
  });
});

describe("JWE negative cases (kbs-jwe-negative-001)", () => {
  const cases: [string, any][] = neg.cases.map((c: any) => [c.id, c]);
  it.each(cases)("%s is rejected with a typed error", async (_id, c) => {
    let err: unknown;
    try {
      await decryptJwe(c.jwe, await sk());
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(CvmError);
    expect((err as CvmError).code).toBe("BROKER_PROTOCOL");
    expect((err as Error).message).not.toContain(ec.plaintext_utf8);
  });
  it("crypto failures are uniform", async () => {
    const msgs: string[] = [];
    for (const c of neg.cases.filter((c: any) => /bitflip|reencoded/.test(c.id))) {
      await decryptJwe(c.jwe, await sk()).catch((e) => msgs.push((e as Error).message));
    }
    expect(msgs.length).toBe(5);
    expect(new Set(msgs)).toEqual(new Set(["JWE: decryption failed"]));
  });
  it("the RSA vector is refused: the agent asked for ECDH-ES+A256KW", async () => {
    await expect(decryptJwe(load("jwe-rsa-oaep-256.json").jwe, await sk())).rejects.toThrow(/not allowed|epk/);
  });
  it("a wrong key fails uniformly", async () => {
    await expect(decryptJwe(ec.jwe, (await generateTeeKey()).privateKey)).rejects.toThrow("JWE: decryption failed");
  });
  it("an epk that is not on the curve fails uniformly", async () => {
    const p = JSON.parse(Buffer.from(ec.jwe.protected, "base64url").toString());
    p.epk.y = p.epk.x;
    const bad = { ...ec.jwe, protected: Buffer.from(JSON.stringify(p)).toString("base64url") };
    await expect(decryptJwe(bad, await sk())).rejects.toThrow("JWE: decryption failed");
  });
  it("sample evidence's report_data is the standard-base64 digest", () => {
    expect(hex(b64Decode(rd.sample_evidence.report_data, "rd"))).toBe(rd.canonical_json_sha384_hex);
  });
});
