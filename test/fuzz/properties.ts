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
export const PROPERTIES: { name: string; share: number; prop: fc.IProperty<any> }[] = [
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

export function runAll(total: number, seed?: number): { name: string; runs: number; ms: number }[] {
  return PROPERTIES.map(({ name, share, prop }) => {
    const runs = Math.max(1, Math.round(total * share));
    const t0 = performance.now();
    fc.assert(prop, { numRuns: runs, seed, interruptAfterTimeLimit: undefined });
    return { name, runs, ms: Math.round(performance.now() - t0) };
  });
}
