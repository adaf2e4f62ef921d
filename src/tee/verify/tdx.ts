// Offline verification of a TDX quote: the quote signature by the attestation key over header and body,
// the QE report signed by the PCK leaf, the QE report data binding the attestation key, and the PCK chain
// up to Intel's SGX Root CA (pinned), each CA certificate a CA by basicConstraints and the leaf not one, and
// the QE's identity: Intel's QE signing key (MRSIGNER) and the TD quoting enclave's ISVPRODID — a quote from
// any other enclave the PCK signed for is not a TD quote. TCB status (Intel PCS collateral, CRLs) is the
// broker's job, not this.
import { hex } from "../layout.js";
import type { Quote } from "../tdx/layout.js";
import { checkCrls, type Crl } from "./crl.js";
import { pemBlocks } from "./der.js";
import { Verification, validAt } from "./result.js";
import { INTEL_SGX_ROOT_SHA256 } from "./roots.js";
import { buf, parseCertificate, sha256Hex, verifyCertSignature, type Certificate } from "./x509.js";

/** Intel's MRSIGNER of the quoting enclaves (QE3 / TD QE), and the TD QE's ISVPRODID (the SGX QE3 is 1). */
export const INTEL_QE_MRSIGNER = "dc9e2a7c6f948f17474e34a7fc43ed030f7c1563f1babddf6340c82e0e54a8c5";
export const TD_QE_ISVPRODID = 2;

/** basicConstraints (2.5.29.19) cA: SEQUENCE { BOOLEAN TRUE, … }; absent or FALSE = not a CA. */
export function isCa(c: Certificate): boolean {
  const v = c.extensions.get("2.5.29.19");
  return !!v && v.length >= 5 && v[0] === 0x30 && v[2] === 0x01 && v[3] === 0x01 && v[4] !== 0x00;
}

async function ecdsaP256(point64: Uint8Array, sig: Uint8Array, data: Uint8Array): Promise<boolean> {
  try {
    const pt = new Uint8Array(65);
    pt[0] = 4;
    pt.set(point64, 1);
    const key = await crypto.subtle.importKey("raw", pt, { name: "ECDSA", namedCurve: "P-256" }, false, ["verify"]);
    return await crypto.subtle.verify({ name: "ECDSA", hash: "SHA-256" }, key, buf(sig), buf(data));
  } catch {
    return false;
  }
}

/** opts.crls: Intel's root and PCK CRLs (DER), when the caller has the collateral: checked against the chain. */
export async function verifyTdx(q: Quote, now: Date, opts: { crls?: (Uint8Array | Crl)[] } = {}): Promise<{ v: Verification; chain: Certificate[] }> {
  const v = new Verification();
  let chain: Certificate[] = [];
  try {
    chain = pemBlocks(q.pckChainPem).map(parseCertificate);
  } catch (e) {
    v.fail("PCK chain", "malformed", (e as Error).message);
    return { v, chain };
  }
  if (!v.check("PCK chain length", chain.length >= 2, "missing-certificate", `PCK chain has ${chain.length} certificate(s)`)) return { v, chain };
  const root = chain[chain.length - 1]!;
  const leaf = chain[0]!;
  v.check("Intel root pinned", (await sha256Hex(root.der)) === INTEL_SGX_ROOT_SHA256, "root-not-trusted", `root ${root.subjectCn} is not Intel's SGX Root CA`);
  v.check("root self-signed", await verifyCertSignature(root, root.key), "chain", "root signature does not verify under its own key");
  for (let i = 0; i + 1 < chain.length; i++) {
    v.check(`${chain[i]!.subjectCn} signed by ${chain[i + 1]!.subjectCn}`, await verifyCertSignature(chain[i]!, chain[i + 1]!.key), "chain", `${chain[i]!.subjectCn} is not signed by ${chain[i + 1]!.subjectCn}`);
  }
  for (const c of chain.slice(1)) v.check(`${c.subjectCn} is a CA`, isCa(c), "chain", `${c.subjectCn} signs certificates but basicConstraints does not make it a CA`);
  v.check(`${leaf.subjectCn} is not a CA`, !isCa(leaf), "chain", `the PCK leaf ${leaf.subjectCn} claims to be a CA`);
  if (opts.crls?.length) await checkCrls(v, chain, opts.crls, now);
  for (const c of chain) v.check(`${c.subjectCn} valid now`, validAt(c, now), "expired", `${c.subjectCn} is valid ${c.notBefore.toISOString()} to ${c.notAfter.toISOString()}, not at ${now.toISOString()}`);
  const leafPoint = leaf.key.kind === "ec" && leaf.key.curve === "P-256" ? leaf.key.point.subarray(1) : undefined;
  v.check("QE report signed by PCK", !!leafPoint && (await ecdsaP256(leafPoint, q.qeReportSignature, q.qeReportRaw)), "signature", "QE report signature does not verify under the PCK leaf key");
  const bind = new Uint8Array(await crypto.subtle.digest("SHA-256", buf(new Uint8Array([...q.attestationKey, ...q.qeAuthData]))));
  const rd = q.qeReport.report_data as Uint8Array;
  v.check("QE report binds the attestation key", bind.every((b, i) => rd[i] === b) && rd.subarray(32).every((b) => b === 0), "binding", "QE REPORTDATA is not SHA-256(attestation key ‖ QE auth data) ‖ zeros");
  const mrSigner = hex(q.qeReport.mr_signer as Uint8Array);
  v.check("QE is Intel's", mrSigner === INTEL_QE_MRSIGNER, "qe-identity", `QE MRSIGNER ${mrSigner} is not Intel's quoting enclave signer`);
  v.check("QE is the TD quoting enclave", q.qeReport.isv_prod_id === TD_QE_ISVPRODID, "qe-identity", `QE ISVPRODID ${q.qeReport.isv_prod_id} is not the TD QE's (${TD_QE_ISVPRODID})`);
  v.check("quote signature", await ecdsaP256(q.attestationKey, q.signature, q.signed), "signature", "quote signature does not verify under the attestation key");
  return { v, chain };
}
