// Offline verification of an SEV-SNP report: VCEK/VLEK → ASK/ASVK → ARK (RSA-PSS, ARK pinned), the report's
// ECDSA P-384 signature (WebCrypto: no low-S rule, which firmware signatures would break), and the VCEK's
// AMD extensions against the report's REPORTED_TCB and CHIP_ID. Policy (expected measurement, minimum TCB)
// is not here: see policy.ts.
import { checkCrls, type Crl } from "./crl.js";
import { hex } from "../layout.js";
import { decodeTcb, SIGNED_SIZE, signatureP1363, signingKey, type Product, type SnpReport, type Tcb } from "../snp/layout.js";
import { children, DerError, pemBlocks, readTlv, smallInt, text } from "./der.js";
import { Verification, validAt } from "./result.js";
import { AMD_ROOTS, ARK_SHA256 } from "./roots.js";
import { buf, importKey, parseCertificate, sha256Hex, verifyCertSignature, type Certificate } from "./x509.js";

const AMD = "1.3.6.1.4.1.3704.1";
export const AMD_EXT = {
  structVersion: `${AMD}.1`, productName: `${AMD}.2`, blSPL: `${AMD}.3.1`, teeSPL: `${AMD}.3.2`, snpSPL: `${AMD}.3.3`,
  ucodeSPL: `${AMD}.3.8`, fmcSPL: `${AMD}.3.9`, hwID: `${AMD}.4`, cspID: `${AMD}.5`,
} as const;

export interface AmdExtensions {
  product?: string;
  tcb: Partial<Tcb>;
  hwId?: Uint8Array;
  cspId?: string;
}

export function amdExtensions(c: Certificate): AmdExtensions {
  const int = (o: string) => {
    const v = c.extensions.get(o);
    return v ? smallInt(readTlv(v)) : undefined;
  };
  const name = c.extensions.get(AMD_EXT.productName);
  const hw = c.extensions.get(AMD_EXT.hwID);
  const csp = c.extensions.get(AMD_EXT.cspID);
  const tcb: Partial<Tcb> = { bootloader: int(AMD_EXT.blSPL), tee: int(AMD_EXT.teeSPL), snp: int(AMD_EXT.snpSPL), microcode: int(AMD_EXT.ucodeSPL) };
  const fmc = int(AMD_EXT.fmcSPL);
  if (fmc !== undefined) tcb.fmc = fmc;
  let hwId: Uint8Array | undefined;
  if (hw) {
    // Real VCEKs carry hwID raw; accept an OCTET STRING wrapper too (Trustee does).
    hwId = hw.length === 66 && hw[0] === 0x04 && hw[1] === 64 ? hw.slice(2) : hw.length === 10 && hw[0] === 0x04 && hw[1] === 8 ? hw.slice(2) : hw;
  }
  return { product: name ? text(readTlv(name)) : undefined, tcb, hwId, cspId: csp ? text(readTlv(csp)) : undefined };
}

export const productOfName = (name: string | undefined): Product | undefined => {
  const base = name?.split("-")[0];
  return base === "Milan" || base === "Genoa" || base === "Turin" ? base : undefined;
};

export interface SnpCerts {
  /** VCEK or VLEK, DER. */
  endorsement?: Uint8Array;
  /** ASK/ASVK and ARK (PEM or DER each); the embedded AMD chain for the product when absent. */
  ask?: Uint8Array;
  ark?: Uint8Array;
}

export interface SnpVerification {
  v: Verification;
  product?: Product;
  signer: string;
  endorsement?: Certificate;
  extensions?: AmdExtensions;
  tcb?: Tcb;
}

/** opts.crls: AMD's CRL for the product (DER, signed by the ARK), when the caller has it. */
export async function verifySnp(report: SnpReport, certs: SnpCerts, now: Date, opts: { crls?: (Uint8Array | Crl)[] } = {}): Promise<SnpVerification> {
  const v = new Verification();
  const signer = signingKey(report.fields.signer_info as number);
  const out: SnpVerification = { v, signer };
  if (signer !== "VCEK" && signer !== "VLEK") {
    v.fail("signing key", "signer-mismatch", `report signed by ${signer}; only VCEK or VLEK reports can be verified`);
    return out;
  }
  if (!certs.endorsement) {
    v.fail(`${signer} certificate`, "missing-certificate", `no ${signer} certificate (give --certs DIR with ${signer.toLowerCase()}.der or .pem, or an extended report)`);
    return out;
  }
  let ek: Certificate;
  try {
    ek = parseCertificate(certs.endorsement);
  } catch (e) {
    v.fail(`${signer} certificate`, "malformed", (e as Error).message);
    return out;
  }
  out.endorsement = ek;
  const ext = amdExtensions(ek);
  out.extensions = ext;
  const product = report.product ?? productOfName(ext.product);
  out.product = product;
  if (!v.check("product", product !== undefined, "product-unknown", `cannot tell the product (CPUID ${report.fields.cpuid_fam_id ?? "-"}/${report.fields.cpuid_mod_id ?? "-"}, VCEK says ${ext.product ?? "nothing"})`)) return out;
  if (ext.product && productOfName(ext.product) !== product) v.fail("product", "product-unknown", `report is ${product} but the ${signer} says ${ext.product}`);
  v.check(`${signer} subject`, ek.subjectCn === `SEV-${signer}`, "chain", `subject CN is ${JSON.stringify(ek.subjectCn)}`);

  // Chain: the given ASK/ARK or the embedded ones; the ARK must be the pinned one either way.
  const embedded = AMD_ROOTS[product!]!;
  const eAskPem = signer === "VLEK" ? embedded.asvk : embedded.ask;
  const eAsk = eAskPem ? pemBlocks(eAskPem)[0] : undefined;
  const eArk = pemBlocks(embedded.ark)[0];
  let ask: Certificate, ark: Certificate;
  try {
    ask = parseCertificate(certs.ask ?? eAsk!);
    ark = parseCertificate(certs.ark ?? eArk!);
  } catch (e) {
    v.fail("AMD chain", e instanceof DerError ? "malformed" : "missing-certificate", `no usable ${signer === "VLEK" ? "ASVK" : "ASK"}/ARK for ${product}: ${(e as Error).message}`);
    return out;
  }
  const arkFp = await sha256Hex(ark.der);
  v.check("ARK pinned", arkFp === ARK_SHA256[product!], "root-not-trusted", `ARK fingerprint ${arkFp} is not AMD's ARK-${product}`);
  v.check("ARK self-signed", await verifyCertSignature(ark, ark.key), "chain", "ARK signature does not verify under its own key");
  v.check(`${signer === "VLEK" ? "ASVK" : "ASK"} signed by ARK`, await verifyCertSignature(ask, ark.key), "chain", `${ask.subjectCn} is not signed by ${ark.subjectCn}`);
  v.check(`${signer} signed by ${ask.subjectCn}`, await verifyCertSignature(ek, ask.key), "chain", `${signer} (issuer ${ek.issuerCn}) is not signed by ${ask.subjectCn}`);
  if (opts.crls?.length) await checkCrls(v, [ek, ask, ark], opts.crls, now);
  for (const c of [ark, ask, ek]) v.check(`${c.subjectCn} valid now`, validAt(c, now), "expired", `${c.subjectCn} is valid ${c.notBefore.toISOString()} to ${c.notAfter.toISOString()}, not at ${now.toISOString()}`);

  // The report signature over bytes 0..0x29F.
  let sigOk = false;
  try {
    const key = await importKey(ek.key, "ECDSA");
    sigOk = ek.key.kind === "ec" && ek.key.curve === "P-384" && (await crypto.subtle.verify({ name: "ECDSA", hash: "SHA-384" }, key, buf(signatureP1363(report.fields)), buf(report.raw.subarray(0, SIGNED_SIZE))));
  } catch {
    sigOk = false;
  }
  v.check("report signature", sigOk, "signature", `ECDSA P-384 signature does not verify under the ${signer}`);

  // AMD extensions against the report.
  const tcb = decodeTcb(report.fields.reported_tcb as bigint, product!);
  out.tcb = tcb;
  const wanted: (keyof Tcb)[] = product === "Turin" ? ["fmc", "bootloader", "tee", "snp", "microcode"] : ["bootloader", "tee", "snp", "microcode"];
  const diff = wanted.filter((k) => ext.tcb[k] !== tcb[k]).map((k) => `${k} report ${tcb[k]} vs ${signer} ${ext.tcb[k] ?? "absent"}`);
  v.check(`${signer} TCB = REPORTED_TCB`, diff.length === 0, "tcb-mismatch", diff.join(", "));
  if (signer === "VCEK") {
    const chip = report.fields.chip_id as Uint8Array;
    const hw = ext.hwId;
    const expect = product === "Turin" ? chip.subarray(0, 8) : chip;
    v.check("VCEK hwID = CHIP_ID", !!hw && hex(hw) === hex(expect), "hwid-mismatch", `hwID ${hw ? hex(hw) : "absent"} vs CHIP_ID ${hex(expect)}`);
  }
  return out;
}

/** Splits a PEM bundle or takes a DER blob. */
export function certBytes(b: Uint8Array): Uint8Array[] {
  const s = new TextDecoder().decode(b.subarray(0, Math.min(b.length, 64)));
  return s.includes("-----BEGIN") ? pemBlocks(new TextDecoder().decode(b)) : [b];
}

export { children };
