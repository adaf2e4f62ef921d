// vTPM-quote evidence (Azure's az-snp-vtpm) on a real swtpm: an AK made by tpm2-tools at 0x81000003, an HCL
// report in NV 0x01400001 that the fake paravisor refreshes when the guest writes NV 0x01400002, the VCEK from
// a fake metadata service, the dev broker checking it all. The compiled agent unlocks through it over TLS into
// a private session keyring; each hostile variant (a stale report, an AK the report does not bind, a truncated
// NV index, PCRs that keep moving, a replayed nonce, collateral from the wrong root) is a typed error and
// nothing reaches the keyring. Not verifiable here: a real paravisor and a VCEK-signed report for our nonce
// (no Azure VM); the report's own signature is the one check the dev broker simulates, in dev mode only.
import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hex } from "../../src/bytes.js";
import { recordUnlocked } from "../../src/flow/boot-event.js";
import { fetchTransport } from "../../src/kbs/transport.js";
import { Logger, memorySink } from "../../src/log/logger.js";
import { FakeNative } from "../../src/native/fake.js";
import { parseAzVtpm, verifyAzVtpm } from "../../src/tee/verify/azure.js";
import { acceptTdQuote, acceptVcek, fetchTdQuote, fetchVcek } from "../../src/tee/azure/imds.js";
import { parseHclReport } from "../../src/tee/azure/hcl.js";
import { detectProvider, type ProviderEnv } from "../../src/tee/providers.js";
import { parseReport } from "../../src/tee/snp/layout.js";
import { Tpm } from "../../src/tpm/commands.js";
import { swtpmTransport } from "../../src/tpm/transport.js";
import { issueServerCert, makeCa, type TestPki } from "../../tools/dev-broker/ca.js";
import { startBroker, type RunningBroker } from "../../tools/dev-broker/server.js";
import { memoryStore } from "../../tools/dev-broker/store.js";
import { initHclReport, makeAk, sampleSnpReport, startParavisor, writeTemplate, type Paravisor } from "../helpers/azure-vtpm.js";
import { BIN, ROOT, requireBin, runBin, runBinAsync, runInSessionAsync, tempDir } from "../helpers/bin.js";
import { sampleCollateral, startFakeImds, type FakeImds } from "../helpers/fake-imds.js";
import { makeLuksImage } from "../helpers/luks.js";
import { startSwtpm, type Swtpm } from "../helpers/swtpm.js";
import { VECTORS } from "../helpers/vectors.js";

const PASS = "vtpm-quote-passphrase";
interface AzureTpm {
  sw: Swtpm;
  template: string;
  pv: Paravisor;
}
const started: { stop?(): Promise<void>; close?(): Promise<void> }[] = [];

/** A swtpm dressed as Azure's vTPM; `nvSize` and `otherAk` make the hostile variants, `flags` the paravisor's. */
async function azureTpm(opts: { nvSize?: number; otherAk?: boolean; flags?: string[] } = {}): Promise<AzureTpm> {
  const sw = await startSwtpm();
  started.push(sw);
  const dir = tempDir("aztpm-");
  makeAk(sw.port, dir);
  const template = join(dir, "template.json");
  await writeTemplate(sw.port, template, { otherAk: opts.otherAk });
  initHclReport(sw.port, template, opts.nvSize);
  const pv = await startParavisor(sw.port, template, opts.flags);
  started.push(pv);
  return { sw, template, pv };
}

let good: AzureTpm, imds: FakeImds, pki: TestPki, broker: RunningBroker, image: string, dir: string;
const log = () => new Logger("debug", [memorySink()]);
const envFor = (spec: string, imdsUrl = imds.url): ProviderEnv & { allowSimulated: boolean } => ({
  native: async () => new FakeNative(),
  log: log(),
  vmpl: 0,
  root: tempDir("noroot-"), // no /dev/sev-guest, /dev/tdx_guest or configfs-tsm here
  allowSimulated: false,
  tpm: async () => {
    const m = /port=(\d+)/.exec(spec)!;
    const tpm = new Tpm(await swtpmTransport("127.0.0.1", Number(m[1])));
    return { tpm, release: () => tpm.transport.close() };
  },
  imds: { transport: fetchTransport(undefined), baseUrl: imdsUrl },
  remainingMs: () => 30_000,
});

beforeAll(async () => {
  requireBin();
  dir = tempDir("vtpmq-");
  good = await azureTpm();
  imds = await startFakeImds(sampleCollateral());
  started.push(imds);
  pki = makeCa(join(dir, "ca"));
  image = makeLuksImage(PASS, dir);
  broker = await startBroker({ store: memoryStore({ "cvm/luks/root": PASS }), policy: { allowTees: ["az-snp-vtpm"], denyAll: false }, dev: true, tls: issueServerCert(pki, "broker", ["127.0.0.1"]) });
  started.push(broker);
}, 120_000);
afterAll(async () => {
  for (const s of started.reverse()) await (s.stop ?? s.close)!.call(s).catch(() => {});
});

/** The compiled agent's unlock in a private session keyring; prints KEY-OPENS when the handed-over key
 *  opens the image and NO-KEY when the keyring holds none. */
async function agentUnlock(tpmSpec: string, extra: Record<string, unknown> = {}, b: RunningBroker = broker) {
  const cfg = join(tempDir("cfg-"), "config.json");
  writeFileSync(cfg, JSON.stringify({ broker: { url: b.url, ca: pki.caPath }, tee: { imds_url: imds.url }, tpm: { device: tpmSpec }, deadline_s: 40, volumes: [{ name: "root", device: image, resource: "cvm/luks/root" }], keyring: { keyring: "@s" }, ...extra }));
  const r = await runInSessionAsync(`${BIN} unlock --json --config ${cfg} --cmdline /dev/null --run-dir ${dir}/run-$$; rc=$?; if k=$(keyctl search @s user cryptsetup 2>/dev/null); then keyctl pipe $k | cryptsetup open --test-passphrase --key-file=- ${image} && echo KEY-OPENS; else echo NO-KEY; fi; exit $rc`, {}, 90_000);
  expect(r.stdout + r.stderr).not.toContain(PASS);
  return r;
}

describe("vTPM-quote evidence on swtpm (az-snp-vtpm)", () => {
  it("detection finds the HCL report and says so; the evidence has Trustee's shape and verifies but for the simulated hardware signature", async () => {
    const c = await detectProvider(envFor(good.pv.spec));
    expect(c.provider?.tee).toBe("az-snp-vtpm");
    expect(c.found.join("\n")).toMatch(/vTPM: an HCL report \(az-snp-vtpm, 2048 bytes\) in NV index 0x01400001/);
    const digest = new Uint8Array(randomBytes(48));
    const ev = (await c.provider!.evidence(digest)) as any;
    expect(Object.keys(ev)).toEqual(["version", "tpm_quote", "hcl_report", "vcek"]);
    expect(Object.keys(ev.tpm_quote)).toEqual(["signature", "message", "pcrs"]);
    expect(ev.tpm_quote.pcrs).toHaveLength(24);
    const res = await verifyAzVtpm(parseAzVtpm(ev, "az-snp-vtpm"), "az-snp-vtpm", new Date("2026-06-01T00:00:00Z"), { expectedReportData: digest });
    expect(res.v.checks.filter((x) => !x.ok).map((x) => x.name)).toEqual(["SNP report signature"]);
    expect(res.hcl.userData!.toLowerCase()).toBe(hex(digest) + "0".repeat(32));
    // The quote is over the PCRs the TPM holds now.
    const t = new Tpm(await swtpmTransport("127.0.0.1", good.sw.port));
    try {
      expect(hex((await t.pcrRead("sha256", [0]))!.get(0)!)).toBe(ev.tpm_quote.pcrs[0]);
    } finally {
      t.transport.close();
    }
  }, 60_000);

  it("an admin's view: debug detect names the vTPM and why; debug evidence writes evidence that debug verify checks", async () => {
    const d = runBin(["debug", "detect", "--tpm-device", good.pv.spec, "--json"]);
    expect(d.status, d.stderr).toBe(0);
    expect(d.json).toMatchObject({ tee: "az-snp-vtpm", why: expect.stringMatching(/no TEE device: the paravisor's vTPM holds an HCL report/) });
    expect(d.json.found).toEqual(expect.arrayContaining(["configfs-tsm: absent", "vTPM: an HCL report (az-snp-vtpm, 2048 bytes) in NV index 0x01400001"]));
    const cfgDir = tempDir("dbg-");
    writeFileSync(join(cfgDir, "config.json"), JSON.stringify({ tee: { imds_url: imds.url } }));
    const nonce = "ab".repeat(48);
    const e = await runBinAsync(["debug", "evidence", "--nonce", nonce, "--tpm-device", good.pv.spec, "--config", join(cfgDir, "config.json"), "--cmdline", "/dev/null", "--out", join(cfgDir, "ev.json"), "--json"]);
    expect(e.status, e.stderr).toBe(0);
    expect(e.json).toMatchObject({ tee: "az-snp-vtpm", fields: { quote_extra_data: nonce, hcl_user_data: nonce.toUpperCase() + "0".repeat(32) } });
    const v = runBin(["debug", "verify", join(cfgDir, "ev.json"), "--nonce", nonce, "--json"]);
    // Everything the guest produced verifies; the paravisor's report carries no hardware signature here.
    expect(v.status).toBe(7);
    expect(v.json.error.details.check).toBe("SNP report signature");
    const text = runBin(["debug", "verify", join(cfgDir, "ev.json"), "--nonce", nonce]);
    expect(text.stdout).toMatch(/FAIL SNP report signature/);
    expect(text.stdout.match(/FAIL/g)).toHaveLength(1);
    expect(text.stdout).toMatch(/ok {3}quote signed by HCLAkPub/);
  }, 60_000);

  it("the compiled agent unlocks through the dev broker over TLS with it: the key reaches the keyring and opens the volume", async () => {
    const r = await agentUnlock(good.pv.spec);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain("KEY-OPENS");
    const json = JSON.parse(r.stdout.split("\n").find((l) => l.startsWith("{"))!);
    expect(json.tee).toBe("az-snp-vtpm");
    expect(r.stderr).toMatch(/evidence through SNP through the paravisor's vTPM/);
    expect(imds.requests).toContain("GET /metadata/THIM/amd/certification");
  }, 90_000);

  it("a paravisor slow to refresh is waited for; one that never does is a stale report: TEE error, nothing in the keyring", async () => {
    const slow = await azureTpm({ flags: ["--refresh-delay-ms", "700"] });
    const ok = await detectProvider(envFor(slow.pv.spec));
    const digest = new Uint8Array(randomBytes(48));
    const ev = (await ok.provider!.evidence(digest)) as any;
    expect(parseHclReport(Buffer.from(ev.hcl_report.replace(/=+$/, ""), "base64url")).userData!.toLowerCase().startsWith(hex(digest))).toBe(true);

    const stale = await azureTpm({ flags: ["--never-refresh"] });
    const r = await agentUnlock(stale.pv.spec);
    expect(r.status).toBe(7);
    expect(r.stdout).toContain("NO-KEY");
    expect(r.stderr).toMatch(/did not refresh the HCL report with this attempt's report data within 5\.0 s/);
  }, 120_000);

  it("an AK the HCL report does not bind, and a truncated NV index: TEE errors, nothing in the keyring", async () => {
    const other = await azureTpm({ otherAk: true });
    let r = await agentUnlock(other.pv.spec);
    expect(r.status).toBe(7);
    expect(r.stdout).toContain("NO-KEY");
    expect(r.stderr).toMatch(/not the key the HCL report binds \(HCLAkPub\)/);

    const cut = await azureTpm({ nvSize: 1000 });
    r = await agentUnlock(cut.pv.spec);
    expect(r.status).toBe(7);
    expect(r.stdout).toContain("NO-KEY");
    expect(r.stderr).toMatch(/HCL report: NV index 0x01400001 holds 1000 bytes, fewer than the report's fixed part \(1236\)/);
  }, 120_000);

  it("a PCR extended between the quote and the PCR read is quoted again; PCRs that never hold still: TPM error, nothing in the keyring", async () => {
    const once = await azureTpm({ flags: ["--extend-after-quote", "1"] });
    const env = envFor(once.pv.spec);
    const mem = memorySink();
    env.log = new Logger("debug", [mem]);
    const c = await detectProvider(env);
    const digest = new Uint8Array(randomBytes(48));
    const ev = (await c.provider!.evidence(digest)) as any;
    expect(mem.lines.join("\n")).toMatch(/quoting again \(attempt 2 of 3\)/);
    const res = await verifyAzVtpm(parseAzVtpm(ev, "az-snp-vtpm"), "az-snp-vtpm", new Date("2026-06-01T00:00:00Z"), { expectedReportData: digest });
    expect(res.v.checks.find((x) => x.name === "PCRs = quote's pcrDigest")?.ok).toBe(true);

    const always = await azureTpm({ flags: ["--extend-after-quote", "-1"] });
    const r = await agentUnlock(always.pv.spec);
    expect(r.status).toBe(8);
    expect(r.stdout).toContain("NO-KEY");
    expect(r.stderr).toMatch(/PCRs kept changing while being quoted \(3 quotes/);
  }, 120_000);

  it("the broker refuses evidence for another nonce (a replay) and a quote whose PCR list was changed", async () => {
    const c = await detectProvider(envFor(good.pv.spec));
    const post = (path: string, body: unknown, cookie?: string) =>
      fetch(`${plain.url}/kbs/v0/${path}`, { method: "POST", headers: { "content-type": "application/json", ...(cookie ? { cookie } : {}) }, body: JSON.stringify(body) });
    const plain = await startBroker({ store: memoryStore({ "cvm/luks/root": PASS }), policy: { allowTees: ["az-snp-vtpm"], denyAll: false }, dev: true });
    try {
      const attest = async (evidenceFor: (digest: Uint8Array) => Promise<unknown>) => {
        const a = await post("auth", { version: "0.4.0", tee: "az-snp-vtpm", "extra-params": "" });
        const cookie = `kbs-session-id=${/kbs-session-id=([0-9a-f]+)/.exec(a.headers.get("set-cookie")!)![1]}`;
        const { nonce } = (await a.json()) as { nonce: string };
        const pub = { kty: "EC", crv: "P-256", alg: "ECDH-ES+A256KW", x: "AAAA", y: "AAAA" };
        const { runtimeDataDigest } = await import("../../src/kbs/client.js");
        const digest = runtimeDataDigest(nonce, pub as never);
        const ev = await evidenceFor(digest);
        return post("attest", { "init-data": null, "runtime-data": { nonce, "tee-pubkey": pub }, "tee-evidence": { primary_evidence: ev, additional_evidence: "" } }, cookie);
      };
      let kept: unknown;
      expect((await attest(async (d) => (kept = await c.provider!.evidence(d)))).status).toBe(200);
      expect((await attest(async () => kept)).status).toBe(401); // the earlier session's evidence, replayed
      expect((await attest(async (d) => {
        const ev = structuredClone((await c.provider!.evidence(d)) as any);
        ev.tpm_quote.pcrs[7] = "11".repeat(32); // swtpm's PCR 7 is all zeros: another value
        return ev;
      })).status).toBe(401);
    } finally {
      await plain.close();
    }
  }, 60_000);

  it("with a policy pinning PCR 4, 7 and 11 the broker releases in the initramfs and refuses once the unlocked event moved PCR 11", async () => {
    const t = new Tpm(await swtpmTransport("127.0.0.1", good.sw.port));
    let pcrs: Map<number, Uint8Array>;
    try {
      pcrs = await t.pcrRead("sha256", [4, 7, 11]);
    } finally {
      t.transport.close();
    }
    const pinned = await startBroker({
      store: memoryStore({ "cvm/luks/root": PASS }),
      policy: { allowTees: ["az-snp-vtpm"], denyAll: false, tee: { vtpm: { pcrs: Object.fromEntries([4, 7, 11].map((i) => [String(i), [hex(pcrs.get(i)!)]])) } } },
      dev: true,
      tls: issueServerCert(pki, "pinned", ["127.0.0.1"]),
    });
    try {
      let r = await agentUnlock(good.pv.spec, {}, pinned);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toContain("KEY-OPENS");
      // What after-unlock does once the volumes are active: root, booted, now holds another PCR 11.
      const t2 = new Tpm(await swtpmTransport("127.0.0.1", good.sw.port));
      try {
        expect(await recordUnlocked({ tpm: t2, rtmr3Path: join(dir, "no-rtmr"), log: log() })).toContain("pcr11:sha256");
      } finally {
        t2.transport.close();
      }
      r = await agentUnlock(good.pv.spec, {}, pinned);
      expect(r.status).toBe(4);
      expect(r.stdout).toContain("NO-KEY");
    } finally {
      await pinned.close();
    }
  }, 120_000);
});

describe("the instance metadata service's answers", () => {
  it("the VCEK is fetched with Metadata: true, retried through 503s, and accepted only under the pinned AMD root for this chip", async () => {
    const flaky = await startFakeImds({ ...sampleCollateral(), failFirst: 2 });
    const slept: number[] = [];
    try {
      const got = await fetchVcek({ transport: fetchTransport(undefined), baseUrl: flaky.url, remainingMs: () => 10_000, sleep: async (ms) => void slept.push(ms) });
      expect(flaky.requests).toHaveLength(3);
      expect(slept).toEqual([250, 500]);
      const report = parseReport(sampleSnpReport().report);
      await acceptVcek(got.vcek, got.chain, report);
      // The same VCEK with Genoa's chain: the ARK is not Milan's, refused.
      const genoa = readFileSync(join(VECTORS, "snp/ca/ask_ark_genoa.pem"), "utf8");
      const { pemBlocks } = await import("../../src/tee/verify/der.js");
      await expect(acceptVcek(got.vcek, pemBlocks(genoa), report)).rejects.toMatchObject({ code: "TEE", message: expect.stringMatching(/VCEK from the instance metadata service is refused/) });
      // Another chip's VCEK (Trustee's Milan sample VCEK of snp-01) for this report: refused by hwID.
      const other = new Uint8Array(readFileSync(join(VECTORS, "snp/snp-01-milan-v2.vcek.der")));
      await expect(acceptVcek(other, got.chain, report)).rejects.toMatchObject({ code: "TEE", message: expect.stringMatching(/refused: VCEK (hwID|TCB)/) });
    } finally {
      await flaky.close();
    }
    await expect(fetchVcek({ transport: fetchTransport(undefined), baseUrl: "http://127.0.0.1:9", remainingMs: () => 2000, sleep: async () => {} })).rejects.toMatchObject({ code: "TEE", message: expect.stringMatching(/instance metadata service at http:\/\/127\.0\.0\.1:9/) });
  });

  it("the TD quote for a TDREPORT (Trustee's real az-tdx-vtpm sample) is accepted only if it binds this HCL report", async () => {
    const tdx = JSON.parse(readFileSync(join(ROOT, "test/vectors/trustee-az-tdx-vtpm/evidence-v1.json"), "utf8"));
    const hclBytes = Buffer.from(tdx.hcl_report.replace(/=+$/, ""), "base64url");
    const quote = Buffer.from(tdx.td_quote.replace(/=+$/, ""), "base64url");
    const svc = await startFakeImds({ tdQuote: quote });
    try {
      const hcl = parseHclReport(hclBytes);
      const raw = await fetchTdQuote({ transport: fetchTransport(undefined), baseUrl: svc.url, remainingMs: () => 10_000 }, hcl.hardware);
      expect(svc.requests).toEqual(["POST /acc/tdquote"]);
      const q = await acceptTdQuote(raw, hcl);
      expect(q.header.version).toBe(4);
      const changed = parseHclReport(hclBytes);
      changed.varData = new Uint8Array([...changed.varData.subarray(0, 10), 0x20, ...changed.varData.subarray(11)]);
      await expect(acceptTdQuote(raw, changed)).rejects.toMatchObject({ code: "TEE", message: expect.stringMatching(/not made for this guest's TDREPORT/) });
      const broken = Uint8Array.from(raw);
      broken[raw.length - 200]! ^= 1; // inside the PCK chain's PEM
      await expect(acceptTdQuote(broken, hcl)).rejects.toMatchObject({ code: "TEE" });
    } finally {
      await svc.close();
    }
  });
});
