// debug verify / evidence / detect on the compiled binary, with the real vectors.
import { copyFileSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { requireBin, ROOT, runBin, tempDir } from "../helpers/bin.js";
import { QUOTE_VECTORS, SNP_VECTORS, vbytes, VECTORS, vjson, validMoment } from "../helpers/vectors.js";

beforeAll(requireBin);

describe("debug verify (compiled binary, offline)", () => {
  it("az-snp-vtpm evidence (Trustee's real sample): every check passes with its nonce, a wrong nonce exits 7 naming the check", () => {
    const f = join(VECTORS, "azure/az-snp-vtpm-01.evidence.json");
    const nonce = vjson("azure/az-snp-vtpm-01.json").parsed.tpm_quote_extraData;
    const ok = runBin(["debug", "verify", f, "--json", "--at", "2026-01-01T00:00:00Z", "--nonce", nonce]);
    expect(ok.status, ok.stderr).toBe(0);
    expect(ok.json).toMatchObject({ status: "done", kind: "az-snp-vtpm", ok: true, fields: { product: "Milan", signer: "VCEK", pcrs: 24 } });
    const bad = runBin(["debug", "verify", f, "--json", "--at", "2026-01-01T00:00:00Z", "--nonce", "00".repeat(48)]);
    expect(bad.status).toBe(7);
    expect(bad.stderr).toMatch(/quote extraData = expected report data/);
  });

  it("az-tdx-vtpm evidence (Trustee's real sample, version 1): verifies with its nonce, down to Intel's root", () => {
    const f = join(ROOT, "test/vectors/trustee-az-tdx-vtpm/evidence-v1.json");
    const ok = runBin(["debug", "verify", f, "--json", "--at", "2026-01-01T00:00:00Z", "--nonce", Buffer.from("challenge").toString("hex")]);
    expect(ok.status, ok.stderr).toBe(0);
    expect(ok.json).toMatchObject({ status: "done", kind: "az-tdx-vtpm", ok: true, fields: { version: 1, pcrs: 24 } });
    expect(ok.json.checks.map((c: { name: string }) => c.name)).toContain("TD quote REPORTDATA binds the HCL variable data (the AK)");
  });

  it.each(SNP_VECTORS)("%s verifies with --certs in snpguest's layout", (id) => {
    const dir = tempDir("certs-");
    const ek = id.includes("vlek") ? "vlek" : "vcek";
    copyFileSync(join(VECTORS, `snp/${id}.${ek}.der`), join(dir, `${ek}.der`));
    const r = runBin(["debug", "verify", join(VECTORS, `snp/${id}.report.bin`), "--certs", dir, "--at", validMoment(vjson(`snp/${id}.json`)).toISOString(), "--json"]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.json).toMatchObject({ ok: true, kind: "snp-report", fields: { measurement: vjson(`snp/${id}.json`).parsed.measurement } });
  });

  it.each(QUOTE_VECTORS)("%s verifies with no --certs (PCK chain inside, Intel root built in)", (id) => {
    const r = runBin(["debug", "verify", join(VECTORS, `tdx/${id}.bin`), "--at", "2026-06-01T00:00:00Z", "--json"]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.json.fields.body.mr_td).toBe(vjson(`tdx/${id}.json`).parsed.body.mr_td);
  });

  it("Trustee snp evidence JSON verifies with the VCEK from its cert_chain", () => {
    const r = runBin(["debug", "verify", join(VECTORS, "snp/snp-02-genoa-v3.trustee-evidence.json"), "--at", "2025-06-01T00:00:00Z", "--json"]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.json.kind).toBe("trustee-snp");
  });

  it("a flipped byte fails with exit 7 and names the check", () => {
    const dir = tempDir("bad-");
    const b = vbytes("tdx/tdx-01-quote-v4.bin");
    b[48 + 136]! ^= 0xff; // MRTD
    writeFileSync(join(dir, "q.bin"), b);
    const r = runBin(["debug", "verify", join(dir, "q.bin"), "--at", "2026-06-01T00:00:00Z"]);
    expect(r.status).toBe(7);
    expect(r.stdout).toContain("FAIL quote signature");
    expect(r.stderr).toContain("verification failed: quote signature");
  });

  it("truncated, unknown and unverifiable files are clear TEE errors", () => {
    const dir = tempDir("bad-");
    writeFileSync(join(dir, "t.bin"), vbytes("tdx/tdx-01-quote-v4.bin").subarray(0, 700));
    writeFileSync(join(dir, "junk.bin"), "hello world, not evidence");
    let r = runBin(["debug", "verify", join(dir, "t.bin"), "--json"]);
    expect(r.status).toBe(7);
    expect(r.json.error.details.reason).toBe("malformed");
    r = runBin(["debug", "verify", join(dir, "junk.bin")]);
    expect(r.status).toBe(7);
    expect(r.stderr).toContain("not an SNP report, TDX quote");
    r = runBin(["debug", "verify", join(VECTORS, "tdx/tdx-06-tdreport-v1.bin"), "--json"]);
    expect(r.json.error.details.reason).toBe("not-verifiable");
    expect(runBin(["debug", "verify"]).status).toBe(2);
  });

  it("debug evidence with the simulated TEE writes evidence that debug verify recognises", () => {
    const dir = tempDir("ev-");
    mkdirSync(join(dir, "x"));
    writeFileSync(join(dir, "config.json"), JSON.stringify({ tee: { allow_simulated: true } }));
    let r = runBin(["debug", "evidence", "--nonce", "0102", "--out", join(dir, "ev.json"), "--config", join(dir, "config.json"), "--cmdline", "/dev/null", "--json"]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.json).toMatchObject({ tee: "sample", fields: { svn: "1" } });
    r = runBin(["debug", "verify", join(dir, "ev.json"), "--json"]);
    expect(r.json.error.details.reason).toBe("not-verifiable");
    r = runBin(["debug", "evidence", "--json"]);
    expect(r.status).toBe(7);
    expect(r.json.error.message).toMatch(/no TEE found/);
  });
});
