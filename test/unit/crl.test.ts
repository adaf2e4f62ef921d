// CRLs on real Intel collateral (go-tdx-guest testdata: the PCK Platform CA's and the Root CA's CRLs, and a
// quote whose PCK chain they cover), at a moment when both CRLs are current.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseQuote } from "../../src/tee/tdx/layout.js";
import { checkCrls, parseCrl } from "../../src/tee/verify/crl.js";
import { pemBlocks } from "../../src/tee/verify/der.js";
import { Verification } from "../../src/tee/verify/result.js";
import { verifyTdx } from "../../src/tee/verify/tdx.js";
import { parseCertificate } from "../../src/tee/verify/x509.js";
import { ROOT } from "../helpers/bin.js";

const dir = join(ROOT, "test/vectors/go-tdx-guest");
const pckCrl = new Uint8Array(readFileSync(join(dir, "pckcrl")));
const rootCrl = new Uint8Array(readFileSync(join(dir, "rootcrl.der")));
const quote = parseQuote(new Uint8Array(readFileSync(join(dir, "cos-113-tdx-quote.dat"))));
const chain = pemBlocks(quote.pckChainPem).map(parseCertificate);
const when = new Date("2023-06-20T00:00:00Z"); // inside both CRLs' thisUpdate..nextUpdate

describe("certificate revocation lists", () => {
  it("parses Intel's PCK CRL: issuer, dates, 44 revoked serials", () => {
    const c = parseCrl(pckCrl);
    expect(c.revoked.size).toBe(44);
    expect(c.revoked.has("6fc34e5023e728923435d61aa4b83c618166ad35")).toBe(true);
    expect(c.thisUpdate.toISOString()).toBe("2023-06-08T07:27:52.000Z");
    expect(parseCrl(rootCrl).revoked.size).toBe(0);
  });

  it("both CRLs verify under the chain's CA keys and revoke nothing in it", async () => {
    const v = new Verification();
    await checkCrls(v, chain, [pckCrl, rootCrl], when);
    expect(v.checks.filter((c) => !c.ok)).toEqual([]);
    expect(v.checks.map((c) => c.name)).toEqual(expect.arrayContaining(["CRL of Intel SGX PCK Platform CA signed by it", "Intel SGX PCK Certificate not revoked", "CRL of Intel SGX Root CA current", "Intel SGX PCK Platform CA not revoked"]));
  });

  it("a revoked PCK certificate, a CRL out of date, a CRL not signed by its issuer: refused with the reason", async () => {
    const revoked = parseCrl(pckCrl);
    revoked.revoked.add(Buffer.from(chain[0]!.serial).toString("hex").replace(/^(00)+/, ""));
    let v = new Verification();
    await checkCrls(v, chain, [revoked], when);
    expect(v.firstFailure).toMatchObject({ name: "Intel SGX PCK Certificate not revoked", reason: "revoked" });

    v = new Verification();
    await checkCrls(v, chain, [pckCrl], new Date("2024-01-01T00:00:00Z"));
    expect(v.firstFailure).toMatchObject({ reason: "crl", name: "CRL of Intel SGX PCK Platform CA current" });

    const forged = pckCrl.slice();
    forged[forged.length - 80]! ^= 1; // inside the revoked list, under the signature
    v = new Verification();
    await checkCrls(v, chain, [forged], when);
    expect(v.firstFailure?.reason).toMatch(/^(crl|malformed)$/);

    v = new Verification();
    await checkCrls(v, chain, [Uint8Array.of(0x30, 0x03, 1, 2, 3)], when);
    expect(v.firstFailure?.reason).toBe("malformed");
  });

  it("verifyTdx applies the CRLs it is given", async () => {
    const r = await verifyTdx(quote, when, { crls: [pckCrl, rootCrl] });
    expect(r.v.checks.some((c) => c.name === "Intel SGX PCK Certificate not revoked" && c.ok)).toBe(true);
  });
});

describe("the go-tdx-guest COS 113 quote", () => {
  it("verifies (signature, QE report and identity, PCK chain to the pinned root, basicConstraints)", async () => {
    const r = await verifyTdx(quote, new Date("2025-06-01T00:00:00Z"));
    expect(r.v.firstFailure).toBeUndefined();
  });
});
