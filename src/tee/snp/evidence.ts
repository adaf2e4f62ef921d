// Trustee's `snp` evidence: {attestation_report, cert_chain} with the report in the serde shape of the
// virtee/sev crate (byte arrays as number arrays, TCBs as objects, u64 as exact numbers). Trustee
// re-encodes this JSON into the binary report to check the signature, so toJson/fromJson must round-trip
// every signed byte: fromJson(toJson(r)) encodes to the same 1184 bytes.
import type { Parsed } from "../layout.js";
import { CvmError } from "../../errors.js";
import { decodeTcb, encodeReport, encodeTcb, parseReport, productFromCpuid, type CertEntry, type Product, type SnpReport, type Tcb } from "./layout.js";

const arr = (v: unknown) => Array.from(v as Uint8Array);
const tcbJson = (raw: unknown, p: Product) => {
  const t = decodeTcb(raw as bigint, p);
  return { fmc: t.fmc ?? null, bootloader: t.bootloader, tee: t.tee, snp: t.snp, microcode: t.microcode };
};

/** `product` decides the TCB byte layout (v2 reports need it from the VCEK). */
export function snpEvidenceJson(r: SnpReport, certs: CertEntry[] | null, product: Product): Record<string, unknown> {
  const f = r.fields;
  const report: Record<string, unknown> = {
    version: r.version,
    guest_svn: f.guest_svn,
    policy: f.policy,
    family_id: arr(f.family_id),
    image_id: arr(f.image_id),
    vmpl: f.vmpl,
    sig_algo: f.signature_algo,
    current_tcb: tcbJson(f.current_tcb, product),
    plat_info: f.platform_info,
    key_info: f.signer_info,
    report_data: arr(f.report_data),
    measurement: arr(f.measurement),
    host_data: arr(f.host_data),
    id_key_digest: arr(f.id_key_digest),
    author_key_digest: arr(f.author_key_digest),
    report_id: arr(f.report_id),
    report_id_ma: arr(f.report_id_ma),
    reported_tcb: tcbJson(f.reported_tcb, product),
    cpuid_fam_id: r.version >= 3 ? f.cpuid_fam_id : null,
    cpuid_mod_id: r.version >= 3 ? f.cpuid_mod_id : null,
    cpuid_step: r.version >= 3 ? f.cpuid_step : null,
    chip_id: arr(f.chip_id),
    committed_tcb: tcbJson(f.committed_tcb, product),
    current: { major: f.current_major, minor: f.current_minor, build: f.current_build },
    committed: { major: f.committed_major, minor: f.committed_minor, build: f.committed_build },
    launch_tcb: tcbJson(f.launch_tcb, product),
    launch_mit_vector: r.version >= 5 ? f.launch_mit_vector : null,
    current_mit_vector: r.version >= 5 ? f.current_mit_vector : null,
    signature: { r: arr(f.signature_r), s: arr(f.signature_s) },
  };
  const chain = certs === null ? null : certs.map((c) => ({ cert_type: ["VCEK", "VLEK", "ASK", "ARK", "CRL"].includes(c.kind) ? c.kind : { OTHER: c.guid }, data: arr(c.data) }));
  return { attestation_report: report, cert_chain: chain };
}

const bad = (m: string): never => {
  throw new CvmError("TEE", `Trustee snp evidence: ${m}`);
};
const bytesOf = (v: unknown, n: number, name: string): Uint8Array => {
  if (!Array.isArray(v) || v.length !== n || !v.every((x) => Number.isInteger(x) && x >= 0 && x <= 255)) bad(`${name} must be ${n} bytes as numbers`);
  return Uint8Array.from(v as number[]);
};
const num = (v: unknown, name: string, max = 0xffffffff): number => (typeof v === "number" && Number.isInteger(v) && v >= 0 && v <= max ? v : bad(`${name} must be an integer`));
const u64 = (v: unknown, name: string): bigint => (typeof v === "bigint" ? v : typeof v === "number" && Number.isSafeInteger(v) && v >= 0 ? BigInt(v) : v === null || v === undefined ? 0n : bad(`${name} must be a u64`));

function tcbRaw(v: unknown, product: Product, name: string): bigint {
  if (typeof v !== "object" || v === null) bad(`${name} must be an object`);
  const t = v as Record<string, unknown>;
  const x: Tcb = { bootloader: num(t.bootloader, `${name}.bootloader`, 255), tee: num(t.tee, `${name}.tee`, 255), snp: num(t.snp, `${name}.snp`, 255), microcode: num(t.microcode, `${name}.microcode`, 255) };
  if (t.fmc !== null && t.fmc !== undefined) x.fmc = num(t.fmc, `${name}.fmc`, 255);
  return encodeTcb(x, product);
}

/** Rebuilds the binary report from Trustee JSON (as Trustee does); `product` is needed for v2. */
export function snpReportFromJson(j: unknown, productHint?: Product): { report: SnpReport; certs: { kind: string; data: Uint8Array }[] } {
  if (typeof j !== "object" || j === null) bad("not an object");
  const o = j as Record<string, any>;
  const a = o.attestation_report;
  if (typeof a !== "object" || a === null) bad("attestation_report missing");
  const version = num(a.version, "version");
  const product = (version >= 3 ? productFromCpuid(num(a.cpuid_fam_id, "cpuid_fam_id", 255), num(a.cpuid_mod_id, "cpuid_mod_id", 255)) : undefined) ?? productHint ?? bad("cannot tell the product");
  const fields: Parsed = {
    version,
    guest_svn: num(a.guest_svn, "guest_svn"),
    policy: u64(a.policy, "policy"),
    family_id: bytesOf(a.family_id, 16, "family_id"),
    image_id: bytesOf(a.image_id, 16, "image_id"),
    vmpl: num(a.vmpl, "vmpl"),
    signature_algo: num(a.sig_algo, "sig_algo"),
    current_tcb: tcbRaw(a.current_tcb, product, "current_tcb"),
    platform_info: u64(a.plat_info, "plat_info"),
    signer_info: num(a.key_info, "key_info"),
    report_data: bytesOf(a.report_data, 64, "report_data"),
    measurement: bytesOf(a.measurement, 48, "measurement"),
    host_data: bytesOf(a.host_data, 32, "host_data"),
    id_key_digest: bytesOf(a.id_key_digest, 48, "id_key_digest"),
    author_key_digest: bytesOf(a.author_key_digest, 48, "author_key_digest"),
    report_id: bytesOf(a.report_id, 32, "report_id"),
    report_id_ma: bytesOf(a.report_id_ma, 32, "report_id_ma"),
    reported_tcb: tcbRaw(a.reported_tcb, product, "reported_tcb"),
    cpuid_fam_id: version >= 3 ? num(a.cpuid_fam_id, "cpuid_fam_id", 255) : 0,
    cpuid_mod_id: version >= 3 ? num(a.cpuid_mod_id, "cpuid_mod_id", 255) : 0,
    cpuid_step: version >= 3 ? num(a.cpuid_step, "cpuid_step", 255) : 0,
    chip_id: bytesOf(a.chip_id, 64, "chip_id"),
    committed_tcb: tcbRaw(a.committed_tcb, product, "committed_tcb"),
    current_major: num(a.current?.major, "current.major", 255),
    current_minor: num(a.current?.minor, "current.minor", 255),
    current_build: num(a.current?.build, "current.build", 255),
    committed_major: num(a.committed?.major, "committed.major", 255),
    committed_minor: num(a.committed?.minor, "committed.minor", 255),
    committed_build: num(a.committed?.build, "committed.build", 255),
    launch_tcb: tcbRaw(a.launch_tcb, product, "launch_tcb"),
    launch_mit_vector: u64(a.launch_mit_vector, "launch_mit_vector"),
    current_mit_vector: u64(a.current_mit_vector, "current_mit_vector"),
    signature_r: bytesOf(a.signature?.r, 72, "signature.r"),
    signature_s: bytesOf(a.signature?.s, 72, "signature.s"),
  };
  let bin: Uint8Array;
  try {
    bin = encodeReport({ version, fields });
  } catch (e) {
    return bad((e as Error).message);
  }
  const report = parseReport(bin);
  if (!report.product) report.product = product;
  const certs: { kind: string; data: Uint8Array }[] = [];
  if (o.cert_chain !== null && o.cert_chain !== undefined) {
    if (!Array.isArray(o.cert_chain)) bad("cert_chain must be an array or null");
    for (const [i, c] of (o.cert_chain as any[]).entries()) {
      const kind = typeof c?.cert_type === "string" ? c.cert_type : "OTHER";
      if (!Array.isArray(c?.data) || c.data.length > 65536) bad(`cert_chain[${i}].data must be bytes`);
      certs.push({ kind, data: bytesOf(c.data, c.data.length, `cert_chain[${i}].data`) });
    }
  }
  return { report, certs };
}
