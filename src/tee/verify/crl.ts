// Certificate revocation lists (X.509 CertificateList, RFC 5280 §5), when the caller has them: AMD's per
// product CRL (signed by the ARK) and Intel's root and PCK CRLs (PCS collateral). A CRL counts only when it
// is signed by a certificate of the chain it is applied to and is current; then no certificate that issuer
// signed may be on it. CRLs are collateral the broker fetches; the agent never goes looking for them.
import { children, DerError, expectTag, readTlv, time } from "./der.js";
import { validAt, type Verification } from "./result.js";
import { signatureAlgorithm, verifyCertSignature, type Certificate } from "./x509.js";

export interface Crl {
  tbs: Uint8Array;
  sigAlg: string;
  pssSalt?: number;
  signature: Uint8Array;
  issuerRaw: Uint8Array;
  thisUpdate: Date;
  nextUpdate?: Date;
  /** Revoked serial numbers, hex without leading zeros. */
  revoked: Set<string>;
}

const serialHex = (b: Uint8Array): string => {
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i++;
  return Array.from(b.subarray(i), (x) => x.toString(16).padStart(2, "0")).join("");
};

export function parseCrl(der: Uint8Array): Crl {
  const list = expectTag(readTlv(der), 0x30, "CertificateList");
  if (list.raw.length !== der.length) throw new DerError("trailing bytes after the CRL");
  const [tbs, algT, sigT] = children(list);
  const { sigAlg, pssSalt } = signatureAlgorithm(algT);
  const t = children(expectTag(tbs, 0x30, "TBSCertList"));
  let i = t[0]?.tag === 0x02 ? 1 : 0; // version
  i++; // signature algorithm inside the TBS
  const issuer = expectTag(t[i++], 0x30, "issuer");
  const thisUpdate = time(t[i++]!);
  const nextUpdate = t[i] && (t[i]!.tag === 0x17 || t[i]!.tag === 0x18) ? time(t[i++]!) : undefined;
  const revoked = new Set<string>();
  if (t[i]?.tag === 0x30) for (const entry of children(t[i++]!)) revoked.add(serialHex(expectTag(children(entry)[0], 0x02, "userCertificate").value));
  return { tbs: tbs!.raw.slice(), sigAlg, pssSalt, signature: expectTag(sigT, 0x03, "signatureValue").value.slice(1), issuerRaw: issuer.raw.slice(), thisUpdate, nextUpdate, revoked };
}

const same = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((x, k) => x === b[k]);

/** Applies each CRL to the chain it belongs to (its issuer is in the chain); CRLs of other issuers are
 *  skipped. Records one check per CRL used and one per certificate it covers. */
export async function checkCrls(v: Verification, chain: Certificate[], crls: (Uint8Array | Crl)[], now: Date): Promise<void> {
  for (const [n, given] of crls.entries()) {
    let crl: Crl;
    try {
      crl = given instanceof Uint8Array ? parseCrl(given) : given;
    } catch (e) {
      v.fail(`CRL ${n}`, "malformed", (e as Error).message);
      continue;
    }
    const issuer = chain.find((c) => same(c.subjectRaw, crl.issuerRaw));
    if (!issuer) continue;
    const name = `CRL of ${issuer.subjectCn}`;
    if (!v.check(`${name} signed by it`, await verifyCertSignature(crl, issuer.key), "crl", `the CRL naming ${issuer.subjectCn} is not signed by its key`)) continue;
    if (!v.check(`${name} current`, validAt({ notBefore: crl.thisUpdate, notAfter: crl.nextUpdate ?? new Date(8.64e15) }, now), "crl", `the CRL of ${issuer.subjectCn} is for ${crl.thisUpdate.toISOString()} to ${crl.nextUpdate?.toISOString() ?? "open"}, not ${now.toISOString()}`)) continue;
    for (const c of chain.filter((x) => same(x.issuerRaw, crl.issuerRaw) && x !== issuer)) {
      v.check(`${c.subjectCn} not revoked`, !crl.revoked.has(serialHex(c.serial)), "revoked", `${c.subjectCn} (serial ${serialHex(c.serial)}) is on ${issuer.subjectCn}'s CRL`);
    }
  }
}
