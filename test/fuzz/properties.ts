// Fuzz properties for every parser that reads untrusted bytes: whatever comes in, a parser returns or
// throws its own typed error — never a TypeError/RangeError, never a hang. Shared by the test suite
// (100k cases in all) and bench/fuzz (1M).
import fc from "fast-check";
import { parseConfig } from "../../src/config/config.js";
import { CvmError } from "../../src/errors.js";
import { parseJwe } from "../../src/jose/jwe.js";
import { parseJsonBig } from "../../src/json.js";
import { detectKind } from "../../src/tee/kind.js";
import { LayoutError } from "../../src/tee/layout.js";
import { snpReportFromJson } from "../../src/tee/snp/evidence.js";
import { parseCertTable, parseReport } from "../../src/tee/snp/layout.js";
import { parseQuote, parseTdReport } from "../../src/tee/tdx/layout.js";
import { DerError } from "../../src/tee/verify/der.js";
import { parseCertificate } from "../../src/tee/verify/x509.js";
import { luksModel, parseLuks2 } from "../../src/luks/header.js";
import { parseImportToken } from "../../src/flow/convert.js";
import { decode, TpmFormatError, TYPES } from "../../src/tpm/marshal.js";
import { fixtureText } from "../helpers/fixtures.js";
import { headerBytes } from "../helpers/fixtures.js";
import { vbytes, vjson } from "../helpers/vectors.js";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { applyCmdline, shellEscapes } from "../../src/config/cmdline.js";
import { checkHeaderCiphers, DEFAULT_CIPHERS } from "../../src/luks/ciphers.js";
import { parseCryptTable } from "../../src/luks/mapping.js";
import { authenticodeRanges } from "../../src/measured-boot/authenticode.js";
import { ccelRtmrs, trimCcel } from "../../src/measured-boot/ccel.js";
import { parseEventLog, replay } from "../../src/measured-boot/eventlog.js";
import { parseOvmf } from "../../src/tee/snp/measure.js";
import { parseCrl } from "../../src/tee/verify/crl.js";
import { ROOT } from "../helpers/bin.js";
import { rewriteLuksJson } from "../helpers/luks-tamper.js";
import { parseHclReport } from "../../src/tee/azure/hcl.js";
import { parseQuoteAttest } from "../../src/tpm/attest.js";
import { b64urlLoose, hexBytes, parseAzVtpm } from "../../src/tee/azure/evidence.js";
import { parseTdQuoteAnswer, parseVcekAnswer } from "../../src/tee/azure/imds.js";
import { encode, Reader, tpm2b } from "../../src/tpm/marshal.js";

const azure = vjson("azure/az-snp-vtpm-01.evidence.json");
const hcl = new Uint8Array(Buffer.from(azure.hcl_report.replace(/=+$/, ""), "base64url"));
const attest = Uint8Array.from(Buffer.from(azure.tpm_quote.message, "hex"));
const azTdx = JSON.parse(readFileSync(join(ROOT, "test/vectors/trustee-az-tdx-vtpm/evidence-v1.json"), "utf8"));
/** A TPM2_Quote answer's parameters: TPM2B_ATTEST, then TPMT_SIGNATURE (RSASSA, SHA-256, 256 bytes). */
const quoteAnswer = Uint8Array.from([...encode(tpm2b, attest), ...encode(TYPES.TPMT_SIGNATURE, { sigAlg: 0x14, hash: 0x0b, sig: Uint8Array.from(Buffer.from(azure.tpm_quote.signature, "hex")) })]);
const nvPublicAnswer = encode(TYPES.TPM2B_NV_PUBLIC, { nvIndex: 0x01400001, nameAlg: 0x0b, attributes: 0x02060006, authPolicy: new Uint8Array(0), dataSize: 2600 });
const vcekPem = `-----BEGIN CERTIFICATE-----\n${Buffer.from(azure.vcek.replace(/=+$/, ""), "base64url").toString("base64")}\n-----END CERTIFICATE-----\n`;
const fuzzConfig = parseConfig({ deadline_s: 60, volumes: [{ name: "root", device: "/dev/vda2" }] }, "fuzz");

const typed = (allowed: (new (...a: any[]) => Error)[]) => (fn: () => unknown) => {
  try {
    fn();
  } catch (e) {
    if (!allowed.some((C) => e instanceof C)) throw e;
  }
};
const layoutOnly = typed([LayoutError]);
const derOnly = typed([DerError]);
const cvmOnly = typed([CvmError]);

/** Random bytes, and a real sample with random bytes overwritten, cut or extended. */
function mutated(sample: Uint8Array, maxLen = sample.length + 64): fc.Arbitrary<Uint8Array> {
  const edits = fc.array(fc.tuple(fc.nat(sample.length - 1), fc.integer({ min: 0, max: 255 })), { maxLength: 8 });
  const fromSample = fc.tuple(edits, fc.integer({ min: 0, max: maxLen })).map(([ed, len]) => {
    const b = new Uint8Array(len);
    b.set(sample.subarray(0, Math.min(len, sample.length)));
    for (const [i, v] of ed) if (i < len) b[i] = v;
    return b;
  });
  return fc.oneof(fromSample, fc.uint8Array({ maxLength: maxLen }));
}

const snp = vbytes("snp/snp-03-turin-v5.report.bin");
const quote = vbytes("tdx/tdx-04-quote-v5.bin");
const tdreport = vbytes("tdx/tdx-06-tdreport-v1.bin");
const vcek = vbytes("snp/snp-03-turin-v5.vcek.der");
const certTable = (() => {
  const b = new Uint8Array(48 + vcek.length);
  b.set(Uint8Array.from(Buffer.from("63da758de6644564adc5f4b93be8accd", "hex")), 0);
  new DataView(b.buffer).setUint32(16, 48, true);
  new DataView(b.buffer).setUint32(20, vcek.length, true);
  b.set(vcek, 48);
  return b;
})();
const snpJson = vjson("snp/snp-02-genoa-v3.trustee-evidence.json");
const luks = headerBytes("systemd-tpm2").slice(0, 2 * 16384);
const importToken = JSON.parse(fixtureText("tpm2-import/token.json"));
const importHeader = parseLuks2(headerBytes("tpm2-import"));
const sealPub = new Uint8Array(Buffer.from(importToken.seal_pub, "base64"));
const luksJson = JSON.parse(new TextDecoder().decode(luks.subarray(4096, 16384)).replace(/\0+$/, ""));

export { importToken, importHeader };
const EARLIER: { name: string; share: number; prop: fc.IProperty<any> }[] = [
  { name: "SNP report parser", share: 0.1, prop: fc.property(mutated(snp), (b) => layoutOnly(() => parseReport(b))) },
  { name: "SNP certificate table parser", share: 0.05, prop: fc.property(mutated(certTable), (b) => layoutOnly(() => parseCertTable(b))) },
  { name: "TDX quote parser", share: 0.15, prop: fc.property(mutated(quote), (b) => layoutOnly(() => parseQuote(b))) },
  { name: "TDREPORT parser", share: 0.05, prop: fc.property(mutated(tdreport), (b) => layoutOnly(() => parseTdReport(b))) },
  { name: "X.509/DER parser", share: 0.1, prop: fc.property(mutated(vcek), (b) => derOnly(() => parseCertificate(b))) },
  { name: "evidence kind detection", share: 0.05, prop: fc.property(fc.oneof(mutated(snp), mutated(quote), fc.string().map((s) => new TextEncoder().encode(s))), (b) => void detectKind(b)) },
  {
    name: "Trustee snp evidence JSON",
    share: 0.1,
    prop: fc.property(fc.oneof(fc.jsonValue(), fc.constantFrom("version", "policy", "measurement", "current_tcb", "signature", "cpuid_fam_id").chain((k) => fc.jsonValue().map((v) => ({ ...snpJson, attestation_report: { ...snpJson.attestation_report, [k]: v } })))), (j) => cvmOnly(() => snpReportFromJson(j))),
  },
  { name: "JWE shape parser", share: 0.05, prop: fc.property(fc.oneof(fc.jsonValue(), fc.record({ protected: fc.base64String(), encrypted_key: fc.string(), iv: fc.string(), ciphertext: fc.string(), tag: fc.string() })), (j) => cvmOnly(() => parseJwe(j))) },
  { name: "config validator", share: 0.1, prop: fc.property(fc.jsonValue(), (j) => cvmOnly(() => parseConfig(j, "fuzz"))) },
  { name: "LUKS2 binary header", share: 0.05, prop: fc.property(mutated(luks, luks.length), (b) => cvmOnly(() => parseLuks2(b))) },
  {
    name: "LUKS2 JSON metadata model",
    share: 0.05,
    prop: fc.property(fc.oneof(fc.jsonValue(), fc.constantFrom("keyslots", "tokens", "segments", "digests").chain((k) => fc.jsonValue().map((v) => ({ ...luksJson, [k]: v })))), (j) => cvmOnly(() => luksModel(j))),
  },
  {
    name: "tpm2-import token validator",
    share: 0.05,
    prop: fc.property(
      fc.oneof(fc.jsonValue(), fc.constantFrom(...Object.keys(importToken)).chain((k) => fc.jsonValue().map((v) => ({ ...importToken, [k]: v })))),
      (j) => cvmOnly(() => parseImportToken({ id: "0", type: "tpm2-import", keyslots: Array.isArray((j as any)?.keyslots) ? (j as any).keyslots.filter((x: unknown) => typeof x === "string") : ["1"], json: (j ?? {}) as Record<string, unknown> }, importHeader)),
    ),
  },
  { name: "TPM2B_PUBLIC unmarshal", share: 0.05, prop: fc.property(mutated(sealPub), (b) => typed([TpmFormatError])(() => decode(TYPES.TPM2B_PUBLIC, b))) },
  { name: "u64-safe JSON parser", share: 0.05, prop: fc.property(fc.string(), (s) => typed([SyntaxError])(() => parseJsonBig(s))) },
];

const eventlog = vbytes("pcr/shim-uki-secureboot/eventlog-uki1.bin");
const ccelArea = new Uint8Array(readFileSync(join(ROOT, "test/vectors/go-tdx-guest/ccel_data.dat")));
const ccel = trimCcel(ccelArea);
const shimHead = vbytes("pcr/binaries/shimx64-snakeoil.efi").slice(0, 8192);
const pckCrl = new Uint8Array(readFileSync(join(ROOT, "test/vectors/go-tdx-guest/pckcrl")));
const ovmf = new Uint8Array(readFileSync(join(ROOT, "test/vectors/sev-snp-measure/ovmf_AmdSev_suffix.bin")));
const LUKS_KEYS = ["keyslots", "tokens", "segments", "digests", "config"] as const;

/** Parsers added with the trust-boundaries and measured-boot work (#16: hostile LUKS JSON under a valid checksum). */
const LATER: { name: string; share: number; prop: fc.IProperty<any> }[] = [
  { name: "TCG event log parser and replay", share: 0.05, prop: fc.property(mutated(eventlog), (b) => cvmOnly(() => replay(parseEventLog(b)))) },
  { name: "TDX CCEL trim and RTMR replay", share: 0.04, prop: fc.property(mutated(ccel, ccel.length + 64), (b) => cvmOnly(() => ccelRtmrs(trimCcel(b)))) },
  { name: "PE Authenticode layout", share: 0.04, prop: fc.property(mutated(shimHead), (b) => cvmOnly(() => authenticodeRanges(b))) },
  { name: "X.509 CRL parser", share: 0.03, prop: fc.property(mutated(pckCrl), (b) => cvmOnly(() => parseCrl(b))) },
  { name: "OVMF footer table and SEV metadata", share: 0.03, prop: fc.property(mutated(ovmf, ovmf.length), (b) => cvmOnly(() => parseOvmf(b))) },
  { name: "dm-crypt table line", share: 0.03, prop: fc.property(fc.oneof(fc.string(), fc.constantFrom("0 98304 crypt aes-xts-plain64 :64:logon:cryptsetup:x-d0 0 254:0 32768").chain((l) => fc.string().map((t) => l + t))), (t) => cvmOnly(() => parseCryptTable("m", "CRYPT-LUKS2-x-m", t))) },
  { name: "Azure HCL report", share: 0.03, prop: fc.property(mutated(hcl, hcl.length + 64), (b) => cvmOnly(() => parseHclReport(b))) },
  { name: "TPMS_ATTEST quote", share: 0.03, prop: fc.property(mutated(attest), (b) => cvmOnly(() => parseQuoteAttest(b))) },
  {
    name: "TPM2_Quote answer (TPM2B_ATTEST, TPMT_SIGNATURE)",
    share: 0.02,
    prop: fc.property(mutated(quoteAnswer), (b) =>
      cvmOnly(() => {
        const r = new Reader(b);
        parseQuoteAttest(tpm2b.dec(r));
        TYPES.TPMT_SIGNATURE.dec(r);
      }),
    ),
  },
  { name: "TPM2B_NV_PUBLIC (NV_ReadPublic)", share: 0.02, prop: fc.property(mutated(nvPublicAnswer), (b) => cvmOnly(() => decode(TYPES.TPM2B_NV_PUBLIC, b))) },
  {
    name: "Azure vTPM evidence JSON (az-snp-vtpm, az-tdx-vtpm)",
    share: 0.03,
    prop: fc.property(
      fc.oneof(fc.jsonValue(), fc.constantFrom(["az-snp-vtpm", azure], ["az-tdx-vtpm", azTdx]).chain(([, e]) => fc.constantFrom("version", "tpm_quote", "hcl_report", "vcek", "td_quote").chain((k) => fc.jsonValue().map((v) => ({ ...e, [k]: v }))))),
      fc.constantFrom("az-snp-vtpm" as const, "az-tdx-vtpm" as const),
      (j, tee) =>
        cvmOnly(() => {
          const e = parseAzVtpm(j, tee);
          e.tpm_quote.pcrs.forEach((p) => hexBytes(p, tee, "pcr"));
          parseQuoteAttest(hexBytes(e.tpm_quote.message, tee, "message"));
          parseHclReport(b64urlLoose(e.hcl_report, tee, "hcl_report"));
        }),
    ),
  },
  {
    name: "instance metadata service answers (VCEK, TD quote)",
    share: 0.02,
    prop: fc.property(fc.oneof(fc.jsonValue(), fc.record({ vcekCert: fc.oneof(fc.string(), fc.constant(vcekPem).chain((p) => fc.nat(p.length).map((n) => p.slice(0, n)))), certificateChain: fc.string() }), fc.record({ quote: fc.string() })), (j) =>
      cvmOnly(() => {
        try {
          parseVcekAnswer(j);
        } finally {
          parseTdQuoteAnswer(j);
        }
      }),
    ),
  },
  { name: "kernel command line (escapes, rd.cvm_unlock.*)", share: 0.03, prop: fc.property(fc.string(), (t) => cvmOnly(() => (shellEscapes(t), applyCmdline(fuzzConfig, t)))) },
  {
    name: "LUKS2 header: hostile JSON under a valid checksum → model and cipher check",
    share: 0.05,
    prop: fc.property(fc.constantFrom(...LUKS_KEYS).chain((k) => fc.jsonValue().map((v) => [k, v] as const)), ([k, v]) => {
      let img: Uint8Array;
      try {
        img = rewriteLuksJson(luks.slice(), (j) => void (j[k] = v));
      } catch {
        return; // does not fit the JSON area: not a header the host could serve
      }
      cvmOnly(() => checkHeaderCiphers("root", parseLuks2(img), DEFAULT_CIPHERS));
    }),
  },
];
const laterShare = LATER.reduce((n, p) => n + p.share, 0);
export const PROPERTIES = [...EARLIER.map((p) => ({ ...p, share: p.share * (1 - laterShare) })), ...LATER];

export function runAll(total: number, seed?: number): { name: string; runs: number; ms: number }[] {
  return PROPERTIES.map(({ name, share, prop }) => {
    const runs = Math.max(1, Math.round(total * share));
    const t0 = performance.now();
    fc.assert(prop, { numRuns: runs, seed, interruptAfterTimeLimit: undefined });
    return { name, runs, ms: Math.round(performance.now() - t0) };
  });
}
