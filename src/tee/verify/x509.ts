// X.509 certificates as the verifiers need them: signed bytes, signature algorithm, issuer/subject, validity,
// public key and extensions; signature checks through WebCrypto (RSA-PSS for AMD, ECDSA for Intel/AMD keys).
import { children, DerError, expectTag, oid, readTlv, text, time, uintBytes, type Tlv } from "./der.js";

export const OIDS = {
  rsaEncryption: "1.2.840.113549.1.1.1",
  rsassaPss: "1.2.840.113549.1.1.10",
  ecPublicKey: "1.2.840.10045.2.1",
  ecdsaSha256: "1.2.840.10045.4.3.2",
  ecdsaSha384: "1.2.840.10045.4.3.3",
  p256: "1.2.840.10045.3.1.7",
  p384: "1.3.132.0.34",
  sha384: "2.16.840.1.101.3.4.2.2",
  commonName: "2.5.4.3",
} as const;

export interface Certificate {
  der: Uint8Array;
  tbs: Uint8Array;
  sigAlg: string;
  /** RSA-PSS salt length when sigAlg is RSASSA-PSS. */
  pssSalt?: number;
  signature: Uint8Array;
  serial: Uint8Array;
  issuerRaw: Uint8Array;
  subjectRaw: Uint8Array;
  issuerCn: string;
  subjectCn: string;
  notBefore: Date;
  notAfter: Date;
  key: PublicKeyInfo;
  extensions: Map<string, Uint8Array>;
}

export type PublicKeyInfo =
  | { kind: "rsa"; n: Uint8Array; e: Uint8Array }
  | { kind: "ec"; curve: "P-256" | "P-384"; point: Uint8Array };

function cnOf(name: Tlv): string {
  for (const rdn of children(name)) {
    for (const atv of children(rdn)) {
      const [t, v] = children(atv);
      if (t && v && oid(t) === OIDS.commonName) return text(v);
    }
  }
  return "";
}

function parseKey(spki: Tlv): PublicKeyInfo {
  const [alg, bits] = children(spki);
  const [algOid, params] = children(expectTag(alg, 0x30, "SubjectPublicKeyInfo.algorithm"));
  const key = expectTag(bits, 0x03, "subjectPublicKey").value.subarray(1);
  const a = oid(algOid!);
  if (a === OIDS.rsaEncryption || a === OIDS.rsassaPss) {
    const [n, e] = children(readTlv(key));
    return { kind: "rsa", n: uintBytes(n!, expectTag(n, 0x02, "n").value.length), e: uintBytes(e!, expectTag(e, 0x02, "e").value.length) };
  }
  if (a === OIDS.ecPublicKey) {
    const c = oid(params!);
    const curve = c === OIDS.p256 ? "P-256" : c === OIDS.p384 ? "P-384" : undefined;
    if (!curve) throw new DerError(`unsupported EC curve ${c}`);
    return { kind: "ec", curve, point: key.slice() };
  }
  throw new DerError(`unsupported public key algorithm ${a}`);
}

/** The outer signatureAlgorithm of a certificate or CRL: its OID, and the salt length for RSA-PSS. */
export function signatureAlgorithm(t: Tlv | undefined): { sigAlg: string; pssSalt?: number } {
  const algParts = children(expectTag(t, 0x30, "signatureAlgorithm"));
  const sigAlg = oid(algParts[0]!);
  let pssSalt: number | undefined;
  if (sigAlg === OIDS.rsassaPss && algParts[1]) {
    pssSalt = 20;
    for (const p of children(algParts[1])) if (p.tag === 0xa2) pssSalt = readTlv(p.value).value.reduce((n, b) => n * 256 + b, 0);
  }
  return { sigAlg, pssSalt };
}

export function parseCertificate(der: Uint8Array): Certificate {
  const cert = expectTag(readTlv(der), 0x30, "Certificate");
  if (cert.raw.length !== der.length) throw new DerError("trailing bytes after the certificate");
  const [tbs, sigAlgT, sigT] = children(cert);
  const { sigAlg, pssSalt } = signatureAlgorithm(sigAlgT);
  const t = children(expectTag(tbs, 0x30, "TBSCertificate"));
  let i = t[0]?.tag === 0xa0 ? 1 : 0;
  const serial = expectTag(t[i++], 0x02, "serialNumber").value;
  i++; // signature algorithm inside TBS
  const issuer = expectTag(t[i++], 0x30, "issuer");
  const [nb, na] = children(expectTag(t[i++], 0x30, "validity"));
  const subject = expectTag(t[i++], 0x30, "subject");
  const key = parseKey(expectTag(t[i++], 0x30, "subjectPublicKeyInfo"));
  const extensions = new Map<string, Uint8Array>();
  for (; i < t.length; i++) {
    if (t[i]!.tag !== 0xa3) continue;
    for (const ext of children(expectTag(readTlv(t[i]!.value), 0x30, "extensions"))) {
      const parts = children(ext);
      const value = expectTag(parts[parts.length - 1], 0x04, "extnValue").value;
      extensions.set(oid(parts[0]!), value.slice());
    }
  }
  return {
    der: der.slice(),
    tbs: tbs!.raw.slice(),
    sigAlg,
    pssSalt,
    signature: expectTag(sigT, 0x03, "signatureValue").value.slice(1),
    serial: serial.slice(),
    issuerRaw: issuer.raw.slice(),
    subjectRaw: subject.raw.slice(),
    issuerCn: cnOf(issuer),
    subjectCn: cnOf(subject),
    notBefore: time(nb!),
    notAfter: time(na!),
    key,
    extensions,
  };
}

const b64u = (b: Uint8Array) => Buffer.from(b).toString("base64url");
/** A copy backed by a plain ArrayBuffer, as WebCrypto's types want. */
export const buf = (b: Uint8Array): Uint8Array<ArrayBuffer> => new Uint8Array(b);

export async function importKey(k: PublicKeyInfo, use: "RSA-PSS" | "ECDSA"): Promise<CryptoKey> {
  if (k.kind === "rsa") {
    if (use !== "RSA-PSS") throw new DerError("RSA key where an EC key was expected");
    return crypto.subtle.importKey("jwk", { kty: "RSA", n: b64u(k.n), e: b64u(k.e) }, { name: "RSA-PSS", hash: "SHA-384" }, false, ["verify"]);
  }
  if (use !== "ECDSA") throw new DerError("EC key where an RSA key was expected");
  return crypto.subtle.importKey("raw", buf(k.point), { name: "ECDSA", namedCurve: k.curve }, false, ["verify"]);
}

/** DER ECDSA-Sig-Value → r‖s of `width` bytes each. */
export function ecdsaDerToP1363(sig: Uint8Array, width: number): Uint8Array {
  const [r, s] = children(expectTag(readTlv(sig), 0x30, "ECDSA-Sig-Value"));
  const out = new Uint8Array(2 * width);
  out.set(uintBytes(r!, width), 0);
  out.set(uintBytes(s!, width), width);
  return out;
}

/** True when `cert` (or a CRL: anything with signed bytes) is signed by `issuerKey` (RSA-PSS SHA-384, or ECDSA with SHA-256/384). */
export async function verifyCertSignature(cert: Pick<Certificate, "tbs" | "sigAlg" | "pssSalt" | "signature">, issuerKey: PublicKeyInfo): Promise<boolean> {
  try {
    if (cert.sigAlg === OIDS.rsassaPss) {
      const key = await importKey(issuerKey, "RSA-PSS");
      return await crypto.subtle.verify({ name: "RSA-PSS", saltLength: cert.pssSalt ?? 48 }, key, buf(cert.signature), buf(cert.tbs));
    }
    if (cert.sigAlg === OIDS.ecdsaSha256 || cert.sigAlg === OIDS.ecdsaSha384) {
      if (issuerKey.kind !== "ec") return false;
      const key = await importKey(issuerKey, "ECDSA");
      const width = issuerKey.curve === "P-256" ? 32 : 48;
      const hash = cert.sigAlg === OIDS.ecdsaSha256 ? "SHA-256" : "SHA-384";
      return await crypto.subtle.verify({ name: "ECDSA", hash }, key, buf(ecdsaDerToP1363(cert.signature, width)), buf(cert.tbs));
    }
  } catch {
    return false;
  }
  return false;
}

export async function sha256Hex(b: Uint8Array): Promise<string> {
  return Buffer.from(await crypto.subtle.digest("SHA-256", buf(b))).toString("hex");
}
